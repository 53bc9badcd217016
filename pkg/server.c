#include "pkg/server.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "pkg/backup.h"
#include "pkg/bsl.h"
#include "pkg/config.h"
#include "pkg/dataserver.h"
#include "pkg/kube.h"
#include "pkg/restore.h"
#include "pkg/schedule.h"
#include "pkg/store.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"
#include "pkg/volumes.h"

#define EXIT_USAGE 2
/* Lease timing, as controller-runtime's defaults: 15 s lease, renewed every 5 s. */
#define LEASE_DURATION_S 15
#define LEASE_RENEW_S    5
#define LEASE_RETRY_S    2
/* Pause before re-opening a watch the server refused. */
#define WATCH_RETRY_S 2
/* Progress is written to status at most this often. */
#define PROGRESS_INTERVAL_MS 1000
#define NAME_MAX_LEN         253
/* Schedules are listed again at least this often, whatever their next slots. */
#define SCHEDULE_RECHECK_S 60

const char st_server_usage[] =
        "Usage: stasis server [options]\n"
        "\n"
        "Runs the controller: holds a Lease so that one replica acts, validates the\n"
        "BackupStorageLocations and runs the Backups and Restores of its namespace one at\n"
        "a time, creates the Backups of its Schedules and deletes Backups past their\n"
        "expiration.\n"
        "\n"
        "Options:\n"
        "  -n, --namespace NS         namespace of the custom resources (default stasis)\n"
        "      --kubeconfig FILE      kubeconfig to use (default: $KUBECONFIG, ~/.kube/config,\n"
        "                             then the in-cluster service account)\n"
        "      --context NAME         kubeconfig context\n"
        "      --credentials-file F   AWS credentials file for locations without a credential\n"
        "      --lease-name NAME      Lease that elects the active replica (default\n"
        "                             stasis-controller)\n"
        "      --identity NAME        holder identity in the Lease (default HOSTNAME_PID)\n"
        "      --bsl-sync-period D    how often storage locations are probed (default 60s)\n"
        "      --gc-period D          how often expired backups are looked for (default 1m)\n"
        "      --client-qps N         API requests per second (default 50)\n"
        "      --client-burst N       API request burst (default 100)\n"
        "\n"
        "Volume data (claims in a backup's scope are frozen, cut and moved):\n"
        "      --agent-ca FILE        CA that signed the agents' serving certificates\n"
        "      --agent-cert FILE      client certificate the agents accept (the controller's)\n"
        "      --agent-key FILE       its key\n"
        "      --agent-server-name N  name the agent certificates carry (default\n"
        "                             stasis-webhook, as `stasis certs` issues)\n"
        "      --freeze-deadline D    the agents thaw by themselves after D (default 30s)\n"
        "      --cut-timeout D        longest wait for the snapshots' cut (default 10s)\n"
        "      --ready-timeout D      longest wait for readyToUse (default 10m)\n"
        "      --data-listen A:P      address of the data door movers send data to\n"
        "      --data-address H:P     how movers reach it (default: --data-listen)\n"
        "      --data-cert FILE       its serving certificate\n"
        "      --data-key FILE        its key\n"
        "      --data-ca FILE         CA movers verify it with\n"
        "      --repo-key-file FILE   the volume repository's key (default\n"
        "                             $STASIS_REPO_KEY_FILE)\n"
        "      --mover-image IMAGE    image of the data mover pods (stasis-agent)\n"
        "      --mover-command PATH   stasis-agent in that image (default /stasis-agent)\n"
        "      --movers N             data movers at once (default 4)\n"
        "      --mover-timeout D      longest run of one mover (default 6h)\n"
        "  -h, --help                 show this help\n";

enum job_kind {
	JOB_BACKUP = 0,
	JOB_DELETE,
	JOB_ORPHAN,
	JOB_RESTORE,
	JOB_RESTORE_ORPHAN,
};

struct job {
	enum job_kind kind;
	char name[NAME_MAX_LEN + 1];
};

struct server {
	struct st_kube_client *c;
	const char *ns;
	const char *lease_name;
	const char *identity;
	const char *credentials_file;
	long long bsl_period_s;
	long long gc_period_s;
	struct st_kube_gvr backups;
	struct st_kube_gvr bsls;
	struct st_kube_gvr leases;
	struct st_kube_gvr schedules;
	struct st_kube_gvr restores;
	atomic_bool stop;
	atomic_bool lease_lost;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *queue; /* guarded by mu */
	size_t qlen;
	size_t qcap;
	bool initial_synced;          /* guarded by mu: the first Backup list was seen */
	bool restores_synced;         /* guarded by mu: the first Restore list was seen */
	struct json_object *bsl_gens; /* name -> generation last validated (BSL thread only) */
	long long progress_ms;        /* worker only */
	const char *current;          /* worker only: the Backup being run */
	struct st_volumes_config vol; /* worker only, after setup */
	struct st_dataserver *ds;
	char data_address[300];
	bool schedules_changed; /* guarded by mu: a Schedule event since the last pass */
};

/* ---- time ------------------------------------------------------------------------------- */

static long long now_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* metav1.MicroTime: "2026-01-02T03:04:05.000000Z". */
static void micro_time(char *buf, size_t size)
{
	long long ms = now_ms();
	char base[32];

	st_backup_format_time(base, sizeof(base), ms / 1000);
	if (strlen(base) == 20)
		(void)snprintf(buf, size, "%.19s.%06lldZ", base, (ms % 1000) * 1000);
	else
		(void)snprintf(buf, size, "%s", base);
}

/* Unix seconds of an RFC 3339 time (fractions ignored); -1 when unreadable. */
static long long parse_time(const char *s)
{
	struct tm tm;
	int y, mo, d, h, mi, se;

	if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &se) != 6)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	return (long long)timegm(&tm);
}

/* Waits on the condition variable up to ms, or until stop. Called with mu held. */
static void timed_wait(struct server *srv, long long ms)
{
	struct timespec ts;
	long long until = now_ms() + ms;

	ts.tv_sec = (time_t)(until / 1000);
	ts.tv_nsec = (long)(until % 1000) * 1000000;
	if (!atomic_load(&srv->stop))
		(void)pthread_cond_timedwait(&srv->cv, &srv->mu, &ts);
}

static void sleep_unless_stopped(struct server *srv, long long ms)
{
	pthread_mutex_lock(&srv->mu);
	timed_wait(srv, ms);
	pthread_mutex_unlock(&srv->mu);
}

static void request_stop(struct server *srv)
{
	pthread_mutex_lock(&srv->mu);
	atomic_store(&srv->stop, true);
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
}

/* ---- the Lease -------------------------------------------------------------------------- */

static struct json_object *new_lease(const struct server *srv)
{
	struct json_object *l = json_object_new_object();
	struct json_object *md = json_object_new_object();

	st_json_add_str(l, "apiVersion", "coordination.k8s.io/v1");
	st_json_add_str(l, "kind", "Lease");
	st_json_add_str(md, "name", srv->lease_name);
	st_json_add_str(md, "namespace", srv->ns);
	json_object_object_add(l, "metadata", md);
	json_object_object_add(l, "spec", json_object_new_object());
	return l;
}

/* Writes holder, times and transitions into lease's spec. */
static void claim(struct json_object *lease, const char *identity, bool transition)
{
	struct json_object *spec = st_json_get_obj(lease, "spec");
	/* As client-go counts: every change of holder but the Lease's creation. */
	bool existed = st_json_get_str(spec, "holderIdentity") != NULL;
	int n = json_object_get_int(st_json_get(spec, "leaseTransitions"));
	char ts[40];

	micro_time(ts, sizeof(ts));
	if (transition) {
		st_json_add_str(spec, "acquireTime", ts);
		json_object_object_add(spec, "leaseTransitions",
		                       json_object_new_int(existed ? n + 1 : 0));
	}
	st_json_add_str(spec, "holderIdentity", identity);
	json_object_object_add(spec, "leaseDurationSeconds", json_object_new_int(LEASE_DURATION_S));
	st_json_add_str(spec, "renewTime", ts);
}

/*
 * One attempt to take or renew the Lease. Returns 1 when this process holds
 * it afterwards, 0 when another holder has it, < 0 on an API failure.
 */
static int try_lease(struct server *srv, struct st_err *err)
{
	struct json_object *lease = NULL;
	struct json_object *out = NULL;
	struct json_object *spec;
	const char *holder;
	long long renew, dur;
	long http = 0;
	bool mine;
	int rc;

	rc = st_kube_get(&lease, srv->c, &srv->leases, srv->ns, srv->lease_name, &http, err);
	if (rc == ST_ENOTFOUND) {
		st_err_clear(err);
		lease = new_lease(srv);
		claim(lease, srv->identity, true);
		rc = st_kube_create(&out, srv->c, &srv->leases, srv->ns, lease, &http, err);
		rc = rc == 0 ? 1 : (http == 409 ? 0 : rc);
		goto out;
	}
	if (rc < 0)
		goto out;
	spec = st_json_get_obj(lease, "spec");
	holder = st_json_get_str(spec, "holderIdentity");
	renew = parse_time(st_json_get_str(spec, "renewTime"));
	dur = json_object_get_int(st_json_get(spec, "leaseDurationSeconds"));
	mine = holder != NULL && strcmp(holder, srv->identity) == 0;
	if (!mine && holder != NULL && holder[0] != '\0' && renew >= 0 &&
	    (long long)time(NULL) <= renew + dur) {
		rc = 0;
		goto out;
	}
	if (spec == NULL)
		json_object_object_add(lease, "spec", json_object_new_object());
	claim(lease, srv->identity, !mine);
	rc = st_kube_update(&out, srv->c, &srv->leases, srv->ns, lease, &http, err);
	/*
	 * A conflict while taking over means another replica won. While renewing it
	 * only means the Lease changed since our read: the next attempt reads again.
	 */
	rc = rc == 0 ? 1 : (http == 409 && !mine ? 0 : rc);
out:
	json_object_put(lease);
	json_object_put(out);
	return rc;
}

/* Blocks until the Lease is ours (true) or a stop was requested (false). */
static bool acquire_lease(struct server *srv)
{
	bool told = false;

	while (!atomic_load(&srv->stop)) {
		struct st_err err = { 0 };
		int rc = try_lease(srv, &err);

		if (rc == 1) {
			st_log_info("acquired lease %s/%s as %s", srv->ns, srv->lease_name,
			            srv->identity);
			return true;
		}
		if (rc < 0)
			st_log_warn("lease %s/%s: %s", srv->ns, srv->lease_name, st_err_text(&err));
		else if (!told)
			st_log_info("lease %s/%s is held by another replica; waiting", srv->ns,
			            srv->lease_name);
		told = true;
		sleep_unless_stopped(srv, LEASE_RETRY_S * 1000);
	}
	return false;
}

static void *lease_thread(void *arg)
{
	struct server *srv = arg;
	long long last_ok = now_ms();

	while (!atomic_load(&srv->stop)) {
		struct st_err err = { 0 };
		int rc;

		sleep_unless_stopped(srv, LEASE_RENEW_S * 1000);
		if (atomic_load(&srv->stop))
			break;
		rc = try_lease(srv, &err);
		if (rc == 1) {
			last_ok = now_ms();
			continue;
		}
		if (rc == 0 || now_ms() - last_ok > LEASE_DURATION_S * 1000) {
			st_log_err("lost lease %s/%s%s%s; stopping", srv->ns, srv->lease_name,
			           rc < 0 ? ": " : " to another replica",
			           rc < 0 ? st_err_text(&err) : "");
			atomic_store(&srv->lease_lost, true);
			request_stop(srv);
			break;
		}
		st_log_warn("renewing lease %s/%s: %s", srv->ns, srv->lease_name,
		            st_err_text(&err));
	}
	return NULL;
}

/* Gives the Lease up so that another replica takes over at once. */
static void release_lease(struct server *srv)
{
	struct json_object *lease = NULL;
	struct json_object *out = NULL;
	struct json_object *spec;
	struct st_err err = { 0 };
	const char *holder;

	if (st_kube_get(&lease, srv->c, &srv->leases, srv->ns, srv->lease_name, NULL, &err) < 0)
		goto out;
	spec = st_json_get_obj(lease, "spec");
	holder = st_json_get_str(spec, "holderIdentity");
	if (spec == NULL || holder == NULL || strcmp(holder, srv->identity) != 0)
		goto out;
	st_json_add_str(spec, "holderIdentity", "");
	json_object_object_add(spec, "leaseDurationSeconds", json_object_new_int(1));
	if (st_kube_update(&out, srv->c, &srv->leases, srv->ns, lease, NULL, &err) < 0)
		goto out;
	st_log_info("released lease %s/%s", srv->ns, srv->lease_name);
out:
	if (err.code != 0)
		st_log_warn("releasing lease %s/%s: %s", srv->ns, srv->lease_name,
		            st_err_text(&err));
	json_object_put(lease);
	json_object_put(out);
}

/* ---- status writes ---------------------------------------------------------------------- */

/* Merge-patches obj's status (or main resource when subresource is NULL). */
static int patch(struct server *srv, const struct st_kube_gvr *gvr, const char *name,
                 const char *subresource, struct json_object *body, struct st_err *err)
{
	struct json_object *out = NULL;
	const char *text;
	size_t len = 0;
	int rc;

	text = st_json_to_string(body, &len);
	rc = st_kube_patch(&out, srv->c, gvr, srv->ns, name, subresource, ST_KUBE_PATCH_MERGE, text,
	                   len, NULL, err);
	json_object_put(out);
	return rc;
}

/*
 * Patches the status of object name (a Backup or a Restore, noun in log
 * lines) with st (taken). Failures are logged; a gone object is fine.
 */
static void write_status(struct server *srv, const struct st_kube_gvr *gvr, const char *noun,
                         const char *name, struct json_object *st)
{
	struct json_object *body = json_object_new_object();
	struct st_err err = { 0 };
	int rc;

	json_object_object_add(body, "status", st);
	rc = patch(srv, gvr, name, "status", body, &err);
	if (rc < 0 && rc != ST_ENOTFOUND)
		st_log_err("%s %s/%s: writing status: %s", noun, srv->ns, name, st_err_text(&err));
	json_object_put(body);
}

static void backup_status(struct server *srv, const char *name, struct json_object *st)
{
	write_status(srv, &srv->backups, "backup", name, st);
}

static void restore_status(struct server *srv, const char *name, struct json_object *st)
{
	write_status(srv, &srv->restores, "restore", name, st);
}

/* Volume progress while a backup runs (patch borrowed). */
static void on_volume_status(struct json_object *st, void *payload)
{
	struct server *srv = payload;

	if (srv->current != NULL)
		backup_status(srv, srv->current, json_object_get(st));
}

static struct json_object *failed_status(const char *reason, const char *validation)
{
	struct json_object *st = json_object_new_object();
	char ts[32];

	st_backup_format_time(ts, sizeof(ts), (long long)time(NULL));
	st_json_add_str(st, "phase", "Failed");
	st_json_add_str(st, "failureReason", reason);
	st_json_add_str(st, "completionTimestamp", ts);
	if (validation != NULL) {
		struct json_object *ve = json_object_new_array();

		json_object_array_add(ve, json_object_new_string(validation));
		json_object_object_add(st, "validationErrors", ve);
	}
	return st;
}

/* ---- storage locations ------------------------------------------------------------------ */

static void bsl_status(struct server *srv, const char *name, bool ok, const char *message)
{
	struct json_object *body = json_object_new_object();
	struct json_object *st = json_object_new_object();
	struct st_err err = { 0 };
	char ts[32];

	st_backup_format_time(ts, sizeof(ts), (long long)time(NULL));
	st_json_add_str(st, "phase", ok ? "Available" : "Unavailable");
	st_json_add_str(st, "message", message);
	st_json_add_str(st, "lastValidationTime", ts);
	json_object_object_add(body, "status", st);
	if (patch(srv, &srv->bsls, name, "status", body, &err) < 0)
		st_log_err("storage location %s/%s: writing status: %s", srv->ns, name,
		           st_err_text(&err));
	json_object_put(body);
}

static void validate_bsl(struct server *srv, struct json_object *bsl)
{
	const char *name = st_json_get_str(st_json_get_obj(bsl, "metadata"), "name");
	const char *old = st_json_get_str(st_json_get_obj(bsl, "status"), "phase");
	struct st_bsl b;
	struct st_err err = { 0 };
	int rc;

	st_bsl_init(&b);
	rc = st_bsl_open(&b, srv->c, bsl, srv->credentials_file, &err);
	if (rc == 0)
		rc = st_bsl_probe(b.store, &err);
	if (rc == 0) {
		if (old == NULL || strcmp(old, "Available") != 0)
			st_log_info("storage location %s/%s (%s) is available", srv->ns, name,
			            b.url);
		bsl_status(srv, name, true, "");
	} else {
		st_log_warn("storage location %s/%s is unavailable: %s", srv->ns, name,
		            st_err_text(&err));
		bsl_status(srv, name, false, st_err_text(&err));
	}
	st_bsl_close(&b);
}

static int on_bsl_event(enum st_kube_event_type type, struct json_object *obj, void *payload)
{
	struct server *srv = payload;
	struct json_object *md = st_json_get_obj(obj, "metadata");
	const char *name = st_json_get_str(md, "name");
	int64_t gen = json_object_get_int64(st_json_get(md, "generation"));
	struct json_object *seen = NULL;

	if (name == NULL || (type != ST_KUBE_EVENT_ADDED && type != ST_KUBE_EVENT_MODIFIED)) {
		if (type == ST_KUBE_EVENT_DELETED && name != NULL)
			json_object_object_del(srv->bsl_gens, name);
		return atomic_load(&srv->stop) ? 1 : 0;
	}
	/* Our own status writes come back as MODIFIED with the same generation. */
	if (json_object_object_get_ex(srv->bsl_gens, name, &seen) &&
	    json_object_get_int64(seen) == gen)
		return 0;
	json_object_object_add(srv->bsl_gens, name, json_object_new_int64(gen));
	validate_bsl(srv, obj);
	return atomic_load(&srv->stop) ? 1 : 0;
}

/*
 * Each cycle lists every location (validating all of them) and watches for
 * the rest of the sync period, validating new and changed ones.
 */
static void *bsl_thread(void *arg)
{
	struct server *srv = arg;

	while (!atomic_load(&srv->stop)) {
		struct st_kube_watch_options wo = ST_KUBE_WATCH_OPTIONS_INIT;
		struct st_err err = { 0 };

		json_object_put(srv->bsl_gens);
		srv->bsl_gens = json_object_new_object();
		wo.cancel = &srv->stop;
		wo.duration_ms = (uint64_t)srv->bsl_period_s * 1000;
		if (st_kube_watch(srv->c, &srv->bsls, srv->ns, &wo, on_bsl_event, srv, &err) < 0) {
			st_log_warn("watching storage locations: %s", st_err_text(&err));
			sleep_unless_stopped(srv, WATCH_RETRY_S * 1000);
		}
	}
	return NULL;
}

/* ---- the queue -------------------------------------------------------------------------- */

static void enqueue(struct server *srv, enum job_kind kind, const char *name)
{
	size_t i;

	if (strlen(name) > NAME_MAX_LEN)
		return;
	pthread_mutex_lock(&srv->mu);
	for (i = 0; i < srv->qlen; i++)
		if (srv->queue[i].kind == kind && strcmp(srv->queue[i].name, name) == 0)
			goto out;
	if (srv->qlen == srv->qcap) {
		srv->qcap = srv->qcap ? srv->qcap * 2 : 16;
		srv->queue = st_xrealloc(srv->queue, srv->qcap * sizeof(*srv->queue));
	}
	srv->queue[srv->qlen].kind = kind;
	(void)snprintf(srv->queue[srv->qlen].name, sizeof(srv->queue[0].name), "%s", name);
	srv->qlen++;
	pthread_cond_broadcast(&srv->cv);
out:
	pthread_mutex_unlock(&srv->mu);
}

static bool delete_requested(struct json_object *obj)
{
	const char *v =
	        st_json_get_str(st_json_get_obj(st_json_get_obj(obj, "metadata"), "annotations"),
	                        ST_SERVER_DELETE_ANNOTATION);

	return v != NULL && strcmp(v, "true") == 0;
}

static int on_backup_event(enum st_kube_event_type type, struct json_object *obj, void *payload)
{
	struct server *srv = payload;
	const char *name = st_json_get_str(st_json_get_obj(obj, "metadata"), "name");
	const char *phase = st_json_get_str(st_json_get_obj(obj, "status"), "phase");
	bool synced;

	if (type == ST_KUBE_EVENT_SYNCED) {
		pthread_mutex_lock(&srv->mu);
		srv->initial_synced = true;
		pthread_mutex_unlock(&srv->mu);
	}
	if (name == NULL || (type != ST_KUBE_EVENT_ADDED && type != ST_KUBE_EVENT_MODIFIED))
		return atomic_load(&srv->stop) ? 1 : 0;
	pthread_mutex_lock(&srv->mu);
	synced = srv->initial_synced;
	pthread_mutex_unlock(&srv->mu);
	/*
	 * A Backup already Deleting is retried by resync() and the first list, not
	 * on the events its own failed attempt caused.
	 */
	if (delete_requested(obj)) {
		if (phase == NULL || strcmp(phase, "Deleting") != 0 || !synced)
			enqueue(srv, JOB_DELETE, name);
	} else if (phase == NULL || phase[0] == '\0' || strcmp(phase, "New") == 0)
		enqueue(srv, JOB_BACKUP, name);
	else if (strcmp(phase, "InProgress") == 0 && !synced)
		enqueue(srv, JOB_ORPHAN, name);
	return atomic_load(&srv->stop) ? 1 : 0;
}

/* Watches gvr in the namespace until the server stops, starting again after a failure. */
static void watch_until_stopped(struct server *srv, const struct st_kube_gvr *gvr,
                                st_kube_event_cb cb)
{
	while (!atomic_load(&srv->stop)) {
		struct st_kube_watch_options wo = ST_KUBE_WATCH_OPTIONS_INIT;
		struct st_err err = { 0 };

		wo.cancel = &srv->stop;
		if (st_kube_watch(srv->c, gvr, srv->ns, &wo, cb, srv, &err) < 0) {
			st_log_warn("watching %s: %s", gvr->resource, st_err_text(&err));
			sleep_unless_stopped(srv, WATCH_RETRY_S * 1000LL);
		}
	}
}

static void *backup_watch_thread(void *arg)
{
	struct server *srv = arg;

	watch_until_stopped(srv, &srv->backups, on_backup_event);
	return NULL;
}

static int on_restore_event(enum st_kube_event_type type, struct json_object *obj, void *payload)
{
	struct server *srv = payload;
	const char *name = st_json_get_str(st_json_get_obj(obj, "metadata"), "name");
	const char *phase = st_json_get_str(st_json_get_obj(obj, "status"), "phase");
	bool synced;

	pthread_mutex_lock(&srv->mu);
	if (type == ST_KUBE_EVENT_SYNCED)
		srv->restores_synced = true;
	synced = srv->restores_synced;
	pthread_mutex_unlock(&srv->mu);
	if (name == NULL || (type != ST_KUBE_EVENT_ADDED && type != ST_KUBE_EVENT_MODIFIED))
		return atomic_load(&srv->stop) ? 1 : 0;
	if (phase == NULL || phase[0] == '\0' || strcmp(phase, "New") == 0)
		enqueue(srv, JOB_RESTORE, name);
	else if (strcmp(phase, "InProgress") == 0 && !synced)
		enqueue(srv, JOB_RESTORE_ORPHAN, name);
	return atomic_load(&srv->stop) ? 1 : 0;
}

static void *restore_watch_thread(void *arg)
{
	struct server *srv = arg;

	watch_until_stopped(srv, &srv->restores, on_restore_event);
	return NULL;
}

/* ---- jobs ------------------------------------------------------------------------------- */

/* The BSL named name, or the default one (spec.default, else the one called "default"). */
static int find_bsl(struct json_object **out, struct server *srv, const char *name,
                    struct st_err *err)
{
	struct st_kube_list_options lo = ST_KUBE_LIST_OPTIONS_INIT;
	struct json_object *list = NULL;
	struct json_object *items;
	struct json_object *pick = NULL;
	size_t i, n;
	int rc;

	*out = NULL;
	if (name != NULL && name[0] != '\0')
		return st_kube_get(out, srv->c, &srv->bsls, srv->ns, name, NULL, err);
	if ((rc = st_kube_list(&list, srv->c, &srv->bsls, srv->ns, &lo, NULL, err)) < 0)
		return rc;
	items = st_json_get_arr(list, "items");
	n = items ? json_object_array_length(items) : 0;
	for (i = 0; i < n && pick == NULL; i++) {
		struct json_object *it = json_object_array_get_idx(items, i);

		if (st_json_get_bool(st_json_get_obj(it, "spec"), "default", false))
			pick = it;
	}
	for (i = 0; i < n && pick == NULL; i++) {
		struct json_object *it = json_object_array_get_idx(items, i);
		const char *nm = st_json_get_str(st_json_get_obj(it, "metadata"), "name");

		if (nm != NULL && strcmp(nm, "default") == 0)
			pick = it;
	}
	if (pick != NULL)
		*out = json_object_get(pick);
	json_object_put(list);
	if (pick == NULL)
		return st_err_set(err, ST_ENOTFOUND,
		                  "no default backup storage location in namespace %s (set "
		                  "spec.storageLocation or mark one with spec.default: true)",
		                  srv->ns);
	return 0;
}

/*
 * Writes status.progress of the Backup or Restore being run (srv->current),
 * at most once per PROGRESS_INTERVAL_MS; done_key names its items-done count.
 */
static void write_progress(struct server *srv, const struct st_kube_gvr *gvr, const char *noun,
                           const char *done_key, unsigned total, unsigned done)
{
	struct json_object *st, *prog;
	long long t = now_ms();

	if (t - srv->progress_ms < PROGRESS_INTERVAL_MS)
		return;
	srv->progress_ms = t;
	st = json_object_new_object();
	prog = json_object_new_object();
	json_object_object_add(prog, "totalItems", json_object_new_int((int)total));
	json_object_object_add(prog, done_key, json_object_new_int((int)done));
	json_object_object_add(st, "progress", prog);
	write_status(srv, gvr, noun, srv->current, st);
}

static void on_progress(unsigned total, unsigned done, void *payload)
{
	struct server *srv = payload;

	write_progress(srv, &srv->backups, "backup", "itemsBackedUp", total, done);
}

/*
 * Writes the defaults the Backup left out into its spec (storage location,
 * ttl), as Velero does, so that `get` and velero-backup.json show them.
 */
static void record_defaults(struct server *srv, struct json_object *backup, const char *bsl)
{
	struct json_object *spec = st_json_get_obj(backup, "spec");
	struct json_object *body, *bspec;
	struct st_err err = { 0 };
	const char *cur = st_json_get_str(spec, "storageLocation");
	const char *ttl = st_json_get_str(spec, "ttl");

	if (spec == NULL) {
		spec = json_object_new_object();
		json_object_object_add(backup, "spec", spec);
	}
	if (cur != NULL && cur[0] != '\0' && ttl != NULL && ttl[0] != '\0')
		return;
	body = json_object_new_object();
	bspec = json_object_new_object();
	if (cur == NULL || cur[0] == '\0') {
		st_json_add_str(bspec, "storageLocation", bsl);
		st_json_add_str(spec, "storageLocation", bsl);
	}
	if (ttl == NULL || ttl[0] == '\0') {
		st_json_add_str(bspec, "ttl", ST_BACKUP_DEFAULT_TTL);
		st_json_add_str(spec, "ttl", ST_BACKUP_DEFAULT_TTL);
	}
	json_object_object_add(body, "spec", bspec);
	if (patch(srv, &srv->backups, st_json_get_str(st_json_get_obj(backup, "metadata"), "name"),
	          NULL, body, &err) < 0)
		st_log_warn("backup %s: recording its defaults: %s", srv->ns, st_err_text(&err));
	json_object_put(body);
}

/* The InProgress status, written before the engine starts. */
static struct json_object *start_status(struct json_object *backup, long long now)
{
	struct json_object *st = json_object_new_object();
	const char *ttl_text = st_json_get_str(st_json_get_obj(backup, "spec"), "ttl");
	long long ttl = 0;
	char ts[32];

	if (ttl_text == NULL || st_backup_parse_duration(&ttl, ttl_text) < 0)
		ttl = 720LL * 3600; /* ST_BACKUP_DEFAULT_TTL; the engine reports a bad ttl */
	st_json_add_str(st, "phase", "InProgress");
	st_backup_format_time(ts, sizeof(ts), now);
	st_json_add_str(st, "startTimestamp", ts);
	st_backup_format_time(ts, sizeof(ts), now + ttl);
	st_json_add_str(st, "expiration", ts);
	st_json_add_str(st, "formatVersion", ST_BACKUP_FORMAT_VERSION);
	json_object_object_add(st, "version", json_object_new_int(1));
	return st;
}

static void run_engine(struct server *srv, const char *name, struct json_object *backup,
                       struct json_object *bsl, long long now)
{
	struct st_backup_options bo = ST_BACKUP_OPTIONS_INIT;
	struct st_volumes_config vol = srv->vol;
	struct st_backup_result res;
	struct st_bsl b;
	struct st_err err = { 0 };
	char reason[ST_ERR_MSG_SIZE + 64];
	struct json_object *st = NULL;

	st_bsl_init(&b);
	if (st_bsl_open(&b, srv->c, bsl, srv->credentials_file, &err) < 0) {
		(void)snprintf(reason, sizeof(reason), "storage location %s: %s",
		               st_json_get_str(st_json_get_obj(bsl, "metadata"), "name"),
		               st_err_text(&err));
		st_log_err("backup %s/%s: %s", srv->ns, name, reason);
		backup_status(srv, name, failed_status(reason, NULL));
		return;
	}
	bo.cancel = &srv->stop;
	bo.progress = on_progress;
	bo.payload = srv;
	bo.volumes = st_volumes_backup;
	vol.repo_store = b.repo; /* this location's, for this run only, as for a restore */
	bo.volumes_payload = &vol;
	bo.now = now;
	srv->current = name;
	srv->progress_ms = now_ms();
	if (st_backup_run(&res, srv->c, b.store, backup, &bo, &err) < 0) {
		backup_status(srv, name, failed_status(res.failure_reason, res.failure_reason));
	} else if (json_object_object_get_ex(backup, "status", &st)) {
		backup_status(srv, name, json_object_get(st));
		st_log_info("backup %s/%s: %s (%u objects, %u errors, %u warnings)", srv->ns, name,
		            res.phase, res.items_backed_up, res.errors, res.warnings);
	}
	srv->current = NULL;
	st_bsl_close(&b);
}

static void job_backup(struct server *srv, const char *name)
{
	struct json_object *backup = NULL;
	struct json_object *bsl = NULL;
	struct st_err err = { 0 };
	const char *phase;
	long long now = (long long)time(NULL);

	if (st_kube_get(&backup, srv->c, &srv->backups, srv->ns, name, NULL, &err) < 0)
		goto out; /* deleted meanwhile, or the API is down: the watch brings it back */
	phase = st_json_get_str(st_json_get_obj(backup, "status"), "phase");
	if ((phase != NULL && phase[0] != '\0' && strcmp(phase, "New") != 0) ||
	    delete_requested(backup))
		goto out;
	if (find_bsl(&bsl, srv, st_json_get_str(st_json_get_obj(backup, "spec"), "storageLocation"),
	             &err) < 0) {
		st_log_err("backup %s/%s: %s", srv->ns, name, st_err_text(&err));
		backup_status(srv, name, failed_status(st_err_text(&err), st_err_text(&err)));
		goto out;
	}
	record_defaults(srv, backup, st_json_get_str(st_json_get_obj(bsl, "metadata"), "name"));
	st_log_info("backup %s/%s: starting", srv->ns, name);
	backup_status(srv, name, start_status(backup, now));
	run_engine(srv, name, backup, bsl, now);
out:
	json_object_put(backup);
	json_object_put(bsl);
}

/*
 * A Backup or Restore still InProgress when the controller started was
 * interrupted: marks it Failed with reason. Returns whether it was.
 */
static bool mark_orphan(struct server *srv, const struct st_kube_gvr *gvr, const char *noun,
                        const char *name, const char *reason)
{
	struct json_object *obj = NULL;
	struct st_err err = { 0 };
	const char *phase;
	bool marked = false;

	if (st_kube_get(&obj, srv->c, gvr, srv->ns, name, NULL, &err) < 0)
		goto out;
	phase = st_json_get_str(st_json_get_obj(obj, "status"), "phase");
	if (phase == NULL || strcmp(phase, "InProgress") != 0)
		goto out;
	st_log_warn("%s %s/%s: %s; marking it Failed", noun, srv->ns, name, reason);
	write_status(srv, gvr, noun, name, failed_status(reason, NULL));
	marked = true;
out:
	json_object_put(obj);
	return marked;
}

static void job_orphan(struct server *srv, const char *name)
{
	struct st_err err = { 0 };

	if (!mark_orphan(srv, &srv->backups, "backup", name, ST_SERVER_RESTART_REASON))
		return;
	if (st_volumes_cleanup(srv->c, name, &err) < 0)
		st_log_warn("backup %s/%s: removing its temporary objects: %s", srv->ns, name,
		            st_err_text(&err));
}

/*
 * After a backup's objects are gone: forgets the repository snapshots of its
 * volumes and collects the data no other backup references.
 */
static void collect_repository_garbage(const struct server *srv, const struct st_bsl *b,
                                       const char *name)
{
	struct st_err err = { 0 };
	unsigned forgotten = 0;
	uint64_t freed = 0;

	if (srv->vol.repo_key_file == NULL)
		return;
	if (st_volumes_forget(b->repo, srv->vol.repo_key_file, name, &forgotten, &freed, &err) < 0)
		st_log_warn("backup %s/%s: pruning the volume repository: %s", srv->ns, name,
		            st_err_text(&err));
	else if (forgotten > 0)
		st_log_info("backup %s/%s: forgot %u volume snapshots, %llu bytes freed", srv->ns,
		            name, forgotten, (unsigned long long)freed);
}

static void job_delete(struct server *srv, const char *name)
{
	struct json_object *backup = NULL;
	struct json_object *bsl = NULL;
	struct json_object *st;
	struct st_bsl b;
	struct st_err err = { 0 };
	char reason[ST_ERR_MSG_SIZE + 64];
	unsigned count = 0;

	st_bsl_init(&b);
	if (st_kube_get(&backup, srv->c, &srv->backups, srv->ns, name, NULL, &err) < 0)
		goto out;
	st = json_object_new_object();
	st_json_add_str(st, "phase", "Deleting");
	backup_status(srv, name, st);
	if (find_bsl(&bsl, srv, st_json_get_str(st_json_get_obj(backup, "spec"), "storageLocation"),
	             &err) < 0 ||
	    st_bsl_open(&b, srv->c, bsl, srv->credentials_file, &err) < 0 ||
	    st_backup_delete_objects(&count, b.store, name, &err) < 0) {
		(void)snprintf(reason, sizeof(reason), "deleting the backup's objects: %s",
		               st_err_text(&err));
		st_log_err("backup %s/%s: %s", srv->ns, name, reason);
		st = json_object_new_object();
		st_json_add_str(st, "failureReason", reason);
		backup_status(srv, name, st);
		goto out;
	}
	st_err_clear(&err);
	if (st_kube_delete(NULL, srv->c, &srv->backups, srv->ns, name, NULL, NULL, &err) < 0 &&
	    err.code != ST_ENOTFOUND)
		st_log_err("backup %s/%s: deleting the object: %s", srv->ns, name,
		           st_err_text(&err));
	else
		st_log_info("backup %s/%s: deleted (%u objects removed from %s)", srv->ns, name,
		            count, b.url);
	collect_repository_garbage(srv, &b, name);
out:
	st_bsl_close(&b);
	json_object_put(backup);
	json_object_put(bsl);
}

/* What the volume phase of a restore needs. */
struct restore_fill {
	struct server *srv;
	const char *name;
	struct st_bsl *b;
};

static void on_restore_progress(unsigned total, unsigned done, void *payload)
{
	const struct restore_fill *f = payload;

	write_progress(f->srv, &f->srv->restores, "restore", "itemsRestored", total, done);
}

/*
 * The Backup a Restore names (spec.backupName, else the newest Completed one
 * of spec.scheduleName, recorded into the spec), which must have finished.
 */
static int restore_backup(struct json_object **out, struct server *srv, const char *name,
                          struct json_object *restore, struct st_err *err)
{
	struct json_object *spec = st_json_get_obj(restore, "spec");
	const char *bname = st_json_get_str(spec, "backupName");
	const char *sched = st_json_get_str(spec, "scheduleName");
	const char *phase;
	char buf[256];
	int rc;

	*out = NULL;
	if ((bname == NULL || bname[0] == '\0') && sched != NULL && sched[0] != '\0') {
		struct json_object *body = json_object_new_object();
		struct json_object *bspec = json_object_new_object();

		if ((rc = st_restore_schedule_backup(buf, sizeof(buf), srv->c, srv->ns, sched,
		                                     err)) < 0) {
			json_object_put(body);
			json_object_put(bspec);
			return rc;
		}
		st_json_add_str(bspec, "backupName", buf);
		json_object_object_add(body, "spec", bspec);
		if (patch(srv, &srv->restores, name, NULL, body, err) < 0)
			st_log_warn("restore %s/%s: recording its backup: %s", srv->ns, name,
			            st_err_text(err));
		st_err_clear(err);
		json_object_put(body);
		st_json_add_str(spec, "backupName", buf);
		bname = st_json_get_str(spec, "backupName");
	}
	if (bname == NULL || bname[0] == '\0')
		return st_err_set(err, ST_EINVAL, "spec.backupName or spec.scheduleName is needed");
	if ((rc = st_kube_get(out, srv->c, &srv->backups, srv->ns, bname, NULL, err)) < 0)
		return rc;
	phase = st_json_get_str(st_json_get_obj(*out, "status"), "phase");
	if (phase == NULL ||
	    (strcmp(phase, "Completed") != 0 && strcmp(phase, "PartiallyFailed") != 0)) {
		json_object_put(*out);
		*out = NULL;
		return st_err_set(err, ST_EINVAL,
		                  "backup %s is %s; only a Completed or PartiallyFailed backup can "
		                  "be restored",
		                  bname, phase != NULL && phase[0] != '\0' ? phase : "New");
	}
	return 0;
}

static void restore_volume_log(const char *level, const char *msg, void *payload)
{
	const struct restore_fill *f = payload;

	if (strcmp(level, "error") == 0)
		st_log_err("restore %s/%s: %s", f->srv->ns, f->name, msg);
	else if (strcmp(level, "warning") == 0)
		st_log_warn("restore %s/%s: %s", f->srv->ns, f->name, msg);
	else
		st_log_info("restore %s/%s: %s", f->srv->ns, f->name, msg);
}

static void restore_volume_status(struct json_object *st, void *payload)
{
	const struct restore_fill *f = payload;

	restore_status(f->srv, f->name, json_object_get(st));
}

/* Fills the claims a restore created, through restore movers (pkg/volumes.h). */
static int fill_restored_volumes(struct st_restore_volume *vols, size_t n,
                                 struct json_object *restore, void *payload)
{
	struct restore_fill *f = payload;
	struct st_volumes_config cfg = f->srv->vol;
	struct st_volumes_restore_item *items = st_xcalloc(n, sizeof(*items));
	const char *backup = st_json_get_str(st_json_get_obj(restore, "spec"), "backupName");
	struct st_err err = { 0 };
	size_t i;

	cfg.repo_store = f->b->repo;
	cfg.status = restore_volume_status;
	cfg.status_payload = f;
	for (i = 0; i < n; i++) {
		(void)snprintf(items[i].namespace, sizeof(items[i].namespace), "%s",
		               vols[i].namespace);
		(void)snprintf(items[i].pvc, sizeof(items[i].pvc), "%s", vols[i].name);
		(void)snprintf(items[i].source_namespace, sizeof(items[i].source_namespace), "%s",
		               vols[i].orig_namespace);
		(void)snprintf(items[i].source_pvc, sizeof(items[i].source_pvc), "%s",
		               vols[i].orig_name);
	}
	if (st_volumes_restore(items, n, &cfg, f->b->store, backup ? backup : "", f->name,
	                       restore_volume_log, f, &f->srv->stop, &err) < 0) {
		for (i = 0; i < n; i++) {
			items[i].ok = false;
			(void)snprintf(items[i].error, sizeof(items[i].error), "%s",
			               st_err_text(&err));
		}
	}
	for (i = 0; i < n; i++) {
		if (items[i].ok)
			continue;
		vols[i].failed = true;
		(void)snprintf(vols[i].reason, sizeof(vols[i].reason), "volume data: %s",
		               items[i].error);
	}
	free(items);
	return 0;
}

static void run_restore(struct server *srv, const char *name, struct json_object *restore,
                        struct st_bsl *b)
{
	struct restore_fill fill = { srv, name, b };
	struct st_store *s = b->store;
	struct st_restore_options ro = ST_RESTORE_OPTIONS_INIT;
	struct st_restore_result res;
	struct st_err err = { 0 };
	struct json_object *st = json_object_new_object();
	char ts[32];

	st_json_add_str(st, "phase", "InProgress");
	st_backup_format_time(ts, sizeof(ts), (long long)time(NULL));
	st_json_add_str(st, "startTimestamp", ts);
	restore_status(srv, name, st);
	ro.cancel = &srv->stop;
	ro.progress = on_restore_progress;
	ro.payload = &fill;
	ro.config_namespace = srv->ns;
	ro.fill_volumes = fill_restored_volumes;
	srv->current = name;
	srv->progress_ms = now_ms();
	if (st_restore_run(&res, srv->c, s, restore, &ro, &err) < 0) {
		restore_status(srv, name, failed_status(res.failure_reason, NULL));
	} else if (json_object_object_get_ex(restore, "status", &st)) {
		restore_status(srv, name, json_object_get(st));
		st_log_info("restore %s/%s: %s (%u of %u items, %u errors, %u warnings)", srv->ns,
		            name, res.phase, res.items_restored, res.total_items, res.errors,
		            res.warnings);
	}
	srv->current = NULL;
}

static void job_restore(struct server *srv, const char *name)
{
	struct json_object *restore = NULL, *backup = NULL, *bsl = NULL;
	struct st_err err = { 0 };
	struct st_bsl b;
	const char *phase;

	st_bsl_init(&b);
	if (st_kube_get(&restore, srv->c, &srv->restores, srv->ns, name, NULL, &err) < 0)
		goto out;
	phase = st_json_get_str(st_json_get_obj(restore, "status"), "phase");
	if (phase != NULL && phase[0] != '\0' && strcmp(phase, "New") != 0)
		goto out;
	if (restore_backup(&backup, srv, name, restore, &err) < 0 ||
	    find_bsl(&bsl, srv, st_json_get_str(st_json_get_obj(backup, "spec"), "storageLocation"),
	             &err) < 0 ||
	    st_bsl_open(&b, srv->c, bsl, srv->credentials_file, &err) < 0) {
		st_log_err("restore %s/%s: %s", srv->ns, name, st_err_text(&err));
		restore_status(srv, name, failed_status(st_err_text(&err), NULL));
		goto out;
	}
	st_log_info("restore %s/%s: starting", srv->ns, name);
	run_restore(srv, name, restore, &b);
out:
	st_bsl_close(&b);
	json_object_put(restore);
	json_object_put(backup);
	json_object_put(bsl);
}

static void job_restore_orphan(struct server *srv, const char *name)
{
	(void)mark_orphan(srv, &srv->restores, "restore", name,
	                  "controller restarted while the restore was in progress");
}

/*
 * Lists the Backups again and queues what still needs work: deletions that
 * failed (their location was down) and new Backups whose events were lost.
 */
static void resync(struct server *srv)
{
	struct st_kube_list_options lo = ST_KUBE_LIST_OPTIONS_INIT;
	struct json_object *list = NULL;
	struct json_object *items;
	struct st_err err = { 0 };
	size_t i, n;

	if (st_kube_list(&list, srv->c, &srv->backups, srv->ns, &lo, NULL, &err) < 0) {
		st_log_warn("listing backups: %s", st_err_text(&err));
		return;
	}
	items = st_json_get_arr(list, "items");
	n = items ? json_object_array_length(items) : 0;
	for (i = 0; i < n; i++) {
		struct json_object *it = json_object_array_get_idx(items, i);
		const char *name = st_json_get_str(st_json_get_obj(it, "metadata"), "name");
		const char *phase = st_json_get_str(st_json_get_obj(it, "status"), "phase");

		if (name == NULL)
			continue;
		if (delete_requested(it))
			enqueue(srv, JOB_DELETE, name);
		else if (phase == NULL || phase[0] == '\0' || strcmp(phase, "New") == 0)
			enqueue(srv, JOB_BACKUP, name);
	}
	json_object_put(list);
}

static void *worker_thread(void *arg)
{
	struct server *srv = arg;
	long long idle_since = now_ms();

	for (;;) {
		struct job j;
		bool due;

		pthread_mutex_lock(&srv->mu);
		while (srv->qlen == 0 && !atomic_load(&srv->stop) &&
		       now_ms() - idle_since < srv->bsl_period_s * 1000)
			timed_wait(srv, srv->bsl_period_s * 1000 - (now_ms() - idle_since));
		if (atomic_load(&srv->stop)) {
			pthread_mutex_unlock(&srv->mu);
			break;
		}
		due = srv->qlen == 0;
		if (!due) {
			j = srv->queue[0];
			memmove(srv->queue, srv->queue + 1, (srv->qlen - 1) * sizeof(*srv->queue));
			srv->qlen--;
		}
		pthread_mutex_unlock(&srv->mu);
		if (due) {
			/* Idle for a sync period: look for work the events did not bring. */
			resync(srv);
			idle_since = now_ms();
			continue;
		}
		if (j.kind == JOB_BACKUP)
			job_backup(srv, j.name);
		else if (j.kind == JOB_DELETE)
			job_delete(srv, j.name);
		else if (j.kind == JOB_RESTORE)
			job_restore(srv, j.name);
		else if (j.kind == JOB_RESTORE_ORPHAN)
			job_restore_orphan(srv, j.name);
		else
			job_orphan(srv, j.name);
		idle_since = now_ms();
	}
	return NULL;
}

/* ---- schedules and retention ------------------------------------------------------------ */

static void wake_scheduler(struct server *srv)
{
	pthread_mutex_lock(&srv->mu);
	srv->schedules_changed = true;
	pthread_cond_broadcast(&srv->cv);
	pthread_mutex_unlock(&srv->mu);
}

static int on_schedule_event(enum st_kube_event_type type, struct json_object *obj, void *payload)
{
	struct server *srv = payload;

	(void)obj;
	if (type != ST_KUBE_EVENT_BOOKMARK && type != ST_KUBE_EVENT_RELIST)
		wake_scheduler(srv);
	return atomic_load(&srv->stop) ? 1 : 0;
}

/* Only wakes schedule_thread: it lists the Schedules itself, so it never acts on a stale copy. */
static void *schedule_watch_thread(void *arg)
{
	struct server *srv = arg;

	watch_until_stopped(srv, &srv->schedules, on_schedule_event);
	return NULL;
}

/* Writes phase and validationErrors when they differ from what the Schedule shows. */
static void schedule_phase(struct server *srv, struct json_object *sched, const char *name,
                           const struct st_schedule_decision *d)
{
	struct json_object *status = st_json_get_obj(sched, "status");
	struct json_object *old = st_json_get_arr(status, "validationErrors");
	const char *phase = st_json_get_str(status, "phase");
	bool invalid = d->action == ST_SCHEDULE_INVALID;
	const char *want = invalid ? "FailedValidation" : "Enabled";
	struct json_object *body, *st;
	struct st_err err = { 0 };

	if (phase != NULL && strcmp(phase, want) == 0 &&
	    (invalid ? json_object_equal(old, d->errors)
	             : old == NULL || json_object_array_length(old) == 0))
		return;
	body = json_object_new_object();
	st = json_object_new_object();
	st_json_add_str(st, "phase", want);
	json_object_object_add(st, "validationErrors", invalid ? json_object_get(d->errors) : NULL);
	json_object_object_add(body, "status", st);
	if (patch(srv, &srv->schedules, name, "status", body, &err) < 0)
		st_log_err("schedule %s/%s: writing status: %s", srv->ns, name, st_err_text(&err));
	else if (invalid)
		st_log_warn("schedule %s/%s: FailedValidation: %s", srv->ns, name,
		            json_object_get_string(json_object_array_get_idx(d->errors, 0)));
	else
		st_log_info("schedule %s/%s: Enabled (%s)", srv->ns, name,
		            st_json_get_str(st_json_get_obj(sched, "spec"), "schedule"));
	json_object_put(body);
}

struct latest_slot {
	const char *schedule;
	long long slot;
};

static int latest_slot_item(struct json_object *item, void *payload)
{
	struct latest_slot *l = payload;
	long long t = st_schedule_backup_slot(item, l->schedule);

	if (t > l->slot)
		l->slot = t;
	return 0;
}

/* The newest slot among the Backups labelled with the schedule's name; -1 when none. */
static int latest_backup_slot(long long *out, struct server *srv, const char *name,
                              struct st_err *err)
{
	struct st_kube_list_options lo = ST_KUBE_LIST_OPTIONS_INIT;
	struct latest_slot l = { name, -1 };
	char sel[ST_SCHEDULE_NAME_MAX + 64];
	int rc;

	(void)snprintf(sel, sizeof(sel), "%s=%s", ST_SCHEDULE_LABEL, name);
	lo.label_selector = sel;
	rc = st_kube_list_items(NULL, srv->c, &srv->backups, srv->ns, &lo, latest_slot_item, &l,
	                        err);
	*out = l.slot;
	return rc;
}

/*
 * Creates the Backup of d's slot and records the slot in status.lastBackup.
 * A Backup of that name existing already (409) means the slot was served.
 */
static int create_scheduled(struct server *srv, const char *name,
                            const struct st_schedule_decision *d)
{
	struct json_object *out = NULL;
	struct json_object *body, *st;
	struct st_err err = { 0 };
	char slot[32], last[32];
	long http = 0;
	int rc;

	rc = st_kube_create(&out, srv->c, &srv->backups, srv->ns, d->backup, &http, &err);
	json_object_put(out);
	if (rc < 0 && http != 409) {
		st_log_err("schedule %s/%s: creating backup %s: %s", srv->ns, name, d->backup_name,
		           st_err_text(&err));
		return rc;
	}
	st_backup_format_time(slot, sizeof(slot), (long long)d->slot);
	st_backup_format_time(last, sizeof(last), (long long)d->last);
	if (rc < 0)
		st_log_info("schedule %s/%s: backup %s exists already", srv->ns, name,
		            d->backup_name);
	else if (d->skipped)
		st_log_info("schedule %s/%s: created backup %s; runs missed between %s and %s "
		            "were skipped, this one stands for the latest",
		            srv->ns, name, d->backup_name, last, slot);
	else
		st_log_info("schedule %s/%s: created backup %s", srv->ns, name, d->backup_name);
	st_err_clear(&err);
	body = json_object_new_object();
	st = json_object_new_object();
	st_json_add_str(st, "lastBackup", slot);
	json_object_object_add(body, "status", st);
	if (patch(srv, &srv->schedules, name, "status", body, &err) < 0)
		st_log_err("schedule %s/%s: writing lastBackup: %s", srv->ns, name,
		           st_err_text(&err));
	json_object_put(body);
	return 0;
}

/* Acts on one Schedule; returns when it wants to be looked at next (0: no need). */
static time_t reconcile_schedule(struct server *srv, struct json_object *sched, time_t now)
{
	const char *name = st_json_get_str(st_json_get_obj(sched, "metadata"), "name");
	struct st_schedule_decision d;
	struct st_err err = { 0 };
	long long latest = -1;
	time_t next = 0;

	st_schedule_decision_init(&d);
	if (name == NULL)
		goto out;
	if (st_schedule_decide(&d, sched, -1, (long long)now, &err) < 0) {
		st_log_err("schedule %s/%s: %s", srv->ns, name, st_err_text(&err));
		goto out;
	}
	schedule_phase(srv, sched, name, &d);
	/* Before creating, the Backups already made count too (a crash may have lost lastBackup).
	 */
	if (d.action == ST_SCHEDULE_CREATE &&
	    (latest_backup_slot(&latest, srv, name, &err) < 0 ||
	     st_schedule_decide(&d, sched, latest, (long long)now, &err) < 0 ||
	     (d.action == ST_SCHEDULE_CREATE && create_scheduled(srv, name, &d) < 0))) {
		if (err.code != 0)
			st_log_err("schedule %s/%s: %s", srv->ns, name, st_err_text(&err));
		next = now + WATCH_RETRY_S;
		goto out;
	}
	if (d.action == ST_SCHEDULE_WAIT || d.action == ST_SCHEDULE_CREATE)
		next = d.next;
out:
	st_schedule_decision_dispose(&d);
	return next;
}

/* One pass over the Schedules; returns the time of the next pass (ms). */
static long long run_schedules(struct server *srv)
{
	struct st_kube_list_options lo = ST_KUBE_LIST_OPTIONS_INIT;
	struct json_object *list = NULL;
	struct json_object *items;
	struct st_err err = { 0 };
	time_t now = time(NULL);
	time_t soonest = now + SCHEDULE_RECHECK_S;
	size_t i, n;

	if (st_kube_list(&list, srv->c, &srv->schedules, srv->ns, &lo, NULL, &err) < 0) {
		st_log_warn("listing schedules: %s", st_err_text(&err));
		return now_ms() + WATCH_RETRY_S * 1000LL;
	}
	items = st_json_get_arr(list, "items");
	n = items ? json_object_array_length(items) : 0;
	for (i = 0; i < n && !atomic_load(&srv->stop); i++) {
		time_t next = reconcile_schedule(srv, json_object_array_get_idx(items, i), now);

		if (next > 0 && next < soonest)
			soonest = next;
	}
	json_object_put(list);
	return (long long)soonest * 1000;
}

struct expiry {
	struct server *srv;
	long long now;
};

static int expire_item(struct json_object *item, void *payload)
{
	static const char body[] =
	        "{\"metadata\":{\"annotations\":{\"" ST_SERVER_DELETE_ANNOTATION "\":\"true\"}}}";
	struct expiry *e = payload;
	struct server *srv = e->srv;
	const char *name = st_json_get_str(st_json_get_obj(item, "metadata"), "name");
	struct json_object *out = NULL;
	struct st_err err = { 0 };

	if (name == NULL || !st_schedule_backup_expired(item, e->now))
		return atomic_load(&srv->stop) ? 1 : 0;
	if (st_kube_patch(&out, srv->c, &srv->backups, srv->ns, name, NULL, ST_KUBE_PATCH_MERGE,
	                  body, sizeof(body) - 1, NULL, &err) < 0)
		st_log_err("backup %s/%s: requesting its deletion: %s", srv->ns, name,
		           st_err_text(&err));
	else
		st_log_info("backup %s/%s: expired at %s; deleting it", srv->ns, name,
		            st_json_get_str(st_json_get_obj(item, "status"), "expiration"));
	json_object_put(out);
	return atomic_load(&srv->stop) ? 1 : 0;
}

/* Marks every expired Backup for deletion; the worker then deletes it as any other. */
static void expire_backups(struct server *srv)
{
	struct st_kube_list_options lo = ST_KUBE_LIST_OPTIONS_INIT;
	struct expiry e = { srv, (long long)time(NULL) };
	struct st_err err = { 0 };

	if (st_kube_list_items(NULL, srv->c, &srv->backups, srv->ns, &lo, expire_item, &e, &err) <
	    0)
		st_log_warn("looking for expired backups: %s", st_err_text(&err));
}

/*
 * Runs the Schedules at their next slot, when one of them changes and at
 * least every SCHEDULE_RECHECK_S, and the expiry sweep every --gc-period.
 */
static void *schedule_thread(void *arg)
{
	struct server *srv = arg;
	long long sched_due = 0, gc_due = 0;

	while (!atomic_load(&srv->stop)) {
		long long wake;
		bool changed;

		pthread_mutex_lock(&srv->mu);
		changed = srv->schedules_changed;
		srv->schedules_changed = false;
		pthread_mutex_unlock(&srv->mu);
		if (changed || now_ms() >= sched_due)
			sched_due = run_schedules(srv);
		if (now_ms() >= gc_due) {
			expire_backups(srv);
			gc_due = now_ms() + srv->gc_period_s * 1000;
		}
		wake = sched_due < gc_due ? sched_due : gc_due;
		pthread_mutex_lock(&srv->mu);
		while (!srv->schedules_changed && !atomic_load(&srv->stop) && now_ms() < wake)
			timed_wait(srv, wake - now_ms());
		pthread_mutex_unlock(&srv->mu);
	}
	return NULL;
}

/* ---- signals ---------------------------------------------------------------------------- */

struct sig_ctx {
	struct server *srv;
	sigset_t set;
};

static void *signal_thread(void *arg)
{
	struct sig_ctx *s = arg;
	int sig = 0;

	if (sigwait(&s->set, &sig) == 0 && !atomic_load(&s->srv->stop))
		st_log_info("received signal %d; shutting down", sig);
	request_stop(s->srv);
	return NULL;
}

/* ---- entry point ------------------------------------------------------------------------ */

struct server_opts {
	const char *ns;
	const char *kubeconfig;
	const char *context;
	const char *credentials_file;
	const char *lease_name;
	const char *identity;
	long long bsl_period_s;
	double qps;
	unsigned burst;
	struct st_volumes_config vol;
	const char *data_listen;
	const char *data_cert;
	const char *data_key;
	long long gc_period_s;
};

static int parse_number(double *out, const char *s, double min, double max)
{
	char *end = NULL;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return ST_EINVAL;
	*out = v;
	return 0;
}

enum {
	OPT_AGENT_CA = 1000,
	OPT_AGENT_CERT,
	OPT_AGENT_KEY,
	OPT_AGENT_NAME,
	OPT_FREEZE_DEADLINE,
	OPT_CUT_TIMEOUT,
	OPT_READY_TIMEOUT,
	OPT_DATA_LISTEN,
	OPT_DATA_ADDRESS,
	OPT_DATA_CERT,
	OPT_DATA_KEY,
	OPT_DATA_CA,
	OPT_REPO_KEY,
	OPT_MOVER_IMAGE,
	OPT_MOVER_COMMAND,
	OPT_MOVERS,
	OPT_MOVER_TIMEOUT,
};

/* A duration option in milliseconds (at least 1 ms). */
static int duration_ms(int64_t *out, const char *name, const char *text)
{
	long long ms = 0;

	if (st_duration_parse(&ms, text) < 0 || ms < 1) {
		fprintf(stderr, "stasis server: --%s: want a duration such as 500ms, 30s or 10m\n",
		        name);
		return EXIT_USAGE;
	}
	*out = (int64_t)ms;
	return 0;
}

static int volume_opt(struct server_opts *o, int c, const char *arg)
{
	struct st_volumes_config *v = &o->vol;
	double n = 0;

	switch (c) {
	case OPT_AGENT_CA:
		v->agent_ca_file = arg;
		return 0;
	case OPT_AGENT_CERT:
		v->agent_cert_file = arg;
		return 0;
	case OPT_AGENT_KEY:
		v->agent_key_file = arg;
		return 0;
	case OPT_AGENT_NAME:
		v->agent_server_name = arg;
		return 0;
	case OPT_FREEZE_DEADLINE:
		if (duration_ms(&v->freeze_deadline_s, "freeze-deadline", arg) != 0)
			return -1;
		v->freeze_deadline_s = (v->freeze_deadline_s + 999) / 1000;
		return 0;
	case OPT_CUT_TIMEOUT:
		return duration_ms(&v->cut_timeout_ms, "cut-timeout", arg) != 0 ? -1 : 0;
	case OPT_READY_TIMEOUT:
		return duration_ms(&v->ready_timeout_ms, "ready-timeout", arg) != 0 ? -1 : 0;
	case OPT_MOVER_TIMEOUT:
		return duration_ms(&v->mover_timeout_ms, "mover-timeout", arg) != 0 ? -1 : 0;
	case OPT_DATA_LISTEN:
		o->data_listen = arg;
		return 0;
	case OPT_DATA_ADDRESS:
		v->data_address = arg;
		return 0;
	case OPT_DATA_CERT:
		o->data_cert = arg;
		return 0;
	case OPT_DATA_KEY:
		o->data_key = arg;
		return 0;
	case OPT_DATA_CA:
		v->data_ca_file = arg;
		return 0;
	case OPT_REPO_KEY:
		v->repo_key_file = arg;
		return 0;
	case OPT_MOVER_IMAGE:
		v->mover_image = arg;
		return 0;
	case OPT_MOVER_COMMAND:
		v->mover_command = arg;
		return 0;
	case OPT_MOVERS:
		if (parse_number(&n, arg, 1, 256) < 0) {
			fprintf(stderr, "stasis server: --movers: want 1..256\n");
			return -1;
		}
		v->parallel = (unsigned)n;
		return 0;
	default:
		return -1;
	}
}

/* Starts the data door when --data-listen is given. */
static int start_data_door(struct server *srv, const struct server_opts *o, struct st_err *err)
{
	struct st_dataserver_options dso;
	char host[256];
	const char *colon;
	long port;

	srv->vol = o->vol;
	srv->vol.c = srv->c;
	srv->vol.status = on_volume_status;
	srv->vol.status_payload = srv;
	if (srv->vol.repo_key_file == NULL)
		srv->vol.repo_key_file = getenv("STASIS_REPO_KEY_FILE");
	if (o->data_listen == NULL)
		return 0;
	colon = strrchr(o->data_listen, ':');
	port = colon != NULL ? strtol(colon + 1, NULL, 10) : -1;
	if (colon == NULL || port < 0 || port > 65535 ||
	    (size_t)(colon - o->data_listen) >= sizeof(host))
		return st_err_set(err, ST_EINVAL, "--data-listen %s: want ADDRESS:PORT",
		                  o->data_listen);
	if (o->data_cert == NULL || o->data_key == NULL)
		return st_err_set(err, ST_EINVAL, "--data-listen needs --data-cert and --data-key");
	(void)snprintf(host, sizeof(host), "%.*s", (int)(colon - o->data_listen), o->data_listen);
	memset(&dso, 0, sizeof(dso));
	dso.listen_addr = host;
	dso.port = (uint16_t)port;
	dso.cert_file = o->data_cert;
	dso.key_file = o->data_key;
	if (st_dataserver_new(&srv->ds, &dso, err) < 0)
		return ST_EINVAL;
	srv->vol.ds = srv->ds;
	if (srv->vol.data_address == NULL) {
		(void)snprintf(srv->data_address, sizeof(srv->data_address), "%s:%u", host,
		               (unsigned)st_dataserver_port(srv->ds));
		srv->vol.data_address = srv->data_address;
	}
	st_log_info("stasis server: data door on %s:%u", host,
	            (unsigned)st_dataserver_port(srv->ds));
	return 0;
}

static int parse_opts(struct server_opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "namespace", required_argument, NULL, 'n' },
		{ "kubeconfig", required_argument, NULL, 'k' },
		{ "context", required_argument, NULL, 'x' },
		{ "credentials-file", required_argument, NULL, 'C' },
		{ "lease-name", required_argument, NULL, 'L' },
		{ "identity", required_argument, NULL, 'I' },
		{ "bsl-sync-period", required_argument, NULL, 'p' },
		{ "client-qps", required_argument, NULL, 'q' },
		{ "client-burst", required_argument, NULL, 'b' },
		{ "gc-period", required_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },
		{ "agent-ca", required_argument, NULL, OPT_AGENT_CA },
		{ "agent-cert", required_argument, NULL, OPT_AGENT_CERT },
		{ "agent-key", required_argument, NULL, OPT_AGENT_KEY },
		{ "agent-server-name", required_argument, NULL, OPT_AGENT_NAME },
		{ "freeze-deadline", required_argument, NULL, OPT_FREEZE_DEADLINE },
		{ "cut-timeout", required_argument, NULL, OPT_CUT_TIMEOUT },
		{ "ready-timeout", required_argument, NULL, OPT_READY_TIMEOUT },
		{ "data-listen", required_argument, NULL, OPT_DATA_LISTEN },
		{ "data-address", required_argument, NULL, OPT_DATA_ADDRESS },
		{ "data-cert", required_argument, NULL, OPT_DATA_CERT },
		{ "data-key", required_argument, NULL, OPT_DATA_KEY },
		{ "data-ca", required_argument, NULL, OPT_DATA_CA },
		{ "repo-key-file", required_argument, NULL, OPT_REPO_KEY },
		{ "mover-image", required_argument, NULL, OPT_MOVER_IMAGE },
		{ "mover-command", required_argument, NULL, OPT_MOVER_COMMAND },
		{ "movers", required_argument, NULL, OPT_MOVERS },
		{ "mover-timeout", required_argument, NULL, OPT_MOVER_TIMEOUT },
		{ NULL, 0, NULL, 0 },
	};
	double v = 0;
	int c;

	while ((c = getopt_long(argc, argv, ":n:h", longopts, NULL)) != -1) {
		if (c >= OPT_AGENT_CA) {
			if (volume_opt(o, c, optarg) < 0)
				return EXIT_USAGE;
			continue;
		}
		switch (c) {
		case 'n':
			o->ns = optarg;
			break;
		case 'k':
			o->kubeconfig = optarg;
			break;
		case 'x':
			o->context = optarg;
			break;
		case 'C':
			o->credentials_file = optarg;
			break;
		case 'L':
			o->lease_name = optarg;
			break;
		case 'I':
			o->identity = optarg;
			break;
		case 'p':
			if (st_backup_parse_duration(&o->bsl_period_s, optarg) < 0 ||
			    o->bsl_period_s < 1) {
				fprintf(stderr, "stasis server: --bsl-sync-period: want a duration "
				                "of at least 1s, e.g. 60s\n");
				return EXIT_USAGE;
			}
			break;
		case 'g':
			if (st_backup_parse_duration(&o->gc_period_s, optarg) < 0 ||
			    o->gc_period_s < 1) {
				fprintf(stderr, "stasis server: --gc-period: want a duration of at "
				                "least 1s, e.g. 1m\n");
				return EXIT_USAGE;
			}
			break;
		case 'q':
			if (parse_number(&o->qps, optarg, 0.1, 100000) < 0) {
				fprintf(stderr, "stasis server: --client-qps: want a number > 0\n");
				return EXIT_USAGE;
			}
			break;
		case 'b':
			if (parse_number(&v, optarg, 1, 100000) < 0) {
				fprintf(stderr, "stasis server: --client-burst: want 1..100000\n");
				return EXIT_USAGE;
			}
			o->burst = (unsigned)v;
			break;
		case 'h':
			fputs(st_server_usage, stdout);
			return 0;
		case ':':
			fprintf(stderr, "stasis server: option %s needs a value\n",
			        argv[optind - 1]);
			return EXIT_USAGE;
		default:
			fprintf(stderr,
			        "stasis server: unknown option %s\nRun 'stasis server --help'.\n",
			        argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "stasis server: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	return -1;
}

static int setup(struct server *srv, const struct server_opts *o, char *identity, size_t isize)
{
	struct st_kube_config_options ko = ST_KUBE_CONFIG_OPTIONS_INIT;
	struct st_kube_client_options co = ST_KUBE_CLIENT_OPTIONS_INIT;
	struct st_kube_config cfg;
	struct st_err err = { 0 };
	char host[128];
	int rc;

	st_kube_config_init(&cfg);
	ko.path = o->kubeconfig;
	ko.context = o->context;
	co.qps = o->qps;
	co.burst = o->burst;
	if ((rc = st_kube_config_load(&cfg, &ko, &err)) < 0 ||
	    (rc = st_kube_client_new(&srv->c, &cfg, &co, &err)) < 0) {
		st_log_err("stasis server: %s", st_err_text(&err));
		goto out;
	}
	if (o->identity == NULL) {
		if (gethostname(host, sizeof(host)) != 0)
			(void)snprintf(host, sizeof(host), "stasis");
		host[sizeof(host) - 1] = '\0';
		(void)snprintf(identity, isize, "%s_%ld", host, (long)getpid());
	} else {
		(void)snprintf(identity, isize, "%s", o->identity);
	}
	srv->ns = o->ns;
	srv->lease_name = o->lease_name;
	srv->identity = identity;
	srv->credentials_file = o->credentials_file;
	srv->bsl_period_s = o->bsl_period_s;
	if ((rc = start_data_door(srv, o, &err)) < 0) {
		st_log_err("stasis server: %s", st_err_text(&err));
		goto out;
	}
	srv->gc_period_s = o->gc_period_s;
	if ((rc = st_kube_gvr_set(&srv->backups, "stasis.io", "v1alpha1", "backups", "Backup",
	                          true)) < 0 ||
	    (rc = st_kube_gvr_set(&srv->bsls, "stasis.io", "v1alpha1", "backupstoragelocations",
	                          "BackupStorageLocation", true)) < 0 ||
	    (rc = st_kube_gvr_set(&srv->leases, "coordination.k8s.io", "v1", "leases", "Lease",
	                          true)) < 0 ||
	    (rc = st_kube_gvr_set(&srv->schedules, "stasis.io", "v1alpha1", "schedules", "Schedule",
	                          true)) < 0 ||
	    (rc = st_kube_gvr_set(&srv->restores, "stasis.io", "v1alpha1", "restores", "Restore",
	                          true)) < 0)
		goto out;
	rc = 0;
out:
	st_kube_config_dispose(&cfg);
	return rc;
}

/* Runs the threads while the Lease is held; returns when a stop was requested. */
static void serve(struct server *srv)
{
	pthread_t lease, bw, bslw, worker, sw, sched, rw;

	(void)pthread_create(&lease, NULL, lease_thread, srv);
	(void)pthread_create(&bw, NULL, backup_watch_thread, srv);
	(void)pthread_create(&bslw, NULL, bsl_thread, srv);
	(void)pthread_create(&rw, NULL, restore_watch_thread, srv);
	(void)pthread_create(&worker, NULL, worker_thread, srv);
	(void)pthread_create(&sw, NULL, schedule_watch_thread, srv);
	(void)pthread_create(&sched, NULL, schedule_thread, srv);
	pthread_mutex_lock(&srv->mu);
	while (!atomic_load(&srv->stop))
		pthread_cond_wait(&srv->cv, &srv->mu);
	pthread_mutex_unlock(&srv->mu);
	(void)pthread_join(worker, NULL);
	(void)pthread_join(sched, NULL);
	(void)pthread_join(sw, NULL);
	(void)pthread_join(bw, NULL);
	(void)pthread_join(bslw, NULL);
	(void)pthread_join(rw, NULL);
	(void)pthread_join(lease, NULL);
}

int st_server_main(int argc, char **argv)
{
	struct server_opts o;
	struct server srv;
	struct sig_ctx sc;
	pthread_t sigt;
	char identity[256];
	int rc;

	memset(&o, 0, sizeof(o));
	o.ns = "stasis";
	o.lease_name = "stasis-controller";
	o.bsl_period_s = 60;
	o.gc_period_s = 60;
	if ((rc = parse_opts(&o, argc, argv)) >= 0)
		return rc;
	memset(&srv, 0, sizeof(srv));
	pthread_mutex_init(&srv.mu, NULL);
	pthread_cond_init(&srv.cv, NULL);
	atomic_init(&srv.stop, false);
	atomic_init(&srv.lease_lost, false);
	sc.srv = &srv;
	sigemptyset(&sc.set);
	sigaddset(&sc.set, SIGTERM);
	sigaddset(&sc.set, SIGINT);
	/* Every thread inherits the mask; only signal_thread receives them. */
	pthread_sigmask(SIG_BLOCK, &sc.set, NULL);
	signal(SIGPIPE, SIG_IGN);
	rc = 1;
	if (setup(&srv, &o, identity, sizeof(identity)) < 0)
		goto out;
	(void)pthread_create(&sigt, NULL, signal_thread, &sc);
	st_log_info("stasis server: namespace %s, identity %s", srv.ns, srv.identity);
	if (acquire_lease(&srv)) {
		serve(&srv);
		if (!atomic_load(&srv.lease_lost))
			release_lease(&srv);
	}
	/* Wake the signal thread when the stop came from elsewhere (a lost Lease). */
	(void)pthread_kill(sigt, SIGTERM);
	(void)pthread_join(sigt, NULL);
	rc = atomic_load(&srv.lease_lost) ? 1 : 0;
	st_log_info("stasis server: stopped");
out:
	st_dataserver_free(srv.ds);
	st_kube_client_free(srv.c);
	json_object_put(srv.bsl_gens);
	free(srv.queue);
	pthread_cond_destroy(&srv.cv);
	pthread_mutex_destroy(&srv.mu);
	return rc;
}
