/*
 * stasis-webhook configuration: the settings table (docs/configuration.md is
 * generated from the same entries) and the injection rules.
 *
 * A rule selects pods by namespace name and/or label selector and says
 * whether to freeze them, which volumes, and with which timeout; the first
 * matching rule wins. A pod's own stasis.io/freeze annotation overrides every
 * rule. The loaded config is immutable and shared by all request threads.
 *
 * The `restore` section holds the storage-class and image-registry rules of
 * /mutate/restore: maps in the file and Velero-format ConfigMap files.
 */
#ifndef ST_WEBHOOK_CONFIG_H
#define ST_WEBHOOK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "pkg/config.h"
#include "pkg/remap.h"
#include "pkg/util/err.h"

struct st_webhook_rule {
	char *name;
	char **namespaces;            /* NULL-terminated; NULL: any namespace */
	struct json_object *selector; /* LabelSelector; NULL: any pod */
	bool freeze;
	char **volumes;              /* NULL-terminated; NULL: default selection */
	long long freeze_timeout_ms; /* 0: the global injection.freezeTimeout */
	int native_sidecar;          /* -1: the global injection.nativeSidecar */
};

struct st_webhook_config {
	char *listen;
	char *cert_file;
	char *key_file;
	char *log_level;
	char *log_format;
	long long threads;
	long long max_body;
	long long conn_timeout_ms;
	char *image;
	char *image_pull_policy;
	char *agent_path;
	bool native_sidecar;
	long long freeze_timeout_ms;
	long long hook_timeout_ms;
	long long agent_port;
	char *cpu_request;
	char *memory_request;
	char *memory_limit;
	char *agent_tls_secret;
	struct st_webhook_rule *rules;
	size_t nrules;
	struct st_remap *remap; /* /mutate/restore rules; NULL: none configured */
};

extern const struct st_cfg_entry st_webhook_config_table[];
extern const size_t st_webhook_config_table_len;

/* Fills defaults; cannot fail. */
void st_webhook_config_init(struct st_webhook_config *cfg);
/* Loads a YAML file over the defaults, then STASIS_* environment overrides. */
int st_webhook_config_load(struct st_webhook_config *cfg, const char *path,
                           struct st_err *err) ST_WARN_UNUSED;
/* Parses the `rules` list of a loaded document (exposed for tests and fuzzing). */
int st_webhook_config_rules(struct st_webhook_config *cfg, struct json_object *rules,
                            const char *what, struct st_err *err) ST_WARN_UNUSED;
/*
 * Parses the `restore` section of a loaded document (exposed for tests and
 * fuzzing): storageClassMappings and imageRegistryMappings (maps of old to
 * new) and configMaps (a list of files, each holding Velero change-storage-
 * class or change-image-name ConfigMaps, or a List of them). Namespaces are
 * never remapped by the webhook. Files are read now, at most ST_CAP_CONFIG
 * bytes each.
 */
int st_webhook_config_restore(struct st_webhook_config *cfg, struct json_object *restore,
                              const char *what, struct st_err *err) ST_WARN_UNUSED;
/* Checks cross-field constraints after every override was applied. */
int st_webhook_config_validate(const struct st_webhook_config *cfg,
                               struct st_err *err) ST_WARN_UNUSED;
void st_webhook_config_dispose(struct st_webhook_config *cfg);

#endif
