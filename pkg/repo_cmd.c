/*
 * The repository verbs. Options are parsed here because the same verbs are
 * served by stasis-agent and the stasis CLI; everything below the option
 * parsing lives in pkg/repo.c and pkg/dirbackup.c.
 */
#include "pkg/repo_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pkg/dirbackup.h"
#include "pkg/repo.h"
#include "pkg/snapshot.h"
#include "pkg/store.h"
#include "pkg/util/buf.h"
#include "pkg/util/mem.h"

#define KEY_FILE_MAX 4096
#define USAGE        1000 /* internal: print usage, exit 2 */

struct cmd {
	const char *repo;
	const char *key_file;
	const char *credentials;
	const char *profile;
	const char *tag;
	const char *target;
	const char *volume;
	const char *method;
	const char *state_dir;
	bool json;
	bool dry_run;
	unsigned jobs;
	long keep_last;
	long grace;
	struct timespec start;
	bool tty;
	struct st_store *store;
	struct st_repo *r;
};

static void usage(void)
{
	fprintf(stderr, "usage:\n"
	                "  backup DIR --repo URL [--tag TAG] [--jobs N] [--json]\n"
	                "  backup --volume PATH [--method image|btrfs|copy] [--state-dir DIR] "
	                "--repo URL ...\n"
	                "  restore SNAPSHOT|latest --target DIR --repo URL [--jobs N] [--json]\n"
	                "  repo init|list|check --repo URL [--json]\n"
	                "  repo forget ID... | --keep-last N --repo URL\n"
	                "  repo gc --repo URL [--grace SECONDS] [--dry-run]\n"
	                "common: --key-file FILE (or STASIS_REPO_KEY / STASIS_REPO_KEY_FILE),\n"
	                "        --credentials-file FILE [--profile P] for s3:// locations;\n"
	                "        --repo may come from STASIS_REPO\n");
}

static double elapsed(const struct cmd *c)
{
	struct timespec now;

	(void)clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - c->start.tv_sec) +
	       (double)(now.tv_nsec - c->start.tv_nsec) / 1e9;
}

/* Reads the key: --key-file, then STASIS_REPO_KEY_FILE, then STASIS_REPO_KEY. */
static int load_key(char **out, size_t *len_out, const struct cmd *c)
{
	const char *file = c->key_file != NULL ? c->key_file : getenv("STASIS_REPO_KEY_FILE");
	const char *env = getenv("STASIS_REPO_KEY");
	char *buf = NULL;
	size_t n = 0;
	struct st_err err = ST_ERR_INIT;

	*out = NULL;
	*len_out = 0;
	if (file != NULL) {
		if (st_read_secret_file(&buf, &n, file, KEY_FILE_MAX, &err) < 0) {
			fprintf(stderr, "error: key file: %s\n", st_err_text(&err));
			return ST_EINVAL;
		}
	} else if (env != NULL) {
		n = strlen(env);
		buf = st_xstrdup(env);
	}
	if (buf == NULL || n == 0) {
		if (buf != NULL)
			st_freezero(buf, n + 1);
		fprintf(stderr, "error: no repository key (use --key-file, STASIS_REPO_KEY_FILE or "
		                "STASIS_REPO_KEY)\n");
		return ST_EINVAL;
	}
	*out = buf;
	*len_out = n;
	return 0;
}

static int open_store(struct cmd *c)
{
	struct st_store_options so = ST_STORE_OPTIONS_INIT;
	struct st_err err = ST_ERR_INIT;

	if (c->repo == NULL)
		c->repo = getenv("STASIS_REPO");
	if (c->repo == NULL) {
		fprintf(stderr, "error: --repo URL is required\n");
		return ST_EINVAL;
	}
	so.credentials_file = c->credentials;
	so.profile = c->profile;
	if (st_store_open(&c->store, c->repo, &so, &err) < 0) {
		fprintf(stderr, "error: %s\n", st_err_text(&err));
		return err.code;
	}
	return 0;
}

static int open_repo(struct cmd *c, bool index)
{
	struct st_err err = ST_ERR_INIT;
	char *key = NULL;
	size_t klen = 0;
	int rc;

	if ((rc = open_store(c)) < 0 || (rc = load_key(&key, &klen, c)) < 0)
		return rc;
	rc = st_repo_open(&c->r, c->store, key, klen, &err);
	st_freezero(key, klen + 1);
	if (rc == 0 && index)
		rc = st_repo_load_index(c->r, &err);
	if (rc < 0)
		fprintf(stderr, "error: %s\n", st_err_text(&err));
	return rc;
}

static void human(char *out, size_t cap, double v)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	(void)snprintf(out, cap, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

static void on_progress(const struct st_dir_progress *p, void *payload)
{
	const struct cmd *c = payload;
	double t = elapsed(c);
	double rate = t > 0 ? (double)p->bytes / t : 0;
	double eta = rate > 0 && p->total_bytes > p->bytes
	                     ? (double)(p->total_bytes - p->bytes) / rate
	                     : 0;

	if (c->json) {
		printf("{\"type\":\"progress\",\"files\":%llu,\"total_files\":%llu,\"bytes\":%llu,"
		       "\"total_bytes\":%llu,\"bytes_new\":%llu,\"bytes_per_second\":%.0f,"
		       "\"eta_seconds\":%.0f,\"elapsed_seconds\":%.3f,\"done\":%s}\n",
		       (unsigned long long)p->files, (unsigned long long)p->total_files,
		       (unsigned long long)p->bytes, (unsigned long long)p->total_bytes,
		       (unsigned long long)p->bytes_new, rate, eta, t, p->done ? "true" : "false");
		(void)fflush(stdout);
	} else if (c->tty) {
		char b[32];
		char tb[32];
		char r[32];

		human(b, sizeof(b), (double)p->bytes);
		human(tb, sizeof(tb), (double)p->total_bytes);
		human(r, sizeof(r), rate);
		fprintf(stderr, "\r\033[K%llu/%llu files  %s/%s  %s/s  ETA %02d:%02d%s",
		        (unsigned long long)p->files, (unsigned long long)p->total_files, b, tb, r,
		        (int)eta / 60, (int)eta % 60, p->done ? "\n" : "");
	}
}

static int do_backup_label(struct cmd *c, const char *dir, const char *label)
{
	struct st_dirbackup_options o = ST_DIRBACKUP_OPTIONS_INIT;
	struct st_repo_snapshot snap;
	struct st_err err = ST_ERR_INIT;
	int rc;

	if ((rc = open_repo(c, true)) < 0)
		return rc;
	o.tag = c->tag;
	o.label = label;
	o.jobs = c->jobs;
	o.count_first = c->json || c->tty;
	o.progress = on_progress;
	o.payload = c;
	if ((rc = st_dirbackup_run(&snap, c->r, dir, &o, &err)) < 0) {
		fprintf(stderr, "error: backup of %s failed: %s\n", dir, st_err_text(&err));
		return rc;
	}
	if (c->json)
		printf("{\"type\":\"summary\",\"snapshot\":\"%s\",\"files\":%llu,\"bytes\":%llu,"
		       "\"bytes_new\":%llu,\"bytes_stored\":%llu,\"seconds\":%.3f}\n",
		       snap.id, (unsigned long long)snap.files, (unsigned long long)snap.bytes,
		       (unsigned long long)snap.bytes_new, (unsigned long long)snap.bytes_stored,
		       elapsed(c));
	else
		printf("snapshot %s saved: %llu files, %llu bytes, %llu new, %llu stored, %.2f s\n",
		       snap.id, (unsigned long long)snap.files, (unsigned long long)snap.bytes,
		       (unsigned long long)snap.bytes_new, (unsigned long long)snap.bytes_stored,
		       elapsed(c));
	st_repo_snapshot_dispose(&snap);
	return 0;
}

static int do_backup(struct cmd *c, const char *dir)
{
	return do_backup_label(c, dir, NULL);
}

/*
 * --volume: freeze, cut a storage snapshot, thaw (pkg/snapshot.h does all
 * three, never leaving the volume frozen), back up the read-only snapshot,
 * then delete it whatever happened.
 */
static int do_volume_backup(struct cmd *c)
{
	struct st_snapshot_options so = ST_SNAPSHOT_OPTIONS_INIT;
	struct st_snapshot snap;
	struct st_err err = ST_ERR_INIT;
	const char *dir;
	int rc;

	so.volume = c->volume;
	so.method = c->method != NULL ? c->method : "image";
	so.mount = true;
	so.owner = "stasis backup --volume";
	if (c->state_dir != NULL)
		so.state_dir = c->state_dir;
	if (st_snapshot_create(&snap, &so, &err) < 0) {
		fprintf(stderr, "error: snapshot of %s failed: %s\n", c->volume, st_err_text(&err));
		return ST_EIO;
	}
	if (!c->json)
		fprintf(stderr, "snapshot %s of %s cut (%s, frozen %.1f ms)\n", snap.id, c->volume,
		        snap.method, (double)snap.freeze_ns / 1e6);
	dir = snap.mountpoint[0] != '\0' ? snap.mountpoint : snap.path;
	rc = do_backup_label(c, dir, c->volume);
	st_err_clear(&err);
	if (st_snapshot_delete(so.state_dir, snap.id, &err) < 0) {
		fprintf(stderr, "error: deleting snapshot %s: %s\n", snap.id, st_err_text(&err));
		if (rc == 0)
			rc = ST_EIO;
	}
	return rc;
}

static int do_restore(struct cmd *c, const char *which)
{
	struct st_dirrestore_options o = ST_DIRRESTORE_OPTIONS_INIT;
	struct st_repo_snapshot snap;
	struct st_err err = ST_ERR_INIT;
	int rc;

	if (c->target == NULL) {
		fprintf(stderr, "error: restore needs --target DIR\n");
		return ST_EINVAL;
	}
	if ((rc = open_repo(c, true)) < 0)
		return rc;
	if ((rc = st_repo_snapshot_load(&snap, c->r, which, &err)) < 0) {
		fprintf(stderr, "error: %s\n", st_err_text(&err));
		return rc;
	}
	o.jobs = c->jobs;
	o.progress = on_progress;
	o.payload = c;
	rc = st_dirrestore_run(c->r, &snap, c->target, &o, &err);
	if (rc < 0)
		fprintf(stderr, "error: restore of snapshot %.8s failed: %s\n", snap.id,
		        st_err_text(&err));
	else if (c->json)
		printf("{\"type\":\"summary\",\"snapshot\":\"%s\",\"files\":%llu,\"bytes\":%llu,"
		       "\"seconds\":%.3f}\n",
		       snap.id, (unsigned long long)snap.files, (unsigned long long)snap.bytes,
		       elapsed(c));
	else
		printf("snapshot %.8s restored to %s: %llu files, %llu bytes, %.2f s\n", snap.id,
		       c->target, (unsigned long long)snap.files, (unsigned long long)snap.bytes,
		       elapsed(c));
	st_repo_snapshot_dispose(&snap);
	return rc;
}

static int do_init(struct cmd *c)
{
	struct st_err err = ST_ERR_INIT;
	char *key = NULL;
	size_t klen = 0;
	int rc;

	if ((rc = open_store(c)) < 0 || (rc = load_key(&key, &klen, c)) < 0)
		return rc;
	/* A missing bucket is created first; an existing one is used as it is. */
	rc = st_store_create(c->store, &err);
	if (rc == 0)
		printf("bucket created for %s\n", c->store->url);
	if (rc >= 0)
		rc = st_repo_init(c->store, key, klen, &err);
	st_freezero(key, klen + 1);
	if (rc < 0)
		fprintf(stderr, "error: %s\n", st_err_text(&err));
	else
		printf("repository created at %s\n", c->store->url);
	return rc;
}

static int list_one(const struct st_repo_snapshot *s, void *payload)
{
	const struct cmd *c = payload;
	char when[64];
	time_t t = (time_t)s->time;
	struct tm tm;

	(void)strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	if (c->json)
		printf("{\"type\":\"snapshot\",\"id\":\"%s\",\"time\":\"%s\",\"host\":\"%s\","
		       "\"tag\":\"%s\",\"files\":%llu,\"bytes\":%llu}\n",
		       s->id, when, s->host, s->tag, (unsigned long long)s->files,
		       (unsigned long long)s->bytes);
	else
		printf("%.8s  %s  %-16s %-12s %8llu files %14llu bytes  %s\n", s->id, when, s->host,
		       s->tag[0] ? s->tag : "-", (unsigned long long)s->files,
		       (unsigned long long)s->bytes, s->path);
	return 0;
}

static void print_bad(const uint8_t id[ST_REPO_ID_LEN], const char *why, void *payload)
{
	(void)id;
	(void)payload;
	printf("error: %s\n", why);
}

static int do_check(struct cmd *c)
{
	struct st_repo_check_report rep;
	struct st_err err = ST_ERR_INIT;
	int rc;

	if ((rc = open_repo(c, true)) < 0)
		return rc;
	if ((rc = st_repo_check(&rep, c->r, print_bad, c, &err)) < 0) {
		fprintf(stderr, "error: check failed: %s\n", st_err_text(&err));
		return rc;
	}
	printf("check: %llu packs, %llu blobs, %llu damaged, %llu missing\n",
	       (unsigned long long)rep.packs, (unsigned long long)rep.blobs,
	       (unsigned long long)rep.bad, (unsigned long long)rep.missing);
	return rep.bad > 0 || rep.missing > 0 ? ST_EPROTO : 0;
}

struct keep_ctx {
	char (*ids)[2 * ST_REPO_ID_LEN + 1];
	size_t n;
};

static int collect_id(const struct st_repo_snapshot *s, void *payload)
{
	struct keep_ctx *k = payload;

	k->ids = st_xrealloc(k->ids, (k->n + 1) * sizeof(*k->ids));
	memcpy(k->ids[k->n++], s->id, sizeof(s->id));
	return 0;
}

static int do_forget(struct cmd *c, int argc, char **argv)
{
	struct st_err err = ST_ERR_INIT;
	struct keep_ctx k = { NULL, 0 };
	int rc;

	if ((rc = open_repo(c, false)) < 0)
		return rc;
	if ((rc = st_repo_snapshot_foreach(c->r, collect_id, &k, &err)) < 0)
		goto out;
	for (size_t i = 0; i < k.n; i++) {
		bool drop = c->keep_last >= 0 && i + (size_t)c->keep_last < k.n;

		for (int a = 0; a < argc; a++)
			if (argv[a][0] != '\0' && strncmp(k.ids[i], argv[a], strlen(argv[a])) == 0)
				drop = true;
		if (!drop)
			continue;
		if ((rc = st_repo_snapshot_delete(c->r, k.ids[i], &err)) < 0)
			goto out;
		printf("forgot snapshot %s\n", k.ids[i]);
	}
	rc = 0;
out:
	if (rc < 0)
		fprintf(stderr, "error: %s\n", st_err_text(&err));
	free(k.ids);
	return rc;
}

static int do_gc(struct cmd *c)
{
	struct st_repo_gc_report rep;
	struct st_err err = ST_ERR_INIT;
	int rc;

	if ((rc = open_repo(c, true)) < 0)
		return rc;
	rc = st_repo_gc(&rep, c->r, c->grace >= 0 ? c->grace : ST_REPO_GRACE_DEFAULT, c->dry_run,
	                &err);
	if (rc < 0) {
		fprintf(stderr, "error: gc failed: %s\n", st_err_text(&err));
		return rc;
	}
	printf("gc%s: %llu packs kept, %llu deleted (%llu bytes), %llu unreferenced but younger "
	       "than the grace period\n",
	       c->dry_run ? " (dry run)" : "", (unsigned long long)rep.packs_kept,
	       (unsigned long long)rep.packs_deleted, (unsigned long long)rep.bytes_freed,
	       (unsigned long long)rep.packs_young);
	return 0;
}

static int parse_opts(struct cmd *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "repo", required_argument, NULL, 'r' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "credentials-file", required_argument, NULL, 'C' },
		{ "profile", required_argument, NULL, 'P' },
		{ "tag", required_argument, NULL, 't' },
		{ "target", required_argument, NULL, 'T' },
		{ "volume", required_argument, NULL, 'V' },
		{ "method", required_argument, NULL, 'm' },
		{ "state-dir", required_argument, NULL, 'S' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "keep-last", required_argument, NULL, 'K' },
		{ "grace", required_argument, NULL, 'g' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	optind = 0; /* GNU: full re-initialisation, the caller may have used getopt */
	while ((ch = getopt_long(argc, argv, "+r:k:t:T:j:h", opts, NULL)) != -1) {
		char *end = NULL;

		switch (ch) {
		case 'r':
			c->repo = optarg;
			break;
		case 'k':
			c->key_file = optarg;
			break;
		case 'C':
			c->credentials = optarg;
			break;
		case 'P':
			c->profile = optarg;
			break;
		case 't':
			c->tag = optarg;
			break;
		case 'T':
			c->target = optarg;
			break;
		case 'V':
			c->volume = optarg;
			break;
		case 'm':
			c->method = optarg;
			break;
		case 'S':
			c->state_dir = optarg;
			break;
		case 'n':
			c->dry_run = true;
			break;
		case 'J':
			c->json = true;
			break;
		case 'j':
		case 'K':
		case 'g': {
			long v;

			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || v < 0) {
				fprintf(stderr, "error: bad number '%s'\n", optarg);
				return -1;
			}
			if (ch == 'j')
				c->jobs = v > 8 ? 8 : (unsigned)v;
			else if (ch == 'K')
				c->keep_last = v;
			else
				c->grace = v;
			break;
		}
		default:
			return -1;
		}
	}
	return optind;
}

static int run_repo(struct cmd *c, int argc, char **argv, int first)
{
	const char *sub = first < argc ? argv[first] : NULL;

	if (sub == NULL) {
		usage();
		return USAGE;
	}
	if (strcmp(sub, "init") == 0)
		return do_init(c);
	if (strcmp(sub, "list") == 0) {
		struct st_err err = ST_ERR_INIT;
		int rc = open_repo(c, false);

		if (rc == 0 && (rc = st_repo_snapshot_foreach(c->r, list_one, c, &err)) < 0)
			fprintf(stderr, "error: %s\n", st_err_text(&err));
		return rc;
	}
	if (strcmp(sub, "check") == 0)
		return do_check(c);
	if (strcmp(sub, "forget") == 0) {
		if (first + 1 >= argc && c->keep_last < 0) {
			fprintf(stderr, "error: forget needs snapshot ids or --keep-last N\n");
			return USAGE;
		}
		return do_forget(c, argc - first - 1, argv + first + 1);
	}
	if (strcmp(sub, "gc") == 0)
		return do_gc(c);
	fprintf(stderr, "error: unknown repo command '%s'\n", sub);
	return USAGE;
}

int st_repo_cmd_main(int argc, char **argv)
{
	struct cmd c;
	int first;
	int rc;

	memset(&c, 0, sizeof(c));
	c.keep_last = -1;
	c.grace = -1;
	c.tty = isatty(2) != 0;
	(void)clock_gettime(CLOCK_MONOTONIC, &c.start);
	if (argc < 1) {
		usage();
		return 2;
	}
	/* Options may follow positional arguments: permute them to the front. */
	{
		char **v = st_xcalloc((size_t)argc + 1, sizeof(char *));
		int n = 1;
		int pos = 0;
		char **p = st_xcalloc((size_t)argc + 1, sizeof(char *));

		v[0] = argv[0];
		for (int i = 1; i < argc; i++) {
			if (argv[i][0] == '-' && argv[i][1] != '\0') {
				v[n++] = argv[i];
				if (strchr(argv[i], '=') == NULL && i + 1 < argc &&
				    strcmp(argv[i], "--json") != 0 &&
				    strcmp(argv[i], "--dry-run") != 0 &&
				    strcmp(argv[i], "--help") != 0 && strcmp(argv[i], "-h") != 0)
					v[n++] = argv[++i];
			} else {
				p[pos++] = argv[i];
			}
		}
		for (int i = 0; i < pos; i++)
			v[n++] = p[i];
		free(p);
		first = parse_opts(&c, n, v);
		if (first < 0) {
			free(v);
			usage();
			return 2;
		}
		if (strcmp(argv[0], "backup") == 0) {
			if (c.volume != NULL) {
				rc = first < n ? USAGE : do_volume_backup(&c);
			} else if (first >= n) {
				usage();
				rc = USAGE;
			} else {
				rc = do_backup(&c, v[first]);
			}
		} else if (strcmp(argv[0], "restore") == 0) {
			if (first >= n) {
				usage();
				rc = USAGE;
			} else {
				rc = do_restore(&c, v[first]);
			}
		} else if (strcmp(argv[0], "repo") == 0) {
			rc = run_repo(&c, n, v, first);
		} else {
			usage();
			rc = USAGE;
		}
		free(v);
	}
	st_repo_free(c.r);
	st_store_free(c.store);
	(void)fflush(stdout);
	return rc == 0 ? 0 : rc == USAGE ? 2 : 1;
}
