/*
 * stasis-webhook: the mutating admission webhook. Thin entry point: flags,
 * configuration, then the HTTPS server until SIGTERM/SIGINT.
 */
#include <ctype.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pkg/httpd.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"
#include "webhook/config.h"
#include "webhook/server.h"

#ifndef STASIS_VERSION
#define STASIS_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
	(void)fprintf(f, "Usage: stasis-webhook [options]\n"
	                 "\n"
	                 "Mutating admission webhook: injects the stasis-freezer container and\n"
	                 "Velero backup hook annotations into pods selected for crash-consistent\n"
	                 "backups, and remaps storage classes and image registries of objects\n"
	                 "created by a restore. Serves HTTPS only: /mutate/pods, /mutate/restore,\n"
	                 "/healthz, /readyz, /metrics.\n"
	                 "\n"
	                 "Options:\n"
	                 "  -c, --config FILE     YAML configuration (see docs/configuration.md)\n"
	                 "  -l, --listen ADDR     address:port to bind (config: listen)\n"
	                 "      --cert FILE       serving certificate, PEM (config: tls.certFile)\n"
	                 "      --key FILE        its private key, PEM (config: tls.keyFile)\n"
	                 "      --log-level L     error, warn, info or debug (config: log.level)\n"
	                 "      --log-format F    text or json (config: log.format)\n"
	                 "      --print-config    print the effective configuration and exit\n"
	                 "      --version         print the version and exit\n"
	                 "  -h, --help            this text\n"
	                 "\n"
	                 "Every setting can also come from the environment: STASIS_ followed by\n"
	                 "the key upper-cased with dots as underscores (STASIS_INJECTION_IMAGE).\n"
	                 "Precedence: flags, then environment, then the file, then defaults.\n"
	                 "The certificate and key are re-read when the files change.\n");
}

/* The settings table as a Markdown table: the source of docs/configuration.md. */
static void print_reference(void)
{
	printf("| key | type | default | environment | meaning |\n|---|---|---|---|---|\n");
	for (size_t i = 0; i < st_webhook_config_table_len; i++) {
		const struct st_cfg_entry *e = &st_webhook_config_table[i];
		static const char *const types[] = { "string", "bool", "integer", "duration",
			                             "size" };
		char env[128] = "STASIS_";
		size_t o = strlen(env);

		for (const char *k = e->key; *k && o + 1 < sizeof(env); k++)
			env[o++] = *k == '.' ? '_' : (char)toupper((unsigned char)*k);
		env[o] = '\0';
		printf("| `%s` | %s | %s%s%s | `%s` | %s |\n", e->key, types[e->type],
		       e->dflt ? "`" : "", e->dflt ? e->dflt : "(unset)", e->dflt ? "`" : "", env,
		       e->help);
	}
}

enum { OPT_CERT = 256, OPT_KEY, OPT_LOG_LEVEL, OPT_LOG_FORMAT, OPT_PRINT, OPT_VERSION, OPT_REF };

struct flag_override {
	const char *key;
	const char *value;
};

static int split_listen(char *host, size_t cap, unsigned *port, const char *listen)
{
	const char *colon = strrchr(listen, ':');
	char *end = NULL;
	unsigned long p;

	if (colon == NULL || (size_t)(colon - listen) >= cap)
		return ST_EINVAL;
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	if (host[0] == '\0')
		(void)snprintf(host, cap, "0.0.0.0");
	p = strtoul(colon + 1, &end, 10);
	if (end == colon + 1 || *end != '\0' || p > 65535)
		return ST_EINVAL;
	*port = (unsigned)p;
	return 0;
}

static int serve(const struct st_webhook_config *cfg)
{
	struct st_httpd_options o = ST_HTTPD_OPTIONS_INIT;
	struct st_webhook wh;
	struct st_httpd *h = NULL;
	struct st_err err = ST_ERR_INIT;
	char host[64];
	unsigned port = 0;
	sigset_t set;
	int sig = 0;
	int rc;

	if (split_listen(host, sizeof(host), &port, cfg->listen) < 0) {
		st_log_err("listen: \"%s\" is not address:port", cfg->listen);
		return 2;
	}
	/* Block the stop signals in every thread; the main thread waits for them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	st_webhook_init(&wh, cfg);
	o.addr = host;
	o.port = (uint16_t)port;
	o.cert_file = cfg->cert_file;
	o.key_file = cfg->key_file;
	o.threads = (unsigned)cfg->threads;
	o.max_body = (size_t)cfg->max_body;
	o.conn_timeout_s = (unsigned)((cfg->conn_timeout_ms + 999) / 1000);
	o.observe = st_webhook_observe;
	o.observe_payload = &wh;
	if ((rc = st_httpd_start(&h, &o, st_webhook_handle, &wh, &err)) < 0) {
		st_log_err("cannot start: %s", st_err_text(&err));
		st_webhook_dispose(&wh);
		return 1;
	}
	atomic_store(&wh.ready, true);
	st_log_info("stasis-webhook %s serving https://%s:%u (%zu rules, image %s, %zu+%zu restore "
	            "mappings)",
	            STASIS_VERSION, host, st_httpd_port(h), cfg->nrules, cfg->image,
	            st_remap_count(cfg->remap, ST_REMAP_STORAGE_CLASS),
	            st_remap_count(cfg->remap, ST_REMAP_IMAGE_REGISTRY));
	/*
	 * Wait for a stop signal; every 10 s hand the pages that requests freed
	 * back to the kernel, so RSS under load stays near the working set.
	 */
	for (;;) {
		struct timespec ts = { 10, 0 };

		sig = sigtimedwait(&set, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT)
			break;
		(void)malloc_trim(0);
	}
	st_log_info("received %s, draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	atomic_store(&wh.ready, false);
	st_httpd_stop(h);
	st_webhook_dispose(&wh);
	st_log_info("stopped");
	return 0;
}

/*
 * Each admission request allocates and frees a few hundred small blocks
 * (json-c trees for the review, the patch and the answer). glibc's
 * per-thread cache keeps 7 blocks per size by default, so most of them fall
 * through to the locked arena; 64 keeps the whole request in the cache and
 * raised throughput by about half in the webhook benchmark. The tunable is
 * read only at start-up, so the process re-executes itself once with it set,
 * unless the operator already chose GLIBC_TUNABLES.
 */
static void tune_malloc(char **argv)
{
	if (getenv("GLIBC_TUNABLES") != NULL) /* NOLINT(concurrency-mt-unsafe): start-up */
		return;
	if (setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=64", 1) != 0)
		return;
	(void)execv("/proc/self/exe", argv);
	/* Not fatal: run with the defaults. */
	(void)unsetenv("GLIBC_TUNABLES");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "cert", required_argument, NULL, OPT_CERT },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "log-format", required_argument, NULL, OPT_LOG_FORMAT },
		{ "print-config", no_argument, NULL, OPT_PRINT },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ "config-reference", no_argument, NULL, OPT_REF },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct flag_override ov[8];
	size_t nov = 0;
	const char *config_path = NULL;
	bool print = false;
	struct st_webhook_config cfg;
	struct st_err err = ST_ERR_INIT;
	enum st_log_level lvl;
	enum st_log_format fmt;
	int c;
	int rc = 1;

	tune_malloc(argv);
	while ((c = getopt_long(argc, argv, "c:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'l':
			ov[nov++] = (struct flag_override){ "listen", optarg };
			break;
		case OPT_CERT:
			ov[nov++] = (struct flag_override){ "tls.certFile", optarg };
			break;
		case OPT_KEY:
			ov[nov++] = (struct flag_override){ "tls.keyFile", optarg };
			break;
		case OPT_LOG_LEVEL:
			ov[nov++] = (struct flag_override){ "log.level", optarg };
			break;
		case OPT_LOG_FORMAT:
			ov[nov++] = (struct flag_override){ "log.format", optarg };
			break;
		case OPT_PRINT:
			print = true;
			break;
		case OPT_VERSION:
			printf("stasis-webhook %s\n", STASIS_VERSION);
			return 0;
		case OPT_REF:
			print_reference();
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (nov == sizeof(ov) / sizeof(ov[0])) {
			(void)fprintf(stderr, "stasis-webhook: too many options\n");
			return 2;
		}
	}
	if (optind < argc) {
		(void)fprintf(stderr, "stasis-webhook: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	/*
	 * One malloc arena per worker thread would keep each thread's freed
	 * blocks apart and let RSS creep up under load. Two are enough with
	 * the larger per-thread cache (tune_malloc); a single arena lost half
	 * the throughput to lock contention.
	 */
	(void)mallopt(M_ARENA_MAX, 2);
	st_webhook_config_init(&cfg);
	if (st_webhook_config_load(&cfg, config_path, &err) < 0)
		goto bad_config;
	for (size_t i = 0; i < nov; i++)
		if (st_config_set(&cfg, st_webhook_config_table, st_webhook_config_table_len,
		                  ov[i].key, ov[i].value, &err) < 0)
			goto bad_config;
	if (st_webhook_config_validate(&cfg, &err) < 0)
		goto bad_config;
	if (print) {
		struct st_buf b = ST_BUF_INIT(1 << 20);

		if (st_config_print(&b, &cfg, st_webhook_config_table,
		                    st_webhook_config_table_len) == 0)
			fputs(st_buf_cstr(&b), stdout);
		printf("rules: %zu\n", cfg.nrules);
		printf("restore: %zu storage class and %zu image registry mappings\n",
		       st_remap_count(cfg.remap, ST_REMAP_STORAGE_CLASS),
		       st_remap_count(cfg.remap, ST_REMAP_IMAGE_REGISTRY));
		st_buf_dispose(&b);
		rc = 0;
		goto out;
	}
	(void)!st_log_parse_level(&lvl, cfg.log_level);
	(void)!st_log_parse_format(&fmt, cfg.log_format);
	st_log_setup(lvl, fmt);
	rc = serve(&cfg);
	goto out;
bad_config:
	(void)fprintf(stderr, "stasis-webhook: configuration error: %s\n", st_err_text(&err));
	rc = 2;
out:
	st_webhook_config_dispose(&cfg);
	return rc;
}
