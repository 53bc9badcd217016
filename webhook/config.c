#include "webhook/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/labels.h"
#include "pkg/util/buf.h"
#include "pkg/util/caps.h"
#include "pkg/util/json.h"
#include "pkg/util/mem.h"
#include "pkg/yaml.h"

#define OFF(f) offsetof(struct st_webhook_config, f)

const struct st_cfg_entry st_webhook_config_table[] = {
	{ "listen", ST_CFG_STR, OFF(listen), 0, 0, "0.0.0.0:8443",
	  "address:port the HTTPS server binds" },
	{ "tls.certFile", ST_CFG_STR, OFF(cert_file), 0, 0, "/etc/stasis/tls/tls.crt",
	  "serving certificate (PEM, chain allowed); re-read when it changes" },
	{ "tls.keyFile", ST_CFG_STR, OFF(key_file), 0, 0, "/etc/stasis/tls/tls.key",
	  "private key of the serving certificate (PEM)" },
	{ "log.level", ST_CFG_STR, OFF(log_level), 0, 0, "info", "error, warn, info or debug" },
	{ "log.format", ST_CFG_STR, OFF(log_format), 0, 0, "text", "text or json" },
	{ "server.threads", ST_CFG_INT, OFF(threads), 0, 64, "0",
	  "worker threads; 0 means one per CPU" },
	{ "server.maxBodyBytes", ST_CFG_SIZE, OFF(max_body), 1024, 64LL << 20, "8Mi",
	  "largest AdmissionReview accepted; larger bodies get 413" },
	{ "server.connectionTimeout", ST_CFG_DURATION, OFF(conn_timeout_ms), 1000, 600000, "10s",
	  "idle or slow connections are closed after this long" },
	{ "injection.image", ST_CFG_STR, OFF(image), 0, 0, "stasis/stasis-agent:v0.1.0",
	  "image of the injected stasis-freezer container" },
	{ "injection.imagePullPolicy", ST_CFG_STR, OFF(image_pull_policy), 0, 0, "IfNotPresent",
	  "Always, IfNotPresent or Never" },
	{ "injection.agentPath", ST_CFG_STR, OFF(agent_path), 0, 0, "/stasis-agent",
	  "path of stasis-agent inside the image (used in commands and hooks)" },
	{ "injection.nativeSidecar", ST_CFG_BOOL, OFF(native_sidecar), 0, 0, "false",
	  "inject as an init container with restartPolicy Always (Kubernetes 1.29+)" },
	{ "injection.freezeTimeout", ST_CFG_DURATION, OFF(freeze_timeout_ms), 1000, 3600000, "30s",
	  "the agent thaws by itself this long after a freeze" },
	{ "injection.hookTimeout", ST_CFG_DURATION, OFF(hook_timeout_ms), 1000, 3600000, "60s",
	  "timeout written into the Velero hook annotations" },
	{ "injection.agentPort", ST_CFG_INT, OFF(agent_port), 1, 65535, "9443",
	  "port of the agent's HTTPS control API inside the pod" },
	{ "injection.resources.cpuRequest", ST_CFG_STR, OFF(cpu_request), 0, 0, "10m",
	  "CPU request of the freezer container" },
	{ "injection.resources.memoryRequest", ST_CFG_STR, OFF(memory_request), 0, 0, "16Mi",
	  "memory request of the freezer container" },
	{ "injection.resources.memoryLimit", ST_CFG_STR, OFF(memory_limit), 0, 0, "64Mi",
	  "memory limit of the freezer container" },
	{ "injection.agentTLSSecret", ST_CFG_STR, OFF(agent_tls_secret), 0, 0, NULL,
	  "Secret (in the pod's namespace) with the agent's tls.crt, tls.key and ca.crt; "
	  "mounted at /etc/stasis/agent-tls when set" },
};
const size_t st_webhook_config_table_len =
        sizeof(st_webhook_config_table) / sizeof(st_webhook_config_table[0]);

void st_webhook_config_init(struct st_webhook_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	/* The table's defaults are constants that always parse. */
	(void)!st_config_defaults(cfg, st_webhook_config_table, st_webhook_config_table_len);
}

static void free_strv(char **v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

static void rule_dispose(struct st_webhook_rule *r)
{
	free(r->name);
	free_strv(r->namespaces);
	free_strv(r->volumes);
	json_object_put(r->selector);
}

void st_webhook_config_dispose(struct st_webhook_config *cfg)
{
	st_remap_free(cfg->remap);
	cfg->remap = NULL;
	for (size_t i = 0; i < cfg->nrules; i++)
		rule_dispose(&cfg->rules[i]);
	free(cfg->rules);
	cfg->rules = NULL;
	cfg->nrules = 0;
	st_config_dispose(cfg, st_webhook_config_table, st_webhook_config_table_len);
}

/* A list of strings, or one string; anything else is an error naming `what`. */
static int strv_from(char ***out, struct json_object *v, const char *what, struct st_err *err)
{
	size_t n;
	char **sv;

	*out = NULL;
	if (v == NULL)
		return 0;
	if (json_object_is_type(v, json_type_string)) {
		sv = st_xcalloc(2, sizeof(char *));
		sv[0] = st_xstrdup(json_object_get_string(v));
		*out = sv;
		return 0;
	}
	if (!json_object_is_type(v, json_type_array))
		return st_err_set(err, ST_EINVAL, "%s must be a list of strings", what);
	n = json_object_array_length(v);
	sv = st_xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(v, i);

		if (e == NULL || !json_object_is_type(e, json_type_string)) {
			free_strv(sv);
			return st_err_set(err, ST_EINVAL, "%s[%zu] must be a string", what, i);
		}
		sv[i] = st_xstrdup(json_object_get_string(e));
	}
	*out = sv;
	return 0;
}

static int rule_parse(struct st_webhook_rule *r, struct json_object *o, const char *what,
                      struct st_err *err)
{
	static const char *const known[] = { "name",    "namespaces",    "selector",      "freeze",
		                             "volumes", "freezeTimeout", "nativeSidecar", NULL };
	struct json_object *v;
	char ctx[128];
	int rc;

	memset(r, 0, sizeof(*r));
	r->freeze = true;
	r->native_sidecar = -1;
	if (o == NULL || !json_object_is_type(o, json_type_object))
		return st_err_set(err, ST_EINVAL, "%s must be a mapping", what);
	json_object_object_foreach(o, k, val)
	{
		bool ok = false;

		(void)val;
		for (size_t i = 0; known[i] != NULL; i++)
			ok = ok || strcmp(k, known[i]) == 0;
		if (!ok)
			return st_err_set(
			        err, ST_EINVAL,
			        "%s: unknown key \"%s\" (known: name, namespaces, "
			        "selector, freeze, volumes, freezeTimeout, nativeSidecar)",
			        what, k);
	}
	r->name = st_xstrdup(st_json_get_str(o, "name") ? st_json_get_str(o, "name") : what);
	(void)snprintf(ctx, sizeof(ctx), "%s.namespaces", what);
	if ((rc = strv_from(&r->namespaces, st_json_get(o, "namespaces"), ctx, err)) < 0)
		return rc;
	(void)snprintf(ctx, sizeof(ctx), "%s.volumes", what);
	if ((rc = strv_from(&r->volumes, st_json_get(o, "volumes"), ctx, err)) < 0)
		return rc;
	if ((v = st_json_get(o, "selector")) != NULL) {
		(void)snprintf(ctx, sizeof(ctx), "%s.selector", what);
		if ((rc = st_labels_validate(v, ctx, err)) < 0)
			return rc;
		r->selector = json_object_get(v);
	}
	if ((v = st_json_get(o, "freeze")) != NULL) {
		if (!json_object_is_type(v, json_type_boolean))
			return st_err_set(err, ST_EINVAL, "%s.freeze must be true or false", what);
		r->freeze = json_object_get_boolean(v);
	}
	if ((v = st_json_get(o, "nativeSidecar")) != NULL) {
		if (!json_object_is_type(v, json_type_boolean))
			return st_err_set(err, ST_EINVAL, "%s.nativeSidecar must be true or false",
			                  what);
		r->native_sidecar = json_object_get_boolean(v);
	}
	if ((v = st_json_get(o, "freezeTimeout")) != NULL) {
		const char *s = json_object_get_string(v);

		if (st_duration_parse(&r->freeze_timeout_ms, s ? s : "") < 0 ||
		    r->freeze_timeout_ms < 1000 || r->freeze_timeout_ms > 3600000)
			return st_err_set(err, ST_EINVAL,
			                  "%s.freezeTimeout: \"%s\" is not a duration between 1s "
			                  "and 1h",
			                  what, s ? s : "");
	}
	return 0;
}

int st_webhook_config_rules(struct st_webhook_config *cfg, struct json_object *rules,
                            const char *what, struct st_err *err)
{
	size_t n;
	int rc;

	if (rules == NULL)
		return 0;
	if (!json_object_is_type(rules, json_type_array))
		return st_err_set(err, ST_EINVAL, "%s: rules must be a list", what);
	n = json_object_array_length(rules);
	if (n > 1000)
		return st_err_set(err, ST_ETOOBIG, "%s: %zu rules is more than 1000", what, n);
	cfg->rules = st_xcalloc(n ? n : 1, sizeof(*cfg->rules));
	for (size_t i = 0; i < n; i++) {
		char ctx[64];

		(void)snprintf(ctx, sizeof(ctx), "rules[%zu]", i);
		rc = rule_parse(&cfg->rules[i], json_object_array_get_idx(rules, i), ctx, err);
		cfg->nrules = i + 1;
		if (rc < 0) {
			st_err_prefix(err, "%s", what);
			return rc;
		}
	}
	return 0;
}

/* Adds every Velero ConfigMap of one file (documents, or items of a List). */
static int restore_configmap_file(struct st_remap *m, const char *path, struct st_err *err)
{
	struct st_buf b = ST_BUF_INIT(ST_CAP_CONFIG);
	struct json_object *docs = NULL;
	size_t found = 0;
	int rc = ST_EINTERNAL;

	if ((rc = st_buf_read_file(&b, path, err)) < 0)
		goto out;
	if ((rc = st_yaml_parse_all(&docs, st_buf_cstr(&b), b.len, path, err)) < 0)
		goto out;
	for (size_t i = 0; i < json_object_array_length(docs); i++) {
		struct json_object *d = json_object_array_get_idx(docs, i);
		struct json_object *items = st_json_get_arr(d, "items");
		const char *kind = st_json_get_str(d, "kind");
		size_t n = kind != NULL && strcmp(kind, "List") == 0 && items != NULL
		                   ? json_object_array_length(items)
		                   : 0;

		if (n == 0 && (rc = st_remap_add_velero_configmap(m, d, err)) >= 0)
			found += (size_t)rc;
		for (size_t j = 0; j < n && rc >= 0; j++)
			if ((rc = st_remap_add_velero_configmap(
			             m, json_object_array_get_idx(items, j), err)) >= 0)
				found += (size_t)rc;
		if (rc < 0) {
			st_err_prefix(err, "%s", path);
			goto out;
		}
	}
	if (found == 0) {
		rc = st_err_set(err, ST_EINVAL,
		                "%s holds no ConfigMap labelled velero.io/change-storage-class or "
		                "velero.io/change-image-name with the value RestoreItemAction",
		                path);
		goto out;
	}
	rc = 0;
out:
	json_object_put(docs);
	st_buf_dispose(&b);
	return rc;
}

int st_webhook_config_restore(struct st_webhook_config *cfg, struct json_object *restore,
                              const char *what, struct st_err *err)
{
	struct json_object *v;
	int rc;

	if (restore == NULL)
		return 0;
	if (!json_object_is_type(restore, json_type_object))
		return st_err_set(err, ST_EINVAL, "%s: restore must be a mapping", what);
	json_object_object_foreach(restore, k, val)
	{
		(void)val;
		if (strcmp(k, "storageClassMappings") != 0 &&
		    strcmp(k, "imageRegistryMappings") != 0 && strcmp(k, "configMaps") != 0)
			return st_err_set(err, ST_EINVAL,
			                  "%s: unknown key \"restore.%s\" (known: "
			                  "restore.storageClassMappings, "
			                  "restore.imageRegistryMappings, restore.configMaps)",
			                  what, k);
	}
	if (cfg->remap == NULL && (rc = st_remap_new(&cfg->remap, err)) < 0)
		return rc;
	if ((v = st_json_get(restore, "storageClassMappings")) != NULL &&
	    (rc = st_remap_add_map(cfg->remap, ST_REMAP_STORAGE_CLASS, v, err)) < 0)
		goto fail;
	if ((v = st_json_get(restore, "imageRegistryMappings")) != NULL &&
	    (rc = st_remap_add_map(cfg->remap, ST_REMAP_IMAGE_REGISTRY, v, err)) < 0)
		goto fail;
	if ((v = st_json_get(restore, "configMaps")) != NULL) {
		char **files = NULL;

		if ((rc = strv_from(&files, v, "restore.configMaps", err)) < 0)
			goto fail;
		for (size_t i = 0; files != NULL && files[i] != NULL && rc == 0; i++)
			rc = restore_configmap_file(cfg->remap, files[i], err);
		free_strv(files);
		if (rc < 0)
			goto fail;
	}
	return 0;
fail:
	st_err_prefix(err, "%s: restore", what);
	return rc;
}

int st_webhook_config_validate(const struct st_webhook_config *cfg, struct st_err *err)
{
	static const char *const policies[] = { "Always", "IfNotPresent", "Never" };
	bool ok = false;

	if (strcmp(cfg->log_level, "error") != 0 && strcmp(cfg->log_level, "warn") != 0 &&
	    strcmp(cfg->log_level, "info") != 0 && strcmp(cfg->log_level, "debug") != 0)
		return st_err_set(err, ST_EINVAL,
		                  "log.level: \"%s\" is not error, warn, info or debug",
		                  cfg->log_level);
	if (strcmp(cfg->log_format, "text") != 0 && strcmp(cfg->log_format, "json") != 0)
		return st_err_set(err, ST_EINVAL, "log.format: \"%s\" is not text or json",
		                  cfg->log_format);
	for (size_t i = 0; i < 3; i++)
		ok = ok || strcmp(cfg->image_pull_policy, policies[i]) == 0;
	if (!ok)
		return st_err_set(err, ST_EINVAL,
		                  "injection.imagePullPolicy: \"%s\" is not Always, IfNotPresent "
		                  "or Never",
		                  cfg->image_pull_policy);
	if (cfg->image == NULL || cfg->image[0] == '\0')
		return st_err_set(err, ST_EINVAL, "injection.image must be set");
	if (strchr(cfg->listen, ':') == NULL)
		return st_err_set(err, ST_EINVAL, "listen: \"%s\" must be address:port",
		                  cfg->listen);
	return 0;
}

int st_webhook_config_load(struct st_webhook_config *cfg, const char *path, struct st_err *err)
{
	static const char *const handled[] = { "rules", "restore", NULL };
	struct json_object *root = NULL;
	int rc = ST_EINTERNAL;

	if (path != NULL) {
		if ((rc = st_yaml_load_file(&root, path, ST_CAP_CONFIG, err)) < 0)
			goto out;
		if ((rc = st_config_apply_tree(cfg, st_webhook_config_table,
		                               st_webhook_config_table_len, root, handled, path,
		                               err)) < 0)
			goto out;
		if ((rc = st_webhook_config_rules(cfg, st_json_get(root, "rules"), path, err)) < 0)
			goto out;
		if ((rc = st_webhook_config_restore(cfg, st_json_get(root, "restore"), path, err)) <
		    0)
			goto out;
	}
	if ((rc = st_config_apply_env(cfg, st_webhook_config_table, st_webhook_config_table_len,
	                              err)) < 0)
		goto out;
	rc = 0;
out:
	json_object_put(root);
	return rc;
}
