/*
 * Backing up a directory tree into the repository, and restoring it.
 *
 * Backup walks the tree depth-first with sorted children, records every
 * object's metadata (type, mode, owner, times, xattrs, symlink targets, hard
 * links, device numbers) in the snapshot manifest (pkg/tree.h), and feeds the
 * data regions of regular files (holes are skipped with SEEK_DATA/SEEK_HOLE)
 * through the chunker into the repository writer. Only chunks the repository
 * lacks are compressed, encrypted and uploaded. Memory is constant in file
 * size: one read window of twice the maximum chunk size plus the writer's
 * bounded queue and packs.
 *
 * Restore reads the manifest back, recreates the tree under a target
 * directory and writes file data with a small pool of threads; every chunk is
 * verified (its keyed id recomputed) before it is written, and a failure
 * names the file and the chunk. Ownership, modes, xattrs and times are
 * applied after a file's data is complete, directories' last.
 */
#ifndef ST_PKG_DIRBACKUP_H
#define ST_PKG_DIRBACKUP_H

#include <stdbool.h>
#include <stdint.h>

#include "pkg/repo.h"
#include "pkg/util/err.h"

struct st_dir_progress {
	uint64_t files;
	uint64_t bytes;
	uint64_t total_files; /* 0 when unknown */
	uint64_t total_bytes;
	uint64_t bytes_new; /* backup: plaintext bytes of chunks the repository lacked */
	bool done;
};
/* Called from the walking thread now and then (at most every 100 ms) and once at the end. */
typedef void (*st_dir_progress_cb)(const struct st_dir_progress *p, void *payload);

struct st_dirbackup_options {
	const char *tag;
	const char *label; /* path recorded in the snapshot; NULL: the directory */
	unsigned jobs;     /* compression/encryption workers; 0: 2 */
	bool count_first;  /* walk once for totals so progress can show an ETA */
	st_dir_progress_cb progress;
	void *payload;
};
#define ST_DIRBACKUP_OPTIONS_INIT                \
	{                                        \
		NULL, NULL, 0, false, NULL, NULL \
	}

/*
 * Backs up dir and saves a snapshot; its description is left in *out (the
 * caller disposes it). The index must be loaded. Takes the backup lock.
 */
int st_dirbackup_run(struct st_repo_snapshot *out, struct st_repo *r, const char *dir,
                     const struct st_dirbackup_options *o, struct st_err *err) ST_WARN_UNUSED;

struct st_dirrestore_options {
	unsigned jobs; /* download/verify/write workers; 0: 2 */
	st_dir_progress_cb progress;
	void *payload;
};
#define ST_DIRRESTORE_OPTIONS_INIT \
	{                          \
		0, NULL, NULL      \
	}

/* Restores snapshot s into target (created if missing). The index must be loaded. */
int st_dirrestore_run(struct st_repo *r, const struct st_repo_snapshot *s, const char *target,
                      const struct st_dirrestore_options *o, struct st_err *err) ST_WARN_UNUSED;

#endif
