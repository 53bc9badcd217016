/*
 * Filesystem quiescing: syncfs, FIFREEZE, FITHAW, and the machinery that
 * makes a freeze impossible to leave behind.
 *
 * A freeze set is built from volume paths (directories). Each path is opened
 * O_RDONLY|O_DIRECTORY and paths on the same filesystem (st_dev) are merged,
 * so a filesystem is frozen once. st_freeze_set_freeze() syncs every
 * filesystem while it is still writable, records the mount points in a
 * journal file, then freezes them in order; if one fails, the ones already
 * frozen are thawed and the error names the failing volume (all or nothing).
 *
 * Three independent guards thaw a forgotten freeze:
 *   - the journal (written before the first FIFREEZE, removed after the last
 *     FITHAW), replayed by st_freeze_recover() when a crashed owner restarts;
 *   - the watchdog, a forked child process holding its own descriptors on the
 *     frozen filesystems: it thaws when the deadline passes (even if the
 *     parent is stopped or stuck) and when its parent dies (pipe EOF);
 *   - the caller's own signal handling (see pkg/agent.h).
 * The journal and the watchdog never touch the frozen filesystems except to
 * open their root directory and thaw them.
 *
 * Thread safety: a freeze set or watchdog is used by one thread at a time.
 */
#ifndef ST_PKG_FREEZE_H
#define ST_PKG_FREEZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pkg/util/err.h"

/* Most volumes in one freeze set. */
#define ST_FREEZE_MAX 64

struct st_freeze_set;
struct st_freeze_watchdog;

/* The mount holding a path, from /proc/self/mountinfo. */
struct st_mount_info {
	char mount[4096];  /* mount point */
	char devkey[32];   /* "major:minor" of the mounted device */
	char fstype[32];   /* "ext4", "xfs", "btrfs", ... */
	char source[4096]; /* mount source, e.g. "/dev/loop3" */
};

/* Fills *out for the mount holding path (the longest matching mount point). */
int st_freeze_mount_info(struct st_mount_info *out, const char *path,
                         struct st_err *err) ST_WARN_UNUSED;

/*
 * Opens every path (a directory on the filesystem to freeze) and merges the
 * ones sharing a filesystem. Errors name the path. *out is owned by the
 * caller (st_freeze_set_free). An empty list is ST_EINVAL.
 */
int st_freeze_set_open(struct st_freeze_set **out, const char *const *paths, size_t n,
                       struct st_err *err) ST_WARN_UNUSED;

/*
 * Thaws whatever this set still holds frozen (logging failures), closes the
 * descriptors and frees; NULL is a no-op.
 */
void st_freeze_set_free(struct st_freeze_set *s);

/* Number of distinct filesystems in the set. */
size_t st_freeze_set_count(const struct st_freeze_set *s);

/* Mount point of filesystem i (from /proc/self/mountinfo); borrowed. */
const char *st_freeze_set_mount(const struct st_freeze_set *s, size_t i);

/* The first volume path given for filesystem i; borrowed. */
const char *st_freeze_set_path(const struct st_freeze_set *s, size_t i);

/* Whether the set currently holds its filesystems frozen. */
bool st_freeze_set_frozen(const struct st_freeze_set *s);

/*
 * syncfs on every filesystem now; the next st_freeze_set_freeze then skips
 * its own syncfs (lets a caller overlap the sync with other work).
 */
void st_freeze_set_sync(struct st_freeze_set *s);

/*
 * syncfs (unless st_freeze_set_sync just ran), then FIFREEZE every filesystem. journal (NULL for
 * none) is a file outside every volume that lists the mount points while they are frozen; it is
 * written and fsync'd before the first FIFREEZE. A filesystem already frozen by someone else
 * (EBUSY) or that cannot be frozen (EOPNOTSUPP, EINVAL) fails the whole request, and nothing stays
 * frozen. The window starts at the first FIFREEZE (see st_freeze_set_window_ns).
 */
int st_freeze_set_freeze(struct st_freeze_set *s, const char *journal,
                         struct st_err *err) ST_WARN_UNUSED;

/*
 * FITHAW every frozen filesystem (one not frozen any more, e.g. thawed by the
 * watchdog, counts as thawed), then removes the journal. Tries every
 * filesystem even after a failure; the first failure is reported.
 */
int st_freeze_set_thaw(struct st_freeze_set *s, const char *journal,
                       struct st_err *err) ST_WARN_UNUSED;

/*
 * Forgets the frozen state without thawing (the watchdog already thawed) and
 * removes the journal.
 */
void st_freeze_set_forget(struct st_freeze_set *s, const char *journal);

/* Nanoseconds from the first FIFREEZE to the last FITHAW of the last cycle. */
int64_t st_freeze_set_window_ns(const struct st_freeze_set *s);

struct json_object;

/*
 * Writes obj to path atomically (temporary file, fsync, rename), mode 0600.
 * Used for the journal and for other small state files (snapshot metadata).
 */
int st_freeze_json_save(const char *path, struct json_object *obj,
                        struct st_err *err) ST_WARN_UNUSED;

/* Monotonic nanoseconds (CLOCK_MONOTONIC). */
int64_t st_freeze_now_ns(void);

/*
 * Opens path and FITHAWs its filesystem. *was_frozen_out (may be NULL) tells
 * whether it was frozen. A filesystem that was not frozen is a success.
 */
int st_freeze_thaw_path(const char *path, bool *was_frozen_out, struct st_err *err) ST_WARN_UNUSED;

/*
 * Replays a journal left by a crashed owner: thaws every mount point listed
 * and removes the file. A missing journal is a success with *thawed_out = 0.
 */
int st_freeze_recover(const char *journal, unsigned *thawed_out, struct st_err *err) ST_WARN_UNUSED;

/*
 * Starts the watchdog process (fork). It ignores SIGINT/SIGTERM/SIGHUP and
 * exits after thawing whatever is armed when its parent closes the pipe or
 * dies. *out is owned by the caller (st_freeze_watchdog_free).
 */
int st_freeze_watchdog_start(struct st_freeze_watchdog **out, struct st_err *err) ST_WARN_UNUSED;

/*
 * Arms the watchdog for generation gen: it opens the mount points of s
 * itself and thaws them at deadline_ns (CLOCK_MONOTONIC) unless disarmed.
 * Returns once the watchdog acknowledged, so a dead watchdog fails the arm
 * before anything is frozen. Call before st_freeze_set_freeze.
 */
int st_freeze_watchdog_arm(struct st_freeze_watchdog *w, const struct st_freeze_set *s,
                           uint64_t gen, int64_t deadline_ns, struct st_err *err) ST_WARN_UNUSED;

/*
 * st_freeze_watchdog_arm in two steps, so the watchdog's round trip can
 * overlap st_freeze_set_sync: send the arm, sync, then wait for the
 * acknowledgement before freezing.
 */
int st_freeze_watchdog_arm_send(struct st_freeze_watchdog *w, const struct st_freeze_set *s,
                                uint64_t gen, int64_t deadline_ns,
                                struct st_err *err) ST_WARN_UNUSED;
int st_freeze_watchdog_arm_wait(struct st_freeze_watchdog *w, uint64_t gen,
                                struct st_err *err) ST_WARN_UNUSED;

/* Moves the deadline of generation gen; acknowledged like arm. */
int st_freeze_watchdog_extend(struct st_freeze_watchdog *w, uint64_t gen, int64_t deadline_ns,
                              struct st_err *err) ST_WARN_UNUSED;

/*
 * Disarms generation gen (after the caller thawed); sent, not waited for
 * (messages are handled in order, so a later arm sees it first). A failure
 * only means the watchdog is gone, which callers may ignore on cleanup paths.
 */
int st_freeze_watchdog_disarm(struct st_freeze_watchdog *w, uint64_t gen, struct st_err *err);

/*
 * Descriptor readable when the watchdog reports an expiry; then call
 * st_freeze_watchdog_expired(), which returns the generation it thawed
 * (0 when nothing was pending).
 */
int st_freeze_watchdog_fd(const struct st_freeze_watchdog *w);
uint64_t st_freeze_watchdog_expired(struct st_freeze_watchdog *w);

/* Whether the watchdog process still runs (reaps it once it exited). */
bool st_freeze_watchdog_alive(struct st_freeze_watchdog *w);

/* The watchdog's process id (status, tests). */
pid_t st_freeze_watchdog_pid(const struct st_freeze_watchdog *w);

/* Closes the pipe (the watchdog thaws what is armed and exits), reaps it, frees. */
void st_freeze_watchdog_free(struct st_freeze_watchdog *w);

#endif
