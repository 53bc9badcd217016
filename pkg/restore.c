#include "pkg/restore.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "pkg/archive.h"
#include "pkg/backup.h"
#include "pkg/kube.h"
#include "pkg/labels.h"
#include "pkg/remap.h"
#include "pkg/runlog.h"
#include "pkg/schedule.h"
#include "pkg/store.h"
#include "pkg/util/buf.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

/* A tar entry name, a key, a group-qualified name. */
#define NAME_CAP 1024u
/* One object of the tarball. */
#define ITEM_CAP (16u << 20)

/*
 * Velero's default restore priorities: what others depend on first
 * (definitions, namespaces, storage, volumes, credentials and config), then
 * pods and replica sets, which controllers would otherwise recreate.
 */
static const char *const high_priorities[] = {
	"customresourcedefinitions.apiextensions.k8s.io",
	"namespaces",
	"storageclasses.storage.k8s.io",
	"volumesnapshotclasses.snapshot.storage.k8s.io",
	"volumesnapshotcontents.snapshot.storage.k8s.io",
	"volumesnapshots.snapshot.storage.k8s.io",
	"datauploads.velero.io",
	"persistentvolumes",
	"persistentvolumeclaims",
	"serviceaccounts",
	"secrets",
	"configmaps",
	"limitranges",
	"pods",
	"replicasets.apps",
	"clusterclasses.cluster.x-k8s.io",
	"endpoints",
	"services",
};
#define N_HIGH (sizeof(high_priorities) / sizeof(high_priorities[0]))
/* Cluster API objects reference everything else: they go last. */
static const char *const low_priorities[] = {
	"clusterbootstraps.run.tanzu.vmware.com",
	"clusters.cluster.x-k8s.io",
	"clusterresourcesets.addons.cluster.x-k8s.io",
};
#define N_LOW       (sizeof(low_priorities) / sizeof(low_priorities[0]))
#define RANK_MID    ((int)N_HIGH)
#define RANK_PVC    8
#define GR_CRD      "customresourcedefinitions.apiextensions.k8s.io"
#define GR_NS       "namespaces"
#define GR_PV       "persistentvolumes"
#define GR_PVC      "persistentvolumeclaims"
#define GR_SVC      "services"
#define GR_POD      "pods"
#define ANN_SNODE   "volume.kubernetes.io/selected-node"
#define PREF_SUFFIX "-preferredversion"
#define PREF_LEN    (sizeof(PREF_SUFFIX) - 1)

enum cluster_mode {
	CLUSTER_RELATED = 0,
	CLUSTER_ALL,
	CLUSTER_NONE,
};

/* One object read from the tarball. */
struct item {
	char *gr;      /* "deployments.apps" */
	char *version; /* "v1" */
	char *ns;      /* namespace in the backup; NULL for cluster-scoped */
	char *name;
	struct json_object *obj;
	bool preferred; /* from a <version>-preferredversion directory */
	bool in_scope;
};

struct engine {
	struct st_kube_client *c;
	struct st_store *s;
	struct json_object *restore; /* borrowed; status filled in at the end */
	const struct st_restore_options *opts;
	const char *name;
	const char *rns; /* the Restore's namespace */
	const char *backup;
	struct json_object *spec;
	struct json_object *incl_ns, *excl_ns; /* borrowed arrays, may be NULL */
	struct json_object *incl_res;          /* set of group-qualified names; NULL: all */
	struct json_object *excl_res;          /* set, never NULL */
	struct json_object *selector;          /* borrowed LabelSelector, may be NULL */
	enum cluster_mode cluster;
	bool update;
	bool preserve_node_ports;
	struct st_remap *remap;
	struct item *items;
	size_t nitems, cap_items;
	struct item **order; /* the in-scope items, in restore order */
	size_t norder;
	struct json_object *owners;     /* set "ns/Kind/name" of every object in the backup */
	struct json_object *ns_done;    /* set of target namespaces created or found */
	struct json_object *pv_done;    /* set of PV names created by this restore */
	struct json_object *vol_failed; /* "ns/claim" -> reason */
	struct st_restore_volume *vols; /* their pvc: the created claims, owned */
	size_t nvols, cap_vols;
	bool volumes_filled;
	bool crd_created;
	struct json_object *results; /* {"errors": {...}, "warnings": {...}} */
	struct st_runlog log;        /* with the counts of errors and warnings */
	unsigned total, done;
	long long now;
	bool cancelled;
	char fatal[ST_ERR_MSG_SIZE];
};

/* ---- pure pieces ------------------------------------------------------------------------- */

int st_restore_priority(const char *gr)
{
	size_t i;

	for (i = 0; i < N_HIGH; i++)
		if (strcmp(gr, high_priorities[i]) == 0)
			return (int)i;
	for (i = 0; i < N_LOW; i++)
		if (strcmp(gr, low_priorities[i]) == 0)
			return RANK_MID + 1 + (int)i;
	return RANK_MID;
}

int st_restore_compare(const char *gr_a, const char *gr_b)
{
	int a = st_restore_priority(gr_a), b = st_restore_priority(gr_b);

	if (a != b)
		return a < b ? -1 : 1;
	return strcmp(gr_a, gr_b);
}

/* json_object_object_del asserts on a non-object: absent parts are common here. */
static void del_key(struct json_object *o, const char *key)
{
	if (o != NULL && json_object_is_type(o, json_type_object))
		json_object_object_del(o, key);
}

static void del_keys(struct json_object *o, const char *const *keys)
{
	size_t i;

	if (o == NULL || !json_object_is_type(o, json_type_object))
		return;
	for (i = 0; keys[i] != NULL; i++)
		json_object_object_del(o, keys[i]);
}

static void strip_service(struct json_object *spec, bool preserve_node_ports)
{
	static const char *const ips[] = { "clusterIP", "clusterIPs", NULL };
	struct json_object *ports = st_json_get_arr(spec, "ports");
	const char *ip = st_json_get_str(spec, "clusterIP");
	size_t i;

	if (ip == NULL || strcmp(ip, "None") != 0)
		del_keys(spec, ips);
	if (preserve_node_ports)
		return;
	del_key(spec, "healthCheckNodePort");
	for (i = 0; ports != NULL && i < json_object_array_length(ports); i++)
		del_key(json_object_array_get_idx(ports, i), "nodePort");
}

/* Removes from arr (an array of objects) every element whose "name" starts with prefix. */
static void drop_named(struct json_object *arr, const char *prefix)
{
	size_t i, n = prefix[0] != '\0' && arr != NULL ? json_object_array_length(arr) : 0;

	for (i = n; i > 0; i--) {
		const char *name = st_json_get_str(json_object_array_get_idx(arr, i - 1), "name");

		if (name != NULL && strncmp(name, prefix, strlen(prefix)) == 0)
			(void)json_object_array_del_idx(arr, i - 1, 1);
	}
}

/*
 * A Pod's node, its priority (the admission plugin derives it from
 * priorityClassName and refuses a pod that carries both) and the projected
 * service-account token volume the admission plugin adds again.
 */
static void strip_pod(struct json_object *spec)
{
	struct json_object *kinds[] = { st_json_get_arr(spec, "containers"),
		                        st_json_get_arr(spec, "initContainers") };
	size_t i, j;

	del_key(spec, "nodeName");
	del_key(spec, "priority");
	drop_named(st_json_get_arr(spec, "volumes"), "kube-api-access-");
	for (i = 0; i < 2; i++)
		for (j = 0; kinds[i] != NULL && j < json_object_array_length(kinds[i]); j++)
			drop_named(st_json_get_arr(json_object_array_get_idx(kinds[i], j),
			                           "volumeMounts"),
			           "kube-api-access-");
}

/* The selector and labels the API generates for a Job, which it refuses to be given. */
static void strip_job(struct json_object *spec)
{
	static const char *const labels[] = { "controller-uid",
		                              "batch.kubernetes.io/controller-uid", NULL };
	struct json_object *tm = st_json_get_obj(st_json_get_obj(spec, "template"), "metadata");

	if (st_json_get_bool(spec, "manualSelector", false))
		return;
	del_key(spec, "selector");
	del_keys(st_json_get_obj(tm, "labels"), labels);
}

/* The token Secrets the cluster generated for a ServiceAccount ("<name>-token-..."). */
static void strip_service_account(struct json_object *obj)
{
	const char *name = st_json_get_str(st_json_get_obj(obj, "metadata"), "name");
	char prefix[320];

	if (name == NULL)
		return;
	(void)snprintf(prefix, sizeof(prefix), "%s-token-", name);
	drop_named(st_json_get_arr(obj, "secrets"), prefix);
}

bool st_restore_restorable(const char *gr)
{
	static const char *const never[] = {
		"nodes",
		"events",
		"events.events.k8s.io",
		"csinodes.storage.k8s.io",
		"volumeattachments.storage.k8s.io",
		"backups.velero.io",
		"restores.velero.io",
		"resticrepositories.velero.io",
		"backuprepositories.velero.io",
		"backups.stasis.io",
		"restores.stasis.io",
		NULL,
	};
	size_t i;

	for (i = 0; never[i] != NULL; i++)
		if (strcmp(gr, never[i]) == 0)
			return false;
	return true;
}

void st_restore_strip(struct json_object *obj, const char *gr, bool preserve_node_ports)
{
	static const char *const meta_keys[] = {
		"uid",
		"resourceVersion",
		"creationTimestamp",
		"managedFields",
		"generation",
		"selfLink",
		"deletionTimestamp",
		"deletionGracePeriodSeconds",
		"ownerReferences",
		NULL,
	};
	static const char *const claim_keys[] = { "uid", "resourceVersion", NULL };
	struct json_object *meta = st_json_get_obj(obj, "metadata");
	struct json_object *spec = st_json_get_obj(obj, "spec");

	del_keys(meta, meta_keys);
	del_key(obj, "status");
	if (strcmp(gr, GR_SVC) == 0 && spec != NULL)
		strip_service(spec, preserve_node_ports);
	else if (strcmp(gr, GR_POD) == 0 && spec != NULL)
		strip_pod(spec);
	else if (strcmp(gr, "jobs.batch") == 0 && spec != NULL)
		strip_job(spec);
	else if (strcmp(gr, "serviceaccounts") == 0)
		strip_service_account(obj);
	else if (strcmp(gr, GR_PV) == 0)
		del_keys(st_json_get_obj(spec, "claimRef"), claim_keys);
	else if (strcmp(gr, GR_PVC) == 0)
		del_key(st_json_get_obj(meta, "annotations"), ANN_SNODE);
}

void st_restore_unbind_claim(struct json_object *pvc)
{
	static const char *const anns[] = { "pv.kubernetes.io/bind-completed",
		                            "pv.kubernetes.io/bound-by-controller", NULL };

	del_key(st_json_get_obj(pvc, "spec"), "volumeName");
	del_keys(st_json_get_obj(st_json_get_obj(pvc, "metadata"), "annotations"), anns);
}

bool st_restore_controller_owner(char *kind, size_t kind_size, char *name, size_t name_size,
                                 struct json_object *obj)
{
	struct json_object *refs =
	        st_json_get_arr(st_json_get_obj(obj, "metadata"), "ownerReferences");
	size_t i;

	for (i = 0; refs != NULL && i < json_object_array_length(refs); i++) {
		struct json_object *r = json_object_array_get_idx(refs, i);
		const char *k = st_json_get_str(r, "kind");
		const char *n = st_json_get_str(r, "name");

		if (!st_json_get_bool(r, "controller", false) || k == NULL || n == NULL)
			continue;
		(void)snprintf(kind, kind_size, "%s", k);
		(void)snprintf(name, name_size, "%s", n);
		return true;
	}
	return false;
}

int st_restore_map_object(struct json_object *obj, const struct st_remap *m, struct st_err *err)
{
	/* pkg/remap rewrites the claimRef too, once: applying it again would chain rules. */
	return st_remap_object(m, obj, NULL, err);
}

/* True when every field of want is in have with the same value (arrays: same length). */
static bool subset(struct json_object *want, struct json_object *have)
{
	size_t i, n;

	if (want == NULL || have == NULL)
		return want == have;
	if (json_object_get_type(want) != json_object_get_type(have))
		return false;
	if (json_object_is_type(want, json_type_object)) {
		json_object_object_foreach(want, k, v)
		{
			struct json_object *h = NULL;

			if (!json_object_object_get_ex(have, k, &h) || !subset(v, h))
				return false;
		}
		return true;
	}
	if (!json_object_is_type(want, json_type_array))
		return json_object_equal(want, have) != 0;
	n = json_object_array_length(want);
	if (n != json_object_array_length(have))
		return false;
	for (i = 0; i < n; i++)
		if (!subset(json_object_array_get_idx(want, i), json_object_array_get_idx(have, i)))
			return false;
	return true;
}

static bool own_label(const char *k)
{
	return strcmp(k, ST_RESTORE_LABEL_BACKUP) == 0 ||
	       strcmp(k, ST_RESTORE_LABEL_RESTORE) == 0 ||
	       strcmp(k, "velero.io/backup-name") == 0 || strcmp(k, "velero.io/restore-name") == 0;
}

/* Same string maps, keys skip() says to ignore aside; NULL is the empty map. */
static bool same_map(struct json_object *a, struct json_object *b, bool skip_own)
{
	int na = 0, nb = 0;

	if (a != NULL) {
		json_object_object_foreach(a, k, v)
		{
			struct json_object *w = NULL;

			if (skip_own && own_label(k))
				continue;
			na++;
			if (b == NULL || !json_object_object_get_ex(b, k, &w) ||
			    !json_object_equal(v, w))
				return false;
		}
	}
	if (b != NULL) {
		json_object_object_foreach(b, k, v)
		{
			(void)v;
			if (!(skip_own && own_label(k)))
				nb++;
		}
	}
	return na == nb;
}

static bool top_level_field(const char *k)
{
	return strcmp(k, "apiVersion") != 0 && strcmp(k, "kind") != 0 &&
	       strcmp(k, "metadata") != 0 && strcmp(k, "status") != 0;
}

enum st_restore_existing st_restore_existing_decide(struct json_object *existing,
                                                    struct json_object *desired, bool update)
{
	struct json_object *em = st_json_get_obj(existing, "metadata");
	struct json_object *dm = st_json_get_obj(desired, "metadata");
	bool same = same_map(st_json_get_obj(dm, "labels"), st_json_get_obj(em, "labels"), true) &&
	            same_map(st_json_get_obj(dm, "annotations"), st_json_get_obj(em, "annotations"),
	                     false);

	if (same) {
		json_object_object_foreach(desired, k, v)
		{
			if (top_level_field(k) && !subset(v, st_json_get(existing, k)))
				same = false;
		}
	}
	if (same)
		return ST_RESTORE_EXISTING_SAME;
	return update ? ST_RESTORE_EXISTING_UPDATE : ST_RESTORE_EXISTING_KEEP;
}

/* The node ports the cluster gave existing, for the ports desired leaves to it. */
static void keep_node_ports(struct json_object *spec, struct json_object *old)
{
	struct json_object *ports = st_json_get_arr(spec, "ports");
	struct json_object *oports = st_json_get_arr(old, "ports");
	struct json_object *v = NULL;
	size_t i, j;

	if (!json_object_object_get_ex(spec, "healthCheckNodePort", NULL) &&
	    json_object_object_get_ex(old, "healthCheckNodePort", &v))
		json_object_object_add(spec, "healthCheckNodePort", json_object_get(v));
	for (i = 0; ports != NULL && i < json_object_array_length(ports); i++) {
		struct json_object *p = json_object_array_get_idx(ports, i);

		if (json_object_object_get_ex(p, "nodePort", NULL))
			continue;
		for (j = 0; oports != NULL && j < json_object_array_length(oports); j++) {
			struct json_object *o = json_object_array_get_idx(oports, j);

			if (json_object_get_int(st_json_get(o, "port")) ==
			            json_object_get_int(st_json_get(p, "port")) &&
			    json_object_object_get_ex(o, "nodePort", &v)) {
				json_object_object_add(p, "nodePort", json_object_get(v));
				break;
			}
		}
	}
}

static void keep_service_fields(struct json_object *merged, struct json_object *existing)
{
	static const char *const ips[] = { "clusterIP", "clusterIPs", NULL };
	struct json_object *spec = st_json_get_obj(merged, "spec");
	struct json_object *old = st_json_get_obj(existing, "spec");
	struct json_object *v = NULL;
	size_t i;

	if (spec == NULL || old == NULL)
		return;
	for (i = 0; ips[i] != NULL; i++)
		if (!json_object_object_get_ex(spec, ips[i], NULL) &&
		    json_object_object_get_ex(old, ips[i], &v))
			json_object_object_add(spec, ips[i], json_object_get(v));
	keep_node_ports(spec, old);
}

struct json_object *st_restore_merge_existing(struct json_object *existing,
                                              struct json_object *desired)
{
	struct json_object *m = NULL;
	struct json_object *meta, *dm = st_json_get_obj(desired, "metadata");
	struct json_object *drop = json_object_new_array();
	const char *kind = st_json_get_str(desired, "kind");
	size_t i;

	(void)json_object_deep_copy(existing, &m, NULL);
	meta = st_json_get_obj(m, "metadata");
	json_object_object_foreach(m, k, v)
	{
		(void)v;
		if (top_level_field(k))
			json_object_array_add(drop, json_object_new_string(k));
	}
	for (i = 0; i < json_object_array_length(drop); i++)
		json_object_object_del(m,
		                       json_object_get_string(json_object_array_get_idx(drop, i)));
	json_object_put(drop);
	json_object_object_foreach(desired, k2, v2)
	{
		if (top_level_field(k2))
			json_object_object_add(m, k2, json_object_get(v2));
	}
	if (meta != NULL) {
		json_object_object_add(meta, "labels",
		                       json_object_get(st_json_get_obj(dm, "labels")));
		json_object_object_add(meta, "annotations",
		                       json_object_get(st_json_get_obj(dm, "annotations")));
	}
	if (kind != NULL && strcmp(kind, "Service") == 0) {
		/* The spec above is desired's own: copy it before adding the kept fields. */
		struct json_object *spec = NULL;

		(void)json_object_deep_copy(st_json_get_obj(m, "spec"), &spec, NULL);
		if (spec != NULL) {
			json_object_object_add(m, "spec", spec);
			keep_service_fields(m, existing);
		}
	}
	return m;
}

static struct json_object *pod_spec_of(struct json_object *obj)
{
	const char *kind = st_json_get_str(obj, "kind");
	struct json_object *spec = st_json_get_obj(obj, "spec");
	struct json_object *t;

	if (kind != NULL && strcmp(kind, "Pod") == 0)
		return spec;
	if ((t = st_json_get_obj(spec, "template")) != NULL)
		return st_json_get_obj(t, "spec");
	t = st_json_get_obj(st_json_get_obj(spec, "jobTemplate"), "spec");
	return st_json_get_obj(st_json_get_obj(t, "template"), "spec");
}

void st_restore_claims_of(struct json_object *arr, struct json_object *obj)
{
	struct json_object *ps = pod_spec_of(obj);
	struct json_object *vols = st_json_get_arr(ps, "volumes");
	struct json_object *tmpl =
	        st_json_get_arr(st_json_get_obj(obj, "spec"), "volumeClaimTemplates");
	const char *name = st_json_get_str(st_json_get_obj(obj, "metadata"), "name");
	size_t i;
	char buf[NAME_CAP];

	for (i = 0; vols != NULL && i < json_object_array_length(vols); i++) {
		struct json_object *pvc = st_json_get_obj(json_object_array_get_idx(vols, i),
		                                          "persistentVolumeClaim");
		const char *cn = st_json_get_str(pvc, "claimName");

		if (cn != NULL)
			json_object_array_add(arr, json_object_new_string(cn));
	}
	for (i = 0; name != NULL && tmpl != NULL && i < json_object_array_length(tmpl); i++) {
		const char *t = st_json_get_str(
		        st_json_get_obj(json_object_array_get_idx(tmpl, i), "metadata"), "name");

		if (t == NULL)
			continue;
		(void)snprintf(buf, sizeof(buf), "%s-%s-", t, name);
		json_object_array_add(arr, json_object_new_string(buf));
	}
}

/* ---- the restore's log and results -------------------------------------------------------- */

/* Appends msg to results[kind] under "velero", "cluster" or "namespaces"/ns. */
static void result_add(struct engine *e, const char *kind, const char *where, const char *ns,
                       const char *msg)
{
	struct json_object *part = st_json_get_obj(e->results, kind);
	struct json_object *arr = NULL;
	struct json_object *nss = NULL;

	if (part == NULL) {
		part = json_object_new_object();
		json_object_object_add(e->results, kind, part);
	}
	if (ns != NULL && ns[0] != '\0') {
		if ((nss = st_json_get_obj(part, "namespaces")) == NULL) {
			nss = json_object_new_object();
			json_object_object_add(part, "namespaces", nss);
		}
		part = nss;
		where = ns;
	}
	if ((arr = st_json_get_arr(part, where)) == NULL) {
		arr = json_object_new_array();
		json_object_object_add(part, where, arr);
	}
	json_object_array_add(arr, json_object_new_string(msg));
}

/* Counts, logs and records a warning or an error; ns NULL: a cluster-scoped object. */
static void note(struct engine *e, bool is_error, const char *ns, const char *fmt, ...)
        ST_PRINTF(4, 5);

static void note(struct engine *e, bool is_error, const char *ns, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	st_runlog_note(&e->log, is_error, msg);
	result_add(e, is_error ? "errors" : "warnings", "cluster", ns, msg);
}

static void set_fatal(struct engine *e, const char *what, const struct st_err *err)
{
	char msg[ST_ERR_MSG_SIZE * 2];

	(void)snprintf(msg, sizeof(msg), "%s: %s", what, st_err_text(err));
	if (e->fatal[0] == '\0')
		(void)snprintf(e->fatal, sizeof(e->fatal), "%s: %s", what, st_err_text(err));
	st_runlog_add(&e->log, "error", "%s", msg);
	result_add(e, "errors", "velero", NULL, msg);
}

/* ---- reading the backup ------------------------------------------------------------------ */

/* The GNU strerror_r (built with _GNU_SOURCE): restores may run beside other threads. */
static const char *errtext(int e, char *buf, size_t n)
{
	return strerror_r(e, buf, n);
}

static int file_write(const void *buf, size_t n, void *payload)
{
	return fwrite(buf, 1, n, payload) == n ? 0 : ST_EIO;
}

static long file_read(void *buf, size_t cap, void *payload)
{
	size_t n = fread(buf, 1, cap, payload);

	if (n == 0 && ferror((FILE *)payload))
		return ST_EIO;
	return (long)n;
}

/*
 * Splits resources/<gr>/[<v>-preferredversion/](namespaces/<ns>|cluster)/<name>.json.
 * Other entries (metadata, non-preferred version directories) are not objects: false.
 */
static bool parse_entry(struct item *it, const char *entry)
{
	char buf[NAME_CAP];
	char *p[8];
	size_t n = 0, len;
	char *save = NULL, *tok;
	int base;

	if (strlen(entry) >= sizeof(buf) || strncmp(entry, "resources/", 10) != 0)
		return false;
	memcpy(buf, entry, strlen(entry) + 1);
	for (tok = strtok_r(buf, "/", &save); tok != NULL && n < 8;
	     tok = strtok_r(NULL, "/", &save))
		p[n++] = tok;
	if (n < 4 || tok != NULL)
		return false;
	base = 2;
	it->preferred = false;
	len = strlen(p[2]);
	if (len > PREF_LEN && strcmp(p[2] + len - PREF_LEN, PREF_SUFFIX) == 0) {
		it->preferred = true;
		p[2][len - PREF_LEN] = '\0';
		it->version = st_xstrdup(p[2]);
		base = 3;
	}
	if ((size_t)base + 2 == n && strcmp(p[base], "cluster") == 0)
		it->ns = NULL;
	else if ((size_t)base + 3 == n && strcmp(p[base], "namespaces") == 0)
		it->ns = st_xstrdup(p[base + 1]);
	else
		goto bad;
	len = strlen(p[n - 1]);
	if (len <= 5 || strcmp(p[n - 1] + len - 5, ".json") != 0) {
		free(it->ns);
		goto bad;
	}
	p[n - 1][len - 5] = '\0';
	it->name = st_xstrdup(p[n - 1]);
	it->gr = st_xstrdup(p[1]);
	return true;
bad:
	free(it->version);
	it->version = NULL;
	it->ns = NULL;
	return false;
}

static int read_entry(struct json_object **out, struct st_archive_reader *r, const char *name,
                      struct st_err *err)
{
	struct st_buf b;
	char chunk[65536];
	size_t got = 0;
	int rc;

	*out = NULL;
	st_buf_init(&b, ITEM_CAP);
	do {
		if ((rc = st_archive_reader_read(&got, r, chunk, sizeof(chunk), err)) < 0)
			goto out;
		if (got > 0 && (rc = st_buf_put(&b, chunk, got)) < 0) {
			rc = st_err_set(err, rc, "%s: larger than %u bytes", name, ITEM_CAP);
			goto out;
		}
	} while (got > 0);
	rc = st_json_parse(out, b.ptr ? b.ptr : "", b.len, ITEM_CAP, name, err);
out:
	st_buf_dispose(&b);
	return rc;
}

static void add_item(struct engine *e, const struct item *it)
{
	if (e->nitems == e->cap_items) {
		e->cap_items = e->cap_items ? e->cap_items * 2 : 64;
		e->items = st_xrealloc(e->items, e->cap_items * sizeof(*e->items));
	}
	e->items[e->nitems++] = *it;
}

static void item_dispose(struct item *it)
{
	free(it->gr);
	free(it->version);
	free(it->ns);
	free(it->name);
	json_object_put(it->obj);
}

/* Fills in the version from apiVersion when the entry came from a plain directory. */
static int take_entry(struct engine *e, struct st_archive_reader *r, const char *name,
                      struct st_err *err)
{
	struct item it;
	const char *av, *slash;
	int rc;

	memset(&it, 0, sizeof(it));
	if (!parse_entry(&it, name))
		return 0;
	if ((rc = read_entry(&it.obj, r, name, err)) < 0) {
		item_dispose(&it);
		return rc;
	}
	if (it.version == NULL) {
		av = st_json_get_str(it.obj, "apiVersion");
		slash = av ? strrchr(av, '/') : NULL;
		it.version = st_xstrdup(slash ? slash + 1 : av ? av : "v1");
	}
	add_item(e, &it);
	return 0;
}

static int read_tarball(struct engine *e, FILE *f, struct st_err *err)
{
	struct st_archive_reader *r = NULL;
	const struct st_archive_entry *ent = NULL;
	int rc;

	if ((rc = st_archive_reader_new(&r, NULL, file_read, f)) < 0)
		return st_err_set(err, rc, "cannot create the tarball reader");
	for (;;) {
		if ((rc = st_archive_reader_next(&ent, r, err)) < 0 || ent == NULL)
			break;
		if (ent->type != ST_ARCHIVE_FILE)
			continue;
		if ((rc = take_entry(e, r, ent->name, err)) < 0)
			break;
	}
	st_archive_reader_free(r);
	return rc;
}

/* The preferred-version copy wins; the plain one is kept for types that have no such copy. */
static void drop_duplicates(struct engine *e)
{
	struct json_object *pref = json_object_new_object();
	size_t i, o = 0;

	for (i = 0; i < e->nitems; i++)
		if (e->items[i].preferred)
			json_object_object_add(pref, e->items[i].gr, NULL);
	for (i = 0; i < e->nitems; i++) {
		if (!e->items[i].preferred &&
		    json_object_object_get_ex(pref, e->items[i].gr, NULL)) {
			item_dispose(&e->items[i]);
			continue;
		}
		e->items[o++] = e->items[i];
	}
	e->nitems = o;
	json_object_put(pref);
}

static int download(struct engine *e, struct st_err *err)
{
	char key[NAME_CAP], ebuf[128];
	FILE *f = NULL;
	int rc;

	(void)snprintf(key, sizeof(key), "backups/%s/%s.tar.gz", e->backup, e->backup);
	if ((f = tmpfile()) == NULL)
		return st_err_set(err, ST_EIO, "cannot create a spool file: %s",
		                  errtext(errno, ebuf, sizeof(ebuf)));
	rc = st_store_get(e->s, key, 0, UINT64_MAX, file_write, f, err);
	if (rc == ST_ENOTFOUND) {
		st_err_clear(err);
		rc = st_err_set(err, rc, "backup %s has no %s in %s (unknown or deleted backup)",
		                e->backup, key, e->s->url ? e->s->url : "the storage location");
	}
	if (rc == 0 && (fflush(f) != 0 || fseek(f, 0, SEEK_SET) != 0))
		rc = st_err_set(err, ST_EIO, "spooling %s: %s", key,
		                errtext(errno, ebuf, sizeof(ebuf)));
	if (rc == 0 && (rc = read_tarball(e, f, err)) < 0)
		st_err_prefix(err, "%s", key);
	(void)fclose(f);
	if (rc == 0) {
		drop_duplicates(e);
		st_runlog_add(&e->log, "info", "read %zu objects from %s", e->nitems, key);
	}
	return rc;
}

/* ---- scope ------------------------------------------------------------------------------- */

static const char *str_or_empty(const char *s)
{
	return s != NULL ? s : "";
}

static bool set_has(struct json_object *set, const char *key)
{
	return set != NULL && json_object_object_get_ex(set, key, NULL);
}

static void set_add(struct json_object *set, const char *key)
{
	if (!json_object_object_get_ex(set, key, NULL))
		json_object_object_add(set, key, NULL);
}

static bool list_has_star(struct json_object *list)
{
	size_t i, n = list ? json_object_array_length(list) : 0;

	for (i = 0; i < n; i++) {
		const char *s = json_object_get_string(json_object_array_get_idx(list, i));

		if (s != NULL && strcmp(s, "*") == 0)
			return true;
	}
	return false;
}

/*
 * Names as kubectl resolves them against the cluster; a name the cluster
 * does not serve (a custom resource whose CRD is in the backup) is taken
 * literally, and also matches the plural part of a group-qualified name.
 */
static struct json_object *resolve_names(struct engine *e, struct json_object *list)
{
	struct json_object *set = json_object_new_object();
	size_t i, n = list ? json_object_array_length(list) : 0;

	for (i = 0; i < n; i++) {
		const char *s = json_object_get_string(json_object_array_get_idx(list, i));
		struct st_err err = ST_ERR_INIT;
		struct st_kube_gvr gvr;
		char gr[NAME_CAP];

		if (s == NULL || s[0] == '\0' || strcmp(s, "*") == 0)
			continue;
		if (st_kube_resolve(&gvr, e->c, s, &err) == 0) {
			st_kube_gvr_name(gr, sizeof(gr), &gvr);
			set_add(set, gr);
		}
		set_add(set, s);
	}
	return set;
}

static bool name_set_has(struct json_object *set, const char *gr)
{
	char plural[NAME_CAP];
	const char *dot = strchr(gr, '.');

	if (set_has(set, gr))
		return true;
	if (dot == NULL || (size_t)(dot - gr) >= sizeof(plural))
		return false;
	memcpy(plural, gr, (size_t)(dot - gr));
	plural[dot - gr] = '\0';
	return set_has(set, plural);
}

static bool resource_wanted(const struct engine *e, const char *gr)
{
	if (name_set_has(e->excl_res, gr))
		return false;
	return e->incl_res == NULL || name_set_has(e->incl_res, gr);
}

static bool labels_ok(const struct engine *e, const struct item *it)
{
	return e->selector == NULL ||
	       st_labels_match(e->selector,
	                       st_json_get_obj(st_json_get_obj(it->obj, "metadata"), "labels"));
}

static void mark_namespaced(struct engine *e, struct json_object *claims, struct json_object *grs)
{
	size_t i;
	char key[NAME_CAP];

	for (i = 0; i < e->nitems; i++) {
		struct item *it = &e->items[i];

		if (it->ns == NULL ||
		    !st_backup_namespace_in_scope(e->incl_ns, e->excl_ns, it->ns) ||
		    !resource_wanted(e, it->gr) || !labels_ok(e, it))
			continue;
		it->in_scope = true;
		set_add(grs, it->gr);
		if (strcmp(it->gr, GR_PVC) == 0) {
			(void)snprintf(key, sizeof(key), "%s/%s", it->ns, it->name);
			set_add(claims, key);
		}
	}
}

/* Cluster-scoped objects: all, none, or those the namespaced ones need. */
static bool cluster_wanted(const struct engine *e, const struct item *it,
                           struct json_object *claims, struct json_object *grs)
{
	struct json_object *cr = st_json_get_obj(st_json_get_obj(it->obj, "spec"), "claimRef");
	char key[NAME_CAP];

	if (strcmp(it->gr, GR_NS) == 0)
		return st_backup_namespace_in_scope(e->incl_ns, e->excl_ns, it->name) &&
		       resource_wanted(e, it->gr);
	if (e->cluster == CLUSTER_NONE || name_set_has(e->excl_res, it->gr))
		return false;
	if (e->cluster == CLUSTER_ALL)
		return resource_wanted(e, it->gr) && labels_ok(e, it);
	if (strcmp(it->gr, GR_PV) == 0) {
		(void)snprintf(key, sizeof(key), "%s/%s",
		               str_or_empty(st_json_get_str(cr, "namespace")),
		               str_or_empty(st_json_get_str(cr, "name")));
		return set_has(claims, key);
	}
	return strcmp(it->gr, GR_CRD) == 0 && set_has(grs, it->name);
}

static bool owner_in_backup(struct engine *e, const struct item *it, char *why, size_t size)
{
	char kind[256], name[512], key[NAME_CAP];

	if (it->ns == NULL ||
	    !st_restore_controller_owner(kind, sizeof(kind), name, sizeof(name), it->obj))
		return false;
	(void)snprintf(key, sizeof(key), "%s/%s/%s", it->ns, kind, name);
	if (!set_has(e->owners, key))
		return false;
	(void)snprintf(why, size, "%s %s", kind, name);
	return true;
}

static void collect_owners(struct engine *e)
{
	char key[NAME_CAP];
	size_t i;

	for (i = 0; i < e->nitems; i++) {
		const char *kind = st_json_get_str(e->items[i].obj, "kind");

		if (e->items[i].ns == NULL || kind == NULL)
			continue;
		(void)snprintf(key, sizeof(key), "%s/%s/%s", e->items[i].ns, kind,
		               e->items[i].name);
		set_add(e->owners, key);
	}
}

/*
 * Velero's rule for a volume without a snapshot to restore it from: one the
 * cluster provisioned (reclaim policy Delete) went with its claim, so the PV
 * object is not restored and the claim is provisioned (and filled) afresh.
 */
static bool reprovisioned(const struct item *it)
{
	const char *pol =
	        st_json_get_str(st_json_get_obj(it->obj, "spec"), "persistentVolumeReclaimPolicy");

	return strcmp(it->gr, GR_PV) == 0 && pol != NULL && strcmp(pol, "Delete") == 0;
}

static int cmp_items(const void *a, const void *b)
{
	const struct item *x = *(const struct item *const *)a;
	const struct item *y = *(const struct item *const *)b;
	int c = st_restore_compare(x->gr, y->gr);

	if (c == 0)
		c = strcmp(str_or_empty(x->ns), str_or_empty(y->ns));
	return c != 0 ? c : strcmp(x->name, y->name);
}

/* Marks the items in scope, drops the children of restored controllers, sorts the rest. */
static void select_items(struct engine *e)
{
	struct json_object *claims = json_object_new_object();
	struct json_object *grs = json_object_new_object();
	char why[NAME_CAP];
	size_t i;

	collect_owners(e);
	mark_namespaced(e, claims, grs);
	for (i = 0; i < e->nitems; i++)
		if (e->items[i].ns == NULL && cluster_wanted(e, &e->items[i], claims, grs))
			e->items[i].in_scope = true;
	e->order = st_xcalloc(e->nitems + 1, sizeof(struct item *));
	for (i = 0; i < e->nitems; i++) {
		struct item *it = &e->items[i];

		if (!it->in_scope)
			continue;
		if (!st_restore_restorable(it->gr)) {
			st_runlog_add(&e->log, "info",
			              "%s %s%s%s skipped: not a restorable resource", it->gr,
			              str_or_empty(it->ns), it->ns ? "/" : "", it->name);
			continue;
		}
		if (reprovisioned(it)) {
			st_runlog_add(&e->log, "info",
			              "%s %s skipped: reclaim policy Delete, its claim is "
			              "provisioned again",
			              it->gr, it->name);
			continue;
		}
		if (owner_in_backup(e, it, why, sizeof(why))) {
			st_runlog_add(&e->log, "info",
			              "%s %s/%s skipped: its controller %s recreates it", it->gr,
			              it->ns, it->name, why);
			continue;
		}
		e->order[e->norder++] = it;
	}
	qsort(e->order, e->norder, sizeof(struct item *), cmp_items);
	e->total = (unsigned)e->norder;
	json_object_put(claims);
	json_object_put(grs);
}

/* ---- creating objects -------------------------------------------------------------------- */

static void gvr_of(struct st_kube_gvr *gvr, const struct item *it)
{
	char res[NAME_CAP];
	const char *dot = strchr(it->gr, '.');
	size_t n = dot ? (size_t)(dot - it->gr) : strlen(it->gr);

	if (n >= sizeof(res))
		n = sizeof(res) - 1;
	memcpy(res, it->gr, n);
	res[n] = '\0';
	if (st_kube_gvr_set(gvr, dot ? dot + 1 : "", it->version, res,
	                    st_json_get_str(it->obj, "kind"), it->ns != NULL) < 0)
		memset(gvr, 0, sizeof(*gvr));
}

static bool builtin_group(const char *group)
{
	static const char *const core[] = { "",       "apps",       "batch", "autoscaling",
		                            "policy", "extensions", NULL };
	size_t i, n = strlen(group);

	for (i = 0; core[i] != NULL; i++)
		if (strcmp(group, core[i]) == 0)
			return true;
	return n >= 7 && strcmp(group + n - 7, ".k8s.io") == 0;
}

/* After a CRD was restored, its resources appear in discovery within a bounded wait. */
static bool wait_served(struct engine *e, const struct item *it)
{
	unsigned limit = e->opts->crd_wait_s ? e->opts->crd_wait_s : 60;
	long long deadline = (long long)time(NULL) + limit;
	struct st_kube_gvr gvr;

	do {
		struct st_err err = ST_ERR_INIT;

		st_kube_discovery_reset(e->c);
		if (st_kube_resolve(&gvr, e->c, it->gr, &err) == 0)
			return true;
		usleep(250 * 1000);
	} while ((long long)time(NULL) < deadline && !e->cancelled);
	return false;
}

static void add_labels(struct engine *e, struct json_object *obj)
{
	struct json_object *meta = st_json_get_obj(obj, "metadata");
	struct json_object *labels = st_json_get_obj(meta, "labels");

	if (meta == NULL)
		return;
	if (labels == NULL) {
		labels = json_object_new_object();
		json_object_object_add(meta, "labels", labels);
	}
	/* Label values are at most 63 characters; longer names go without the label. */
	if (strlen(e->backup) <= 63)
		st_json_add_str(labels, ST_RESTORE_LABEL_BACKUP, e->backup);
	if (strlen(e->name) <= 63)
		st_json_add_str(labels, ST_RESTORE_LABEL_RESTORE, e->name);
}

static const char *target_ns(const struct engine *e, const char *ns)
{
	const char *to = ns ? st_remap_lookup(e->remap, ST_REMAP_NAMESPACE, ns) : NULL;

	return to != NULL ? to : ns;
}

/* Velero's rule: the namespace of a restored object is created when missing. */
static void ensure_namespace(struct engine *e, const char *ns, const char *target)
{
	struct json_object *obj = NULL, *meta = NULL, *res = NULL;
	struct st_kube_gvr gvr;
	struct st_err err = ST_ERR_INIT;
	long http = 0;

	if (set_has(e->ns_done, target))
		return;
	obj = json_object_new_object();
	meta = json_object_new_object();
	st_json_add_str(obj, "apiVersion", "v1");
	st_json_add_str(obj, "kind", "Namespace");
	st_json_add_str(meta, "name", target);
	json_object_object_add(obj, "metadata", meta);
	add_labels(e, obj);
	if (st_kube_gvr_set(&gvr, "", "v1", "namespaces", "Namespace", false) < 0)
		goto out;
	if (st_kube_create(&res, e->c, &gvr, NULL, obj, &http, &err) == 0)
		st_runlog_add(&e->log, "info", "namespace %s created (for objects of %s)", target,
		              ns);
	else if (http != 409)
		note(e, true, target, "namespace %s: %s", target, st_err_text(&err));
	set_add(e->ns_done, target);
out:
	json_object_put(res);
	json_object_put(obj);
}

/* The object as it will be created: stripped, unbound if need be, mapped, labelled. */
static int prepare_object(struct json_object **out, struct engine *e, const struct item *it,
                          struct st_err *err)
{
	struct json_object *obj = NULL;
	const char *vol;
	int rc;

	*out = NULL;
	if (json_object_deep_copy(it->obj, &obj, NULL) != 0 || obj == NULL)
		return st_err_set(err, ST_ENOMEM, "copying the object");
	st_restore_strip(obj, it->gr, e->preserve_node_ports);
	if (strcmp(it->gr, GR_PVC) == 0) {
		vol = st_json_get_str(st_json_get_obj(obj, "spec"), "volumeName");
		if (vol != NULL && !set_has(e->pv_done, vol))
			st_restore_unbind_claim(obj);
	}
	if ((rc = st_restore_map_object(obj, e->remap, err)) < 0) {
		json_object_put(obj);
		return rc;
	}
	add_labels(e, obj);
	*out = obj;
	return 0;
}

/* The reason a workload may not be created: a claim it mounts that failed. */
static const char *blocked_by(struct engine *e, struct json_object *obj, const char *ns,
                              char *claim, size_t size)
{
	struct json_object *arr = json_object_new_array();
	const char *reason = NULL;
	size_t i, n;

	st_restore_claims_of(arr, obj);
	n = json_object_array_length(arr);
	for (i = 0; i < n && reason == NULL; i++) {
		const char *c = json_object_get_string(json_object_array_get_idx(arr, i));
		size_t cl = strlen(c);

		json_object_object_foreach(e->vol_failed, k, v)
		{
			const char *slash = strchr(k, '/');

			if (reason != NULL || slash == NULL || (size_t)(slash - k) != strlen(ns) ||
			    strncmp(k, ns, strlen(ns)) != 0)
				continue;
			if (strcmp(slash + 1, c) == 0 ||
			    (c[cl - 1] == '-' && strncmp(slash + 1, c, cl) == 0)) {
				(void)snprintf(claim, size, "%s", slash + 1);
				reason = json_object_get_string(v);
			}
		}
	}
	json_object_put(arr);
	return reason;
}

/* An object that exists: left alone, or replaced under existingResourcePolicy update (counted as
 * restored either way). */
static void handle_existing(struct engine *e, const struct st_kube_gvr *gvr, const char *ns,
                            const char *what, struct json_object *obj)
{
	const char *name = st_json_get_str(st_json_get_obj(obj, "metadata"), "name");
	struct json_object *cur = NULL, *merged = NULL, *res = NULL;
	struct st_err err = ST_ERR_INIT;
	enum st_restore_existing d;

	if (st_kube_get(&cur, e->c, gvr, ns, name, NULL, &err) < 0) {
		note(e, false, ns, "%s: already exists, and reading it failed: %s", what,
		     st_err_text(&err));
		goto out;
	}
	d = st_restore_existing_decide(cur, obj, e->update);
	if (d == ST_RESTORE_EXISTING_SAME) {
		st_runlog_add(&e->log, "info", "%s: already exists and matches the backup", what);
		goto out;
	}
	if (d == ST_RESTORE_EXISTING_KEEP) {
		note(e, false, ns,
		     "%s: already exists and differs from the backup; not changed "
		     "(existingResourcePolicy none)",
		     what);
		goto out;
	}
	merged = st_restore_merge_existing(cur, obj);
	if (st_kube_update(&res, e->c, gvr, ns, merged, NULL, &err) < 0)
		note(e, false, ns, "%s: already exists; updating it failed: %s", what,
		     st_err_text(&err));
	else
		note(e, false, ns, "%s: already existed and was updated to the backed-up version",
		     what);
out:
	json_object_put(cur);
	json_object_put(merged);
	json_object_put(res);
}

static void add_volume(struct engine *e, const struct item *it, const char *ns,
                       struct json_object *created)
{
	struct st_restore_volume *v;

	if (e->nvols == e->cap_vols) {
		e->cap_vols = e->cap_vols ? e->cap_vols * 2 : 16;
		e->vols = st_xrealloc(e->vols, e->cap_vols * sizeof(*e->vols));
	}
	v = &e->vols[e->nvols++];
	memset(v, 0, sizeof(*v));
	v->pvc = created;
	v->namespace = st_json_get_str(st_json_get_obj(created, "metadata"), "namespace");
	if (v->namespace == NULL)
		v->namespace = ns;
	v->name = st_json_get_str(st_json_get_obj(created, "metadata"), "name");
	v->orig_namespace = it->ns;
	v->orig_name = it->name;
}

static void volume_failed(struct engine *e, const char *ns, const char *name, const char *why)
{
	char key[NAME_CAP];

	(void)snprintf(key, sizeof(key), "%s/%s", ns, name);
	json_object_object_add(e->vol_failed, key, json_object_new_string(why));
}

/* Creates one object; 0 when it was restored (or exists), -1 when it failed. */
static int create_one(struct engine *e, const struct item *it, struct json_object *obj,
                      const char *ns, const char *what)
{
	struct json_object *res = NULL;
	struct st_kube_gvr gvr;
	struct st_err err = ST_ERR_INIT;
	long http = 0;
	int rc;

	gvr_of(&gvr, it);
	rc = st_kube_create(&res, e->c, &gvr, ns, obj, &http, &err);
	if (rc < 0 && http == 404 && e->crd_created && !builtin_group(gvr.group) &&
	    wait_served(e, it)) {
		st_err_clear(&err);
		rc = st_kube_create(&res, e->c, &gvr, ns, obj, &http, &err);
	}
	if (rc == 0) {
		st_runlog_add(&e->log, "info", "%s: created", what);
		if (strcmp(it->gr, GR_PVC) == 0) {
			add_volume(e, it, ns, res);
			res = NULL; /* transferred */
		} else if (strcmp(it->gr, GR_PV) == 0) {
			set_add(e->pv_done, it->name);
		} else if (strcmp(it->gr, GR_CRD) == 0) {
			e->crd_created = true;
		}
		json_object_put(res);
		return 0;
	}
	json_object_put(res);
	if (http == 409) {
		handle_existing(e, &gvr, ns, what, obj);
		return 0;
	}
	if (strcmp(it->gr, GR_PVC) == 0)
		volume_failed(e, str_or_empty(ns), it->name, st_err_text(&err));
	note(e, true, ns, "%s: %s", what, st_err_text(&err));
	return -1;
}

static void fill_volumes(struct engine *e)
{
	size_t i;
	int rc;

	e->volumes_filled = true;
	if (e->nvols == 0 || e->opts->fill_volumes == NULL)
		return;
	st_runlog_add(&e->log, "info", "filling %zu volumes", e->nvols);
	rc = e->opts->fill_volumes(e->vols, e->nvols, e->restore, e->opts->payload);
	for (i = 0; i < e->nvols; i++) {
		struct st_restore_volume *v = &e->vols[i];

		if (rc < 0 && !v->failed) {
			v->failed = true;
			(void)snprintf(v->reason, sizeof(v->reason), "filling volumes: %s",
			               st_strerror(rc));
		}
		if (!v->failed)
			continue;
		if (v->reason[0] == '\0')
			(void)snprintf(v->reason, sizeof(v->reason), "its data was not restored");
		note(e, true, v->namespace, "volume %s/%s: %s", v->namespace, v->name, v->reason);
		volume_failed(e, v->namespace, v->name, v->reason);
	}
}

static void restore_item(struct engine *e, const struct item *it)
{
	struct json_object *obj = NULL;
	struct st_err err = ST_ERR_INIT;
	const char *ns = target_ns(e, it->ns);
	const char *reason;
	char what[NAME_CAP], claim[512];

	(void)snprintf(what, sizeof(what), "%s %s%s%s", it->gr, ns ? ns : "", ns ? "/" : "",
	               it->name);
	if (ns != NULL)
		ensure_namespace(e, it->ns, ns);
	if (prepare_object(&obj, e, it, &err) < 0) {
		note(e, true, ns, "%s: %s", what, st_err_text(&err));
		return;
	}
	/* A Namespace is named by its mapping. */
	if (ns == NULL)
		(void)snprintf(
		        what, sizeof(what), "%s %s", it->gr,
		        str_or_empty(st_json_get_str(st_json_get_obj(obj, "metadata"), "name")));
	if (strcmp(it->gr, GR_NS) == 0)
		set_add(e->ns_done, st_json_get_str(st_json_get_obj(obj, "metadata"), "name"));
	if (ns != NULL && st_restore_priority(it->gr) > RANK_PVC &&
	    (reason = blocked_by(e, obj, ns, claim, sizeof(claim))) != NULL) {
		note(e, true, ns, "%s: not created: volume %s/%s failed: %s", what, ns, claim,
		     reason);
		json_object_put(obj);
		return;
	}
	if (create_one(e, it, obj, ns, what) == 0)
		e->done++;
	json_object_put(obj);
}

static void restore_items(struct engine *e)
{
	size_t i;

	for (i = 0; i < e->norder; i++) {
		const struct item *it = e->order[i];

		if (e->opts->cancel != NULL && atomic_load(e->opts->cancel)) {
			e->cancelled = true;
			break;
		}
		if (!e->volumes_filled && st_restore_priority(it->gr) > RANK_PVC)
			fill_volumes(e);
		restore_item(e, it);
		if (e->opts->progress != NULL)
			e->opts->progress(e->total, e->done, e->opts->payload);
	}
	if (!e->volumes_filled && !e->cancelled)
		fill_volumes(e);
}

/* ---- spec -------------------------------------------------------------------------------- */

static int add_config_maps(struct engine *e, struct json_object *names, struct st_err *err)
{
	const char *cns = e->opts->config_namespace ? e->opts->config_namespace : e->rns;
	struct st_kube_gvr gvr;
	size_t i;
	int rc = 0;

	if (st_kube_gvr_set(&gvr, "", "v1", "configmaps", "ConfigMap", true) < 0)
		return ST_EINTERNAL;
	for (i = 0; rc == 0 && names != NULL && i < json_object_array_length(names); i++) {
		const char *n = json_object_get_string(json_object_array_get_idx(names, i));
		struct json_object *cm = NULL;
		long http = 0;

		if ((rc = st_kube_get(&cm, e->c, &gvr, cns, n, &http, err)) < 0) {
			if (http == 404) {
				st_err_clear(err);
				rc = st_err_set(err, ST_EINVAL,
				                "spec.mappingConfigMaps: ConfigMap %s not found in "
				                "namespace %s",
				                n, cns);
			}
			break;
		}
		rc = st_remap_add_velero_configmap(e->remap, cm, err);
		json_object_put(cm);
		if (rc == 0)
			rc = st_err_set(
			        err, ST_EINVAL,
			        "spec.mappingConfigMaps: ConfigMap %s/%s has neither label "
			        "velero.io/change-storage-class nor velero.io/change-image-name "
			        "set to RestoreItemAction",
			        cns, n);
		else if (rc > 0)
			rc = 0;
	}
	return rc;
}

static int add_map(struct engine *e, enum st_remap_kind kind, const char *field, struct st_err *err)
{
	struct json_object *m = st_json_get(e->spec, field);
	int rc;

	if (m == NULL)
		return 0;
	if (!json_object_is_type(m, json_type_object))
		return st_err_set(err, ST_EINVAL, "spec.%s: not a map of names", field);
	if ((rc = st_remap_add_map(e->remap, kind, m, err)) < 0)
		st_err_prefix(err, "spec.%s", field);
	return rc;
}

static int build_remap(struct engine *e, struct st_err *err)
{
	int rc;

	if ((rc = st_remap_new(&e->remap, err)) < 0)
		return rc;
	if ((rc = add_map(e, ST_REMAP_NAMESPACE, "namespaceMapping", err)) < 0 ||
	    (rc = add_map(e, ST_REMAP_STORAGE_CLASS, "storageClassMappings", err)) < 0 ||
	    (rc = add_map(e, ST_REMAP_IMAGE_REGISTRY, "imageRegistryMappings", err)) < 0)
		return rc;
	return add_config_maps(e, st_json_get_arr(e->spec, "mappingConfigMaps"), err);
}

/* Checks the spec; ST_EINVAL with the field at fault. */
static int parse_spec(struct engine *e, struct st_err *err)
{
	const char *pol = st_json_get_str(e->spec, "existingResourcePolicy");
	struct json_object *icr = st_json_get(e->spec, "includeClusterResources");
	size_t nin;

	e->incl_ns = st_json_get_arr(e->spec, "includedNamespaces");
	e->excl_ns = st_json_get_arr(e->spec, "excludedNamespaces");
	e->selector = st_json_get_obj(e->spec, "labelSelector");
	e->preserve_node_ports = st_json_get_bool(e->spec, "preserveNodePorts", false);
	if (pol != NULL && pol[0] != '\0' && strcmp(pol, "none") != 0 && strcmp(pol, "update") != 0)
		return st_err_set(err, ST_EINVAL,
		                  "spec.existingResourcePolicy: \"%s\" is neither none nor update",
		                  pol);
	e->update = pol != NULL && strcmp(pol, "update") == 0;
	if (st_backup_validate_lists(e->incl_ns, e->excl_ns, "Namespaces", err) < 0 ||
	    st_backup_validate_lists(st_json_get_arr(e->spec, "includedResources"),
	                             st_json_get_arr(e->spec, "excludedResources"), "Resources",
	                             err) < 0)
		return ST_EINVAL;
	if (e->selector != NULL && st_labels_validate(e->selector, "spec.labelSelector", err) < 0)
		return ST_EINVAL;
	nin = e->incl_ns ? json_object_array_length(e->incl_ns) : 0;
	if (icr != NULL && json_object_is_type(icr, json_type_boolean))
		e->cluster = json_object_get_boolean(icr) ? CLUSTER_ALL : CLUSTER_NONE;
	else if ((nin == 0 || list_has_star(e->incl_ns)) &&
	         (e->excl_ns == NULL || json_object_array_length(e->excl_ns) == 0))
		e->cluster = CLUSTER_ALL;
	else
		e->cluster = CLUSTER_RELATED;
	if (st_json_get_arr(e->spec, "includedResources") != NULL &&
	    json_object_array_length(st_json_get_arr(e->spec, "includedResources")) > 0 &&
	    !list_has_star(st_json_get_arr(e->spec, "includedResources")))
		e->incl_res = resolve_names(e, st_json_get_arr(e->spec, "includedResources"));
	e->excl_res = resolve_names(e, st_json_get_arr(e->spec, "excludedResources"));
	return build_remap(e, err);
}

/* The backup to read: spec.backupName, else the newest of spec.scheduleName. */
static int pick_backup(struct engine *e, struct st_err *err)
{
	const char *b = st_json_get_str(e->spec, "backupName");
	const char *sched = st_json_get_str(e->spec, "scheduleName");
	char name[256];
	int rc;

	if (b != NULL && b[0] != '\0') {
		/* The name becomes part of object keys; it must not leave backups/<name>/. */
		if (!st_backup_name_usable(b))
			return st_err_set(err, ST_EINVAL,
			                  "spec.backupName \"%s\" is not a backup name (no '/', "
			                  "'.' or '..'); give the name of a Backup object",
			                  b);
		e->backup = b;
		return 0;
	}
	if (sched == NULL || sched[0] == '\0')
		return st_err_set(err, ST_EINVAL, "spec.backupName or spec.scheduleName is needed");
	if ((rc = st_restore_schedule_backup(name, sizeof(name), e->c, e->rns, sched, err)) < 0)
		return rc;
	st_json_add_str(e->spec, "backupName", name);
	e->backup = st_json_get_str(e->spec, "backupName");
	st_runlog_add(&e->log, "info", "schedule %s: restoring its newest Completed backup %s",
	              sched, name);
	return 0;
}

/* ---- schedule ---------------------------------------------------------------------------- */

struct newest {
	char name[256];
	char when[64];
};

static int newest_completed(struct json_object *item, void *payload)
{
	struct newest *n = payload;
	struct json_object *st = st_json_get_obj(item, "status");
	struct json_object *md = st_json_get_obj(item, "metadata");
	const char *phase = st_json_get_str(st, "phase");
	const char *when = st_json_get_str(st, "startTimestamp");
	const char *name = st_json_get_str(md, "name");

	if (when == NULL)
		when = st_json_get_str(md, "creationTimestamp");
	if (phase == NULL || strcmp(phase, "Completed") != 0 || name == NULL)
		return 0;
	/* RFC 3339 UTC times of one format sort as text. */
	if (n->name[0] == '\0' || strcmp(str_or_empty(when), n->when) > 0) {
		(void)snprintf(n->name, sizeof(n->name), "%s", name);
		(void)snprintf(n->when, sizeof(n->when), "%s", str_or_empty(when));
	}
	return 0;
}

int st_restore_schedule_backup(char *buf, size_t size, struct st_kube_client *c, const char *ns,
                               const char *schedule, struct st_err *err)
{
	static const char *const labels[] = { ST_SCHEDULE_VELERO_LABEL, ST_SCHEDULE_LABEL };
	struct st_kube_list_options lo = ST_KUBE_LIST_OPTIONS_INIT;
	struct st_kube_gvr gvr;
	struct newest n;
	char sel[512];
	size_t i;
	int rc;

	memset(&n, 0, sizeof(n));
	if (size > 0)
		buf[0] = '\0';
	if ((rc = st_kube_gvr_set(&gvr, "stasis.io", "v1alpha1", "backups", "Backup", true)) < 0)
		return rc;
	for (i = 0; i < 2; i++) {
		(void)snprintf(sel, sizeof(sel), "%s=%s", labels[i], schedule);
		lo.label_selector = sel;
		if ((rc = st_kube_list_items(NULL, c, &gvr, ns, &lo, newest_completed, &n, err)) <
		    0)
			return rc;
	}
	if (n.name[0] == '\0')
		return st_err_set(err, ST_ENOTFOUND,
		                  "schedule %s has no Completed backup in namespace %s "
		                  "(label " ST_SCHEDULE_VELERO_LABEL " or " ST_SCHEDULE_LABEL ")",
		                  schedule, ns);
	(void)snprintf(buf, size, "%s", n.name);
	return 0;
}

/* ---- status and uploads ------------------------------------------------------------------ */

static void put_gz(struct engine *e, const char *what, const char *suffix, const void *data,
                   size_t len)
{
	struct st_err err = ST_ERR_INIT;
	char key[NAME_CAP];

	(void)snprintf(key, sizeof(key), "restores/%s/restore-%s-%s.gz", e->name, e->name, suffix);
	if (st_runlog_put_gz(e->s, key, data, len, &err) < 0)
		st_log_err("restore %s/%s: uploading the %s to %s: %s", e->rns, e->name, what, key,
		           st_err_text(&err));
}

static struct json_object *status_of(struct json_object *restore)
{
	struct json_object *st = NULL;

	if (!json_object_object_get_ex(restore, "status", &st) || st == NULL ||
	    !json_object_is_type(st, json_type_object)) {
		st = json_object_new_object();
		json_object_object_add(restore, "status", st);
	}
	return st;
}

static void set_status(struct engine *e, const char *phase, const char *reason)
{
	struct json_object *st = status_of(e->restore);
	struct json_object *prog = json_object_new_object();
	char ts[32];

	st_json_add_str(st, "phase", phase);
	st_backup_format_time(ts, sizeof(ts), (long long)time(NULL));
	st_json_add_str(st, "completionTimestamp", ts);
	json_object_object_add(st, "errors", json_object_new_int((int)e->log.errors));
	json_object_object_add(st, "warnings", json_object_new_int((int)e->log.warnings));
	if (reason != NULL && reason[0] != '\0')
		st_json_add_str(st, "failureReason", reason);
	json_object_object_add(prog, "totalItems", json_object_new_int((int)e->total));
	json_object_object_add(prog, "itemsRestored", json_object_new_int((int)e->done));
	json_object_object_add(st, "progress", prog);
}

static void verdict(struct st_restore_result *res, struct engine *e)
{
	const char *phase = "Completed";
	const char *text;
	size_t len = 0;

	if (e->cancelled && e->fatal[0] == '\0')
		(void)snprintf(e->fatal, sizeof(e->fatal),
		               "the controller stopped while the restore was in progress");
	if (e->fatal[0] != '\0')
		phase = "Failed";
	else if (e->log.errors > 0)
		phase = "PartiallyFailed";
	set_status(e, phase, e->fatal);
	st_runlog_add(&e->log,
	              phase[0] == 'C'   ? "info"
	              : phase[0] == 'P' ? "warning"
	                                : "error",
	              "restore %s: %u of %u items restored, %u errors, %u warnings%s%s", phase,
	              e->done, e->total, e->log.errors, e->log.warnings, e->fatal[0] ? "; " : "",
	              e->fatal);
	st_runlog_finish(&e->log);
	put_gz(e, "log", "logs", e->log.buf.ptr ? e->log.buf.ptr : "", e->log.buf.len);
	text = st_json_to_string(e->results, &len);
	put_gz(e, "results", "results", text, len);
	res->phase = phase;
	(void)snprintf(res->failure_reason, sizeof(res->failure_reason), "%s", e->fatal);
	res->errors = e->log.errors;
	res->warnings = e->log.warnings;
	res->total_items = e->total;
	res->items_restored = e->done;
}

/* ---- the run ----------------------------------------------------------------------------- */

static void engine_dispose(struct engine *e)
{
	size_t i;

	for (i = 0; i < e->nitems; i++)
		item_dispose(&e->items[i]);
	for (i = 0; i < e->nvols; i++)
		json_object_put(e->vols[i].pvc);
	free(e->items);
	free(e->order);
	free(e->vols);
	st_remap_free(e->remap);
	json_object_put(e->incl_res);
	json_object_put(e->excl_res);
	json_object_put(e->owners);
	json_object_put(e->ns_done);
	json_object_put(e->pv_done);
	json_object_put(e->vol_failed);
	json_object_put(e->results);
	st_runlog_dispose(&e->log);
}

static void set_start_status(struct engine *e)
{
	struct json_object *st = status_of(e->restore);
	char ts[32];

	st_json_add_str(st, "phase", "InProgress");
	st_backup_format_time(ts, sizeof(ts), e->now);
	st_json_add_str(st, "startTimestamp", ts);
	json_object_object_del(st, "failureReason");
	json_object_object_del(st, "completionTimestamp");
}

static void run(struct engine *e)
{
	struct st_err err = ST_ERR_INIT;

	if (pick_backup(e, &err) < 0) {
		set_fatal(e, "choosing the backup", &err);
		return;
	}
	if (parse_spec(e, &err) < 0) {
		set_fatal(e, "invalid spec", &err);
		return;
	}
	st_runlog_add(&e->log, "info", "restore of backup %s started (existingResourcePolicy %s)",
	              e->backup, e->update ? "update" : "none");
	if (download(e, &err) < 0) {
		set_fatal(e, "reading the backup", &err);
		return;
	}
	select_items(e);
	st_runlog_add(&e->log, "info", "%u items to restore", e->total);
	restore_items(e);
}

int st_restore_run(struct st_restore_result *res, struct st_kube_client *c, struct st_store *s,
                   struct json_object *restore, const struct st_restore_options *opts,
                   struct st_err *err)
{
	static const struct st_restore_options dflt = ST_RESTORE_OPTIONS_INIT;
	struct json_object *md = st_json_get_obj(restore, "metadata");
	struct engine e;

	memset(res, 0, sizeof(*res));
	res->phase = "Failed";
	memset(&e, 0, sizeof(e));
	e.c = c;
	e.s = s;
	e.restore = restore;
	e.opts = opts ? opts : &dflt;
	e.now = e.opts->now ? e.opts->now : (long long)time(NULL);
	e.name = st_json_get_str(md, "name");
	e.rns = st_json_get_str(md, "namespace");
	if (e.rns == NULL)
		e.rns = "";
	if (!st_backup_name_usable(e.name)) {
		st_err_set(err, ST_EINVAL, "metadata.name: missing or not usable as a key");
		(void)snprintf(res->failure_reason, sizeof(res->failure_reason), "%s",
		               st_err_text(err));
		return ST_EINVAL;
	}
	if ((e.spec = st_json_get_obj(restore, "spec")) == NULL) {
		e.spec = json_object_new_object();
		json_object_object_add(restore, "spec", e.spec);
	}
	e.owners = json_object_new_object();
	e.ns_done = json_object_new_object();
	e.pv_done = json_object_new_object();
	e.vol_failed = json_object_new_object();
	e.results = json_object_new_object();
	st_runlog_init(&e.log, "restore", ST_RESTORE_CAP_LOG);
	e.log.ns = e.rns;
	e.log.name = e.name;
	set_start_status(&e);
	run(&e);
	verdict(res, &e);
	engine_dispose(&e);
	return 0;
}
