/*
 * Test fixture shared by the agent and snapshot unit tests: a 32 MiB ext4
 * image on a loop device mounted at <dir>/vol, and a state dir <dir>/state
 * on the enclosing filesystem. Needs root and mkfs.ext4; ready stays false
 * otherwise and the tests skip. Included by test files only.
 */
#ifndef ST_TESTS_UNIT_LOOPFS_FIXTURE_H
#define ST_TESTS_UNIT_LOOPFS_FIXTURE_H

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "pkg/util/err.h"

struct loopfs {
	char dir[64];
	char vol[96];
	char state[96];
	bool ready;
};

static int loopfs_sh(const char *fmt, ...) ST_PRINTF(1, 2);
static int loopfs_sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

/* Builds the fixture; extra (may be "") is a shell command run with $V set to the volume. */
__attribute__((unused)) static int loopfs_setup(struct loopfs *f, const char *extra)
{
	char dir[64];

	if (geteuid() != 0 || loopfs_sh("command -v mkfs.ext4 >/dev/null") != 0)
		return 0;
	(void)snprintf(f->dir, sizeof(f->dir), "/tmp/st-loopfs-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	memcpy(dir, f->dir, sizeof(dir));
	(void)snprintf(f->vol, sizeof(f->vol), "%s/vol", dir);
	(void)snprintf(f->state, sizeof(f->state), "%s/state", dir);
	if (loopfs_sh("mkdir -p %s %s && truncate -s 32M %s/vol.img && mkfs.ext4 -q -F %s/vol.img "
	              ">/dev/null 2>&1 && mount -o loop %s/vol.img %s && V=%s && %s",
	              f->vol, f->state, dir, dir, dir, f->vol, f->vol,
	              extra[0] != '\0' ? extra : "true") != 0)
		return -1;
	f->ready = true;
	return 0;
}

/* Thaws and unmounts everything under the fixture's directory, then removes it. */
__attribute__((unused)) static void loopfs_teardown(const struct loopfs *f)
{
	if (f->dir[0] != '\0')
		(void)loopfs_sh("for m in $(findmnt -rn -o TARGET | grep '^%s/' | sort -r); do "
		                "fsfreeze -u $m 2>/dev/null; umount $m; done; rm -rf %s",
		                f->dir, f->dir);
}

/* Whether path's filesystem is frozen (a freeze attempt answers EBUSY). */
static bool loopfs_frozen(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY);
	bool busy = false;

	if (ioctl(fd, FIFREEZE, 0) == 0)
		(void)ioctl(fd, FITHAW, 0);
	else
		busy = errno == EBUSY;
	(void)close(fd);
	return busy;
}

/*
 * cmocka group fixtures around loopfs_setup/teardown: *state is a heap
 * struct loopfs; loopfs_need() skips a test when the fixture is not ready.
 * The including file must include <cmocka.h> first.
 */
__attribute__((unused)) static int loopfs_group_setup(void **state, const char *extra)
{
	struct loopfs *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	*state = f;
	return loopfs_setup(f, extra);
}

__attribute__((unused)) static int loopfs_group_teardown(void **state)
{
	struct loopfs *f = *state;

	loopfs_teardown(f);
	free(f);
	return 0;
}

__attribute__((unused)) static struct loopfs *loopfs_need(void **state)
{
	struct loopfs *f = *state;

	if (!f->ready)
		skip();
	return f;
}

#endif
