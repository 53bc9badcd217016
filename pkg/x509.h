/*
 * X.509 material for stasis: a private CA, serving and client certificates.
 *
 * Everything is done with the OpenSSL 3 library API. st_x509_issue() makes
 * one certificate with a fresh key (EC P-256 by default, RSA 2048 on
 * request), a random 128-bit serial and a SHA-256 signature; the profile
 * (CA, TLS server, TLS client) decides the extensions. st_x509_bundle_create()
 * is what `stasis certs` does: keep or create the CA in a directory and issue
 * the webhook's serving certificate (SANs for <svc>, <svc>.<ns>,
 * <svc>.<ns>.svc, <svc>.<ns>.svc.cluster.local and extras) and the
 * controller's client certificate. Files are replaced atomically (temporary
 * file, fsync, rename); keys are mode 0600.
 *
 * Loaders read at most ST_CAP_PEM bytes, refuse encrypted keys instead of
 * prompting, and name the file in every error. st_x509_verify() checks that
 * a certificate chains to a CA for a purpose at a given time; st_x509_info_get()
 * reads the CN, SANs and validity for callers and tests.
 *
 * All functions are reentrant; objects are not shared between threads.
 */
#ifndef ST_PKG_X509_H
#define ST_PKG_X509_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "pkg/util/err.h"

#define ST_X509_CA_DAYS   3650u
#define ST_X509_LEAF_DAYS 365u
/* Longest validity accepted, in days (100 years). */
#define ST_X509_MAX_DAYS 36500u
/* Most extra DNS names or IP addresses in one certificate. */
#define ST_X509_MAX_SANS 64u

/* File names written by st_x509_bundle_create() inside its directory. */
#define ST_X509_CA_CRT     "ca.crt"
#define ST_X509_CA_KEY     "ca.key"
#define ST_X509_SERVER_CRT "tls.crt"
#define ST_X509_SERVER_KEY "tls.key"
#define ST_X509_CLIENT_CRT "client.crt"
#define ST_X509_CLIENT_KEY "client.key"

#define ST_X509_DEFAULT_SERVICE   "stasis-webhook"
#define ST_X509_DEFAULT_NAMESPACE "stasis"
#define ST_X509_DEFAULT_CLIENT_CN "stasis-controller"

enum st_x509_key_type {
	ST_X509_KEY_EC_P256 = 0,
	ST_X509_KEY_RSA_2048 = 1,
};

/* Certificate profile; also the purpose checked by st_x509_verify(). */
enum st_x509_kind {
	ST_X509_CA = 0,     /* CA:TRUE critical, keyCertSign + cRLSign */
	ST_X509_SERVER = 1, /* CA:FALSE, extendedKeyUsage serverAuth */
	ST_X509_CLIENT = 2, /* CA:FALSE, extendedKeyUsage clientAuth */
};

/*
 * What to issue. Borrowed strings. not_before/not_after are Unix seconds;
 * 0 means "now minus 5 minutes" (clock skew) and "not_before + days". Setting
 * them lets tests make expired or not-yet-valid certificates.
 */
struct st_x509_req {
	enum st_x509_kind kind;
	enum st_x509_key_type key_type;
	const char *cn;
	const char *const *dns; /* subjectAltName DNS entries */
	size_t n_dns;
	const char *const *ips; /* subjectAltName IP entries, IPv4 or IPv6 text */
	size_t n_ips;
	unsigned days;
	int64_t not_before;
	int64_t not_after;
};
#define ST_X509_REQ_INIT                                                                           \
	{                                                                                          \
		ST_X509_SERVER, ST_X509_KEY_EC_P256, NULL, NULL, 0, NULL, 0, ST_X509_LEAF_DAYS, 0, \
		        0                                                                          \
	}

/* A certificate with its private key. Opaque; see the getters. */
struct st_x509_pair;

/*
 * Generates a key and a certificate for req into *out (caller frees with
 * st_x509_pair_free). issuer NULL makes a self-signed certificate and needs
 * req->kind == ST_X509_CA; otherwise issuer must hold a CA certificate and
 * its key. Bad names, addresses or validity give ST_EINVAL, library failures
 * ST_ETLS, both with a message in err.
 */
int st_x509_issue(struct st_x509_pair **out, const struct st_x509_req *req,
                  const struct st_x509_pair *issuer, struct st_err *err) ST_WARN_UNUSED;

/*
 * Loads a certificate (the first in the file) and its key, and checks that
 * they belong together. Errors name the file: ST_ENOTFOUND when missing,
 * ST_ETOOBIG over ST_CAP_PEM, ST_EINVAL for no or bad PEM, encrypted keys
 * or a key that does not match.
 */
int st_x509_pair_load(struct st_x509_pair **out, const char *cert_path, const char *key_path,
                      struct st_err *err) ST_WARN_UNUSED;

/*
 * Writes the certificate (mode 0644) and the key (PKCS#8 PEM, mode 0600),
 * each atomically: a reader sees the old file or the new one, never a part.
 * The key is written first, so a reader that sees the new certificate also
 * finds its key. ST_EIO with the path in err on failure.
 */
int st_x509_pair_save(const struct st_x509_pair *p, const char *cert_path, const char *key_path,
                      struct st_err *err) ST_WARN_UNUSED;

/* Releases the pair; NULL is a no-op. */
void st_x509_pair_free(struct st_x509_pair *p);

/* Borrowed views, valid until the pair is freed. */
X509 *st_x509_pair_cert(const struct st_x509_pair *p);
EVP_PKEY *st_x509_pair_key(const struct st_x509_pair *p);

/* Loads the first certificate of a PEM file into *out (X509_free). Errors as for pair_load. */
int st_x509_load_cert(X509 **out, const char *path, struct st_err *err) ST_WARN_UNUSED;

/* Loads an unencrypted PEM private key into *out (EVP_PKEY_free). Errors as for pair_load. */
int st_x509_load_key(EVP_PKEY **out, const char *path, struct st_err *err) ST_WARN_UNUSED;

/*
 * Checks that cert chains to the trusted ca and fits purpose (ST_X509_CA:
 * chain only) at time `at` (Unix seconds; 0 = now). Returns 0, or ST_ETLS
 * with OpenSSL's reason ("certificate has expired", ...) in err. The OpenSSL
 * objects are not modified but its API takes them non-const.
 */
int st_x509_verify(X509 *cert, X509 *ca, enum st_x509_kind purpose, int64_t at,
                   struct st_err *err) ST_WARN_UNUSED;

/* st_x509_verify() on two PEM files; errors name the file that failed. */
int st_x509_verify_files(const char *cert_path, const char *ca_path, enum st_x509_kind purpose,
                         struct st_err *err) ST_WARN_UNUSED;

/* What st_x509_info_get() reads from a certificate. Owned strings. */
struct st_x509_info {
	char *subject_cn; /* NULL when the subject has no CN */
	char *issuer_cn;
	char **dns; /* subjectAltName DNS entries */
	size_t n_dns;
	char **ips; /* subjectAltName IP entries as text */
	size_t n_ips;
	int64_t not_before;
	int64_t not_after;
	bool is_ca;
	char serial_hex[48];
};

/* Fills *out (dispose with st_x509_info_dispose); ST_EINVAL for unreadable fields. */
int st_x509_info_get(struct st_x509_info *out, const X509 *cert, struct st_err *err) ST_WARN_UNUSED;

/* st_x509_info_get() on the first certificate of a PEM file; errors name the file. */
int st_x509_info_load(struct st_x509_info *out, const char *path,
                      struct st_err *err) ST_WARN_UNUSED;

/* Frees the strings in info and zeroes it; safe on a zeroed struct. */
void st_x509_info_dispose(struct st_x509_info *info);

/* True when name is one of the DNS SANs (exact, case-insensitive). */
bool st_x509_info_has_dns(const struct st_x509_info *info, const char *name);

/* True when addr (text) is one of the IP SANs, compared as addresses. */
bool st_x509_info_has_ip(const struct st_x509_info *info, const char *addr);

/* Inputs of st_x509_bundle_create(). Borrowed strings. */
struct st_x509_bundle_options {
	const char *out_dir; /* created (mode 0700) when missing */
	const char *service; /* DNS-1123 label */
	const char *ns;      /* namespace, DNS-1123 label */
	const char *const *dns;
	size_t n_dns;
	const char *const *ips;
	size_t n_ips;
	const char *client_cn;
	enum st_x509_key_type key_type;
	unsigned ca_days;
	unsigned leaf_days;
	int64_t leaf_not_before; /* 0: default, see struct st_x509_req */
	int64_t leaf_not_after;
	bool force; /* replace an existing CA */
};
#define ST_X509_BUNDLE_OPTIONS_INIT                                                         \
	{                                                                                   \
		NULL, ST_X509_DEFAULT_SERVICE, ST_X509_DEFAULT_NAMESPACE, NULL, 0, NULL, 0, \
		        ST_X509_DEFAULT_CLIENT_CN, ST_X509_KEY_EC_P256, ST_X509_CA_DAYS,    \
		        ST_X509_LEAF_DAYS, 0, 0, false                                      \
	}

/*
 * Makes out_dir hold ca.crt/ca.key, tls.crt/tls.key (serving) and
 * client.crt/client.key. An existing, valid CA is kept unless opts->force,
 * so that leaves can be reissued under the same CA; half a CA (one file of
 * the two), an expired CA or a non-CA certificate is an error unless forced.
 * Leaves are always issued anew. *ca_reused_out (may be NULL) tells whether
 * the CA was kept.
 */
int st_x509_bundle_create(bool *ca_reused_out, const struct st_x509_bundle_options *opts,
                          struct st_err *err) ST_WARN_UNUSED;

#endif
