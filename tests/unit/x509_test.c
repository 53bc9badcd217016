/* Unit tests for pkg/x509: issuing, saving, loading and verifying certificates. */
#include <dirent.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "pkg/util/caps.h"
#include "pkg/util/err.h"
#include "pkg/x509.h"

#define DAY 86400

struct fixture {
	char dir[64];
	char path[256]; /* scratch for file names */
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	(void)snprintf(f->dir, sizeof(f->dir), "/tmp/st-x509-test.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	(void)nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static const char *in_dir(struct fixture *f, const char *name)
{
	(void)snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, name);
	return f->path;
}

static void bundle(struct fixture *f, struct st_x509_bundle_options *o, bool *reused)
{
	static const char *const dns[] = { "localhost" };
	static const char *const ips[] = { "127.0.0.1", "::1" };
	struct st_err err = ST_ERR_INIT;

	o->out_dir = f->dir;
	if (o->n_dns == 0) {
		o->dns = dns;
		o->n_dns = 1;
		o->ips = ips;
		o->n_ips = 2;
	}
	if (st_x509_bundle_create(reused, o, &err) != 0)
		fail_msg("bundle: %s", st_err_text(&err));
}

static void file_info(struct fixture *f, const char *name, struct st_x509_info *info)
{
	struct st_err err = ST_ERR_INIT;

	if (st_x509_info_load(info, in_dir(f, name), &err) != 0)
		fail_msg("%s", st_err_text(&err));
}

static mode_t file_mode(struct fixture *f, const char *name)
{
	struct stat st;

	assert_int_equal(stat(in_dir(f, name), &st), 0);
	return st.st_mode & 07777;
}

static int verify(struct fixture *f, const char *name, enum st_x509_kind purpose,
                  struct st_err *err)
{
	char cert[256];

	(void)snprintf(cert, sizeof(cert), "%s", in_dir(f, name));
	return st_x509_verify_files(cert, in_dir(f, ST_X509_CA_CRT), purpose, err);
}

static void test_bundle_chain_sans_modes(void **state)
{
	struct fixture *f = *state;
	struct st_x509_bundle_options o = ST_X509_BUNDLE_OPTIONS_INIT;
	struct st_err err = ST_ERR_INIT;
	struct st_x509_info info;
	bool reused = true;
	DIR *d;
	struct dirent *e;
	int n = 0;

	bundle(f, &o, &reused);
	assert_false(reused);
	assert_int_equal(verify(f, ST_X509_SERVER_CRT, ST_X509_SERVER, &err), 0);
	assert_int_equal(verify(f, ST_X509_CLIENT_CRT, ST_X509_CLIENT, &err), 0);
	/* Extended key usage is enforced: the serving certificate is no client certificate. */
	assert_int_equal(verify(f, ST_X509_SERVER_CRT, ST_X509_CLIENT, &err), ST_ETLS);
	assert_non_null(strstr(err.msg, "purpose"));
	st_err_clear(&err);
	assert_int_equal(verify(f, ST_X509_CLIENT_CRT, ST_X509_SERVER, &err), ST_ETLS);

	file_info(f, ST_X509_SERVER_CRT, &info);
	assert_string_equal(info.subject_cn, "stasis-webhook.stasis.svc");
	assert_string_equal(info.issuer_cn, "stasis-ca");
	assert_false(info.is_ca);
	assert_true(st_x509_info_has_dns(&info, "stasis-webhook"));
	assert_true(st_x509_info_has_dns(&info, "stasis-webhook.stasis"));
	assert_true(st_x509_info_has_dns(&info, "stasis-webhook.stasis.svc"));
	assert_true(st_x509_info_has_dns(&info, "STASIS-WEBHOOK.stasis.svc.cluster.local"));
	assert_true(st_x509_info_has_dns(&info, "localhost"));
	assert_false(st_x509_info_has_dns(&info, "stasis-webhook.default.svc"));
	assert_int_equal(info.n_dns, 5);
	assert_true(st_x509_info_has_ip(&info, "127.0.0.1"));
	assert_true(st_x509_info_has_ip(&info, "0:0::1"));
	assert_false(st_x509_info_has_ip(&info, "127.0.0.2"));
	/* One year, starting a few minutes in the past. */
	assert_int_equal(info.not_after - info.not_before, 365 * DAY);
	assert_true(info.not_before <= time(NULL) && info.not_before > time(NULL) - 3600);
	/* 128 random bits are at most 32 hex digits. */
	assert_true(strlen(info.serial_hex) >= 16 && strlen(info.serial_hex) <= 32);
	st_x509_info_dispose(&info);

	file_info(f, ST_X509_CA_CRT, &info);
	assert_true(info.is_ca);
	assert_int_equal(info.not_after - info.not_before, 3650 * DAY);
	st_x509_info_dispose(&info);
	file_info(f, ST_X509_CLIENT_CRT, &info);
	assert_string_equal(info.subject_cn, "stasis-controller");
	assert_int_equal(info.n_dns + info.n_ips, 0);
	st_x509_info_dispose(&info);

	assert_int_equal(file_mode(f, ST_X509_CA_KEY), 0600);
	assert_int_equal(file_mode(f, ST_X509_SERVER_KEY), 0600);
	assert_int_equal(file_mode(f, ST_X509_CLIENT_KEY), 0600);
	assert_int_equal(file_mode(f, ST_X509_CA_CRT), 0644);
	assert_int_equal(file_mode(f, ST_X509_SERVER_CRT), 0644);
	/* Exactly the six files: no temporary file is left behind. */
	d = opendir(f->dir);
	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	assert_int_equal(n, 6);
}

static void serial_of(struct fixture *f, const char *name, char out[48])
{
	struct st_x509_info info;

	file_info(f, name, &info);
	memcpy(out, info.serial_hex, 48);
	st_x509_info_dispose(&info);
}

static void test_ca_reuse_and_force(void **state)
{
	struct fixture *f = *state;
	struct st_x509_bundle_options o = ST_X509_BUNDLE_OPTIONS_INIT;
	struct st_err err = ST_ERR_INIT;
	char ca1[48], ca2[48], tls1[48], tls2[48];
	char old_tls[256];
	bool reused = false;

	bundle(f, &o, &reused);
	serial_of(f, ST_X509_CA_CRT, ca1);
	serial_of(f, ST_X509_SERVER_CRT, tls1);
	(void)snprintf(old_tls, sizeof(old_tls), "%s/old-tls.crt", f->dir);
	assert_int_equal(rename(in_dir(f, ST_X509_SERVER_CRT), old_tls), 0);

	/* Without --force the CA is kept and signs fresh leaves. */
	bundle(f, &o, &reused);
	assert_true(reused);
	serial_of(f, ST_X509_CA_CRT, ca2);
	serial_of(f, ST_X509_SERVER_CRT, tls2);
	assert_string_equal(ca1, ca2);
	assert_string_not_equal(tls1, tls2);
	assert_int_equal(verify(f, ST_X509_SERVER_CRT, ST_X509_SERVER, &err), 0);
	assert_int_equal(verify(f, "old-tls.crt", ST_X509_SERVER, &err), 0);

	/* With --force a new CA replaces it; certificates of the old one stop verifying. */
	o.force = true;
	bundle(f, &o, &reused);
	assert_false(reused);
	serial_of(f, ST_X509_CA_CRT, ca2);
	assert_string_not_equal(ca1, ca2);
	assert_int_equal(verify(f, ST_X509_SERVER_CRT, ST_X509_SERVER, &err), 0);
	assert_int_equal(verify(f, "old-tls.crt", ST_X509_SERVER, &err), ST_ETLS);
	assert_non_null(strstr(err.msg, "old-tls.crt"));
}

static void test_expired_and_future_leaves(void **state)
{
	struct fixture *f = *state;
	struct st_x509_bundle_options o = ST_X509_BUNDLE_OPTIONS_INIT;
	struct st_err err = ST_ERR_INIT;
	struct st_x509_pair *client = NULL;
	struct st_x509_pair *ca = NULL;
	char key[256];
	int64_t now = (int64_t)time(NULL);

	/* Inside the CA's lifetime, which starts five minutes before now. */
	o.leaf_not_before = now - 200;
	o.leaf_not_after = now - 100;
	bundle(f, &o, NULL);
	assert_int_equal(verify(f, ST_X509_CLIENT_CRT, ST_X509_CLIENT, &err), ST_ETLS);
	assert_non_null(strstr(err.msg, "expired"));
	st_err_clear(&err);

	/* The same certificate verifies at a time inside its window. */
	(void)snprintf(key, sizeof(key), "%s", in_dir(f, ST_X509_CLIENT_KEY));
	assert_int_equal(st_x509_pair_load(&client, in_dir(f, ST_X509_CLIENT_CRT), key, &err), 0);
	(void)snprintf(key, sizeof(key), "%s", in_dir(f, ST_X509_CA_KEY));
	assert_int_equal(st_x509_pair_load(&ca, in_dir(f, ST_X509_CA_CRT), key, &err), 0);
	assert_int_equal(st_x509_verify(st_x509_pair_cert(client), st_x509_pair_cert(ca),
	                                ST_X509_CLIENT, now - 150, &err),
	                 0);
	st_x509_pair_free(client);
	st_x509_pair_free(ca);

	o.leaf_not_before = now + DAY;
	o.leaf_not_after = now + 2 * DAY;
	bundle(f, &o, NULL);
	assert_int_equal(verify(f, ST_X509_SERVER_CRT, ST_X509_SERVER, &err), ST_ETLS);
	assert_non_null(strstr(err.msg, "not yet valid"));
}

static void test_rsa_keys(void **state)
{
	struct fixture *f = *state;
	struct st_x509_bundle_options o = ST_X509_BUNDLE_OPTIONS_INIT;
	struct st_err err = ST_ERR_INIT;
	EVP_PKEY *key = NULL;

	o.key_type = ST_X509_KEY_RSA_2048;
	o.leaf_days = 30;
	bundle(f, &o, NULL);
	assert_int_equal(st_x509_load_key(&key, in_dir(f, ST_X509_SERVER_KEY), &err), 0);
	assert_int_equal(EVP_PKEY_get_base_id(key), EVP_PKEY_RSA);
	assert_int_equal(EVP_PKEY_get_bits(key), 2048);
	EVP_PKEY_free(key);
	assert_int_equal(st_x509_load_key(&key, in_dir(f, ST_X509_CA_KEY), &err), 0);
	assert_int_equal(EVP_PKEY_get_base_id(key), EVP_PKEY_RSA);
	EVP_PKEY_free(key);
	assert_int_equal(verify(f, ST_X509_SERVER_CRT, ST_X509_SERVER, &err), 0);
}

static void write_file(const char *path, const char *data, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static void test_load_errors(void **state)
{
	struct fixture *f = *state;
	struct st_x509_bundle_options o = ST_X509_BUNDLE_OPTIONS_INIT;
	struct st_err err = ST_ERR_INIT;
	struct st_x509_pair *p = NULL;
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	char *big = calloc(1, ST_CAP_PEM + 1);
	struct st_x509_info info;
	char crt[256];
	FILE *fp;

	assert_int_equal(st_x509_load_cert(&cert, in_dir(f, "missing.crt"), &err), ST_ENOTFOUND);
	assert_non_null(strstr(err.msg, "missing.crt"));
	st_err_clear(&err);
	assert_int_equal(st_x509_info_load(&info, in_dir(f, "missing.crt"), &err), ST_ENOTFOUND);
	st_x509_info_dispose(&info);
	st_err_clear(&err);

	assert_non_null(big);
	memset(big, 'A', ST_CAP_PEM + 1);
	write_file(in_dir(f, "big.crt"), big, ST_CAP_PEM + 1);
	free(big);
	assert_int_equal(st_x509_load_cert(&cert, in_dir(f, "big.crt"), &err), ST_ETOOBIG);
	assert_non_null(strstr(err.msg, "big.crt"));
	st_err_clear(&err);

	write_file(in_dir(f, "junk.crt"), "hello\n", 6);
	assert_int_equal(st_x509_load_cert(&cert, in_dir(f, "junk.crt"), &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "junk.crt: no PEM certificate"));
	st_err_clear(&err);
	assert_int_equal(st_x509_load_key(&key, in_dir(f, "junk.crt"), &err), ST_EINVAL);
	assert_null(key);
	st_err_clear(&err);

	bundle(f, &o, NULL);
	(void)snprintf(crt, sizeof(crt), "%s", in_dir(f, ST_X509_SERVER_CRT));
	assert_int_equal(st_x509_pair_load(&p, crt, in_dir(f, ST_X509_CLIENT_KEY), &err),
	                 ST_EINVAL);
	assert_null(p);
	assert_non_null(strstr(err.msg, "does not match"));
	st_err_clear(&err);

	/* An encrypted key is refused without prompting for a passphrase. */
	assert_int_equal(st_x509_load_key(&key, in_dir(f, ST_X509_CLIENT_KEY), &err), 0);
	fp = fopen(in_dir(f, "enc.key"), "w");
	assert_non_null(fp);
	assert_int_equal(PEM_write_PrivateKey(fp, key, EVP_aes_128_cbc(),
	                                      (const unsigned char *)"secret", 6, NULL, NULL),
	                 1);
	fclose(fp);
	EVP_PKEY_free(key);
	key = NULL;
	assert_int_equal(st_x509_load_key(&key, in_dir(f, "enc.key"), &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "encrypted"));
}

static void expect_bundle_error(struct fixture *f, struct st_x509_bundle_options *o,
                                const char *needle)
{
	struct st_err err = ST_ERR_INIT;

	o->out_dir = f->dir;
	assert_int_equal(st_x509_bundle_create(NULL, o, &err), ST_EINVAL);
	if (strstr(err.msg, needle) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err.msg, needle);
}

static void test_bad_inputs(void **state)
{
	struct fixture *f = *state;
	struct st_x509_bundle_options o = ST_X509_BUNDLE_OPTIONS_INIT;
	static const char *const bad_dns[] = { "a..b" };
	static const char *const bad_ip[] = { "300.1.1.1" };
	struct st_x509_info info;
	char sub[256];

	o.service = "Bad_Name";
	expect_bundle_error(f, &o, "Bad_Name");
	o.service = ST_X509_DEFAULT_SERVICE;
	o.dns = bad_dns;
	o.n_dns = 1;
	expect_bundle_error(f, &o, "a..b");
	o.n_dns = 0;
	o.ips = bad_ip;
	o.n_ips = 1;
	expect_bundle_error(f, &o, "300.1.1.1");
	o.n_ips = 0;
	o.leaf_days = 0;
	expect_bundle_error(f, &o, "days");
	o.leaf_days = 10;
	o.leaf_not_before = 2000000000;
	o.leaf_not_after = 1000000000;
	expect_bundle_error(f, &o, "before it starts");
	/* Nothing was written by the refused calls. */
	assert_int_equal(access(in_dir(f, ST_X509_CA_KEY), F_OK), -1);

	/* Long names still fit: the CN falls back to the service, the SANs carry everything. */
	o.service = "s23456789012345678901234567890123456789012345678901234567890123";
	o.ns = "n23456789012345678901234567890123456789012345678901234567890123";
	assert_int_equal(st_x509_bundle_create(NULL, &o, NULL), ST_EINVAL); /* window still bad */
	o.leaf_not_before = 0;
	o.leaf_not_after = 0;
	assert_int_equal(st_x509_bundle_create(NULL, &o, NULL), 0);
	file_info(f, ST_X509_SERVER_CRT, &info);
	assert_string_equal(info.subject_cn, o.service);
	(void)snprintf(sub, sizeof(sub), "%s.%s.svc.cluster.local", o.service, o.ns);
	assert_true(st_x509_info_has_dns(&info, sub));
	st_x509_info_dispose(&info);
	o.service = ST_X509_DEFAULT_SERVICE;
	o.ns = ST_X509_DEFAULT_NAMESPACE;
	o.leaf_not_before = 2000000000;
	o.leaf_not_after = 1000000000;

	/* Refusals are checked before the output directory is created. */
	(void)snprintf(sub, sizeof(sub), "%s/sub/dir", f->dir);
	o.out_dir = sub;
	assert_int_equal(st_x509_bundle_create(NULL, &o, NULL), ST_EINVAL);
	assert_int_equal(access(sub, F_OK), -1);
	o.leaf_not_before = 0;
	o.leaf_not_after = 0;
	assert_int_equal(st_x509_bundle_create(NULL, &o, NULL), 0);
	assert_int_equal(access(sub, F_OK), 0);
}

static void test_existing_ca_checks(void **state)
{
	struct fixture *f = *state;
	struct st_x509_bundle_options o = ST_X509_BUNDLE_OPTIONS_INIT;
	struct st_x509_req req = ST_X509_REQ_INIT;
	struct st_x509_pair *ca = NULL;
	struct st_err err = ST_ERR_INIT;
	char crt[256];
	int64_t now = (int64_t)time(NULL);

	bundle(f, &o, NULL);
	/* Half a CA. */
	assert_int_equal(unlink(in_dir(f, ST_X509_CA_KEY)), 0);
	expect_bundle_error(f, &o, "--force");
	/* A leaf where the CA should be. */
	(void)snprintf(crt, sizeof(crt), "%s", in_dir(f, ST_X509_CA_CRT));
	assert_int_equal(rename(in_dir(f, ST_X509_SERVER_CRT), crt), 0);
	(void)snprintf(crt, sizeof(crt), "%s", in_dir(f, ST_X509_CA_KEY));
	assert_int_equal(rename(in_dir(f, ST_X509_SERVER_KEY), crt), 0);
	expect_bundle_error(f, &o, "not a CA");
	/* An expired CA. */
	req.kind = ST_X509_CA;
	req.cn = "old-ca";
	req.not_before = now - 20 * DAY;
	req.not_after = now - DAY;
	assert_int_equal(st_x509_issue(&ca, &req, NULL, &err), 0);
	(void)snprintf(crt, sizeof(crt), "%s", in_dir(f, ST_X509_CA_CRT));
	assert_int_equal(st_x509_pair_save(ca, crt, in_dir(f, ST_X509_CA_KEY), &err), 0);
	st_x509_pair_free(ca);
	assert_int_equal(st_x509_bundle_create(NULL, &o, &err), ST_ETLS);
	assert_non_null(strstr(err.msg, "expired"));
	o.force = true;
	bundle(f, &o, NULL);
	assert_int_equal(verify(f, ST_X509_SERVER_CRT, ST_X509_SERVER, &err), 0);
}

static void test_issue_rules(void **state)
{
	struct st_x509_req req = ST_X509_REQ_INIT;
	struct st_x509_pair *a = NULL;
	struct st_x509_pair *b = NULL;
	struct st_err err = ST_ERR_INIT;
	struct st_x509_info ia, ib;

	(void)state;
	req.cn = "x";
	assert_int_equal(st_x509_issue(&a, &req, NULL, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "self-signed"));
	assert_null(a);
	req.kind = ST_X509_CA;
	req.cn = "";
	assert_int_equal(st_x509_issue(&a, &req, NULL, NULL), ST_EINVAL);
	req.cn = "ca";
	assert_int_equal(st_x509_issue(&a, &req, NULL, &err), 0);
	assert_int_equal(st_x509_issue(&b, &req, NULL, &err), 0);
	/* Serials are random: two certificates from the same request differ. */
	assert_int_equal(st_x509_info_get(&ia, st_x509_pair_cert(a), &err), 0);
	assert_int_equal(st_x509_info_get(&ib, st_x509_pair_cert(b), &err), 0);
	assert_string_not_equal(ia.serial_hex, ib.serial_hex);
	st_x509_info_dispose(&ia);
	st_x509_info_dispose(&ib);
	/* A certificate signed by one CA does not verify against another. */
	st_x509_pair_free(b);
	b = NULL;
	req.kind = ST_X509_SERVER;
	req.cn = "leaf";
	assert_int_equal(st_x509_issue(&b, &req, a, &err), 0);
	assert_int_equal(
	        st_x509_verify(st_x509_pair_cert(b), st_x509_pair_cert(a), ST_X509_SERVER, 0, &err),
	        0);
	assert_int_equal(
	        st_x509_verify(st_x509_pair_cert(b), st_x509_pair_cert(b), ST_X509_SERVER, 0, &err),
	        ST_ETLS);
	st_x509_pair_free(a);
	st_x509_pair_free(b);
	st_x509_pair_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bundle_chain_sans_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca_reuse_and_force, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expired_and_future_leaves, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rsa_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_inputs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_existing_ca_checks, setup, teardown),
		cmocka_unit_test(test_issue_rules),
	};

	return cmocka_run_group_tests_name("x509", tests, NULL, NULL);
}
