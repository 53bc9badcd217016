/*
 * Fuzz target for the S3 XML scanner: the input is fed as an error body, a
 * ListObjectsV2 page and a multipart-initiation answer. Checked properties:
 * every extracted string is NUL-terminated inside its buffer, a listing
 * reports truncation only with a continuation token, and the list callback
 * sees keys no longer than the key buffer. Any violation aborts.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int list_cb(const char *key, uint64_t size, void *payload)
{
	unsigned *n = payload;

	(void)size;
	if (strlen(key) > 1100)
		abort();
	/* Stop after a while like a consumer that found what it wanted. */
	return ++*n > 5000 ? 1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *xml = (const char *)data;
	struct st_s3_xml_error e;
	char token[1024];
	char id[64];
	unsigned n = 0;
	bool more = false;
	int rc;

	if (st_s3_xml_error(&e, xml, size) == 0 &&
	    (memchr(e.code, '\0', sizeof(e.code)) == NULL ||
	     memchr(e.message, '\0', sizeof(e.message)) == NULL ||
	     memchr(e.key, '\0', sizeof(e.key)) == NULL))
		abort();
	rc = st_s3_xml_list(&more, token, sizeof(token), xml, size, list_cb, &n);
	if (memchr(token, '\0', sizeof(token)) == NULL)
		abort();
	if (rc == 0 && more && token[0] == '\0')
		abort();
	rc = st_s3_xml_text(id, sizeof(id), xml, size, "UploadId");
	if (memchr(id, '\0', sizeof(id)) == NULL || (rc != 0 && id[0] != '\0'))
		abort();
	return 0;
}
