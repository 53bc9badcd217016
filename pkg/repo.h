/*
 * The deduplicating, encrypted repository on top of an object store.
 *
 * Layout under the store location (all objects immutable except locks):
 *   config                   plaintext JSON: format version, chunker sizes, scrypt
 *                            parameters and the master key wrapped by the key-encryption
 *                            key derived from the user's key (password or key file)
 *   data/<xx>/<pack id>      packs of ~6 MiB: header, encrypted blobs, encrypted pack index
 *   index/<id>               encrypted lists of (chunk id -> pack, offset, length)
 *   snapshots/<id>           encrypted snapshot descriptions (time, host, tag, tree chunk ids)
 *   locks/<id>               plaintext JSON naming a running backup or gc
 *
 * Chunk ids are HMAC-SHA256 of the plaintext keyed with a repository secret,
 * so equal data deduplicates within a repository and ids reveal nothing
 * outside it. Every blob is zstd-compressed when that saves at least 3%, then
 * sealed with AES-256-GCM under the repository key with the chunk id as
 * associated data. Readers recompute the id after decrypting and
 * decompressing, so a blob can neither be altered nor moved to another id.
 *
 * Write order makes crashes safe: packs, then the index naming them, then
 * the snapshot last; a snapshot never names a chunk that is not stored.
 * Packs left behind by a killed backup are found again from their own
 * trailing index by the next backup (st_repo_recover_packs), which then
 * uploads only what is missing.
 *
 * A struct st_repo is safe to share between threads for reads once its
 * index is loaded; the writer serialises its own updates.
 */
#ifndef ST_PKG_REPO_H
#define ST_PKG_REPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkg/chunker.h"
#include "pkg/store.h"
#include "pkg/util/err.h"

#define ST_REPO_ID_LEN        32
#define ST_REPO_PACK_TARGET   (6u * 1024u * 1024u)
#define ST_REPO_PACK_MAX      (64u * 1024u * 1024u) /* target + last blob + trailer, bounded */
#define ST_REPO_KEY_MAX       4096
#define ST_REPO_SNAPSHOT_MAX  (16u * 1024u * 1024u)
#define ST_REPO_INDEX_OBJ_MAX (512u * 1024u * 1024u)
#define ST_REPO_GRACE_DEFAULT 3600
#define ST_REPO_LOCK_STALE    1800
#define ST_REPO_LOCK_REFRESH  300

struct st_repo;
struct st_chunker;

/* Creates a new repository (fails with ST_EINVAL if config exists). */
int st_repo_init(struct st_store *s, const void *key, size_t key_len,
                 struct st_err *err) ST_WARN_UNUSED;

/*
 * Opens the repository: reads config and unwraps the master key. A wrong key
 * fails with ST_EINVAL and a message saying so. The store stays owned by the
 * caller and must outlive the repository. The store is switched to deferred
 * sync: the repository calls st_store_sync() between dependent writes.
 */
int st_repo_open(struct st_repo **out, struct st_store *s, const void *key, size_t key_len,
                 struct st_err *err) ST_WARN_UNUSED;
void st_repo_free(struct st_repo *r);

struct st_store *st_repo_store(const struct st_repo *r);
const struct st_chunker *st_repo_chunker(const struct st_repo *r);
/* Keyed chunk id of data. Thread-safe. */
void st_repo_chunk_id(uint8_t id[ST_REPO_ID_LEN], const struct st_repo *r, const void *data,
                      size_t len);
void st_repo_hex(char *out, const uint8_t *id, size_t n); /* out: 2n+1 bytes */

/* Loads every index object into memory. Not thread-safe. */
int st_repo_load_index(struct st_repo *r, struct st_err *err) ST_WARN_UNUSED;
/*
 * Reads the trailing index of every pack that no index object names (left by
 * a killed backup) so its chunks are reused; they are written into the next
 * index. Returns the number of packs recovered in *n_out.
 */
int st_repo_recover_packs(struct st_repo *r, unsigned *n_out, struct st_err *err) ST_WARN_UNUSED;
bool st_repo_has_chunk(struct st_repo *r, const uint8_t id[ST_REPO_ID_LEN]);

/* Where a chunk lives; filled by st_repo_locate. */
struct st_repo_loc {
	uint8_t pack[ST_REPO_ID_LEN];
	uint32_t off;
	uint32_t len;    /* sealed blob length */
	uint32_t rawlen; /* plaintext length */
};
int st_repo_locate(struct st_repo_loc *out, struct st_repo *r,
                   const uint8_t id[ST_REPO_ID_LEN]) ST_WARN_UNUSED;
/* Object key of a pack ("data/xx/<hex>"); out has room for 96 bytes. */
void st_repo_pack_key(char *out, const uint8_t pack[ST_REPO_ID_LEN]);

/*
 * Reads one chunk: fetches the blob, authenticates, decompresses, and checks
 * that the keyed id of the plaintext equals id. *out is malloc'd (caller
 * frees). ST_EPROTO with a message naming the chunk and pack when the data is
 * corrupt or the key is wrong, ST_ENOTFOUND when the index lacks the chunk.
 * Thread-safe; each thread passes its own struct st_repo_reader scratch.
 */
struct st_repo_reader;
struct st_repo_reader *st_repo_reader_new(void);
void st_repo_reader_free(struct st_repo_reader *rd);
int st_repo_read_chunk(uint8_t **out, size_t *len_out, struct st_repo *r, struct st_repo_reader *rd,
                       const uint8_t id[ST_REPO_ID_LEN], struct st_err *err) ST_WARN_UNUSED;

/*
 * Opens / checks a sealed blob held in memory (used by read and check).
 * Thread-safe with a per-thread reader.
 */
int st_repo_open_blob(uint8_t **out, size_t *len_out, struct st_repo *r, struct st_repo_reader *rd,
                      const uint8_t id[ST_REPO_ID_LEN], const uint8_t *blob, size_t blob_len,
                      uint32_t rawlen, struct st_err *err) ST_WARN_UNUSED;

/*
 * The writer: a small pool of worker threads hashes chunks (segment chunks,
 * below), compresses and encrypts the new ones into packs while two uploader
 * threads store sealed packs, so pack building overlaps uploads. A pack is
 * closed before it would pass ST_REPO_PACK_TARGET bytes, so it is one PUT on
 * S3. Memory is bounded: two segments of file data, at most 4 MiB of copied
 * chunks waiting for the workers, one pack being filled and at most two being
 * uploaded.
 */
struct st_repo_writer;
struct st_repo_writer_stats {
	uint64_t chunks_new;
	uint64_t chunks_known;
	uint64_t bytes_new;    /* plaintext bytes of new chunks */
	uint64_t bytes_stored; /* sealed bytes written into packs */
	uint64_t packs;
};
int st_repo_writer_new(struct st_repo_writer **out, struct st_repo *r, unsigned jobs,
                       struct st_err *err) ST_WARN_UNUSED;
/*
 * Adds a chunk whose id the caller computed. Known chunks cost nothing; new
 * ones are copied and queued (blocks while the queue is full). Returns 0, or
 * the first error any worker or uploader hit.
 */
int st_repo_writer_add(struct st_repo_writer *w, const uint8_t id[ST_REPO_ID_LEN], const void *data,
                       size_t len, struct st_err *err) ST_WARN_UNUSED;
/*
 * Segments: the way file data reaches the workers without a copy. The caller
 * takes a segment of ST_REPO_SEG_SIZE bytes from the writer's fixed pool
 * (blocking while all are in use, which bounds memory), reads file data into
 * it, and queues chunks that point into it with st_repo_writer_add_seg. A
 * worker computes each chunk's keyed id, looks it up, and compresses, seals
 * and packs it only when it is new; chunk boundaries are the caller's, so
 * they stay deterministic whatever the number of workers. The segment goes
 * back to the pool once the caller released it and every chunk in it is
 * done. Only the thread that adds chunks may call these.
 *
 * Each chunk gets a ticket (0, 1, 2, ... over the writer's life). After
 * st_repo_writer_drain returns 0, every queued chunk has been hashed, and
 * st_repo_writer_ticket_id gives the id of any ticket issued since the
 * previous drain, until the next st_repo_writer_add_seg.
 */
#define ST_REPO_SEG_SIZE (ST_CHUNK_MAX + ST_CHUNK_MAX / 4)
struct st_repo_seg;
int st_repo_writer_seg_take(struct st_repo_seg **out, struct st_repo_writer *w,
                            struct st_err *err) ST_WARN_UNUSED;
uint8_t *st_repo_seg_data(struct st_repo_seg *s);
/* Drops the caller's reference; NULL is a no-op. */
void st_repo_writer_seg_release(struct st_repo_writer *w, struct st_repo_seg *s);
/* Queues bytes [off, off + len) of s (1 <= len <= ST_CHUNK_MAX) as one chunk. */
int st_repo_writer_add_seg(uint64_t *ticket_out, struct st_repo_writer *w, struct st_repo_seg *s,
                           size_t off, size_t len, struct st_err *err) ST_WARN_UNUSED;
/* Waits until every queued chunk is hashed; returns the first worker or upload error. */
int st_repo_writer_drain(struct st_repo_writer *w, struct st_err *err) ST_WARN_UNUSED;
void st_repo_writer_ticket_id(uint8_t id[ST_REPO_ID_LEN], const struct st_repo_writer *w,
                              uint64_t ticket);

/*
 * Flushes the last pack, waits for every upload, then writes one index object
 * naming the packs of this writer (and recovered ones). After 0, every added
 * chunk is durably stored and indexed.
 */
int st_repo_writer_finish(struct st_repo_writer *w, struct st_err *err) ST_WARN_UNUSED;
void st_repo_writer_get_stats(struct st_repo_writer_stats *out, struct st_repo_writer *w);
/* Stops the threads without writing an index (after an error); NULL is a no-op. */
void st_repo_writer_free(struct st_repo_writer *w);

/*
 * Decodes the plaintext of an index object ("STIX") or of a pack's trailing
 * index ("STPI", where every entry belongs to `pack`), calling cb for every
 * entry. ST_EPROTO for anything malformed; cb's non-zero value stops it.
 * Bounded by n; used on untrusted input by check and by the fuzz target.
 */
typedef int (*st_repo_index_cb)(const uint8_t pack[ST_REPO_ID_LEN],
                                const uint8_t id[ST_REPO_ID_LEN], uint32_t off, uint32_t len,
                                uint32_t rawlen, void *payload);
int st_repo_index_decode(const uint8_t *p, size_t n, const uint8_t *pack, st_repo_index_cb cb,
                         void *payload) ST_WARN_UNUSED;

/* Snapshots. */
struct st_repo_snapshot {
	char id[2 * ST_REPO_ID_LEN + 1];
	int64_t time;
	int32_t time_ns; /* within time: orders snapshots of one second; 0 in older ones */
	char host[256];
	char tag[256];
	char path[4096];
	uint64_t files;
	uint64_t bytes;
	uint64_t bytes_new;
	uint64_t bytes_stored;
	size_t ntree;
	uint8_t (*tree)[ST_REPO_ID_LEN]; /* chunk ids of the tree stream, malloc'd */
};
void st_repo_snapshot_dispose(struct st_repo_snapshot *s);
/* Writes a snapshot object (its id is chosen here and stored into s->id). */
int st_repo_snapshot_save(struct st_repo *r, struct st_repo_snapshot *s,
                          struct st_err *err) ST_WARN_UNUSED;
/* Loads by full id, unique id prefix, or "latest". */
int st_repo_snapshot_load(struct st_repo_snapshot *out, struct st_repo *r, const char *which,
                          struct st_err *err) ST_WARN_UNUSED;
/* Calls cb for each snapshot in time order; cb returns non-zero to stop. */
int st_repo_snapshot_foreach(struct st_repo *r,
                             int (*cb)(const struct st_repo_snapshot *s, void *payload),
                             void *payload, struct st_err *err) ST_WARN_UNUSED;
int st_repo_snapshot_delete(struct st_repo *r, const char *id, struct st_err *err) ST_WARN_UNUSED;

/*
 * Streams the tree of a snapshot: each chunk of the tree stream is read and
 * verified, then handed to feed (which typically drives a st_tree_decoder).
 */
int st_repo_tree_read(struct st_repo *r, const struct st_repo_snapshot *s,
                      int (*feed)(const void *data, size_t n, void *payload), void *payload,
                      struct st_err *err) ST_WARN_UNUSED;

/* Locks: a backup and gc exclude each other (see docs/repository.md). */
enum st_repo_lock_kind { ST_REPO_LOCK_BACKUP = 0, ST_REPO_LOCK_GC = 1 };
struct st_repo_lock;
int st_repo_lock(struct st_repo_lock **out, struct st_repo *r, enum st_repo_lock_kind kind,
                 struct st_err *err) ST_WARN_UNUSED;
/* Rewrites the lock with a fresh time when ST_REPO_LOCK_REFRESH has passed. */
int st_repo_lock_refresh(struct st_repo_lock *l, struct st_err *err) ST_WARN_UNUSED;
void st_repo_unlock(struct st_repo_lock *l);

/* check: reads every pack and verifies every blob; bad chunks are reported by callback. */
struct st_repo_check_report {
	uint64_t packs;
	uint64_t blobs;
	uint64_t bad;
	uint64_t missing; /* chunks named by snapshots but absent from the index */
};
typedef void (*st_repo_bad_cb)(const uint8_t id[ST_REPO_ID_LEN], const char *why, void *payload);
int st_repo_check(struct st_repo_check_report *out, struct st_repo *r, st_repo_bad_cb bad,
                  void *payload, struct st_err *err) ST_WARN_UNUSED;

/*
 * gc: marks every chunk named by any snapshot (tree and file data), then
 * deletes packs with no marked chunk that are older than grace_s seconds,
 * after rewriting the index without them. Takes the gc lock.
 */
struct st_repo_gc_report {
	uint64_t packs_kept;
	uint64_t packs_deleted;
	uint64_t packs_young; /* unreferenced but inside the grace period */
	uint64_t bytes_freed;
};
int st_repo_gc(struct st_repo_gc_report *out, struct st_repo *r, int64_t grace_s, bool dry_run,
               struct st_err *err) ST_WARN_UNUSED;

/* Marks every chunk a snapshot references (tree chunks included) through cb. */
int st_repo_snapshot_walk_chunks(struct st_repo *r, const struct st_repo_snapshot *s,
                                 void (*cb)(const uint8_t id[ST_REPO_ID_LEN], const char *path,
                                            void *payload),
                                 void *payload, struct st_err *err) ST_WARN_UNUSED;

#endif
