/*
 * Tests for pkg/quiesce against real stasis-agent daemons: three agents (the
 * stasis-agent binary of this build, found next to this test's directory)
 * listen on 127.0.1.2, 127.0.1.3 and 127.0.1.4 on one port, as pods of a
 * cluster do, each with its own ext4 volume on a loop device, serving the
 * certificate `stasis certs` makes and asking for client certificates from
 * its CA. A fourth address accepts TCP connections and never answers.
 * Freezes are checked twice: through each agent's Unix socket (/v1/status)
 * and in the kernel (FIFREEZE on a frozen filesystem answers EBUSY).
 * Needs root, loop devices and mkfs.ext4; the agent tests skip otherwise,
 * saying why. The group teardown stops the agents by PID, thaws, unmounts
 * (which detaches the loop devices) and removes everything.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "pkg/agent.h"
#include "pkg/quiesce.h"
#include "pkg/util/json.h"
#include "pkg/x509.h"

#define NAGENTS 3

struct agent {
	char ip[24];
	char name[16]; /* volume name and pod suffix: a, b, c */
	char vol[128];
	char state[128];
	char sock[160];
	char log[160];
	pid_t pid;
};

struct fx {
	bool certs;    /* certificates made (enough for the input tests) */
	bool ready;    /* agents running */
	char why[160]; /* why not ready */
	char dir[64];
	char good[96];  /* `stasis certs` bundle the agents trust */
	char other[96]; /* a bundle from another CA */
	char bin[PATH_MAX];
	uint16_t port; /* the agents' port, on every address */
	struct agent a[NAGENTS];
	int silent_fd; /* listens on 127.0.1.5 and never accepts */
	uint16_t silent_port;
};

static struct fx *fx_need(void **state)
{
	struct fx *f = *state;

	if (!f->ready) {
		fprintf(stderr, "skipped: %s\n", f->why);
		skip();
	}
	return f;
}

static int sh(const char *fmt, ...) ST_PRINTF(1, 2);
static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	(void)nanosleep(&ts, NULL);
}

static int make_bundle(const char *dir)
{
	struct st_x509_bundle_options o = ST_X509_BUNDLE_OPTIONS_INIT;
	struct st_err err = ST_ERR_INIT;

	o.out_dir = dir;
	if (st_x509_bundle_create(NULL, &o, &err) < 0) {
		fprintf(stderr, "certificates in %s: %s\n", dir, st_err_text(&err));
		return -1;
	}
	return 0;
}

/* Binds a TCP socket to ip:port (0: any); returns the fd and the port in *port. */
static int bind_tcp(const char *ip, uint16_t *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(*port) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || inet_pton(AF_INET, ip, &sa.sin_addr) != 1 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
		if (fd >= 0)
			(void)close(fd);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

/* A port free on every agent address at once, as one agentPort serves all pods. */
static uint16_t common_port(const struct fx *f)
{
	for (int attempt = 0; attempt < 50; attempt++) {
		int fds[NAGENTS];
		uint16_t port = 0;
		bool ok = true;

		for (int i = 0; i < NAGENTS; i++) {
			fds[i] = bind_tcp(f->a[i].ip, &port);
			ok = ok && fds[i] >= 0;
		}
		for (int i = 0; i < NAGENTS; i++)
			if (fds[i] >= 0)
				(void)close(fds[i]);
		if (ok)
			return port;
	}
	return 0;
}

static int agent_call(int *status, struct json_object **out, const struct agent *a,
                      const char *method, const char *path, const char *body)
{
	struct st_err err = ST_ERR_INIT;
	char *text = NULL;
	int rc = st_agent_call(status, &text, a->sock, method, path, body, 5000, &err);

	*out = NULL;
	if (rc == 0 && text != NULL)
		rc = st_json_parse(out, text, strlen(text), 1u << 20, "status", &err);
	free(text);
	return rc;
}

static bool kernel_frozen(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY);
	bool busy = false;

	if (fd < 0)
		return false;
	if (ioctl(fd, FIFREEZE, 0) == 0)
		(void)ioctl(fd, FITHAW, 0);
	else
		busy = errno == EBUSY;
	(void)close(fd);
	return busy;
}

/* Whether agent i is frozen; its status and the kernel must agree. */
static bool agent_frozen(const struct fx *f, int i)
{
	struct json_object *st = NULL;
	int status = 0;
	bool frozen;

	assert_int_equal(agent_call(&status, &st, &f->a[i], "GET", "/v1/status", NULL), 0);
	assert_int_equal(status, 200);
	frozen = st_json_get_bool(st, "frozen", false);
	json_object_put(st);
	if (frozen != kernel_frozen(f->a[i].vol))
		fail_msg("agent %s: status frozen=%d but the kernel says %d", f->a[i].name, frozen,
		         !frozen);
	return frozen;
}

static void thaw_directly(const struct fx *f, int i)
{
	struct json_object *ans = NULL;
	int status = 0;

	if (agent_call(&status, &ans, &f->a[i], "POST", "/v1/thaw", "{}") == 0)
		json_object_put(ans);
}

static int agent_start(struct fx *f, struct agent *a)
{
	char port[8], cert[160], key[160], ca[160];
	pid_t pid;

	(void)snprintf(port, sizeof(port), "%u", f->port);
	(void)snprintf(cert, sizeof(cert), "%s/%s", f->good, ST_X509_SERVER_CRT);
	(void)snprintf(key, sizeof(key), "%s/%s", f->good, ST_X509_SERVER_KEY);
	(void)snprintf(ca, sizeof(ca), "%s/%s", f->good, ST_X509_CA_CRT);
	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		int fd = open(a->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		/* Gone with the test, even when it is killed before its teardown. */
		(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (fd >= 0) {
			(void)dup2(fd, 1);
			(void)dup2(fd, 2);
		}
		execl(f->bin, "stasis-agent", "serve", "--state-dir", a->state, "--volume", a->vol,
		      "--listen", a->ip, "--port", port, "--cert", cert, "--key", key,
		      "--client-ca", ca, (char *)NULL);
		_exit(127);
	}
	a->pid = pid;
	for (int i = 0; i < 200; i++) {
		struct json_object *ans = NULL;
		int status = 0, fd;
		uint16_t p = 0;

		if (waitpid(pid, NULL, WNOHANG) == pid) {
			a->pid = 0;
			break;
		}
		if (agent_call(&status, &ans, a, "GET", "/healthz", NULL) == 0 && status == 200) {
			json_object_put(ans);
			ans = NULL;
			/* Serving HTTPS too: its address:port is taken. */
			p = f->port;
			if ((fd = bind_tcp(a->ip, &p)) < 0)
				return 0;
			(void)close(fd);
		}
		json_object_put(ans);
		sleep_ms(50);
	}
	(void)sh("cat %s >&2", a->log);
	return -1;
}

static void agent_stop(struct agent *a)
{
	if (a->pid <= 0)
		return;
	(void)kill(a->pid, SIGCONT);
	(void)kill(a->pid, SIGTERM);
	for (int i = 0; i < 100; i++) {
		if (waitpid(a->pid, NULL, WNOHANG) == a->pid) {
			a->pid = 0;
			return;
		}
		sleep_ms(50);
	}
	(void)kill(a->pid, SIGKILL);
	(void)waitpid(a->pid, NULL, 0);
	a->pid = 0;
}

static int find_agent(struct fx *f)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	if (n <= 0)
		return -1;
	self[n] = '\0';
	/* build/<variant>/tests/quiesce_test -> build/<variant>/bin/stasis-agent */
	if ((slash = strrchr(self, '/')) == NULL)
		return -1;
	*slash = '\0';
	(void)snprintf(f->bin, sizeof(f->bin), "%.4000s/../bin/stasis-agent", self);
	return access(f->bin, X_OK);
}

static int volumes_and_agents(struct fx *f)
{
	for (int i = 0; i < NAGENTS; i++) {
		struct agent *a = &f->a[i];

		if (sh("mkdir -p %s %s && truncate -s 32M %s.img && mkfs.ext4 -q -F %s.img "
		       ">/dev/null 2>&1 && mount -o loop %s.img %s",
		       a->vol, a->state, a->vol, a->vol, a->vol, a->vol) != 0) {
			(void)snprintf(f->why, sizeof(f->why), "cannot make the volume %s", a->vol);
			return -1;
		}
	}
	if ((f->port = common_port(f)) == 0) {
		(void)snprintf(f->why, sizeof(f->why), "no port free on 127.0.1.2-4");
		return -1;
	}
	for (int i = 0; i < NAGENTS; i++) {
		if (agent_start(f, &f->a[i]) < 0) {
			(void)snprintf(f->why, sizeof(f->why), "agent %s did not start",
			               f->a[i].name);
			return -1;
		}
	}
	f->silent_port = 0;
	if ((f->silent_fd = bind_tcp("127.0.1.5", &f->silent_port)) < 0 ||
	    listen(f->silent_fd, 16) != 0)
		return -1;
	return 0;
}

static void cleanup(struct fx *f)
{
	for (int i = 0; i < NAGENTS; i++)
		agent_stop(&f->a[i]);
	if (f->silent_fd >= 0)
		(void)close(f->silent_fd);
	if (f->dir[0] != '\0')
		(void)sh("for m in $(findmnt -rn -o TARGET | grep '^%s/' | sort -r); do "
		         "fsfreeze -u $m 2>/dev/null; umount $m || umount -l $m; done; rm -rf %s",
		         f->dir, f->dir);
	free(f);
}

static int group_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char dir[64];

	if (f == NULL)
		return -1;
	*state = f;
	f->silent_fd = -1;
	(void)snprintf(f->dir, sizeof(f->dir), "/tmp/st-quiesce-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	(void)snprintf(f->good, sizeof(f->good), "%s/good", f->dir);
	(void)snprintf(f->other, sizeof(f->other), "%s/other", f->dir);
	if (make_bundle(f->good) < 0 || make_bundle(f->other) < 0)
		return -1;
	f->certs = true;
	memcpy(dir, f->dir, sizeof(dir));
	for (int i = 0; i < NAGENTS; i++) {
		struct agent *a = &f->a[i];
		char c = (char)('a' + i);

		(void)snprintf(a->ip, sizeof(a->ip), "127.0.1.%d", 2 + i);
		(void)snprintf(a->name, sizeof(a->name), "%c", c);
		(void)snprintf(a->vol, sizeof(a->vol), "%s/vol-%c", dir, c);
		(void)snprintf(a->state, sizeof(a->state), "%s/state-%c", dir, c);
		(void)snprintf(a->sock, sizeof(a->sock), "%s/state-%c/agent.sock", dir, c);
		(void)snprintf(a->log, sizeof(a->log), "%s/agent-%c.log", dir, c);
	}
	if (geteuid() != 0)
		(void)snprintf(f->why, sizeof(f->why), "needs root (loop devices, FIFREEZE)");
	else if (sh("command -v mkfs.ext4 >/dev/null") != 0)
		(void)snprintf(f->why, sizeof(f->why), "mkfs.ext4 is not installed");
	else if (find_agent(f) != 0)
		(void)snprintf(f->why, sizeof(f->why), "stasis-agent is not built (%.100s)",
		               f->bin);
	else if (volumes_and_agents(f) == 0)
		f->ready = true;
	else {
		/* Everything needed is here, so this is a failure, not a skip. */
		fprintf(stderr, "quiesce fixture: %s\n", f->why);
		cleanup(f);
		*state = NULL;
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	if (*state != NULL)
		cleanup(*state);
	*state = NULL;
	return 0;
}

/* Every test starts and ends with nothing frozen. */
static int thawed(void **state)
{
	struct fx *f = *state;

	for (int i = 0; f->ready && i < NAGENTS; i++)
		thaw_directly(f, i);
	return 0;
}

/* ---- helpers ------------------------------------------------------------------------------ */

static void target_set(struct st_quiesce_target *t, const char *pod, const char *ip, uint16_t port)
{
	memset(t, 0, sizeof(*t));
	(void)snprintf(t->namespace, sizeof(t->namespace), "test");
	(void)snprintf(t->pod, sizeof(t->pod), "%s", pod);
	(void)snprintf(t->addr, sizeof(t->addr), "%s", ip);
	t->port = port;
}

/* Targets 0..2 are the agents (pods test/pod-a..c). */
static void agent_targets(struct st_quiesce_target *t, const struct fx *f)
{
	for (int i = 0; i < NAGENTS; i++) {
		char pod[16];

		(void)snprintf(pod, sizeof(pod), "pod-%s", f->a[i].name);
		target_set(&t[i], pod, f->a[i].ip, f->port);
	}
}

static void opts_set(struct st_quiesce_options *o, char (*files)[160], const char *ca_dir,
                     const char *client_dir)
{
	(void)snprintf(files[0], 160, "%s/%s", ca_dir, ST_X509_CA_CRT);
	(void)snprintf(files[1], 160, "%s/%s", client_dir, ST_X509_CLIENT_CRT);
	(void)snprintf(files[2], 160, "%s/%s", client_dir, ST_X509_CLIENT_KEY);
	o->tls.ca_file = files[0];
	o->tls.cert_file = files[1];
	o->tls.key_file = files[2];
	o->deadline_s = 30;
	o->timeout_ms = 10000;
}

/* A session over every agent, frozen; the caller thaws and frees it. */
static struct st_quiesce *freeze_all(struct st_quiesce_target *t, const struct fx *f,
                                     const struct st_quiesce_options *o)
{
	struct st_quiesce *q = NULL;
	struct st_err err = ST_ERR_INIT;

	agent_targets(t, f);
	assert_int_equal(st_quiesce_new(&q, t, NAGENTS, o, &err), 0);
	if (st_quiesce_freeze(q, &err) != 0)
		fail_msg("freeze: %s", err.msg);
	return q;
}

static void expect_in(const char *text, const char *needle)
{
	if (strstr(text, needle) == NULL)
		fail_msg("\"%s\" not found in: %s", needle, text);
}

static void none_frozen(const struct fx *f)
{
	for (int i = 0; i < NAGENTS; i++)
		if (agent_frozen(f, i))
			fail_msg("agent %s is still frozen", f->a[i].name);
}

/* Established TCP connections from this process's side to ip:port. */
static int connections_to(const char *ip, uint16_t port)
{
	char cmd[160], line[64];
	FILE *p;
	int n = -1;

	(void)snprintf(cmd, sizeof(cmd), "ss -Htn state established dst %s:%u | wc -l", ip, port);
	if ((p = popen(cmd, "r")) == NULL)
		return -1;
	if (fgets(line, sizeof(line), p) != NULL)
		n = (int)strtol(line, NULL, 10);
	(void)pclose(p);
	return n;
}

/* ---- tests -------------------------------------------------------------------------------- */

/* The default name is one the serving certificate of `stasis certs` carries. */
static void test_server_name_matches_certs(void **state)
{
	struct fx *f = *state;
	struct st_x509_info info = { 0 };
	struct st_err err = ST_ERR_INIT;
	char path[160];

	assert_true(f->certs);
	(void)snprintf(path, sizeof(path), "%s/%s", f->good, ST_X509_SERVER_CRT);
	assert_int_equal(st_x509_info_load(&info, path, &err), 0);
	assert_true(st_x509_info_has_dns(&info, ST_QUIESCE_SERVER_NAME));
	assert_string_equal(ST_QUIESCE_SERVER_NAME, ST_X509_DEFAULT_SERVICE);
	st_x509_info_dispose(&info);
}

static void expect_new_fails(struct st_quiesce_target *t, size_t n,
                             const struct st_quiesce_options *o, int code, const char *needle)
{
	struct st_quiesce *q = NULL;
	struct st_err err = ST_ERR_INIT;

	assert_int_equal(st_quiesce_new(&q, t, n, o, &err), code);
	assert_null(q);
	expect_in(err.msg, needle);
}

static void test_bad_input(void **state)
{
	struct fx *f = *state;
	struct st_quiesce_options o = ST_QUIESCE_OPTIONS_INIT;
	struct st_quiesce_target t[2];
	char files[3][160];
	char bad[] = "[\"data\",7]";

	assert_true(f->certs);
	opts_set(&o, files, f->good, f->good);
	target_set(&t[0], "pod-a", "127.0.1.2", 9443);
	target_set(&t[1], "pod-b", "10.0.0.300", 9443);
	expect_new_fails(t, 2, &o, ST_EINVAL, "test/pod-b: \"10.0.0.300\" is not an IP address");
	target_set(&t[1], "pod-b", "127.0.1.2", 9443);
	expect_new_fails(t, 2, &o, ST_EINVAL, "test/pod-a and test/pod-b name the same agent");
	target_set(&t[1], "pod-b", "fd00::5", 0);
	expect_new_fails(t, 2, &o, ST_EINVAL, "test/pod-b: the agent port is 0");
	target_set(&t[1], "pod-b", "fd00::5", 9443);
	t[1].volumes = bad;
	expect_new_fails(t, 2, &o, ST_EINVAL, "test/pod-b: volumes");
	t[1].volumes = NULL;
	t[1].pod[0] = '\0';
	expect_new_fails(t, 2, &o, ST_EINVAL, "namespace and pod are required");
	target_set(&t[1], "pod-b", "fd00::5", 9443);
	o.tls.key_file = "/nonexistent/client.key";
	expect_new_fails(t, 2, &o, ST_ENOTFOUND, "tls.key_file /nonexistent/client.key");
	opts_set(&o, files, f->good, f->good);
	o.tls.server_name = "bad name";
	expect_new_fails(t, 2, &o, ST_EINVAL, "tls.server_name");
	o.tls.server_name = NULL;
	o.timeout_ms = -1;
	expect_new_fails(t, 2, &o, ST_EINVAL, "timeout");
	o.timeout_ms = 0;
	expect_new_fails(t, ST_QUIESCE_MAX_TARGETS + 1, &o, ST_EINVAL, "at most");

	/* An empty session freezes and thaws nothing, successfully. */
	struct st_quiesce *q = NULL;
	struct st_err err = ST_ERR_INIT;

	assert_int_equal(st_quiesce_new(&q, t, 0, &o, &err), 0);
	assert_int_equal(st_quiesce_freeze(q, &err), 0);
	assert_int_equal(st_quiesce_thaw(q, &err), 0);
	st_quiesce_free(q);
}

/* One cycle on all three agents; *spread_ms is how far apart the acknowledgements were. */
static void cycle(const struct fx *f, struct st_quiesce *q, struct st_quiesce_target *t)
{
	struct st_err err = ST_ERR_INIT;
	int64_t lo = INT64_MAX, hi = 0;

	if (st_quiesce_freeze(q, &err) != 0)
		fail_msg("freeze: %s", err.msg);
	for (int i = 0; i < NAGENTS; i++) {
		struct json_object *st = NULL;
		int status = 0;

		assert_true(t[i].frozen);
		assert_string_equal(t[i].error, "");
		assert_true(agent_frozen(f, i));
		assert_int_equal(agent_call(&status, &st, &f->a[i], "GET", "/v1/status", NULL), 0);
		assert_string_equal(st_json_get_str(st, "frozenBy"), "cn=stasis-controller");
		json_object_put(st);
		/* One connection per agent, opened before the freeze and kept for the thaw. */
		assert_int_equal(connections_to(f->a[i].ip, f->port), 1);
		lo = t[i].frozen_at_ms < lo ? t[i].frozen_at_ms : lo;
		hi = t[i].frozen_at_ms > hi ? t[i].frozen_at_ms : hi;
	}
	assert_true(hi - lo < 2000);
	sleep_ms(100);
	if (st_quiesce_thaw(q, &err) != 0)
		fail_msg("thaw: %s", err.msg);
	for (int i = 0; i < NAGENTS; i++) {
		assert_false(t[i].frozen);
		assert_false(agent_frozen(f, i));
		assert_int_equal(connections_to(f->a[i].ip, f->port), 1);
		/* The agent's window covers the 100 ms slept, and little more. */
		if (t[i].window_ms < 90 || t[i].window_ms > 5000)
			fail_msg("pod %s: window %.3f ms", t[i].pod, t[i].window_ms);
		assert_true(t[i].thawed_at_ms - t[i].frozen_at_ms >= 90);
		assert_true((double)(t[i].thawed_at_ms - t[i].frozen_at_ms) + 50 >= t[i].window_ms);
		assert_string_equal(t[i].error, "");
	}
}

static void test_freeze_thaw_all(void **state)
{
	struct fx *f = fx_need(state);
	struct st_quiesce_options o = ST_QUIESCE_OPTIONS_INIT;
	struct st_quiesce_target t[NAGENTS];
	struct st_quiesce *q = NULL;
	struct st_err err = ST_ERR_INIT;
	char files[3][160];
	char vols[NAGENTS][32];

	opts_set(&o, files, f->good, f->good);
	agent_targets(t, f);
	/*
	 * Each pod names its own volume, which no other agent knows: a request
	 * that went to another pod's agent (connections mixed up between pods
	 * that share the name and port) would be refused with 404.
	 */
	for (int i = 0; i < NAGENTS; i++) {
		(void)snprintf(vols[i], sizeof(vols[i]), "[\"vol-%s\"]", f->a[i].name);
		t[i].volumes = vols[i];
	}
	assert_int_equal(st_quiesce_new(&q, t, NAGENTS, &o, &err), 0);
	cycle(f, q, t);
	/* The same session again, over the same connections. */
	cycle(f, q, t);
	/* Thawing twice is harmless. */
	assert_int_equal(st_quiesce_thaw(q, &err), 0);
	st_quiesce_free(q);
	none_frozen(f);
}

/* Freezes [agents..., extra], expecting failure; returns the error text in msg. */
static int freeze_fails(const struct fx *f, struct st_quiesce_target *t, size_t n,
                        const struct st_quiesce_options *o, char *msg, size_t size,
                        int64_t *took_ms)
{
	struct st_quiesce *q = NULL;
	struct st_err err = ST_ERR_INIT;
	int64_t t0;
	int rc;

	assert_int_equal(st_quiesce_new(&q, t, n, o, &err), 0);
	t0 = now_ms();
	rc = st_quiesce_freeze(q, &err);
	*took_ms = now_ms() - t0;
	(void)snprintf(msg, size, "%s", err.msg);
	fprintf(stderr, "freeze refused (%d ms): %s\n", (int)*took_ms, msg);
	assert_true(rc < 0);
	assert_int_equal(err.code, rc);
	for (size_t i = 0; i < n; i++)
		assert_false(t[i].frozen);
	(void)f;
	st_quiesce_free(q);
	return rc;
}

static void test_unreachable(void **state)
{
	struct fx *f = fx_need(state);
	struct st_quiesce_options o = ST_QUIESCE_OPTIONS_INIT;
	struct st_quiesce_target t[NAGENTS];
	char files[3][160], msg[ST_ERR_MSG_SIZE];
	int64_t took;

	opts_set(&o, files, f->good, f->good);
	agent_targets(t, f);
	/* Nothing listens on 127.0.1.6. */
	target_set(&t[1], "pod-gone", "127.0.1.6", f->port);
	assert_int_equal(freeze_fails(f, t, NAGENTS, &o, msg, sizeof(msg), &took), ST_EIO);
	expect_in(msg, "connect failed for 1 of 3 pods, nothing was frozen: test/pod-gone: "
	               "connect 127.0.1.6:");
	expect_in(t[1].error, "onnect");
	assert_string_equal(t[0].error, "");
	none_frozen(f);
}

/* Agent k is frozen by someone else; the session over all three must fail and leave it so. */
static void already_frozen(const struct fx *f, int k)
{
	struct st_quiesce_options o = ST_QUIESCE_OPTIONS_INIT;
	struct st_quiesce_target t[NAGENTS];
	struct json_object *ans = NULL;
	char files[3][160], msg[ST_ERR_MSG_SIZE], want[96];
	int64_t took;
	int status = 0;

	/* Someone else (a Velero hook, over the Unix socket) holds a freeze of pod k. */
	assert_int_equal(agent_call(&status, &ans, &f->a[k], "POST", "/v1/freeze",
	                            "{\"deadlineSeconds\":30}"),
	                 0);
	json_object_put(ans);
	assert_int_equal(status, 200);
	opts_set(&o, files, f->good, f->good);
	agent_targets(t, f);
	assert_int_equal(freeze_fails(f, t, NAGENTS, &o, msg, sizeof(msg), &took), ST_EUPSTREAM);
	(void)snprintf(want, sizeof(want),
	               "freeze failed for 1 of 3 pods, the pods it froze were thawed: test/pod-%s: "
	               "freeze %s:",
	               f->a[k].name, f->a[k].ip);
	expect_in(msg, want);
	expect_in(msg, "HTTP 409: already frozen");
	for (int i = 0; i < NAGENTS; i++) {
		if (i == k)
			continue;
		/* The others were frozen, then thawed with their windows recorded. */
		assert_true(t[i].frozen_at_ms > 0);
		assert_true(t[i].thawed_at_ms >= t[i].frozen_at_ms);
		assert_true(t[i].window_ms >= 0);
		assert_false(agent_frozen(f, i));
	}
	/*
	 * The freeze that is not ours is left alone. (Were connections mixed up
	 * between pods, the rollback thaw of another pod could land here.)
	 */
	assert_true(agent_frozen(f, k));
	assert_int_equal(t[k].frozen_at_ms, 0);
	thaw_directly(f, k);
	none_frozen(f);
}

static void test_already_frozen(void **state)
{
	struct fx *f = fx_need(state);

	for (int k = 0; k < NAGENTS; k++)
		already_frozen(f, k);
}

static void test_silent_agent(void **state)
{
	struct fx *f = fx_need(state);
	struct st_quiesce_options o = ST_QUIESCE_OPTIONS_INIT;
	struct st_quiesce_target t[NAGENTS + 1];
	char files[3][160], msg[ST_ERR_MSG_SIZE];
	int64_t took;

	opts_set(&o, files, f->good, f->good);
	o.timeout_ms = 1500;
	agent_targets(t, f);
	/* The kernel completes the TCP handshake; nobody ever answers the TLS hello. */
	target_set(&t[NAGENTS], "pod-silent", "127.0.1.5", f->silent_port);
	assert_int_equal(freeze_fails(f, t, NAGENTS + 1, &o, msg, sizeof(msg), &took),
	                 ST_ETIMEDOUT);
	expect_in(msg, "test/pod-silent: connect 127.0.1.5:");
	expect_in(msg, "no answer within 1500 ms");
	if (took < 1400 || took > 1500 + 1000)
		fail_msg("bounded by 1500 ms, took %lld ms", (long long)took);
	none_frozen(f);
}

/*
 * Stops agents at chosen moments: c is stopped before the freeze starts, so
 * the connections to a and b are made first; b is stopped once its
 * connection is up; c resumes, so the freeze requests go out and b's gets no
 * answer. b resumes only after the freeze phase has timed out.
 */
struct stopper {
	const struct fx *f;
	int64_t t0;
	bool b_was_connected;
};

static void *stopper_main(void *arg)
{
	struct stopper *s = arg;
	const struct fx *f = s->f;

	for (int i = 0; i < 100 && connections_to(f->a[1].ip, f->port) < 1; i++)
		sleep_ms(20);
	s->b_was_connected = connections_to(f->a[1].ip, f->port) == 1;
	/* The TLS handshake and GET /healthz take a few ms; leave ample time. */
	sleep_ms(1000);
	(void)kill(f->a[1].pid, SIGSTOP);
	sleep_ms(100);
	(void)kill(f->a[2].pid, SIGCONT);
	while (now_ms() - s->t0 < 5500)
		sleep_ms(20);
	(void)kill(f->a[1].pid, SIGCONT);
	return NULL;
}

static void test_freeze_timeout_rolls_back(void **state)
{
	struct fx *f = fx_need(state);
	struct st_quiesce_options o = ST_QUIESCE_OPTIONS_INIT;
	struct st_quiesce_target t[NAGENTS];
	struct st_quiesce *q = NULL;
	struct st_err err = ST_ERR_INIT;
	struct stopper s = { f, 0, false };
	char files[3][160];
	pthread_t th;
	int rc;

	opts_set(&o, files, f->good, f->good);
	o.timeout_ms = 4000;
	agent_targets(t, f);
	assert_int_equal(st_quiesce_new(&q, t, NAGENTS, &o, &err), 0);
	assert_int_equal(kill(f->a[2].pid, SIGSTOP), 0);
	s.t0 = now_ms();
	assert_int_equal(pthread_create(&th, NULL, stopper_main, &s), 0);
	rc = st_quiesce_freeze(q, &err);
	(void)pthread_join(th, NULL);
	(void)kill(f->a[1].pid, SIGCONT);
	(void)kill(f->a[2].pid, SIGCONT);
	fprintf(stderr, "freeze refused (%lld ms): %s\n", (long long)(now_ms() - s.t0), err.msg);
	assert_true(s.b_was_connected);
	assert_int_equal(rc, ST_ETIMEDOUT);
	expect_in(err.msg, "freeze failed for 1 of 3 pods, the pods it froze were thawed: "
	                   "test/pod-b: freeze 127.0.1.3:");
	expect_in(err.msg, "no answer within");
	/* a and c froze and were thawed; b, which may have frozen unheard, was thawed too. */
	assert_true(t[0].frozen_at_ms > 0 && t[0].thawed_at_ms >= t[0].frozen_at_ms);
	assert_true(t[2].frozen_at_ms > 0 && t[2].thawed_at_ms >= t[2].frozen_at_ms);
	for (int i = 0; i < NAGENTS; i++)
		assert_false(t[i].frozen);
	st_quiesce_free(q);
	none_frozen(f);
}

static void test_wrong_client_certificate(void **state)
{
	struct fx *f = fx_need(state);
	struct st_quiesce_options o = ST_QUIESCE_OPTIONS_INIT;
	struct st_quiesce_target t[NAGENTS];
	char files[3][160], msg[ST_ERR_MSG_SIZE];
	int64_t took;

	/* Trusts the agents, but presents a certificate signed by another CA. */
	opts_set(&o, files, f->good, f->other);
	agent_targets(t, f);
	(void)freeze_fails(f, t, NAGENTS, &o, msg, sizeof(msg), &took);
	expect_in(msg, "connect failed for 3 of 3 pods, nothing was frozen: test/pod-a: "
	               "connect 127.0.1.2:");
	for (int i = 0; i < NAGENTS; i++)
		expect_in(t[i].error,
		          "HTTP 403: client certificate is not signed by the trusted CA");
	none_frozen(f);
}

static void test_agent_not_verified(void **state)
{
	struct fx *f = fx_need(state);
	struct st_quiesce_options o = ST_QUIESCE_OPTIONS_INIT;
	struct st_quiesce_target t[NAGENTS];
	char files[3][160], msg[ST_ERR_MSG_SIZE];
	int64_t took;

	/* The agents' certificate is not from the CA the controller trusts. */
	opts_set(&o, files, f->other, f->good);
	agent_targets(t, f);
	assert_int_equal(freeze_fails(f, t, NAGENTS, &o, msg, sizeof(msg), &took), ST_ETLS);
	expect_in(msg, "test/pod-a: connect 127.0.1.2:");
	expect_in(t[0].error, "certificate");
	none_frozen(f);
	/* Nor a name the certificate does not carry: hostname verification stays on. */
	opts_set(&o, files, f->good, f->good);
	o.tls.server_name = "stasis-agent";
	assert_int_equal(freeze_fails(f, t, NAGENTS, &o, msg, sizeof(msg), &took), ST_ETLS);
	expect_in(t[0].error, "stasis-agent");
	none_frozen(f);
}

/* A freeze that outlives its deadline is thawed by the watchdogs, and the thaw says so. */
static void test_deadline_passed(void **state)
{
	struct fx *f = fx_need(state);
	struct st_quiesce_options o = ST_QUIESCE_OPTIONS_INIT;
	struct st_quiesce_target t[NAGENTS];
	struct st_quiesce *q = NULL;
	struct st_err err = ST_ERR_INIT;
	char files[3][160];

	opts_set(&o, files, f->good, f->good);
	o.deadline_s = 1;
	q = freeze_all(t, f, &o);
	sleep_ms(1600);
	none_frozen(f);
	assert_int_equal(st_quiesce_thaw(q, &err), ST_EIO);
	fprintf(stderr, "thaw: %s\n", err.msg);
	expect_in(err.msg, "thaw failed for 3 of 3 pods: test/pod-a: thaw 127.0.1.2:");
	for (int i = 0; i < NAGENTS; i++) {
		expect_in(t[i].error, "HTTP 409: freeze");
		expect_in(t[i].error, "outlived its deadline");
		assert_false(t[i].frozen);
	}
	st_quiesce_free(q);
}

/* A window longer than the agents' idle timeout (10 s): the thaw reconnects. */
static void test_thaw_after_idle_close(void **state)
{
	struct fx *f = fx_need(state);
	struct st_quiesce_options o = ST_QUIESCE_OPTIONS_INIT;
	struct st_quiesce_target t[NAGENTS];
	struct st_quiesce *q = NULL;
	struct st_err err = ST_ERR_INIT;
	char files[3][160];

	opts_set(&o, files, f->good, f->good);
	q = freeze_all(t, f, &o);
	sleep_ms(11500);
	for (int i = 0; i < NAGENTS; i++) {
		assert_true(agent_frozen(f, i));
		assert_int_equal(connections_to(f->a[i].ip, f->port), 0);
	}
	if (st_quiesce_thaw(q, &err) != 0)
		fail_msg("thaw: %s", err.msg);
	for (int i = 0; i < NAGENTS; i++) {
		assert_false(agent_frozen(f, i));
		if (t[i].window_ms < 11000 || t[i].window_ms > 20000)
			fail_msg("pod %s: window %.3f ms", t[i].pod, t[i].window_ms);
	}
	st_quiesce_free(q);
}

static void test_free_thaws(void **state)
{
	struct fx *f = fx_need(state);
	struct st_quiesce_options o = ST_QUIESCE_OPTIONS_INIT;
	struct st_quiesce_target t[NAGENTS];
	struct st_quiesce *q = NULL;
	struct st_err err = ST_ERR_INIT;
	char files[3][160];

	opts_set(&o, files, f->good, f->good);
	q = freeze_all(t, f, &o);
	for (int i = 0; i < NAGENTS; i++)
		assert_true(agent_frozen(f, i));
	/* A second freeze of a frozen session is refused, and changes nothing. */
	assert_int_equal(st_quiesce_freeze(q, &err), ST_EINVAL);
	expect_in(err.msg, "still frozen");
	for (int i = 0; i < NAGENTS; i++)
		assert_true(agent_frozen(f, i));
	st_quiesce_free(q);
	for (int i = 0; i < NAGENTS; i++) {
		assert_false(t[i].frozen);
		assert_true(t[i].thawed_at_ms > 0);
	}
	none_frozen(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_server_name_matches_certs),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test_setup_teardown(test_freeze_thaw_all, thawed, thawed),
		cmocka_unit_test_setup_teardown(test_unreachable, thawed, thawed),
		cmocka_unit_test_setup_teardown(test_already_frozen, thawed, thawed),
		cmocka_unit_test_setup_teardown(test_silent_agent, thawed, thawed),
		cmocka_unit_test_setup_teardown(test_freeze_timeout_rolls_back, thawed, thawed),
		cmocka_unit_test_setup_teardown(test_wrong_client_certificate, thawed, thawed),
		cmocka_unit_test_setup_teardown(test_agent_not_verified, thawed, thawed),
		cmocka_unit_test_setup_teardown(test_deadline_passed, thawed, thawed),
		cmocka_unit_test_setup_teardown(test_thaw_after_idle_close, thawed, thawed),
		cmocka_unit_test_setup_teardown(test_free_thaws, thawed, thawed),
	};

	return cmocka_run_group_tests_name("quiesce", tests, group_setup, group_teardown);
}
