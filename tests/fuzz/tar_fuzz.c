/*
 * Fuzz target: tar.gz input through the archive reader. Every entry must
 * respect the reader's promises (safe name, size within the cap, content
 * exactly as long as announced), and extraction by name must agree.
 * Inputs that are not gzip are gzipped here first, so that mutations reach
 * the tar layer instead of dying on the CRC.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "pkg/archive.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_entry(const struct st_archive_entry *e, const struct st_archive_limits *lim)
{
	const char *n = e->name;

	if (n[0] == '/' || n[0] == '\0' || strlen(n) > ST_ARCHIVE_NAME_MAX ||
	    e->size > lim->max_entry_size)
		__builtin_trap();
	for (const char *p = n; p != NULL; p = strchr(p, '/')) {
		if (*p == '/')
			p++;
		if (p[0] == '.' && p[1] == '.' && (p[2] == '/' || p[2] == '\0'))
			__builtin_trap();
	}
	if (!lim->allow_special && e->type != ST_ARCHIVE_FILE && e->type != ST_ARCHIVE_DIR)
		__builtin_trap();
}

/* gzip of p[0..n) into a malloc'd buffer, or NULL. */
static uint8_t *gzip(const uint8_t *p, size_t n, size_t *len_out)
{
	z_stream z;
	size_t cap = compressBound((uLong)n) + 64;
	uint8_t *out = malloc(cap);

	memset(&z, 0, sizeof(z));
	if (out == NULL || deflateInit2(&z, 1, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(out);
		return NULL;
	}
	z.next_in = (Bytef *)(uintptr_t)p;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
		free(out);
		out = NULL;
	}
	*len_out = cap - z.avail_out;
	(void)deflateEnd(&z);
	return out;
}

static void run(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *gz = NULL;
	size_t gz_len = 0;

	if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
		run(data, size);
		return 0;
	}
	gz = gzip(data, size, &gz_len);
	if (gz != NULL)
		run(gz, gz_len);
	free(gz);
	return 0;
}

static void run(const uint8_t *data, size_t size)
{
	struct st_archive_limits lim = ST_ARCHIVE_LIMITS_INIT;
	struct st_archive_mem mem = { data, size, 0 };
	struct st_archive_reader *r = NULL;
	const struct st_archive_entry *e = NULL;
	uint8_t buf[4096];
	char *first = NULL;
	char *got = NULL;
	size_t got_len = 0;
	int rc;

	lim.max_total = 4u << 20;
	lim.max_entry_size = 1u << 20;
	lim.allow_special = size > 0 && (data[size - 1] & 1);
	if (st_archive_reader_new(&r, &lim, st_archive_mem_read, &mem) != 0)
		return;
	while ((rc = st_archive_reader_next(&e, r, NULL)) == 0 && e != NULL) {
		uint64_t total = 0;
		size_t n = 0;

		check_entry(e, &lim);
		if (first == NULL && e->type == ST_ARCHIVE_FILE)
			first = strdup(e->name);
		do {
			if (st_archive_reader_read(&n, r, buf, sizeof(buf), NULL) != 0)
				goto out;
			total += n;
		} while (n > 0);
		if (total != e->size)
			__builtin_trap();
	}
	/* A readable archive's first file is found again by name. */
	if (rc == 0 && first != NULL) {
		mem.off = 0;
		if (st_archive_extract(&got, &got_len, first, 1u << 20, &lim, st_archive_mem_read,
		                       &mem, NULL) != 0)
			__builtin_trap();
	}
out:
	free(got);
	free(first);
	st_archive_reader_free(r);
}
