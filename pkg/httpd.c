#include "pkg/httpd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

#include "pkg/util/buf.h"
#include "pkg/util/caps.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

/*
 * A loaded certificate chain and key. GnuTLS keeps using the pointers handed
 * out by the retrieve callback for the whole handshake and gives no signal
 * when it is done, so a replaced set is retired (kept) rather than freed, and
 * all sets are released when the server stops. Rotations are rare.
 */
struct certset {
	gnutls_pcert_st pcerts[8];
	unsigned npcerts;
	gnutls_privkey_t key;
	struct certset *retired_next;
};

struct filestamp {
	time_t mtime;
	long mtime_ns;
	off_t size;
	ino_t ino;
};

struct st_httpd {
	struct MHD_Daemon *mhd;
	st_httpd_handler handler;
	void *payload;
	struct st_httpd_options opts;
	char *cert_file;
	char *key_file;
	uint16_t port;
	pthread_mutex_t lock; /* guards current, retired, stamps, last_check */
	struct certset *current;
	struct certset *retired;
	struct filestamp cert_stamp;
	struct filestamp key_stamp;
	time_t last_check;
	unsigned reloads;
	char *trust_pem;
	struct st_log_ratelimit rl;
};

/* Responses up to this size are sent as one TLS record (see queue()). */
#define CORK_MAX_BODY (64u * 1024u)

struct conn {
	gnutls_session_t corked; /* session corked for this response, or NULL */
	struct st_buf body;
	bool too_big;
	struct timespec start;
	char path[256];
};

static void certset_free(struct certset *cs)
{
	if (cs == NULL)
		return;
	for (unsigned i = 0; i < cs->npcerts; i++)
		gnutls_pcert_deinit(&cs->pcerts[i]);
	if (cs->key != NULL)
		gnutls_privkey_deinit(cs->key);
	free(cs);
}

static int certset_load(struct certset **out, const char *cert_file, const char *key_file,
                        struct st_err *err)
{
	struct st_buf cert = ST_BUF_INIT(ST_CAP_PEM);
	struct st_buf key = ST_BUF_INIT(ST_CAP_PEM);
	struct certset *cs = st_xcalloc(1, sizeof(*cs));
	gnutls_datum_t d;
	unsigned n = 8;
	int grc;
	int rc = ST_EINTERNAL;

	*out = NULL;
	if ((rc = st_buf_read_file(&cert, cert_file, err)) < 0 ||
	    (rc = st_buf_read_file(&key, key_file, err)) < 0)
		goto out;
	d.data = (unsigned char *)cert.ptr;
	d.size = (unsigned)cert.len;
	grc = gnutls_pcert_list_import_x509_raw(cs->pcerts, &n, &d, GNUTLS_X509_FMT_PEM, 0);
	if (grc < 0 || n == 0) {
		rc = st_err_set(err, ST_ETLS, "%s: no usable PEM certificate: %s", cert_file,
		                gnutls_strerror(grc));
		goto out;
	}
	cs->npcerts = n;
	if (gnutls_privkey_init(&cs->key) < 0) {
		rc = ST_ENOMEM;
		goto out;
	}
	d.data = (unsigned char *)key.ptr;
	d.size = (unsigned)key.len;
	grc = gnutls_privkey_import_x509_raw(cs->key, &d, GNUTLS_X509_FMT_PEM, NULL, 0);
	if (grc < 0) {
		rc = st_err_set(err, ST_ETLS, "%s: no usable PEM private key: %s", key_file,
		                gnutls_strerror(grc));
		goto out;
	}
	*out = cs;
	cs = NULL; /* transferred */
	rc = 0;
out:
	certset_free(cs);
	st_buf_dispose(&cert);
	if (key.ptr != NULL)
		explicit_bzero(key.ptr, key.len);
	st_buf_dispose(&key);
	return rc;
}

static void stamp_of(struct filestamp *out, const char *path)
{
	struct stat st;

	memset(out, 0, sizeof(*out));
	if (stat(path, &st) != 0)
		return;
	out->mtime = st.st_mtim.tv_sec;
	out->mtime_ns = st.st_mtim.tv_nsec;
	out->size = st.st_size;
	out->ino = st.st_ino;
}

static bool stamp_equal(const struct filestamp *a, const struct filestamp *b)
{
	return a->mtime == b->mtime && a->mtime_ns == b->mtime_ns && a->size == b->size &&
	       a->ino == b->ino;
}

/* Called with h->lock held: re-reads the pair when either file changed. */
static void maybe_reload(struct st_httpd *h)
{
	struct filestamp cs;
	struct filestamp ks;
	struct certset *fresh = NULL;
	struct st_err err = ST_ERR_INIT;
	time_t now = time(NULL);

	if (now == h->last_check)
		return;
	h->last_check = now;
	stamp_of(&cs, h->cert_file);
	stamp_of(&ks, h->key_file);
	if (stamp_equal(&cs, &h->cert_stamp) && stamp_equal(&ks, &h->key_stamp))
		return;
	if (certset_load(&fresh, h->cert_file, h->key_file, &err) < 0) {
		/* A half-written pair during rotation: keep serving the old one. */
		if (st_log_ratelimited(&h->rl))
			st_log_warn("certificate reload failed, keeping the previous one: %s",
			            st_err_text(&err));
		return;
	}
	h->cert_stamp = cs;
	h->key_stamp = ks;
	h->current->retired_next = h->retired;
	h->retired = h->current;
	h->current = fresh;
	h->reloads++;
	st_log_info("reloaded TLS certificate from %s", h->cert_file);
}

static int cert_cb(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                   const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                   gnutls_pcert_st **pcert, unsigned int *pcert_length, gnutls_privkey_t *privkey)
{
	/*
	 * The callback has no payload argument. MHD makes its connection the
	 * session's user pointer, and our connection-start notifier put the
	 * server in that connection's socket context: follow the chain.
	 */
	struct MHD_Connection *c = gnutls_session_get_ptr(session);
	const union MHD_ConnectionInfo *ci = NULL;
	struct st_httpd *h = NULL;

	(void)req_ca_rdn;
	(void)nreqs;
	(void)pk_algos;
	(void)pk_algos_length;
	if (c != NULL)
		ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	if (ci != NULL)
		h = ci->socket_context;
	if (h == NULL)
		return -1;
	pthread_mutex_lock(&h->lock);
	maybe_reload(h);
	*pcert = h->current->pcerts;
	*pcert_length = h->current->npcerts;
	*privkey = h->current->key;
	pthread_mutex_unlock(&h->lock);
	return 0;
}

static void notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe)
{
	(void)c;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
		*socket_context = cls;
}

static double elapsed_since(const struct timespec *t0)
{
	struct timespec now;

	(void)clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* The body of a HEAD response is never read: MHD only announces its length. */
static ssize_t no_body(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)cls;
	(void)pos;
	(void)buf;
	(void)max;
	return MHD_CONTENT_READER_END_OF_STREAM;
}

/* A response for body (taken), or an empty HEAD response announcing head_length. */
static struct MHD_Response *make_response(char *body, size_t len, uint64_t head_length)
{
	struct MHD_Response *r;

	if (head_length > 0 && len == 0) {
		free(body);
		return MHD_create_response_from_callback(head_length, 4096, no_body, NULL, NULL);
	}
	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (r == NULL)
		free(body);
	return r;
}

static enum MHD_Result queue_full(struct st_httpd *h, struct MHD_Connection *c, struct conn *cn,
                                  int status, const char *ctype, char *body, size_t len,
                                  const struct st_httpd_response *extra)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	size_t i;

	r = make_response(body, len, extra ? extra->head_length : 0);
	if (r == NULL)
		return MHD_NO;
	(void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
	                              ctype ? ctype : "application/json");
	for (i = 0; extra != NULL && i < ST_HTTPD_RESP_HEADERS_MAX; i++) {
		if (extra->headers[i].name != NULL)
			(void)MHD_add_response_header(r, extra->headers[i].name,
			                              extra->headers[i].value);
	}
	/*
	 * libmicrohttpd writes the header and the body as two TLS records, two
	 * sendmsg calls. For a small body, cork the session so both leave in one
	 * record and one write when completed_cb uncorks it, right after MHD has
	 * handed over the last byte. Large bodies go out uncorked, so a full
	 * socket buffer is never left to the uncork.
	 */
	if (cn != NULL && len <= CORK_MAX_BODY) {
		const union MHD_ConnectionInfo *ci =
		        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);

		if (ci != NULL && ci->tls_session != NULL) {
			cn->corked = (gnutls_session_t)ci->tls_session;
			gnutls_record_cork(cn->corked);
		}
	}
	ret = MHD_queue_response(c, (unsigned)status, r);
	MHD_destroy_response(r);
	if (h->opts.observe != NULL && cn != NULL)
		h->opts.observe(cn->path, status, elapsed_since(&cn->start),
		                h->opts.observe_payload);
	return ret;
}

static enum MHD_Result queue(struct st_httpd *h, struct MHD_Connection *c, struct conn *cn,
                             int status, const char *ctype, char *body, size_t len)
{
	return queue_full(h, c, cn, status, ctype, body, len, NULL);
}

/* A JSON error body {"error": msg}; msg is produced by us and has no quotes to escape. */
static enum MHD_Result queue_error(struct st_httpd *h, struct MHD_Connection *c, struct conn *cn,
                                   int status, const char *msg)
{
	struct json_object *o = json_object_new_object();
	char *body;
	size_t len = 0;

	st_json_add_str(o, "error", msg);
	body = st_xstrdup(st_json_to_string(o, &len));
	json_object_put(o);
	return queue(h, c, cn, status, "application/json", body, len);
}

/*
 * Verifies the client's certificate against the trust store. Returns NULL when
 * it is acceptable (cn_out filled), else a reason for the 403.
 */
static const char *check_client(char *cn_out, size_t cn_cap, struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci;
	gnutls_session_t s;
	const gnutls_datum_t *peers;
	unsigned npeers = 0;
	unsigned status = 0;
	gnutls_x509_crt_t crt = NULL;
	size_t n = cn_cap;
	const char *reason = NULL;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (ci == NULL)
		return "no TLS session";
	s = (gnutls_session_t)ci->tls_session;
	peers = gnutls_certificate_get_peers(s, &npeers);
	if (peers == NULL || npeers == 0)
		return "a client certificate is required; none was presented";
	if (gnutls_certificate_verify_peers2(s, &status) < 0)
		return "client certificate could not be verified";
	if (status & GNUTLS_CERT_EXPIRED)
		return "client certificate has expired";
	if (status & GNUTLS_CERT_NOT_ACTIVATED)
		return "client certificate is not yet valid";
	if (status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA))
		return "client certificate is not signed by the trusted CA";
	if (status != 0)
		return "client certificate is not trusted";
	cn_out[0] = '\0';
	if (gnutls_x509_crt_init(&crt) < 0)
		return "out of memory";
	if (gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) < 0 ||
	    gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn_out, &n) < 0)
		reason = "client certificate has no readable common name";
	gnutls_x509_crt_deinit(crt);
	return reason;
}

static void peer_of(char *out, size_t cap, struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (ci != NULL && ci->client_addr != NULL && ci->client_addr->sa_family == AF_INET) {
		const struct sockaddr_in *a =
		        (const struct sockaddr_in *)(const void *)ci->client_addr;

		(void)inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
		port = ntohs(a->sin_port);
	} else if (ci != NULL && ci->client_addr != NULL &&
	           ci->client_addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a =
		        (const struct sockaddr_in6 *)(const void *)ci->client_addr;

		(void)inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
		port = ntohs(a->sin6_port);
	}
	(void)snprintf(out, cap, "%s:%u", ip, port);
}

static enum MHD_Result dispatch(struct st_httpd *h, struct MHD_Connection *c, struct conn *cn,
                                const char *url, const char *method)
{
	struct st_httpd_request req;
	struct st_httpd_response resp;
	char cn_buf[256];
	char peer[INET6_ADDRSTRLEN + 8];
	const char *q;
	int rc;

	memset(&req, 0, sizeof(req));
	memset(&resp, 0, sizeof(resp));
	if (h->opts.client_ca_file != NULL) {
		const char *why = check_client(cn_buf, sizeof(cn_buf), c);

		if (why != NULL) {
			if (st_log_ratelimited(&h->rl))
				st_log_warn("refused %s %s: %s", method, url, why);
			return queue_error(h, c, cn, 403, why);
		}
		req.client_cn = cn_buf;
	}
	peer_of(peer, sizeof(peer), c);
	req.method = method;
	req.path = url;
	q = strchr(url, '?');
	req.query = q ? q + 1 : NULL;
	req.content_type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
	req.body = st_buf_cstr(&cn->body);
	req.body_len = cn->body.len;
	req.peer = peer;
	req.conn = c;
	rc = h->handler(&resp, &req, h->payload);
	if (rc < 0) {
		free(resp.body);
		return queue_error(h, c, cn, 500, "internal error");
	}
	return queue_full(h, c, cn, resp.status ? resp.status : 500, resp.content_type,
	                  resp.body ? resp.body : st_xstrdup(""), resp.body ? resp.body_len : 0,
	                  &resp);
}

const char *st_httpd_request_header(const struct st_httpd_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *st_httpd_request_arg(const struct st_httpd_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
	struct st_httpd *h = cls;
	struct conn *cn = *con_cls;

	(void)version;
	if (cn == NULL) {
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");

		cn = st_xcalloc(1, sizeof(*cn));
		st_buf_init(&cn->body, h->opts.max_body);
		(void)clock_gettime(CLOCK_MONOTONIC, &cn->start);
		(void)snprintf(cn->path, sizeof(cn->path), "%s", url);
		*con_cls = cn;
		if (cl != NULL) {
			char *end = NULL;
			unsigned long long v = strtoull(cl, &end, 10);

			if (end != cl && v > h->opts.max_body)
				cn->too_big = true;
		}
		return MHD_YES;
	}
	if (*upload_size > 0) {
		if (!cn->too_big && st_buf_put(&cn->body, upload, *upload_size) < 0)
			cn->too_big = true;
		*upload_size = 0;
		return MHD_YES;
	}
	if (cn->too_big) {
		char msg[128];

		(void)snprintf(msg, sizeof(msg), "request body exceeds the limit of %zu bytes",
		               h->opts.max_body);
		return queue_error(h, c, cn, 413, msg);
	}
	return dispatch(h, c, cn, url, method);
}

static void completed_cb(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	struct conn *cn = *con_cls;

	(void)cls;
	if (cn == NULL)
		return;
	if (cn->corked != NULL && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) {
		const union MHD_ConnectionInfo *ci =
		        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		int one = 1;

		/* Blocks only until the kernel takes a few KiB: the body is small. */
		if (gnutls_record_uncork(cn->corked, GNUTLS_RECORD_WAIT) < 0)
			st_log_debug("httpd: sending a corked response failed");
		/*
		 * MHD may have left TCP_CORK set on the socket, expecting its own
		 * last write to push the data; that write was the uncork above, so
		 * the kernel would hold the record for up to 200 ms. Setting
		 * TCP_NODELAY pushes pending data out even on a corked socket.
		 */
		if (ci != NULL && ci->connect_fd != MHD_INVALID_SOCKET)
			(void)setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one,
			                 sizeof(one));
	}
	st_buf_dispose(&cn->body);
	free(cn);
	*con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct st_httpd *h = cls;
	char msg[512];

	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	if (st_log_ratelimited(&h->rl))
		st_log_debug("httpd: %s", msg);
}

static void free_server(struct st_httpd *h)
{
	struct certset *r;

	if (h == NULL)
		return;
	certset_free(h->current);
	while ((r = h->retired) != NULL) {
		h->retired = r->retired_next;
		certset_free(r);
	}
	pthread_mutex_destroy(&h->lock);
	free(h->cert_file);
	free(h->key_file);
	free(h->trust_pem);
	free(h);
}

int st_httpd_start(struct st_httpd **out, const struct st_httpd_options *opts,
                   st_httpd_handler handler, void *payload, struct st_err *err)
{
	struct st_httpd *h = st_xcalloc(1, sizeof(*h));
	struct st_buf trust = ST_BUF_INIT(ST_CAP_PEM);
	struct sockaddr_in sa;
	const union MHD_DaemonInfo *di;
	unsigned threads = opts->threads;
	int rc = ST_EINTERNAL;

	*out = NULL;
	h->handler = handler;
	h->payload = payload;
	h->opts = *opts;
	h->cert_file = st_xstrdup(opts->cert_file);
	h->key_file = st_xstrdup(opts->key_file);
	h->rl.burst = 5;
	pthread_mutex_init(&h->lock, NULL);
	if ((rc = certset_load(&h->current, h->cert_file, h->key_file, err)) < 0)
		goto out;
	stamp_of(&h->cert_stamp, h->cert_file);
	stamp_of(&h->key_stamp, h->key_file);
	h->last_check = time(NULL);
	if (opts->client_ca_file != NULL) {
		if ((rc = st_buf_read_file(&trust, opts->client_ca_file, err)) < 0)
			goto out;
		h->trust_pem = st_buf_detach(&trust, NULL);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(opts->port);
	if (inet_pton(AF_INET, opts->addr, &sa.sin_addr) != 1) {
		rc = st_err_set(err, ST_EINVAL, "listen address %s is not an IPv4 address",
		                opts->addr);
		goto out;
	}
	if (threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		threads = n > 0 ? (unsigned)n : 1;
	}
	{
		struct MHD_OptionItem ops[] = {
			{ MHD_OPTION_SOCK_ADDR, 0, &sa },
			{ MHD_OPTION_HTTPS_CERT_CALLBACK, 0, (void *)cert_cb },
			{ MHD_OPTION_HTTPS_PRIORITIES, 0,
			  (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2" },
			{ MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)notify_connection, h },
			{ MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed_cb, h },
			{ MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)opts->conn_timeout_s, NULL },
			{ MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)threads, NULL },
			{ MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, h },
			{ MHD_OPTION_CONNECTION_LIMIT, 4000, NULL },
			/* Headers and read buffer only: bodies are copied out as they arrive. */
			{ MHD_OPTION_CONNECTION_MEMORY_LIMIT, 16 * 1024, NULL },
			{ MHD_OPTION_PER_IP_CONNECTION_LIMIT, 0, NULL },
			{ h->trust_pem ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, 0,
			  h->trust_pem },
			{ MHD_OPTION_END, 0, NULL },
		};
		h->mhd = MHD_start_daemon(MHD_USE_TLS | MHD_USE_EPOLL_INTERNAL_THREAD |
		                                  MHD_USE_ERROR_LOG | MHD_USE_ITC | MHD_USE_TURBO,
		                          0, NULL, NULL, access_cb, h, MHD_OPTION_ARRAY, ops,
		                          MHD_OPTION_END);
	}
	if (h->mhd == NULL) {
		rc = st_err_set(err, ST_EIO,
		                "cannot listen on %s:%u (port in use, or TLS setup failed)",
		                opts->addr, opts->port);
		goto out;
	}
	di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
	h->port = di ? di->port : opts->port;
	*out = h;
	h = NULL; /* transferred */
	rc = 0;
out:
	st_buf_dispose(&trust);
	free_server(h);
	return rc;
}

uint16_t st_httpd_port(const struct st_httpd *h)
{
	return h->port;
}

unsigned st_httpd_reloads(const struct st_httpd *h)
{
	return h->reloads;
}

void st_httpd_stop(struct st_httpd *h)
{
	if (h == NULL)
		return;
	if (h->mhd != NULL) {
		MHD_socket s = MHD_quiesce_daemon(h->mhd);

		MHD_stop_daemon(h->mhd);
		if (s != MHD_INVALID_SOCKET)
			(void)close(s);
	}
	free_server(h);
}
