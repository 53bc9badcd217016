/*
 * Fuzz target for SigV4 URI and query canonicalisation. The input is a path
 * and a query separated by the first newline (a NUL ends the input). Checked properties:
 * both canonical forms use only unreserved bytes, '/', '=', '&' and %XX
 * escapes; the S3 path form and the query form are idempotent (encoding
 * what is already canonical changes nothing, i.e. nothing is encoded
 * twice); the normalised path starts with '/' and holds no "." or ".."
 * segment and no "//". A header signing of the same request must succeed
 * or fail cleanly. Any violation aborts.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/sigv4.h"
#include "pkg/util/mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CAP (16u * 1024u)

static bool hexdigit(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

static void check_charset(const struct st_buf *b, const char *extra)
{
	size_t i;

	for (i = 0; i < b->len; i++) {
		char c = b->ptr[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    strchr("-_.~", c) != NULL || (c != '\0' && strchr(extra, c) != NULL))
			continue;
		if (c == '%' && i + 2 < b->len && hexdigit(b->ptr[i + 1]) &&
		    hexdigit(b->ptr[i + 2])) {
			i += 2;
			continue;
		}
		abort();
	}
}

static void check_path(const char *path)
{
	struct st_buf a = ST_BUF_INIT(FUZZ_CAP);
	struct st_buf b = ST_BUF_INIT(FUZZ_CAP);
	struct st_buf n = ST_BUF_INIT(FUZZ_CAP);

	if (st_sigv4_canonical_uri(&a, path, false) == 0) {
		check_charset(&a, "/");
		if (st_sigv4_canonical_uri(&b, st_buf_cstr(&a), false) != 0 ||
		    strcmp(st_buf_cstr(&a), st_buf_cstr(&b)) != 0)
			abort();
	}
	if (st_sigv4_canonical_uri(&n, path, true) == 0) {
		const char *s = st_buf_cstr(&n);

		check_charset(&n, "/");
		if (s[0] != '/' || strstr(s, "//") != NULL || strstr(s, "/./") != NULL ||
		    strstr(s, "/../") != NULL)
			abort();
	}
	st_buf_dispose(&a);
	st_buf_dispose(&b);
	st_buf_dispose(&n);
}

static void check_query(const char *query)
{
	struct st_buf a = ST_BUF_INIT(FUZZ_CAP);
	struct st_buf b = ST_BUF_INIT(FUZZ_CAP);

	if (st_sigv4_canonical_query(&a, query) == 0) {
		check_charset(&a, "=&");
		if (st_sigv4_canonical_query(&b, st_buf_cstr(&a)) != 0 ||
		    strcmp(st_buf_cstr(&a), st_buf_cstr(&b)) != 0)
			abort();
	}
	st_buf_dispose(&a);
	st_buf_dispose(&b);
}

static void check_sign(const char *path, const char *query)
{
	struct st_sigv4_options o = ST_SIGV4_OPTIONS_INIT;
	struct st_sigv4_header h = { "Host", "example.com" };
	struct st_sigv4_request rq = { "GET", path, query, &h, 1, NULL };
	struct st_sigv4_signed s;

	o.access_key = "AK";
	o.secret_key = "SK";
	o.when = 1700000000;
	st_sigv4_signed_init(&s);
	if (st_sigv4_sign_headers(&s, &rq, &o, NULL) == 0 && strlen(s.signature) != 64)
		abort();
	st_sigv4_signed_dispose(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in;
	char *sep;
	const char *query = "";

	if (size > FUZZ_CAP / 4)
		return 0;
	in = st_xstrndup((const char *)data, size);
	sep = strchr(in, '\n');
	if (sep != NULL) {
		*sep = '\0';
		query = sep + 1;
	}
	check_path(in);
	check_query(query);
	check_sign(in, query);
	free(in);
	return 0;
}
