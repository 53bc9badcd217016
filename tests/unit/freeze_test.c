/*
 * Unit tests for pkg/freeze on real filesystems: two small ext4 images on
 * loop devices and a tmpfs (which cannot be frozen). Needs root; skipped
 * otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pkg/freeze.h"
#include "tests/unit/loopfs_fixture.h"

struct fixture {
	char dir[64];
	char mnt[3][96]; /* ext4, ext4, tmpfs */
	char journal[96];
	bool ready;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	*state = f;
	if (geteuid() != 0 || loopfs_sh("command -v mkfs.ext4 >/dev/null") != 0)
		return 0;
	(void)snprintf(f->dir, sizeof(f->dir), "/tmp/st-freeze-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	for (int i = 0; i < 3; i++) {
		char dir[64];

		memcpy(dir, f->dir, sizeof(dir));
		(void)snprintf(f->mnt[i], sizeof(f->mnt[i]), "%s/m%d", dir, i);
		(void)mkdir(f->mnt[i], 0755);
	}
	{
		char dir[64];

		memcpy(dir, f->dir, sizeof(dir));
		(void)snprintf(f->journal, sizeof(f->journal), "%s/journal.json", dir);
	}
	for (int i = 0; i < 2; i++)
		if (loopfs_sh("truncate -s 32M %s/img%d && mkfs.ext4 -q -F %s/img%d >/dev/null "
		              "2>&1 && "
		              "mount -o loop %s/img%d %s && mkdir -p %s/sub",
		              f->dir, i, f->dir, i, f->dir, i, f->mnt[i], f->mnt[i]) != 0)
			return -1;
	if (loopfs_sh("mount -t tmpfs tmpfs %s", f->mnt[2]) != 0)
		return -1;
	f->ready = true;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->dir[0] != '\0') {
		for (int i = 0; i < 3; i++)
			(void)loopfs_sh("fsfreeze -u %s 2>/dev/null; umount %s 2>/dev/null",
			                f->mnt[i], f->mnt[i]);
		(void)loopfs_sh("rm -rf %s", f->dir);
	}
	free(f);
	return 0;
}

static struct fixture *need(void **state)
{
	struct fixture *f = *state;

	if (!f->ready)
		skip();
	return f;
}

static bool wait_thawed(const char *path, int ms)
{
	for (int i = 0; i < ms / 20; i++) {
		if (!loopfs_frozen(path))
			return true;
		(void)usleep(20000);
	}
	return false;
}

static void test_dedupe(void **state)
{
	struct fixture *f = need(state);
	char sub[128];
	const char *paths[3] = { f->mnt[0], sub, f->mnt[1] };
	struct st_freeze_set *s = NULL;
	struct st_err err = ST_ERR_INIT;

	(void)snprintf(sub, sizeof(sub), "%s/sub", f->mnt[0]);
	assert_int_equal(st_freeze_set_open(&s, paths, 3, &err), 0);
	assert_int_equal(st_freeze_set_count(s), 2);
	assert_string_equal(st_freeze_set_mount(s, 0), f->mnt[0]);
	assert_string_equal(st_freeze_set_mount(s, 1), f->mnt[1]);
	st_freeze_set_free(s);
}

static void test_open_errors(void **state)
{
	struct fixture *f = need(state);
	char missing[128];
	const char *paths[1] = { missing };
	struct st_freeze_set *s = NULL;
	struct st_err err = ST_ERR_INIT;

	(void)snprintf(missing, sizeof(missing), "%s/nope", f->mnt[0]);
	assert_int_equal(st_freeze_set_open(&s, paths, 1, &err), ST_ENOTFOUND);
	assert_null(s);
	assert_non_null(strstr(err.msg, missing));
	st_err_clear(&err);
	assert_int_equal(st_freeze_set_open(&s, paths, 0, &err), ST_EINVAL);
}

static void test_freeze_thaw_journal(void **state)
{
	struct fixture *f = need(state);
	const char *paths[2] = { f->mnt[0], f->mnt[1] };
	struct st_freeze_set *s = NULL;
	struct st_err err = ST_ERR_INIT;
	struct stat st;

	assert_int_equal(st_freeze_set_open(&s, paths, 2, &err), 0);
	assert_int_equal(st_freeze_set_freeze(s, f->journal, &err), 0);
	assert_true(st_freeze_set_frozen(s));
	assert_true(loopfs_frozen(f->mnt[0]));
	assert_true(loopfs_frozen(f->mnt[1]));
	assert_int_equal(stat(f->journal, &st), 0);
	/* A second freeze of the same set is refused, never doubled. */
	assert_int_equal(st_freeze_set_freeze(s, f->journal, &err), ST_EINVAL);
	st_err_clear(&err);
	assert_int_equal(st_freeze_set_thaw(s, f->journal, &err), 0);
	assert_false(st_freeze_set_frozen(s));
	assert_false(loopfs_frozen(f->mnt[0]));
	assert_false(loopfs_frozen(f->mnt[1]));
	assert_int_equal(stat(f->journal, &st), -1);
	assert_true(st_freeze_set_window_ns(s) > 0);
	st_freeze_set_free(s);
}

static void test_all_or_nothing(void **state)
{
	struct fixture *f = need(state);
	const char *paths[3] = { f->mnt[0], f->mnt[1], f->mnt[2] };
	struct st_freeze_set *s = NULL;
	struct st_err err = ST_ERR_INIT;
	struct stat st;

	assert_int_equal(st_freeze_set_open(&s, paths, 3, &err), 0);
	assert_int_equal(st_freeze_set_freeze(s, f->journal, &err), ST_EIO);
	assert_non_null(strstr(err.msg, f->mnt[2]));
	assert_non_null(strstr(err.msg, "does not support freezing"));
	assert_false(st_freeze_set_frozen(s));
	assert_false(loopfs_frozen(f->mnt[0]));
	assert_false(loopfs_frozen(f->mnt[1]));
	assert_int_equal(stat(f->journal, &st), -1);
	st_freeze_set_free(s);
}

static void test_busy(void **state)
{
	struct fixture *f = need(state);
	const char *paths[1] = { f->mnt[1] };
	struct st_freeze_set *s = NULL;
	struct st_err err = ST_ERR_INIT;
	int fd = open(f->mnt[1], O_RDONLY | O_DIRECTORY);

	assert_true(fd >= 0);
	assert_int_equal(ioctl(fd, FIFREEZE, 0), 0);
	assert_int_equal(st_freeze_set_open(&s, paths, 1, &err), 0);
	assert_int_equal(st_freeze_set_freeze(s, NULL, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "already frozen by someone else"));
	/* Freeing a set that never froze must not thaw someone else's freeze. */
	st_freeze_set_free(s);
	assert_true(loopfs_frozen(f->mnt[1]));
	assert_int_equal(ioctl(fd, FITHAW, 0), 0);
	(void)close(fd);
}

static void test_recover(void **state)
{
	struct fixture *f = need(state);
	const char *paths[2] = { f->mnt[0], f->mnt[1] };
	struct st_err err = ST_ERR_INIT;
	unsigned thawed = 0;
	int status = 0;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		/* A process that freezes, then dies without thawing. */
		struct st_freeze_set *s = NULL;

		if (st_freeze_set_open(&s, paths, 2, NULL) < 0 ||
		    st_freeze_set_freeze(s, f->journal, NULL) < 0)
			_exit(1);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(loopfs_frozen(f->mnt[0]));
	assert_int_equal(st_freeze_recover(f->journal, &thawed, &err), 0);
	assert_int_equal(thawed, 2);
	assert_false(loopfs_frozen(f->mnt[0]));
	assert_false(loopfs_frozen(f->mnt[1]));
	assert_int_equal(access(f->journal, F_OK), -1);
	/* No journal: nothing to do. */
	assert_int_equal(st_freeze_recover(f->journal, &thawed, &err), 0);
	assert_int_equal(thawed, 0);
}

static void test_watchdog_deadline(void **state)
{
	struct fixture *f = need(state);
	const char *paths[1] = { f->mnt[0] };
	struct st_freeze_set *s = NULL;
	struct st_freeze_watchdog *w = NULL;
	struct st_err err = ST_ERR_INIT;
	struct pollfd p;

	assert_int_equal(st_freeze_watchdog_start(&w, &err), 0);
	assert_int_equal(st_freeze_set_open(&s, paths, 1, &err), 0);
	assert_int_equal(st_freeze_watchdog_arm(w, s, 7, st_freeze_now_ns() + 300000000LL, &err),
	                 0);
	assert_int_equal(st_freeze_set_freeze(s, NULL, &err), 0);
	/* Extension moves the deadline: still frozen after the first one passed. */
	assert_int_equal(st_freeze_watchdog_extend(w, 7, st_freeze_now_ns() + 1500000000LL, &err),
	                 0);
	assert_int_equal(st_freeze_watchdog_extend(w, 8, st_freeze_now_ns(), &err), ST_EINVAL);
	st_err_clear(&err);
	(void)usleep(500000);
	assert_true(loopfs_frozen(f->mnt[0]));
	p.fd = st_freeze_watchdog_fd(w);
	p.events = POLLIN;
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(st_freeze_watchdog_expired(w), 7);
	assert_false(loopfs_frozen(f->mnt[0]));
	st_freeze_set_forget(s, NULL);
	st_freeze_set_free(s);
	st_freeze_watchdog_free(w);
}

static void test_watchdog_disarm(void **state)
{
	struct fixture *f = need(state);
	const char *paths[1] = { f->mnt[0] };
	struct st_freeze_set *s = NULL;
	struct st_freeze_watchdog *w = NULL;
	struct st_err err = ST_ERR_INIT;

	assert_int_equal(st_freeze_watchdog_start(&w, &err), 0);
	assert_int_equal(st_freeze_set_open(&s, paths, 1, &err), 0);
	assert_int_equal(st_freeze_watchdog_arm(w, s, 1, st_freeze_now_ns() + 200000000LL, &err),
	                 0);
	assert_int_equal(st_freeze_set_freeze(s, NULL, &err), 0);
	assert_int_equal(st_freeze_set_thaw(s, NULL, &err), 0);
	assert_int_equal(st_freeze_watchdog_disarm(w, 1, &err), 0);
	/*
	 * The next freeze is armed as generation 2 (the arm is acknowledged, so
	 * the disarm before it was seen): generation 1's deadline passing must
	 * not thaw it.
	 */
	assert_int_equal(st_freeze_watchdog_arm(w, s, 2, st_freeze_now_ns() + 20000000000LL, &err),
	                 0);
	assert_int_equal(st_freeze_set_freeze(s, NULL, &err), 0);
	(void)usleep(400000);
	assert_true(loopfs_frozen(f->mnt[0]));
	/* Generation 1 may have expired under heavy load (before the re-arm); 2 never. */
	assert_true(st_freeze_watchdog_expired(w) != 2);
	assert_int_equal(st_freeze_set_thaw(s, NULL, &err), 0);
	assert_int_equal(st_freeze_watchdog_disarm(w, 2, &err), 0);
	st_freeze_set_free(s);
	st_freeze_watchdog_free(w);
}

static void test_watchdog_owner_dies(void **state)
{
	struct fixture *f = need(state);
	const char *paths[1] = { f->mnt[1] };
	int status = 0;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct st_freeze_set *s = NULL;
		struct st_freeze_watchdog *w = NULL;

		if (st_freeze_watchdog_start(&w, NULL) < 0 ||
		    st_freeze_set_open(&s, paths, 1, NULL) < 0 ||
		    st_freeze_watchdog_arm(w, s, 1, st_freeze_now_ns() + 60000000000LL, NULL) < 0 ||
		    st_freeze_set_freeze(s, NULL, NULL) < 0)
			_exit(1);
		(void)kill(getpid(), SIGKILL);
		_exit(2);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	/* The deadline is a minute away: only the owner's death can thaw this fast. */
	assert_true(wait_thawed(f->mnt[1], 3000));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dedupe),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_freeze_thaw_journal),
		cmocka_unit_test(test_all_or_nothing),
		cmocka_unit_test(test_busy),
		cmocka_unit_test(test_recover),
		cmocka_unit_test(test_watchdog_deadline),
		cmocka_unit_test(test_watchdog_disarm),
		cmocka_unit_test(test_watchdog_owner_dies),
	};

	return cmocka_run_group_tests_name("freeze", tests, setup, teardown);
}
