/*
 * Fuzzes the decoders of the repository's own formats: the snapshot manifest
 * stream (pkg/tree.h), fed in two pieces split where the first byte says, and
 * the index / pack-trailer plaintext (st_repo_index_decode). Both read data
 * that comes back from storage, so they must reject anything malformed
 * without reading out of bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pkg/repo.h"
#include "pkg/tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_entry(const struct st_tree_entry *e, void *payload)
{
	size_t *n = payload;

	*n += strlen(e->path) + strlen(e->target);
	for (size_t i = 0; i < e->nxattr; i++)
		*n += strlen(e->xattrs[i].name) + (e->xattrs[i].len ? e->xattrs[i].value[0] : 0u);
	return 0;
}

static int on_chunks(const struct st_tree_chunk *c, size_t n, void *payload)
{
	size_t *acc = payload;

	for (size_t i = 0; i < n; i++)
		*acc += c[i].len + c[i].id[31];
	return 0;
}

static int on_index(const uint8_t pack[ST_REPO_ID_LEN], const uint8_t id[ST_REPO_ID_LEN],
                    uint32_t off, uint32_t len, uint32_t rawlen, void *payload)
{
	size_t *acc = payload;

	*acc += pack[0] + id[31] + off + len + rawlen;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t pack[ST_REPO_ID_LEN] = { 1 };
	struct st_tree_decoder d;
	size_t acc = 0;
	const struct st_tree_visitor v = { on_entry, on_chunks, &acc };
	size_t split = size > 0 ? data[0] % (size + 1) : 0;

	st_tree_decoder_init(&d);
	if (st_tree_decoder_feed(&d, data, split, &v) == 0 &&
	    st_tree_decoder_feed(&d, data + split, size - split, &v) == 0)
		acc += (size_t)(st_tree_decoder_finish(&d) == 0);
	st_tree_decoder_dispose(&d);
	acc += (size_t)(st_repo_index_decode(data, size, NULL, on_index, &acc) == 0);
	acc += (size_t)(st_repo_index_decode(data, size, pack, on_index, &acc) == 0);
	return acc == 0xdeadbeef; /* keeps acc observable */
}
