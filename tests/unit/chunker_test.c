/* Unit tests for pkg/chunker: bounds, determinism, locality of boundaries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pkg/chunker.h"

#define DATA_LEN (24u * 1024u * 1024u)

static uint8_t *random_data(size_t n, uint64_t x)
{
	uint8_t *p = malloc(n);

	assert_non_null(p);
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 24);
	}
	return p;
}

/* Cuts p into chunks, storing the end offsets; returns the count. */
static size_t cut_all(const struct st_chunker *c, const uint8_t *p, size_t n, size_t *ends,
                      size_t cap)
{
	size_t off = 0;
	size_t k = 0;

	while (off < n && k < cap) {
		size_t len = st_chunker_cut(c, p + off, n - off);

		assert_true(len > 0);
		off += len;
		ends[k++] = off;
	}
	return k;
}

static void test_init_rejects(void **state)
{
	struct st_chunker c;

	(void)state;
	assert_int_equal(st_chunker_init(&c, 1, 1024, 3000, 8192), ST_EINVAL);
	assert_int_equal(st_chunker_init(&c, 1, 8192, 4096, 16384), ST_EINVAL);
	assert_int_equal(st_chunker_init(&c, 1, 4096, 8192, 4096), ST_EINVAL);
	assert_int_equal(st_chunker_init(&c, 1, 16, 64, 128), ST_EINVAL);
	assert_int_equal(st_chunker_init(&c, 1, 2048, 8192, 65536), 0);
}

static void test_bounds_and_average(void **state)
{
	struct st_chunker c;
	uint8_t *p = random_data(DATA_LEN, 7);
	size_t ends[1024];
	size_t n;
	size_t prev = 0;

	(void)state;
	assert_int_equal(st_chunker_init(&c, 99, ST_CHUNK_MIN, ST_CHUNK_AVG, ST_CHUNK_MAX), 0);
	n = cut_all(&c, p, DATA_LEN, ends, 1024);
	assert_int_equal(ends[n - 1], DATA_LEN);
	for (size_t i = 0; i + 1 < n; i++) {
		size_t len = ends[i] - prev;

		assert_true(len > ST_CHUNK_MIN);
		assert_true(len <= ST_CHUNK_MAX);
		prev = ends[i];
	}
	/* The mean lands near the average size (normalized chunking). */
	assert_true(DATA_LEN / n > ST_CHUNK_AVG / 2);
	assert_true(DATA_LEN / n < ST_CHUNK_AVG * 2);
	/* Short input is one chunk; zeros (no cut point) give max-sized chunks. */
	assert_int_equal(st_chunker_cut(&c, p, 1000), 1000);
	memset(p, 0, ST_CHUNK_MAX + 10);
	assert_int_equal(st_chunker_cut(&c, p, ST_CHUNK_MAX + 10), ST_CHUNK_MAX);
	free(p);
}

static void test_seed_and_shift(void **state)
{
	struct st_chunker a;
	struct st_chunker b;
	uint8_t *p = random_data(DATA_LEN, 11);
	uint8_t *q = malloc(DATA_LEN + 100);
	size_t ea[1024];
	size_t eb[1024];
	size_t na;
	size_t nb;
	size_t same = 0;

	(void)state;
	assert_non_null(q);
	assert_int_equal(st_chunker_init(&a, 1, ST_CHUNK_MIN, ST_CHUNK_AVG, ST_CHUNK_MAX), 0);
	assert_int_equal(st_chunker_init(&b, 2, ST_CHUNK_MIN, ST_CHUNK_AVG, ST_CHUNK_MAX), 0);
	na = cut_all(&a, p, DATA_LEN, ea, 1024);
	nb = cut_all(&b, p, DATA_LEN, eb, 1024);
	assert_false(na == nb && memcmp(ea, eb, na * sizeof(*ea)) == 0);
	/* Insert 100 bytes at the front: boundaries after the first resynchronise. */
	memset(q, 0x5a, 100);
	memcpy(q + 100, p, DATA_LEN);
	nb = cut_all(&a, q, DATA_LEN + 100, eb, 1024);
	for (size_t i = 0; i < na; i++)
		for (size_t j = 0; j < nb; j++)
			if (eb[j] == ea[i] + 100)
				same++;
	assert_true(same + 3 >= na);
	free(p);
	free(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_rejects),
		cmocka_unit_test(test_bounds_and_average),
		cmocka_unit_test(test_seed_and_shift),
	};

	return cmocka_run_group_tests_name("chunker", tests, NULL, NULL);
}
