#include "pkg/x509.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "pkg/util/caps.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

/* Certificates start a little in the past so that a peer whose clock lags still accepts them. */
#define BACKDATE_SECONDS 300
#define SERIAL_BITS      128
#define PATH_CAP         4096

struct st_x509_pair {
	X509 *cert;
	EVP_PKEY *key;
};

/* Records the newest OpenSSL error reason under `what` and empties OpenSSL's queue. */
static int ossl_fail(struct st_err *err, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
	int rc =
	        st_err_set(err, ST_ETLS, "%s: %s", what, reason != NULL ? reason : "OpenSSL error");

	ERR_clear_error();
	return rc;
}

static const char *errno_text(int e, char *buf, size_t n)
{
	/* The GNU strerror_r (we build with _GNU_SOURCE) returns the text. */
	return strerror_r(e, buf, n);
}

/*
 * Reads a whole file of at most ST_CAP_PEM bytes into a NUL-terminated heap
 * buffer of exactly ST_CAP_PEM + 1 bytes; the fixed size lets the caller wipe
 * it with st_freezero(buf, ST_CAP_PEM + 1) whether or not it held a key.
 */
static int read_pem_file(char **out, size_t *len_out, const char *path, struct st_err *err)
{
	int rc = ST_EINTERNAL;
	int fd = -1;
	char *buf = NULL;
	size_t len = 0;
	struct stat st;
	char ebuf[128];

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		int e = errno;

		rc = st_err_set(err, e == ENOENT ? ST_ENOTFOUND : ST_EIO, "%s: %s", path,
		                errno_text(e, ebuf, sizeof(ebuf)));
		goto out;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = st_err_set(err, ST_EINVAL, "%s: not a regular file", path);
		goto out;
	}
	buf = st_xmalloc(ST_CAP_PEM + 1);
	while (len < ST_CAP_PEM + 1) {
		ssize_t n = read(fd, buf + len, ST_CAP_PEM + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = st_err_set(err, ST_EIO, "%s: %s", path,
			                errno_text(errno, ebuf, sizeof(ebuf)));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > ST_CAP_PEM) {
		rc = st_err_set(err, ST_ETOOBIG, "%s: larger than %u bytes", path, ST_CAP_PEM);
		goto out;
	}
	buf[len] = '\0';
	*out = buf;
	*len_out = len;
	buf = NULL; /* transferred */
	rc = 0;
out:
	st_freezero(buf, ST_CAP_PEM + 1);
	if (fd >= 0)
		(void)close(fd);
	return rc;
}

/* Refuses to decrypt: an encrypted key would otherwise make OpenSSL prompt on the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	*(bool *)u = true;
	return -1;
}

static void *parse_cert(BIO *bio, bool *asked)
{
	(void)asked;
	return PEM_read_bio_X509(bio, NULL, NULL, NULL);
}

static void *parse_key(BIO *bio, bool *asked)
{
	return PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, asked);
}

/* Reads path (capped), parses it with parse() and wipes the bytes read. */
static int load_pem(void **out, const char *path, const char *what,
                    void *(*parse)(BIO *bio, bool *asked), struct st_err *err)
{
	int rc = ST_EINTERNAL;
	char *data = NULL;
	size_t len = 0;
	BIO *bio = NULL;
	bool asked = false;

	*out = NULL;
	if ((rc = read_pem_file(&data, &len, path, err)) < 0)
		goto out;
	bio = BIO_new_mem_buf(data, (int)len);
	if (bio == NULL) {
		rc = ossl_fail(err, path);
		goto out;
	}
	*out = parse(bio, &asked);
	if (*out == NULL) {
		ERR_clear_error();
		rc = st_err_set(err, ST_EINVAL, "%s: %s%s", path,
		                asked ? "encrypted private keys are not supported" : "no PEM ",
		                asked ? "" : what);
		goto out;
	}
	rc = 0;
out:
	BIO_free(bio);
	st_freezero(data, data != NULL ? ST_CAP_PEM + 1 : 0);
	return rc;
}

int st_x509_load_cert(X509 **out, const char *path, struct st_err *err)
{
	void *cert = NULL;
	int rc = load_pem(&cert, path, "certificate found", parse_cert, err);

	*out = cert;
	return rc;
}

int st_x509_load_key(EVP_PKEY **out, const char *path, struct st_err *err)
{
	void *key = NULL;
	int rc = load_pem(&key, path, "private key found", parse_key, err);

	*out = key;
	return rc;
}

void st_x509_pair_free(struct st_x509_pair *p)
{
	if (p == NULL)
		return;
	X509_free(p->cert);
	EVP_PKEY_free(p->key);
	free(p);
}

X509 *st_x509_pair_cert(const struct st_x509_pair *p)
{
	return p->cert;
}

EVP_PKEY *st_x509_pair_key(const struct st_x509_pair *p)
{
	return p->key;
}

int st_x509_pair_load(struct st_x509_pair **out, const char *cert_path, const char *key_path,
                      struct st_err *err)
{
	int rc = ST_EINTERNAL;
	struct st_x509_pair *p = st_xcalloc(1, sizeof(*p));

	*out = NULL;
	if ((rc = st_x509_load_cert(&p->cert, cert_path, err)) < 0)
		goto out;
	if ((rc = st_x509_load_key(&p->key, key_path, err)) < 0)
		goto out;
	if (X509_check_private_key(p->cert, p->key) != 1) {
		ERR_clear_error();
		rc = st_err_set(err, ST_EINVAL, "%s: key does not match the certificate in %s",
		                key_path, cert_path);
		goto out;
	}
	*out = p;
	p = NULL; /* transferred */
	rc = 0;
out:
	st_x509_pair_free(p);
	return rc;
}

/*
 * Replaces path with len bytes of data: a temporary file in the same
 * directory is written, flushed and renamed over the target, then the
 * directory is flushed so that the rename itself survives a crash.
 */
static int write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                        struct st_err *err)
{
	int rc = ST_EINTERNAL;
	char tmp[PATH_CAP];
	char dir[PATH_CAP];
	char ebuf[128];
	const char *slash;
	size_t off = 0;
	int fd = -1;
	int dfd = -1;
	int n = snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);

	if (n < 0 || (size_t)n >= sizeof(tmp))
		return st_err_set(err, ST_EINVAL, "%s: path too long", path);
	/* mkstemp creates the file 0600, so a key is never readable by others, not even briefly. */
	fd = mkstemp(tmp);
	if (fd < 0) {
		tmp[0] = '\0';
		goto fail;
	}
	if (fchmod(fd, mode) < 0)
		goto fail;
	while (off < len) {
		ssize_t w = write(fd, (const char *)data + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			goto fail;
		off += (size_t)w;
	}
	if (fsync(fd) < 0)
		goto fail;
	n = close(fd);
	fd = -1;
	if (n < 0)
		goto fail;
	if (rename(tmp, path) < 0)
		goto fail;
	tmp[0] = '\0';
	slash = strrchr(path, '/');
	(void)snprintf(dir, sizeof(dir), "%.*s", slash != NULL ? (int)(slash - path + 1) : 1,
	               slash != NULL ? path : ".");
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		(void)fsync(dfd);
	rc = 0;
	goto out;
fail:
	rc = st_err_set(err, ST_EIO, "write %s: %s", path, errno_text(errno, ebuf, sizeof(ebuf)));
out:
	if (fd >= 0)
		(void)close(fd);
	if (dfd >= 0)
		(void)close(dfd);
	if (tmp[0] != '\0')
		(void)unlink(tmp);
	return rc;
}

/*
 * Encodes the key (when given) or else the certificate as PEM in memory, then
 * writes the file atomically. A key is encoded into a secure-memory BIO, which
 * wipes every buffer it outgrows.
 */
static int save_pem(const char *path, mode_t mode, const X509 *cert, const EVP_PKEY *key,
                    struct st_err *err)
{
	int rc = ST_EINTERNAL;
	BIO *bio = BIO_new(key != NULL ? BIO_s_secmem() : BIO_s_mem());
	char *data = NULL;
	long len = 0;
	int ok;

	if (bio == NULL)
		return ossl_fail(err, path);
	if (key != NULL)
		ok = PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
	else
		ok = PEM_write_bio_X509(bio, cert);
	if (ok != 1) {
		rc = ossl_fail(err, path);
		goto out;
	}
	len = BIO_get_mem_data(bio, &data);
	if (len <= 0) {
		rc = ossl_fail(err, path);
		goto out;
	}
	rc = write_atomic(path, data, (size_t)len, mode, err);
out:
	if (data != NULL && len > 0)
		OPENSSL_cleanse(data, (size_t)len);
	BIO_free(bio);
	return rc;
}

int st_x509_pair_save(const struct st_x509_pair *p, const char *cert_path, const char *key_path,
                      struct st_err *err)
{
	int rc = ST_EINTERNAL;

	if ((rc = save_pem(key_path, 0600, NULL, p->key, err)) < 0)
		return rc;
	return save_pem(cert_path, 0644, p->cert, NULL, err);
}

static EVP_PKEY *generate_key(enum st_x509_key_type type)
{
	if (type == ST_X509_KEY_RSA_2048)
		return EVP_RSA_gen(2048);
	return EVP_EC_gen("P-256");
}

/* RFC 1123 host name, optionally with a leading "*." wildcard label. */
static bool valid_dns_name(const char *s)
{
	size_t label = 0;
	size_t total = strlen(s);

	if (strncmp(s, "*.", 2) == 0)
		s += 2;
	if (total == 0 || total > 253 || *s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		char c = *s;

		if (c == '.') {
			if (label == 0 || s[-1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return false;
		if (c == '-' && label == 0)
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && s[-1] != '-';
}

/* Parses an IPv4 or IPv6 address; returns its length in bytes or 0. */
static size_t parse_ip(unsigned char out[16], const char *s)
{
	if (inet_pton(AF_INET, s, out) == 1)
		return 4;
	if (inet_pton(AF_INET6, s, out) == 1)
		return 16;
	return 0;
}

static int push_general_name(GENERAL_NAMES *gens, int type, const void *data, int len)
{
	GENERAL_NAME *g = GENERAL_NAME_new();
	ASN1_STRING *s = type == GEN_DNS ? ASN1_IA5STRING_new() : ASN1_OCTET_STRING_new();

	if (g == NULL || s == NULL || ASN1_STRING_set(s, data, len) != 1) {
		GENERAL_NAME_free(g);
		ASN1_STRING_free(s);
		return ST_ETLS;
	}
	GENERAL_NAME_set0_value(g, type, s);
	if (sk_GENERAL_NAME_push(gens, g) <= 0) {
		GENERAL_NAME_free(g);
		return ST_ETLS;
	}
	return 0;
}

/* Adds the subjectAltName extension built from req's DNS names and IPs, if any. */
static int add_sans(X509 *x, const struct st_x509_req *req, struct st_err *err)
{
	int rc = ST_EINTERNAL;
	GENERAL_NAMES *gens = NULL;
	unsigned char ip[16];
	size_t i;

	if (req->n_dns == 0 && req->n_ips == 0)
		return 0;
	gens = sk_GENERAL_NAME_new_null();
	if (gens == NULL)
		return ossl_fail(err, "subjectAltName");
	for (i = 0; i < req->n_dns; i++) {
		if (push_general_name(gens, GEN_DNS, req->dns[i], (int)strlen(req->dns[i])) < 0) {
			rc = ossl_fail(err, "subjectAltName");
			goto out;
		}
	}
	for (i = 0; i < req->n_ips; i++) {
		size_t n = parse_ip(ip, req->ips[i]);

		if (push_general_name(gens, GEN_IPADD, ip, (int)n) < 0) {
			rc = ossl_fail(err, "subjectAltName");
			goto out;
		}
	}
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1) {
		rc = ossl_fail(err, "subjectAltName");
		goto out;
	}
	rc = 0;
out:
	GENERAL_NAMES_free(gens);
	return rc;
}

struct ext_spec {
	int nid;
	const char *value;
};

/* Extensions per profile, in the order they appear in the certificate. */
static const struct ext_spec ca_exts[] = {
	{ NID_basic_constraints, "critical,CA:TRUE" },
	{ NID_key_usage, "critical,keyCertSign,cRLSign" },
	{ NID_subject_key_identifier, "hash" },
	{ 0, NULL },
};
static const struct ext_spec server_exts[] = {
	{ NID_basic_constraints, "critical,CA:FALSE" },
	{ NID_key_usage, "critical,digitalSignature,keyEncipherment" },
	{ NID_ext_key_usage, "serverAuth" },
	{ NID_subject_key_identifier, "hash" },
	{ NID_authority_key_identifier, "keyid" },
	{ 0, NULL },
};
static const struct ext_spec client_exts[] = {
	{ NID_basic_constraints, "critical,CA:FALSE" },
	{ NID_key_usage, "critical,digitalSignature,keyEncipherment" },
	{ NID_ext_key_usage, "clientAuth" },
	{ NID_subject_key_identifier, "hash" },
	{ NID_authority_key_identifier, "keyid" },
	{ 0, NULL },
};

static int add_extensions(X509 *x, X509 *issuer, const struct st_x509_req *req, struct st_err *err)
{
	const struct ext_spec *spec = req->kind == ST_X509_CA       ? ca_exts
	                              : req->kind == ST_X509_SERVER ? server_exts
	                                                            : client_exts;
	X509V3_CTX ctx;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	for (; spec->value != NULL; spec++) {
		/* An EC key cannot encipher keys; it only signs. */
		const char *value = spec->nid == NID_key_usage && req->kind != ST_X509_CA &&
		                                    req->key_type == ST_X509_KEY_EC_P256
		                            ? "critical,digitalSignature"
		                            : spec->value;
		X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, spec->nid, value);

		if (ext == NULL || X509_add_ext(x, ext, -1) != 1) {
			X509_EXTENSION_free(ext);
			return ossl_fail(err, OBJ_nid2sn(spec->nid));
		}
		X509_EXTENSION_free(ext);
	}
	return add_sans(x, req, err);
}

/* A random positive serial of SERIAL_BITS bits (RFC 5280 allows up to 20 octets). */
static int set_random_serial(X509 *x, struct st_err *err)
{
	int rc = ST_EINTERNAL;
	BIGNUM *bn = BN_new();
	ASN1_INTEGER *serial = NULL;

	do {
		if (bn == NULL ||
		    BN_rand(bn, SERIAL_BITS, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1) {
			rc = ossl_fail(err, "serial");
			goto out;
		}
	} while (BN_is_zero(bn));
	serial = BN_to_ASN1_INTEGER(bn, NULL);
	if (serial == NULL || X509_set_serialNumber(x, serial) != 1) {
		rc = ossl_fail(err, "serial");
		goto out;
	}
	rc = 0;
out:
	ASN1_INTEGER_free(serial);
	BN_free(bn);
	return rc;
}

static int set_names(X509 *x, const X509 *issuer, const char *cn, struct st_err *err)
{
	X509_NAME *name = X509_get_subject_name(x);

	if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"stasis",
	                               -1, -1, 0) != 1 ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
	                               0) != 1)
		return ossl_fail(err, "subject");
	if (X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name) != 1)
		return ossl_fail(err, "issuer");
	return 0;
}

/* The validity window req asks for; ST_EINVAL when it is empty. */
static int validity(int64_t *nb, int64_t *na, const struct st_x509_req *req, struct st_err *err)
{
	*nb = req->not_before != 0 ? req->not_before : (int64_t)time(NULL) - BACKDATE_SECONDS;
	*na = req->not_after != 0 ? req->not_after : *nb + (int64_t)req->days * 86400;
	if (*na <= *nb)
		return st_err_set(err, ST_EINVAL, "validity ends before it starts");
	return 0;
}

static int set_validity(X509 *x, const struct st_x509_req *req, struct st_err *err)
{
	int64_t nb = 0;
	int64_t na = 0;
	int rc = validity(&nb, &na, req, err);

	if (rc < 0)
		return rc;
	if (ASN1_TIME_set(X509_getm_notBefore(x), (time_t)nb) == NULL ||
	    ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na) == NULL)
		return ossl_fail(err, "validity");
	return 0;
}

static int check_req(const struct st_x509_req *req, bool self_signed, struct st_err *err)
{
	unsigned char ip[16];
	int64_t nb = 0;
	int64_t na = 0;
	size_t i;

	if (req->cn == NULL || req->cn[0] == '\0' || strlen(req->cn) > 64)
		return st_err_set(err, ST_EINVAL, "common name must be 1 to 64 bytes");
	if (self_signed && req->kind != ST_X509_CA)
		return st_err_set(err, ST_EINVAL, "only a CA certificate can be self-signed");
	if (req->key_type != ST_X509_KEY_EC_P256 && req->key_type != ST_X509_KEY_RSA_2048)
		return st_err_set(err, ST_EINVAL, "unknown key type %d", (int)req->key_type);
	if (req->not_after == 0 && (req->days == 0 || req->days > ST_X509_MAX_DAYS))
		return st_err_set(err, ST_EINVAL, "validity must be 1 to %u days",
		                  ST_X509_MAX_DAYS);
	if (req->n_dns > ST_X509_MAX_SANS || req->n_ips > ST_X509_MAX_SANS)
		return st_err_set(err, ST_EINVAL, "at most %u DNS names and %u IP addresses",
		                  ST_X509_MAX_SANS, ST_X509_MAX_SANS);
	for (i = 0; i < req->n_dns; i++)
		if (!valid_dns_name(req->dns[i]))
			return st_err_set(err, ST_EINVAL, "invalid DNS name \"%.64s\"",
			                  req->dns[i]);
	for (i = 0; i < req->n_ips; i++)
		if (parse_ip(ip, req->ips[i]) == 0)
			return st_err_set(err, ST_EINVAL, "invalid IP address \"%.64s\"",
			                  req->ips[i]);
	return validity(&nb, &na, req, err);
}

int st_x509_issue(struct st_x509_pair **out, const struct st_x509_req *req,
                  const struct st_x509_pair *issuer, struct st_err *err)
{
	int rc = ST_EINTERNAL;
	struct st_x509_pair *p = NULL;
	X509 *x = NULL;

	*out = NULL;
	if ((rc = check_req(req, issuer == NULL, err)) < 0)
		goto out;
	p = st_xcalloc(1, sizeof(*p));
	p->key = generate_key(req->key_type);
	x = X509_new();
	if (p->key == NULL || x == NULL) {
		rc = ossl_fail(err, "key generation");
		goto out;
	}
	if (X509_set_version(x, X509_VERSION_3) != 1 || X509_set_pubkey(x, p->key) != 1) {
		rc = ossl_fail(err, "certificate");
		goto out;
	}
	if ((rc = set_random_serial(x, err)) < 0 ||
	    (rc = set_names(x, issuer != NULL ? issuer->cert : NULL, req->cn, err)) < 0 ||
	    (rc = set_validity(x, req, err)) < 0 ||
	    (rc = add_extensions(x, issuer != NULL ? issuer->cert : x, req, err)) < 0)
		goto out;
	if (X509_sign(x, issuer != NULL ? issuer->key : p->key, EVP_sha256()) <= 0) {
		rc = ossl_fail(err, "sign");
		goto out;
	}
	p->cert = x;
	x = NULL; /* transferred */
	*out = p;
	p = NULL; /* transferred */
	rc = 0;
out:
	X509_free(x);
	st_x509_pair_free(p);
	return rc;
}

int st_x509_verify(X509 *cert, X509 *ca, enum st_x509_kind purpose, int64_t at, struct st_err *err)
{
	int rc = ST_EINTERNAL;
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int vrc;

	if (store == NULL || ctx == NULL || X509_STORE_add_cert(store, ca) != 1 ||
	    X509_STORE_CTX_init(ctx, store, cert, NULL) != 1) {
		rc = ossl_fail(err, "verify");
		goto out;
	}
	if (purpose != ST_X509_CA &&
	    X509_STORE_CTX_set_purpose(ctx, purpose == ST_X509_SERVER
	                                            ? X509_PURPOSE_SSL_SERVER
	                                            : X509_PURPOSE_SSL_CLIENT) != 1) {
		rc = ossl_fail(err, "verify");
		goto out;
	}
	if (at != 0)
		X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), (time_t)at);
	if (X509_verify_cert(ctx) != 1) {
		vrc = X509_STORE_CTX_get_error(ctx);
		ERR_clear_error();
		rc = st_err_set(err, ST_ETLS, "%s", X509_verify_cert_error_string(vrc));
		goto out;
	}
	rc = 0;
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return rc;
}

int st_x509_verify_files(const char *cert_path, const char *ca_path, enum st_x509_kind purpose,
                         struct st_err *err)
{
	int rc = ST_EINTERNAL;
	X509 *cert = NULL;
	X509 *ca = NULL;

	if ((rc = st_x509_load_cert(&cert, cert_path, err)) < 0 ||
	    (rc = st_x509_load_cert(&ca, ca_path, err)) < 0)
		goto out;
	if ((rc = st_x509_verify(cert, ca, purpose, 0, err)) < 0) {
		st_err_prefix(err, "%s does not verify against %s", cert_path, ca_path);
		goto out;
	}
	rc = 0;
out:
	X509_free(cert);
	X509_free(ca);
	return rc;
}

/* The first CN of a name as a heap UTF-8 string, NULL when there is none. */
static int name_cn(char **out, const X509_NAME *name)
{
	int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	unsigned char *utf8 = NULL;
	int n;

	*out = NULL;
	if (idx < 0)
		return 0;
	n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
	if (n < 0)
		return ST_EINVAL;
	*out = st_xstrndup((const char *)utf8, (size_t)n);
	OPENSSL_free(utf8);
	return 0;
}

static int asn1_time_unix(int64_t *out, const ASN1_TIME *t)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return ST_EINVAL;
	*out = (int64_t)timegm(&tm);
	return 0;
}

static void info_add(char ***arr, size_t *n, const char *s, size_t len)
{
	*arr = st_xrealloc(*arr, (*n + 1) * sizeof(**arr));
	(*arr)[(*n)++] = st_xstrndup(s, len);
}

static int read_sans(struct st_x509_info *info, const X509 *cert)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	char text[INET6_ADDRSTRLEN];
	int i;

	for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		int type = 0;
		const ASN1_STRING *s = GENERAL_NAME_get0_value(g, &type);
		int len = ASN1_STRING_length(s);

		if (type == GEN_DNS) {
			info_add(&info->dns, &info->n_dns, (const char *)ASN1_STRING_get0_data(s),
			         (size_t)len);
		} else if (type == GEN_IPADD && (len == 4 || len == 16)) {
			if (inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(s), text,
			              sizeof(text)) != NULL)
				info_add(&info->ips, &info->n_ips, text, strlen(text));
		}
	}
	GENERAL_NAMES_free(gens);
	return 0;
}

int st_x509_info_get(struct st_x509_info *out, const X509 *cert, struct st_err *err)
{
	int rc = ST_EINTERNAL;
	BASIC_CONSTRAINTS *bc = NULL;
	BIGNUM *bn = NULL;
	char *hex = NULL;

	memset(out, 0, sizeof(*out));
	if (name_cn(&out->subject_cn, X509_get_subject_name(cert)) < 0 ||
	    name_cn(&out->issuer_cn, X509_get_issuer_name(cert)) < 0) {
		rc = st_err_set(err, ST_EINVAL, "certificate: unreadable common name");
		goto out;
	}
	if (asn1_time_unix(&out->not_before, X509_get0_notBefore(cert)) < 0 ||
	    asn1_time_unix(&out->not_after, X509_get0_notAfter(cert)) < 0) {
		rc = st_err_set(err, ST_EINVAL, "certificate: unreadable validity");
		goto out;
	}
	bc = X509_get_ext_d2i(cert, NID_basic_constraints, NULL, NULL);
	out->is_ca = bc != NULL && bc->ca != 0;
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	hex = bn != NULL ? BN_bn2hex(bn) : NULL;
	if (hex == NULL) {
		rc = ossl_fail(err, "certificate serial");
		goto out;
	}
	(void)snprintf(out->serial_hex, sizeof(out->serial_hex), "%s", hex);
	rc = read_sans(out, cert);
out:
	if (rc < 0)
		st_x509_info_dispose(out);
	OPENSSL_free(hex);
	BN_free(bn);
	BASIC_CONSTRAINTS_free(bc);
	return rc;
}

int st_x509_info_load(struct st_x509_info *out, const char *path, struct st_err *err)
{
	X509 *cert = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = st_x509_load_cert(&cert, path, err)) < 0)
		return rc;
	rc = st_x509_info_get(out, cert, err);
	if (rc < 0)
		st_err_prefix(err, "%s", path);
	X509_free(cert);
	return rc;
}

void st_x509_info_dispose(struct st_x509_info *info)
{
	size_t i;

	for (i = 0; i < info->n_dns; i++)
		free(info->dns[i]);
	for (i = 0; i < info->n_ips; i++)
		free(info->ips[i]);
	free(info->dns);
	free(info->ips);
	free(info->subject_cn);
	free(info->issuer_cn);
	memset(info, 0, sizeof(*info));
}

bool st_x509_info_has_dns(const struct st_x509_info *info, const char *name)
{
	size_t i;

	for (i = 0; i < info->n_dns; i++)
		if (strcasecmp(info->dns[i], name) == 0)
			return true;
	return false;
}

bool st_x509_info_has_ip(const struct st_x509_info *info, const char *addr)
{
	unsigned char want[16];
	unsigned char have[16];
	size_t wn = parse_ip(want, addr);
	size_t i;

	for (i = 0; wn != 0 && i < info->n_ips; i++)
		if (parse_ip(have, info->ips[i]) == wn && memcmp(want, have, wn) == 0)
			return true;
	return false;
}

/* Kubernetes object names used in DNS: lower-case alphanumerics and '-', 1 to 63 bytes. */
static bool valid_label(const char *s)
{
	size_t n = strlen(s);
	size_t i;

	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

static int join_path(char *out, const char *dir, const char *name, struct st_err *err)
{
	int n = snprintf(out, PATH_CAP, "%s/%s", dir, name);

	if (n < 0 || n >= PATH_CAP)
		return st_err_set(err, ST_EINVAL, "%s: path too long", dir);
	return 0;
}

/* mkdir -p with mode 0700 for the directories it creates. */
static int make_dirs(const char *dir, struct st_err *err)
{
	char path[PATH_CAP];
	char ebuf[128];
	size_t i;
	int n = snprintf(path, sizeof(path), "%s", dir);

	if (n <= 0 || n >= (int)sizeof(path))
		return st_err_set(err, ST_EINVAL, "output directory: empty or too long");
	for (i = 1; i <= (size_t)n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return st_err_set(err, ST_EIO, "mkdir %s: %s", path,
			                  errno_text(errno, ebuf, sizeof(ebuf)));
		path[i] = i < (size_t)n ? '/' : '\0';
	}
	return 0;
}

static bool path_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Loads the CA in crt/key and checks it can still sign: a CA, valid now. */
static int load_existing_ca(struct st_x509_pair **out, const char *crt, const char *key,
                            struct st_err *err)
{
	int rc = ST_EINTERNAL;
	struct st_x509_pair *ca = NULL;
	struct st_x509_info info;

	memset(&info, 0, sizeof(info));
	*out = NULL;
	if (!path_exists(crt) || !path_exists(key)) {
		rc = st_err_set(err, ST_EINVAL, "%s exists without %s; use --force for a new CA",
		                path_exists(crt) ? crt : key, path_exists(crt) ? key : crt);
		goto out;
	}
	if ((rc = st_x509_pair_load(&ca, crt, key, err)) < 0 ||
	    (rc = st_x509_info_get(&info, ca->cert, err)) < 0)
		goto out;
	if (!info.is_ca) {
		rc = st_err_set(err, ST_EINVAL, "%s is not a CA certificate", crt);
		goto out;
	}
	if ((rc = st_x509_verify(ca->cert, ca->cert, ST_X509_CA, 0, err)) < 0) {
		st_err_prefix(err, "existing CA %s (use --force for a new CA)", crt);
		goto out;
	}
	*out = ca;
	ca = NULL; /* transferred */
	rc = 0;
out:
	st_x509_info_dispose(&info);
	st_x509_pair_free(ca);
	return rc;
}

static int ensure_ca(struct st_x509_pair **out, bool *reused, const char *crt, const char *key,
                     const struct st_x509_bundle_options *opts, struct st_err *err)
{
	int rc = ST_EINTERNAL;
	struct st_x509_req req = ST_X509_REQ_INIT;
	struct st_x509_pair *ca = NULL;

	*out = NULL;
	*reused = !opts->force && (path_exists(crt) || path_exists(key));
	if (*reused)
		return load_existing_ca(out, crt, key, err);
	req.kind = ST_X509_CA;
	req.key_type = opts->key_type;
	req.cn = "stasis-ca";
	req.days = opts->ca_days;
	if ((rc = st_x509_issue(&ca, &req, NULL, err)) < 0 ||
	    (rc = st_x509_pair_save(ca, crt, key, err)) < 0)
		goto out;
	*out = ca;
	ca = NULL; /* transferred */
	rc = 0;
out:
	st_x509_pair_free(ca);
	return rc;
}

/* Issues one leaf under ca and saves it as dir/crt_name + dir/key_name. */
static int issue_leaf(const struct st_x509_pair *ca, const struct st_x509_req *req, const char *dir,
                      const char *crt_name, const char *key_name, struct st_err *err)
{
	int rc = ST_EINTERNAL;
	struct st_x509_pair *leaf = NULL;
	char crt[PATH_CAP];
	char key[PATH_CAP];

	if ((rc = join_path(crt, dir, crt_name, err)) < 0 ||
	    (rc = join_path(key, dir, key_name, err)) < 0 ||
	    (rc = st_x509_issue(&leaf, req, ca, err)) < 0 ||
	    (rc = st_x509_pair_save(leaf, crt, key, err)) < 0)
		goto out;
	if (ASN1_TIME_compare(X509_get0_notAfter(leaf->cert), X509_get0_notAfter(ca->cert)) > 0)
		st_log_warn("%s outlives its CA; it stops verifying when the CA expires", crt);
	rc = 0;
out:
	st_x509_pair_free(leaf);
	return rc;
}

static int check_bundle_options(const struct st_x509_bundle_options *opts, struct st_err *err)
{
	if (opts->out_dir == NULL || opts->out_dir[0] == '\0')
		return st_err_set(err, ST_EINVAL, "an output directory is required");
	if (opts->service == NULL || !valid_label(opts->service))
		return st_err_set(err, ST_EINVAL, "service \"%.64s\" is not a DNS-1123 label",
		                  opts->service != NULL ? opts->service : "");
	if (opts->ns == NULL || !valid_label(opts->ns))
		return st_err_set(err, ST_EINVAL, "namespace \"%.64s\" is not a DNS-1123 label",
		                  opts->ns != NULL ? opts->ns : "");
	if (opts->n_dns > ST_X509_MAX_SANS - 4)
		return st_err_set(err, ST_EINVAL, "at most %u extra DNS names",
		                  ST_X509_MAX_SANS - 4);
	if (opts->ca_days == 0 || opts->ca_days > ST_X509_MAX_DAYS)
		return st_err_set(err, ST_EINVAL, "CA validity must be 1 to %u days",
		                  ST_X509_MAX_DAYS);
	return 0;
}

int st_x509_bundle_create(bool *ca_reused_out, const struct st_x509_bundle_options *opts,
                          struct st_err *err)
{
	int rc = ST_EINTERNAL;
	struct st_x509_pair *ca = NULL;
	struct st_x509_req server = ST_X509_REQ_INIT;
	struct st_x509_req client = ST_X509_REQ_INIT;
	char crt[PATH_CAP];
	char key[PATH_CAP];
	char names[4][160];
	const char *dns[ST_X509_MAX_SANS];
	bool reused = false;
	size_t i;

	if (ca_reused_out != NULL)
		*ca_reused_out = false;
	if ((rc = check_bundle_options(opts, err)) < 0)
		return rc;
	/* Labels are at most 63 bytes, so these always fit. */
	(void)snprintf(names[0], sizeof(names[0]), "%s", opts->service);
	(void)snprintf(names[1], sizeof(names[1]), "%s.%s", opts->service, opts->ns);
	(void)snprintf(names[2], sizeof(names[2]), "%s.%s.svc", opts->service, opts->ns);
	(void)snprintf(names[3], sizeof(names[3]), "%s.%s.svc.cluster.local", opts->service,
	               opts->ns);
	for (i = 0; i < 4; i++)
		dns[i] = names[i];
	for (i = 0; i < opts->n_dns; i++)
		dns[4 + i] = opts->dns[i];
	client.kind = ST_X509_CLIENT;
	client.key_type = opts->key_type;
	client.cn = opts->client_cn;
	client.days = opts->leaf_days;
	client.not_before = opts->leaf_not_before;
	client.not_after = opts->leaf_not_after;
	server = client;
	server.kind = ST_X509_SERVER;
	/* RFC 5280 caps a CN at 64 bytes; the SANs, not the CN, are what clients check. */
	server.cn = strlen(names[2]) <= 64 ? names[2] : names[0];
	server.dns = dns;
	server.n_dns = 4 + opts->n_dns;
	server.ips = opts->ips;
	server.n_ips = opts->n_ips;
	/* Check every input before anything is written, so a typo leaves no half-made directory. */
	if ((rc = check_req(&server, false, err)) < 0 || (rc = check_req(&client, false, err)) < 0)
		return rc;
	if ((rc = make_dirs(opts->out_dir, err)) < 0 ||
	    (rc = join_path(crt, opts->out_dir, ST_X509_CA_CRT, err)) < 0 ||
	    (rc = join_path(key, opts->out_dir, ST_X509_CA_KEY, err)) < 0 ||
	    (rc = ensure_ca(&ca, &reused, crt, key, opts, err)) < 0 ||
	    (rc = issue_leaf(ca, &server, opts->out_dir, ST_X509_SERVER_CRT, ST_X509_SERVER_KEY,
	                     err)) < 0 ||
	    (rc = issue_leaf(ca, &client, opts->out_dir, ST_X509_CLIENT_CRT, ST_X509_CLIENT_KEY,
	                     err)) < 0)
		goto out;
	if (ca_reused_out != NULL)
		*ca_reused_out = reused;
	rc = 0;
out:
	st_x509_pair_free(ca);
	return rc;
}
