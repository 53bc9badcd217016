/*
 * CSI VolumeSnapshots: driver and class resolution, creation, waiting for
 * the cut and for readiness, deletion.
 *
 * Waiting groups the snapshots by namespace and runs one watch per namespace
 * (a thread each), listing first and watching from the list's version. A
 * thread stops as soon as every snapshot of its namespace is done, so the
 * last cut ends the wait at once: nobody has to notice a cancel flag. The
 * flag is only raised when one namespace fails, to end the others.
 */
#include "pkg/csi.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pkg/kube.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

#define SNAP_GROUP "snapshot.storage.k8s.io"
/* The server ends a watch connection after this long; the client reconnects. */
#define WATCH_CONN_S 300u

enum res { R_PVC, R_PV, R_SC, R_VS, R_VSC, R_VSCLASS };

static int gvr_of(struct st_kube_gvr *g, enum res r)
{
	static const struct {
		const char *group, *resource, *kind;
		bool namespaced;
	} t[] = {
		[R_PVC] = { "", "persistentvolumeclaims", "PersistentVolumeClaim", true },
		[R_PV] = { "", "persistentvolumes", "PersistentVolume", false },
		[R_SC] = { "storage.k8s.io", "storageclasses", "StorageClass", false },
		[R_VS] = { SNAP_GROUP, "volumesnapshots", "VolumeSnapshot", true },
		[R_VSC] = { SNAP_GROUP, "volumesnapshotcontents", "VolumeSnapshotContent", false },
		[R_VSCLASS] = { SNAP_GROUP, "volumesnapshotclasses", "VolumeSnapshotClass", false },
	};

	return st_kube_gvr_set(g, t[r].group, "v1", t[r].resource, t[r].kind, t[r].namespaced);
}

static int copy_out(char *out, size_t size, const char *val, const char *what, struct st_err *err)
{
	size_t len = strlen(val);

	if (len >= size)
		return st_err_set(err, ST_ETOOBIG, "%s \"%.64s...\" is longer than %zu bytes", what,
		                  val, size - 1);
	memcpy(out, val, len + 1);
	return 0;
}

/* ---- time and quantities ---------------------------------------------------------------- */

/* Exactly n decimal digits. */
static bool take_digits(const char **p, int n, int *out)
{
	int v = 0, i;

	for (i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

static bool take_char(const char **p, const char *set)
{
	if (**p == '\0' || strchr(set, **p) == NULL)
		return false;
	(*p)++;
	return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (civil calendar arithmetic). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int days_in_month(int y, int m)
{
	static const int dm[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : dm[m - 1];
}

/* The fraction after '.', as nanoseconds; digits past the ninth are dropped. */
static bool take_fraction(const char **p, int64_t *ns)
{
	int64_t scale = 100000000;
	int n = 0;

	*ns = 0;
	if (**p != '.')
		return true;
	(*p)++;
	while (isdigit((unsigned char)**p)) {
		*ns += (**p - '0') * scale;
		scale /= 10;
		(*p)++;
		n++;
	}
	return n > 0;
}

/* "Z", "z" or "+hh:mm"/"-hh:mm", as seconds east of UTC. */
static bool take_offset(const char **p, int64_t *off)
{
	int sign, hh, mm;

	*off = 0;
	if (take_char(p, "Zz"))
		return true;
	if (**p != '+' && **p != '-')
		return false;
	sign = **p == '-' ? -1 : 1;
	(*p)++;
	if (!take_digits(p, 2, &hh) || !take_char(p, ":") || !take_digits(p, 2, &mm) || hh > 23 ||
	    mm > 59)
		return false;
	*off = sign * (int64_t)(hh * 3600 + mm * 60);
	return true;
}

int st_csi_parse_time(int64_t *out, const char *text)
{
	const char *p = text;
	int y, mo, d, h, mi, s;
	int64_t frac, off, secs;
	/* The largest whole second whose nanoseconds still fit an int64, either way. */
	const int64_t max_s = INT64_MAX / 1000000000 - 1;

	*out = 0;
	if (p == NULL)
		return ST_EINVAL;
	if (!take_digits(&p, 4, &y) || !take_char(&p, "-") || !take_digits(&p, 2, &mo) ||
	    !take_char(&p, "-") || !take_digits(&p, 2, &d) || !take_char(&p, "Tt ") ||
	    !take_digits(&p, 2, &h) || !take_char(&p, ":") || !take_digits(&p, 2, &mi) ||
	    !take_char(&p, ":") || !take_digits(&p, 2, &s))
		return ST_EINVAL;
	if (!take_fraction(&p, &frac) || !take_offset(&p, &off) || *p != '\0')
		return ST_EINVAL;
	/* RFC 3339 allows a leap second (60); it folds into the next minute. */
	if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60)
		return ST_EINVAL;
	secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + (int64_t)h * 3600 +
	       (int64_t)mi * 60 + s - off;
	if (secs > max_s || secs < -max_s)
		return ST_EINVAL;
	*out = secs * 1000000000 + frac;
	return 0;
}

/* A Kubernetes quantity of bytes ("52428800", "50Mi", "1G"); -1 when it is not one. */
static int64_t parse_bytes(struct json_object *v)
{
	static const struct {
		const char *sfx;
		int64_t mul;
	} t[] = { { "", 1 },
		  { "k", 1000LL },
		  { "M", 1000LL * 1000 },
		  { "G", 1000LL * 1000 * 1000 },
		  { "T", 1000LL * 1000 * 1000 * 1000 },
		  { "P", 1000LL * 1000 * 1000 * 1000 * 1000 },
		  { "Ki", 1LL << 10 },
		  { "Mi", 1LL << 20 },
		  { "Gi", 1LL << 30 },
		  { "Ti", 1LL << 40 },
		  { "Pi", 1LL << 50 } };
	const char *s;
	char *end = NULL;
	long long n;
	size_t i;

	if (v == NULL)
		return -1;
	if (json_object_is_type(v, json_type_int)) {
		int64_t b = json_object_get_int64(v);

		return b >= 0 ? b : -1;
	}
	if (!json_object_is_type(v, json_type_string))
		return -1;
	s = json_object_get_string(v);
	if (!isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno != 0 || n < 0)
		return -1;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcmp(end, t[i].sfx) == 0)
			return n <= INT64_MAX / t[i].mul ? n * t[i].mul : -1;
	return -1;
}

/* ---- status ----------------------------------------------------------------------------- */

static bool is_cut(const struct st_csi_snap *s)
{
	return s->created_ns != 0 || s->ready;
}

static bool is_failed(const struct st_csi_snap *s)
{
	return s->error[0] != '\0';
}

static int64_t now_ns(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void read_error(struct st_csi_snap *s, const struct json_object *status)
{
	const struct json_object *e = st_json_get_obj(status, "error");
	const char *msg = st_json_get_str(e, "message");

	if (e == NULL || is_failed(s))
		return;
	if (msg != NULL && msg[0] != '\0')
		(void)snprintf(s->error, sizeof(s->error), "%s", msg);
	else
		(void)snprintf(s->error, sizeof(s->error),
		               "the snapshot controller set status.error without a message");
}

static void read_snapshot(struct st_csi_snap *s, const struct json_object *st)
{
	const char *bound = st_json_get_str(st, "boundVolumeSnapshotContentName");
	const char *ct = st_json_get_str(st, "creationTime");
	int64_t size = parse_bytes(st_json_get(st, "restoreSize"));
	int64_t t = 0;

	if (bound != NULL && strlen(bound) < sizeof(s->content))
		(void)snprintf(s->content, sizeof(s->content), "%s", bound);
	if (ct != NULL && s->created_ns == 0) {
		if (st_csi_parse_time(&t, ct) < 0 || t == 0) {
			/* The cut happened; only its time is unreadable, so the local clock stands
			 * in. */
			st_log_warn(
			        "csi: VolumeSnapshot %s/%s: status.creationTime \"%.64s\" is not "
			        "RFC 3339; using the local time",
			        s->namespace, s->name, ct);
			t = now_ns();
		}
		s->created_ns = t;
	}
	if (st_json_get_bool(st, "readyToUse", false))
		s->ready = true;
	if (size >= 0 && s->restore_size < 0)
		s->restore_size = size;
}

static void read_content(struct st_csi_snap *s, const struct json_object *st)
{
	const struct json_object *ct = st_json_get(st, "creationTime");
	int64_t size = parse_bytes(st_json_get(st, "restoreSize"));

	if (ct != NULL && json_object_is_type(ct, json_type_int) && json_object_get_int64(ct) > 0)
		s->created_ns = json_object_get_int64(ct);
	if (st_json_get_bool(st, "readyToUse", false))
		s->ready = true;
	if (size >= 0)
		s->restore_size = size;
}

void st_csi_read_status(struct st_csi_snap *s, const struct json_object *obj)
{
	const struct json_object *st = st_json_get_obj(obj, "status");
	const char *kind = st_json_get_str(obj, "kind");

	if (st == NULL)
		return;
	if (kind != NULL && strcmp(kind, "VolumeSnapshotContent") == 0)
		read_content(s, st);
	else
		read_snapshot(s, st);
	read_error(s, st);
}

/* ---- driver ----------------------------------------------------------------------------- */

static int get_obj(struct json_object **out, struct st_kube_client *c, enum res r, const char *ns,
                   const char *name, struct st_err *err)
{
	struct st_kube_gvr g;

	if (gvr_of(&g, r) < 0)
		return st_err_set(err, ST_EINTERNAL, "csi: bad resource table");
	return st_kube_get(out, c, &g, ns, name, NULL, err);
}

struct default_sc {
	char name[254];
	int64_t created;
	unsigned count;
	struct json_object *obj; /* the chosen class, a reference of our own */
};

static bool annotated_true(const struct json_object *obj, bool label, const char *key)
{
	const struct json_object *md = st_json_get_obj(obj, "metadata");
	const char *v = st_json_get_str(st_json_get_obj(md, label ? "labels" : "annotations"), key);

	return v != NULL && strcmp(v, "true") == 0;
}

static int on_sc(struct json_object *item, void *payload)
{
	struct default_sc *d = payload;
	const struct json_object *md = st_json_get_obj(item, "metadata");
	const char *name = st_json_get_str(md, "name");
	int64_t t = 0;

	if (name == NULL || strlen(name) >= sizeof(d->name) ||
	    !(annotated_true(item, false, ST_CSI_DEFAULT_SC_ANN) ||
	      annotated_true(item, false, "storageclass.beta.kubernetes.io/is-default-class")))
		return 0;
	if (st_csi_parse_time(&t, st_json_get_str(md, "creationTimestamp")) < 0)
		t = 0; /* an unreadable time sorts as the oldest */
	/* Several defaults: the API server gives new claims the newest one, and so do we. */
	if (d->count++ == 0 || t > d->created || (t == d->created && strcmp(name, d->name) < 0)) {
		(void)snprintf(d->name, sizeof(d->name), "%s", name);
		d->created = t;
		json_object_put(d->obj);
		d->obj = json_object_get(item);
	}
	return 0;
}

/* The provisioner of the claim's StorageClass (class NULL: the default one). */
static int driver_from_class(char *out, size_t size, struct st_kube_client *c, const char *ns,
                             const char *pvc, const char *class, struct st_err *err)
{
	struct default_sc d = { "", 0, 0, NULL };
	struct json_object *sc = NULL;
	struct st_kube_gvr g;
	const char *prov;
	int rc = ST_EINTERNAL;

	if (class == NULL) {
		if (gvr_of(&g, R_SC) < 0)
			goto out;
		if ((rc = st_kube_list_items(NULL, c, &g, NULL, NULL, on_sc, &d, err)) < 0)
			goto out;
		if (d.count == 0) {
			rc = st_err_set(err, ST_EINVAL,
			                "claim %s/%s is not bound to a volume and names no "
			                "StorageClass, and no StorageClass is annotated %s=true: "
			                "cannot tell its CSI driver",
			                ns, pvc, ST_CSI_DEFAULT_SC_ANN);
			goto out;
		}
		/* The listing holds the whole class: no second request for it. */
		class = d.name;
		sc = d.obj;
		d.obj = NULL; /* transferred */
	} else if ((rc = get_obj(&sc, c, R_SC, NULL, class, err)) < 0) {
		st_err_prefix(err, "StorageClass of claim %s/%s", ns, pvc);
		goto out;
	}
	prov = st_json_get_str(sc, "provisioner");
	if (prov == NULL || prov[0] == '\0') {
		rc = st_err_set(err, ST_EINVAL,
		                "StorageClass %s (of claim %s/%s) has no provisioner", class, ns,
		                pvc);
		goto out;
	}
	rc = copy_out(out, size, prov, "provisioner", err);
out:
	json_object_put(d.obj);
	json_object_put(sc);
	return rc;
}

/*
 * The driver of the bound volume: 0 and out filled, 1 when the volume does
 * not exist (a claim pre-bound to a volume not created yet), < 0 on error.
 * On 0, *pv_out (when not NULL) receives the volume read.
 */
static int driver_from_volume(char *out, size_t size, struct json_object **pv_out,
                              struct st_kube_client *c, const char *ns, const char *pvc,
                              const char *volume, struct st_err *err)
{
	struct st_err e = ST_ERR_INIT;
	struct json_object *pv = NULL;
	const struct json_object *csi;
	const char *drv;
	int rc = ST_EINTERNAL;

	if ((rc = get_obj(&pv, c, R_PV, NULL, volume, &e)) == ST_ENOTFOUND) {
		rc = 1;
		goto out;
	}
	if (rc < 0) {
		rc = st_err_set(err, rc, "PersistentVolume %s of claim %s/%s: %s", volume, ns, pvc,
		                st_err_text(&e));
		goto out;
	}
	csi = st_json_get_obj(st_json_get_obj(pv, "spec"), "csi");
	drv = st_json_get_str(csi, "driver");
	if (drv == NULL || drv[0] == '\0') {
		rc = st_err_set(err, ST_EINVAL,
		                "PersistentVolume %s of claim %s/%s is not a CSI volume (no "
		                "spec.csi.driver), so it has no CSI snapshots: annotate the claim "
		                "%s=none to skip it",
		                volume, ns, pvc, ST_CSI_METHOD_ANN);
		goto out;
	}
	rc = copy_out(out, size, drv, "CSI driver", err);
	if (rc == 0 && pv_out != NULL) {
		*pv_out = pv;
		pv = NULL; /* transferred */
	}
out:
	json_object_put(pv);
	return rc;
}

int st_csi_driver_of(char *out, size_t size, struct st_kube_client *c, const char *ns,
                     const char *pvc, struct st_err *err)
{
	return st_csi_driver_and_volume(out, size, NULL, c, ns, pvc, err);
}

int st_csi_driver_and_volume(char *out, size_t size, struct json_object **volume_out,
                             struct st_kube_client *c, const char *ns, const char *pvc,
                             struct st_err *err)
{
	struct json_object *claim = NULL;
	const struct json_object *spec, *cls;
	const char *volume;
	int rc = ST_EINTERNAL;

	if (size > 0)
		out[0] = '\0';
	if (volume_out != NULL)
		*volume_out = NULL;
	if ((rc = get_obj(&claim, c, R_PVC, ns, pvc, err)) < 0)
		goto out;
	spec = st_json_get_obj(claim, "spec");
	volume = st_json_get_str(spec, "volumeName");
	if (volume != NULL && volume[0] != '\0') {
		rc = driver_from_volume(out, size, volume_out, c, ns, pvc, volume, err);
		if (rc <= 0)
			goto out;
	}
	cls = st_json_get(spec, "storageClassName");
	if (cls != NULL && json_object_is_type(cls, json_type_string) &&
	    json_object_get_string_len(cls) == 0) {
		/* "" asks for no class at all (static provisioning), unlike an absent field. */
		rc = st_err_set(err, ST_EINVAL,
		                "claim %s/%s is not bound to a volume and has no StorageClass "
		                "(storageClassName is \"\"): cannot tell its CSI driver",
		                ns, pvc);
		goto out;
	}
	rc = driver_from_class(out, size, c, ns, pvc, st_json_get_str(spec, "storageClassName"),
	                       err);
out:
	json_object_put(claim);
	return rc;
}

/* ---- class ------------------------------------------------------------------------------ */

/* Names of up to a few classes, for messages. */
struct names {
	unsigned n;
	char text[160];
	char first[254];
};

static void names_add(struct names *l, const char *name)
{
	size_t used = strlen(l->text);

	if (l->n == 0)
		(void)snprintf(l->first, sizeof(l->first), "%s", name);
	if (l->n < 4)
		(void)snprintf(l->text + used, sizeof(l->text) - used, "%s%s", l->n ? ", " : "",
		               name);
	else if (l->n == 4)
		(void)snprintf(l->text + used, sizeof(l->text) - used, ", ...");
	l->n++;
}

int st_csi_choose_class(char *out, size_t size, const struct json_object *classes,
                        const char *driver, struct st_err *err)
{
	struct names all = { 0, "", "" }, labelled = all, defaults = all;
	size_t i, n;

	if (size > 0)
		out[0] = '\0';
	if (classes == NULL || !json_object_is_type(classes, json_type_array))
		return st_err_set(err, ST_EINVAL, "VolumeSnapshotClasses: not a list");
	n = json_object_array_length(classes);
	for (i = 0; i < n; i++) {
		const struct json_object *it = json_object_array_get_idx(classes, i);
		const char *d = st_json_get_str(it, "driver");
		const char *name = st_json_get_str(st_json_get_obj(it, "metadata"), "name");

		if (d == NULL || name == NULL || strcmp(d, driver) != 0)
			continue;
		names_add(&all, name);
		if (annotated_true(it, true, ST_CSI_CLASS_LABEL))
			names_add(&labelled, name);
		if (annotated_true(it, false, ST_CSI_DEFAULT_ANN))
			names_add(&defaults, name);
	}
	if (labelled.n > 1)
		return st_err_set(err, ST_EINVAL,
		                  "VolumeSnapshotClasses %s of CSI driver %s are all labelled "
		                  "%s=true: keep the label on one",
		                  labelled.text, driver, ST_CSI_CLASS_LABEL);
	if (labelled.n == 1)
		return copy_out(out, size, labelled.first, "VolumeSnapshotClass", err);
	if (defaults.n > 1)
		return st_err_set(
		        err, ST_EINVAL,
		        "VolumeSnapshotClasses %s of CSI driver %s are all annotated %s=true: "
		        "label the one to use %s=true",
		        defaults.text, driver, ST_CSI_DEFAULT_ANN, ST_CSI_CLASS_LABEL);
	if (defaults.n == 1 || all.n == 1)
		return copy_out(out, size, defaults.n ? defaults.first : all.first,
		                "VolumeSnapshotClass", err);
	if (all.n == 0)
		return st_err_set(
		        err, ST_ENOTFOUND,
		        "no VolumeSnapshotClass for CSI driver %s: create one with driver: "
		        "%s and label it %s=true",
		        driver, driver, ST_CSI_CLASS_LABEL);
	return st_err_set(
	        err, ST_EINVAL,
	        "CSI driver %s has several VolumeSnapshotClasses (%s) and none is chosen: "
	        "label the one to use %s=true",
	        driver, all.text, ST_CSI_CLASS_LABEL);
}

static int collect(struct json_object *item, void *payload)
{
	json_object_array_add(payload, json_object_get(item));
	return 0;
}

int st_csi_pick_class(char *out, size_t size, struct st_kube_client *c, const char *driver,
                      struct st_err *err)
{
	struct json_object *arr = json_object_new_array();
	struct st_kube_gvr g;
	int rc = ST_EINTERNAL;

	if (size > 0)
		out[0] = '\0';
	if (arr == NULL) {
		rc = st_err_set(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	if (gvr_of(&g, R_VSCLASS) < 0)
		goto out;
	if ((rc = st_kube_list_items(NULL, c, &g, NULL, NULL, collect, arr, err)) < 0) {
		st_err_prefix(err, "VolumeSnapshotClasses for CSI driver %s", driver);
		goto out;
	}
	rc = st_csi_choose_class(out, size, arr, driver, err);
out:
	json_object_put(arr);
	return rc;
}

/* ---- create and delete ------------------------------------------------------------------ */

/* A label value: at most 63 of [A-Za-z0-9._-], starting and ending alphanumeric. */
static bool label_value_ok(const char *v)
{
	size_t i, n = strlen(v);

	if (n == 0)
		return true;
	if (n > 63 || !isalnum((unsigned char)v[0]) || !isalnum((unsigned char)v[n - 1]))
		return false;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)v[i]) && strchr("-_.", v[i]) == NULL)
			return false;
	return true;
}

static struct json_object *snapshot_object(const struct st_csi_snap *s)
{
	struct json_object *o = json_object_new_object(), *md = json_object_new_object();
	struct json_object *spec = json_object_new_object(), *src = json_object_new_object();
	struct json_object *labels = json_object_new_object();

	if (o == NULL || md == NULL || spec == NULL || src == NULL || labels == NULL) {
		json_object_put(o);
		json_object_put(md);
		json_object_put(spec);
		json_object_put(src);
		json_object_put(labels);
		return NULL;
	}
	st_json_add_str(o, "apiVersion", SNAP_GROUP "/v1");
	st_json_add_str(o, "kind", "VolumeSnapshot");
	st_json_add_str(md, "name", s->name);
	st_json_add_str(md, "namespace", s->namespace);
	if (s->backup[0] != '\0') {
		st_json_add_str(labels, ST_CSI_BACKUP_LABEL, s->backup);
		json_object_object_add(md, "labels", labels);
	} else {
		json_object_put(labels);
	}
	json_object_object_add(o, "metadata", md);
	st_json_add_str(spec, "volumeSnapshotClassName", s->cls);
	st_json_add_str(src, "persistentVolumeClaimName", s->pvc);
	json_object_object_add(spec, "source", src);
	json_object_object_add(o, "spec", spec);
	return o;
}

static void reset_status(struct st_csi_snap *s)
{
	s->content[0] = '\0';
	s->created_ns = 0;
	s->ready = false;
	s->restore_size = -1;
	s->error[0] = '\0';
}

static int create_snapshot(struct st_csi_snap *s, struct st_kube_client *c, const char *backup,
                           struct st_err *e)
{
	struct json_object *obj = NULL;
	struct st_kube_gvr g;
	int rc = ST_EINTERNAL;

	if (s->namespace[0] == '\0' || s->pvc[0] == '\0' || s->name[0] == '\0')
		return st_err_set(e, ST_EINVAL,
		                  "a VolumeSnapshot needs a namespace, claim and name");
	if (backup != NULL && !label_value_ok(backup))
		return st_err_set(e, ST_EINVAL,
		                  "backup name \"%.80s\" is not a valid value for the label %s (at "
		                  "most 63 letters, digits, '-', '_' or '.')",
		                  backup, ST_CSI_BACKUP_LABEL);
	(void)snprintf(s->backup, sizeof(s->backup), "%s", backup ? backup : "");
	if (s->cls[0] == '\0') {
		if ((rc = st_csi_driver_of(s->driver, sizeof(s->driver), c, s->namespace, s->pvc,
		                           e)) < 0 ||
		    (rc = st_csi_pick_class(s->cls, sizeof(s->cls), c, s->driver, e)) < 0)
			return rc;
	}
	if ((obj = snapshot_object(s)) == NULL)
		return st_err_set(e, ST_ENOMEM, "out of memory");
	if (gvr_of(&g, R_VS) < 0)
		goto out;
	rc = st_kube_create(NULL, c, &g, s->namespace, obj, NULL, e);
out:
	json_object_put(obj);
	return rc;
}

int st_csi_create(struct st_csi_snap *s, struct st_kube_client *c, const char *backup,
                  struct st_err *err)
{
	struct st_err e = ST_ERR_INIT;
	int rc;

	reset_status(s);
	rc = create_snapshot(s, c, backup, &e);
	if (rc < 0) {
		st_err_prefix(&e, "snapshot %s/%s of claim %s", s->namespace, s->name, s->pvc);
		(void)snprintf(s->error, sizeof(s->error), "%s", st_err_text(&e));
		return st_err_set(err, rc, "%s", st_err_text(&e));
	}
	st_log_info("csi: created VolumeSnapshot %s/%s of claim %s (class %s)", s->namespace,
	            s->name, s->pvc, s->cls);
	return 0;
}

int st_csi_delete(const struct st_csi_snap *s, struct st_kube_client *c, struct st_err *err)
{
	struct st_err e = ST_ERR_INIT;
	struct st_kube_gvr g;
	int rc;

	if (gvr_of(&g, R_VS) < 0)
		return st_err_set(err, ST_EINTERNAL, "csi: bad resource table");
	rc = st_kube_delete(NULL, c, &g, s->namespace, s->name, NULL, NULL, &e);
	if (rc == ST_ENOTFOUND)
		return 0;
	if (rc < 0)
		return st_err_set(err, rc, "delete VolumeSnapshot %s/%s: %s", s->namespace, s->name,
		                  st_err_text(&e));
	return 0;
}

/* ---- waiting ---------------------------------------------------------------------------- */

enum phase { PHASE_CUT, PHASE_READY };

static bool done(const struct st_csi_snap *s, enum phase ph)
{
	return is_failed(s) || (ph == PHASE_CUT ? is_cut(s) : s->ready);
}

/* The snapshots of one namespace and the watch that follows them. */
struct group {
	struct st_csi_snap *snaps;
	size_t *idx; /* indexes into snaps, all in namespace ns */
	bool *seen;  /* present in the current list */
	size_t count;
	const char *ns;
	enum phase ph;
	struct st_kube_client *c;
	uint64_t duration_ms;
	atomic_bool *cancel;
	char selector[400];
	bool by_name;
	pthread_t th;
	bool started;
	int rc;
	struct st_err err;
};

static bool group_done(const struct group *g)
{
	size_t i;

	for (i = 0; i < g->count; i++)
		if (!done(&g->snaps[g->idx[i]], g->ph))
			return false;
	return true;
}

/* Applies an ADDED, MODIFIED or DELETED object to every entry that names it. */
static void group_apply(struct group *g, enum st_kube_event_type t, const struct json_object *obj)
{
	const char *name = st_json_get_str(st_json_get_obj(obj, "metadata"), "name");
	size_t i;

	for (i = 0; name != NULL && i < g->count; i++) {
		struct st_csi_snap *s = &g->snaps[g->idx[i]];

		if (strcmp(s->name, name) != 0)
			continue;
		if (t != ST_KUBE_EVENT_DELETED) {
			g->seen[i] = true;
			st_csi_read_status(s, obj);
		} else if (!done(s, g->ph)) {
			(void)snprintf(s->error, sizeof(s->error),
			               "VolumeSnapshot %s/%s was deleted while waiting for it",
			               s->namespace, s->name);
		}
	}
}

/* After a complete list, a snapshot that was not in it does not exist. */
static void mark_missing(struct group *g)
{
	size_t i;

	for (i = 0; i < g->count; i++) {
		struct st_csi_snap *s = &g->snaps[g->idx[i]];

		if (!g->seen[i] && !done(s, g->ph))
			(void)snprintf(s->error, sizeof(s->error),
			               "VolumeSnapshot %s/%s does not exist", s->namespace,
			               s->name);
	}
}

static int on_event(enum st_kube_event_type t, struct json_object *obj, void *payload)
{
	struct group *g = payload;

	switch (t) {
	case ST_KUBE_EVENT_RELIST:
		memset(g->seen, 0, g->count * sizeof(g->seen[0]));
		return 0;
	case ST_KUBE_EVENT_SYNCED:
		mark_missing(g);
		break;
	case ST_KUBE_EVENT_ADDED:
	case ST_KUBE_EVENT_MODIFIED:
	case ST_KUBE_EVENT_DELETED:
		group_apply(g, t, obj);
		break;
	default:
		return 0;
	}
	return group_done(g) ? 1 : 0;
}

static void *group_main(void *arg)
{
	struct group *g = arg;
	struct st_kube_watch_options wo = ST_KUBE_WATCH_OPTIONS_INIT;
	struct st_kube_gvr gvr;
	uint64_t conn_s = g->duration_ms / 1000u + 1u;

	if (g->selector[0] != '\0') {
		if (g->by_name)
			wo.field_selector = g->selector;
		else
			wo.label_selector = g->selector;
	}
	/* The server ends the stream near the deadline too, so no connection outlives it. */
	wo.timeout_s = conn_s < WATCH_CONN_S ? (unsigned)conn_s : WATCH_CONN_S;
	wo.cancel = g->cancel;
	wo.duration_ms = g->duration_ms;
	wo.bookmarks = false;
	if (gvr_of(&gvr, R_VS) < 0) {
		g->rc = st_err_set(&g->err, ST_EINTERNAL, "csi: bad resource table");
	} else {
		g->rc = st_kube_watch(g->c, &gvr, g->ns, &wo, on_event, g, &g->err);
		if (g->rc < 0)
			st_err_prefix(&g->err, "watching VolumeSnapshots in namespace %s", g->ns);
	}
	if (g->rc < 0)
		atomic_store(g->cancel, true);
	return NULL;
}

/*
 * A name selector when the namespace has one snapshot, the backup label when
 * all of them carry the same one, otherwise every snapshot of the namespace.
 */
static void group_selector(struct group *g)
{
	const struct st_csi_snap *first = &g->snaps[g->idx[0]];
	size_t i;

	if (g->count == 1) {
		g->by_name = true;
		(void)snprintf(g->selector, sizeof(g->selector), "metadata.name=%s", first->name);
		return;
	}
	for (i = 1; i < g->count; i++)
		if (strcmp(g->snaps[g->idx[i]].backup, first->backup) != 0)
			return;
	if (first->backup[0] != '\0')
		(void)snprintf(g->selector, sizeof(g->selector), "%s=%s", ST_CSI_BACKUP_LABEL,
		               first->backup);
}

/* Groups the snapshots not done yet by namespace; returns the number of groups. */
static size_t make_groups(struct group *groups, size_t *idx, bool *seen, struct st_csi_snap *snaps,
                          size_t n, enum phase ph)
{
	size_t ng = 0, i, j, used = 0;

	for (i = 0; i < n; i++) {
		if (done(&snaps[i], ph))
			continue;
		for (j = 0; j < ng; j++)
			if (strcmp(groups[j].ns, snaps[i].namespace) == 0)
				break;
		if (j == ng) {
			groups[ng].ns = snaps[i].namespace;
			ng++;
		}
	}
	/* Lay the indexes out namespace by namespace so that each group owns a slice. */
	for (j = 0; j < ng; j++) {
		groups[j].snaps = snaps;
		groups[j].idx = idx + used;
		groups[j].seen = seen + used;
		groups[j].ph = ph;
		for (i = 0; i < n; i++)
			if (!done(&snaps[i], ph) && strcmp(groups[j].ns, snaps[i].namespace) == 0)
				groups[j].idx[groups[j].count++] = i;
		used += groups[j].count;
		group_selector(&groups[j]);
	}
	return ng;
}

static int timed_out(struct st_csi_snap *snaps, size_t n, enum phase ph, int64_t timeout_ms,
                     struct st_err *err)
{
	struct names late = { 0, "", "" };
	char full[520];
	size_t i;

	for (i = 0; i < n; i++) {
		if (done(&snaps[i], ph))
			continue;
		(void)snprintf(full, sizeof(full), "%s/%s", snaps[i].namespace, snaps[i].name);
		names_add(&late, full);
	}
	if (late.n == 0)
		return 0;
	return st_err_set(err, ST_ETIMEDOUT, "%u VolumeSnapshot%s not %s after %lld ms: %s", late.n,
	                  late.n == 1 ? "" : "s", ph == PHASE_CUT ? "cut" : "ready to use",
	                  (long long)timeout_ms, late.text);
}

static int wait_all(struct st_csi_snap *snaps, size_t n, struct st_kube_client *c,
                    int64_t timeout_ms, enum phase ph, struct st_err *err)
{
	struct group *groups = NULL;
	size_t *idx = NULL, ng, j;
	bool *seen = NULL;
	atomic_bool cancel = false;
	int rc = ST_EINTERNAL;

	if (timeout_ms <= 0)
		return st_err_set(err, ST_EINVAL,
		                  "waiting for VolumeSnapshots: timeout must be > 0");
	if (n == 0)
		return 0;
	groups = st_xcalloc(n, sizeof(*groups));
	idx = st_xcalloc(n, sizeof(*idx));
	seen = st_xcalloc(n, sizeof(*seen));
	ng = make_groups(groups, idx, seen, snaps, n, ph);
	for (j = 0; j < ng; j++) {
		groups[j].c = c;
		groups[j].duration_ms = (uint64_t)timeout_ms;
		groups[j].cancel = &cancel;
		st_err_clear(&groups[j].err);
		if (pthread_create(&groups[j].th, NULL, group_main, &groups[j]) != 0) {
			atomic_store(&cancel, true);
			rc = st_err_set(err, ST_ENOMEM,
			                "cannot start a thread to watch namespace %s",
			                groups[j].ns);
			break;
		}
		groups[j].started = true;
	}
	for (j = 0; j < ng; j++)
		if (groups[j].started)
			(void)pthread_join(groups[j].th, NULL);
	if (j == ng && rc == ST_EINTERNAL)
		rc = 0;
	for (j = 0; rc == 0 && j < ng; j++)
		if (groups[j].rc < 0)
			rc = st_err_set(err, groups[j].rc, "%s", st_err_text(&groups[j].err));
	if (rc == 0)
		rc = timed_out(snaps, n, ph, timeout_ms, err);
	free(groups);
	free(idx);
	free(seen);
	return rc;
}

int st_csi_wait_cut(struct st_csi_snap *snaps, size_t n, struct st_kube_client *c,
                    int64_t timeout_ms, struct st_err *err)
{
	return wait_all(snaps, n, c, timeout_ms, PHASE_CUT, err);
}

/* Reads the precise creation time and size from each ready snapshot's content. */
static void read_contents(struct st_csi_snap *snaps, size_t n, struct st_kube_client *c)
{
	size_t i;

	for (i = 0; i < n; i++) {
		struct st_csi_snap *s = &snaps[i];
		struct json_object *vsc = NULL;
		struct st_err e = ST_ERR_INIT;

		if (!s->ready || is_failed(s) || s->content[0] == '\0')
			continue;
		if (get_obj(&vsc, c, R_VSC, NULL, s->content, &e) == 0)
			st_csi_read_status(s, vsc);
		else
			st_log_debug("csi: VolumeSnapshotContent %s of %s/%s: %s (keeping the "
			             "snapshot's own time)",
			             s->content, s->namespace, s->name, st_err_text(&e));
		json_object_put(vsc);
	}
}

int st_csi_wait_ready(struct st_csi_snap *snaps, size_t n, struct st_kube_client *c,
                      int64_t timeout_ms, struct st_err *err)
{
	int rc = wait_all(snaps, n, c, timeout_ms, PHASE_READY, err);

	if (rc == 0 || rc == ST_ETIMEDOUT)
		read_contents(snaps, n, c);
	return rc;
}
