/*
 * Unit tests for pkg/snapshot: metadata, listing, TTL, mount cycles and the
 * backend interface (a test backend in the csi slot checks that its cut runs
 * inside the freeze), on a small ext4 image on a loop device. The image
 * lives on a filesystem without reflinks, so the image backend's refusal
 * path is covered too. Needs root; skipped otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "pkg/snapshot.h"
#include "tests/unit/loopfs_fixture.h"

static int setup(void **state)
{
	return loopfs_group_setup(state, "mkdir $V/d && echo hello >$V/d/f && ln -s d/f $V/l");
}

static struct st_snapshot_options opts_for(const struct loopfs *f, const char *method)
{
	struct st_snapshot_options o = ST_SNAPSHOT_OPTIONS_INIT;

	o.volume = f->vol;
	o.method = method;
	o.state_dir = f->state;
	o.owner = "unit";
	o.timeout_s = 10;
	return o;
}

static void test_ops_find(void **state)
{
	(void)state;
	assert_string_equal(st_snapshot_ops_find("image")->name, "image");
	assert_true(st_snapshot_ops_find("image")->needs_freeze);
	assert_false(st_snapshot_ops_find("btrfs")->needs_freeze);
	assert_true(st_snapshot_ops_find("copy")->needs_freeze);
	assert_null(st_snapshot_ops_find("csi"));
	assert_null(st_snapshot_ops_find(NULL));
}

static void test_refusals(void **state)
{
	struct loopfs *f = loopfs_need(state);
	struct st_snapshot s;
	struct st_err err = ST_ERR_INIT;
	struct st_snapshot_options o = opts_for(f, "csi");

	assert_int_equal(st_snapshot_create(&s, &o, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "cut by the controller"));
	st_err_clear(&err);
	o.method = "lvm";
	assert_int_equal(st_snapshot_create(&s, &o, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "unknown snapshot method"));
	st_err_clear(&err);
	o.method = "btrfs";
	assert_int_equal(st_snapshot_create(&s, &o, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "not a btrfs subvolume"));
	st_err_clear(&err);
	assert_int_equal(st_snapshot_load(&s, f->state, "../etc", &err), ST_EINVAL);
	st_err_clear(&err);
	assert_int_equal(st_snapshot_load(&s, f->state, "nope", &err), ST_ENOTFOUND);
}

static void test_image_without_reflink(void **state)
{
	struct loopfs *f = loopfs_need(state);
	struct st_snapshot s;
	struct st_err err = ST_ERR_INIT;
	struct st_snapshot_options o = opts_for(f, "image");
	char cmd[256];

	/* The image lives on the ext4 /tmp: FICLONE is refused, nothing is left. */
	assert_int_equal(st_snapshot_create(&s, &o, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "reflink"));
	assert_false(loopfs_frozen(f->vol));
	(void)snprintf(cmd, sizeof(cmd), "test -z \"$(ls %s | grep 'vol.img.image-')\"", f->dir);
	assert_int_equal(loopfs_sh("%s", cmd), 0);
}

static void test_foreign_freeze_left_alone(void **state)
{
	struct loopfs *f = loopfs_need(state);
	struct st_snapshot s;
	struct st_err err = ST_ERR_INIT;
	struct st_snapshot_options o = opts_for(f, "copy");
	int fd = open(f->vol, O_RDONLY | O_DIRECTORY);

	/* Someone else holds the freeze: the snapshot fails and must not thaw it. */
	assert_int_equal(ioctl(fd, FIFREEZE, 0), 0);
	assert_int_equal(st_snapshot_create(&s, &o, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "already frozen by someone else"));
	(void)usleep(200000);
	assert_true(loopfs_frozen(f->vol));
	assert_int_equal(ioctl(fd, FITHAW, 0), 0);
	(void)close(fd);
}

static int count_cb(const struct st_snapshot *s, void *payload)
{
	(void)s;
	(*(int *)payload)++;
	return 0;
}

static void test_copy_lifecycle(void **state)
{
	struct loopfs *f = loopfs_need(state);
	struct st_snapshot s, l;
	struct st_err err = ST_ERR_INIT;
	struct st_snapshot_options o = opts_for(f, "copy");
	struct json_object *j = NULL;
	char path[4200], id[64];
	int n = 0;

	o.mount = true;
	assert_int_equal(st_snapshot_create(&s, &o, &err), 0);
	memcpy(id, s.id, sizeof(id));
	assert_non_null(strstr(s.id, "copy-"));
	assert_true(s.freeze_ns > 0);
	assert_string_equal(s.fstype, "ext4");
	assert_false(loopfs_frozen(f->vol));
	(void)snprintf(path, sizeof(path), "%s/d/f", s.mountpoint);
	assert_int_equal(access(path, R_OK), 0);
	assert_int_equal(access(path, W_OK), -1); /* read-only mount */
	assert_int_equal(st_snapshot_load(&l, f->state, id, &err), 0);
	assert_string_equal(l.mountpoint, s.mountpoint);
	assert_string_equal(l.owner, "unit");
	assert_true(l.expires > l.created);
	j = st_snapshot_to_json(&l);
	assert_string_equal(json_object_get_string(json_object_object_get(j, "method")), "copy");
	json_object_put(j);
	assert_int_equal(st_snapshot_list(f->state, count_cb, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(st_snapshot_unmount(f->state, id, &err), 0);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(st_snapshot_mount(&l, f->state, id, NULL, &err), 0);
	(void)snprintf(path, sizeof(path), "%s/l", l.mountpoint);
	assert_int_equal(access(path, R_OK), 0); /* the symlink was copied */
	assert_int_equal(st_snapshot_delete(f->state, id, &err), 0);
	assert_int_equal(access(l.path, F_OK), -1);
	n = 0;
	assert_int_equal(st_snapshot_list(f->state, count_cb, &n, &err), 0);
	assert_int_equal(n, 0);
}

static void test_gc(void **state)
{
	struct loopfs *f = loopfs_need(state);
	struct st_snapshot a, b;
	struct st_err err = ST_ERR_INIT;
	struct st_snapshot_options o = opts_for(f, "copy");
	unsigned removed = 0;
	int n = 0;

	o.ttl_s = 60;
	assert_int_equal(st_snapshot_create(&a, &o, &err), 0);
	o.ttl_s = 0;
	assert_int_equal(st_snapshot_create(&b, &o, &err), 0);
	assert_int_equal(st_snapshot_gc(f->state, (int64_t)time(NULL), &removed, &err), 0);
	assert_int_equal(removed, 0);
	assert_int_equal(st_snapshot_gc(f->state, (int64_t)time(NULL) + 61, &removed, &err), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(access(a.path, F_OK), -1);
	assert_int_equal(st_snapshot_list(f->state, count_cb, &n, &err), 0);
	assert_int_equal(n, 1); /* ttl 0 never expires */
	assert_int_equal(st_snapshot_delete(f->state, b.id, &err), 0);
}

/* A backend in the csi slot: its cut must see the volume frozen. */
struct probe {
	bool frozen_during_cut;
	const char *vol;
};
static struct probe probe;

static int probe_prepare(struct st_snapshot *s, void **ctx, const struct st_snapshot_options *o,
                         struct st_err *err)
{
	(void)err;
	*ctx = &probe;
	(void)snprintf(s->path, sizeof(s->path), "%s/probe-%s", o->state_dir, s->id);
	return 0;
}

static int probe_cut(struct st_snapshot *s, void *ctx, struct st_err *err)
{
	struct probe *p = ctx;

	(void)s;
	(void)err;
	p->frozen_during_cut = loopfs_frozen(p->vol);
	return 0;
}

static void probe_finish(void *ctx)
{
	(void)ctx;
}

static int probe_remove(const struct st_snapshot *s, struct st_err *err)
{
	(void)s;
	(void)err;
	return 0;
}

static void test_external_backend(void **state)
{
	struct loopfs *f = loopfs_need(state);
	const struct st_snapshot_ops ops = {
		.name = "csi",
		.needs_freeze = true,
		.prepare = probe_prepare,
		.cut = probe_cut,
		.finish = probe_finish,
		.remove = probe_remove,
	};
	struct st_snapshot_options o = opts_for(f, NULL);
	struct st_snapshot s;
	struct st_err err = ST_ERR_INIT;

	probe.vol = f->vol;
	o.ops = &ops;
	assert_int_equal(st_snapshot_create(&s, &o, &err), 0);
	assert_true(probe.frozen_during_cut);
	assert_false(loopfs_frozen(f->vol));
	assert_string_equal(s.method, "csi");
	assert_true(s.freeze_ns >= s.cut_ns);
	/* The caller already holds the freeze: cut only. */
	o.caller_froze = true;
	assert_int_equal(st_snapshot_create(&s, &o, &err), 0);
	assert_false(probe.frozen_during_cut);
	assert_int_equal(s.freeze_ns, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ops_find),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_image_without_reflink),
		cmocka_unit_test(test_foreign_freeze_left_alone),
		cmocka_unit_test(test_copy_lifecycle),
		cmocka_unit_test(test_gc),
		cmocka_unit_test(test_external_backend),
	};

	return cmocka_run_group_tests_name("snapshot", tests, setup, loopfs_group_teardown);
}
