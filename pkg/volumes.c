#include "pkg/volumes.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "pkg/backup.h"
#include "pkg/bsl.h"
#include "pkg/csi.h"
#include "pkg/dataserver.h"
#include "pkg/kube.h"
#include "pkg/labels.h"
#include "pkg/quiesce.h"
#include "pkg/repo.h"
#include "pkg/store.h"
#include "pkg/util/buf.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

#define ANN_INJECTED     "stasis.io/injected"
#define ANN_AGENT_PORT   "stasis.io/agent-port"
#define ANN_VELERO_PRE   "pre.hook.backup.velero.io/command"
#define MOUNT_SOURCE     "/stasis/source"
#define MOUNT_SECRET     "/stasis/secret"
#define MOUNT_TARGET     "/stasis/target"
#define NAME_CAP         254
#define POLL_MS          200
#define CAP_CA_FILE      (64u * 1024u)
#define PROGRESS_MS      1000
#define DEFAULT_PARALLEL 4
#define CREATE_PARALLEL  16

enum vol_state {
	VOL_SKIPPED = 0, /* method none, unbound, or not selected */
	VOL_PENDING,     /* to be cut */
	VOL_CUT,         /* snapshot cut, waiting for a mover */
	VOL_MOVING,
	VOL_DONE,
	VOL_FAILED,
};

struct vol {
	char ns[NAME_CAP];
	char pvc[NAME_CAP];
	char storage_class[NAME_CAP];
	char size[64];
	char method[16];
	bool keep;
	bool selected; /* the claim itself matches the selector */
	bool used;     /* mounted by a selected pod */
	enum vol_state state;
	struct st_csi_snap snap; /* driver and class resolved before the freeze */
	bool snap_created;
	struct json_object *tolerations; /* of a pod mounting the claim; owned */
	/* The volume's spec.nodeAffinity.required (where it can be used); owned */
	struct json_object *node_affinity;
	char mover[NAME_CAP]; /* name of the mover pod, claim and Secret */
	char session[40];
	int64_t mover_started_ms;
	char snapshot_id[2 * ST_REPO_ID_LEN + 1];
	uint64_t bytes;
	uint64_t bytes_new;
	uint64_t moved;
	char error[512];
};

struct phase {
	const struct st_volumes_config *cfg;
	struct st_backup_hook *h; /* NULL for a restore */
	bool restore;
	st_volumes_log_cb log; /* a restore's log */
	void *log_payload;
	const atomic_bool *cancel; /* a restore's stop flag */
	struct st_kube_client *c;
	const char *backup;
	struct json_object *selector;
	struct vol *vols;
	size_t nvols;
	size_t cap;
	struct st_quiesce_target *targets;
	size_t ntargets;
	struct st_kube_gvr pods, pvcs, secrets, snaps;
	/* Read and opened once per phase, for every mover. */
	char *key; /* the repository key (st_read_secret_file) */
	size_t key_len;
	struct st_buf ca;     /* the data door CA */
	struct st_repo *repo; /* a backup's repository, where its movers' snapshots land */
	int64_t start_ms;
	int64_t progress_ms;
};

static void plog(struct phase *p, const char *level, const char *fmt, ...) ST_PRINTF(3, 4);

static void plog(struct phase *p, const char *level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (p->h != NULL)
		st_backup_hook_log(p->h, level, "%s", msg);
	else if (p->log != NULL)
		p->log(level, msg, p->log_payload);
	else if (strcmp(level, "error") == 0)
		st_log_err("%s", msg);
	else if (strcmp(level, "warning") == 0)
		st_log_warn("%s", msg);
	else
		st_log_info("%s", msg);
}

static bool cancelled(const struct phase *p)
{
	if (p->h != NULL)
		return st_backup_hook_cancelled(p->h);
	return p->cancel != NULL && atomic_load(p->cancel);
}

static double mono_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* RFC 3339 with milliseconds: "2026-01-02T03:04:05.678Z". */
static void format_ms(char *buf, size_t size, int64_t ms)
{
	char base[32];
	size_t n;

	st_backup_format_time(base, sizeof(base), (long long)(ms / 1000));
	n = strlen(base);
	if (n > 0 && base[n - 1] == 'Z')
		base[n - 1] = '\0';
	(void)snprintf(buf, size, "%s.%03dZ", base, (int)(ms % 1000));
}

static uint32_t fnv32(const char *a, const char *b)
{
	uint32_t h = 2166136261u;
	const char *p;

	for (p = a; *p != '\0'; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	h = (h ^ '/') * 16777619u;
	for (p = b; *p != '\0'; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return h;
}

static const char *meta_str(struct json_object *obj, const char *key)
{
	return st_json_get_str(st_json_get_obj(obj, "metadata"), key);
}

static const char *annotation(struct json_object *obj, const char *key)
{
	return st_json_get_str(st_json_get_obj(st_json_get_obj(obj, "metadata"), "annotations"),
	                       key);
}

static struct vol *find_vol(struct phase *p, const char *ns, const char *pvc)
{
	size_t i;

	for (i = 0; i < p->nvols; i++)
		if (strcmp(p->vols[i].ns, ns) == 0 && strcmp(p->vols[i].pvc, pvc) == 0)
			return &p->vols[i];
	return NULL;
}

/* ---- scope ------------------------------------------------------------------------------ */

static int on_pvc(struct json_object *pvc, void *payload)
{
	struct phase *p = payload;
	const char *ns = meta_str(pvc, "namespace");
	const char *name = meta_str(pvc, "name");
	struct json_object *spec = st_json_get_obj(pvc, "spec");
	const char *phase = st_json_get_str(st_json_get_obj(pvc, "status"), "phase");
	const char *method = annotation(pvc, ST_CSI_METHOD_ANN);
	const char *keep = annotation(pvc, ST_CSI_KEEP_ANN);
	const char *sc = st_json_get_str(spec, "storageClassName");
	const char *size = st_json_get_str(
	        st_json_get_obj(st_json_get_obj(spec, "resources"), "requests"), "storage");
	struct json_object *bspec = st_json_get_obj(st_backup_hook_backup(p->h), "spec");
	struct vol *v;

	if (ns == NULL || name == NULL || !st_backup_hook_namespace_in_scope(p->h, ns))
		return 0;
	if (p->nvols == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 16;
		p->vols = st_xrealloc(p->vols, p->cap * sizeof(*p->vols));
	}
	v = &p->vols[p->nvols++];
	memset(v, 0, sizeof(*v));
	(void)snprintf(v->ns, sizeof(v->ns), "%s", ns);
	(void)snprintf(v->pvc, sizeof(v->pvc), "%s", name);
	(void)snprintf(v->storage_class, sizeof(v->storage_class), "%s", sc ? sc : "");
	(void)snprintf(v->size, sizeof(v->size), "%s", size ? size : "");
	if (method == NULL)
		method = st_json_get_str(bspec, "volumeSnapshotMethod");
	(void)snprintf(v->method, sizeof(v->method), "%s",
	               method != NULL && method[0] != '\0' ? method : "csi");
	v->keep = (keep != NULL && strcmp(keep, "true") == 0) ||
	          st_json_get_bool(bspec, "keepVolumeSnapshots", false);
	v->selected = p->selector == NULL ||
	              st_labels_match(p->selector,
	                              st_json_get_obj(st_json_get_obj(pvc, "metadata"), "labels"));
	v->state = VOL_PENDING;
	if (phase == NULL || strcmp(phase, "Bound") != 0) {
		v->state = VOL_SKIPPED;
		(void)snprintf(v->error, sizeof(v->error), "claim is not bound");
	}
	return 0;
}

/* Volume names of pod that are claims this backup cuts, as a JSON array text. */
static char *agent_volumes(struct phase *p, struct json_object *pod, const char *ns)
{
	struct json_object *vols = st_json_get_arr(st_json_get_obj(pod, "spec"), "volumes");
	struct json_object *arr = json_object_new_array();
	size_t i, n = vols ? json_object_array_length(vols) : 0;
	char *text;

	for (i = 0; i < n; i++) {
		struct json_object *vo = json_object_array_get_idx(vols, i);
		const char *claim =
		        st_json_get_str(st_json_get_obj(vo, "persistentVolumeClaim"), "claimName");
		struct vol *v = claim ? find_vol(p, ns, claim) : NULL;

		if (v != NULL && v->state == VOL_PENDING && st_json_get_str(vo, "name") != NULL)
			json_object_array_add(arr,
			                      json_object_new_string(st_json_get_str(vo, "name")));
	}
	if (json_object_array_length(arr) == 0) {
		json_object_put(arr);
		return NULL;
	}
	text = st_xstrdup(st_json_to_string(arr, NULL));
	json_object_put(arr);
	return text;
}

static void add_target(struct phase *p, struct json_object *pod, const char *ns, const char *name)
{
	struct json_object *st = st_json_get_obj(pod, "status");
	const char *ip = st_json_get_str(st, "podIP");
	const char *port = annotation(pod, ANN_AGENT_PORT);
	struct st_quiesce_target *t;
	char *vols = agent_volumes(p, pod, ns);
	long pv;

	if (vols == NULL)
		return;
	if (ip == NULL || ip[0] == '\0') {
		plog(p, "warning",
		     "pod %s/%s has a stasis agent but no IP yet: its volumes are "
		     "cut without a freeze",
		     ns, name);
		free(vols);
		return;
	}
	pv = port != NULL ? strtol(port, NULL, 10) : 8443;
	if (pv <= 0 || pv > 65535)
		pv = 8443;
	if (p->ntargets == ST_QUIESCE_MAX_TARGETS) {
		free(vols);
		return;
	}
	p->targets = st_xrealloc(p->targets, (p->ntargets + 1) * sizeof(*p->targets));
	t = &p->targets[p->ntargets++];
	memset(t, 0, sizeof(*t));
	(void)snprintf(t->namespace, sizeof(t->namespace), "%s", ns);
	(void)snprintf(t->pod, sizeof(t->pod), "%s", name);
	(void)snprintf(t->addr, sizeof(t->addr), "%s", ip);
	t->port = (uint16_t)pv;
	t->volumes = vols;
	t->window_ms = -1;
}

static int on_pod(struct json_object *pod, void *payload)
{
	struct phase *p = payload;
	const char *ns = meta_str(pod, "namespace");
	const char *name = meta_str(pod, "name");
	const char *phase = st_json_get_str(st_json_get_obj(pod, "status"), "phase");
	struct json_object *vols = st_json_get_arr(st_json_get_obj(pod, "spec"), "volumes");
	size_t i, n = vols ? json_object_array_length(vols) : 0;
	bool mounts = false;

	if (ns == NULL || name == NULL || !st_backup_hook_namespace_in_scope(p->h, ns))
		return 0;
	if (p->selector != NULL &&
	    !st_labels_match(p->selector,
	                     st_json_get_obj(st_json_get_obj(pod, "metadata"), "labels")))
		return 0;
	for (i = 0; i < n; i++) {
		struct json_object *vo = json_object_array_get_idx(vols, i);
		const char *claim =
		        st_json_get_str(st_json_get_obj(vo, "persistentVolumeClaim"), "claimName");
		struct vol *v = claim ? find_vol(p, ns, claim) : NULL;

		if (v == NULL)
			continue;
		v->used = true;
		mounts = mounts || v->state == VOL_PENDING;
		if (v->tolerations == NULL &&
		    st_json_get_arr(st_json_get_obj(pod, "spec"), "tolerations") != NULL)
			v->tolerations = json_object_get(
			        st_json_get_arr(st_json_get_obj(pod, "spec"), "tolerations"));
	}
	if (!mounts || phase == NULL || strcmp(phase, "Running") != 0)
		return 0;
	if (annotation(pod, ANN_INJECTED) != NULL)
		add_target(p, pod, ns, name);
	else if (annotation(pod, ANN_VELERO_PRE) != NULL)
		plog(p, "warning",
		     "pod %s/%s has Velero hook annotations but no stasis agent: "
		     "its volumes are not quiesced",
		     ns, name);
	return 0;
}

static int gather(struct phase *p, struct st_err *err)
{
	struct st_kube_list_options lo = ST_KUBE_LIST_OPTIONS_INIT;
	size_t i, keep = 0;
	int rc;

	if ((rc = st_kube_list_items(NULL, p->c, &p->pvcs, NULL, &lo, on_pvc, p, err)) < 0)
		return rc;
	if ((rc = st_kube_list_items(NULL, p->c, &p->pods, NULL, &lo, on_pod, p, err)) < 0)
		return rc;
	for (i = 0; i < p->nvols; i++) {
		struct vol *v = &p->vols[i];

		if (!v->selected && !v->used) {
			json_object_put(v->tolerations);
			continue;
		}
		if (v->state == VOL_PENDING && strcmp(v->method, "none") == 0) {
			v->state = VOL_SKIPPED;
			(void)snprintf(v->error, sizeof(v->error), "snapshot method is none");
		} else if (v->state == VOL_PENDING && strcmp(v->method, "csi") != 0) {
			plog(p, "error",
			     "claim %s/%s: snapshot method \"%s\" is unknown (use csi "
			     "or none)",
			     v->ns, v->pvc, v->method);
			v->state = VOL_FAILED;
			(void)snprintf(v->error, sizeof(v->error), "unknown snapshot method \"%s\"",
			               v->method);
		} else if (v->state == VOL_SKIPPED) {
			plog(p, "info", "claim %s/%s: %s, no data backed up", v->ns, v->pvc,
			     v->error);
		}
		p->vols[keep++] = *v;
	}
	p->nvols = keep;
	return 0;
}

/* ---- status ----------------------------------------------------------------------------- */

static struct json_object *status_obj(struct phase *p)
{
	struct json_object *b = st_backup_hook_backup(p->h);
	struct json_object *st = st_json_get_obj(b, "status");

	if (st == NULL) {
		st = json_object_new_object();
		json_object_object_add(b, "status", st);
	}
	return st;
}

static void push_status(struct phase *p, struct json_object *patch)
{
	if (p->cfg->status != NULL)
		p->cfg->status(patch, p->cfg->status_payload);
	json_object_put(patch);
}

static struct json_object *windows_json(struct phase *p)
{
	struct json_object *arr = json_object_new_array();
	size_t i;

	for (i = 0; i < p->ntargets; i++) {
		const struct st_quiesce_target *t = &p->targets[i];
		struct json_object *w = json_object_new_object();
		char ts[40];
		double ms = t->window_ms;

		if (!t->frozen && t->frozen_at_ms == 0) {
			json_object_put(w);
			continue;
		}
		if (ms < 0 && t->thawed_at_ms > 0)
			ms = (double)(t->thawed_at_ms - t->frozen_at_ms);
		st_json_add_str(w, "namespace", t->namespace);
		st_json_add_str(w, "pod", t->pod);
		format_ms(ts, sizeof(ts), t->frozen_at_ms);
		st_json_add_str(w, "frozenAt", ts);
		if (t->thawed_at_ms > 0) {
			format_ms(ts, sizeof(ts), t->thawed_at_ms);
			st_json_add_str(w, "thawedAt", ts);
		}
		json_object_object_add(w, "durationMs", json_object_new_double(ms < 0 ? 0 : ms));
		if (t->error[0] != '\0')
			st_json_add_str(w, "error", t->error);
		json_object_array_add(arr, w);
	}
	return arr;
}

static const char *state_name(enum vol_state s)
{
	switch (s) {
	case VOL_SKIPPED:
		return "Skipped";
	case VOL_DONE:
		return "Completed";
	case VOL_FAILED:
		return "Failed";
	default:
		return "InProgress";
	}
}

static struct json_object *volume_json(const struct vol *v, bool manifest)
{
	struct json_object *o = json_object_new_object();

	st_json_add_str(o, "namespace", v->ns);
	st_json_add_str(o, "persistentVolumeClaim", v->pvc);
	st_json_add_str(o, "phase", state_name(v->state));
	st_json_add_str(o, "method", v->method);
	if (v->snapshot_id[0] != '\0')
		st_json_add_str(o, "repositorySnapshot", v->snapshot_id);
	json_object_object_add(o, "bytes", json_object_new_int64((int64_t)v->bytes));
	json_object_object_add(o, "bytesNew", json_object_new_int64((int64_t)v->bytes_new));
	if (v->snap_created && v->keep)
		st_json_add_str(o, "volumeSnapshot", v->snap.name);
	if (manifest) {
		st_json_add_str(o, "storageClass", v->storage_class);
		st_json_add_str(o, "size", v->size);
		if (v->snap.driver[0] != '\0')
			st_json_add_str(o, "driver", v->snap.driver);
		if (v->snap.cls[0] != '\0')
			st_json_add_str(o, "volumeSnapshotClass", v->snap.cls);
	}
	if (v->error[0] != '\0')
		st_json_add_str(o, "message", v->error);
	return o;
}

static struct json_object *progress_json(struct phase *p)
{
	struct json_object *o = json_object_new_object();
	uint64_t moved = 0;
	unsigned total = 0, done = 0;
	int64_t el = wall_ms() - p->start_ms;
	size_t i;

	for (i = 0; i < p->nvols; i++) {
		const struct vol *v = &p->vols[i];

		moved += v->moved;
		if (v->state == VOL_SKIPPED)
			continue;
		total++;
		if (v->state == VOL_DONE || v->state == VOL_FAILED)
			done++;
	}
	json_object_object_add(o, "totalVolumes", json_object_new_int((int)total));
	json_object_object_add(o, "volumesDone", json_object_new_int((int)done));
	json_object_object_add(o, "bytesTransferred", json_object_new_int64((int64_t)moved));
	json_object_object_add(
	        o, "bytesPerSecond",
	        json_object_new_int64(el > 0 ? (int64_t)(moved * 1000 / (uint64_t)el) : 0));
	return o;
}

/* Writes the volume fields into the Backup's status (final) and pushes them. */
static void record_status(struct phase *p)
{
	struct json_object *st = status_obj(p);
	struct json_object *vols = json_object_new_array();
	struct json_object *patch = json_object_new_object();
	unsigned attempted = 0, completed = 0;
	size_t i;

	for (i = 0; i < p->nvols; i++) {
		json_object_array_add(vols, volume_json(&p->vols[i], false));
		attempted += p->vols[i].snap_created;
		completed += p->vols[i].snap_created && p->vols[i].snap.created_ns > 0 &&
		             p->vols[i].snap.error[0] == '\0';
	}
	json_object_object_add(st, "freezeWindows", windows_json(p));
	json_object_object_add(st, "volumes", vols);
	json_object_object_add(st, "volumeProgress", progress_json(p));
	json_object_object_add(st, "csiVolumeSnapshotsAttempted",
	                       json_object_new_int((int)attempted));
	json_object_object_add(st, "csiVolumeSnapshotsCompleted",
	                       json_object_new_int((int)completed));
	json_object_object_add(patch, "freezeWindows",
	                       json_object_get(st_json_get(st, "freezeWindows")));
	json_object_object_add(patch, "volumes", json_object_get(st_json_get(st, "volumes")));
	json_object_object_add(patch, "volumeProgress",
	                       json_object_get(st_json_get(st, "volumeProgress")));
	push_status(p, patch);
}

/* ---- quiesce and cut -------------------------------------------------------------------- */

static void delete_snapshots(struct phase *p, bool all)
{
	struct st_err err = { 0 };
	size_t i;

	for (i = 0; i < p->nvols; i++) {
		struct vol *v = &p->vols[i];

		if (!v->snap_created || (!all && v->keep))
			continue;
		if (st_csi_delete(&v->snap, p->c, &err) < 0)
			plog(p, "warning", "deleting VolumeSnapshot %s/%s: %s", v->ns, v->snap.name,
			     st_err_text(&err));
	}
}

static void log_windows(struct phase *p)
{
	size_t i;

	for (i = 0; i < p->ntargets; i++) {
		const struct st_quiesce_target *t = &p->targets[i];

		if (t->frozen_at_ms == 0)
			continue;
		plog(p, t->error[0] ? "warning" : "info", "pod %s/%s frozen for %.1f ms%s%s",
		     t->namespace, t->pod,
		     t->window_ms >= 0 ? t->window_ms : (double)(t->thawed_at_ms - t->frozen_at_ms),
		     t->error[0] ? ": " : "", t->error);
	}
}

/* One API call sequence for one claim to cut, run in a thread of its own. */
struct claim_job {
	struct phase *p;
	struct vol *v;
	pthread_t thread;
	bool started;
	int rc;
	struct st_err err;
	bool class_looked_up; /* rc and err are then the class lookup's */
};

/* Runs fn on each job, CREATE_PARALLEL threads at a time (in line when none starts). */
static void run_claim_jobs(struct claim_job *jobs, size_t n, void *(*fn)(void *))
{
	size_t i, first;

	for (first = 0; first < n; first += CREATE_PARALLEL) {
		size_t end = first + CREATE_PARALLEL < n ? first + CREATE_PARALLEL : n;

		for (i = first; i < end; i++)
			jobs[i].started = pthread_create(&jobs[i].thread, NULL, fn, &jobs[i]) == 0;
		for (i = first; i < end; i++) {
			if (jobs[i].started)
				(void)pthread_join(jobs[i].thread, NULL);
			else
				(void)fn(&jobs[i]);
		}
	}
}

/* The jobs of the claims still to cut; *n receives how many. */
static struct claim_job *pending_jobs(struct phase *p, size_t *n)
{
	struct claim_job *jobs = st_xcalloc(p->nvols ? p->nvols : 1, sizeof(*jobs));

	*n = 0;
	for (size_t i = 0; i < p->nvols; i++) {
		if (p->vols[i].state != VOL_PENDING)
			continue;
		jobs[*n].p = p;
		jobs[*n].v = &p->vols[i];
		(*n)++;
	}
	return jobs;
}

/*
 * A claim's CSI driver, into its snapshot-to-be, and the node affinity its
 * mover needs: the volume's spec.nodeAffinity.required
 * (a zone, or the node of a local volume), where a volume restored from the
 * snapshot can be used. The volume is the one read for the driver; when the
 * driver came from a StorageClass there is none, and the mover is scheduled
 * like any pod.
 */
static void *resolve_one(void *arg)
{
	struct claim_job *j = arg;
	struct vol *v = j->v;
	struct json_object *pv = NULL, *req;

	j->rc = st_csi_driver_and_volume(v->snap.driver, sizeof(v->snap.driver), &pv, j->p->c,
	                                 v->ns, v->pvc, &j->err);
	req = st_json_get_obj(st_json_get_obj(st_json_get_obj(pv, "spec"), "nodeAffinity"),
	                      "required");
	if (j->rc >= 0 && st_json_get_arr(req, "nodeSelectorTerms") != NULL)
		v->node_affinity = json_object_get(req);
	json_object_put(pv);
	return NULL;
}

/*
 * Finds each claim's CSI driver, VolumeSnapshotClass and volume node affinity
 * before anything is frozen: these lookups (the claim, its volume, the
 * classes) do not depend on the freeze, so the window holds only the creates,
 * and a claim that cannot be snapshotted fails the phase while every pod
 * still runs.
 */
static int resolve_claims(struct phase *p, struct st_err *err)
{
	size_t i, n;
	struct claim_job *jobs = pending_jobs(p, &n);
	int rc = 0;

	run_claim_jobs(jobs, n, resolve_one);
	/* One list of the VolumeSnapshotClasses per driver, shared by its claims. */
	for (i = 0; i < n; i++) {
		struct claim_job *j = &jobs[i], *same = NULL;

		if (j->rc < 0)
			continue;
		for (size_t k = 0; k < i && same == NULL; k++)
			if (jobs[k].class_looked_up &&
			    strcmp(jobs[k].v->snap.driver, j->v->snap.driver) == 0)
				same = &jobs[k];
		j->class_looked_up = true;
		if (same == NULL) {
			j->rc = st_csi_pick_class(j->v->snap.cls, sizeof(j->v->snap.cls), p->c,
			                          j->v->snap.driver, &j->err);
			continue;
		}
		j->rc = same->rc;
		j->err = same->err;
		memcpy(j->v->snap.cls, same->v->snap.cls, sizeof(j->v->snap.cls));
	}
	for (i = 0; i < n; i++) {
		struct vol *v = jobs[i].v;

		if (jobs[i].rc >= 0)
			continue;
		v->state = VOL_FAILED;
		(void)snprintf(v->error, sizeof(v->error), "%s", st_err_text(&jobs[i].err));
		if (rc == 0)
			rc = st_err_set(err, jobs[i].rc, "claim %s/%s: %s (nothing was frozen)",
			                v->ns, v->pvc, st_err_text(&jobs[i].err));
	}
	free(jobs);
	return rc;
}

static void *create_one(void *arg)
{
	struct claim_job *j = arg;

	j->rc = st_csi_create(&j->v->snap, j->p->c, j->p->backup, &j->err);
	return NULL;
}

/*
 * Creates the VolumeSnapshots of every claim to cut, all at once (one thread
 * each, CREATE_PARALLEL at a time): the pods are frozen meanwhile. Each
 * claim's class was resolved before the freeze, so each is one create.
 */
static int create_snapshots(struct phase *p, struct st_err *err)
{
	size_t i, n;
	struct claim_job *jobs = pending_jobs(p, &n);
	int rc = 0;

	for (i = 0; i < n; i++) {
		struct vol *v = jobs[i].v;

		(void)snprintf(v->snap.namespace, sizeof(v->snap.namespace), "%s", v->ns);
		(void)snprintf(v->snap.pvc, sizeof(v->snap.pvc), "%s", v->pvc);
		(void)snprintf(v->snap.name, sizeof(v->snap.name), "%.200s-%08x", p->backup,
		               fnv32(v->ns, v->pvc));
		v->snap.restore_size = -1;
	}
	run_claim_jobs(jobs, n, create_one);
	for (i = 0; i < n; i++) {
		jobs[i].v->snap_created = jobs[i].rc == 0;
		if (jobs[i].rc < 0 && rc == 0)
			rc = st_err_set(err, jobs[i].rc, "claim %s/%s: %s", jobs[i].v->ns,
			                jobs[i].v->pvc, st_err_text(&jobs[i].err));
	}
	free(jobs);
	return rc;
}

/*
 * The snapshots of the claims in state s that have one, copied into an
 * array for pkg/csi.h's waits; scatter_snaps puts them back (same s).
 */
static size_t collect_snaps(struct phase *p, enum vol_state s, struct st_csi_snap **out)
{
	size_t i, n = 0;

	*out = st_xcalloc(p->nvols ? p->nvols : 1, sizeof(**out));
	for (i = 0; i < p->nvols; i++)
		if (p->vols[i].snap_created && p->vols[i].state == s)
			(*out)[n++] = p->vols[i].snap;
	return n;
}

static void scatter_snaps(struct phase *p, enum vol_state s, const struct st_csi_snap *snaps,
                          size_t n)
{
	size_t i, j = 0;

	for (i = 0; i < p->nvols && j < n; i++)
		if (p->vols[i].snap_created && p->vols[i].state == s)
			p->vols[i].snap = snaps[j++];
}

/* Freeze, cut, thaw. Everything frozen is thawed before this returns. */
static int quiesce_and_cut(struct phase *p, struct st_err *err)
{
	const struct st_volumes_config *cfg = p->cfg;
	struct st_quiesce_options qo;
	struct st_quiesce *q = NULL;
	struct st_csi_snap *snaps = NULL;
	struct st_err terr = { 0 };
	double t[5];
	size_t n, i;
	int rc = 0;

	memset(&qo, 0, sizeof(qo));
	qo.tls.ca_file = cfg->agent_ca_file;
	qo.tls.cert_file = cfg->agent_cert_file;
	qo.tls.key_file = cfg->agent_key_file;
	qo.tls.server_name = cfg->agent_server_name;
	qo.deadline_s = cfg->freeze_deadline_s > 0 ? cfg->freeze_deadline_s : 30;
	qo.timeout_ms = cfg->freeze_timeout_ms;
	if ((rc = resolve_claims(p, err)) < 0)
		return rc;
	t[0] = mono_ms();
	if (p->ntargets > 0) {
		if (cfg->agent_cert_file == NULL || cfg->agent_key_file == NULL)
			return st_err_set(err, ST_EINVAL,
			                  "%zu pods have stasis agents but the controller has no "
			                  "agent client certificate (--agent-cert, --agent-key)",
			                  p->ntargets);
		if ((rc = st_quiesce_new(&q, p->targets, p->ntargets, &qo, err)) < 0)
			return rc;
		if ((rc = st_quiesce_freeze(q, err)) < 0) {
			st_quiesce_free(q);
			return rc;
		}
	}
	t[1] = mono_ms();
	rc = create_snapshots(p, err);
	t[2] = mono_ms();
	if (rc == 0) {
		n = collect_snaps(p, VOL_PENDING, &snaps);
		rc = st_csi_wait_cut(snaps, n, p->c,
		                     cfg->cut_timeout_ms > 0 ? cfg->cut_timeout_ms : 10000, err);
		scatter_snaps(p, VOL_PENDING, snaps, n);
	}
	t[3] = mono_ms();
	if (q != NULL) {
		if (st_quiesce_thaw(q, &terr) < 0)
			plog(p, "error",
			     "thaw: %s (the agents' watchdogs thaw by "
			     "their deadline)",
			     st_err_text(&terr));
		st_quiesce_free(q);
	}
	t[4] = mono_ms();
	plog(p, "info",
	     "quiesce: %zu pods frozen in %.1f ms, VolumeSnapshots created in %.1f ms, cut "
	     "%.1f ms later, thawed in %.1f ms",
	     p->ntargets, t[1] - t[0], t[2] - t[1], t[3] - t[2], t[4] - t[3]);
	log_windows(p);
	free(snaps);
	if (rc < 0)
		return rc;
	for (i = 0; i < p->nvols; i++) {
		struct vol *v = &p->vols[i];

		if (!v->snap_created || v->state != VOL_PENDING)
			continue;
		if (v->snap.error[0] != '\0')
			return st_err_set(err, ST_EUPSTREAM, "VolumeSnapshot %s/%s: %s", v->ns,
			                  v->snap.name, v->snap.error);
		v->state = VOL_CUT;
	}
	return 0;
}

static void wait_ready(struct phase *p)
{
	const struct st_volumes_config *cfg = p->cfg;
	struct st_csi_snap *snaps = NULL;
	struct st_err err = { 0 };
	size_t i, n = collect_snaps(p, VOL_CUT, &snaps);

	if (n > 0 &&
	    st_csi_wait_ready(snaps, n, p->c,
	                      cfg->ready_timeout_ms > 0 ? cfg->ready_timeout_ms : 600000, &err) < 0)
		plog(p, "error", "%s", st_err_text(&err));
	scatter_snaps(p, VOL_CUT, snaps, n);
	for (i = 0; i < p->nvols; i++) {
		struct vol *v = &p->vols[i];

		if (v->state != VOL_CUT || v->snap.ready)
			continue;
		v->state = VOL_FAILED;
		(void)snprintf(v->error, sizeof(v->error),
		               "VolumeSnapshot %.200s never became ready%s%.250s", v->snap.name,
		               v->snap.error[0] ? ": " : "", v->snap.error);
		plog(p, "error", "claim %s/%s: %s", v->ns, v->pvc, v->error);
	}
	free(snaps);
}

/* ---- movers ----------------------------------------------------------------------------- */

static char *b64(const void *data, size_t n)
{
	char *out = st_xmalloc(4 * ((n + 2) / 3) + 1);

	(void)EVP_EncodeBlock((unsigned char *)out, data, (int)n);
	return out;
}

/*
 * The repository key, read as stasis-agent reads it (trailing CR and LF
 * dropped, no copies left behind), so the controller and its movers derive
 * the same key from one file.
 */
static int read_repo_key(char **key, size_t *len, const char *path, struct st_err *err)
{
	int rc;

	if (path == NULL)
		return st_err_set(err, ST_EINVAL, "the repository key file is not configured");
	if ((rc = st_read_secret_file(key, len, path, ST_REPO_KEY_MAX, err)) < 0)
		st_err_prefix(err, "the repository key file");
	return rc;
}

/* The phase's repository key, read on first use. */
static int phase_key(struct phase *p, struct st_err *err)
{
	if (p->key != NULL)
		return 0;
	return read_repo_key(&p->key, &p->key_len, p->cfg->repo_key_file, err);
}

/* The data door CA, PEM text for the movers' Secrets. */
static int read_ca_file(struct st_buf *b, const char *path, struct st_err *err)
{
	int rc;

	if (path == NULL)
		return st_err_set(err, ST_EINVAL, "the data door CA file is not configured");
	if ((rc = st_buf_read_file(b, path, err)) < 0)
		st_err_prefix(err, "the data door CA file");
	return rc;
}

static void add_b64(struct json_object *data, const char *key, const void *ptr, size_t len)
{
	char *t = b64(ptr != NULL ? ptr : "", len);

	st_json_add_str(data, key, t);
	explicit_bzero(t, strlen(t));
	free(t);
}

static struct json_object *temp_meta(struct phase *p, const struct vol *v)
{
	struct json_object *md = json_object_new_object();
	struct json_object *labels = json_object_new_object();

	st_json_add_str(md, "name", v->mover);
	st_json_add_str(md, "namespace", v->ns);
	st_json_add_str(labels, p->restore ? ST_VOLUMES_RESTORE_LABEL : ST_CSI_BACKUP_LABEL,
	                p->backup);
	st_json_add_str(labels, ST_VOLUMES_TEMP_LABEL, "true");
	st_json_add_str(labels, ST_VOLUMES_ROLE_LABEL, p->restore ? "restore-mover" : "mover");
	json_object_object_add(md, "labels", labels);
	return md;
}

/* The mover's Secret: the repository key, its data-door session token and the door's CA. */
static struct json_object *mover_secret(struct phase *p, const struct vol *v, const char *token)
{
	struct json_object *s = json_object_new_object();
	struct json_object *data = json_object_new_object();

	st_json_add_str(s, "apiVersion", "v1");
	st_json_add_str(s, "kind", "Secret");
	json_object_object_add(s, "metadata", temp_meta(p, v));
	st_json_add_str(s, "type", "Opaque");
	add_b64(data, "repo-key", p->key, p->key_len);
	add_b64(data, "token", token, strlen(token));
	add_b64(data, "ca.crt", p->ca.ptr, p->ca.len);
	json_object_object_add(s, "data", data);
	return s;
}

static struct json_object *mover_claim(struct phase *p, const struct vol *v)
{
	struct json_object *o = json_object_new_object();
	struct json_object *spec = json_object_new_object();
	struct json_object *modes = json_object_new_array();
	struct json_object *res = json_object_new_object();
	struct json_object *req = json_object_new_object();
	struct json_object *ds = json_object_new_object();
	char size[64];

	st_json_add_str(o, "apiVersion", "v1");
	st_json_add_str(o, "kind", "PersistentVolumeClaim");
	json_object_object_add(o, "metadata", temp_meta(p, v));
	if (v->storage_class[0] != '\0')
		st_json_add_str(spec, "storageClassName", v->storage_class);
	json_object_array_add(modes, json_object_new_string("ReadWriteOnce"));
	json_object_object_add(spec, "accessModes", modes);
	if (v->snap.restore_size > 0)
		(void)snprintf(size, sizeof(size), "%lld", (long long)v->snap.restore_size);
	else
		(void)snprintf(size, sizeof(size), "%s", v->size[0] ? v->size : "1Gi");
	st_json_add_str(req, "storage", size);
	json_object_object_add(res, "requests", req);
	json_object_object_add(spec, "resources", res);
	st_json_add_str(ds, "apiGroup", "snapshot.storage.k8s.io");
	st_json_add_str(ds, "kind", "VolumeSnapshot");
	st_json_add_str(ds, "name", v->snap.name);
	json_object_object_add(spec, "dataSource", ds);
	json_object_object_add(o, "spec", spec);
	return o;
}

static void add_env(struct json_object *env, const char *name, const char *value)
{
	struct json_object *e = json_object_new_object();

	st_json_add_str(e, "name", name);
	st_json_add_str(e, "value", value);
	json_object_array_add(env, e);
}

static void add_mount(struct json_object *mounts, const char *name, const char *path,
                      bool read_only)
{
	struct json_object *m = json_object_new_object();

	st_json_add_str(m, "name", name);
	st_json_add_str(m, "mountPath", path);
	json_object_object_add(m, "readOnly", json_object_new_boolean(read_only));
	json_object_array_add(mounts, m);
}

static struct json_object *mover_pod(struct phase *p, const struct vol *v)
{
	const struct st_volumes_config *cfg = p->cfg;
	struct json_object *o = json_object_new_object();
	struct json_object *spec = json_object_new_object();
	struct json_object *ctr = json_object_new_object();
	struct json_object *cmd = json_object_new_array();
	struct json_object *env = json_object_new_array();
	struct json_object *mounts = json_object_new_array();
	struct json_object *vols = json_object_new_array();
	struct json_object *src = json_object_new_object(), *pvc = json_object_new_object();
	struct json_object *sec = json_object_new_object(), *secv = json_object_new_object();
	struct json_object *ctrs = json_object_new_array();
	struct json_object *res = json_object_new_object(), *lim = json_object_new_object(),
	                   *req = json_object_new_object();
	char url[512], tag[600];
	const char *bargs[] = {
		"backup", MOUNT_SOURCE, "--repo", url, "--tag", tag, "--json", NULL
	};
	const char *rargs[] = { "restore", v->snapshot_id, "--target", MOUNT_TARGET, "--repo",
		                url,       "--json",       NULL };
	const char **args = p->restore ? rargs : bargs;
	size_t i;

	(void)snprintf(url, sizeof(url), "stasis+https://%s/v1/sessions/%s", cfg->data_address,
	               v->session);
	(void)snprintf(tag, sizeof(tag), "%s/%s/%s", p->backup, v->ns, v->pvc);
	st_json_add_str(o, "apiVersion", "v1");
	st_json_add_str(o, "kind", "Pod");
	json_object_object_add(o, "metadata", temp_meta(p, v));
	st_json_add_str(spec, "restartPolicy", "Never");
	st_json_add_str(ctr, "name", "mover");
	/* The mover's last words become the failure reason of its volume. */
	st_json_add_str(ctr, "terminationMessagePolicy", "FallbackToLogsOnError");
	st_json_add_str(ctr, "image", cfg->mover_image ? cfg->mover_image : "stasis/stasis-agent");
	json_object_array_add(cmd, json_object_new_string(cfg->mover_command ? cfg->mover_command
	                                                                     : "/stasis-agent"));
	for (i = 0; args[i] != NULL; i++)
		json_object_array_add(cmd, json_object_new_string(args[i]));
	json_object_object_add(ctr, "command", cmd);
	add_env(env, "STASIS_REPO_KEY_FILE", MOUNT_SECRET "/repo-key");
	add_env(env, "STASIS_DATA_TOKEN_FILE", MOUNT_SECRET "/token");
	add_env(env, "STASIS_DATA_CA", MOUNT_SECRET "/ca.crt");
	json_object_object_add(ctr, "env", env);
	add_mount(mounts, "source", p->restore ? MOUNT_TARGET : MOUNT_SOURCE, !p->restore);
	add_mount(mounts, "secret", MOUNT_SECRET, true);
	json_object_object_add(ctr, "volumeMounts", mounts);
	st_json_add_str(req, "cpu", "100m");
	st_json_add_str(req, "memory", "128Mi");
	st_json_add_str(lim, "memory", "512Mi");
	json_object_object_add(res, "requests", req);
	json_object_object_add(res, "limits", lim);
	json_object_object_add(ctr, "resources", res);
	json_object_array_add(ctrs, ctr);
	json_object_object_add(spec, "containers", ctrs);
	st_json_add_str(src, "name", "source");
	st_json_add_str(pvc, "claimName", p->restore ? v->pvc : v->mover);
	json_object_object_add(pvc, "readOnly", json_object_new_boolean(!p->restore));
	json_object_object_add(src, "persistentVolumeClaim", pvc);
	json_object_array_add(vols, src);
	st_json_add_str(sec, "name", "secret");
	st_json_add_str(secv, "secretName", v->mover);
	json_object_object_add(secv, "defaultMode", json_object_new_int(0400));
	json_object_object_add(sec, "secret", secv);
	json_object_array_add(vols, sec);
	json_object_object_add(spec, "volumes", vols);
	if (v->tolerations != NULL)
		json_object_object_add(spec, "tolerations", json_object_get(v->tolerations));
	if (v->node_affinity != NULL) {
		struct json_object *aff = json_object_new_object();
		struct json_object *na = json_object_new_object();

		json_object_object_add(na, "requiredDuringSchedulingIgnoredDuringExecution",
		                       json_object_get(v->node_affinity));
		json_object_object_add(aff, "nodeAffinity", na);
		json_object_object_add(spec, "affinity", aff);
	}
	json_object_object_add(o, "spec", spec);
	return o;
}

static int create_obj(struct phase *p, const struct st_kube_gvr *gvr, const char *ns,
                      struct json_object *obj, struct st_err *err)
{
	struct json_object *out = NULL;
	int rc = st_kube_create(&out, p->c, gvr, ns, obj, NULL, err);

	json_object_put(out);
	json_object_put(obj);
	return rc;
}

static void delete_obj(struct phase *p, const struct st_kube_gvr *gvr, const char *ns,
                       const char *name)
{
	struct json_object *out = NULL;
	struct st_err err = { 0 };
	long http = 0;

	if (st_kube_delete(&out, p->c, gvr, ns, name, "Background", &http, &err) < 0 && http != 404)
		plog(p, "warning", "deleting %s %s/%s: %s", gvr->kind, ns, name, st_err_text(&err));
	json_object_put(out);
}

static void mover_cleanup(struct phase *p, struct vol *v)
{
	if (v->mover[0] == '\0')
		return;
	delete_obj(p, &p->pods, v->ns, v->mover);
	if (!p->restore)
		delete_obj(p, &p->pvcs, v->ns, v->mover);
	delete_obj(p, &p->secrets, v->ns, v->mover);
	if (v->session[0] != '\0')
		st_dataserver_close(p->cfg->ds, v->session);
}

static void fail_vol(struct phase *p, struct vol *v, const char *what, const char *detail)
{
	v->state = VOL_FAILED;
	(void)snprintf(v->error, sizeof(v->error), "%s%s%s", what, what[0] && detail[0] ? ": " : "",
	               detail);
	plog(p, "error", "claim %s/%s: %s", v->ns, v->pvc, v->error);
}

static void start_mover(struct phase *p, struct vol *v)
{
	struct st_err err = { 0 };
	struct json_object *secret;
	char token[ST_DATASERVER_TOKEN_LEN + 1];

	(void)snprintf(v->mover, sizeof(v->mover), "%.40s-%08x-%s", p->backup, fnv32(v->ns, v->pvc),
	               p->restore ? "restore" : "mover");
	if (st_dataserver_open(p->cfg->ds, p->cfg->repo_store, p->restore, v->session, token,
	                       &err) < 0) {
		fail_vol(p, v, "opening a data session", st_err_text(&err));
		return;
	}
	secret = mover_secret(p, v, token);
	explicit_bzero(token, sizeof(token));
	if (create_obj(p, &p->secrets, v->ns, secret, &err) < 0 ||
	    (!p->restore && create_obj(p, &p->pvcs, v->ns, mover_claim(p, v), &err) < 0) ||
	    create_obj(p, &p->pods, v->ns, mover_pod(p, v), &err) < 0) {
		fail_vol(p, v, "starting the data mover", st_err_text(&err));
		mover_cleanup(p, v);
		return;
	}
	v->state = VOL_MOVING;
	v->mover_started_ms = wall_ms();
	plog(p, "info", "claim %s/%s: data mover %s started", v->ns, v->pvc, v->mover);
}

/*
 * Why a mover pod failed: the last line of its termination message that is
 * not a JSON progress record (the mover's error), else the kubelet's reason.
 */
static void terminated_reason(char *buf, size_t size, struct json_object *pod)
{
	struct json_object *cs =
	        st_json_get_arr(st_json_get_obj(pod, "status"), "containerStatuses");
	struct json_object *c0 = cs ? json_object_array_get_idx(cs, 0) : NULL;
	struct json_object *term = st_json_get_obj(st_json_get_obj(c0, "state"), "terminated");
	const char *m = st_json_get_str(term, "message");
	const char *end, *start;

	if (m != NULL) {
		end = m + strlen(m);
		while (end > m) {
			while (end > m && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
				end--;
			start = end;
			while (start > m && start[-1] != '\n')
				start--;
			if (end > start && *start != '{') {
				(void)snprintf(buf, size, "%.*s", (int)(end - start), start);
				return;
			}
			end = start;
		}
	}
	m = st_json_get_str(term, "reason");
	if (m == NULL)
		m = st_json_get_str(st_json_get_obj(pod, "status"), "message");
	(void)snprintf(buf, size, "%s", m != NULL ? m : "no reason given");
}

struct find_ctx {
	const char *tag;
	struct vol *v;
	int64_t best;
};

static int find_snapshot(const struct st_repo_snapshot *s, void *payload)
{
	struct find_ctx *f = payload;

	if (strcmp(s->tag, f->tag) != 0 || s->time < f->best ||
	    s->time < f->v->mover_started_ms / 1000 - 5)
		return 0;
	f->best = s->time;
	(void)snprintf(f->v->snapshot_id, sizeof(f->v->snapshot_id), "%s", s->id);
	f->v->bytes = s->bytes;
	f->v->bytes_new = s->bytes_new;
	return 0;
}

/* The repository snapshot the mover of v wrote (the newest with its tag). */
static int mover_result(struct phase *p, struct vol *v, struct st_err *err)
{
	char tag[600];
	struct find_ctx f = { tag, v, -1 };
	int rc;

	(void)snprintf(tag, sizeof(tag), "%s/%s/%s", p->backup, v->ns, v->pvc);
	if ((rc = st_repo_snapshot_foreach(p->repo, find_snapshot, &f, err)) < 0)
		return rc;
	if (v->snapshot_id[0] == '\0')
		return st_err_set(err, ST_ENOTFOUND,
		                  "the mover finished but the repository has no snapshot tagged %s",
		                  tag);
	return 0;
}

static void poll_mover(struct phase *p, struct vol *v)
{
	struct st_dataserver_stats ds;
	struct json_object *pod = NULL;
	struct st_err err = { 0 };
	const char *phase;
	int64_t limit = p->cfg->mover_timeout_ms > 0 ? p->cfg->mover_timeout_ms : 6LL * 3600 * 1000;

	if (st_dataserver_stats(&ds, p->cfg->ds, v->session) == 0)
		v->moved = p->restore ? ds.bytes_out : ds.bytes_in;
	if (st_kube_get(&pod, p->c, &p->pods, v->ns, v->mover, NULL, &err) < 0) {
		if (wall_ms() - v->mover_started_ms > limit)
			fail_vol(p, v, "data mover", st_err_text(&err));
		json_object_put(pod);
		goto done;
	}
	phase = st_json_get_str(st_json_get_obj(pod, "status"), "phase");
	if (phase != NULL && strcmp(phase, "Succeeded") == 0 && p->restore) {
		v->state = VOL_DONE;
		plog(p, "info",
		     "claim %s/%s: restored from repository snapshot %.12s (%llu bytes read)",
		     v->ns, v->pvc, v->snapshot_id, (unsigned long long)v->moved);
	} else if (phase != NULL && strcmp(phase, "Succeeded") == 0) {
		if (mover_result(p, v, &err) < 0) {
			fail_vol(p, v, "", st_err_text(&err));
		} else {
			v->state = VOL_DONE;
			plog(p, "info",
			     "claim %s/%s: %llu bytes in repository snapshot %.12s "
			     "(%llu new, %llu sent)",
			     v->ns, v->pvc, (unsigned long long)v->bytes, v->snapshot_id,
			     (unsigned long long)v->bytes_new, (unsigned long long)v->moved);
		}
	} else if (phase != NULL && strcmp(phase, "Failed") == 0) {
		char why[400];

		terminated_reason(why, sizeof(why), pod);
		fail_vol(p, v, "data mover failed", why);
	} else if (wall_ms() - v->mover_started_ms > limit) {
		fail_vol(p, v, "data mover did not finish in time", "");
	}
	json_object_put(pod);
done:
	if (v->state != VOL_MOVING)
		mover_cleanup(p, v);
}

/*
 * Reads what every mover Secret carries, once per phase; a backup has read
 * the key already to open its repository.
 */
static int read_mover_files(struct phase *p, struct st_err *err)
{
	int rc;

	if ((rc = phase_key(p, err)) < 0)
		return rc;
	return read_ca_file(&p->ca, p->cfg->data_ca_file, err);
}

static void move_data(struct phase *p)
{
	unsigned parallel = p->cfg->parallel ? p->cfg->parallel : DEFAULT_PARALLEL;
	struct st_err err = { 0 };
	size_t i;

	/* Without them no mover can start: each waiting volume fails with the reason. */
	if (read_mover_files(p, &err) < 0) {
		for (i = 0; i < p->nvols; i++)
			if (p->vols[i].state == VOL_CUT)
				fail_vol(p, &p->vols[i], "", st_err_text(&err));
		return;
	}
	for (;;) {
		unsigned running = 0;
		bool pending = false;

		for (i = 0; i < p->nvols; i++)
			if (p->vols[i].state == VOL_MOVING)
				poll_mover(p, &p->vols[i]);
		for (i = 0; i < p->nvols; i++)
			running += p->vols[i].state == VOL_MOVING;
		for (i = 0; i < p->nvols && running < parallel; i++) {
			if (p->vols[i].state != VOL_CUT)
				continue;
			if (cancelled(p)) {
				fail_vol(p, &p->vols[i], "the backup was stopped", "");
				continue;
			}
			start_mover(p, &p->vols[i]);
			running += p->vols[i].state == VOL_MOVING;
		}
		for (i = 0; i < p->nvols; i++)
			pending = pending || p->vols[i].state == VOL_CUT;
		if (running == 0 && !pending)
			break;
		if (wall_ms() - p->progress_ms >= PROGRESS_MS) {
			struct json_object *patch = json_object_new_object();

			p->progress_ms = wall_ms();
			json_object_object_add(patch, "volumeProgress", progress_json(p));
			push_status(p, patch);
		}
		(void)usleep(POLL_MS * 1000);
	}
}

/* ---- manifest and entry points ---------------------------------------------------------- */

static int write_manifest(struct phase *p, struct st_err *err)
{
	struct json_object *doc = json_object_new_object();
	struct json_object *arr = json_object_new_array();
	char key[600];
	const char *text;
	size_t len;
	size_t i;
	int rc;

	for (i = 0; i < p->nvols; i++)
		json_object_array_add(arr, volume_json(&p->vols[i], true));
	st_json_add_str(doc, "backup", p->backup);
	st_json_add_str(doc, "repository", ST_BSL_REPO_PREFIX);
	json_object_object_add(doc, "volumes", arr);
	json_object_object_add(doc, "freezeWindows", windows_json(p));
	text = st_json_to_string(doc, &len);
	(void)snprintf(key, sizeof(key), "backups/%s/%s-%s", p->backup, p->backup,
	               ST_VOLUMES_MANIFEST);
	rc = st_store_put_mem(st_backup_hook_store(p->h), key, text, len, false, err);
	json_object_put(doc);
	return rc;
}

/* Reads the repository key and opens the repository (created on first use) into p. */
static int open_repo(struct phase *p, struct st_err *err)
{
	struct st_store *s = p->cfg->repo_store;
	uint64_t size = 0;
	int rc;

	if (s == NULL)
		return st_err_set(err, ST_EINVAL,
		                  "the controller has no repository for volume data (is the "
		                  "storage location usable?)");
	if ((rc = phase_key(p, err)) < 0)
		return rc;
	rc = st_store_head(s, "config", &size, err);
	if (rc == ST_ENOTFOUND) {
		st_err_clear(err);
		if ((rc = st_repo_init(s, p->key, p->key_len, err)) < 0)
			return rc;
		plog(p, "info", "created the volume repository");
	} else if (rc < 0) {
		return rc;
	}
	return st_repo_open(&p->repo, s, p->key, p->key_len, err);
}

/* The resource types the phase and the cleanup touch. */
static int kube_types(struct st_kube_gvr *pods, struct st_kube_gvr *pvcs,
                      struct st_kube_gvr *secrets, struct st_kube_gvr *snaps, struct st_err *err)
{
	if (st_kube_gvr_set(pods, "", "v1", "pods", "Pod", true) < 0 ||
	    st_kube_gvr_set(pvcs, "", "v1", "persistentvolumeclaims", "PersistentVolumeClaim",
	                    true) < 0 ||
	    st_kube_gvr_set(secrets, "", "v1", "secrets", "Secret", true) < 0 ||
	    st_kube_gvr_set(snaps, "snapshot.storage.k8s.io", "v1", "volumesnapshots",
	                    "VolumeSnapshot", true) < 0)
		return st_err_set(err, ST_EINTERNAL, "resource types");
	return 0;
}

static int phase_init(struct phase *p, const struct st_volumes_config *cfg, struct st_err *err)
{
	memset(p, 0, sizeof(*p));
	p->cfg = cfg;
	p->c = cfg->c;
	p->start_ms = wall_ms();
	p->progress_ms = p->start_ms;
	st_buf_init(&p->ca, CAP_CA_FILE);
	return kube_types(&p->pods, &p->pvcs, &p->secrets, &p->snaps, err);
}

static void phase_dispose(struct phase *p)
{
	size_t i;

	for (i = 0; i < p->ntargets; i++)
		free(p->targets[i].volumes);
	free(p->targets);
	for (i = 0; i < p->nvols; i++) {
		json_object_put(p->vols[i].tolerations);
		json_object_put(p->vols[i].node_affinity);
	}
	free(p->vols);
	if (p->key != NULL)
		st_freezero(p->key, p->key_len + 1);
	st_buf_dispose(&p->ca);
	st_repo_free(p->repo);
}

int st_volumes_backup(struct st_backup_hook *h, void *payload, struct st_err *err)
{
	struct phase p;
	size_t i;
	unsigned todo = 0;
	int rc = 0;

	if ((rc = phase_init(&p, payload, err)) < 0)
		return rc;
	p.h = h;
	p.backup = st_backup_hook_name(h);
	p.selector = st_backup_hook_selector(h);
	if (st_json_get(st_json_get_obj(st_backup_hook_backup(h), "spec"), "snapshotVolumes") !=
	            NULL &&
	    !st_json_get_bool(st_json_get_obj(st_backup_hook_backup(h), "spec"), "snapshotVolumes",
	                      true)) {
		st_backup_hook_log(h, "info", "spec.snapshotVolumes is false: volume data skipped");
		return 0;
	}
	if ((rc = gather(&p, err)) < 0)
		goto out;
	for (i = 0; i < p.nvols; i++)
		todo += p.vols[i].state == VOL_PENDING;
	st_backup_hook_log(h, "info", "%zu claims in scope, %u to snapshot, %zu pods to freeze",
	                   p.nvols, todo, p.ntargets);
	if (todo == 0)
		goto out;
	if (p.cfg->ds == NULL || p.cfg->repo_key_file == NULL) {
		st_backup_hook_log(h, "warning",
		                   "%u claims in scope, but the controller has no data door or no "
		                   "repository key (stasis server --data-listen, --repo-key-file): "
		                   "their data is not backed up",
		                   todo);
		goto out;
	}
	if ((rc = open_repo(&p, err)) < 0)
		goto out;
	if ((rc = quiesce_and_cut(&p, err)) < 0) {
		record_status(&p);
		delete_snapshots(&p, true);
		goto out;
	}
	record_status(&p);
	wait_ready(&p);
	move_data(&p);
	rc = write_manifest(&p, err);
	delete_snapshots(&p, false);
	record_status(&p);
out:
	phase_dispose(&p);
	return rc;
}

/* ---- restore ---------------------------------------------------------------------------- */

#define CAP_MANIFEST (64u * 1024u * 1024u)

static struct json_object *manifest_entry(struct json_object *vols, const char *ns, const char *pvc)
{
	size_t i, n = vols ? json_object_array_length(vols) : 0;

	for (i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(vols, i);
		const char *ens = st_json_get_str(e, "namespace");
		const char *epvc = st_json_get_str(e, "persistentVolumeClaim");

		if (ens != NULL && epvc != NULL && strcmp(ens, ns) == 0 && strcmp(epvc, pvc) == 0)
			return e;
	}
	return NULL;
}

static int load_manifest(struct json_object **out, struct st_store *location, const char *backup,
                         struct st_err *err)
{
	char key[600];
	char *text = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	(void)snprintf(key, sizeof(key), "backups/%s/%s-%s", backup, backup, ST_VOLUMES_MANIFEST);
	rc = st_store_get_mem(&text, &len, location, key, CAP_MANIFEST, err);
	if (rc == ST_ENOTFOUND) {
		st_err_clear(err);
		*out = json_object_new_object(); /* a backup without volume data */
		return 0;
	}
	if (rc < 0)
		return rc;
	rc = st_json_parse(out, text, len, CAP_MANIFEST, key, err);
	free(text);
	return rc;
}

/* Drops the annotations the binder and provisioner wrote (pv.kubernetes.io/..., volume...). */
static void strip_binding_annotations(struct json_object *ann)
{
	char *keys[64];
	size_t n = 0, i;

	if (ann == NULL)
		return;
	json_object_object_foreach(ann, k, val)
	{
		(void)val;
		if (n < 64 &&
		    (strncmp(k, "pv.kubernetes.io/", 17) == 0 ||
		     strncmp(k, "volume.kubernetes.io/", 21) == 0 ||
		     strncmp(k, "volume.beta.kubernetes.io/storage-provisioner", 45) == 0))
			keys[n++] = st_xstrdup(k);
	}
	for (i = 0; i < n; i++) {
		json_object_object_del(ann, keys[i]);
		free(keys[i]);
	}
}

/* Waits until claim ns/name is gone (the API answers 404). */
static bool claim_gone(struct phase *p, const char *ns, const char *name)
{
	int i;

	for (i = 0; i < 300; i++) {
		struct json_object *o = NULL;
		struct st_err err = { 0 };
		long http = 0;
		int rc = st_kube_get(&o, p->c, &p->pvcs, ns, name, &http, &err);

		json_object_put(o);
		if (rc < 0 && http == 404)
			return true;
		(void)usleep(100 * 1000);
	}
	return false;
}

/*
 * A claim restored in place whose backup kept its VolumeSnapshot, still
 * there and ready: the claim is created again with the snapshot as its
 * dataSource (the storage clones it, no data moves). 0 when that does not
 * apply (the mover then restores it from the repository), 1 when done, -1
 * when the claim was deleted but could not be created again (v->error).
 */
static int from_kept_snapshot(struct phase *p, struct vol *v, struct json_object *entry,
                              const char *source_ns)
{
	const char *vs = st_json_get_str(entry, "volumeSnapshot");
	struct json_object *snap = NULL, *pvc = NULL, *out = NULL, *md, *spec, *ds;
	struct st_err err = { 0 };
	int ret = 0;

	if (vs == NULL || strcmp(source_ns, v->ns) != 0)
		return 0;
	if (st_kube_get(&snap, p->c, &p->snaps, v->ns, vs, NULL, &err) < 0 ||
	    !st_json_get_bool(st_json_get_obj(snap, "status"), "readyToUse", false) ||
	    st_kube_get(&pvc, p->c, &p->pvcs, v->ns, v->pvc, NULL, &err) < 0)
		goto out;
	md = st_json_get_obj(pvc, "metadata");
	spec = st_json_get_obj(pvc, "spec");
	if (md == NULL || spec == NULL)
		goto out;
	json_object_object_del(pvc, "status");
	json_object_object_del(md, "uid");
	json_object_object_del(md, "resourceVersion");
	json_object_object_del(md, "creationTimestamp");
	json_object_object_del(md, "managedFields");
	strip_binding_annotations(st_json_get_obj(md, "annotations"));
	json_object_object_del(spec, "volumeName");
	json_object_object_del(spec, "dataSourceRef");
	ds = json_object_new_object();
	st_json_add_str(ds, "apiGroup", "snapshot.storage.k8s.io");
	st_json_add_str(ds, "kind", "VolumeSnapshot");
	st_json_add_str(ds, "name", vs);
	json_object_object_add(spec, "dataSource", ds);
	delete_obj(p, &p->pvcs, v->ns, v->pvc);
	ret = -1;
	if (!claim_gone(p, v->ns, v->pvc)) {
		(void)snprintf(v->error, sizeof(v->error),
		               "the empty claim did not go away before it was created again from "
		               "VolumeSnapshot %.200s",
		               vs);
		goto out;
	}
	if (st_kube_create(&out, p->c, &p->pvcs, v->ns, pvc, NULL, &err) < 0) {
		(void)snprintf(v->error, sizeof(v->error),
		               "creating it from VolumeSnapshot %.200s: %s", vs, st_err_text(&err));
		goto out;
	}
	plog(p, "info", "claim %s/%s: created from the kept VolumeSnapshot %s", v->ns, v->pvc, vs);
	(void)snprintf(v->error, sizeof(v->error), "created from VolumeSnapshot %.200s", vs);
	ret = 1;
out:
	json_object_put(snap);
	json_object_put(pvc);
	json_object_put(out);
	return ret;
}

int st_volumes_restore(struct st_volumes_restore_item *items, size_t n,
                       const struct st_volumes_config *cfg, struct st_store *location,
                       const char *backup, const char *name, st_volumes_log_cb log,
                       void *log_payload, const atomic_bool *cancel, struct st_err *err)
{
	struct json_object *manifest = NULL, *vols;
	struct phase p;
	size_t i;
	unsigned todo = 0;
	int rc, kept;

	if ((rc = phase_init(&p, cfg, err)) < 0)
		return rc;
	p.restore = true;
	p.log = log;
	p.log_payload = log_payload;
	p.cancel = cancel;
	p.backup = name;
	if ((rc = load_manifest(&manifest, location, backup, err)) < 0)
		goto out;
	vols = st_json_get_arr(manifest, "volumes");
	p.vols = st_xcalloc(n ? n : 1, sizeof(*p.vols));
	p.nvols = p.cap = n;
	for (i = 0; i < n; i++) {
		struct vol *v = &p.vols[i];
		struct json_object *e =
		        manifest_entry(vols, items[i].source_namespace, items[i].source_pvc);
		const char *phase = st_json_get_str(e, "phase");
		const char *snap = st_json_get_str(e, "repositorySnapshot");

		(void)snprintf(v->ns, sizeof(v->ns), "%s", items[i].namespace);
		(void)snprintf(v->pvc, sizeof(v->pvc), "%s", items[i].pvc);
		(void)snprintf(v->method, sizeof(v->method), "%s", "mover");
		if (e == NULL || (phase != NULL && strcmp(phase, "Skipped") == 0)) {
			v->state = VOL_SKIPPED;
			(void)snprintf(v->error, sizeof(v->error), "%s",
			               "the backup holds no data for this claim");
		} else if (phase == NULL || strcmp(phase, "Completed") != 0 || snap == NULL) {
			v->state = VOL_FAILED;
			(void)snprintf(v->error, sizeof(v->error),
			               "its data was not stored by backup %.200s (%.64s)", backup,
			               phase ? phase : "no phase");
		} else if ((kept = from_kept_snapshot(&p, v, e, items[i].source_namespace)) != 0) {
			v->state = kept > 0 ? VOL_DONE : VOL_FAILED;
		} else {
			v->state = VOL_CUT;
			(void)snprintf(v->snapshot_id, sizeof(v->snapshot_id), "%s", snap);
			todo++;
		}
	}
	json_object_put(manifest);
	if (todo > 0 &&
	    (cfg->ds == NULL || cfg->repo_key_file == NULL || cfg->repo_store == NULL)) {
		rc = st_err_set(
		        err, ST_EINVAL,
		        "%u claims need their data, but the controller has no data door or no "
		        "repository key (stasis server --data-listen, --repo-key-file)",
		        todo);
		goto out;
	}
	if (todo > 0) {
		plog(&p, "info", "restoring the data of %u claims", todo);
		move_data(&p);
	}
	for (i = 0; i < n; i++) {
		const struct vol *v = &p.vols[i];

		items[i].ok = v->state == VOL_DONE || v->state == VOL_SKIPPED;
		items[i].bytes = v->moved;
		(void)snprintf(items[i].error, sizeof(items[i].error), "%s", v->error);
	}
	rc = 0;
out:
	phase_dispose(&p);
	return rc;
}

/* ---- deletion --------------------------------------------------------------------------- */

struct forget_ctx {
	char prefix[300];
	char (*ids)[2 * ST_REPO_ID_LEN + 1];
	size_t n;
};

static int forget_match(const struct st_repo_snapshot *s, void *payload)
{
	struct forget_ctx *f = payload;

	if (strncmp(s->tag, f->prefix, strlen(f->prefix)) != 0)
		return 0;
	f->ids = st_xrealloc(f->ids, (f->n + 1) * sizeof(*f->ids));
	(void)snprintf(f->ids[f->n++], sizeof(f->ids[0]), "%s", s->id);
	return 0;
}

int st_volumes_forget(struct st_store *repo_store, const char *repo_key_file, const char *backup,
                      unsigned *forgotten_out, uint64_t *freed_out, struct st_err *err)
{
	struct st_repo_gc_report gc;
	struct forget_ctx f;
	struct st_repo *r = NULL;
	char *key = NULL;
	size_t key_len = 0;
	uint64_t size = 0;
	size_t i;
	int rc;

	memset(&f, 0, sizeof(f));
	if (forgotten_out != NULL)
		*forgotten_out = 0;
	if (freed_out != NULL)
		*freed_out = 0;
	if (repo_store == NULL)
		return 0;
	rc = st_store_head(repo_store, "config", &size, err);
	if (rc == ST_ENOTFOUND) {
		st_err_clear(err);
		return 0;
	}
	if (rc < 0)
		return rc;
	if ((rc = read_repo_key(&key, &key_len, repo_key_file, err)) < 0)
		return rc;
	rc = st_repo_open(&r, repo_store, key, key_len, err);
	st_freezero(key, key_len + 1);
	if (rc < 0)
		return rc;
	(void)snprintf(f.prefix, sizeof(f.prefix), "%s/", backup);
	if ((rc = st_repo_snapshot_foreach(r, forget_match, &f, err)) < 0)
		goto out;
	for (i = 0; i < f.n; i++)
		if ((rc = st_repo_snapshot_delete(r, f.ids[i], err)) < 0)
			goto out;
	if (forgotten_out != NULL)
		*forgotten_out = (unsigned)f.n;
	memset(&gc, 0, sizeof(gc));
	if (f.n > 0 && (rc = st_repo_gc(&gc, r, 0, false, err)) < 0)
		goto out;
	if (freed_out != NULL)
		*freed_out = gc.bytes_freed;
	rc = 0;
out:
	free(f.ids);
	st_repo_free(r);
	return rc;
}

/* ---- cleanup after a restart ------------------------------------------------------------ */

struct cleanup_ctx {
	struct st_kube_client *c;
	const struct st_kube_gvr *gvr;
	unsigned failed;
};

static int cleanup_one(struct json_object *obj, void *payload)
{
	struct cleanup_ctx *x = payload;
	struct json_object *out = NULL;
	struct st_err err = { 0 };
	long http = 0;

	if (st_kube_delete(&out, x->c, x->gvr, meta_str(obj, "namespace"), meta_str(obj, "name"),
	                   "Background", &http, &err) < 0 &&
	    http != 404) {
		st_log_warn("cleanup: deleting %s %s/%s: %s", x->gvr->kind,
		            meta_str(obj, "namespace"), meta_str(obj, "name"), st_err_text(&err));
		x->failed++;
	}
	json_object_put(out);
	return 0;
}

int st_volumes_cleanup(struct st_kube_client *c, const char *backup, struct st_err *err)
{
	struct st_kube_list_options lo = ST_KUBE_LIST_OPTIONS_INIT;
	struct st_kube_gvr g[4];
	char sel[600];
	size_t i;
	int rc;

	if ((rc = kube_types(&g[0], &g[1], &g[2], &g[3], err)) < 0)
		return rc;
	for (i = 0; i < 4; i++) {
		struct cleanup_ctx x = { c, &g[i], 0 };

		if (i == 3)
			(void)snprintf(sel, sizeof(sel), "%s=%s", ST_CSI_BACKUP_LABEL, backup);
		else
			(void)snprintf(sel, sizeof(sel), "%s=%s,%s=true", ST_CSI_BACKUP_LABEL,
			               backup, ST_VOLUMES_TEMP_LABEL);
		lo.label_selector = sel;
		if ((rc = st_kube_list_items(NULL, c, &g[i], NULL, &lo, cleanup_one, &x, err)) < 0)
			return rc;
		if (x.failed > 0)
			return st_err_set(err, ST_EUPSTREAM, "%u %s could not be deleted", x.failed,
			                  g[i].resource);
	}
	return 0;
}
