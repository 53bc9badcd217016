/*
 * Discovery and resource-name resolution.
 *
 * The cache holds the top-level resources of the core group and of each
 * group's preferred version, in the server's order with core first. It is
 * filled on first use under disc_lock (other resolvers wait rather than
 * fetch twice) and refreshed once when a name is not found, which is how a
 * CRD registered after the first fetch becomes resolvable.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pkg/kube.h"
#include "pkg/kube_int.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

void st_kube__disc_free(struct st_kube__disc *d)
{
	if (d == NULL)
		return;
	free(d->res);
	free(d);
}

static int disc_get(struct json_object **out, struct st_kube_client *c, const char *path,
                    long *http, struct st_err *err)
{
	struct st_kube__req r = { .verb = ST_KUBE_VERB_DISCOVERY, .method = "GET" };

	r.path = path;
	r.resname = path;
	return st_kube__call(out, c, &r, http, err);
}

static unsigned verb_bits(const struct json_object *verbs)
{
	static const struct {
		const char *name;
		unsigned bit;
	} map[] = {
		{ "get", ST_KUBE_CAN_GET },       { "list", ST_KUBE_CAN_LIST },
		{ "watch", ST_KUBE_CAN_WATCH },   { "create", ST_KUBE_CAN_CREATE },
		{ "update", ST_KUBE_CAN_UPDATE }, { "patch", ST_KUBE_CAN_PATCH },
		{ "delete", ST_KUBE_CAN_DELETE },
	};
	size_t i, j, n = verbs ? json_object_array_length(verbs) : 0;
	unsigned bits = 0;

	for (i = 0; i < n; i++) {
		const char *v = json_object_get_string(json_object_array_get_idx(verbs, i));

		for (j = 0; v != NULL && j < sizeof(map) / sizeof(map[0]); j++)
			if (strcmp(v, map[j].name) == 0)
				bits |= map[j].bit;
	}
	return bits;
}

static void add_short_names(struct st_kube__res *r, const struct json_object *arr)
{
	size_t i, n = arr ? json_object_array_length(arr) : 0, used = 1;

	r->short_names[0] = ',';
	r->short_names[1] = '\0';
	for (i = 0; i < n; i++) {
		const char *s = json_object_get_string(json_object_array_get_idx(arr, i));
		size_t k = s ? strlen(s) : 0;

		if (k == 0 || used + k + 2 > sizeof(r->short_names))
			continue;
		memcpy(r->short_names + used, s, k);
		used += k;
		r->short_names[used++] = ',';
		r->short_names[used] = '\0';
	}
}

/* Adds the resources of one APIResourceList (group "" for core). */
static void add_resources(struct st_kube__disc *d, const char *group, const char *version,
                          const struct json_object *list)
{
	struct json_object *arr = st_json_get_arr(list, "resources");
	size_t i, n = arr ? json_object_array_length(arr) : 0;

	for (i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		const char *name = st_json_get_str(e, "name"), *sing;
		struct st_kube__res *r;

		if (name == NULL || strchr(name, '/') != NULL)
			continue;
		if (d->n == d->alloc) {
			d->alloc = d->alloc ? d->alloc * 2 : 64;
			d->res = st_xrealloc(d->res, d->alloc * sizeof(*d->res));
		}
		r = &d->res[d->n];
		memset(r, 0, sizeof(*r));
		if (st_kube_gvr_set(&r->gvr, group, version, name, st_json_get_str(e, "kind"),
		                    st_json_get_bool(e, "namespaced", false)) < 0)
			continue;
		r->gvr.verbs = verb_bits(st_json_get_arr(e, "verbs"));
		sing = st_json_get_str(e, "singularName");
		if (sing != NULL && strlen(sing) < sizeof(r->singular))
			memcpy(r->singular, sing, strlen(sing) + 1);
		add_short_names(r, st_json_get_arr(e, "shortNames"));
		d->n++;
	}
}

/* One group's preferred version; unavailable aggregated APIs are skipped with a warning. */
static int fetch_group(struct st_kube__disc *d, struct st_kube_client *c,
                       const struct json_object *g, struct st_err *err)
{
	struct json_object *pv = st_json_get_obj(g, "preferredVersion"), *list = NULL;
	const char *name = st_json_get_str(g, "name"), *gv = st_json_get_str(pv, "groupVersion");
	const char *ver = st_json_get_str(pv, "version");
	struct st_err e = ST_ERR_INIT;
	char path[600];
	long http = 0;
	int rc;

	if (name == NULL || gv == NULL || ver == NULL)
		return 0;
	(void)snprintf(path, sizeof(path), "/apis/%s", gv);
	rc = disc_get(&list, c, path, &http, &e);
	if (rc < 0 && (http == 404 || http == 503)) {
		st_log_warn("kube: discovery of %s skipped: %s", gv, st_err_text(&e));
		return 0;
	}
	if (rc < 0)
		return st_err_set(err, rc, "discovery of %s: %s", gv, st_err_text(&e));
	add_resources(d, name, ver, list);
	json_object_put(list);
	return 0;
}

/* "/api/<v>" for the core group's preferred version: the first one /api lists. */
static int core_version(char *path, size_t size, struct st_kube_client *c, struct st_err *err)
{
	struct json_object *api = NULL, *versions;
	const char *v = NULL;
	int rc;

	if ((rc = disc_get(&api, c, "/api", NULL, err)) < 0)
		return rc;
	versions = st_json_get_arr(api, "versions");
	if (versions != NULL && json_object_array_length(versions) > 0)
		v = json_object_get_string(json_object_array_get_idx(versions, 0));
	if (v == NULL || v[0] == '\0' || strchr(v, '/') != NULL || strlen(v) + 6 > size)
		rc = st_err_set(err, ST_EPROTO, "discovery: /api lists no usable core version");
	else
		(void)snprintf(path, size, "/api/%s", v);
	json_object_put(api);
	return rc;
}

static int fetch(struct st_kube__disc **out, struct st_kube_client *c, struct st_err *err)
{
	struct st_kube__disc *d = st_xcalloc(1, sizeof(*d));
	struct json_object *core = NULL, *apis = NULL, *groups;
	char core_path[80];
	size_t i, n;
	int rc = ST_EINTERNAL;

	*out = NULL;
	if ((rc = core_version(core_path, sizeof(core_path), c, err)) < 0)
		goto out;
	if ((rc = disc_get(&core, c, core_path, NULL, err)) < 0)
		goto out;
	add_resources(d, "", core_path + strlen("/api/"), core);
	if ((rc = disc_get(&apis, c, "/apis", NULL, err)) < 0)
		goto out;
	groups = st_json_get_arr(apis, "groups");
	n = groups ? json_object_array_length(groups) : 0;
	for (i = 0; i < n; i++)
		if ((rc = fetch_group(d, c, json_object_array_get_idx(groups, i), err)) < 0)
			goto out;
	*out = d;
	d = NULL; /* transferred */
	rc = 0;
out:
	json_object_put(core);
	json_object_put(apis);
	st_kube__disc_free(d);
	return rc;
}

static bool short_match(const struct st_kube__res *r, const char *name)
{
	const char *p = strstr(r->short_names, name);
	size_t n = strlen(name);

	/* Entries are fenced by commas, so a hit must have one on each side. */
	while (p != NULL) {
		if (p > r->short_names && p[-1] == ',' && p[n] == ',')
			return true;
		p = strstr(p + 1, name);
	}
	return false;
}

enum tier { BY_PLURAL, BY_SINGULAR, BY_SHORT, BY_KIND, N_TIERS };

static bool tier_match(const struct st_kube__res *r, enum tier t, const char *name)
{
	switch (t) {
	case BY_PLURAL:
		return strcmp(r->gvr.resource, name) == 0;
	case BY_SINGULAR:
		return r->singular[0] ? strcmp(r->singular, name) == 0
		                      : strcasecmp(r->gvr.kind, name) == 0;
	case BY_SHORT:
		return short_match(r, name);
	default:
		return strcasecmp(r->gvr.kind, name) == 0;
	}
}

/*
 * The first match of the highest tier; group NULL matches any group, and the
 * core group wins because it is first in the cache.
 */
static const struct st_kube__res *lookup(const struct st_kube__disc *d, const char *name,
                                         const char *group)
{
	size_t i;
	int t;

	if (name[0] == '\0' || strchr(name, ',') != NULL)
		return NULL;
	for (t = 0; t < N_TIERS; t++)
		for (i = 0; i < d->n; i++)
			if ((group == NULL || strcmp(d->res[i].gvr.group, group) == 0) &&
			    tier_match(&d->res[i], (enum tier)t, name))
				return &d->res[i];
	return NULL;
}

/* "name", "name.group" or "name.version.group". */
static bool match(struct st_kube_gvr *out, const struct st_kube__disc *d, const char *input)
{
	char buf[512];
	const struct st_kube__res *r;
	char *dot, *dot2;

	if ((r = lookup(d, input, NULL)) != NULL) {
		*out = r->gvr;
		return true;
	}
	if (strlen(input) >= sizeof(buf) || (dot = strchr(input, '.')) == NULL)
		return false;
	memcpy(buf, input, strlen(input) + 1);
	dot = buf + (dot - input);
	*dot = '\0';
	if ((r = lookup(d, buf, dot + 1)) != NULL) {
		*out = r->gvr;
		return true;
	}
	dot2 = strchr(dot + 1, '.');
	if (dot2 == NULL)
		return false;
	*dot2 = '\0';
	if ((r = lookup(d, buf, dot2 + 1)) == NULL || strlen(dot + 1) >= sizeof(out->version))
		return false;
	/* An explicit version: same resource, the version asked for. */
	*out = r->gvr;
	memcpy(out->version, dot + 1, strlen(dot + 1) + 1);
	return true;
}

static int ensure(struct st_kube_client *c, bool refresh, struct st_err *err)
{
	struct st_kube__disc *d = NULL;
	int rc;

	if (c->disc != NULL && !refresh)
		return 0;
	if ((rc = fetch(&d, c, err)) < 0)
		return rc;
	st_kube__disc_free(c->disc);
	c->disc = d;
	return 0;
}

int st_kube_resolve(struct st_kube_gvr *out, struct st_kube_client *c, const char *name,
                    struct st_err *err)
{
	bool fetched, found;
	int rc;

	memset(out, 0, sizeof(*out));
	(void)pthread_mutex_lock(&c->disc_lock);
	fetched = c->disc == NULL;
	if ((rc = ensure(c, false, err)) < 0)
		goto out;
	found = match(out, c->disc, name);
	if (!found && !fetched) {
		if ((rc = ensure(c, true, err)) < 0)
			goto out;
		found = match(out, c->disc, name);
	}
	if (!found) {
		rc = st_err_set(err, ST_ENOTFOUND,
		                "the server does not have a resource type \"%s\" (context \"%s\")",
		                name, c->cfg.context ? c->cfg.context : "?");
		goto out;
	}
	rc = 0;
out:
	(void)pthread_mutex_unlock(&c->disc_lock);
	return rc;
}

void st_kube_discovery_reset(struct st_kube_client *c)
{
	(void)pthread_mutex_lock(&c->disc_lock);
	st_kube__disc_free(c->disc);
	c->disc = NULL;
	(void)pthread_mutex_unlock(&c->disc_lock);
}

int st_kube_discovery_each(struct st_kube_client *c, st_kube_resource_cb cb, void *payload,
                           struct st_err *err)
{
	struct st_kube_gvr *copy = NULL;
	size_t i, n = 0;
	int rc;

	/* The callback runs without the lock, so it may resolve names itself. */
	(void)pthread_mutex_lock(&c->disc_lock);
	rc = ensure(c, false, err);
	if (rc == 0 && c->disc->n > 0) {
		n = c->disc->n;
		copy = st_xmalloc(n * sizeof(*copy));
		for (i = 0; i < n; i++)
			copy[i] = c->disc->res[i].gvr;
	}
	(void)pthread_mutex_unlock(&c->disc_lock);
	for (i = 0; rc == 0 && i < n; i++)
		rc = cb(&copy[i], payload);
	free(copy);
	return rc;
}
