/*
 * S3 client and s3:// store tests.
 *
 * Offline: XML decoding, credentials, option and URL validation, an
 * unreachable endpoint (bounded retries, clear error), and the store-level
 * suite on a file:// location.
 * Against a real server (tests/integration/s3_rgw.sh starts Ceph RGW and
 * exports STASIS_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * STASIS_S3_REGION): every operation, pagination past 1000 keys, multipart
 * with abort, If-None-Match, wrong secret and missing bucket, and the same
 * store-level suite on s3://. Those tests skip, saying why, without the
 * endpoint. STASIS_S3_BENCH_MB=N adds a timed single-stream PUT of N MiB.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pkg/s3.h"
#include "pkg/sigv4.h"
#include "pkg/store.h"
#include "pkg/util/buf.h"
#include "pkg/util/mem.h"

#define MIB (1024u * 1024u)

/* ---- helpers ---- */

/* Deterministic pseudo-random bytes: byte i of stream seed. */
static unsigned char gen_byte(uint64_t seed, uint64_t i)
{
	uint64_t x = (i / 8 + 1) * 0x9e3779b97f4a7c15ull ^ seed;

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return (unsigned char)(x >> ((i % 8) * 8));
}

struct gen {
	uint64_t seed;
	uint64_t pos;
	uint64_t size;
	uint64_t fail_at; /* returns ST_EIO once pos reaches it; UINT64_MAX: never */
	size_t max_chunk;
};

static long gen_read(void *buf, size_t cap, void *payload)
{
	struct gen *g = payload;
	size_t n;
	size_t i;

	if (g->pos >= g->fail_at)
		return ST_EIO;
	n = g->size - g->pos < cap ? (size_t)(g->size - g->pos) : cap;
	if (g->max_chunk && n > g->max_chunk)
		n = g->max_chunk;
	for (i = 0; i < n; i++)
		((unsigned char *)buf)[i] = gen_byte(g->seed, g->pos + i);
	g->pos += n;
	return (long)n;
}

/* Checks streamed bytes against the generator starting at pos. */
struct check {
	uint64_t seed;
	uint64_t pos;
	bool bad;
};

static int check_write(const void *buf, size_t n, void *payload)
{
	struct check *c = payload;
	size_t i;

	for (i = 0; i < n; i++) {
		if (((const unsigned char *)buf)[i] != gen_byte(c->seed, c->pos + i))
			c->bad = true;
	}
	c->pos += n;
	return 0;
}

static int count_cb(const char *key, uint64_t size, void *payload)
{
	(void)key;
	(void)size;
	(*(unsigned *)payload)++;
	return 0;
}

/* ---- XML ---- */

static void test_xml_error(void **state)
{
	static const char full[] =
	        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>"
	        "<Message>The resource &lt;x&gt; &amp; &#233;&#x41; isn&apos;t here</Message>"
	        "<Key>a/b</Key><RequestId>1</RequestId></Error>";
	static const char empty_msg[] = "<Error><Code>AccessDenied</Code><Message/></Error>";
	static const char no_msg[] = "<Error><Code>SignatureDoesNotMatch</Code></Error>";
	struct st_s3_xml_error x;

	(void)state;
	assert_int_equal(st_s3_xml_error(&x, full, strlen(full)), 0);
	assert_string_equal(x.code, "NoSuchKey");
	assert_string_equal(x.message, "The resource <x> & \xc3\xa9"
	                               "A isn't here");
	assert_string_equal(x.key, "a/b");
	assert_int_equal(st_s3_xml_error(&x, empty_msg, strlen(empty_msg)), 0);
	assert_string_equal(x.code, "AccessDenied");
	assert_string_equal(x.message, "");
	assert_int_equal(st_s3_xml_error(&x, no_msg, strlen(no_msg)), 0);
	assert_string_equal(x.message, "");
	assert_int_equal(st_s3_xml_error(&x, "", 0), ST_ENOTFOUND);
	assert_int_equal(st_s3_xml_error(&x, "<html>502</html>", 16), ST_ENOTFOUND);
	/* Unterminated and truncated documents. */
	assert_int_equal(st_s3_xml_error(&x, "<Error><Code>X", 14), ST_ENOTFOUND);
	assert_int_equal(st_s3_xml_error(&x, "<Error><Code>X</Code></Error", 28), ST_ENOTFOUND);
}

static void test_xml_text_caps(void **state)
{
	char small[4];
	static const char doc[] = "<A><B>abcdef</B><C/><D>&#0;&bogus;&#x110000;</D></A>";

	(void)state;
	assert_int_equal(st_s3_xml_text(small, sizeof(small), doc, strlen(doc), "B"), ST_ETOOBIG);
	assert_string_equal(small, "");
	assert_int_equal(st_s3_xml_text(small, sizeof(small), doc, strlen(doc), "C"), 0);
	assert_string_equal(small, "");
	assert_int_equal(st_s3_xml_text(small, sizeof(small), doc, strlen(doc), "E"), ST_ENOTFOUND);
	{
		char big[64];

		/* Invalid entities stay literal rather than producing NULs. */
		assert_int_equal(st_s3_xml_text(big, sizeof(big), doc, strlen(doc), "D"), 0);
		assert_string_equal(big, "&#0;&bogus;&#x110000;");
	}
}

struct collect {
	char keys[8][64];
	uint64_t sizes[8];
	unsigned n;
};

static int collect_cb(const char *key, uint64_t size, void *payload)
{
	struct collect *c = payload;

	if (c->n == 8)
		return 99;
	(void)snprintf(c->keys[c->n], sizeof(c->keys[0]), "%s", key);
	c->sizes[c->n++] = size;
	return 0;
}

static void test_xml_list(void **state)
{
	static const char page[] =
	        "<?xml version=\"1.0\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/"
	        "2006-03-01/\"><Name>b</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount>"
	        "<IsTruncated>true</IsTruncated><NextContinuationToken>tok+/=</"
	        "NextContinuationToken>"
	        "<Contents><Key>p/a&amp;b</Key><LastModified>x</LastModified><Size>0</Size>"
	        "</Contents><Contents><Key>p/c</Key><Size>18446744073709551615</Size></Contents>"
	        "</ListBucketResult>";
	static const char last[] = "<ListBucketResult><IsTruncated>false</IsTruncated>"
	                           "</ListBucketResult>";
	static const char bad_size[] = "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size>"
	                               "</Contents></ListBucketResult>";
	static const char no_token[] = "<ListBucketResult><IsTruncated>true</IsTruncated>"
	                               "</ListBucketResult>";
	static const char empty_token[] = "<ListBucketResult><IsTruncated>true</IsTruncated>"
	                                  "<NextContinuationToken/></ListBucketResult>";
	static const char nul_token[] = "<ListBucketResult><IsTruncated>true</IsTruncated>"
	                                "<NextContinuationToken>\0x</NextContinuationToken>"
	                                "</ListBucketResult>";
	struct collect c;
	char tok[64];
	bool more;

	(void)state;
	memset(&c, 0, sizeof(c));
	assert_int_equal(
	        st_s3_xml_list(&more, tok, sizeof(tok), page, strlen(page), collect_cb, &c), 0);
	assert_true(more);
	assert_string_equal(tok, "tok+/=");
	assert_int_equal(c.n, 2);
	assert_string_equal(c.keys[0], "p/a&b");
	assert_int_equal(c.sizes[0], 0);
	assert_true(c.sizes[1] == UINT64_MAX);
	assert_int_equal(
	        st_s3_xml_list(&more, tok, sizeof(tok), last, strlen(last), collect_cb, &c), 0);
	assert_false(more);
	assert_int_equal(
	        st_s3_xml_list(&more, tok, sizeof(tok), bad_size, strlen(bad_size), collect_cb, &c),
	        ST_EPROTO);
	/* Truncated without a token would loop forever: refused. */
	assert_int_equal(
	        st_s3_xml_list(&more, tok, sizeof(tok), no_token, strlen(no_token), collect_cb, &c),
	        ST_EPROTO);
	assert_int_equal(st_s3_xml_list(&more, tok, sizeof(tok), "<Error/>", 8, collect_cb, &c),
	                 ST_EPROTO);
	/* Found by fuzzing: an empty or NUL-bearing token on a truncated page. */
	assert_int_equal(st_s3_xml_list(&more, tok, sizeof(tok), empty_token, strlen(empty_token),
	                                collect_cb, &c),
	                 ST_EPROTO);
	assert_int_equal(st_s3_xml_list(&more, tok, sizeof(tok), nul_token, sizeof(nul_token) - 1,
	                                collect_cb, &c),
	                 ST_EPROTO);
}

/* ---- credentials ---- */

static void test_credentials_file(void **state)
{
	static const char text[] = "# comment\n[default]\naws_access_key_id = AKDEF\n"
	                           "aws_secret_access_key=SKDEF \r\n\n[profile other]\n"
	                           "aws_access_key_id=AKO\naws_secret_access_key = SKO\n"
	                           "aws_session_token = TOK\n[broken]\naws_access_key_id=X\n";
	struct st_s3_credentials c = ST_S3_CREDENTIALS_INIT;
	struct st_err err = ST_ERR_INIT;
	char path[] = "/tmp/stasis-s3-cred-XXXXXX";
	int fd;

	(void)state;
	assert_int_equal(st_s3_credentials_parse(&c, text, strlen(text), NULL, &err), 0);
	assert_string_equal(c.access_key, "AKDEF");
	assert_string_equal(c.secret_key, "SKDEF");
	assert_null(c.session_token);
	st_s3_credentials_dispose(&c);
	assert_int_equal(st_s3_credentials_parse(&c, text, strlen(text), "other", &err), 0);
	assert_string_equal(c.secret_key, "SKO");
	assert_string_equal(c.session_token, "TOK");
	st_s3_credentials_dispose(&c);
	assert_int_equal(st_s3_credentials_parse(&c, text, strlen(text), "broken", &err),
	                 ST_EINVAL);
	assert_non_null(strstr(err.msg, "aws_secret_access_key"));
	assert_null(c.access_key);
	st_err_clear(&err);
	assert_int_equal(st_s3_credentials_parse(&c, text, strlen(text), "nope", &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "[nope]"));
	st_err_clear(&err);

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	(void)close(fd);
	assert_int_equal(st_s3_credentials_load(&c, path, "other", &err), 0);
	assert_string_equal(c.access_key, "AKO");
	st_s3_credentials_dispose(&c);
	(void)unlink(path);
	assert_int_equal(st_s3_credentials_load(&c, path, NULL, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, path));
}

static void test_credentials_env(void **state)
{
	struct st_s3_credentials c = ST_S3_CREDENTIALS_INIT;
	struct st_err err = ST_ERR_INIT;
	char *ak = getenv("AWS_ACCESS_KEY_ID") ? st_xstrdup(getenv("AWS_ACCESS_KEY_ID")) : NULL;
	char *sk = getenv("AWS_SECRET_ACCESS_KEY") ? st_xstrdup(getenv("AWS_SECRET_ACCESS_KEY"))
	                                           : NULL;

	(void)state;
	assert_int_equal(setenv("AWS_ACCESS_KEY_ID", "ENVAK", 1), 0);
	assert_int_equal(unsetenv("AWS_SECRET_ACCESS_KEY"), 0);
	assert_int_equal(st_s3_credentials_load(&c, NULL, NULL, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "AWS_SECRET_ACCESS_KEY"));
	assert_int_equal(setenv("AWS_SECRET_ACCESS_KEY", "ENVSK", 1), 0);
	assert_int_equal(st_s3_credentials_load(&c, NULL, NULL, &err), 0);
	assert_string_equal(c.secret_key, "ENVSK");
	st_s3_credentials_dispose(&c);
	if (ak != NULL)
		assert_int_equal(setenv("AWS_ACCESS_KEY_ID", ak, 1), 0);
	if (sk != NULL)
		assert_int_equal(setenv("AWS_SECRET_ACCESS_KEY", sk, 1), 0);
	free(ak);
	free(sk);
}

/* ---- options, URLs, unreachable endpoint ---- */

static int new_client(struct st_s3_client **c, const char *endpoint, const char *bucket,
                      const char *ak, const char *sk, unsigned retries, struct st_err *err)
{
	struct st_s3_options o = ST_S3_OPTIONS_INIT;
	struct st_s3_credentials cr = ST_S3_CREDENTIALS_INIT;
	const char *region = getenv("STASIS_S3_REGION");

	cr.access_key = st_xstrdup(ak);
	cr.secret_key = st_xstrdup(sk);
	o.endpoint = endpoint;
	o.bucket = bucket;
	o.region = region ? region : "us-east-1";
	o.path_style = true;
	o.max_retries = retries;
	o.backoff_ms = 50;
	o.part_size = 5 * MIB;
	return st_s3_client_new(c, &o, &cr, err);
}

static void test_client_options(void **state)
{
	struct st_s3_client *c = NULL;
	struct st_err err = ST_ERR_INIT;

	(void)state;
	assert_int_equal(new_client(&c, "http://h", "Bad_Bucket!", "a", "b", 0, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "Bad_Bucket!"));
	assert_null(c);
	st_err_clear(&err);
	assert_int_equal(new_client(&c, "ftp://h", "bkt", "a", "b", 0, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "http:// or https://"));
	st_err_clear(&err);
	assert_int_equal(new_client(&c, "http://h/path", "bkt", "a", "b", 0, &err), ST_EINVAL);
	st_err_clear(&err);
	assert_int_equal(new_client(&c, "http://h:9000/", "bkt", "a", "b", 0, &err), 0);
	st_s3_client_free(c);
}

static void open_expect(const char *url, int rc, const char *needle)
{
	struct st_store *s = NULL;
	struct st_err err = ST_ERR_INIT;

	assert_int_equal(st_store_open(&s, url, NULL, &err), rc);
	if (rc == 0) {
		assert_non_null(s);
		st_store_free(s);
		return;
	}
	assert_null(s);
	if (strstr(err.msg, needle) == NULL)
		fail_msg("%s: \"%s\" lacks \"%s\"", url, err.msg, needle);
}

static void test_store_urls(void **state)
{
	(void)state;
	assert_int_equal(setenv("AWS_ACCESS_KEY_ID", getenv("AWS_ACCESS_KEY_ID") ?: "AK", 1), 0);
	assert_int_equal(
	        setenv("AWS_SECRET_ACCESS_KEY", getenv("AWS_SECRET_ACCESS_KEY") ?: "SK", 1), 0);
	open_expect("s3://bkt/some/prefix?endpoint=http%3A%2F%2F127.0.0.1%3A1&region=r"
	            "&pathStyle=true&insecureSkipTLSVerify=false&caFile=/x.pem",
	            0, NULL);
	open_expect("s3://bkt", 0, NULL);
	open_expect("s3://", ST_EINVAL, "no bucket");
	open_expect("s3:///prefix", ST_EINVAL, "no bucket");
	open_expect("s3://bkt?endpoint=http://h&colour=blue", ST_EINVAL, "\"colour\"");
	open_expect("s3://bkt?pathStyle=maybe", ST_EINVAL, "pathStyle=maybe");
	open_expect("s3://bkt?endpoint", ST_EINVAL, "not name=value");
	open_expect("s3://bkt?endpoint=%zz", ST_EINVAL, "endpoint: bad");
	open_expect("s3://bkt?endpoint=ftp://h", ST_EINVAL, "http:// or https://");
	open_expect("s3://UPPER?endpoint=http://h", ST_EINVAL, "UPPER");
}

static int free_port(void)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	(void)close(fd);
	return ntohs(a.sin_port);
}

static double now_s(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_unreachable(void **state)
{
	struct st_s3_client *c = NULL;
	struct st_err err = ST_ERR_INIT;
	char ep[64];
	uint64_t size;
	double t0;

	(void)state;
	(void)snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", free_port());
	assert_int_equal(new_client(&c, ep, "bkt", "a", "b", 3, &err), 0);
	t0 = now_s();
	assert_int_equal(st_s3_head(c, "k", &size, &err), ST_EIO);
	assert_true(now_s() - t0 < 10.0);
	assert_non_null(strstr(err.msg, "after 4 attempts"));
	assert_non_null(strstr(err.msg, "cannot reach the endpoint"));
	assert_non_null(strstr(err.msg, "HEAD bkt/k"));
	st_s3_client_free(c);
}

/* ---- the store-level suite, on any location ---- */

struct keys {
	char k[4][32];
	unsigned n;
};

static int keys_cb(const char *key, uint64_t size, void *payload)
{
	struct keys *ks = payload;

	(void)size;
	if (ks->n < 4)
		(void)snprintf(ks->k[ks->n], sizeof(ks->k[0]), "%s", key);
	ks->n++;
	return 0;
}

static void store_suite_opts(const char *url, const struct st_store_options *opts)
{
	struct st_store *s = NULL;
	struct st_err err = ST_ERR_INIT;
	struct gen g = { 7, 0, 3 * MIB + 17, UINT64_MAX, 0 };
	struct check ck = { 7, 1000, false };
	struct keys ks;
	char *data = NULL;
	size_t len = 0;
	uint64_t size = 0;

	if (st_store_open(&s, url, opts, &err) != 0)
		fail_msg("open %s: %s", url, err.msg);
	assert_int_equal(st_store_put_mem(s, "dir/a", "hello", 5, false, &err), 0);
	assert_int_equal(st_store_put_mem(s, "dir/a", "hello!", 6, false, &err), 0);
	assert_int_equal(st_store_put_mem(s, "dir/a", "other", 5, true, &err), 1);
	assert_int_equal(st_store_get_mem(&data, &len, s, "dir/a", 100, &err), 0);
	assert_int_equal(len, 6);
	assert_memory_equal(data, "hello!", 6);
	free(data);
	assert_int_equal(st_store_put(s, "dir/b", g.size, gen_read, &g, true, &err), 0);
	assert_int_equal(st_store_head(s, "dir/b", &size, &err), 0);
	assert_int_equal(size, 3 * MIB + 17);
	assert_int_equal(st_store_get(s, "dir/b", 1000, 2 * MIB, check_write, &ck, &err), 0);
	assert_false(ck.bad);
	assert_int_equal(ck.pos, 1000 + 2 * MIB);
	assert_int_equal(st_store_head(s, "dir/missing", &size, &err), ST_ENOTFOUND);
	st_err_clear(&err);
	assert_int_equal(st_store_get_mem(&data, &len, s, "dir/missing", 100, &err), ST_ENOTFOUND);
	st_err_clear(&err);
	assert_int_equal(st_store_put_mem(s, "dis", "x", 1, false, &err), 0);
	memset(&ks, 0, sizeof(ks));
	assert_int_equal(st_store_list(s, "dir/", keys_cb, &ks, &err), 0);
	assert_int_equal(ks.n, 2);
	assert_string_equal(ks.k[0], "dir/a");
	assert_string_equal(ks.k[1], "dir/b");
	assert_int_equal(st_store_delete(s, "dir/a", &err), 0);
	assert_int_equal(st_store_delete(s, "dir/a", &err), 0);
	assert_int_equal(st_store_delete(s, "dir/b", &err), 0);
	assert_int_equal(st_store_delete(s, "dis", &err), 0);
	memset(&ks, 0, sizeof(ks));
	assert_int_equal(st_store_list(s, "", keys_cb, &ks, &err), 0);
	assert_int_equal(ks.n, 0);
	st_store_free(s);
}

static void store_suite(const char *url)
{
	store_suite_opts(url, NULL);
}

static void test_store_file(void **state)
{
	char dir[] = "/tmp/stasis-store-XXXXXX";
	char url[128];
	char cmd[160];

	(void)state;
	assert_non_null(mkdtemp(dir));
	(void)snprintf(url, sizeof(url), "file://%s", dir);
	store_suite(url);
	(void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* ---- faults, from a scripted HTTP server on 127.0.0.1 ---- */

/* One scripted answer: status, extra header lines, body; cut < body length drops the rest. */
struct step {
	int status;
	const char *headers;
	const char *body;
	long cut; /* -1: send the whole body */
};

struct fake {
	int fd;
	int port;
	const struct step *steps;
	size_t n;
	pthread_t th;
	char seen[8][1024]; /* request line and headers of each request */
	char bodies[8][64]; /* first bytes of each request body */
};

/* Reads one request (headers, then Content-Length bytes of body). */
static void fake_read(struct fake *f, int c, size_t i)
{
	char buf[8192];
	size_t got = 0;
	char *end = NULL;
	long clen = 0;
	const char *cl;

	while (got < sizeof(buf) - 1 && end == NULL) {
		ssize_t r = read(c, buf + got, sizeof(buf) - 1 - got);

		if (r <= 0)
			return;
		got += (size_t)r;
		buf[got] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	if (end == NULL)
		return;
	(void)snprintf(f->seen[i], sizeof(f->seen[i]), "%.*s", (int)(end - buf), buf);
	if ((cl = strcasestr(buf, "\ncontent-length:")) != NULL && cl < end)
		clen = strtol(cl + 16, NULL, 10);
	end += 4;
	got -= (size_t)(end - buf);
	memmove(buf, end, got);
	while ((long)got < clen && got < sizeof(buf) - 1) {
		ssize_t r = read(c, buf + got, sizeof(buf) - 1 - got);

		if (r <= 0)
			break;
		got += (size_t)r;
	}
	(void)snprintf(f->bodies[i], sizeof(f->bodies[i]), "%.*s", (int)got, buf);
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	size_t i;

	for (i = 0; i < f->n && i < 8; i++) {
		const struct step *s = &f->steps[i];
		char head[1024];
		size_t blen = s->body ? strlen(s->body) : 0;
		size_t send = s->cut >= 0 ? (size_t)s->cut : blen;
		int c = accept(f->fd, NULL, NULL);
		int n;

		if (c < 0)
			break;
		fake_read(f, c, i);
		n = snprintf(head, sizeof(head),
		             "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
		             s->status, blen, s->headers ? s->headers : "");
		if (write(c, head, (size_t)n) != n || (send > 0 && write(c, s->body, send) < 0))
			print_error("fake server: write failed\n");
		(void)close(c);
	}
	return NULL;
}

static void fake_start(struct fake *f, const struct step *steps, size_t n)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);

	memset(f, 0, sizeof(*f));
	f->steps = steps;
	f->n = n;
	f->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(f->fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(f->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(f->fd, 8), 0);
	assert_int_equal(getsockname(f->fd, (struct sockaddr *)&a, &l), 0);
	f->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
}

/* Unblocks a server still waiting in accept() and collects the thread. */
static void fake_stop(struct fake *f)
{
	(void)shutdown(f->fd, SHUT_RDWR);
	(void)pthread_join(f->th, NULL);
	(void)close(f->fd);
}

static struct st_s3_client *fake_client(const struct fake *f, unsigned retries)
{
	struct st_s3_client *c = NULL;
	struct st_err err = ST_ERR_INIT;
	char ep[64];

	(void)snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", f->port);
	assert_int_equal(new_client(&c, ep, "bkt", "AKFAKE", "SKFAKE", retries, &err), 0);
	return c;
}

struct sink {
	char b[256];
	size_t n;
};

static int sink_write(const void *buf, size_t n, void *payload)
{
	struct sink *s = payload;

	if (n > sizeof(s->b) - 1 - s->n)
		return ST_ETOOBIG;
	memcpy(s->b + s->n, buf, n);
	s->n += n;
	s->b[s->n] = '\0';
	return 0;
}

static void test_fault_retry_5xx(void **state)
{
	static const struct step steps[] = {
		{ 503, NULL, "<Error><Code>SlowDown</Code></Error>", -1 },
		{ 500, NULL, "", -1 },
		{ 200, NULL, "hello world", -1 },
	};
	struct fake f;
	struct st_s3_client *c;
	struct st_err err = ST_ERR_INIT;
	struct sink s = { "", 0 };
	size_t i;

	(void)state;
	fake_start(&f, steps, 3);
	c = fake_client(&f, 3);
	assert_int_equal(st_s3_get(c, "a/b", 0, UINT64_MAX, sink_write, &s, &err), 0);
	assert_string_equal(s.b, "hello world");
	/* Every attempt is signed afresh. */
	for (i = 0; i < 3; i++) {
		assert_non_null(strstr(f.seen[i], "GET /bkt/a/b HTTP/1.1"));
		assert_non_null(
		        strstr(f.seen[i], "Authorization: AWS4-HMAC-SHA256 Credential=AKFAKE/"));
		assert_non_null(strstr(f.seen[i], "x-amz-content-sha256: " ST_SIGV4_EMPTY_SHA256));
		assert_null(strstr(f.seen[i], "SKFAKE"));
	}
	st_s3_client_free(c);
	fake_stop(&f);
}

static void test_fault_resume(void **state)
{
	static const struct step steps[] = {
		{ 200, NULL, "0123456789abcdefghij", 8 },
		{ 206, "Content-Range: bytes 8-19/20\r\n", "89abcdefghij", -1 },
	};
	struct fake f;
	struct st_s3_client *c;
	struct st_err err = ST_ERR_INIT;
	struct sink s = { "", 0 };

	(void)state;
	fake_start(&f, steps, 2);
	c = fake_client(&f, 2);
	assert_int_equal(st_s3_get(c, "k", 0, UINT64_MAX, sink_write, &s, &err), 0);
	assert_string_equal(s.b, "0123456789abcdefghij");
	assert_null(strstr(f.seen[0], "Range:"));
	assert_non_null(strstr(f.seen[1], "Range: bytes=8-"));
	st_s3_client_free(c);
	fake_stop(&f);
}

/* A server that ignores Range must not make us hand over bytes outside the range. */
static void test_fault_range_ignored(void **state)
{
	static const struct step steps[] = {
		{ 200, NULL, "0123456789", -1 },
		{ 200, NULL, "0123456789", -1 },
	};
	struct fake f;
	struct st_s3_client *c;
	struct st_err err = ST_ERR_INIT;
	struct sink s = { "", 0 };

	(void)state;
	fake_start(&f, steps, 2);
	c = fake_client(&f, 0);
	assert_int_equal(st_s3_get(c, "k", 0, 5, sink_write, &s, &err), ST_EPROTO);
	assert_non_null(strstr(err.msg, "Range"));
	assert_true(s.n <= 5);
	st_err_clear(&err);
	s.n = 0;
	assert_int_equal(st_s3_get(c, "k", 3, 2, sink_write, &s, &err), ST_EPROTO);
	assert_int_equal(s.n, 0);
	assert_non_null(strstr(f.seen[1], "Range: bytes=3-4"));
	st_s3_client_free(c);
	fake_stop(&f);
}

static void test_fault_put_replayed(void **state)
{
	static const struct step steps[] = {
		{ 503, NULL, "", -1 },
		{ 200, "ETag: \"x\"\r\n", "", -1 },
	};
	struct fake f;
	struct st_s3_client *c;
	struct st_err err = ST_ERR_INIT;
	struct gen g = { 5, 0, 40, UINT64_MAX, 7 };

	(void)state;
	fake_start(&f, steps, 2);
	c = fake_client(&f, 2);
	assert_int_equal(st_s3_put(c, "k", 40, gen_read, &g, false, &err), 0);
	assert_int_equal(strlen(f.bodies[0]) > 0, true);
	assert_memory_equal(f.bodies[0], f.bodies[1], sizeof(f.bodies[0]));
	assert_non_null(strstr(f.seen[1], "Content-Length: 40"));
	st_s3_client_free(c);
	fake_stop(&f);
}

/* A put from memory sends the caller's bytes again on a retry. */
static void test_fault_put_mem_replayed(void **state)
{
	static const struct step steps[] = {
		{ 503, NULL, "", -1 },
		{ 200, "ETag: \"x\"\r\n", "", -1 },
	};
	static const char data[] = "the caller's bytes, sent twice";
	struct fake f;
	struct st_s3_client *c;
	struct st_err err = ST_ERR_INIT;

	(void)state;
	fake_start(&f, steps, 2);
	c = fake_client(&f, 2);
	assert_int_equal(st_s3_put_mem(c, "k", data, sizeof(data) - 1, false, &err), 0);
	assert_string_equal(f.bodies[0], data);
	assert_string_equal(f.bodies[1], data);
	assert_non_null(strstr(f.seen[1], "Content-Length: 30"));
	st_s3_client_free(c);
	fake_stop(&f);
}

static void test_fault_give_up(void **state)
{
	static const struct step steps[] = {
		{ 500, NULL, "<Error><Code>InternalError</Code><Message>boom</Message></Error>",
		  -1 },
		{ 500, NULL, "<Error><Code>InternalError</Code><Message>boom</Message></Error>",
		  -1 },
		{ 200, NULL, "never reached", -1 },
	};
	struct fake f;
	struct st_s3_client *c;
	struct st_err err = ST_ERR_INIT;
	struct sink s = { "", 0 };

	(void)state;
	fake_start(&f, steps, 3);
	c = fake_client(&f, 1);
	assert_int_equal(st_s3_get(c, "k", 0, UINT64_MAX, sink_write, &s, &err), ST_EUPSTREAM);
	assert_string_equal(err.msg, "s3 GET bkt/k: InternalError (HTTP 500): boom");
	st_s3_client_free(c);
	fake_stop(&f);
}

static void test_fault_hints(void **state)
{
	static const struct step steps[] = {
		{ 403, NULL, "", -1 },
		{ 403, NULL,
		  "<Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the "
		  "request time and the current time is too large.</Message></Error>",
		  -1 },
	};
	struct fake f;
	struct st_s3_client *c;
	struct st_err err = ST_ERR_INIT;
	uint64_t size;
	struct sink s = { "", 0 };

	(void)state;
	fake_start(&f, steps, 2);
	c = fake_client(&f, 0);
	/* HEAD has no body: the status alone must give a useful message. */
	assert_int_equal(st_s3_head(c, "k", &size, &err), ST_EUPSTREAM);
	assert_non_null(strstr(err.msg, "Forbidden (HTTP 403); access denied"));
	st_err_clear(&err);
	assert_int_equal(st_s3_get(c, "k", 0, UINT64_MAX, sink_write, &s, &err), ST_EUPSTREAM);
	assert_non_null(strstr(err.msg, "RequestTimeTooSkewed"));
	assert_non_null(strstr(err.msg, "clock skew"));
	st_s3_client_free(c);
	fake_stop(&f);
}

static void test_fault_inm_unsupported(void **state)
{
	static const struct step steps[] = {
		{ 501, NULL, "<Error><Code>NotImplemented</Code></Error>", -1 },
		{ 404, NULL, "", -1 },
		{ 200, "ETag: \"x\"\r\n", "", -1 },
		{ 200, NULL, "", -1 },
	};
	struct fake f;
	struct st_s3_client *c;
	struct st_err err = ST_ERR_INIT;
	struct gen g = { 5, 0, 3, UINT64_MAX, 0 };

	(void)state;
	fake_start(&f, steps, 4);
	c = fake_client(&f, 0);
	assert_int_equal(st_s3_put(c, "k", 3, gen_read, &g, true, &err), 0);
	assert_non_null(strstr(f.seen[0], "If-None-Match: *"));
	assert_non_null(strstr(f.seen[1], "HEAD /bkt/k"));
	assert_non_null(strstr(f.seen[2], "PUT /bkt/k"));
	assert_null(strstr(f.seen[2], "If-None-Match"));
	/* The client remembers: the next conditional put starts with HEAD, which finds the key. */
	g = (struct gen){ 5, 0, 3, UINT64_MAX, 0 };
	assert_int_equal(st_s3_put(c, "k", 3, gen_read, &g, true, &err), 1);
	assert_non_null(strstr(f.seen[3], "HEAD /bkt/k"));
	st_s3_client_free(c);
	fake_stop(&f);
}

/* ---- against a real server ---- */

static char bucket[64];
static const char *endpoint;

static void need_server(void)
{
	if (endpoint == NULL) {
		print_message("skip: STASIS_S3_ENDPOINT unset (tests/integration/s3_rgw.sh runs "
		              "these against Ceph RGW)\n");
		skip();
	}
}

static int client(struct st_s3_client **c)
{
	struct st_err err = ST_ERR_INIT;
	int rc = new_client(c, endpoint, bucket, getenv("AWS_ACCESS_KEY_ID"),
	                    getenv("AWS_SECRET_ACCESS_KEY"), 3, &err);

	if (rc != 0)
		print_error("client: %s\n", err.msg);
	return rc;
}

static int setup(void **state)
{
	struct st_s3_client *c = NULL;
	struct st_err err = ST_ERR_INIT;

	(void)state;
	endpoint = getenv("STASIS_S3_ENDPOINT");
	if (endpoint == NULL || endpoint[0] == '\0') {
		endpoint = NULL;
		return 0;
	}
	(void)snprintf(bucket, sizeof(bucket), "stasis-test-%ld-%d", (long)time(NULL), getpid());
	if (client(&c) != 0)
		return -1;
	if (st_s3_create_bucket(c, &err) != 0) {
		print_error("create bucket %s: %s\n", bucket, err.msg);
		st_s3_client_free(c);
		return -1;
	}
	st_s3_client_free(c);
	return 0;
}

static void test_s3_basic(void **state)
{
	struct st_s3_client *c = NULL;
	struct st_err err = ST_ERR_INIT;
	struct gen g = { 1, 0, 100000, UINT64_MAX, 333 };
	struct check ck = { 1, 0, false };
	uint64_t size = 0;
	const char *weird = "odd name/with space+plus&amp=eq%pct~tilde\xc3\xa9";

	(void)state;
	need_server();
	assert_int_equal(client(&c), 0);
	assert_int_equal(st_s3_put(c, "basic/obj", g.size, gen_read, &g, false, &err), 0);
	assert_int_equal(st_s3_head(c, "basic/obj", &size, &err), 0);
	assert_int_equal(size, 100000);
	assert_int_equal(st_s3_get(c, "basic/obj", 0, UINT64_MAX, check_write, &ck, &err), 0);
	assert_false(ck.bad);
	assert_int_equal(ck.pos, 100000);
	ck = (struct check){ 1, 99990, false };
	assert_int_equal(st_s3_get(c, "basic/obj", 99990, 10, check_write, &ck, &err), 0);
	assert_int_equal(ck.pos, 100000);
	assert_false(ck.bad);
	/* Keys that need encoding in the path and escaping in XML. */
	g = (struct gen){ 2, 0, 10, UINT64_MAX, 0 };
	assert_int_equal(st_s3_put(c, weird, 10, gen_read, &g, false, &err), 0);
	assert_int_equal(st_s3_head(c, weird, &size, &err), 0);
	assert_int_equal(st_s3_delete_many(c, &weird, 1, &err), 0);
	assert_int_equal(st_s3_head(c, weird, &size, &err), ST_ENOTFOUND);
	st_err_clear(&err);
	/* Empty object, unknown size. */
	g = (struct gen){ 3, 0, 0, UINT64_MAX, 0 };
	assert_int_equal(st_s3_put(c, "basic/empty", UINT64_MAX, gen_read, &g, false, &err), 0);
	assert_int_equal(st_s3_head(c, "basic/empty", &size, &err), 0);
	assert_int_equal(size, 0);
	assert_int_equal(st_s3_delete(c, "basic/obj", &err), 0);
	assert_int_equal(st_s3_delete(c, "basic/obj", &err), 0);
	assert_int_equal(st_s3_head(c, "basic/obj", &size, &err), ST_ENOTFOUND);
	st_err_clear(&err);
	assert_int_equal(st_s3_get(c, "basic/obj", 0, UINT64_MAX, check_write, &ck, &err),
	                 ST_ENOTFOUND);
	assert_non_null(strstr(err.msg, "NoSuchKey"));
	assert_int_equal(st_s3_delete(c, "basic/empty", &err), 0);
	st_s3_client_free(c);
}

static void test_s3_if_none_match(void **state)
{
	struct st_s3_client *c = NULL;
	struct st_err err = ST_ERR_INIT;
	struct gen g = { 4, 0, 1000, UINT64_MAX, 0 };
	struct check ck = { 4, 0, false };

	(void)state;
	need_server();
	assert_int_equal(client(&c), 0);
	assert_int_equal(st_s3_put(c, "inm/k", 1000, gen_read, &g, true, &err), 0);
	g = (struct gen){ 5, 0, 1000, UINT64_MAX, 0 };
	assert_int_equal(st_s3_put(c, "inm/k", 1000, gen_read, &g, true, &err), 1);
	/* The first content stays. */
	assert_int_equal(st_s3_get(c, "inm/k", 0, UINT64_MAX, check_write, &ck, &err), 0);
	assert_false(ck.bad);
	/* Multipart with the condition: skipped as well. */
	g = (struct gen){ 5, 0, 11 * MIB, UINT64_MAX, 0 };
	assert_int_equal(st_s3_put(c, "inm/k", g.size, gen_read, &g, true, &err), 1);
	assert_int_equal(st_s3_delete(c, "inm/k", &err), 0);
	st_s3_client_free(c);
}

static void test_s3_pagination(void **state)
{
	struct st_s3_client *c = NULL;
	struct st_err err = ST_ERR_INIT;
	enum { N = 1205 };
	char **keys = NULL;
	unsigned n = 0;
	unsigned i;

	(void)state;
	need_server();
	keys = st_xcalloc(N, sizeof(*keys));
	assert_int_equal(client(&c), 0);
	for (i = 0; i < N; i++) {
		struct gen g = { i, 0, 1, UINT64_MAX, 0 };

		keys[i] = st_xmalloc(32);
		(void)snprintf(keys[i], 32, "page/%05u", i);
		assert_int_equal(st_s3_put(c, keys[i], 1, gen_read, &g, false, &err), 0);
	}
	assert_int_equal(st_s3_list(c, "page/", count_cb, &n, &err), 0);
	assert_int_equal(n, N);
	assert_int_equal(st_s3_delete_many(c, (const char *const *)keys, N, &err), 0);
	n = 0;
	assert_int_equal(st_s3_list(c, "page/", count_cb, &n, &err), 0);
	assert_int_equal(n, 0);
	for (i = 0; i < N; i++)
		free(keys[i]);
	free(keys);
	st_s3_client_free(c);
}

static void test_s3_multipart(void **state)
{
	struct st_s3_client *c = NULL;
	struct st_err err = ST_ERR_INIT;
	struct gen g = { 9, 0, 12 * MIB + 3, UINT64_MAX, 100000 };
	struct check ck = { 9, 0, false };
	uint64_t size = 0;
	unsigned ups = 99;

	(void)state;
	need_server();
	assert_int_equal(client(&c), 0);
	/* Known size: three parts of 5 MiB, 5 MiB and 2 MiB + 3. */
	assert_int_equal(st_s3_put(c, "mp/known", g.size, gen_read, &g, false, &err), 0);
	assert_int_equal(st_s3_head(c, "mp/known", &size, &err), 0);
	assert_int_equal(size, 12 * MIB + 3);
	assert_int_equal(st_s3_get(c, "mp/known", 0, UINT64_MAX, check_write, &ck, &err), 0);
	assert_false(ck.bad);
	assert_int_equal(ck.pos, 12 * MIB + 3);
	/* A range across the first part boundary. */
	ck = (struct check){ 9, 5 * MIB - 10, false };
	assert_int_equal(st_s3_get(c, "mp/known", 5 * MIB - 10, 20, check_write, &ck, &err), 0);
	assert_false(ck.bad);
	/* Unknown size, exactly two parts. */
	g = (struct gen){ 10, 0, 10 * MIB, UINT64_MAX, 0 };
	assert_int_equal(st_s3_put(c, "mp/unknown", UINT64_MAX, gen_read, &g, false, &err), 0);
	assert_int_equal(st_s3_head(c, "mp/unknown", &size, &err), 0);
	assert_int_equal(size, 10 * MIB);
	/* The reader fails in the second part: the upload is aborted, nothing is left. */
	g = (struct gen){ 11, 0, 12 * MIB, 7 * MIB, 0 };
	assert_int_equal(st_s3_put(c, "mp/fail", g.size, gen_read, &g, false, &err), ST_EIO);
	assert_non_null(strstr(err.msg, "reading the data failed"));
	st_err_clear(&err);
	assert_int_equal(st_s3_head(c, "mp/fail", &size, &err), ST_ENOTFOUND);
	st_err_clear(&err);
	assert_int_equal(st_s3_count_uploads(c, "mp/", &ups, &err), 0);
	assert_int_equal(ups, 0);
	/* A reader shorter than announced fails too. */
	g = (struct gen){ 12, 0, 6 * MIB, UINT64_MAX, 0 };
	assert_int_equal(st_s3_put(c, "mp/short", 11 * MIB, gen_read, &g, false, &err), ST_EIO);
	st_err_clear(&err);
	assert_int_equal(st_s3_count_uploads(c, "mp/", &ups, &err), 0);
	assert_int_equal(ups, 0);
	assert_int_equal(st_s3_delete(c, "mp/known", &err), 0);
	assert_int_equal(st_s3_delete(c, "mp/unknown", &err), 0);
	st_s3_client_free(c);
}

static void test_s3_wrong_secret(void **state)
{
	struct st_s3_client *c = NULL;
	struct st_err err = ST_ERR_INIT;
	struct gen g = { 1, 0, 10, UINT64_MAX, 0 };
	unsigned n = 0;

	(void)state;
	need_server();
	assert_int_equal(new_client(&c, endpoint, bucket, getenv("AWS_ACCESS_KEY_ID"),
	                            "definitely-not-the-secret", 3, &err),
	                 0);
	assert_true(st_s3_put(c, "x", 10, gen_read, &g, false, &err) < 0);
	print_message("wrong secret: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "SignatureDoesNotMatch"));
	assert_non_null(strstr(err.msg, "wrong credentials"));
	assert_null(strstr(err.msg, "definitely-not-the-secret"));
	st_err_clear(&err);
	assert_true(st_s3_list(c, "", count_cb, &n, &err) < 0);
	assert_non_null(strstr(err.msg, "wrong credentials"));
	st_s3_client_free(c);
	/* An unknown access key. */
	assert_int_equal(new_client(&c, endpoint, bucket, "NOSUCHKEYID", "x", 3, &err), 0);
	st_err_clear(&err);
	assert_true(st_s3_list(c, "", count_cb, &n, &err) < 0);
	print_message("unknown key: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "InvalidAccessKeyId"));
	assert_non_null(strstr(err.msg, "wrong credentials"));
	st_s3_client_free(c);
}

static void test_s3_missing_bucket(void **state)
{
	struct st_s3_client *c = NULL;
	struct st_err err = ST_ERR_INIT;
	struct gen g = { 1, 0, 10, UINT64_MAX, 0 };
	unsigned n = 0;

	(void)state;
	need_server();
	assert_int_equal(new_client(&c, endpoint, "stasis-no-such-bucket",
	                            getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"), 3,
	                            &err),
	                 0);
	assert_int_equal(st_s3_put(c, "x", 10, gen_read, &g, false, &err), ST_ENOTFOUND);
	print_message("missing bucket: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "NoSuchBucket"));
	assert_non_null(strstr(err.msg, "missing bucket"));
	assert_non_null(strstr(err.msg, "stasis-no-such-bucket/x"));
	st_err_clear(&err);
	assert_int_equal(st_s3_list(c, "", count_cb, &n, &err), ST_ENOTFOUND);
	st_s3_client_free(c);
}

static void test_store_s3(void **state)
{
	char url[512];

	(void)state;
	need_server();
	(void)snprintf(url, sizeof(url),
	               "s3://%s/store/prefix?endpoint=%s&region=%s&pathStyle=true", bucket,
	               endpoint,
	               getenv("STASIS_S3_REGION") ? getenv("STASIS_S3_REGION") : "us-east-1");
	store_suite(url);
}

/* The same through a credentials file with a named profile, as a Velero-style secret. */
static void test_store_s3_credentials_file(void **state)
{
	struct st_store_options opts = ST_STORE_OPTIONS_INIT;
	char path[] = "/tmp/stasis-s3-cred-XXXXXX";
	char url[512];
	FILE *f;
	int fd;

	(void)state;
	need_server();
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fprintf(f,
	        "[default]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n"
	        "[rgw]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
	        getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"));
	assert_int_equal(fclose(f), 0);
	opts.credentials_file = path;
	opts.profile = "rgw";
	(void)snprintf(url, sizeof(url), "s3://%s/credfile?endpoint=%s&region=%s&pathStyle=true",
	               bucket, endpoint,
	               getenv("STASIS_S3_REGION") ? getenv("STASIS_S3_REGION") : "us-east-1");
	store_suite_opts(url, &opts);
	(void)unlink(path);
}

struct worker {
	struct st_s3_client *c;
	unsigned id;
	int failures;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned i;

	for (i = 0; i < 20; i++) {
		struct st_err err = ST_ERR_INIT;
		char key[64];
		struct gen g = { w->id * 100 + i, 0, 4000 + i, UINT64_MAX, 0 };
		struct check ck = { w->id * 100 + i, 0, false };

		(void)snprintf(key, sizeof(key), "threads/%u/%u", w->id, i);
		if (st_s3_put(w->c, key, g.size, gen_read, &g, false, &err) != 0 ||
		    st_s3_get(w->c, key, 0, UINT64_MAX, check_write, &ck, &err) != 0 || ck.bad ||
		    ck.pos != 4000 + i || st_s3_delete(w->c, key, &err) != 0)
			w->failures++;
	}
	return NULL;
}

/* One client shared by several threads: the handle pool and signing must not interfere. */
static void test_s3_threads(void **state)
{
	struct st_s3_client *c = NULL;
	struct worker w[4];
	pthread_t th[4];
	unsigned i;

	(void)state;
	need_server();
	assert_int_equal(client(&c), 0);
	for (i = 0; i < 4; i++) {
		w[i] = (struct worker){ c, i, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
	}
	st_s3_client_free(c);
}

static void test_s3_tls(void **state)
{
	const char *tls = getenv("STASIS_S3_TLS_ENDPOINT");
	const char *ca = getenv("STASIS_S3_CA_FILE");
	struct st_s3_options o = ST_S3_OPTIONS_INIT;
	struct st_s3_credentials cr = ST_S3_CREDENTIALS_INIT;
	struct st_s3_client *c = NULL;
	struct st_err err = ST_ERR_INIT;
	struct gen g = { 21, 0, 6 * MIB, UINT64_MAX, 0 };
	struct check ck = { 21, 0, false };
	char url[1024];
	int pass;

	(void)state;
	need_server();
	if (tls == NULL || ca == NULL) {
		print_message("skip: STASIS_S3_TLS_ENDPOINT or STASIS_S3_CA_FILE unset\n");
		skip();
	}
	o.endpoint = tls;
	o.bucket = bucket;
	o.region = getenv("STASIS_S3_REGION");
	o.path_style = true;
	o.max_retries = 1;
	o.part_size = 5 * MIB;
	/* 0: verified with the private CA; 1: no CA, must fail; 2: verification off. */
	for (pass = 0; pass < 3; pass++) {
		cr.access_key = st_xstrdup(getenv("AWS_ACCESS_KEY_ID"));
		cr.secret_key = st_xstrdup(getenv("AWS_SECRET_ACCESS_KEY"));
		o.ca_file = pass == 0 ? ca : NULL;
		o.insecure_skip_verify = pass == 2;
		assert_int_equal(st_s3_client_new(&c, &o, &cr, &err), 0);
		g = (struct gen){ 21, 0, 6 * MIB, UINT64_MAX, 0 };
		if (pass == 1) {
			assert_int_equal(st_s3_put(c, "tls/k", g.size, gen_read, &g, false, &err),
			                 ST_ETLS);
			print_message("no CA: %s\n", err.msg);
			assert_non_null(strstr(err.msg, "caFile="));
			st_err_clear(&err);
		} else {
			/* Over TLS the payload goes unsigned; multipart exercises it on parts too.
			 */
			assert_int_equal(st_s3_put(c, "tls/k", g.size, gen_read, &g, false, &err),
			                 0);
			ck = (struct check){ 21, 0, false };
			assert_int_equal(
			        st_s3_get(c, "tls/k", 0, UINT64_MAX, check_write, &ck, &err), 0);
			assert_false(ck.bad);
			assert_int_equal(ck.pos, 6 * MIB);
		}
		st_s3_client_free(c);
		c = NULL;
	}
	(void)snprintf(url, sizeof(url),
	               "s3://%s/tls-store?endpoint=%s&caFile=%s&pathStyle=true&region=%s", bucket,
	               tls, ca, o.region ? o.region : "us-east-1");
	store_suite(url);
}

/* Virtual-host addressing: bucket.localhost resolves to 127.0.0.1 in libcurl. */
static void test_s3_virtual_host(void **state)
{
	struct st_s3_options o = ST_S3_OPTIONS_INIT;
	struct st_s3_credentials cr = ST_S3_CREDENTIALS_INIT;
	struct st_s3_client *c = NULL;
	struct st_err err = ST_ERR_INIT;
	struct gen g = { 22, 0, 1000, UINT64_MAX, 0 };
	const char *port;
	char ep[128];
	uint64_t size = 0;
	unsigned n = 0;

	(void)state;
	need_server();
	port = strrchr(endpoint, ':');
	assert_non_null(port);
	(void)snprintf(ep, sizeof(ep), "http://localhost%s", port);
	cr.access_key = st_xstrdup(getenv("AWS_ACCESS_KEY_ID"));
	cr.secret_key = st_xstrdup(getenv("AWS_SECRET_ACCESS_KEY"));
	o.endpoint = ep;
	o.bucket = bucket;
	o.region = getenv("STASIS_S3_REGION");
	o.path_style = false;
	assert_int_equal(st_s3_client_new(&c, &o, &cr, &err), 0);
	if (st_s3_put(c, "vhost/k", 1000, gen_read, &g, false, &err) != 0)
		fail_msg("virtual-host put: %s", err.msg);
	assert_int_equal(st_s3_head(c, "vhost/k", &size, &err), 0);
	assert_int_equal(size, 1000);
	assert_int_equal(st_s3_list(c, "vhost/", count_cb, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(st_s3_delete(c, "vhost/k", &err), 0);
	st_s3_client_free(c);
}

/* A cheap reader for the benchmark: one random MiB repeated, so the figure is the client's. */
struct block {
	unsigned char b[MIB];
	uint64_t pos;
	uint64_t size;
};

static long block_read(void *buf, size_t cap, void *payload)
{
	struct block *k = payload;
	size_t off = (size_t)(k->pos % MIB);
	size_t n = MIB - off;

	if (n > cap)
		n = cap;
	if (n > k->size - k->pos)
		n = (size_t)(k->size - k->pos);
	memcpy(buf, k->b + off, n);
	k->pos += n;
	return (long)n;
}

static void test_s3_bench(void **state)
{
	const char *mb = getenv("STASIS_S3_BENCH_MB");
	struct st_s3_client *c = NULL;
	struct st_s3_options o = ST_S3_OPTIONS_INIT;
	struct st_s3_credentials cr = ST_S3_CREDENTIALS_INIT;
	struct st_err err = ST_ERR_INIT;
	struct block *g = NULL;
	size_t i;
	double t0;
	double dt;

	(void)state;
	need_server();
	if (mb == NULL) {
		print_message("skip: STASIS_S3_BENCH_MB unset\n");
		skip();
	}
	g = st_xcalloc(1, sizeof(*g));
	for (i = 0; i < MIB; i++)
		g->b[i] = gen_byte(42, i);
	g->size = (uint64_t)strtoul(mb, NULL, 10) * MIB;
	cr.access_key = st_xstrdup(getenv("AWS_ACCESS_KEY_ID"));
	cr.secret_key = st_xstrdup(getenv("AWS_SECRET_ACCESS_KEY"));
	o.endpoint = endpoint;
	o.bucket = bucket;
	o.region = getenv("STASIS_S3_REGION");
	o.path_style = true;
	assert_int_equal(st_s3_client_new(&c, &o, &cr, &err), 0);
	t0 = now_s();
	assert_int_equal(st_s3_put(c, "bench/obj", g->size, block_read, g, false, &err), 0);
	dt = now_s() - t0;
	print_message("bench: PUT %s MiB in %.2f s = %.1f MiB/s (single stream, 16 MiB parts)\n",
	              mb, dt, (double)g->size / MIB / dt);
	assert_int_equal(st_s3_delete(c, "bench/obj", &err), 0);
	st_s3_client_free(c);
	free(g);
}

int main(void)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xml_error),
		cmocka_unit_test(test_xml_text_caps),
		cmocka_unit_test(test_xml_list),
		cmocka_unit_test(test_credentials_file),
		cmocka_unit_test(test_credentials_env),
		cmocka_unit_test(test_client_options),
		cmocka_unit_test(test_store_urls),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_store_file),
		cmocka_unit_test(test_fault_retry_5xx),
		cmocka_unit_test(test_fault_resume),
		cmocka_unit_test(test_fault_range_ignored),
		cmocka_unit_test(test_fault_put_replayed),
		cmocka_unit_test(test_fault_put_mem_replayed),
		cmocka_unit_test(test_fault_give_up),
		cmocka_unit_test(test_fault_hints),
		cmocka_unit_test(test_fault_inm_unsupported),
		cmocka_unit_test(test_s3_basic),
		cmocka_unit_test(test_s3_if_none_match),
		cmocka_unit_test(test_s3_pagination),
		cmocka_unit_test(test_s3_multipart),
		cmocka_unit_test(test_s3_wrong_secret),
		cmocka_unit_test(test_s3_missing_bucket),
		cmocka_unit_test(test_store_s3),
		cmocka_unit_test(test_store_s3_credentials_file),
		cmocka_unit_test(test_s3_threads),
		cmocka_unit_test(test_s3_tls),
		cmocka_unit_test(test_s3_virtual_host),
		cmocka_unit_test(test_s3_bench),
	};
	/* clang-format on */

	return cmocka_run_group_tests_name("s3", tests, setup, NULL);
}
