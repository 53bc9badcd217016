/*
 * Content-defined chunking (FastCDC).
 *
 * A gear hash rolls over the data (h = (h << 1) + gear[byte]); a cut is made
 * where the hash's top bits are all zero. Normalized chunking uses a harder
 * mask before the average size and an easier one after it (one bit each way),
 * which narrows the size distribution around the average. Nothing is hashed before the
 * minimum size, which is where most of the speed comes from. The gear table
 * is derived from a per-repository seed so that chunk boundaries (and thus
 * chunk sizes) do not reveal file contents across repositories.
 *
 * The chunker holds no stream state: the caller keeps a window of at least
 * `max` bytes (or everything up to the end of the data) and asks where the
 * first chunk of that window ends. Thread-safe once initialised (read-only).
 */
#ifndef ST_PKG_CHUNKER_H
#define ST_PKG_CHUNKER_H

#include <stddef.h>
#include <stdint.h>

#include "pkg/util/err.h"

#define ST_CHUNK_MIN (256u * 1024u)
#define ST_CHUNK_AVG (1024u * 1024u)
#define ST_CHUNK_MAX (4u * 1024u * 1024u)

struct st_chunker {
	uint64_t gear[256];
	uint64_t mask_s; /* used below avg: more bits, fewer cuts */
	uint64_t mask_l; /* used above avg: fewer bits, more cuts */
	uint32_t min;
	uint32_t avg;
	uint32_t max;
};

/*
 * Fills c for sizes min <= avg <= max (avg a power of two, min >= 64).
 * The same seed and sizes always give the same boundaries. ST_EINVAL for
 * sizes out of that shape.
 */
int st_chunker_init(struct st_chunker *c, uint64_t seed, uint32_t min, uint32_t avg,
                    uint32_t max) ST_WARN_UNUSED;

/*
 * Returns the length of the first chunk of p[0..n): n when n <= min, else a
 * content-defined cut in (min, min(n, max)], or min(n, max) when none is
 * found. Callers pass n >= max except at the end of the data, otherwise the
 * cut at n is not content-defined.
 */
size_t st_chunker_cut(const struct st_chunker *c, const uint8_t *p, size_t n);

#endif
