#include "pkg/backup.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "pkg/archive.h"
#include "pkg/kube.h"
#include "pkg/runlog.h"
#include "pkg/store.h"
#include "pkg/util/buf.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

/* A tar entry name, a label selector, a group-qualified resource name. */
#define NAME_CAP     1024u
#define SELECTOR_CAP 8192u
/* Resource types one discovery may report. */
#define TYPES_MAX 2048u

enum cluster_mode {
	CLUSTER_RELATED = 0, /* only what the namespaced objects need */
	CLUSTER_ALL,
	CLUSTER_NONE,
};

struct engine {
	struct st_kube_client *c;
	struct st_store *s;
	struct json_object *backup; /* borrowed; status filled in at the end */
	const struct st_backup_options *opts;
	const char *name;
	const char *bns; /* the Backup's own namespace, for log lines */
	struct json_object *spec;
	struct json_object *incl_ns; /* borrowed JSON arrays, may be NULL */
	struct json_object *excl_ns;
	struct json_object *incl_res; /* set of "resource.group" names; NULL: all */
	struct json_object *excl_res; /* set, never NULL */
	enum cluster_mode cluster;
	char selector[SELECTOR_CAP];
	struct st_kube_gvr *types;
	size_t ntypes;
	struct json_object *namespaces; /* in-scope Namespace objects by name */
	const char *single_ns;          /* list namespaced types only here, or NULL */
	struct json_object *pv_names;   /* set: volumes bound to included claims */
	struct json_object *crd_names;  /* set: "plural.group" of included custom resources */
	struct json_object *reslist;    /* "apps/v1/Deployment" -> ["ns/name", ...] */
	FILE *tar;                      /* the compressed tarball, spooled */
	struct st_archive_writer *w;
	struct st_runlog log; /* with the counts of errors and warnings */
	unsigned total;
	unsigned done;
	long long now;
	long long start_ms; /* monotonic, for the duration in the last log line */
	bool cancelled;
	char fatal[ST_ERR_MSG_SIZE]; /* first fatal failure; "" when none */
};

/* ---- small pure helpers ----------------------------------------------------------------- */

int st_backup_parse_duration(long long *out, const char *text)
{
	static const struct {
		const char *unit;
		double secs;
	} units[] = {
		{ "ns", 1e-9 }, { "us", 1e-6 }, { "ms", 1e-3 },
		{ "s", 1 },     { "m", 60 },    { "h", 3600 },
	};
	const char *p = text;
	double total = 0;

	*out = 0;
	if (text == NULL || *text == '\0')
		return ST_EINVAL;
	if (strcmp(text, "0") == 0)
		return 0;
	while (*p != '\0') {
		char *end = NULL;
		double v;
		size_t i, best = 0, best_len = 0;

		if ((*p < '0' || *p > '9') && *p != '.')
			return ST_EINVAL;
		errno = 0;
		v = strtod(p, &end);
		if (errno != 0 || end == p)
			return ST_EINVAL;
		p = end;
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			size_t l = strlen(units[i].unit);

			if (strncmp(p, units[i].unit, l) == 0 && l > best_len) {
				best = i;
				best_len = l;
			}
		}
		/* "m" must not swallow the "m" of "ms". */
		if (best_len == 0 || (p[0] == 'm' && p[1] == 's' && best_len == 1))
			return ST_EINVAL;
		total += v * units[best].secs;
		p += best_len;
	}
	if (total > 9.0e15)
		return ST_EINVAL;
	*out = (long long)total;
	return 0;
}

void st_backup_format_time(char *buf, size_t size, long long t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
		if (size > 0)
			buf[0] = '\0';
	}
}

static int put_values(struct st_buf *b, struct json_object *values)
{
	size_t i, n = json_object_array_length(values);
	int rc = st_buf_puts(b, " (");

	for (i = 0; rc == 0 && i < n; i++) {
		const char *v = json_object_get_string(json_object_array_get_idx(values, i));

		rc = st_buf_printf(b, "%s%s", i ? "," : "", v ? v : "");
	}
	return rc ? rc : st_buf_puts(b, ")");
}

static int put_expression(struct st_buf *b, struct json_object *e, struct st_err *err)
{
	const char *key = st_json_get_str(e, "key");
	const char *op = st_json_get_str(e, "operator");
	struct json_object *values = st_json_get_arr(e, "values");
	int rc;

	if (key == NULL || op == NULL)
		return st_err_set(err, ST_EINVAL,
		                  "labelSelector.matchExpressions: an entry lacks key or operator");
	if (b->len > 0 && (rc = st_buf_putc(b, ',')) < 0)
		return rc;
	if (strcmp(op, "Exists") == 0)
		return st_buf_puts(b, key);
	if (strcmp(op, "DoesNotExist") == 0)
		return st_buf_printf(b, "!%s", key);
	if (strcmp(op, "In") != 0 && strcmp(op, "NotIn") != 0)
		return st_err_set(err, ST_EINVAL,
		                  "labelSelector.matchExpressions: unknown operator \"%s\"", op);
	if (values == NULL || json_object_array_length(values) == 0)
		return st_err_set(err, ST_EINVAL,
		                  "labelSelector.matchExpressions: %s on \"%s\" needs values", op,
		                  key);
	if ((rc = st_buf_printf(b, "%s %s", key, op[0] == 'I' ? "in" : "notin")) < 0)
		return rc;
	return put_values(b, values);
}

int st_backup_selector_string(char *buf, size_t size, struct json_object *selector,
                              struct st_err *err)
{
	struct json_object *ml = st_json_get_obj(selector, "matchLabels");
	struct json_object *me = st_json_get_arr(selector, "matchExpressions");
	struct st_buf b;
	size_t i;
	int rc = 0;

	st_buf_init(&b, size);
	if (ml != NULL) {
		json_object_object_foreach(ml, k, v)
		{
			if (rc == 0)
				rc = st_buf_printf(&b, "%s%s=%s", b.len ? "," : "", k,
				                   json_object_get_string(v));
		}
	}
	for (i = 0; rc == 0 && me != NULL && i < json_object_array_length(me); i++)
		rc = put_expression(&b, json_object_array_get_idx(me, i), err);
	if (rc == ST_ETOOBIG)
		rc = st_err_set(err, rc, "labelSelector: longer than %zu bytes", size);
	if (rc == 0 && b.len + 1 > size)
		rc = st_err_set(err, ST_ETOOBIG, "labelSelector: longer than %zu bytes", size);
	if (rc == 0) {
		if (b.len > 0)
			memcpy(buf, b.ptr, b.len);
		buf[b.len] = '\0';
	}
	st_buf_dispose(&b);
	return rc;
}

static bool glob_list_match(struct json_object *list, const char *name, bool empty_means_all)
{
	size_t i, n = list ? json_object_array_length(list) : 0;

	if (n == 0)
		return empty_means_all;
	for (i = 0; i < n; i++) {
		const char *g = json_object_get_string(json_object_array_get_idx(list, i));

		if (g != NULL && fnmatch(g, name, 0) == 0)
			return true;
	}
	return false;
}

bool st_backup_namespace_in_scope(struct json_object *included, struct json_object *excluded,
                                  const char *ns)
{
	return glob_list_match(included, ns, true) && !glob_list_match(excluded, ns, false);
}

int st_backup_validate_lists(struct json_object *included, struct json_object *excluded,
                             const char *what, struct st_err *err)
{
	size_t i, j, ni = included ? json_object_array_length(included) : 0;
	size_t ne = excluded ? json_object_array_length(excluded) : 0;

	for (j = 0; j < ne; j++) {
		const char *x = json_object_get_string(json_object_array_get_idx(excluded, j));

		if (x == NULL || x[0] == '\0')
			return st_err_set(err, ST_EINVAL, "spec.excluded%s: an empty entry", what);
		if (strcmp(x, "*") == 0)
			return st_err_set(err, ST_EINVAL,
			                  "spec.excluded%s: \"*\" would exclude everything", what);
		for (i = 0; i < ni; i++) {
			const char *n =
			        json_object_get_string(json_object_array_get_idx(included, i));

			if (n != NULL && strcmp(n, x) == 0)
				return st_err_set(
				        err, ST_EINVAL,
				        "spec.included%s and spec.excluded%s both name \"%s\"",
				        what, what, x);
		}
	}
	return 0;
}

bool st_backup_name_usable(const char *s)
{
	return s != NULL && s[0] != '\0' && strchr(s, '/') == NULL && strcmp(s, ".") != 0 &&
	       strcmp(s, "..") != 0;
}

int st_backup_entry_names(char *plain, char *preferred, size_t size, const char *gr,
                          const char *version, const char *ns, const char *name)
{
	char scope[NAME_CAP];
	int n1, n2;

	if (!st_backup_name_usable(gr) || !st_backup_name_usable(version) ||
	    !st_backup_name_usable(name) ||
	    (ns != NULL && ns[0] != '\0' && !st_backup_name_usable(ns)))
		return ST_EINVAL;
	if (ns != NULL && ns[0] != '\0')
		n1 = snprintf(scope, sizeof(scope), "namespaces/%s/%s.json", ns, name);
	else
		n1 = snprintf(scope, sizeof(scope), "cluster/%s.json", name);
	if (n1 < 0 || (size_t)n1 >= sizeof(scope))
		return ST_ETOOBIG;
	n1 = snprintf(plain, size, "resources/%s/%s", gr, scope);
	n2 = snprintf(preferred, size, "resources/%s/%s-preferredversion/%s", gr, version, scope);
	if (n1 < 0 || n2 < 0 || (size_t)n1 >= size || (size_t)n2 >= size)
		return ST_ETOOBIG;
	return 0;
}

/* ---- the backup's log ------------------------------------------------------------------- */

/* Counts and logs a warning or an error of the backup. */
static void note(struct engine *e, bool is_error, const char *fmt, ...) ST_PRINTF(3, 4);

static void note(struct engine *e, bool is_error, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	st_runlog_note(&e->log, is_error, msg);
}

static long long mono_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_fatal(struct engine *e, const char *what, const struct st_err *err)
{
	if (e->fatal[0] == '\0')
		(void)snprintf(e->fatal, sizeof(e->fatal), "%s: %s", what, st_err_text(err));
	st_runlog_add(&e->log, "error", "%s: %s", what, st_err_text(err));
}

/* ---- scope ------------------------------------------------------------------------------ */

static void set_add(struct json_object *set, const char *key)
{
	if (!json_object_object_get_ex(set, key, NULL))
		json_object_object_add(set, key, NULL);
}

static bool set_has(struct json_object *set, const char *key)
{
	return set != NULL && json_object_object_get_ex(set, key, NULL);
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

/* Resolves resource names as kubectl does into a set of group-qualified names. */
static struct json_object *resolve_names(struct engine *e, struct json_object *list,
                                         const char *field)
{
	struct json_object *set = json_object_new_object();
	size_t i, n = list ? json_object_array_length(list) : 0;

	for (i = 0; i < n; i++) {
		const char *s = json_object_get_string(json_object_array_get_idx(list, i));
		struct st_err err = { 0 };
		struct st_kube_gvr gvr;
		char gr[NAME_CAP];

		if (s == NULL || s[0] == '\0' || strcmp(s, "*") == 0)
			continue;
		if (st_kube_resolve(&gvr, e->c, s, &err) < 0) {
			note(e, false, "%s: %s", field, st_err_text(&err));
			continue;
		}
		st_kube_gvr_name(gr, sizeof(gr), &gvr);
		set_add(set, gr);
	}
	return set;
}

static int parse_spec(struct engine *e, struct st_err *err)
{
	struct json_object *sel = st_json_get_obj(e->spec, "labelSelector");
	struct json_object *icr = NULL;
	struct json_object *incl = st_json_get_arr(e->spec, "includedResources");
	size_t nin;

	e->incl_ns = st_json_get_arr(e->spec, "includedNamespaces");
	e->excl_ns = st_json_get_arr(e->spec, "excludedNamespaces");
	e->selector[0] = '\0';
	if (sel != NULL &&
	    st_backup_selector_string(e->selector, sizeof(e->selector), sel, err) < 0)
		return ST_EINVAL;
	nin = e->incl_ns ? json_object_array_length(e->incl_ns) : 0;
	if (json_object_object_get_ex(e->spec, "includeClusterResources", &icr) && icr != NULL)
		e->cluster = json_object_get_boolean(icr) ? CLUSTER_ALL : CLUSTER_NONE;
	else if ((nin == 0 || list_has_star(e->incl_ns)) &&
	         (e->excl_ns == NULL || json_object_array_length(e->excl_ns) == 0))
		e->cluster =
		        CLUSTER_ALL; /* Velero: unset + every namespace = all cluster objects */
	else
		e->cluster = CLUSTER_RELATED;
	if (incl != NULL && json_object_array_length(incl) > 0 && !list_has_star(incl))
		e->incl_res = resolve_names(e, incl, "includedResources");
	e->excl_res = resolve_names(e, st_json_get_arr(e->spec, "excludedResources"),
	                            "excludedResources");
	/* A single literal namespace is listed in place: one request per type, no filtering. */
	if (nin == 1 && !list_has_star(e->incl_ns)) {
		const char *ns = json_object_get_string(json_object_array_get_idx(e->incl_ns, 0));

		if (ns != NULL && strpbrk(ns, "*?[") == NULL)
			e->single_ns = ns;
	}
	return 0;
}

static bool resource_wanted(const struct engine *e, const char *gr)
{
	if (set_has(e->excl_res, gr))
		return false;
	return e->incl_res == NULL || set_has(e->incl_res, gr);
}

static int collect_type(const struct st_kube_gvr *gvr, void *payload)
{
	struct engine *e = payload;

	if ((gvr->verbs & ST_KUBE_CAN_LIST) == 0 || e->ntypes >= TYPES_MAX)
		return 0;
	e->types[e->ntypes++] = *gvr;
	return 0;
}

/* ---- writing items ---------------------------------------------------------------------- */

static int tar_write(const void *buf, size_t n, void *payload)
{
	FILE *f = payload;

	if (fwrite(buf, 1, n, f) != n)
		return ST_EIO;
	return 0;
}

static void reslist_add(struct engine *e, const struct st_kube_gvr *gvr, const char *ns,
                        const char *name)
{
	struct json_object *arr = NULL;
	char key[600];
	char entry[600];

	if (gvr->group[0] != '\0')
		(void)snprintf(key, sizeof(key), "%s/%s/%s", gvr->group, gvr->version, gvr->kind);
	else
		(void)snprintf(key, sizeof(key), "%s/%s", gvr->version, gvr->kind);
	if (ns != NULL && ns[0] != '\0')
		(void)snprintf(entry, sizeof(entry), "%s/%s", ns, name);
	else
		(void)snprintf(entry, sizeof(entry), "%s", name);
	if (!json_object_object_get_ex(e->reslist, key, &arr)) {
		arr = json_object_new_array();
		json_object_object_add(e->reslist, key, arr);
	}
	json_object_array_add(arr, json_object_new_string(entry));
}

/* Built-in groups: anything else in a backup is a custom resource whose CRD goes along. */
static bool builtin_group(const char *g)
{
	static const char *const groups[] = { "",       "apps",      "batch", "autoscaling",
		                              "policy", "extensions" };
	size_t i, l = strlen(g);

	for (i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
		if (strcmp(g, groups[i]) == 0)
			return true;
	return l > 7 && strcmp(g + l - 7, ".k8s.io") == 0;
}

/* Writes one object (both directories), records it, and notes what it needs. */
static int write_item(struct engine *e, const struct st_kube_gvr *gvr, const char *gr,
                      struct json_object *item)
{
	struct json_object *md = st_json_get_obj(item, "metadata");
	const char *ns = gvr->namespaced ? st_json_get_str(md, "namespace") : NULL;
	const char *name = st_json_get_str(md, "name");
	char plain[NAME_CAP], pref[NAME_CAP + 128];
	struct st_archive_meta meta = ST_ARCHIVE_META_INIT;
	struct st_err err = { 0 };
	const char *text;
	size_t len = 0;
	int rc;

	if (st_backup_entry_names(plain, pref, sizeof(plain), gr, gvr->version, ns, name) < 0) {
		note(e, true, "%s: cannot store an object named \"%s\"", gr, name ? name : "");
		return 0;
	}
	text = st_json_to_string(item, &len);
	meta.mtime = e->now;
	if ((rc = st_archive_writer_add_file(e->w, plain, &meta, text, len, &err)) < 0 ||
	    (rc = st_archive_writer_add_file(e->w, pref, &meta, text, len, &err)) < 0) {
		set_fatal(e, "writing the tarball", &err);
		return rc;
	}
	reslist_add(e, gvr, ns, name);
	e->done++;
	if (strcmp(gr, "persistentvolumeclaims") == 0) {
		const char *vol = st_json_get_str(st_json_get_obj(item, "spec"), "volumeName");

		if (vol != NULL && vol[0] != '\0')
			set_add(e->pv_names, vol);
	}
	if (!builtin_group(gvr->group)) {
		char crd[NAME_CAP];

		(void)snprintf(crd, sizeof(crd), "%s.%s", gvr->resource, gvr->group);
		set_add(e->crd_names, crd);
	}
	return 0;
}

enum pick {
	PICK_SCOPE = 0, /* namespaced: in-scope namespaces; cluster: every object */
	PICK_PV,        /* only names in pv_names */
	PICK_CRD,       /* only names in crd_names */
	PICK_NS,        /* namespaces: in scope (recorded in e->namespaces) */
};

struct list_ctx {
	struct engine *e;
	const struct st_kube_gvr *gvr;
	const char *gr;
	enum pick pick;
	int rc;
};

static bool picked(const struct list_ctx *l, struct json_object *item)
{
	const char *ns = st_json_get_str(st_json_get_obj(item, "metadata"), "namespace");
	const char *name = st_json_get_str(st_json_get_obj(item, "metadata"), "name");

	if (name == NULL)
		return false;
	switch (l->pick) {
	case PICK_PV:
		return set_has(l->e->pv_names, name);
	case PICK_CRD:
		return set_has(l->e->crd_names, name);
	case PICK_NS:
		if (!st_backup_namespace_in_scope(l->e->incl_ns, l->e->excl_ns, name))
			return false;
		set_add(l->e->namespaces, name);
		return !set_has(l->e->excl_res, "namespaces");
	case PICK_SCOPE:
	default:
		break;
	}
	if (!l->gvr->namespaced || l->e->single_ns != NULL)
		return true;
	return ns != NULL && set_has(l->e->namespaces, ns);
}

static int on_page(struct json_object *list, void *payload)
{
	struct list_ctx *l = payload;
	struct engine *e = l->e;
	struct json_object *items = st_json_get_arr(list, "items");
	size_t i, n = items ? json_object_array_length(items) : 0;
	char api_version[400];
	int rc;

	if (e->opts->cancel != NULL && atomic_load(e->opts->cancel)) {
		e->cancelled = true;
		return 1;
	}
	if (l->gvr->group[0] != '\0')
		(void)snprintf(api_version, sizeof(api_version), "%s/%s", l->gvr->group,
		               l->gvr->version);
	else
		(void)snprintf(api_version, sizeof(api_version), "%s", l->gvr->version);
	for (i = 0; i < n; i++) {
		struct json_object *it = json_object_array_get_idx(items, i);

		if (!picked(l, it))
			continue;
		/* Items of a list lack kind and apiVersion on the wire. */
		if (st_json_get_str(it, "kind") == NULL)
			st_json_add_str(it, "kind", l->gvr->kind);
		if (st_json_get_str(it, "apiVersion") == NULL)
			st_json_add_str(it, "apiVersion", api_version);
		e->total++;
		if ((rc = write_item(e, l->gvr, l->gr, it)) < 0) {
			l->rc = rc;
			return 1;
		}
	}
	if (e->opts->progress != NULL)
		e->opts->progress(e->total, e->done, e->opts->payload);
	return 0;
}

/* Lists one type once (paginated) and writes what it picks; rc of the list in *list_rc. */
static int list_type(int *list_rc, struct engine *e, const struct st_kube_gvr *gvr, enum pick pick,
                     bool use_selector, struct st_err *err)
{
	struct st_kube_list_options lo = ST_KUBE_LIST_OPTIONS_INIT;
	struct list_ctx l = { e, gvr, NULL, pick, 0 };
	char gr[NAME_CAP];
	unsigned before = e->done;

	st_kube_gvr_name(gr, sizeof(gr), gvr);
	l.gr = gr;
	lo.limit = e->opts->page_limit ? e->opts->page_limit : 500;
	if (use_selector && e->selector[0] != '\0')
		lo.label_selector = e->selector;
	*list_rc = st_kube_list_pages(NULL, e->c, gvr, gvr->namespaced ? e->single_ns : NULL, &lo,
	                              on_page, &l, err);
	if (l.rc < 0)
		return l.rc;
	if (e->done > before)
		st_runlog_add(&e->log, "info", "backed up %u %s", e->done - before, gr);
	return 0;
}

/* A type that cannot be listed is an error of the backup, not its end. */
static int back_up_type(struct engine *e, const struct st_kube_gvr *gvr, enum pick pick,
                        bool use_selector)
{
	struct st_err err = { 0 };
	char gr[NAME_CAP];
	int list_rc = 0;
	int rc;

	if ((rc = list_type(&list_rc, e, gvr, pick, use_selector, &err)) < 0)
		return rc;
	if (list_rc < 0 && !e->cancelled) {
		st_kube_gvr_name(gr, sizeof(gr), gvr);
		note(e, true, "listing %s failed: %s", gr, st_err_text(&err));
	}
	return 0;
}

/*
 * Lists the namespaces once: those in scope become the filter of every
 * namespaced list and are written themselves (unless "namespaces" is
 * excluded by name), whatever the label selector, as a restore needs them.
 */
static int scope_namespaces(struct engine *e, const struct st_kube_gvr *nsgvr)
{
	struct st_err err = { 0 };
	int list_rc = 0;
	int rc;

	if ((rc = list_type(&list_rc, e, nsgvr, PICK_NS, false, &err)) < 0)
		return rc;
	if (list_rc < 0 && !e->cancelled)
		set_fatal(e, "listing namespaces", &err);
	else if (e->single_ns != NULL && !set_has(e->namespaces, e->single_ns))
		note(e, false, "namespace %s does not exist", e->single_ns);
	return 0;
}

static int find_type(const struct engine *e, const char *gr)
{
	size_t i;
	char name[NAME_CAP];

	for (i = 0; i < e->ntypes; i++) {
		st_kube_gvr_name(name, sizeof(name), &e->types[i]);
		if (strcmp(name, gr) == 0)
			return (int)i;
	}
	return -1;
}

static int back_up_namespaced(struct engine *e)
{
	size_t i;
	char gr[NAME_CAP];
	int rc;

	if (json_object_object_length(e->namespaces) == 0)
		return 0;
	for (i = 0; i < e->ntypes && !e->cancelled; i++) {
		if (!e->types[i].namespaced)
			continue;
		st_kube_gvr_name(gr, sizeof(gr), &e->types[i]);
		if (!resource_wanted(e, gr))
			continue;
		if ((rc = back_up_type(e, &e->types[i], PICK_SCOPE, true)) < 0)
			return rc;
	}
	return 0;
}

static int back_up_cluster(struct engine *e)
{
	size_t i;
	char gr[NAME_CAP];
	int ns, pv, crd;
	int rc = 0;

	ns = find_type(e, "namespaces");
	pv = find_type(e, "persistentvolumes");
	crd = find_type(e, "customresourcedefinitions.apiextensions.k8s.io");
	if (e->cancelled || e->cluster == CLUSTER_NONE)
		return 0;
	if (e->cluster == CLUSTER_RELATED) {
		if (pv >= 0 && json_object_object_length(e->pv_names) > 0 &&
		    !set_has(e->excl_res, "persistentvolumes"))
			rc = back_up_type(e, &e->types[pv], PICK_PV, false);
		if (rc == 0 && crd >= 0 && json_object_object_length(e->crd_names) > 0 &&
		    !set_has(e->excl_res, "customresourcedefinitions.apiextensions.k8s.io"))
			rc = back_up_type(e, &e->types[crd], PICK_CRD, false);
		return rc;
	}
	for (i = 0; i < e->ntypes && rc == 0 && !e->cancelled; i++) {
		if (e->types[i].namespaced || (int)i == ns)
			continue;
		st_kube_gvr_name(gr, sizeof(gr), &e->types[i]);
		if (resource_wanted(e, gr))
			rc = back_up_type(e, &e->types[i], PICK_SCOPE, true);
	}
	return rc;
}

/* ---- uploads ---------------------------------------------------------------------------- */

static long file_read(void *buf, size_t cap, void *payload)
{
	FILE *f = payload;
	size_t n = fread(buf, 1, cap, f);

	if (n == 0 && ferror(f))
		return ST_EIO;
	return (long)n;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The resource list with sorted keys, as Velero writes it. */
static int upload_reslist(struct engine *e, struct st_err *err)
{
	size_t n = (size_t)json_object_object_length(e->reslist), i = 0;
	const char **keys = st_xcalloc(n + 1, sizeof(*keys));
	struct json_object *sorted = json_object_new_object();
	const char *text;
	size_t len = 0;
	char key[NAME_CAP];
	int rc;

	json_object_object_foreach(e->reslist, k, v)
	{
		(void)v;
		keys[i++] = k;
	}
	qsort(keys, n, sizeof(*keys), cmp_str);
	for (i = 0; i < n; i++)
		json_object_object_add(
		        sorted, keys[i],
		        json_object_get(json_object_object_get(e->reslist, keys[i])));
	text = st_json_to_string(sorted, &len);
	(void)snprintf(key, sizeof(key), "backups/%s/%s-resource-list.json.gz", e->name, e->name);
	rc = st_runlog_put_gz(e->s, key, text, len, err);
	json_object_put(sorted);
	free(keys);
	return rc;
}

static int upload_tarball(struct engine *e, struct st_err *err)
{
	char key[NAME_CAP];
	long size;
	int rc;

	if ((rc = st_archive_writer_finish(e->w, err)) < 0)
		return rc;
	if (fflush(e->tar) != 0 || (size = ftell(e->tar)) < 0 || fseek(e->tar, 0, SEEK_SET) != 0)
		return st_err_set(err, ST_EIO, "spooling the tarball: %s", strerror(errno));
	(void)snprintf(key, sizeof(key), "backups/%s/%s.tar.gz", e->name, e->name);
	st_runlog_add(&e->log, "info", "uploading %s (%ld bytes, %u objects)", key, size, e->done);
	return st_store_put(e->s, key, (uint64_t)size, file_read, e->tar, false, err);
}

static void set_status(struct engine *e, const char *phase, const char *reason)
{
	struct json_object *st = NULL;
	struct json_object *prog = json_object_new_object();
	char ts[32];

	if (!json_object_object_get_ex(e->backup, "status", &st) || st == NULL ||
	    !json_object_is_type(st, json_type_object)) {
		st = json_object_new_object();
		json_object_object_add(e->backup, "status", st);
	}
	st_json_add_str(st, "phase", phase);
	st_backup_format_time(ts, sizeof(ts), (long long)time(NULL));
	st_json_add_str(st, "completionTimestamp", ts);
	json_object_object_add(st, "errors", json_object_new_int((int)e->log.errors));
	json_object_object_add(st, "warnings", json_object_new_int((int)e->log.warnings));
	if (reason != NULL && reason[0] != '\0')
		st_json_add_str(st, "failureReason", reason);
	json_object_object_add(prog, "totalItems", json_object_new_int((int)e->total));
	json_object_object_add(prog, "itemsBackedUp", json_object_new_int((int)e->done));
	json_object_object_add(st, "progress", prog);
}

static void set_start_status(struct engine *e, long long ttl)
{
	struct json_object *st = json_object_new_object();
	char ts[32];

	st_json_add_str(st, "phase", "InProgress");
	st_backup_format_time(ts, sizeof(ts), e->now);
	st_json_add_str(st, "startTimestamp", ts);
	st_backup_format_time(ts, sizeof(ts), e->now + ttl);
	st_json_add_str(st, "expiration", ts);
	st_json_add_str(st, "formatVersion", ST_BACKUP_FORMAT_VERSION);
	json_object_object_add(st, "version", json_object_new_int(1));
	json_object_object_add(e->backup, "status", st);
}

/* Logs and metadata, uploaded whatever the verdict; the metadata last. */
static void upload_trailer(struct engine *e, const char *phase, const char *reason)
{
	struct st_err err = { 0 };
	char key[NAME_CAP];
	const char *text;
	size_t len = 0;

	set_status(e, phase, reason);
	st_runlog_add(&e->log,
	              phase[0] == 'C'   ? "info"
	              : phase[0] == 'P' ? "warning"
	                                : "error",
	              "backup %s in %lld ms: %u of %u objects, %u errors, %u warnings%s%s", phase,
	              mono_ms() - e->start_ms, e->done, e->total, e->log.errors, e->log.warnings,
	              reason && reason[0] ? "; " : "", reason ? reason : "");
	st_runlog_finish(&e->log);
	(void)snprintf(key, sizeof(key), "backups/%s/%s-logs.gz", e->name, e->name);
	if (st_runlog_put_gz(e->s, key, e->log.buf.ptr ? e->log.buf.ptr : "", e->log.buf.len,
	                     &err) < 0)
		st_log_err("backup %s/%s: uploading the log: %s", e->bns, e->name,
		           st_err_text(&err));
	st_err_clear(&err);
	(void)snprintf(key, sizeof(key), "backups/%s/velero-backup.json", e->name);
	text = json_object_to_json_string_ext(e->backup, JSON_C_TO_STRING_PRETTY |
	                                                         JSON_C_TO_STRING_NOSLASHESCAPE);
	len = strlen(text);
	if (st_store_put_mem(e->s, key, text, len, false, &err) < 0)
		st_log_err("backup %s/%s: uploading the metadata: %s", e->bns, e->name,
		           st_err_text(&err));
}

/* ---- the run ---------------------------------------------------------------------------- */

static int prepare(struct engine *e, long long *ttl, struct st_err *err)
{
	const char *ttl_text = st_json_get_str(e->spec, "ttl");
	struct json_object *md = st_json_get_obj(e->backup, "metadata");

	e->name = st_json_get_str(md, "name");
	e->bns = st_json_get_str(md, "namespace");
	if (e->bns == NULL)
		e->bns = "";
	e->log.ns = e->bns;
	e->log.name = e->name;
	if (!st_backup_name_usable(e->name))
		return st_err_set(err, ST_EINVAL, "metadata.name: missing or not usable as a key");
	if (ttl_text == NULL || ttl_text[0] == '\0')
		ttl_text = ST_BACKUP_DEFAULT_TTL;
	if (st_backup_parse_duration(ttl, ttl_text) < 0)
		return st_err_set(err, ST_EINVAL,
		                  "spec.ttl: \"%s\" is not a duration (e.g. 720h0m0s)", ttl_text);
	if (st_backup_validate_lists(st_json_get_arr(e->spec, "includedNamespaces"),
	                             st_json_get_arr(e->spec, "excludedNamespaces"), "Namespaces",
	                             err) < 0 ||
	    st_backup_validate_lists(st_json_get_arr(e->spec, "includedResources"),
	                             st_json_get_arr(e->spec, "excludedResources"), "Resources",
	                             err) < 0)
		return ST_EINVAL;
	return parse_spec(e, err);
}

static int collect(struct engine *e)
{
	struct st_err err = { 0 };
	struct st_archive_meta meta = ST_ARCHIVE_META_INIT;
	int nsi, rc;

	/* Fresh discovery: CRDs installed since the last backup must be seen. */
	st_kube_discovery_reset(e->c);
	if (st_kube_discovery_each(e->c, collect_type, e, &err) < 0) {
		set_fatal(e, "discovery", &err);
		return 0;
	}
	st_runlog_add(&e->log, "info", "discovery found %zu listable resource types", e->ntypes);
	meta.mtime = e->now;
	if (st_archive_writer_add_file(e->w, "metadata/version", &meta, ST_BACKUP_FORMAT_VERSION,
	                               strlen(ST_BACKUP_FORMAT_VERSION), &err) < 0) {
		set_fatal(e, "writing the tarball", &err);
		return 0;
	}
	if ((nsi = find_type(e, "namespaces")) < 0) {
		st_err_set(&err, ST_EPROTO, "the API serves no namespaces resource");
		set_fatal(e, "discovery", &err);
		return 0;
	}
	if ((rc = scope_namespaces(e, &e->types[nsi])) < 0 || e->fatal[0] != '\0')
		return rc;
	st_runlog_add(&e->log, "info", "%d namespaces in scope",
	              json_object_object_length(e->namespaces));
	if ((rc = back_up_namespaced(e)) < 0 || e->cancelled)
		return rc;
	return back_up_cluster(e);
}

/* ---- the volume phase's view ------------------------------------------------------------ */

struct st_backup_hook {
	struct engine *e;
};

struct json_object *st_backup_hook_backup(struct st_backup_hook *h)
{
	return h->e->backup;
}

const char *st_backup_hook_name(const struct st_backup_hook *h)
{
	return h->e->name;
}

bool st_backup_hook_namespace_in_scope(const struct st_backup_hook *h, const char *ns)
{
	return ns != NULL && json_object_object_get_ex(h->e->namespaces, ns, NULL);
}

struct json_object *st_backup_hook_selector(const struct st_backup_hook *h)
{
	return st_json_get_obj(h->e->spec, "labelSelector");
}

struct st_store *st_backup_hook_store(const struct st_backup_hook *h)
{
	return h->e->s;
}

bool st_backup_hook_cancelled(const struct st_backup_hook *h)
{
	return h->e->cancelled || (h->e->opts->cancel != NULL && atomic_load(h->e->opts->cancel));
}

void st_backup_hook_log(struct st_backup_hook *h, const char *level, const char *fmt, ...)
{
	va_list ap;

	if (strcmp(level, "error") == 0)
		h->e->log.errors++;
	else if (strcmp(level, "warning") == 0)
		h->e->log.warnings++;
	va_start(ap, fmt);
	st_runlog_vadd(&h->e->log, level, fmt, ap);
	va_end(ap);
}

static void back_up_volumes(struct engine *e)
{
	struct st_backup_hook h = { e };
	struct st_err err = { 0 };

	if (e->opts->volumes == NULL || e->fatal[0] != '\0' || e->cancelled)
		return;
	if (e->opts->volumes(&h, e->opts->volumes_payload, &err) < 0)
		set_fatal(e, "volumes", &err);
}

static void engine_dispose(struct engine *e)
{
	st_archive_writer_free(e->w);
	if (e->tar != NULL)
		(void)fclose(e->tar);
	json_object_put(e->incl_res);
	json_object_put(e->excl_res);
	json_object_put(e->namespaces);
	json_object_put(e->pv_names);
	json_object_put(e->crd_names);
	json_object_put(e->reslist);
	free(e->types);
	st_runlog_dispose(&e->log);
}

static void verdict(struct st_backup_result *res, struct engine *e, struct st_err *err)
{
	const char *phase = "Completed";

	if (e->cancelled && e->fatal[0] == '\0')
		(void)snprintf(e->fatal, sizeof(e->fatal),
		               "the controller stopped while the backup was in progress");
	if (e->fatal[0] == '\0' && upload_tarball(e, err) < 0)
		set_fatal(e, "uploading the tarball", err);
	if (e->fatal[0] == '\0' && upload_reslist(e, err) < 0)
		set_fatal(e, "uploading the resource list", err);
	if (e->fatal[0] != '\0')
		phase = "Failed";
	else if (e->log.errors > 0)
		phase = "PartiallyFailed";
	upload_trailer(e, phase, e->fatal);
	res->phase = phase;
	(void)snprintf(res->failure_reason, sizeof(res->failure_reason), "%s", e->fatal);
}

int st_backup_run(struct st_backup_result *res, struct st_kube_client *c, struct st_store *s,
                  struct json_object *backup, const struct st_backup_options *opts,
                  struct st_err *err)
{
	static const struct st_backup_options dflt = ST_BACKUP_OPTIONS_INIT;
	struct engine e;
	long long ttl = 0;
	int rc = ST_EINTERNAL;

	memset(res, 0, sizeof(*res));
	res->phase = "Failed";
	memset(&e, 0, sizeof(e));
	e.c = c;
	e.s = s;
	e.backup = backup;
	e.opts = opts ? opts : &dflt;
	e.now = e.opts->now ? e.opts->now : (long long)time(NULL);
	e.start_ms = mono_ms();
	e.spec = st_json_get_obj(backup, "spec");
	e.namespaces = json_object_new_object();
	e.pv_names = json_object_new_object();
	e.crd_names = json_object_new_object();
	e.reslist = json_object_new_object();
	e.types = st_xcalloc(TYPES_MAX, sizeof(*e.types));
	st_runlog_init(&e.log, "backup", ST_BACKUP_CAP_LOG);
	if ((rc = prepare(&e, &ttl, err)) < 0) {
		(void)snprintf(res->failure_reason, sizeof(res->failure_reason), "%s",
		               st_err_text(err));
		goto out;
	}
	set_start_status(&e, ttl);
	st_runlog_add(&e.log, "info",
	              "backup started (label selector \"%s\", cluster resources: %s)", e.selector,
	              e.cluster == CLUSTER_ALL    ? "all"
	              : e.cluster == CLUSTER_NONE ? "none"
	                                          : "related");
	if ((e.tar = tmpfile()) == NULL) {
		rc = st_err_set(err, ST_EIO, "cannot create a spool file: %s", strerror(errno));
		goto out;
	}
	if ((rc = st_archive_writer_new(&e.w, tar_write, e.tar)) < 0) {
		rc = st_err_set(err, rc, "cannot create the tarball writer");
		goto out;
	}
	(void)collect(&e);
	back_up_volumes(&e);
	verdict(res, &e, err);
	st_err_clear(err);
	res->errors = e.log.errors;
	res->warnings = e.log.warnings;
	res->total_items = e.total;
	res->items_backed_up = e.done;
	rc = 0;
out:
	engine_dispose(&e);
	return rc;
}

/* ---- deletion --------------------------------------------------------------------------- */

struct del_ctx {
	char **keys;
	size_t n;
	size_t cap;
};

static int collect_key(const char *key, uint64_t size, void *payload)
{
	struct del_ctx *d = payload;

	(void)size;
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 16;
		d->keys = st_xrealloc(d->keys, d->cap * sizeof(*d->keys));
	}
	d->keys[d->n++] = st_xstrdup(key);
	return 0;
}

int st_backup_delete_objects(unsigned *count_out, struct st_store *s, const char *name,
                             struct st_err *err)
{
	struct del_ctx d = { NULL, 0, 0 };
	char prefix[NAME_CAP];
	size_t i;
	int rc = ST_EINTERNAL;

	if (count_out != NULL)
		*count_out = 0;
	if (!st_backup_name_usable(name))
		return st_err_set(err, ST_EINVAL, "backup name \"%s\" is not usable as a key",
		                  name ? name : "");
	(void)snprintf(prefix, sizeof(prefix), "backups/%s/", name);
	if ((rc = st_store_list(s, prefix, collect_key, &d, err)) < 0)
		goto out;
	/* The metadata goes last, so a half-deleted backup still lists as one. */
	for (i = 0; i < d.n; i++) {
		if (strstr(d.keys[i], "/velero-backup.json") != NULL)
			continue;
		if ((rc = st_store_delete(s, d.keys[i], err)) < 0)
			goto out;
	}
	for (i = 0; i < d.n; i++) {
		if (strstr(d.keys[i], "/velero-backup.json") == NULL)
			continue;
		if ((rc = st_store_delete(s, d.keys[i], err)) < 0)
			goto out;
	}
	if (count_out != NULL)
		*count_out = (unsigned)d.n;
	rc = 0;
out:
	for (i = 0; i < d.n; i++)
		free(d.keys[i]);
	free(d.keys);
	return rc;
}
