#include "pkg/remap.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/util/json.h"
#include "pkg/util/mem.h"

#define BETA_SC_ANNOTATION "volume.beta.kubernetes.io/storage-class"
#define VELERO_SC_LABEL    "velero.io/change-storage-class"
#define VELERO_IMAGE_LABEL "velero.io/change-image-name"
#define VELERO_RIA         "RestoreItemAction"

struct rule {
	char *from;
	char *to;
};

struct st_remap {
	struct rule *rules[ST_REMAP_KINDS];
	size_t n[ST_REMAP_KINDS];
	size_t cap[ST_REMAP_KINDS];
};

static const char *const kind_names[ST_REMAP_KINDS] = { "namespace", "storage class",
	                                                "image registry" };

static bool kind_ok(enum st_remap_kind kind)
{
	return (int)kind >= 0 && kind < ST_REMAP_KINDS;
}

int st_remap_new(struct st_remap **out, struct st_err *err)
{
	(void)err; /* allocation failure aborts (st_xcalloc) */
	*out = st_xcalloc(1, sizeof(**out));
	return 0;
}

/* Drops the rules of a kind added after the first `keep` (undoes a failed batch). */
static void truncate_rules(struct st_remap *m, enum st_remap_kind kind, size_t keep)
{
	while (m->n[kind] > keep) {
		struct rule *r = &m->rules[kind][--m->n[kind]];

		free(r->from);
		free(r->to);
	}
}

void st_remap_free(struct st_remap *m)
{
	if (m == NULL)
		return;
	for (int k = 0; k < ST_REMAP_KINDS; k++) {
		truncate_rules(m, (enum st_remap_kind)k, 0);
		free(m->rules[k]);
	}
	free(m);
}

size_t st_remap_count(const struct st_remap *m, enum st_remap_kind kind)
{
	return m != NULL && kind_ok(kind) ? m->n[kind] : 0;
}

const char *st_remap_kind_name(enum st_remap_kind kind)
{
	return kind_ok(kind) ? kind_names[kind] : "unknown";
}

/* ---- name validation ------------------------------------------------- */

static bool lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* RFC 1123 label (namespaces) or, with dots allowed, subdomain (storage classes). */
static bool dns_name(const char *s, size_t max, bool dots)
{
	size_t n = strlen(s);

	if (n == 0 || n > max || !lower_alnum(s[0]) || !lower_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (lower_alnum(s[i]) || s[i] == '-')
			continue;
		if (dots && s[i] == '.' && lower_alnum(s[i - 1]) && lower_alnum(s[i + 1]))
			continue;
		return false;
	}
	return true;
}

/* The characters of an image reference or a prefix of one; no empty path components. */
static bool image_text(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > ST_REMAP_IMAGE_MAX || s[0] == '/' || s[n - 1] == '/' ||
	    strstr(s, "//") != NULL)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!isalnum(c) && strchr("._-/:@", c) == NULL)
			return false;
	}
	return true;
}

static const char *const name_rules[ST_REMAP_KINDS] = {
	"an RFC 1123 label: at most 63 lower-case letters, digits and '-'",
	"lower-case letters, digits, '-' and '.', at most 253",
	"an image reference or prefix: letters, digits and ._-/:@, no empty path component",
};

static bool name_valid(enum st_remap_kind kind, const char *s)
{
	switch (kind) {
	case ST_REMAP_NAMESPACE:
		return dns_name(s, 63, false);
	case ST_REMAP_STORAGE_CLASS:
		return dns_name(s, 253, true);
	default:
		return image_text(s);
	}
}

/* Image prefixes are compared without a trailing '/': "dev/" and "dev" are one rule. */
static char *normalize(enum st_remap_kind kind, const char *s)
{
	size_t n = strlen(s);

	if (kind == ST_REMAP_IMAGE_REGISTRY && n > 1 && s[n - 1] == '/')
		n--;
	return st_xstrndup(s, n);
}

static const struct rule *find(const struct st_remap *m, enum st_remap_kind kind, const char *from)
{
	for (size_t i = 0; i < m->n[kind]; i++)
		if (strcmp(m->rules[kind][i].from, from) == 0)
			return &m->rules[kind][i];
	return NULL;
}

int st_remap_add(struct st_remap *m, enum st_remap_kind kind, const char *from, const char *to,
                 struct st_err *err)
{
	const char *what;
	char *f = NULL;
	char *t = NULL;
	int rc = ST_EINTERNAL;

	if (m == NULL || !kind_ok(kind) || from == NULL || to == NULL)
		return st_err_set(err, ST_EINVAL, "remap: bad arguments");
	what = kind_names[kind];
	if (from[0] == '\0' || to[0] == '\0') {
		rc = st_err_set(err, ST_EINVAL, "%s mapping \"%s\" -> \"%s\": a name is empty",
		                what, from, to);
		goto out;
	}
	f = normalize(kind, from);
	t = normalize(kind, to);
	if (!name_valid(kind, f) || !name_valid(kind, t)) {
		rc = st_err_set(err, ST_EINVAL, "%s mapping \"%s\" -> \"%s\": \"%s\" must be %s",
		                what, from, to, name_valid(kind, f) ? to : from, name_rules[kind]);
		goto out;
	}
	if (find(m, kind, f) != NULL) {
		rc = st_err_set(err, ST_EINVAL,
		                "%s \"%s\" is mapped twice (to \"%s\" and \"%s\"); keep one rule",
		                what, f, find(m, kind, f)->to, t);
		goto out;
	}
	if (m->n[kind] == ST_REMAP_MAX_RULES) {
		rc = st_err_set(err, ST_ETOOBIG, "more than %u %s mappings", ST_REMAP_MAX_RULES,
		                what);
		goto out;
	}
	if (m->n[kind] == m->cap[kind]) {
		m->cap[kind] = m->cap[kind] ? 2 * m->cap[kind] : 8;
		m->rules[kind] = st_xrealloc(m->rules[kind], m->cap[kind] * sizeof(struct rule));
	}
	m->rules[kind][m->n[kind]++] = (struct rule){ f, t };
	f = NULL; /* transferred */
	t = NULL;
	rc = 0;
out:
	free(f);
	free(t);
	return rc;
}

/* ---- pairs text -------------------------------------------------------- */

static void trim(const char **s, size_t *n)
{
	while (*n > 0 && isspace((unsigned char)**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && isspace((unsigned char)(*s)[*n - 1]))
		(*n)--;
}

/* A ':' that starts a port: digits up to '/', ':' or the end. */
static bool port_colon(const char *s, size_t n, size_t i)
{
	size_t j = i + 1;

	while (j < n && isdigit((unsigned char)s[j]))
		j++;
	return j > i + 1 && (j == n || s[j] == '/' || s[j] == ':');
}

/*
 * Where "old:new" splits: at the first '=' when there is one, else at the
 * only ':' that does not start a port number (so "localhost:5000:mirror:5000"
 * splits in the middle). Returns n when the split is missing or ambiguous.
 */
static size_t split_at(const char *s, size_t n)
{
	const char *eq = memchr(s, '=', n);
	size_t at = n;

	if (eq != NULL)
		return (size_t)(eq - s);
	for (size_t i = 0; i < n; i++) {
		if (s[i] != ':' || port_colon(s, n, i))
			continue;
		if (at != n)
			return n;
		at = i;
	}
	return at;
}

/* Adds the rule from the text a[0..an) to b[0..bn), each trimmed of blanks. */
static int add_spans(struct st_remap *m, enum st_remap_kind kind, const char *a, size_t an,
                     const char *b, size_t bn, struct st_err *err)
{
	char *from = NULL;
	char *to = NULL;
	int rc;

	trim(&a, &an);
	trim(&b, &bn);
	from = st_xstrndup(a, an);
	to = st_xstrndup(b, bn);
	rc = st_remap_add(m, kind, from, to, err);
	free(from);
	free(to);
	return rc;
}

static int add_pair(struct st_remap *m, enum st_remap_kind kind, const char *item, size_t n,
                    struct st_err *err)
{
	size_t at = split_at(item, n);

	if (at >= n)
		return st_err_set(err, ST_EINVAL,
		                  "%s mapping \"%.*s\" is not old:new (write old=new when the "
		                  "names themselves contain ':')",
		                  kind_names[kind], (int)n, item);
	return add_spans(m, kind, item, at, item + at + 1, n - at - 1, err);
}

int st_remap_add_pairs(struct st_remap *m, enum st_remap_kind kind, const char *text,
                       struct st_err *err)
{
	const char *p = text;
	size_t keep;
	int rc = 0;

	if (m == NULL || !kind_ok(kind) || text == NULL)
		return st_err_set(err, ST_EINVAL, "remap: bad arguments");
	keep = m->n[kind];
	if (text[strspn(text, " \t\r\n")] == '\0')
		return 0; /* nothing but blanks: no rules */
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		const char *item = p;
		size_t in = n;

		trim(&item, &in);
		if (in == 0) {
			rc = st_err_set(
			        err, ST_EINVAL,
			        "%s mappings \"%s\": empty item (a stray or trailing comma?)",
			        kind_names[kind], text);
			break;
		}
		if ((rc = add_pair(m, kind, item, in, err)) < 0)
			break;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	if (rc < 0)
		truncate_rules(m, kind, keep);
	return rc;
}

int st_remap_add_map(struct st_remap *m, enum st_remap_kind kind, struct json_object *map,
                     struct st_err *err)
{
	size_t keep;
	int rc = 0;

	if (m == NULL || !kind_ok(kind))
		return st_err_set(err, ST_EINVAL, "remap: bad arguments");
	if (map == NULL || !json_object_is_type(map, json_type_object))
		return st_err_set(err, ST_EINVAL,
		                  "%s mappings must be a map of old name to new name",
		                  kind_names[kind]);
	keep = m->n[kind];
	json_object_object_foreach(map, k, v)
	{
		if (v == NULL || !json_object_is_type(v, json_type_string)) {
			rc = st_err_set(err, ST_EINVAL,
			                "%s mapping \"%s\": the new name must be a string",
			                kind_names[kind], k);
			break;
		}
		if ((rc = st_remap_add(m, kind, k, json_object_get_string(v), err)) < 0)
			break;
	}
	if (rc < 0)
		truncate_rules(m, kind, keep);
	return rc;
}

/* ---- Velero ConfigMaps ------------------------------------------------- */

/* data values "<old>,<new>" (Velero splits at the first ','). */
static int add_velero_images(struct st_remap *m, struct json_object *data, struct st_err *err)
{
	json_object_object_foreach(data, k, v)
	{
		const char *s = v != NULL && json_object_is_type(v, json_type_string)
		                        ? json_object_get_string(v)
		                        : NULL;
		const char *comma = s != NULL ? strchr(s, ',') : NULL;
		int rc;

		if (comma == NULL)
			return st_err_set(err, ST_EINVAL,
			                  "data.%s must be \"<old>,<new>\" (for example "
			                  "\"docker.io,registry.local:5000\")",
			                  k);
		rc = add_spans(m, ST_REMAP_IMAGE_REGISTRY, s, (size_t)(comma - s), comma + 1,
		               strlen(comma + 1), err);
		if (rc < 0) {
			st_err_prefix(err, "data.%s", k);
			return rc;
		}
	}
	return 0;
}

int st_remap_add_velero_configmap(struct st_remap *m, struct json_object *cm, struct st_err *err)
{
	struct json_object *meta = st_json_get_obj(cm, "metadata");
	struct json_object *labels = st_json_get_obj(meta, "labels");
	const char *kind = st_json_get_str(cm, "kind");
	const char *name = st_json_get_str(meta, "name");
	const char *sc = st_json_get_str(labels, VELERO_SC_LABEL);
	const char *img = st_json_get_str(labels, VELERO_IMAGE_LABEL);
	bool is_sc = sc != NULL && strcmp(sc, VELERO_RIA) == 0;
	bool is_img = img != NULL && strcmp(img, VELERO_RIA) == 0;
	struct json_object *data;
	size_t keep;
	int rc;

	if (m == NULL || cm == NULL || !json_object_is_type(cm, json_type_object))
		return st_err_set(err, ST_EINVAL, "a ConfigMap must be a JSON object");
	if ((kind != NULL && strcmp(kind, "ConfigMap") != 0) || (!is_sc && !is_img))
		return 0;
	name = name != NULL ? name : "(unnamed)";
	if (is_sc && is_img)
		return st_err_set(err, ST_EINVAL,
		                  "ConfigMap %s has both labels %s and %s; Velero reads each from "
		                  "its own ConfigMap, split it in two",
		                  name, VELERO_SC_LABEL, VELERO_IMAGE_LABEL);
	data = st_json_get(cm, "data");
	if (data == NULL)
		return 1;
	if (!json_object_is_type(data, json_type_object))
		return st_err_set(err, ST_EINVAL, "ConfigMap %s: data must be a map", name);
	if (is_sc)
		rc = st_remap_add_map(m, ST_REMAP_STORAGE_CLASS, data, err);
	else {
		keep = m->n[ST_REMAP_IMAGE_REGISTRY];
		rc = add_velero_images(m, data, err);
		if (rc < 0)
			truncate_rules(m, ST_REMAP_IMAGE_REGISTRY, keep);
	}
	if (rc < 0) {
		st_err_prefix(err, "ConfigMap %s", name);
		return rc;
	}
	return 1;
}

const char *st_remap_lookup(const struct st_remap *m, enum st_remap_kind kind, const char *from)
{
	const struct rule *r;
	char *f;

	if (m == NULL || !kind_ok(kind) || from == NULL || m->n[kind] == 0)
		return NULL;
	f = normalize(kind, from);
	r = find(m, kind, f);
	free(f);
	return r != NULL ? r->to : NULL;
}

/* ---- images ------------------------------------------------------------ */

/*
 * Does prefix p cover the start of image text s? Only at a boundary: the end,
 * a '/', a digest '@', or a tag ':' (a ':' with no '/' after it; one followed
 * by a '/' is a registry port, so "localhost" does not cover
 * "localhost:5000/app").
 */
static bool covers(const char *s, const char *p)
{
	size_t n = strlen(p);
	char c;

	if (strncmp(s, p, n) != 0)
		return false;
	c = s[n];
	if (c == '\0' || c == '/' || c == '@')
		return true;
	return c == ':' && strchr(s + n, '/') == NULL;
}

/*
 * The fully qualified form of an image whose registry is Docker Hub:
 * "nginx:1.25" -> "docker.io/library/nginx:1.25", "bitnami/pg" ->
 * "docker.io/bitnami/pg". NULL when the image names another registry.
 */
static char *docker_hub_form(const char *image)
{
	const char *slash = strchr(image, '/');
	const char *rest = image;
	size_t first = slash ? (size_t)(slash - image) : 0;
	const char *end;
	size_t path_len;
	bool one;
	char *out;
	size_t cap;

	if (slash != NULL) {
		bool host = memchr(image, '.', first) != NULL ||
		            memchr(image, ':', first) != NULL ||
		            (first == 9 && strncmp(image, "localhost", 9) == 0);

		if (host && !((first == 9 && strncmp(image, "docker.io", 9) == 0) ||
		              (first == 15 && strncmp(image, "index.docker.io", 15) == 0)))
			return NULL;
		if (host)
			rest = slash + 1;
	}
	/* One path component (before any tag or digest) means the "library/" namespace. */
	end = rest + strcspn(rest, "@");
	path_len = (size_t)(end - rest);
	one = memchr(rest, '/', path_len) == NULL;
	cap = strlen(rest) + sizeof("docker.io/library/");
	out = st_xmalloc(cap);
	(void)snprintf(out, cap, "docker.io/%s%s", one ? "library/" : "", rest);
	return out;
}

char *st_remap_image(const struct st_remap *m, const char *image)
{
	const struct rule *best = NULL;
	bool best_hub = false;
	char *hub = NULL;
	char *out = NULL;
	size_t blen = 0;
	size_t cap;

	if (m == NULL || image == NULL || image[0] == '\0' || m->n[ST_REMAP_IMAGE_REGISTRY] == 0)
		return NULL;
	hub = docker_hub_form(image);
	/*
	 * The longest matching rule wins; on a tie the fully qualified form wins,
	 * so that "docker.io/nginx" with a rule for docker.io becomes
	 * "<new>/library/nginx" as "nginx" does.
	 */
	for (size_t i = 0; i < m->n[ST_REMAP_IMAGE_REGISTRY]; i++) {
		const struct rule *r = &m->rules[ST_REMAP_IMAGE_REGISTRY][i];
		size_t len = strlen(r->from);

		if (len > blen && covers(image, r->from)) {
			best = r;
			blen = len;
			best_hub = false;
		}
		if (hub != NULL && len >= blen && len > 0 && covers(hub, r->from)) {
			best = r;
			blen = len;
			best_hub = true;
		}
	}
	if (best != NULL) {
		const char *src = best_hub ? hub : image;

		cap = strlen(best->to) + strlen(src) - blen + 1;
		out = st_xmalloc(cap);
		(void)snprintf(out, cap, "%s%s", best->to, src + blen);
		if (strcmp(out, image) == 0) {
			free(out);
			out = NULL;
		}
	}
	free(hub);
	return out;
}

/* ---- objects ----------------------------------------------------------- */

struct walk {
	const struct st_remap *m;
	unsigned changes;
};

/* Rewrites obj[key] when it is a string with a rule of that kind. */
static void map_field(struct walk *w, struct json_object *obj, const char *key,
                      enum st_remap_kind kind)
{
	struct json_object *v = st_json_get(obj, key);
	const char *to;

	if (v == NULL || !json_object_is_type(v, json_type_string) || w->m->n[kind] == 0)
		return;
	to = st_remap_lookup(w->m, kind, json_object_get_string(v));
	if (to == NULL || strcmp(to, json_object_get_string(v)) == 0)
		return;
	if (json_object_set_string(v, to) == 1)
		w->changes++;
}

/* A PVC or a claim template: spec.storageClassName and the beta annotation. */
static void claim_storage_class(struct walk *w, struct json_object *claim)
{
	map_field(w, st_json_get_obj(claim, "spec"), "storageClassName", ST_REMAP_STORAGE_CLASS);
	map_field(w, st_json_get_obj(st_json_get_obj(claim, "metadata"), "annotations"),
	          BETA_SC_ANNOTATION, ST_REMAP_STORAGE_CLASS);
}

static void containers_images(struct walk *w, struct json_object *list)
{
	size_t n = list != NULL && json_object_is_type(list, json_type_array)
	                   ? json_object_array_length(list)
	                   : 0;

	for (size_t i = 0; i < n; i++) {
		struct json_object *c = json_object_array_get_idx(list, i);
		struct json_object *v = st_json_get(c, "image");
		char *to;

		if (v == NULL || !json_object_is_type(v, json_type_string))
			continue;
		to = st_remap_image(w->m, json_object_get_string(v));
		if (to != NULL && json_object_set_string(v, to) == 1)
			w->changes++;
		free(to);
	}
}

static void pod_spec(struct walk *w, struct json_object *spec)
{
	struct json_object *vols = st_json_get_arr(spec, "volumes");
	size_t n = vols != NULL ? json_object_array_length(vols) : 0;

	if (spec == NULL || !json_object_is_type(spec, json_type_object))
		return;
	containers_images(w, st_json_get(spec, "containers"));
	containers_images(w, st_json_get(spec, "initContainers"));
	containers_images(w, st_json_get(spec, "ephemeralContainers"));
	/* Generic ephemeral volumes carry their own claim template. */
	for (size_t i = 0; i < n; i++)
		claim_storage_class(
		        w, st_json_get_obj(
		                   st_json_get_obj(json_object_array_get_idx(vols, i), "ephemeral"),
		                   "volumeClaimTemplate"));
}

static bool is_kind(const char *kind, const char *want)
{
	return kind != NULL && strcmp(kind, want) == 0;
}

static void namespaces(struct walk *w, struct json_object *obj, const char *kind)
{
	struct json_object *meta = st_json_get_obj(obj, "metadata");
	struct json_object *subjects;
	size_t n;

	map_field(w, meta, "namespace", ST_REMAP_NAMESPACE);
	if (is_kind(kind, "Namespace"))
		map_field(w, meta, "name", ST_REMAP_NAMESPACE);
	if (is_kind(kind, "PersistentVolume"))
		map_field(w, st_json_get_obj(st_json_get_obj(obj, "spec"), "claimRef"), "namespace",
		          ST_REMAP_NAMESPACE);
	if (!is_kind(kind, "RoleBinding") && !is_kind(kind, "ClusterRoleBinding"))
		return;
	/* Service accounts bound by a restored binding move with their namespace. */
	subjects = st_json_get_arr(obj, "subjects");
	n = subjects != NULL ? json_object_array_length(subjects) : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *s = json_object_array_get_idx(subjects, i);

		if (is_kind(st_json_get_str(s, "kind"), "ServiceAccount"))
			map_field(w, s, "namespace", ST_REMAP_NAMESPACE);
	}
}

static void storage_classes(struct walk *w, struct json_object *obj, const char *kind)
{
	struct json_object *tpls;
	size_t n;

	if (is_kind(kind, "PersistentVolumeClaim") || is_kind(kind, "PersistentVolume"))
		claim_storage_class(w, obj);
	if (!is_kind(kind, "StatefulSet"))
		return;
	tpls = st_json_get_arr(st_json_get_obj(obj, "spec"), "volumeClaimTemplates");
	n = tpls != NULL ? json_object_array_length(tpls) : 0;
	for (size_t i = 0; i < n; i++)
		claim_storage_class(w, json_object_array_get_idx(tpls, i));
}

static void pod_templates(struct walk *w, struct json_object *obj, const char *kind)
{
	struct json_object *spec = st_json_get_obj(obj, "spec");

	if (is_kind(kind, "Pod"))
		pod_spec(w, spec);
	if (is_kind(kind, "PodTemplate"))
		pod_spec(w, st_json_get_obj(st_json_get_obj(obj, "template"), "spec"));
	/* Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, RC and custom workloads. */
	pod_spec(w, st_json_get_obj(st_json_get_obj(spec, "template"), "spec"));
	/* CronJob. */
	pod_spec(w, st_json_get_obj(
	                    st_json_get_obj(
	                            st_json_get_obj(st_json_get_obj(spec, "jobTemplate"), "spec"),
	                            "template"),
	                    "spec"));
}

int st_remap_object(const struct st_remap *m, struct json_object *obj, unsigned *changes_out,
                    struct st_err *err)
{
	struct walk w = { m, 0 };
	const char *kind;

	if (changes_out != NULL)
		*changes_out = 0;
	if (obj == NULL || !json_object_is_type(obj, json_type_object))
		return st_err_set(err, ST_EINVAL, "remap: the object is not a JSON object");
	if (m == NULL)
		return 0;
	kind = st_json_get_str(obj, "kind");
	namespaces(&w, obj, kind);
	storage_classes(&w, obj, kind);
	if (m->n[ST_REMAP_IMAGE_REGISTRY] > 0 || m->n[ST_REMAP_STORAGE_CLASS] > 0)
		pod_templates(&w, obj, kind);
	if (changes_out != NULL)
		*changes_out = w.changes;
	return 0;
}
