/*
 * pkg/dataserver and pkg/store_remote against each other over real TLS: a
 * data door on 127.0.0.1 (certificates made by pkg/x509) over a file://
 * store in a temporary directory, reached through stasis+https:// stores.
 * The end-to-end case runs the real stasis-agent binary (backup, restore)
 * through sessions of the door.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "pkg/chunker.h"
#include "pkg/dataserver.h"
#include "pkg/store.h"
#include "pkg/util/buf.h"
#include "pkg/x509.h"

extern char **environ;

struct fixture {
	char dir[64];
	char path[512];
	char repo_url[128];
	char ca[256];
	struct st_store *backing; /* file:// under dir/repo */
	struct st_dataserver *ds;
};

static struct fixture *fx;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static const char *in_dir(const char *name)
{
	(void)snprintf(fx->path, sizeof(fx->path), "%s/%s", fx->dir, name);
	return fx->path;
}

static int setup(void **state)
{
	static const char *const ips[] = { "127.0.0.1" };
	struct st_x509_bundle_options bo = ST_X509_BUNDLE_OPTIONS_INIT;
	struct st_dataserver_options o = { "127.0.0.1", 0, NULL, NULL };
	struct st_err err = ST_ERR_INIT;
	char crt[256];
	char key[256];
	bool reused = false;

	fx = calloc(1, sizeof(*fx));
	if (fx == NULL)
		return -1;
	(void)snprintf(fx->dir, sizeof(fx->dir), "/tmp/st-dataserver-test.XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	(void)snprintf(crt, sizeof(crt), "%s/certs", fx->dir);
	bo.out_dir = crt;
	bo.ips = ips;
	bo.n_ips = 1;
	if (st_x509_bundle_create(&reused, &bo, &err) != 0) {
		fprintf(stderr, "certs: %s\n", st_err_text(&err));
		return -1;
	}
	(void)snprintf(fx->ca, sizeof(fx->ca), "%s/certs/%s", fx->dir, ST_X509_CA_CRT);
	(void)snprintf(crt, sizeof(crt), "%s/certs/%s", fx->dir, ST_X509_SERVER_CRT);
	(void)snprintf(key, sizeof(key), "%s/certs/%s", fx->dir, ST_X509_SERVER_KEY);
	if (mkdir(in_dir("repo"), 0700) != 0)
		return -1;
	(void)snprintf(fx->repo_url, sizeof(fx->repo_url), "file://%s/repo", fx->dir);
	if (st_store_open(&fx->backing, fx->repo_url, NULL, &err) != 0) {
		fprintf(stderr, "store: %s\n", st_err_text(&err));
		return -1;
	}
	o.cert_file = crt;
	o.key_file = key;
	if (st_dataserver_new(&fx->ds, &o, &err) != 0) {
		fprintf(stderr, "dataserver: %s\n", st_err_text(&err));
		return -1;
	}
	if (setenv("STASIS_DATA_CA", fx->ca, 1) != 0)
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	st_dataserver_free(fx->ds);
	st_store_free(fx->backing);
	(void)nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	fx = NULL;
	return 0;
}

/* A session URL for id. */
static void session_url(char *out, size_t cap, const char *id)
{
	(void)snprintf(out, cap, "stasis+https://127.0.0.1:%u/v1/sessions/%s",
	               (unsigned)st_dataserver_port(fx->ds), id);
}

/* Opens a store on session id with token (through STASIS_DATA_TOKEN). */
static struct st_store *open_remote(const char *id, const char *token)
{
	struct st_store *s = NULL;
	struct st_err err = ST_ERR_INIT;
	char url[256];

	session_url(url, sizeof(url), id);
	assert_int_equal(unsetenv("STASIS_DATA_TOKEN_FILE"), 0);
	assert_int_equal(setenv("STASIS_DATA_TOKEN", token, 1), 0);
	if (st_store_open(&s, url, NULL, &err) != 0)
		fail_msg("open %s: %s", url, st_err_text(&err));
	return s;
}

static void open_session(char *id, char *token, bool read_only)
{
	struct st_err err = ST_ERR_INIT;

	if (st_dataserver_open(fx->ds, fx->backing, read_only, id, token, &err) != 0)
		fail_msg("session: %s", st_err_text(&err));
	assert_int_equal(strlen(id), 32);
	assert_int_equal(strlen(token), ST_DATASERVER_TOKEN_LEN);
}

static int collect_key(const char *key, uint64_t size, void *payload)
{
	struct st_buf *b = payload;

	return st_buf_printf(b, "%s=%llu;", key, (unsigned long long)size);
}

static int write_buf(const void *data, size_t n, void *payload)
{
	return st_buf_put(payload, data, n);
}

static void get_range(struct st_store *s, const char *key, uint64_t off, uint64_t len,
                      const char *want)
{
	struct st_buf b = ST_BUF_INIT(1024);
	struct st_err err = ST_ERR_INIT;

	if (st_store_get(s, key, off, len, write_buf, &b, &err) != 0)
		fail_msg("get %s: %s", key, st_err_text(&err));
	assert_string_equal(st_buf_cstr(&b), want);
	st_buf_dispose(&b);
}

static void test_objects(void **state)
{
	struct st_err err = ST_ERR_INIT;
	struct st_dataserver_stats st;
	struct st_buf b = ST_BUF_INIT(4096);
	struct st_store *s;
	char id[33];
	char token[65];
	char *data = NULL;
	size_t len = 0;
	uint64_t size = 0;

	(void)state;
	open_session(id, token, false);
	s = open_remote(id, token);
	assert_int_equal(st_store_put_mem(s, "t1/a/one", "hello world", 11, false, &err), 0);
	assert_int_equal(st_store_put_mem(s, "t1/a/two", "0123456789", 10, true, &err), 0);
	assert_int_equal(st_store_put_mem(s, "t1/empty", "", 0, false, &err), 0);
	/* Written through to the store behind the door. */
	assert_int_equal(st_store_get_mem(&data, &len, fx->backing, "t1/a/one", 100, &err), 0);
	assert_int_equal(len, 11);
	assert_memory_equal(data, "hello world", 11);
	free(data);
	/* Whole reads, ranges, a range to the end. */
	assert_int_equal(st_store_get_mem(&data, &len, s, "t1/a/two", 100, &err), 0);
	assert_int_equal(len, 10);
	assert_memory_equal(data, "0123456789", 10);
	free(data);
	get_range(s, "t1/a/two", 3, 4, "3456");
	get_range(s, "t1/a/two", 7, UINT64_MAX, "789");
	get_range(s, "t1/a/one", 0, 5, "hello");
	get_range(s, "t1/empty", 0, UINT64_MAX, "");
	/* head */
	assert_int_equal(st_store_head(s, "t1/a/one", &size, &err), 0);
	assert_int_equal(size, 11);
	assert_int_equal(st_store_head(s, "t1/empty", &size, &err), 0);
	assert_int_equal(size, 0);
	/* if_absent: an existing object is kept and reported as existing. */
	assert_int_equal(st_store_put_mem(s, "t1/a/two", "XXXXXXXXXX", 10, true, &err), 1);
	get_range(s, "t1/a/two", 0, 3, "012");
	/* Missing keys. */
	assert_int_equal(st_store_head(s, "t1/nope", &size, &err), ST_ENOTFOUND);
	st_err_clear(&err);
	assert_int_equal(st_store_get_mem(&data, &len, s, "t1/nope", 100, &err), ST_ENOTFOUND);
	assert_non_null(strstr(err.msg, "HTTP 404"));
	assert_non_null(strstr(err.msg, "t1/nope"));
	st_err_clear(&err);
	/* Listing, in lexical order with sizes. */
	assert_int_equal(st_store_list(s, "t1/", collect_key, &b, &err), 0);
	assert_string_equal(st_buf_cstr(&b), "t1/a/one=11;t1/a/two=10;t1/empty=0;");
	st_buf_clear(&b);
	assert_int_equal(st_store_list(s, "t1/a/", collect_key, &b, &err), 0);
	assert_string_equal(st_buf_cstr(&b), "t1/a/one=11;t1/a/two=10;");
	st_buf_clear(&b);
	assert_int_equal(st_store_list(s, "zz/", collect_key, &b, &err), 0);
	assert_string_equal(st_buf_cstr(&b), "");
	/* Deletes: under locks/ only; a missing lock deletes fine. */
	assert_int_equal(st_store_put_mem(s, "locks/l1", "{}", 2, false, &err), 0);
	assert_int_equal(st_store_delete(s, "locks/l1", &err), 0);
	assert_int_equal(st_store_head(fx->backing, "locks/l1", &size, NULL), ST_ENOTFOUND);
	assert_int_equal(st_store_delete(s, "locks/l1", &err), 0);
	assert_int_equal(st_store_delete(s, "t1/a/one", &err), ST_EUPSTREAM);
	assert_non_null(strstr(err.msg, "HTTP 403"));
	assert_non_null(strstr(err.msg, "only objects under locks/ may be deleted"));
	st_err_clear(&err);
	assert_int_equal(st_store_head(fx->backing, "t1/a/one", &size, NULL), 0);
	/* Counters: bytes accepted and sent, and every request. */
	assert_int_equal(st_dataserver_stats(&st, fx->ds, id), 0);
	assert_int_equal(st.bytes_in, 11 + 10 + 0 + 2);
	assert_int_equal(st.bytes_out, 10 + 4 + 3 + 5 + 0 + 3);
	assert_true(st.requests >= 20);
	st_dataserver_close(fx->ds, id);
	assert_int_equal(st_dataserver_stats(&st, fx->ds, id), ST_ENOTFOUND);
	st_buf_dispose(&b);
	st_store_free(s);
}

static void test_refusals(void **state)
{
	static const char *const bad[] = { "../x", "a/../b", "a//b", "a/./b",   "a b",
		                           "a/",   "/abs",   "a\\b", "tab\tkey" };
	struct st_err err = ST_ERR_INIT;
	struct st_store *s;
	struct st_store *ro;
	char id[33];
	char token[65];
	char rid[33];
	char rtoken[65];
	char wrong[65];
	char *data = NULL;
	size_t len = 0;
	size_t i;

	(void)state;
	open_session(id, token, false);
	open_session(rid, rtoken, true);
	assert_string_not_equal(id, rid);
	assert_string_not_equal(token, rtoken);
	/* A wrong token (same length) is refused with a clear message. */
	memcpy(wrong, token, sizeof(wrong));
	wrong[10] = wrong[10] == 'a' ? 'b' : 'a';
	s = open_remote(id, wrong);
	assert_int_equal(st_store_put_mem(s, "t2/x", "x", 1, false, &err), ST_EUPSTREAM);
	assert_non_null(strstr(err.msg, "the data session token was refused"));
	assert_non_null(strstr(err.msg, "HTTP 401"));
	assert_null(strstr(err.msg, token));
	assert_null(strstr(err.msg, wrong));
	st_err_clear(&err);
	st_store_free(s);
	/* Another session's token does not open this one. */
	s = open_remote(id, rtoken);
	assert_int_equal(st_store_get_mem(&data, &len, s, "t2/x", 10, &err), ST_EUPSTREAM);
	assert_non_null(strstr(err.msg, "the data session token was refused"));
	st_err_clear(&err);
	st_store_free(s);
	/* Bad keys are refused by the server. */
	s = open_remote(id, token);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = st_store_put_mem(s, bad[i], "x", 1, false, &err);

		if (rc != ST_EINVAL)
			fail_msg("key \"%s\": rc %d (%s)", bad[i], rc, err.msg);
		assert_non_null(strstr(err.msg, "HTTP 400"));
		assert_non_null(strstr(err.msg, "bad key"));
		st_err_clear(&err);
	}
	assert_int_equal(st_store_put_mem(s, "t2/x", "x", 1, false, &err), 0);
	/* A read-only session reads but refuses writes and deletes. */
	ro = open_remote(rid, rtoken);
	assert_int_equal(st_store_get_mem(&data, &len, ro, "t2/x", 10, &err), 0);
	assert_int_equal(len, 1);
	free(data);
	assert_int_equal(st_store_put_mem(ro, "t2/y", "y", 1, false, &err), ST_EUPSTREAM);
	assert_non_null(strstr(err.msg, "HTTP 403"));
	assert_non_null(strstr(err.msg, "read-only"));
	st_err_clear(&err);
	assert_int_equal(st_store_delete(ro, "locks/z", &err), ST_EUPSTREAM);
	assert_non_null(strstr(err.msg, "read-only"));
	st_err_clear(&err);
	assert_int_equal(st_store_head(fx->backing, "t2/y", &(uint64_t){ 0 }, NULL), ST_ENOTFOUND);
	/* A closed session's token is refused. */
	st_dataserver_close(fx->ds, id);
	assert_int_equal(st_store_put_mem(s, "t2/z", "z", 1, false, &err), ST_EUPSTREAM);
	assert_non_null(strstr(err.msg, "the data session token was refused"));
	st_err_clear(&err);
	st_store_free(s);
	st_store_free(ro);
	st_dataserver_close(fx->ds, rid);
}

static void test_open_errors(void **state)
{
	struct st_store *s = NULL;
	struct st_err err = ST_ERR_INIT;
	char id[33];
	char token[65];
	char url[256];
	char tf[300];
	FILE *f;

	(void)state;
	open_session(id, token, true);
	session_url(url, sizeof(url), id);
	/* No token anywhere. */
	assert_int_equal(unsetenv("STASIS_DATA_TOKEN"), 0);
	assert_int_equal(unsetenv("STASIS_DATA_TOKEN_FILE"), 0);
	assert_int_equal(st_store_open(&s, url, NULL, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "STASIS_DATA_TOKEN_FILE"));
	st_err_clear(&err);
	/* Malformed URLs name the fault. */
	assert_int_equal(setenv("STASIS_DATA_TOKEN", token, 1), 0);
	assert_int_equal(st_store_open(&s, "stasis+https://127.0.0.1:1/v2/x", NULL, &err),
	                 ST_EINVAL);
	assert_non_null(strstr(err.msg, "/v1/sessions/<id>"));
	st_err_clear(&err);
	assert_int_equal(st_store_open(&s, "stasis+https://127.0.0.1:1/v1/sessions/zz", NULL, &err),
	                 ST_EINVAL);
	st_err_clear(&err);
	/* The token from a file, trailing newline trimmed; the file wins over the variable. */
	(void)snprintf(tf, sizeof(tf), "%s/token", fx->dir);
	f = fopen(tf, "w");
	assert_non_null(f);
	fprintf(f, "%s\n", token);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(setenv("STASIS_DATA_TOKEN_FILE", tf, 1), 0);
	assert_int_equal(setenv("STASIS_DATA_TOKEN", "wrong", 1), 0);
	assert_int_equal(st_store_open(&s, url, NULL, &err), 0);
	assert_int_equal(st_store_head(s, "nothing-here", &(uint64_t){ 0 }, &err), ST_ENOTFOUND);
	st_err_clear(&err);
	st_store_free(s);
	s = NULL;
	/* Connection errors are retried, then reported naming the URL. */
	{
		struct st_store_options so = ST_STORE_OPTIONS_INIT;
		char dead[128];
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sa = { .sin_family = AF_INET };
		socklen_t sl = sizeof(sa);

		/* A port that was free a moment ago and has no listener. */
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		assert_true(fd >= 0);
		assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
		assert_int_equal(close(fd), 0);
		(void)snprintf(dead, sizeof(dead), "stasis+https://127.0.0.1:%u/v1/sessions/%s",
		               (unsigned)ntohs(sa.sin_port), id);
		so.max_retries = 1;
		assert_int_equal(st_store_open(&s, dead, &so, &err), 0);
		assert_int_equal(st_store_head(s, "x", &(uint64_t){ 0 }, &err), ST_EIO);
		assert_non_null(strstr(err.msg, dead));
		assert_non_null(strstr(err.msg, "after 2 attempts"));
		st_err_clear(&err);
		st_store_free(s);
		s = NULL;
	}
	/* TLS verification is on: without the CA the system store does not trust the door. */
	assert_int_equal(unsetenv("STASIS_DATA_CA"), 0);
	assert_int_equal(st_store_open(&s, url, NULL, &err), 0);
	assert_int_equal(st_store_head(s, "x", &(uint64_t){ 0 }, &err), ST_ETLS);
	assert_non_null(strstr(err.msg, "STASIS_DATA_CA"));
	st_err_clear(&err);
	st_store_free(s);
	assert_int_equal(setenv("STASIS_DATA_CA", fx->ca, 1), 0);
	assert_int_equal(unsetenv("STASIS_DATA_TOKEN_FILE"), 0);
	st_dataserver_close(fx->ds, id);
}

static double now_s(void)
{
	struct timespec t;

	(void)clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/*
 * Small answers on a kept-alive connection leave at once. They used to sit
 * in a TCP_CORK left on the socket for the kernel's 200 ms ceiling each, so
 * 20 requests took at least 4 s.
 */
static void test_small_answers_not_held(void **state)
{
	struct st_err err = ST_ERR_INIT;
	struct st_store *s;
	char id[33];
	char token[65];
	uint64_t size = 0;
	double t0;
	double took;
	int i;

	(void)state;
	open_session(id, token, false);
	s = open_remote(id, token);
	assert_int_equal(st_store_put_mem(s, "t4/x", "x", 1, false, &err), 0);
	t0 = now_s();
	for (i = 0; i < 10; i++) {
		assert_int_equal(st_store_head(s, "t4/x", &size, &err), 0);
		assert_int_equal(st_store_head(s, "t4/missing", &size, &err), ST_ENOTFOUND);
		st_err_clear(&err);
	}
	took = now_s() - t0;
	print_message("20 small requests took %.3f s\n", took);
	assert_true(took < 2.0);
	st_store_free(s);
	st_dataserver_close(fx->ds, id);
}

/* Yields `left` zero bytes to libcurl. */
static size_t zeros(char *buf, size_t size, size_t nmemb, void *payload)
{
	uint64_t *left = payload;
	size_t n = size * nmemb;

	if (n > *left)
		n = (size_t)*left;
	memset(buf, 0, n);
	*left -= n;
	return n;
}

static size_t collect(char *data, size_t size, size_t nmemb, void *payload)
{
	return st_buf_put(payload, data, size * nmemb) == 0 ? size * nmemb : 0;
}

static long zero_read(void *buf, size_t cap, void *payload)
{
	uint64_t *left = payload;
	size_t n = cap < *left ? cap : (size_t)*left;

	memset(buf, 0, n);
	*left -= n;
	return (long)n;
}

static void test_too_big(void **state)
{
	struct st_err err = ST_ERR_INIT;
	struct st_dataserver_stats st;
	struct st_buf body = ST_BUF_INIT(4096);
	struct curl_slist *hl = NULL;
	struct st_store *s;
	char id[33];
	char token[65];
	char url[512];
	char auth[128];
	uint64_t left = (uint64_t)ST_DATASERVER_CAP_BODY + 1;
	long code = 0;
	CURL *c;

	(void)state;
	open_session(id, token, false);
	/* The server answers 413 to a body over the cap. */
	c = curl_easy_init();
	assert_non_null(c);
	(void)snprintf(url, sizeof(url), "https://127.0.0.1:%u/v1/sessions/%s/objects/t3/big",
	               (unsigned)st_dataserver_port(fx->ds), id);
	(void)snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	hl = curl_slist_append(hl, auth);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CAINFO, fx->ca);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, zeros);
	curl_easy_setopt(c, CURLOPT_READDATA, &left);
	curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)left);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	assert_int_equal(code, 413);
	assert_non_null(strstr(st_buf_cstr(&body), "\"error\""));
	assert_non_null(strstr(st_buf_cstr(&body), "exceeds the limit"));
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	st_buf_dispose(&body);
	assert_int_equal(st_store_head(fx->backing, "t3/big", &(uint64_t){ 0 }, NULL),
	                 ST_ENOTFOUND);
	/* The client refuses such a body before sending it. */
	s = open_remote(id, token);
	left = (uint64_t)ST_DATASERVER_CAP_BODY + 1;
	assert_int_equal(st_store_put(s, "t3/big", left, zero_read, &left, false, &err),
	                 ST_ETOOBIG);
	assert_non_null(strstr(err.msg, "limit"));
	st_err_clear(&err);
	left = (uint64_t)ST_DATASERVER_CAP_BODY + 1;
	assert_int_equal(st_store_put(s, "t3/big", UINT64_MAX, zero_read, &left, false, &err),
	                 ST_ETOOBIG);
	st_err_clear(&err);
	assert_int_equal(st_dataserver_stats(&st, fx->ds, id), 0);
	assert_int_equal(st.bytes_in, 0);
	st_store_free(s);
	st_dataserver_close(fx->ds, id);
}

/* ---- end to end with the real stasis-agent ---- */

static void agent_path(char *out, size_t cap)
{
	const char *bin = getenv("STASIS_BIN");
	char self[512];
	ssize_t n;
	char *slash;

	if (bin != NULL && bin[0] != '\0') {
		(void)snprintf(out, cap, "%s/stasis-agent", bin);
		return;
	}
	/* build/<variant>/tests/dataserver_test -> build/<variant>/bin/stasis-agent */
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	assert_true(n > 0);
	self[n] = '\0';
	slash = strrchr(self, '/');
	assert_non_null(slash);
	*slash = '\0';
	(void)snprintf(out, cap, "%s/../bin/stasis-agent", self);
}

/*
 * Runs stasis-agent with args and extra environment (NAME=value entries),
 * stderr into err_out. Returns the exit status (-1 when killed).
 */
static int run_agent(struct st_buf *err_out, const char *const *args, const char *const *env)
{
	char agent[600];
	char errf[300];
	char *argv[16];
	char *envp[256];
	size_t na = 0;
	size_t ne = 0;
	size_t i;
	int status = 0;
	time_t deadline = time(NULL) + 240;
	pid_t pid;
	pid_t w;
	struct st_err err = ST_ERR_INIT;

	agent_path(agent, sizeof(agent));
	if (access(agent, X_OK) != 0)
		fail_msg("%s: %s (build it with make first)", agent, strerror(errno));
	argv[na++] = agent;
	for (i = 0; args[i] != NULL && na < 15; i++)
		argv[na++] = (char *)(uintptr_t)args[i];
	argv[na] = NULL;
	for (i = 0; env[i] != NULL && ne < 64; i++)
		envp[ne++] = (char *)(uintptr_t)env[i];
	for (i = 0; environ[i] != NULL && ne < 255; i++) {
		if (strncmp(environ[i], "STASIS_", 7) != 0 ||
		    strncmp(environ[i], "STASIS_BIN=", 11) == 0)
			envp[ne++] = environ[i];
	}
	envp[ne] = NULL;
	(void)snprintf(errf, sizeof(errf), "%s/agent.err", fx->dir);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int nul = open("/dev/null", O_WRONLY);

		if (fd < 0 || nul < 0 || dup2(fd, 2) < 0 || dup2(nul, 1) < 0)
			_exit(126);
		execve(agent, argv, envp);
		_exit(127);
	}
	while ((w = waitpid(pid, &status, WNOHANG)) == 0) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		if (time(NULL) > deadline) {
			(void)kill(pid, SIGKILL);
			(void)waitpid(pid, &status, 0);
			fail_msg("stasis-agent %s did not finish in time", args[0]);
		}
		(void)nanosleep(&ts, NULL);
	}
	assert_int_equal(w, pid);
	st_buf_clear(err_out);
	if (st_buf_read_file(err_out, errf, &err) != 0)
		fail_msg("%s", st_err_text(&err));
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Writes n pseudo-random bytes (incompressible, so dedup is what saves bytes) to path. */
static void write_random(const char *path, size_t n, uint64_t seed)
{
	FILE *f = fopen(path, "wb");
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
	size_t i;

	assert_non_null(f);
	for (i = 0; i < n; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		assert_int_equal(fwrite(&x, 1, n - i < 8 ? n - i : 8, f), n - i < 8 ? n - i : 8);
	}
	assert_int_equal(fclose(f), 0);
}

static void assert_same_file(const char *a, const char *b)
{
	struct st_buf x = ST_BUF_INIT(64u << 20);
	struct st_buf y = ST_BUF_INIT(64u << 20);
	struct st_err err = ST_ERR_INIT;

	if (st_buf_read_file(&x, a, &err) != 0 || st_buf_read_file(&y, b, &err) != 0)
		fail_msg("%s", st_err_text(&err));
	if (x.len != y.len || memcmp(x.ptr, y.ptr, x.len) != 0)
		fail_msg("%s and %s differ (%zu and %zu bytes)", a, b, x.len, y.len);
	st_buf_dispose(&x);
	st_buf_dispose(&y);
}

/* Runs the agent on a fresh session; returns its exit status and the session's counters. */
static int agent_in_session(struct st_buf *errs, struct st_dataserver_stats *st, bool read_only,
                            const char *const *args)
{
	char id[33];
	char token[65];
	char url[256];
	char tok_env[128];
	char repo_env[300];
	char ca_env[300];
	const char *env[] = { tok_env, repo_env, ca_env, "STASIS_REPO_KEY=correct horse battery",
		              NULL };
	int rc;

	open_session(id, token, read_only);
	session_url(url, sizeof(url), id);
	(void)snprintf(tok_env, sizeof(tok_env), "STASIS_DATA_TOKEN=%s", token);
	(void)snprintf(repo_env, sizeof(repo_env), "STASIS_REPO=%s", url);
	(void)snprintf(ca_env, sizeof(ca_env), "STASIS_DATA_CA=%s", fx->ca);
	rc = run_agent(errs, args, env);
	assert_int_equal(st_dataserver_stats(st, fx->ds, id), 0);
	st_dataserver_close(fx->ds, id);
	return rc;
}

static int find_largest_pack(const char *key, uint64_t size, void *payload)
{
	struct st_buf *best = payload;
	uint64_t cur = 0;

	if (best->len > 0) {
		const char *eq = strrchr(best->ptr, '=');

		cur = strtoull(eq + 1, NULL, 10);
	}
	if (size > cur) {
		st_buf_clear(best);
		if (st_buf_printf(best, "%s=%llu", key, (unsigned long long)size) < 0)
			return -1;
	}
	return 0;
}

static void test_agent_end_to_end(void **state)
{
	static const char *const files[] = { "a.bin",     "b.bin",     "c.bin",     "d.bin",
		                             "sub/e.bin", "sub/f.bin", "sub/g.bin", "small.txt" };
	static const size_t sizes[] = { 1500000, 1200000, 900000, 2000000,
		                        1100000, 1300000, 800000, 17 };
	struct st_buf errs = ST_BUF_INIT(1u << 20);
	struct st_buf pack = ST_BUF_INIT(512);
	struct st_dataserver_stats st1;
	struct st_dataserver_stats st2;
	struct st_dataserver_stats st3;
	struct st_err err = ST_ERR_INIT;
	char src[300];
	char out[300];
	char a[400];
	char b[400];
	char pack_path[600];
	char pack_id[25];
	uint64_t pack_size, off;
	const char *init[] = { "repo", "init", NULL };
	const char *backup[] = { "backup", src, NULL };
	const char *restore[] = { "restore", "latest", "--target", out, NULL };
	size_t i;
	int rc;
	FILE *f;

	(void)state;
	(void)snprintf(src, sizeof(src), "%s/src", fx->dir);
	assert_int_equal(mkdir(src, 0700), 0);
	(void)snprintf(a, sizeof(a), "%s/sub", src);
	assert_int_equal(mkdir(a, 0700), 0);
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		(void)snprintf(a, sizeof(a), "%s/%s", src, files[i]);
		write_random(a, sizes[i], i + 1);
	}

	rc = agent_in_session(&errs, &st1, false, init);
	if (rc != 0)
		fail_msg("repo init through the door: exit %d: %s", rc, st_buf_cstr(&errs));
	assert_int_equal(st_store_head(fx->backing, "config", &(uint64_t){ 0 }, NULL), 0);

	rc = agent_in_session(&errs, &st1, false, backup);
	if (rc != 0)
		fail_msg("first backup: exit %d: %s", rc, st_buf_cstr(&errs));
	/* Everything crossed the door once: the data plus a little metadata. */
	assert_true(st1.bytes_in > 8000000);
	/* The backup's lock was taken and released through the door. */
	assert_int_equal(st_store_list(fx->backing, "locks/", collect_key, &pack, &err), 0);
	assert_string_equal(st_buf_cstr(&pack), "");

	/* Change 4 KiB in the middle of one file: only its chunk crosses again. */
	(void)snprintf(a, sizeof(a), "%s/b.bin", src);
	f = fopen(a, "r+b");
	assert_non_null(f);
	assert_int_equal(fseek(f, 600000, SEEK_SET), 0);
	for (i = 0; i < 4096; i++)
		assert_int_equal(fputc((int)(i * 7 & 0xff), f), (int)(i * 7 & 0xff));
	assert_int_equal(fclose(f), 0);
	rc = agent_in_session(&errs, &st2, false, backup);
	if (rc != 0)
		fail_msg("second backup: exit %d: %s", rc, st_buf_cstr(&errs));
	print_message("first backup sent %llu bytes, the second %llu\n",
	              (unsigned long long)st1.bytes_in, (unsigned long long)st2.bytes_in);
	assert_true(st2.bytes_in > 0);
	assert_true(st2.bytes_in * 3 < st1.bytes_in);

	/* Restore through a read-only session and compare byte for byte. */
	(void)snprintf(out, sizeof(out), "%s/out", fx->dir);
	rc = agent_in_session(&errs, &st3, true, restore);
	if (rc != 0)
		fail_msg("restore: exit %d: %s", rc, st_buf_cstr(&errs));
	assert_true(st3.bytes_out > 8000000);
	assert_int_equal(st3.bytes_in, 0);
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		(void)snprintf(a, sizeof(a), "%s/%s", src, files[i]);
		(void)snprintf(b, sizeof(b), "%s/%s", out, files[i]);
		assert_same_file(a, b);
	}

	/* Damage the largest pack in the store behind the door: the restore must say so. */
	assert_int_equal(st_store_list(fx->backing, "data/", find_largest_pack, &pack, &err), 0);
	assert_true(pack.len > 0);
	pack_size = strtoull(strrchr(pack.ptr, '=') + 1, NULL, 10);
	*strrchr(pack.ptr, '=') = '\0';
	(void)snprintf(pack_path, sizeof(pack_path), "%s/repo/%s", fx->dir, pack.ptr);
	(void)snprintf(pack_id, sizeof(pack_id), "%s", strrchr(pack.ptr, '/') + 1);
	/*
	 * One byte every MB: the chunk the second backup replaced is no longer
	 * read by "latest" and may be where a damaged byte lands, but no file
	 * here, so no chunk, is over 2 MB: it holds at most two of the damaged
	 * bytes, and a pack of over 4 MB has more.
	 */
	assert_true(pack_size > 4000000);
	f = fopen(pack_path, "r+b");
	assert_non_null(f);
	for (off = 500000; off + 200000 < pack_size; off += 1000000) {
		assert_int_equal(fseek(f, (long)off, SEEK_SET), 0);
		rc = fgetc(f);
		assert_true(rc >= 0);
		assert_int_equal(fseek(f, (long)off, SEEK_SET), 0);
		assert_int_equal(fputc(rc ^ 0x55, f), rc ^ 0x55);
	}
	assert_int_equal(fclose(f), 0);
	(void)snprintf(out, sizeof(out), "%s/out2", fx->dir);
	rc = agent_in_session(&errs, &st3, true, restore);
	assert_int_not_equal(rc, 0);
	/* The message names the chunk and the pack (by the first 24 characters of its id). */
	if (strstr(st_buf_cstr(&errs), "chunk ") == NULL ||
	    strstr(st_buf_cstr(&errs), "corrupted") == NULL ||
	    strstr(st_buf_cstr(&errs), pack_id) == NULL)
		fail_msg("restore of damaged data: unexpected message: %s", st_buf_cstr(&errs));
	st_buf_dispose(&errs);
	st_buf_dispose(&pack);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_objects),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_too_big),
		cmocka_unit_test(test_small_answers_not_held),
		cmocka_unit_test(test_agent_end_to_end),
	};
	int rc;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = cmocka_run_group_tests_name("dataserver", tests, setup, teardown);
	curl_global_cleanup();
	return rc;
}
