/*
 * stasis-agent: the quiescer sidecar (serve), its hook commands (freeze,
 * thaw, status over the daemon's Unix socket), the standalone snapshot tool
 * and the repository verbs. Each verb is one line in verbs[]. Exit status:
 * 0 success, 1 failure, 2 usage error.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "pkg/agent.h"
#include "pkg/config.h"
#include "pkg/repo_cmd.h"
#include "pkg/snapshot.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

#define EXIT_USAGE        2
#define DEFAULT_STATE_DIR "/run/stasis"

struct verb {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static int cmd_serve(int argc, char **argv);
static int cmd_freeze(int argc, char **argv);
static int cmd_thaw(int argc, char **argv);
static int cmd_status(int argc, char **argv);
static int cmd_snapshot(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const struct verb verbs[] = {
	{ "serve", cmd_serve, "run the quiescer daemon (HTTPS API and Unix socket)" },
	{ "freeze", cmd_freeze, "freeze volumes through the running daemon" },
	{ "thaw", cmd_thaw, "thaw through the running daemon" },
	{ "status", cmd_status, "show the daemon's freeze state" },
	{ "snapshot", cmd_snapshot,
	  "freeze -> cut -> thaw a host volume; list|gc|mount|unmount|delete" },
	{ "backup", st_repo_cmd_main, "back up a directory or a volume snapshot to a repository" },
	{ "restore", st_repo_cmd_main, "restore a repository snapshot into a directory" },
	{ "repo", st_repo_cmd_main, "repository maintenance: init|list|check|forget|gc" },
	{ "help", cmd_help, "show this help" },
};

static const char *state_dir_default(void)
{
	const char *e = getenv("STASIS_STATE_DIR");

	return e != NULL && e[0] != '\0' ? e : DEFAULT_STATE_DIR;
}

/*
 * Parses a duration into whole seconds, rounded up: bare seconds ("30") or
 * the webhook's duration text ("30s", "1m30s", "500ms"). -1 when invalid.
 */
static int64_t parse_duration(const char *s)
{
	long long ms = 0;
	char *end = NULL;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno == 0 && end != s && *end == '\0')
		return v >= 0 ? v : -1;
	if (st_duration_parse(&ms, s) < 0 || ms < 0)
		return -1;
	return (ms + 999) / 1000;
}

static int usage_error(const char *verb, const char *msg)
{
	fprintf(stderr, "stasis-agent %s: %s (see stasis-agent %s --help)\n", verb, msg, verb);
	return EXIT_USAGE;
}

static int setup_logging(const char *level, const char *format)
{
	enum st_log_level l = ST_LOG_INFO;
	enum st_log_format f = ST_LOG_TEXT;

	if ((level != NULL && st_log_parse_level(&l, level) < 0) ||
	    (format != NULL && st_log_parse_format(&f, format) < 0))
		return -1;
	st_log_setup(l, f);
	return 0;
}

/* ---- serve -------------------------------------------------------------- */

static const char serve_usage[] =
        "Usage: stasis-agent serve [options]\n"
        "\n"
        "Runs the quiescer: freezes and thaws the volumes on request, with a watchdog that\n"
        "thaws at the deadline even if the caller or this process is gone.\n"
        "\n"
        "Options:\n"
        "  --state-dir DIR       journal and socket, never on a volume (default /run/stasis,\n"
        "                        or $STASIS_STATE_DIR)\n"
        "  --socket PATH         Unix socket (default STATE_DIR/agent.sock)\n"
        "  --listen ADDR         HTTPS listen address (default: no HTTPS)\n"
        "  --port N              HTTPS port (default 8443; 0 picks one)\n"
        "  --cert FILE --key FILE  serving certificate and key\n"
        "  --client-ca FILE      require client certificates signed by this CA\n"
        "  --volume PATH         a volume this agent may freeze (repeatable)\n"
        "  --volumes-dir DIR     every directory in DIR is a volume (e.g. /stasis/volumes)\n"
        "  --default-deadline D  deadline when a request names none (default 30s)\n"
        "  --max-deadline D      longest deadline accepted (default 10m)\n"
        "  --log-level L --log-format F  error|warn|info|debug, text|json\n";

static int add_volume(struct st_agent_options *o, const char *path)
{
	if (o->nvolumes >= ST_AGENT_MAX_VOLUMES)
		return -1;
	o->volumes[o->nvolumes++] = st_xstrdup(path);
	return 0;
}

static int add_volumes_dir(struct st_agent_options *o, const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int rc = 0;

	if (d == NULL)
		return -1;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		char path[PATH_MAX];

		if (de->d_name[0] == '.' || de->d_type != DT_DIR)
			continue;
		(void)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		rc = add_volume(o, path);
	}
	(void)closedir(d);
	return rc;
}

static int serve_option(struct st_agent_options *o, int c, const char *arg, const char **level,
                        const char **format)
{
	long v;

	switch (c) {
	case 's':
		o->state_dir = arg;
		return 0;
	case 'S':
		o->socket_path = arg;
		return 0;
	case 'l':
		o->listen_addr = arg;
		return 0;
	case 'p':
		v = strtol(arg, NULL, 10);
		o->port = (uint16_t)v;
		return v >= 0 && v <= 65535 ? 0 : -1;
	case 'c':
		o->cert_file = arg;
		return 0;
	case 'k':
		o->key_file = arg;
		return 0;
	case 'C':
		o->client_ca_file = arg;
		return 0;
	case 'v':
		return add_volume(o, arg);
	case 'V':
		return add_volumes_dir(o, arg);
	case 'd':
		return (o->default_deadline_s = parse_duration(arg)) > 0 ? 0 : -1;
	case 'm':
		return (o->max_deadline_s = parse_duration(arg)) > 0 ? 0 : -1;
	case 'L':
		*level = arg;
		return 0;
	case 'F':
		*format = arg;
		return 0;
	default:
		return -1;
	}
}

static int cmd_serve(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "state-dir", required_argument, NULL, 's' },
		{ "socket", required_argument, NULL, 'S' },
		{ "listen", required_argument, NULL, 'l' },
		{ "port", required_argument, NULL, 'p' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "client-ca", required_argument, NULL, 'C' },
		{ "volume", required_argument, NULL, 'v' },
		{ "volumes-dir", required_argument, NULL, 'V' },
		{ "default-deadline", required_argument, NULL, 'd' },
		{ "max-deadline", required_argument, NULL, 'm' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "log-format", required_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct st_agent_options o = ST_AGENT_OPTIONS_INIT;
	struct st_err err = ST_ERR_INIT;
	const char *level = NULL, *format = NULL;
	int c, rc = EXIT_USAGE;

	o.state_dir = state_dir_default();
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'h') {
			fputs(serve_usage, stdout);
			rc = 0;
			goto out;
		}
		if (serve_option(&o, c, optarg, &level, &format) < 0) {
			rc = usage_error("serve", "invalid option value");
			goto out;
		}
	}
	if (optind != argc || setup_logging(level, format) < 0 ||
	    (o.listen_addr != NULL && (o.cert_file == NULL || o.key_file == NULL))) {
		rc = usage_error("serve", "--listen needs --cert and --key");
		goto out;
	}
	rc = 0;
	if (st_agent_serve(&o, &err) < 0) {
		fprintf(stderr, "stasis-agent serve: %s\n", st_err_text(&err));
		rc = 1;
	}
out:
	for (size_t i = 0; i < o.nvolumes; i++)
		free((void *)(uintptr_t)o.volumes[i]);
	return rc;
}

/* ---- freeze / thaw / status --------------------------------------------- */

struct client_args {
	const char *socket;
	const char *volumes[ST_AGENT_MAX_VOLUMES];
	size_t nvolumes;
	int64_t timeout_s;
	bool extend;
	bool quiet;
};

static const char client_usage[] =
        "Usage: stasis-agent freeze [--timeout 30s] [--volume NAME|PATH]... [--extend]\n"
        "       stasis-agent thaw\n"
        "       stasis-agent status\n"
        "\n"
        "Talk to the running daemon over its Unix socket and print its JSON answer.\n"
        "freeze without --volume freezes every volume the daemon was given; the daemon's\n"
        "watchdog thaws at the timeout even if thaw never comes. --extend moves the deadline\n"
        "of a freeze in progress (a plain second freeze is refused).\n"
        "\n"
        "Options:\n"
        "  --socket PATH    daemon socket (default $STASIS_STATE_DIR/agent.sock)\n"
        "  --timeout D      freeze deadline: 30, 30s, 2m (default: the daemon's)\n"
        "  -q, --quiet      print nothing on success\n";

static int parse_client(struct client_args *a, const char *verb, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 'S' },
		{ "timeout", required_argument, NULL, 't' },
		{ "volume", required_argument, NULL, 'v' },
		{ "extend", no_argument, NULL, 'e' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "qh", lo, NULL)) != -1) {
		if (c == 'S')
			a->socket = optarg;
		else if (c == 't' && (a->timeout_s = parse_duration(optarg)) > 0)
			continue;
		else if (c == 'v' && a->nvolumes < ST_AGENT_MAX_VOLUMES)
			a->volumes[a->nvolumes++] = optarg;
		else if (c == 'e')
			a->extend = true;
		else if (c == 'q')
			a->quiet = true;
		else if (c == 'h') {
			fputs(client_usage, stdout);
			return 1;
		} else
			return usage_error(verb, "invalid option");
	}
	if (optind != argc)
		return usage_error(verb, "unexpected argument");
	return 0;
}

static int client_run(const char *verb, const char *method, const char *path, int argc, char **argv)
{
	struct client_args a = { 0 };
	struct json_object *req = json_object_new_object(), *vols = NULL;
	char sock[PATH_MAX];
	struct st_err err = ST_ERR_INIT;
	char *body = NULL;
	int status = 0, rc = parse_client(&a, verb, argc, argv);

	if (rc != 0 || req == NULL) {
		rc = rc == 1 ? 0 : rc != 0 ? rc : 1;
		goto out;
	}
	(void)snprintf(sock, sizeof(sock), "%s/agent.sock", state_dir_default());
	if (a.nvolumes > 0 && (vols = json_object_new_array()) != NULL) {
		for (size_t i = 0; i < a.nvolumes; i++)
			json_object_array_add(vols, json_object_new_string(a.volumes[i]));
		json_object_object_add(req, "volumes", vols);
	}
	if (a.timeout_s > 0)
		json_object_object_add(req, "deadlineSeconds", json_object_new_int64(a.timeout_s));
	if (a.extend)
		json_object_object_add(req, "extend", json_object_new_boolean(1));
	/* The bound covers a slow syncfs; the daemon's deadline does not start before it. */
	if (st_agent_call(&status, &body, a.socket != NULL ? a.socket : sock, method, path,
	                  strcmp(method, "POST") == 0 ? st_json_to_string(req, NULL) : NULL, 120000,
	                  &err) < 0) {
		fprintf(stderr, "stasis-agent %s: %s\n", verb, st_err_text(&err));
		rc = 1;
		goto out;
	}
	if (status != 200)
		fprintf(stderr, "stasis-agent %s: HTTP %d: %s\n", verb, status, body);
	else if (!a.quiet)
		printf("%s\n", body);
	rc = status == 200 ? 0 : 1;
out:
	json_object_put(req);
	free(body);
	return rc;
}

static int cmd_freeze(int argc, char **argv)
{
	return client_run("freeze", "POST", "/v1/freeze", argc, argv);
}

static int cmd_thaw(int argc, char **argv)
{
	return client_run("thaw", "POST", "/v1/thaw", argc, argv);
}

static int cmd_status(int argc, char **argv)
{
	return client_run("status", "GET", "/v1/status", argc, argv);
}

/* ---- snapshot ------------------------------------------------------------ */

static const char snapshot_usage[] =
        "Usage: stasis-agent snapshot --volume PATH [--method image|btrfs|copy] [options]\n"
        "       stasis-agent snapshot list|gc [--json]\n"
        "       stasis-agent snapshot mount ID [--target DIR]\n"
        "       stasis-agent snapshot unmount|delete ID\n"
        "\n"
        "Cuts a snapshot of a mounted host volume (freeze -> cut -> thaw for image and copy;\n"
        "btrfs snapshots are atomic and need no freeze) and mounts it read-only.\n"
        "  image   the volume is a filesystem image on a loop device; its backing file is\n"
        "          cloned (FICLONE) on the reflink-capable filesystem under it\n"
        "  btrfs   the volume is a btrfs subvolume; a read-only snapshot is taken\n"
        "  copy    a file copy made while frozen: the freeze lasts the whole copy\n"
        "\n"
        "Options:\n"
        "  --state-dir DIR   metadata, journal and mount points (default /run/stasis)\n"
        "  --dest-dir DIR    where the snapshot data goes (default: next to the source)\n"
        "  --timeout D       freeze deadline enforced by a watchdog (default 30s)\n"
        "  --ttl D           delete after D when its owner never comes back (default 24h,\n"
        "                    0 keeps it); `snapshot gc` removes expired snapshots\n"
        "  --owner TEXT      recorded in the metadata\n"
        "  --no-mount        do not mount the snapshot\n"
        "  --already-frozen  the volume is held frozen by the daemon (stasis-agent freeze):\n"
        "                    cut only, the caller thaws\n"
        "  --json            print JSON\n";

struct snap_args {
	struct st_snapshot_options o;
	const char *target;
	bool json;
};

static int snapshot_option(struct snap_args *a, int c, const char *arg)
{
	switch (c) {
	case 'v':
		a->o.volume = arg;
		return 0;
	case 'M':
		a->o.method = arg;
		return 0;
	case 's':
		a->o.state_dir = arg;
		return 0;
	case 'D':
		a->o.dest_dir = arg;
		return 0;
	case 't':
		return (a->o.timeout_s = parse_duration(arg)) > 0 ? 0 : -1;
	case 'T':
		return (a->o.ttl_s = parse_duration(arg)) >= 0 ? 0 : -1;
	case 'o':
		a->o.owner = arg;
		return 0;
	case 'n':
		a->o.mount = false;
		return 0;
	case 'g':
		a->target = arg;
		return 0;
	case 'j':
		a->json = true;
		return 0;
	case 'f':
		a->o.caller_froze = true;
		return 0;
	default:
		return -1;
	}
}

static void print_snapshot(const struct st_snapshot *s, bool json)
{
	struct json_object *o = NULL;

	if (json) {
		o = st_snapshot_to_json(s);
		printf("%s\n", o != NULL ? st_json_to_string(o, NULL) : "{}");
		json_object_put(o);
		return;
	}
	printf("snapshot   %s\nmethod     %s\nvolume     %s\nsource     %s\npath       %s\n", s->id,
	       s->method, s->volume, s->source, s->path);
	printf("mounted    %s\n", s->mountpoint[0] != '\0' ? s->mountpoint : "-");
	if (s->freeze_ns > 0)
		printf("freeze     %.3f ms (cut %.3f ms)\n", (double)s->freeze_ns / 1e6,
		       (double)s->cut_ns / 1e6);
	else
		printf("freeze     none (cut %.3f ms)\n", (double)s->cut_ns / 1e6);
}

static int list_one(const struct st_snapshot *s, void *payload)
{
	const bool *json = payload;
	char when[32];
	time_t t = (time_t)s->created;
	struct tm tm;

	if (*json) {
		print_snapshot(s, true);
		return 0;
	}
	(void)gmtime_r(&t, &tm);
	(void)strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%-40s %-6s %s  %s  %s\n", s->id, s->method, when, s->volume,
	       s->mountpoint[0] != '\0' ? s->mountpoint : "-");
	return 0;
}

static int snapshot_sub(const char *sub, const char *id, struct snap_args *a)
{
	struct st_snapshot *s = st_xcalloc(1, sizeof(*s));
	struct st_err err = ST_ERR_INIT;
	unsigned removed = 0;
	int rc = 0;

	if (strcmp(sub, "list") == 0)
		rc = st_snapshot_list(a->o.state_dir, list_one, &a->json, &err);
	else if (strcmp(sub, "gc") == 0 &&
	         (rc = st_snapshot_gc(a->o.state_dir, (int64_t)time(NULL), &removed, &err)) == 0)
		printf("removed %u expired snapshot(s)\n", removed);
	else if (strcmp(sub, "mount") == 0 &&
	         (rc = st_snapshot_mount(s, a->o.state_dir, id, a->target, &err)) == 0)
		print_snapshot(s, a->json);
	else if (strcmp(sub, "unmount") == 0)
		rc = st_snapshot_unmount(a->o.state_dir, id, &err);
	else if (strcmp(sub, "delete") == 0 &&
	         (rc = st_snapshot_delete(a->o.state_dir, id, &err)) == 0)
		printf("deleted %s\n", id);
	free(s);
	if (rc < 0) {
		fprintf(stderr, "stasis-agent snapshot %s: %s\n", sub, st_err_text(&err));
		return 1;
	}
	return 0;
}

static int cmd_snapshot(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "volume", required_argument, NULL, 'v' },
		{ "method", required_argument, NULL, 'M' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "dest-dir", required_argument, NULL, 'D' },
		{ "timeout", required_argument, NULL, 't' },
		{ "ttl", required_argument, NULL, 'T' },
		{ "owner", required_argument, NULL, 'o' },
		{ "no-mount", no_argument, NULL, 'n' },
		{ "target", required_argument, NULL, 'g' },
		{ "json", no_argument, NULL, 'j' },
		{ "already-frozen", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const subs[] = { "list", "gc", "mount", "unmount", "delete" };
	struct snap_args a = { .o = ST_SNAPSHOT_OPTIONS_INIT };
	struct st_snapshot *s = NULL;
	struct st_err err = ST_ERR_INIT;
	const char *sub = NULL;
	int c, rc;

	a.o.state_dir = state_dir_default();
	a.o.mount = true;
	a.o.owner = "stasis-agent snapshot";
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'h') {
			fputs(snapshot_usage, stdout);
			return 0;
		}
		if (snapshot_option(&a, c, optarg) < 0)
			return usage_error("snapshot", "invalid option value");
	}
	for (size_t i = 0; optind < argc && i < sizeof(subs) / sizeof(subs[0]); i++)
		if (strcmp(argv[optind], subs[i]) == 0)
			sub = subs[i];
	if (sub != NULL) {
		bool needs_id = strcmp(sub, "list") != 0 && strcmp(sub, "gc") != 0;

		if (argc - optind != (needs_id ? 2 : 1))
			return usage_error("snapshot",
			                   needs_id ? "an ID is required" : "extra args");
		return snapshot_sub(sub, needs_id ? argv[optind + 1] : NULL, &a);
	}
	if (optind != argc || a.o.volume == NULL)
		return usage_error("snapshot", "--volume PATH or a subcommand is required");
	s = st_xcalloc(1, sizeof(*s));
	rc = st_snapshot_create(s, &a.o, &err);
	if (rc == 0)
		print_snapshot(s, a.json);
	else
		fprintf(stderr, "stasis-agent snapshot: %s\n", st_err_text(&err));
	free(s);
	return rc == 0 ? 0 : 1;
}

/* ---- dispatch -------------------------------------------------------------- */

static int cmd_help(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("Usage: stasis-agent VERB [options]   (stasis-agent VERB --help for details)\n\n");
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		printf("  %-10s %s\n", verbs[i].name, verbs[i].summary);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return cmd_help(argc, argv) == 0 ? EXIT_USAGE : EXIT_USAGE;
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		return cmd_help(argc, argv);
	st_log_setup(ST_LOG_INFO, ST_LOG_TEXT);
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strcmp(argv[1], verbs[i].name) == 0) {
			optind = 1;
			return verbs[i].run(argc - 1, argv + 1);
		}
	}
	fprintf(stderr, "stasis-agent: unknown verb \"%s\" (see stasis-agent help)\n", argv[1]);
	return EXIT_USAGE;
}
