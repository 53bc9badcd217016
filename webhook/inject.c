#include "webhook/inject.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/config.h"
#include "pkg/jsonpatch.h"
#include "pkg/labels.h"
#include "pkg/util/buf.h"
#include "pkg/util/caps.h"
#include "pkg/util/json.h"
#include "pkg/util/jsonw.h"
#include "pkg/util/mem.h"

#define MAX_VOLUMES 64

/* What the decision step found, read by the patch builder. */
struct plan {
	const struct st_webhook_rule *rule;
	const char *volumes[MAX_VOLUMES];
	size_t nvolumes;
	long long freeze_timeout_ms;
	bool native;
	bool asked;
};

const char *st_inject_outcome_name(enum st_inject_outcome o)
{
	static const char *const names[] = { "injected",  "not_applicable",   "not_selected",
		                             "opted_out", "already_injected", "nothing_to_freeze",
		                             "conflict" };

	if ((size_t)o >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[o];
}

static const char *pod_display_name(struct json_object *meta,
                                    const struct st_admission_request *req)
{
	const char *n = st_json_get_str(meta, "name");

	if (n != NULL && *n)
		return n;
	if (req->name[0])
		return req->name;
	n = st_json_get_str(meta, "generateName");
	return n ? n : "(unnamed)";
}

static bool strv_has(char *const *v, const char *s)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		if (strcmp(v[i], s) == 0)
			return true;
	return false;
}

static const struct st_webhook_rule *match_rule(const struct st_webhook_config *cfg, const char *ns,
                                                struct json_object *labels)
{
	for (size_t i = 0; i < cfg->nrules; i++) {
		const struct st_webhook_rule *r = &cfg->rules[i];

		if (r->namespaces != NULL && !strv_has(r->namespaces, ns))
			continue;
		if (!st_labels_match(r->selector, labels))
			continue;
		return r;
	}
	return NULL;
}

static struct json_object *find_named(struct json_object *arr, const char *name)
{
	for (size_t i = 0; arr != NULL && i < json_object_array_length(arr); i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		const char *n = st_json_get_str(e, "name");

		if (n != NULL && strcmp(n, name) == 0)
			return e;
	}
	return NULL;
}

/* PVC (not read-only) or generic ephemeral: storage that a snapshot can cut. */
static bool freezable_kind(struct json_object *vol)
{
	struct json_object *pvc = st_json_get_obj(vol, "persistentVolumeClaim");

	if (pvc != NULL)
		return !st_json_get_bool(pvc, "readOnly", false);
	return st_json_get_obj(vol, "ephemeral") != NULL;
}

static bool mounted_rw(struct json_object *spec, const char *vol)
{
	struct json_object *cs = st_json_get_arr(spec, "containers");

	for (size_t i = 0; cs != NULL && i < json_object_array_length(cs); i++) {
		struct json_object *mounts =
		        st_json_get_arr(json_object_array_get_idx(cs, i), "volumeMounts");

		for (size_t j = 0; mounts != NULL && j < json_object_array_length(mounts); j++) {
			struct json_object *m = json_object_array_get_idx(mounts, j);
			const char *n = st_json_get_str(m, "name");

			if (n != NULL && strcmp(n, vol) == 0 &&
			    !st_json_get_bool(m, "readOnly", false))
				return true;
		}
	}
	return false;
}

static void add_volume(struct plan *p, const char *name)
{
	for (size_t i = 0; i < p->nvolumes; i++)
		if (strcmp(p->volumes[i], name) == 0)
			return;
	if (p->nvolumes < MAX_VOLUMES)
		p->volumes[p->nvolumes++] = name;
}

/* Explicit names: each must exist and be freezable, else a warning. */
static void pick_explicit(struct plan *p, struct st_admission_result *res, struct json_object *spec,
                          char *const *names, const char *source)
{
	struct json_object *vols = st_json_get_arr(spec, "volumes");

	for (size_t i = 0; names[i] != NULL; i++) {
		struct json_object *v = find_named(vols, names[i]);

		if (names[i][0] == '\0')
			continue;
		if (v == NULL) {
			st_admission_warn(
			        res, "stasis: volume \"%s\" named in %s is not in the pod; skipped",
			        names[i], source);
			continue;
		}
		if (!freezable_kind(v)) {
			st_admission_warn(
			        res,
			        "stasis: volume \"%s\" is not a writable PVC or ephemeral "
			        "volume and cannot be frozen safely; skipped",
			        names[i]);
			continue;
		}
		add_volume(p, st_json_get_str(v, "name"));
	}
}

static void pick_default(struct plan *p, struct json_object *spec)
{
	struct json_object *vols = st_json_get_arr(spec, "volumes");

	for (size_t i = 0; vols != NULL && i < json_object_array_length(vols); i++) {
		struct json_object *v = json_object_array_get_idx(vols, i);
		const char *n = st_json_get_str(v, "name");

		if (n != NULL && freezable_kind(v) && mounted_rw(spec, n))
			add_volume(p, n);
	}
}

/* Splits "a, b,c" into a NULL-terminated vector inside one heap block. */
static char **split_csv(const char *s)
{
	size_t n = 1;
	char **v;
	char *copy;
	char *p;
	size_t i = 0;

	for (const char *q = s; *q; q++)
		n += *q == ',';
	v = st_xcalloc(n + 1, sizeof(char *) + strlen(s) + 1);
	copy = (char *)(v + n + 1);
	memcpy(copy, s, strlen(s) + 1);
	for (p = copy; p != NULL && i < n;) {
		char *comma = strchr(p, ',');
		char *end;

		if (comma != NULL)
			*comma = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		end = p + strlen(p);
		while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		v[i++] = p;
		p = comma ? comma + 1 : NULL;
	}
	return v;
}

static enum st_inject_outcome decide(struct plan *p, struct st_admission_result *res,
                                     const struct st_webhook_config *cfg,
                                     const struct st_admission_request *req,
                                     struct json_object *pod)
{
	struct json_object *meta = st_json_get_obj(pod, "metadata");
	struct json_object *ann = st_json_get_obj(meta, "annotations");
	struct json_object *spec = st_json_get_obj(pod, "spec");
	const char *freeze = st_json_get_str(ann, ST_ANN_FREEZE);
	const char *explicit_vols = st_json_get_str(ann, ST_ANN_FREEZE_VOLUMES);
	const char *ns = req->namespace_name;

	memset(p, 0, sizeof(*p));
	if (ns[0] == '\0' && st_json_get_str(meta, "namespace") != NULL)
		ns = st_json_get_str(meta, "namespace");
	if (st_json_get(ann, ST_ANN_INJECTED) != NULL)
		return ST_INJECT_ALREADY;
	if (freeze != NULL && strcmp(freeze, "false") == 0)
		return ST_INJECT_OPTED_OUT;
	if (freeze != NULL && strcmp(freeze, "true") == 0) {
		p->asked = true;
	} else if (freeze != NULL) {
		st_admission_warn(res, "stasis: %s is \"%s\", not \"true\" or \"false\"; ignored",
		                  ST_ANN_FREEZE, freeze);
	}
	p->rule = match_rule(cfg, ns, st_json_get_obj(meta, "labels"));
	if (!p->asked && p->rule == NULL)
		return ST_INJECT_NOT_SELECTED;
	if (!p->asked && !p->rule->freeze)
		return ST_INJECT_OPTED_OUT;
	p->freeze_timeout_ms = cfg->freeze_timeout_ms;
	p->native = cfg->native_sidecar;
	if (p->rule != NULL && p->rule->freeze_timeout_ms > 0)
		p->freeze_timeout_ms = p->rule->freeze_timeout_ms;
	if (p->rule != NULL && p->rule->native_sidecar >= 0)
		p->native = p->rule->native_sidecar;
	if (explicit_vols != NULL) {
		char **names = split_csv(explicit_vols);

		pick_explicit(p, res, spec, names, ST_ANN_FREEZE_VOLUMES);
		free(names);
	} else if (p->rule != NULL && p->rule->volumes != NULL) {
		char ctx[300];

		(void)snprintf(ctx, sizeof(ctx), "rule \"%s\"", p->rule->name);
		pick_explicit(p, res, spec, p->rule->volumes, ctx);
	} else {
		pick_default(p, spec);
	}
	if (p->nvolumes == 0) {
		st_admission_warn(res,
		                  "stasis: pod %s was selected for freezing but mounts no writable "
		                  "PVC-backed volume; admitted without the freezer",
		                  pod_display_name(meta, req));
		return ST_INJECT_NOTHING;
	}
	if (find_named(st_json_get_arr(spec, "containers"), ST_FREEZER_NAME) != NULL ||
	    find_named(st_json_get_arr(spec, "initContainers"), ST_FREEZER_NAME) != NULL) {
		st_admission_warn(res,
		                  "stasis: pod already has a container named %s; not injecting a "
		                  "second one",
		                  ST_FREEZER_NAME);
		return ST_INJECT_CONFLICT;
	}
	return ST_INJECT_INJECTED;
}

/*
 * The patch is written as text (pkg/util/jsonw.h): it is built once per
 * admission, and a json-c tree only to print it cost more than the decision.
 */

static void env_value(struct st_jw *w, const char *name, const char *value)
{
	st_jw_obj(w);
	st_jw_kstr(w, "name", name);
	st_jw_kstr(w, "value", value);
	st_jw_end(w);
}

static void env_field(struct st_jw *w, const char *name, const char *field)
{
	st_jw_obj(w);
	st_jw_kstr(w, "name", name);
	st_jw_key(w, "valueFrom");
	st_jw_obj(w);
	st_jw_key(w, "fieldRef");
	st_jw_obj(w);
	st_jw_kstr(w, "fieldPath", field);
	st_jw_end(w);
	st_jw_end(w);
	st_jw_end(w);
}

/* Writes NULL-terminated string arguments as array elements. */
static void add_args(struct st_jw *w, ...)
{
	va_list ap;
	const char *a;

	va_start(ap, w);
	while ((a = va_arg(ap, const char *)) != NULL)
		st_jw_str(w, a);
	va_end(ap);
}

static void volume_mount(struct st_jw *w, const char *name, const char *path, bool read_only)
{
	st_jw_obj(w);
	st_jw_kstr(w, "name", name);
	st_jw_kstr(w, "mountPath", path);
	if (read_only) {
		st_jw_key(w, "readOnly");
		st_jw_bool(w, true);
	}
	st_jw_end(w);
}

static void freezer_container(struct st_jw *w, const struct plan *p,
                              const struct st_webhook_config *cfg)
{
	struct st_buf paths = ST_BUF_INIT(ST_CAP_PATCH);
	char timeout[32];
	char port_text[16];

	st_duration_format(timeout, sizeof(timeout), p->freeze_timeout_ms);
	(void)snprintf(port_text, sizeof(port_text), "%lld", cfg->agent_port);
	st_jw_obj(w);
	st_jw_kstr(w, "name", ST_FREEZER_NAME);
	st_jw_kstr(w, "image", cfg->image);
	st_jw_kstr(w, "imagePullPolicy", cfg->image_pull_policy);
	st_jw_key(w, "command");
	st_jw_arr(w);
	add_args(w, cfg->agent_path, "serve", "--volumes-dir", ST_VOLUME_ROOT_DIR,
	         "--default-deadline", timeout, (char *)NULL);
	/* The HTTPS control API needs the agent's certificate; without it only the
	 * Unix socket (Velero exec hooks) is served. */
	if (cfg->agent_tls_secret != NULL)
		add_args(w, "--listen", "0.0.0.0", "--port", port_text, "--cert",
		         ST_AGENT_TLS_DIR "/tls.crt", "--key", ST_AGENT_TLS_DIR "/tls.key",
		         "--client-ca", ST_AGENT_TLS_DIR "/ca.crt", (char *)NULL);
	st_jw_end(w);
	st_jw_key(w, "volumeMounts");
	st_jw_arr(w);
	for (size_t i = 0; i < p->nvolumes; i++) {
		char mp[300];

		(void)snprintf(mp, sizeof(mp), ST_VOLUME_ROOT "%s", p->volumes[i]);
		volume_mount(w, p->volumes[i], mp, false);
		(void)!st_buf_printf(&paths, "%s%s", i ? "," : "", mp);
	}
	if (cfg->agent_tls_secret != NULL)
		volume_mount(w, "stasis-agent-tls", ST_AGENT_TLS_DIR, true);
	st_jw_end(w);
	st_jw_key(w, "env");
	st_jw_arr(w);
	env_field(w, "STASIS_POD_NAME", "metadata.name");
	env_field(w, "STASIS_POD_NAMESPACE", "metadata.namespace");
	env_value(w, "STASIS_VOLUMES", st_buf_cstr(&paths));
	env_value(w, "STASIS_FREEZE_TIMEOUT", timeout);
	st_jw_end(w);
	st_jw_key(w, "ports");
	st_jw_arr(w);
	st_jw_obj(w);
	st_jw_kstr(w, "name", "stasis-agent");
	st_jw_key(w, "containerPort");
	st_jw_int(w, cfg->agent_port);
	st_jw_end(w);
	st_jw_end(w);
	st_jw_key(w, "resources");
	st_jw_obj(w);
	st_jw_key(w, "requests");
	st_jw_obj(w);
	st_jw_kstr(w, "cpu", cfg->cpu_request);
	st_jw_kstr(w, "memory", cfg->memory_request);
	st_jw_end(w);
	st_jw_key(w, "limits");
	st_jw_obj(w);
	st_jw_kstr(w, "memory", cfg->memory_limit);
	st_jw_end(w);
	st_jw_end(w);
	st_jw_key(w, "securityContext");
	st_jw_obj(w);
	st_jw_key(w, "privileged");
	st_jw_bool(w, true);
	st_jw_end(w);
	if (p->native)
		st_jw_kstr(w, "restartPolicy", "Always");
	st_jw_end(w);
	st_buf_dispose(&paths);
}

static void agent_tls_volume(struct st_jw *w, const struct st_webhook_config *cfg)
{
	st_jw_obj(w);
	st_jw_kstr(w, "name", "stasis-agent-tls");
	st_jw_key(w, "secret");
	st_jw_obj(w);
	st_jw_kstr(w, "secretName", cfg->agent_tls_secret);
	st_jw_end(w);
	st_jw_end(w);
}

static bool has_velero_hooks(struct json_object *ann, const char **which)
{
	if (ann == NULL)
		return false;
	json_object_object_foreach(ann, k, v)
	{
		(void)v;
		if (strncmp(k, "pre.hook.backup.velero.io/", 26) == 0 ||
		    strncmp(k, "post.hook.backup.velero.io/", 27) == 0) {
			*which = k;
			return true;
		}
	}
	return false;
}

#define MAX_OUR_ANNOTATIONS 10

/* The annotations stasis adds: keys and values, with the storage the values need. */
struct annotations {
	const char *key[MAX_OUR_ANNOTATIONS];
	const char *value[MAX_OUR_ANNOTATIONS];
	size_t n;
	struct st_buf volumes;
	struct st_buf pre_cmd;
	struct st_buf post_cmd;
	char timeout[32];
	char hook_timeout[32];
	char port[16];
};

static void annotate(struct annotations *a, const char *key, const char *value)
{
	a->key[a->n] = key;
	a->value[a->n] = value;
	a->n++;
}

/* A hook command: the JSON text of an argument array, as Velero reads it. */
static const char *hook_command(struct st_buf *b, const char *agent, const char *verb,
                                const char *timeout)
{
	struct st_jw w;

	st_jw_init(&w, b);
	st_jw_arr(&w);
	add_args(&w, agent, verb, (char *)NULL);
	if (timeout != NULL)
		add_args(&w, "--timeout", timeout, (char *)NULL);
	st_jw_end(&w);
	return st_jw_finish(&w) == 0 ? st_buf_cstr(b) : "";
}

static void our_annotations(struct annotations *a, const struct plan *p,
                            const struct st_webhook_config *cfg, bool hooks)
{
	memset(a, 0, sizeof(*a));
	st_buf_init(&a->volumes, ST_CAP_PATCH);
	st_buf_init(&a->pre_cmd, ST_CAP_PATCH);
	st_buf_init(&a->post_cmd, ST_CAP_PATCH);
	st_duration_format(a->timeout, sizeof(a->timeout), p->freeze_timeout_ms);
	st_duration_format(a->hook_timeout, sizeof(a->hook_timeout), cfg->hook_timeout_ms);
	(void)snprintf(a->port, sizeof(a->port), "%lld", cfg->agent_port);
	for (size_t i = 0; i < p->nvolumes; i++)
		(void)!st_buf_printf(&a->volumes, "%s%s", i ? "," : "", p->volumes[i]);
	annotate(a, ST_ANN_INJECTED, ST_INJECT_VERSION);
	annotate(a, ST_ANN_VOLUMES, st_buf_cstr(&a->volumes));
	annotate(a, ST_ANN_AGENT_PORT, a->port);
	if (!hooks)
		return;
	annotate(a, "pre.hook.backup.velero.io/container", ST_FREEZER_NAME);
	annotate(a, "pre.hook.backup.velero.io/command",
	         hook_command(&a->pre_cmd, cfg->agent_path, "freeze", a->timeout));
	annotate(a, "pre.hook.backup.velero.io/on-error", "Fail");
	annotate(a, "pre.hook.backup.velero.io/timeout", a->hook_timeout);
	annotate(a, "post.hook.backup.velero.io/container", ST_FREEZER_NAME);
	annotate(a, "post.hook.backup.velero.io/command",
	         hook_command(&a->post_cmd, cfg->agent_path, "thaw", NULL));
	annotate(a, "post.hook.backup.velero.io/timeout", a->hook_timeout);
}

static void annotations_dispose(struct annotations *a)
{
	st_buf_dispose(&a->volumes);
	st_buf_dispose(&a->pre_cmd);
	st_buf_dispose(&a->post_cmd);
}

/* {"op":"add","path":path,"value": ... the caller writes the value and closes. */
static void add_op(struct st_jw *w, const char *path)
{
	st_jw_obj(w);
	st_jw_kstr(w, "op", "add");
	st_jw_kstr(w, "path", path);
	st_jw_key(w, "value");
}

static void annotation_map(struct st_jw *w, const struct annotations *a)
{
	st_jw_obj(w);
	for (size_t i = 0; i < a->n; i++)
		st_jw_kstr(w, a->key[i], a->value[i]);
	st_jw_end(w);
}

/* Adds ours to the pod's annotations, creating the map (or metadata) when absent. */
static int add_annotations(struct st_jw *w, struct json_object *meta, const struct annotations *a)
{
	struct st_buf path = ST_BUF_INIT(ST_CAP_PATCH);
	int rc = 0;

	if (meta == NULL) {
		add_op(w, "/metadata");
		st_jw_obj(w);
		st_jw_key(w, "annotations");
		annotation_map(w, a);
		st_jw_end(w);
		st_jw_end(w);
		return 0;
	}
	if (st_json_get_obj(meta, "annotations") == NULL) {
		add_op(w, "/metadata/annotations");
		annotation_map(w, a);
		st_jw_end(w);
		return 0;
	}
	for (size_t i = 0; i < a->n && rc == 0; i++) {
		st_buf_clear(&path);
		rc = st_buf_puts(&path, "/metadata/annotations");
		if (rc == 0)
			rc = st_jsonpatch_path_append(&path, a->key[i]);
		if (rc == 0) {
			add_op(w, st_buf_cstr(&path));
			st_jw_str(w, a->value[i]);
			st_jw_end(w);
		}
	}
	st_buf_dispose(&path);
	return rc;
}

/*
 * Starts an op that appends one item to parent[key], an array that may be
 * absent: then the op adds the whole array. Returns whether it was absent,
 * which end_append() needs.
 */
static bool begin_append(struct st_jw *w, struct json_object *parent, const char *key,
                         const char *path)
{
	char p[128];
	bool absent = st_json_get_arr(parent, key) == NULL;

	(void)snprintf(p, sizeof(p), absent ? "%s" : "%s/-", path);
	add_op(w, p);
	if (absent)
		st_jw_arr(w);
	return absent;
}

static void end_append(struct st_jw *w, bool absent)
{
	if (absent)
		st_jw_end(w);
	st_jw_end(w);
}

static int build_patch(struct st_admission_result *res, const struct plan *p,
                       const struct st_webhook_config *cfg, struct json_object *pod)
{
	struct json_object *meta = st_json_get_obj(pod, "metadata");
	struct json_object *spec = st_json_get_obj(pod, "spec");
	const char *hook_key = NULL;
	bool hooks = !has_velero_hooks(st_json_get_obj(meta, "annotations"), &hook_key);
	struct st_buf b = ST_BUF_INIT(ST_CAP_PATCH);
	struct annotations ann;
	struct st_jw w;
	bool absent;
	int rc;

	if (!hooks)
		st_admission_warn(res,
		                  "stasis: the pod already has Velero hook annotations (%s); they "
		                  "are kept and stasis adds none, so Velero runs your hooks, not "
		                  "stasis-agent freeze/thaw",
		                  hook_key);
	/* A patch is about 2 KiB: one allocation instead of doubling from 64 bytes. */
	if ((rc = st_buf_reserve(&b, 4096)) < 0)
		return rc;
	st_jw_init(&w, &b);
	st_jw_arr(&w);
	if (p->native)
		absent = begin_append(&w, spec, "initContainers", "/spec/initContainers");
	else
		absent = begin_append(&w, spec, "containers", "/spec/containers");
	freezer_container(&w, p, cfg);
	end_append(&w, absent);
	if (cfg->agent_tls_secret != NULL) {
		absent = begin_append(&w, spec, "volumes", "/spec/volumes");
		agent_tls_volume(&w, cfg);
		end_append(&w, absent);
	}
	our_annotations(&ann, p, cfg, hooks);
	rc = add_annotations(&w, meta, &ann);
	annotations_dispose(&ann);
	st_jw_end(&w);
	if (rc == 0)
		rc = st_jw_finish(&w);
	if (rc < 0) {
		st_buf_dispose(&b);
		return rc;
	}
	res->patch = st_buf_detach(&b, &res->patch_len);
	return 0;
}

int st_inject_pod(struct st_admission_result *res, enum st_inject_outcome *outcome,
                  const struct st_webhook_config *cfg, const struct st_admission_request *req)
{
	struct plan p;
	const char *kind;
	int rc;

	*outcome = ST_INJECT_NOT_APPLICABLE;
	if (req->object == NULL || strcmp(req->operation, "CREATE") != 0 ||
	    req->sub_resource[0] != '\0')
		return 0;
	kind = st_json_get_str(req->object, "kind");
	if ((req->resource[0] && strcmp(req->resource, "pods") != 0) ||
	    (kind != NULL && strcmp(kind, "Pod") != 0))
		return 0;
	*outcome = decide(&p, res, cfg, req, req->object);
	if (*outcome != ST_INJECT_INJECTED)
		return 0;
	if ((rc = build_patch(res, &p, cfg, req->object)) < 0)
		return rc;
	return 0;
}
