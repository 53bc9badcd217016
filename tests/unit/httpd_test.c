/*
 * pkg/httpd against real TLS: certificates made with the openssl command-line
 * tool (an independent implementation), requests made with libcurl.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "pkg/httpd.h"
#include "pkg/util/buf.h"
#include "pkg/util/mem.h"

static char dir[] = "/tmp/st-httpd-XXXXXX";

static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

/* A CA, a server leaf for 127.0.0.1 signed by it, a client leaf, and an outsider CA + client. */
static int setup(void **state)
{
	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	return sh("cd %s && "
	          "mk() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
	          "-keyout $1.key -out $1.crt -days 30 -subj /CN=$1 2>/dev/null; }; "
	          "leaf() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
	          "-keyout $1.key -out $1.csr -subj /CN=$1 2>/dev/null && "
	          "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > $1.ext && "
	          "openssl x509 -req -in $1.csr -CA $2.crt -CAkey $2.key -CAcreateserial "
	          "-days 30 -extfile $1.ext -out $1.crt 2>/dev/null; }; "
	          "mk ca && mk other && leaf server ca && leaf server2 ca && leaf client ca && "
	          "leaf intruder other",
	          dir);
}

static int teardown(void **state)
{
	(void)state;
	return sh("rm -rf %s", dir);
}

static int echo_handler(struct st_httpd_response *resp, const struct st_httpd_request *req,
                        void *payload)
{
	struct st_buf b = ST_BUF_INIT(1 << 20);

	(void)payload;
	if (st_buf_printf(&b, "%s %s %zu %s", req->method, req->path, req->body_len,
	                  req->client_cn ? req->client_cn : "-") < 0)
		return -1;
	resp->status = 200;
	resp->content_type = "text/plain";
	resp->body = st_buf_detach(&b, &resp->body_len);
	return 0;
}

static size_t collect(char *p, size_t sz, size_t n, void *ud)
{
	if (st_buf_put(ud, p, sz * n) < 0)
		return 0;
	return sz * n;
}

struct reply {
	long code;
	CURLcode cc;
	struct st_buf body;
	char issuer_cn[64];
};

static void request(struct reply *r, uint16_t port, const char *path, const char *body,
                    size_t body_len, const char *client)
{
	CURL *c = curl_easy_init();
	char url[256];
	char path_buf[512];
	char key_buf[512];
	char ca[512];

	st_buf_init(&r->body, 1 << 20);
	(void)snprintf(url, sizeof(url), "https://127.0.0.1:%u%s", port, path);
	(void)snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CAINFO, ca);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	if (body != NULL) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	}
	if (client != NULL) {
		(void)snprintf(path_buf, sizeof(path_buf), "%s/%s.crt", dir, client);
		(void)snprintf(key_buf, sizeof(key_buf), "%s/%s.key", dir, client);
		curl_easy_setopt(c, CURLOPT_SSLCERT, path_buf);
		curl_easy_setopt(c, CURLOPT_SSLKEY, key_buf);
	}
	r->cc = curl_easy_perform(c);
	r->code = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
	curl_easy_cleanup(c);
}

static struct st_httpd *start(const char *cert, const char *client_ca)
{
	struct st_httpd_options o = ST_HTTPD_OPTIONS_INIT;
	struct st_httpd *h = NULL;
	struct st_err err = ST_ERR_INIT;
	static char cf[512], kf[512], caf[512];

	(void)snprintf(cf, sizeof(cf), "%s/%s.crt", dir, cert);
	(void)snprintf(kf, sizeof(kf), "%s/%s.key", dir, cert);
	(void)snprintf(caf, sizeof(caf), "%s/%s.crt", dir, client_ca ? client_ca : "");
	o.cert_file = cf;
	o.key_file = kf;
	o.client_ca_file = client_ca ? caf : NULL;
	o.threads = 2;
	o.max_body = 1000;
	if (st_httpd_start(&h, &o, echo_handler, NULL, &err) < 0)
		fail_msg("start: %s", st_err_text(&err));
	return h;
}

static void test_basic_and_413(void **state)
{
	struct st_httpd *h = start("server", NULL);
	struct reply r;
	char *big = st_xcalloc(1, 5000);

	(void)state;
	request(&r, st_httpd_port(h), "/x?y=1", "abc", 3, NULL);
	assert_int_equal(r.cc, CURLE_OK);
	assert_int_equal(r.code, 200);
	assert_string_equal(st_buf_cstr(&r.body), "POST /x 3 -");
	st_buf_dispose(&r.body);
	memset(big, 'a', 4999);
	request(&r, st_httpd_port(h), "/x", big, 4999, NULL);
	assert_int_equal(r.code, 413);
	assert_non_null(strstr(st_buf_cstr(&r.body), "limit of 1000 bytes"));
	st_buf_dispose(&r.body);
	free(big);
	st_httpd_stop(h);
}

static void test_mtls(void **state)
{
	struct st_httpd *h = start("server", "ca");
	struct reply r;

	(void)state;
	request(&r, st_httpd_port(h), "/v1/status", NULL, 0, "client");
	assert_int_equal(r.code, 200);
	assert_string_equal(st_buf_cstr(&r.body), "GET /v1/status 0 client");
	st_buf_dispose(&r.body);
	/* The certificate is requested, not required: the refusal is a 403 with the reason. */
	request(&r, st_httpd_port(h), "/v1/status", NULL, 0, NULL);
	assert_int_equal(r.cc, CURLE_OK);
	assert_int_equal(r.code, 403);
	assert_non_null(strstr(st_buf_cstr(&r.body), "none was presented"));
	st_buf_dispose(&r.body);
	/* The certificate is requested, not required: the refusal is a 403 with the reason. */
	request(&r, st_httpd_port(h), "/v1/status", NULL, 0, "intruder");
	assert_int_equal(r.cc, CURLE_OK);
	assert_int_equal(r.code, 403);
	assert_non_null(strstr(st_buf_cstr(&r.body), "not signed by the trusted CA"));
	st_buf_dispose(&r.body);
	st_httpd_stop(h);
}

static void test_reload(void **state)
{
	struct st_httpd *h;
	struct reply r;

	(void)state;
	assert_int_equal(sh("cp %s/server.crt %s/live.crt && cp %s/server.key %s/live.key", dir,
	                    dir, dir, dir),
	                 0);
	h = start("live", NULL);
	request(&r, st_httpd_port(h), "/", NULL, 0, NULL);
	assert_int_equal(r.code, 200);
	st_buf_dispose(&r.body);
	/* A garbage certificate must not replace the working one. */
	assert_int_equal(sh("echo garbage > %s/live.crt", dir), 0);
	sleep(2);
	request(&r, st_httpd_port(h), "/", NULL, 0, NULL);
	assert_int_equal(r.code, 200);
	st_buf_dispose(&r.body);
	assert_int_equal(st_httpd_reloads(h), 0);
	assert_int_equal(sh("cp %s/server2.crt %s/live.crt && cp %s/server2.key %s/live.key", dir,
	                    dir, dir, dir),
	                 0);
	sleep(2);
	request(&r, st_httpd_port(h), "/", NULL, 0, NULL);
	assert_int_equal(r.code, 200);
	st_buf_dispose(&r.body);
	assert_int_equal(st_httpd_reloads(h), 1);
	st_httpd_stop(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic_and_413),
		cmocka_unit_test(test_mtls),
		cmocka_unit_test(test_reload),
	};
	int rc;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = cmocka_run_group_tests_name("httpd", tests, setup, teardown);
	curl_global_cleanup();
	return rc;
}
