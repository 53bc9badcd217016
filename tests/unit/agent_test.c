/*
 * Unit tests for pkg/agent: the JSON API through st_agent_handle, the Unix
 * socket client and server, deadline expiry, start-up recovery and the
 * shutdown thaw, on a small ext4 image on a loop device. Needs root.
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
#include <unistd.h>

#include <cmocka.h>

#include "pkg/agent.h"
#include "tests/unit/loopfs_fixture.h"

static int setup(void **state)
{
	return loopfs_group_setup(state, "");
}

static struct st_agent *agent_new(const struct loopfs *f)
{
	struct st_agent_options o = ST_AGENT_OPTIONS_INIT;
	struct st_agent *a = NULL;
	struct st_err err = ST_ERR_INIT;

	o.state_dir = f->state;
	o.listen_addr = NULL;
	o.volumes[0] = f->vol;
	o.nvolumes = 1;
	assert_int_equal(st_agent_new(&a, &o, &err), 0);
	return a;
}

/* One request; returns the status and leaves the body in *body (caller frees). */
static int req(struct st_agent *a, const char *method, const char *path, const char *body,
               char **out)
{
	const char *ctype = NULL;
	int status = 0;

	assert_int_equal(st_agent_handle(&status, out, &ctype, a, method, path, body,
	                                 body != NULL ? strlen(body) : 0, "unit"),
	                 0);
	return status;
}

static void expect(struct st_agent *a, const char *method, const char *path, const char *body,
                   int status, const char *needle)
{
	char *out = NULL;
	int got = req(a, method, path, body, &out);

	if (got != status || (needle != NULL && strstr(out, needle) == NULL))
		fail_msg("%s %s %s: got %d %s", method, path, body ? body : "", got, out);
	free(out);
}

static void test_api(void **state)
{
	struct loopfs *f = loopfs_need(state);
	struct st_agent *a = agent_new(f);
	char journal[128];

	(void)snprintf(journal, sizeof(journal), "%s/frozen.json", f->state);
	expect(a, "GET", "/v1/status", NULL, 200, "\"frozen\":false");
	expect(a, "GET", "/healthz", NULL, 200, "\"ok\":true");
	expect(a, "POST", "/v1/freeze", "{\"deadlineSeconds\":0}", 400, "between 1 and 600");
	expect(a, "POST", "/v1/freeze", "{\"deadlineSeconds\":\"x\"}", 400, "must be a number");
	expect(a, "POST", "/v1/freeze", "{", 400, NULL);
	expect(a, "POST", "/v1/freeze", "[]", 400, "JSON object");
	expect(a, "POST", "/v1/freeze", "{\"volumes\":[\"nope\"]}", 404, "unknown volume");
	assert_false(loopfs_frozen(f->vol));
	expect(a, "POST", "/v1/freeze", "{\"volumes\":[\"vol\"],\"deadlineSeconds\":60}", 200,
	       "\"frozen\":true");
	assert_true(loopfs_frozen(f->vol));
	assert_int_equal(access(journal, F_OK), 0);
	expect(a, "POST", "/v1/freeze", "{}", 409, "already frozen");
	expect(a, "POST", "/v1/freeze", "{\"extend\":true,\"deadlineSeconds\":90}", 200,
	       "\"extended\":true");
	expect(a, "GET", "/v1/status", NULL, 200, "\"frozenBy\":\"unit\"");
	expect(a, "GET", "/v1/freeze", NULL, 405, NULL);
	expect(a, "GET", "/nope", NULL, 404, NULL);
	expect(a, "GET", "/metrics", NULL, 200, "stasis_agent_frozen 1");
	expect(a, "POST", "/v1/thaw", NULL, 200, "\"thawed\":true");
	assert_false(loopfs_frozen(f->vol));
	assert_int_equal(access(journal, F_OK), -1);
	expect(a, "POST", "/v1/thaw", NULL, 200, "\"thawed\":false");
	expect(a, "GET", "/metrics", NULL, 200, "stasis_agent_freeze_window_seconds_count 1");
	/* A thaw after the deadline cannot vouch for the freeze: 409, and thawed. */
	expect(a, "POST", "/v1/freeze", "{\"deadlineSeconds\":1}", 200, NULL);
	(void)usleep(1100000);
	expect(a, "POST", "/v1/thaw", NULL, 409, "outlived its deadline");
	assert_false(loopfs_frozen(f->vol));
	expect(a, "GET", "/v1/status", NULL, 200, "\"autoThaws\":1");
	/* Freeing the agent while frozen thaws (the shutdown path). */
	expect(a, "POST", "/v1/freeze", "{}", 200, NULL);
	assert_true(loopfs_frozen(f->vol));
	st_agent_free(a);
	assert_false(loopfs_frozen(f->vol));
}

static void test_socket_and_expiry(void **state)
{
	struct loopfs *f = loopfs_need(state);
	struct st_agent *a = agent_new(f);
	struct st_err err = ST_ERR_INIT;
	char sock[128], *body = NULL;
	int status = 0;

	(void)snprintf(sock, sizeof(sock), "%s/agent.sock", f->state);
	assert_int_equal(st_agent_start(a, &err), 0);
	assert_int_equal(st_agent_port(a), 0);
	assert_int_equal(st_agent_call(&status, &body, sock, "POST", "/v1/freeze",
	                               "{\"deadlineSeconds\":1}", 5000, &err),
	                 0);
	assert_int_equal(status, 200);
	free(body);
	assert_true(loopfs_frozen(f->vol));
	/* Nobody thaws: the watchdog does at the deadline and the agent learns of it. */
	(void)usleep(2500000);
	assert_false(loopfs_frozen(f->vol));
	assert_int_equal(st_agent_call(&status, &body, sock, "GET", "/v1/status", NULL, 5000, &err),
	                 0);
	assert_non_null(strstr(body, "\"autoThaws\":1"));
	assert_non_null(strstr(body, "\"frozen\":false"));
	free(body);
	assert_int_equal(st_agent_call(&status, &body, sock, "POST", "/v1/thaw", "{}", 5000, &err),
	                 0);
	assert_int_equal(status, 409);
	free(body);
	st_agent_free(a);
	assert_int_equal(access(sock, F_OK), -1);
	assert_int_equal(st_agent_call(&status, &body, sock, "GET", "/v1/status", NULL, 500, &err),
	                 ST_EIO);
	assert_null(body);
}

static void test_recover_on_start(void **state)
{
	struct loopfs *f = loopfs_need(state);
	struct st_agent *a = NULL;
	char journal[128];
	FILE *j = NULL;
	int fd = open(f->vol, O_RDONLY | O_DIRECTORY);

	/* What a crashed agent leaves: a frozen volume and its journal. */
	(void)snprintf(journal, sizeof(journal), "%s/frozen.json", f->state);
	assert_true(fd >= 0);
	assert_int_equal(ioctl(fd, FIFREEZE, 0), 0);
	(void)close(fd);
	j = fopen(journal, "w");
	assert_non_null(j);
	fprintf(j, "{\"frozen\":[\"%s\"],\"pid\":1}", f->vol);
	(void)fclose(j);
	a = agent_new(f);
	assert_false(loopfs_frozen(f->vol));
	assert_int_equal(access(journal, F_OK), -1);
	expect(a, "GET", "/metrics", NULL, 200, "stasis_agent_auto_thaws_total 1");
	st_agent_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_api),
		cmocka_unit_test(test_socket_and_expiry),
		cmocka_unit_test(test_recover_on_start),
	};

	return cmocka_run_group_tests_name("agent", tests, setup, loopfs_group_teardown);
}
