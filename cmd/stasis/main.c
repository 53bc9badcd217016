/*
 * stasis: the command-line tool. Each verb is one line in commands[] and one
 * function that parses its own flags with getopt_long; global flags come
 * before the verb. Exit status: 0 success, 1 failure, 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pkg/cli_backup.h"
#include "pkg/cli_bsl.h"
#include "pkg/cli_install.h"
#include "pkg/cli_restore.h"
#include "pkg/cli_schedule.h"
#include "pkg/cli_version.h"
#include "pkg/server.h"
#include "pkg/util/err.h"
#include "pkg/util/log.h"
#include "pkg/x509.h"

#define EXIT_USAGE 2

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
	const char *usage; /* printed by `stasis <verb> --help` */
};

static int cmd_certs(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const char certs_usage[] =
        "Usage: stasis certs --out-dir DIR [options]\n"
        "\n"
        "Creates a CA (ca.crt, ca.key), the webhook's serving certificate (tls.crt, tls.key)\n"
        "and the controller's client certificate (client.crt, client.key) in DIR. An existing\n"
        "CA in DIR is kept and signs the new leaves, unless --force. Keys are written mode 0600.\n"
        "\n"
        "Options:\n"
        "  --out-dir DIR       where to write the files (created when missing)\n"
        "  --service NAME      webhook Service name (default stasis-webhook)\n"
        "  --namespace NS      its namespace (default stasis); the serving certificate covers\n"
        "                      NAME, NAME.NS, NAME.NS.svc and NAME.NS.svc.cluster.local\n"
        "  --dns NAME          extra DNS name for the serving certificate (repeatable)\n"
        "  --ip ADDR           extra IP address for the serving certificate (repeatable)\n"
        "  --days N            validity of the serving and client certificates (default 365)\n"
        "  --ca-days N         validity of a new CA (default 3650)\n"
        "  --key-type TYPE     ec (P-256, default) or rsa (2048 bits)\n"
        "  --client-cn NAME    common name of the client certificate (default stasis-controller)\n"
        "  --not-before TIME   start of the leaves' validity instead of now\n"
        "  --not-after TIME    end of the leaves' validity instead of start + days\n"
        "                      TIME is YYYY-MM-DDTHH:MM:SSZ or @UNIX_SECONDS\n"
        "  --force             replace an existing CA (invalidates every certificate it signed)\n"
        "  -h, --help          show this help\n";

static const char help_usage[] = "Usage: stasis help [VERB]\n"
                                 "\n"
                                 "Lists the verbs, or shows the help of one verb.\n";

static const struct command commands[] = {
	{ "certs", cmd_certs, "create the CA and the webhook and controller certificates",
	  certs_usage },
	{ "install", st_cli_install_main, "install stasis into a cluster", st_cli_install_usage },
	{ "backup", st_cli_backup_main, "create, list, describe, read logs of and delete backups",
	  st_cli_backup_usage },
	{ "restore", st_cli_restore_main, "create, list, describe and read logs of restores",
	  st_cli_restore_usage },
	{ "backup-location", st_cli_bsl_main, "create and list backup storage locations",
	  st_cli_bsl_usage },
	{ "schedule", st_cli_schedule_main, "create, list, describe, pause and delete schedules",
	  st_cli_schedule_usage },
	{ "version", st_cli_version_main, "print the client and server versions",
	  st_cli_version_usage },
	{ "server", st_server_main, "run the controller", st_server_usage },
	{ "help", cmd_help, "show help for stasis or one verb", help_usage },
	{ NULL, NULL, NULL, NULL },
};

static const struct command *find_command(const char *name)
{
	const struct command *c;

	for (c = commands; c->name != NULL; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

static void print_main_usage(FILE *f)
{
	const struct command *c;

	fprintf(f, "Usage: stasis [--log-level LEVEL] [--log-format FORMAT] VERB [options]\n"
	           "\n"
	           "Crash-consistent backups of databases on Kubernetes.\n"
	           "\n"
	           "Verbs:\n");
	for (c = commands; c->name != NULL; c++)
		fprintf(f, "  %-16s %s\n", c->name, c->summary);
	fprintf(f, "\n"
	           "Global options:\n"
	           "  --log-level LEVEL    error, warn, info (default) or debug\n"
	           "  --log-format FORMAT  text (default) or json\n"
	           "  -h, --help           show this help\n"
	           "\n"
	           "Run 'stasis VERB --help' for the options of a verb.\n");
}

/* Reports a getopt failure ('?' unknown option, ':' missing argument) and returns exit 2. */
static int bad_option(const char *verb, int c, char **argv)
{
	const char *arg = argv[optind - 1];
	const char *sp = verb[0] != '\0' ? " " : "";

	if (c == ':')
		fprintf(stderr, "stasis%s%s: option %s needs an argument\n", sp, verb, arg);
	else if (optopt != 0 && strncmp(arg, "--", 2) != 0)
		fprintf(stderr, "stasis%s%s: unknown option -%c\n", sp, verb, optopt);
	else
		fprintf(stderr, "stasis%s%s: unknown option %s\n", sp, verb, arg);
	fprintf(stderr, "Run 'stasis%s%s --help' for usage.\n", sp, verb);
	return EXIT_USAGE;
}

static int extra_args(const char *verb, int argc, char **argv)
{
	if (optind >= argc)
		return 0;
	fprintf(stderr, "stasis %s: unexpected argument '%s'\nRun 'stasis %s --help' for usage.\n",
	        verb, argv[optind], verb);
	return EXIT_USAGE;
}

static int parse_uint(unsigned *out, const char *s, unsigned max)
{
	char *end = NULL;
	unsigned long v;

	if (s[0] < '0' || s[0] > '9')
		return ST_EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > max)
		return ST_EINVAL;
	*out = (unsigned)v;
	return 0;
}

/* "@1700000000" or "2026-01-02T03:04:05Z" to Unix seconds. */
static int parse_time(int64_t *out, const char *s)
{
	struct tm tm;
	const char *end;
	char *nend = NULL;
	long long v;

	if (s[0] == '@') {
		errno = 0;
		v = strtoll(s + 1, &nend, 10);
		if (errno != 0 || nend == s + 1 || *nend != '\0' || v <= 0)
			return ST_EINVAL;
		*out = (int64_t)v;
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (end == NULL || *end != '\0')
		return ST_EINVAL;
	*out = (int64_t)timegm(&tm);
	return *out > 0 ? 0 : ST_EINVAL;
}

static void print_date(FILE *f, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	char s[32];

	if (gmtime_r(&tt, &tm) == NULL || strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		(void)snprintf(s, sizeof(s), "@%lld", (long long)t);
	fputs(s, f);
}

/* Prints one line per written (or kept) pair, read back from disk. */
static int report_pair(const char *dir, const char *crt, const char *key, const char *what)
{
	struct st_err err = ST_ERR_INIT;
	struct st_x509_info info;
	char path[PATH_MAX];
	size_t i;

	(void)snprintf(path, sizeof(path), "%s/%s", dir, crt);
	if (st_x509_info_load(&info, path, &err) < 0) {
		fprintf(stderr, "stasis certs: %s\n", st_err_text(&err));
		return err.code;
	}
	printf("%-12s %s/%s, %s/%s: CN=%s, until ", what, dir, crt, dir, key,
	       info.subject_cn != NULL ? info.subject_cn : "");
	print_date(stdout, info.not_after);
	for (i = 0; i < info.n_dns; i++)
		printf("%s%s", i == 0 ? ", DNS " : ",", info.dns[i]);
	for (i = 0; i < info.n_ips; i++)
		printf("%s%s", i == 0 ? ", IP " : ",", info.ips[i]);
	putchar('\n');
	st_x509_info_dispose(&info);
	return 0;
}

struct certs_args {
	struct st_x509_bundle_options opts;
	const char *dns[ST_X509_MAX_SANS];
	const char *ips[ST_X509_MAX_SANS];
};

/* Applies one parsed certs option; ST_EINVAL for a bad value. */
static int certs_option(struct certs_args *a, int c, const char *arg)
{
	struct st_x509_bundle_options *o = &a->opts;
	int ok = 0;

	switch (c) {
	case 'd':
		o->out_dir = arg;
		break;
	case 's':
		o->service = arg;
		break;
	case 'n':
		o->ns = arg;
		break;
	case 'D':
	case 'I':
		if ((c == 'D' ? o->n_dns : o->n_ips) >= ST_X509_MAX_SANS) {
			ok = ST_EINVAL;
			break;
		}
		if (c == 'D')
			a->dns[o->n_dns++] = arg;
		else
			a->ips[o->n_ips++] = arg;
		break;
	case 't':
		ok = parse_uint(&o->leaf_days, arg, ST_X509_MAX_DAYS);
		break;
	case 'T':
		ok = parse_uint(&o->ca_days, arg, ST_X509_MAX_DAYS);
		break;
	case 'k':
		if (strcmp(arg, "ec") == 0)
			o->key_type = ST_X509_KEY_EC_P256;
		else if (strcmp(arg, "rsa") == 0)
			o->key_type = ST_X509_KEY_RSA_2048;
		else
			ok = ST_EINVAL;
		break;
	case 'c':
		o->client_cn = arg;
		break;
	case 'b':
		ok = parse_time(&o->leaf_not_before, arg);
		break;
	case 'a':
		ok = parse_time(&o->leaf_not_after, arg);
		break;
	case 'f':
		o->force = true;
		break;
	default:
		ok = ST_EINVAL;
	}
	return ok;
}

static int cmd_certs(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "out-dir", required_argument, NULL, 'd' },
		{ "service", required_argument, NULL, 's' },
		{ "namespace", required_argument, NULL, 'n' },
		{ "dns", required_argument, NULL, 'D' },
		{ "ip", required_argument, NULL, 'I' },
		{ "days", required_argument, NULL, 't' },
		{ "ca-days", required_argument, NULL, 'T' },
		{ "key-type", required_argument, NULL, 'k' },
		{ "client-cn", required_argument, NULL, 'c' },
		{ "not-before", required_argument, NULL, 'b' },
		{ "not-after", required_argument, NULL, 'a' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct certs_args a = { .opts = ST_X509_BUNDLE_OPTIONS_INIT };
	struct st_err err = ST_ERR_INIT;
	bool reused = false;
	int idx = 0;
	int c;

	while ((c = getopt_long(argc, argv, ":h", longopts, &idx)) != -1) {
		if (c == 'h') {
			fputs(certs_usage, stdout);
			return 0;
		}
		if (c == '?' || c == ':')
			return bad_option("certs", c, argv);
		if (certs_option(&a, c, optarg != NULL ? optarg : "") < 0) {
			fprintf(stderr, "stasis certs: invalid value '%s' for --%s%s\n", optarg,
			        longopts[idx].name,
			        c == 'D' || c == 'I' ? " (or too many of them)" : "");
			return EXIT_USAGE;
		}
	}
	if (extra_args("certs", argc, argv) != 0)
		return EXIT_USAGE;
	if (a.opts.out_dir == NULL) {
		fprintf(stderr, "stasis certs: --out-dir is required\n"
		                "Run 'stasis certs --help' for usage.\n");
		return EXIT_USAGE;
	}
	a.opts.dns = a.dns;
	a.opts.ips = a.ips;
	if (st_x509_bundle_create(&reused, &a.opts, &err) < 0) {
		fprintf(stderr, "stasis certs: %s\n", st_err_text(&err));
		return err.code == ST_EINVAL ? EXIT_USAGE : EXIT_FAILURE;
	}
	if (report_pair(a.opts.out_dir, ST_X509_CA_CRT, ST_X509_CA_KEY,
	                reused ? "kept CA" : "wrote CA") < 0 ||
	    report_pair(a.opts.out_dir, ST_X509_SERVER_CRT, ST_X509_SERVER_KEY, "wrote tls") < 0 ||
	    report_pair(a.opts.out_dir, ST_X509_CLIENT_CRT, ST_X509_CLIENT_KEY, "wrote client") < 0)
		return EXIT_FAILURE;
	return 0;
}

static int cmd_help(int argc, char **argv)
{
	const struct command *c;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		if (argc < 2)
			print_main_usage(stdout);
		else
			fputs(help_usage, stdout);
		return 0;
	}
	c = find_command(argv[1]);
	if (c == NULL || argc > 2) {
		fprintf(stderr,
		        "stasis help: unknown verb '%s'\nRun 'stasis --help' for the list.\n",
		        argv[1]);
		return EXIT_USAGE;
	}
	fputs(c->usage, stdout);
	return 0;
}

/* Parses the options before the verb; returns -1 to go on, or an exit status. */
static int global_options(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "log-level", required_argument, NULL, 'l' },
		{ "log-format", required_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	enum st_log_level level = ST_LOG_INFO;
	enum st_log_format format = ST_LOG_TEXT;
	int idx = 0;
	int c;

	/* '+' stops at the verb, so the verb's own flags are left for it. */
	while ((c = getopt_long(argc, argv, "+:h", longopts, &idx)) != -1) {
		if (c == 'h') {
			print_main_usage(stdout);
			return 0;
		}
		if (c == 'l' && st_log_parse_level(&level, optarg) == 0)
			continue;
		if (c == 'F' && st_log_parse_format(&format, optarg) == 0)
			continue;
		if (c == 'l' || c == 'F') {
			fprintf(stderr, "stasis: invalid value '%s' for --%s\n", optarg,
			        longopts[idx].name);
			return EXIT_USAGE;
		}
		return bad_option("", c, argv);
	}
	st_log_setup(level, format);
	return -1;
}

int main(int argc, char **argv)
{
	const struct command *c;
	int rc;

	opterr = 0;
	if ((rc = global_options(argc, argv)) >= 0)
		return rc;
	if (optind >= argc) {
		print_main_usage(stderr);
		return EXIT_USAGE;
	}
	c = find_command(argv[optind]);
	if (c == NULL) {
		fprintf(stderr, "stasis: unknown verb '%s'\nRun 'stasis --help' for the list.\n",
		        argv[optind]);
		return EXIT_USAGE;
	}
	argc -= optind;
	argv += optind;
	/* 0 makes glibc's getopt start afresh on the verb's arguments. */
	optind = 0;
	return c->run(argc, argv);
}
