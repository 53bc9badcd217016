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

static struct json_object *env_var(const char *name, const char *value, const char *field)
{
	struct json_object *e = json_object_new_object();

	st_json_add_str(e, "name", name);
	if (field != NULL) {
		struct json_object *vf = json_object_new_object();
		struct json_object *fr = json_object_new_object();

		st_json_add_str(fr, "fieldPath", field);
		json_object_object_add(vf, "fieldRef", fr);
		json_object_object_add(e, "valueFrom", vf);
	} else {
		st_json_add_str(e, "value", value);
	}
	return e;
}

/* Appends NULL-terminated string arguments to a JSON array. */
static void add_args(struct json_object *arr, ...)
{
	va_list ap;
	const char *a;

	va_start(ap, arr);
	while ((a = va_arg(ap, const char *)) != NULL)
		json_object_array_add(arr, json_object_new_string(a));
	va_end(ap);
}

static struct json_object *freezer_container(const struct plan *p,
                                             const struct st_webhook_config *cfg)
{
	struct json_object *c = json_object_new_object();
	struct json_object *cmd = json_object_new_array();
	struct json_object *mounts = json_object_new_array();
	struct json_object *env = json_object_new_array();
	struct json_object *res = json_object_new_object();
	struct json_object *req = json_object_new_object();
	struct json_object *lim = json_object_new_object();
	struct json_object *sc = json_object_new_object();
	struct json_object *port = json_object_new_object();
	struct json_object *ports = json_object_new_array();
	struct st_buf paths = ST_BUF_INIT(ST_CAP_PATCH);
	char timeout[32];
	char port_text[16];

	st_json_add_str(c, "name", ST_FREEZER_NAME);
	st_json_add_str(c, "image", cfg->image);
	st_json_add_str(c, "imagePullPolicy", cfg->image_pull_policy);
	st_duration_format(timeout, sizeof(timeout), p->freeze_timeout_ms);
	(void)snprintf(port_text, sizeof(port_text), "%lld", cfg->agent_port);
	add_args(cmd, cfg->agent_path, "serve", "--volumes-dir", ST_VOLUME_ROOT_DIR,
	         "--default-deadline", timeout, (char *)NULL);
	/* The HTTPS control API needs the agent's certificate; without it only the
	 * Unix socket (Velero exec hooks) is served. */
	if (cfg->agent_tls_secret != NULL)
		add_args(cmd, "--listen", "0.0.0.0", "--port", port_text, "--cert",
		         ST_AGENT_TLS_DIR "/tls.crt", "--key", ST_AGENT_TLS_DIR "/tls.key",
		         "--client-ca", ST_AGENT_TLS_DIR "/ca.crt", (char *)NULL);
	json_object_object_add(c, "command", cmd);
	for (size_t i = 0; i < p->nvolumes; i++) {
		struct json_object *m = json_object_new_object();
		char mp[300];

		(void)snprintf(mp, sizeof(mp), ST_VOLUME_ROOT "%s", p->volumes[i]);
		st_json_add_str(m, "name", p->volumes[i]);
		st_json_add_str(m, "mountPath", mp);
		json_object_array_add(mounts, m);
		(void)!st_buf_printf(&paths, "%s%s", i ? "," : "", mp);
	}
	if (cfg->agent_tls_secret != NULL) {
		struct json_object *m = json_object_new_object();

		st_json_add_str(m, "name", "stasis-agent-tls");
		st_json_add_str(m, "mountPath", ST_AGENT_TLS_DIR);
		json_object_object_add(m, "readOnly", json_object_new_boolean(1));
		json_object_array_add(mounts, m);
	}
	json_object_object_add(c, "volumeMounts", mounts);
	json_object_array_add(env, env_var("STASIS_POD_NAME", NULL, "metadata.name"));
	json_object_array_add(env, env_var("STASIS_POD_NAMESPACE", NULL, "metadata.namespace"));
	json_object_array_add(env, env_var("STASIS_VOLUMES", st_buf_cstr(&paths), NULL));
	json_object_array_add(env, env_var("STASIS_FREEZE_TIMEOUT", timeout, NULL));
	json_object_object_add(c, "env", env);
	st_json_add_str(port, "name", "stasis-agent");
	json_object_object_add(port, "containerPort", json_object_new_int64(cfg->agent_port));
	json_object_array_add(ports, port);
	json_object_object_add(c, "ports", ports);
	st_json_add_str(req, "cpu", cfg->cpu_request);
	st_json_add_str(req, "memory", cfg->memory_request);
	st_json_add_str(lim, "memory", cfg->memory_limit);
	json_object_object_add(res, "requests", req);
	json_object_object_add(res, "limits", lim);
	json_object_object_add(c, "resources", res);
	json_object_object_add(sc, "privileged", json_object_new_boolean(1));
	json_object_object_add(c, "securityContext", sc);
	if (p->native)
		st_json_add_str(c, "restartPolicy", "Always");
	st_buf_dispose(&paths);
	return c;
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

/* The annotations stasis adds, as a new object. */
static struct json_object *our_annotations(const struct plan *p,
                                           const struct st_webhook_config *cfg, bool hooks)
{
	struct json_object *a = json_object_new_object();
	struct st_buf b = ST_BUF_INIT(ST_CAP_PATCH);
	char timeout[32];
	char hook_timeout[32];
	char port[16];
	struct json_object *cmd;

	st_duration_format(timeout, sizeof(timeout), p->freeze_timeout_ms);
	st_duration_format(hook_timeout, sizeof(hook_timeout), cfg->hook_timeout_ms);
	st_json_add_str(a, ST_ANN_INJECTED, ST_INJECT_VERSION);
	for (size_t i = 0; i < p->nvolumes; i++)
		(void)!st_buf_printf(&b, "%s%s", i ? "," : "", p->volumes[i]);
	st_json_add_str(a, ST_ANN_VOLUMES, st_buf_cstr(&b));
	(void)snprintf(port, sizeof(port), "%lld", cfg->agent_port);
	st_json_add_str(a, ST_ANN_AGENT_PORT, port);
	if (hooks) {
		cmd = json_object_new_array();
		json_object_array_add(cmd, json_object_new_string(cfg->agent_path));
		json_object_array_add(cmd, json_object_new_string("freeze"));
		json_object_array_add(cmd, json_object_new_string("--timeout"));
		json_object_array_add(cmd, json_object_new_string(timeout));
		st_json_add_str(a, "pre.hook.backup.velero.io/container", ST_FREEZER_NAME);
		st_json_add_str(a, "pre.hook.backup.velero.io/command",
		                st_json_to_string(cmd, NULL));
		json_object_put(cmd);
		st_json_add_str(a, "pre.hook.backup.velero.io/on-error", "Fail");
		st_json_add_str(a, "pre.hook.backup.velero.io/timeout", hook_timeout);
		cmd = json_object_new_array();
		json_object_array_add(cmd, json_object_new_string(cfg->agent_path));
		json_object_array_add(cmd, json_object_new_string("thaw"));
		st_json_add_str(a, "post.hook.backup.velero.io/container", ST_FREEZER_NAME);
		st_json_add_str(a, "post.hook.backup.velero.io/command",
		                st_json_to_string(cmd, NULL));
		json_object_put(cmd);
		st_json_add_str(a, "post.hook.backup.velero.io/timeout", hook_timeout);
	}
	st_buf_dispose(&b);
	return a;
}

static int add_annotations(struct json_object *patch, struct json_object *meta,
                           struct json_object *ours)
{
	struct json_object *ann = st_json_get_obj(meta, "annotations");
	int rc;

	if (meta == NULL) {
		struct json_object *m = json_object_new_object();

		json_object_object_add(m, "annotations", ours);
		return st_jsonpatch_add_op(patch, "add", "/metadata", m);
	}
	if (ann == NULL)
		return st_jsonpatch_add_op(patch, "add", "/metadata/annotations", ours);
	json_object_object_foreach(ours, k, v)
	{
		struct st_buf path = ST_BUF_INIT(ST_CAP_PATCH);

		rc = st_buf_puts(&path, "/metadata/annotations");
		if (rc == 0)
			rc = st_jsonpatch_path_append(&path, k);
		if (rc == 0)
			rc = st_jsonpatch_add_op(patch, "add", st_buf_cstr(&path),
			                         json_object_get(v));
		st_buf_dispose(&path);
		if (rc < 0) {
			json_object_put(ours);
			return rc;
		}
	}
	json_object_put(ours);
	return 0;
}

/* Appends to an array that may be absent: "add" the whole array then. */
static int append_to(struct json_object *patch, struct json_object *parent, const char *key,
                     const char *path, struct json_object *item)
{
	char p[128];

	if (st_json_get_arr(parent, key) == NULL) {
		struct json_object *arr = json_object_new_array();

		json_object_array_add(arr, item);
		return st_jsonpatch_add_op(patch, "add", path, arr);
	}
	(void)snprintf(p, sizeof(p), "%s/-", path);
	return st_jsonpatch_add_op(patch, "add", p, item);
}

static int build_patch(struct st_admission_result *res, const struct plan *p,
                       const struct st_webhook_config *cfg, struct json_object *pod)
{
	struct json_object *patch = json_object_new_array();
	struct json_object *meta = st_json_get_obj(pod, "metadata");
	struct json_object *spec = st_json_get_obj(pod, "spec");
	const char *hook_key = NULL;
	bool hooks = !has_velero_hooks(st_json_get_obj(meta, "annotations"), &hook_key);
	const char *text;
	size_t len = 0;
	int rc = ST_EINTERNAL;

	if (!hooks)
		st_admission_warn(res,
		                  "stasis: the pod already has Velero hook annotations (%s); they "
		                  "are kept and stasis adds none, so Velero runs your hooks, not "
		                  "stasis-agent freeze/thaw",
		                  hook_key);
	if (p->native)
		rc = append_to(patch, spec, "initContainers", "/spec/initContainers",
		               freezer_container(p, cfg));
	else
		rc = append_to(patch, spec, "containers", "/spec/containers",
		               freezer_container(p, cfg));
	if (rc < 0)
		goto out;
	if (cfg->agent_tls_secret != NULL) {
		struct json_object *v = json_object_new_object();
		struct json_object *s = json_object_new_object();

		st_json_add_str(s, "secretName", cfg->agent_tls_secret);
		st_json_add_str(v, "name", "stasis-agent-tls");
		json_object_object_add(v, "secret", s);
		if ((rc = append_to(patch, spec, "volumes", "/spec/volumes", v)) < 0)
			goto out;
	}
	if ((rc = add_annotations(patch, meta, our_annotations(p, cfg, hooks))) < 0)
		goto out;
	text = st_json_to_string(patch, &len);
	if (len > ST_CAP_PATCH) {
		rc = ST_ETOOBIG;
		goto out;
	}
	res->patch = st_xstrndup(text, len);
	res->patch_len = len;
	rc = 0;
out:
	json_object_put(patch);
	return rc;
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
