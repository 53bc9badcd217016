#include "pkg/cli_common.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pkg/labels.h"
#include "pkg/util/json.h"
#include "pkg/util/mem.h"

/* A client for a command line: fewer, quicker retries than the controller's. */
#define CLI_MAX_RETRIES   2
#define CLI_CONNECT_MS    5000
#define CLI_TIMEOUT_MS    30000
#define CLI_MAX_NAME_LEN  253
#define CLI_MAX_LABEL_LEN 63

void st_cli_ctx_init(struct st_cli_ctx *ctx, const char *verb)
{
	const char *env = getenv("STASIS_NAMESPACE");

	memset(ctx, 0, sizeof(*ctx));
	ctx->verb = verb;
	ctx->ns = env != NULL && env[0] != '\0' ? env : ST_CLI_DEFAULT_NAMESPACE;
	ctx->output = ST_CLI_OUTPUT_TABLE;
}

void st_cli_ctx_dispose(struct st_cli_ctx *ctx)
{
	if (ctx == NULL)
		return;
	st_kube_client_free(ctx->client);
	ctx->client = NULL;
}

void st_cli_errorf(const struct st_cli_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "stasis %s: ", ctx->verb);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* DNS-1123 label: namespaces. */
static bool valid_label(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > CLI_MAX_LABEL_LEN || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

bool st_cli_valid_name(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > CLI_MAX_NAME_LEN)
		return false;
	for (i = 0; i < n; i++) {
		bool alnum = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9');

		if (alnum)
			continue;
		if ((s[i] != '-' && s[i] != '.') || i == 0 || i == n - 1 || s[i - 1] == '.' ||
		    (s[i] == '.' && s[i - 1] == '-'))
			return false;
	}
	return true;
}

int st_cli_common_option(struct st_cli_ctx *ctx, int c, const char *arg)
{
	if (arg == NULL) /* only the options below that take an argument use it */
		arg = "";
	switch (c) {
	case ST_CLI_OPT_KUBECONFIG:
		ctx->kubeconfig = arg;
		return 1;
	case ST_CLI_OPT_CONTEXT:
		ctx->context = arg;
		return 1;
	case 'n':
		if (!valid_label(arg)) {
			st_cli_errorf(ctx,
			              "invalid namespace '%s' (a DNS-1123 label: lower-case "
			              "letters, digits and '-', at most 63)",
			              arg);
			return -ST_CLI_EXIT_USAGE;
		}
		ctx->ns = arg;
		return 1;
	case 'o':
		if (st_cli_output_parse(&ctx->output, arg) < 0) {
			st_cli_errorf(ctx, "unknown output format '%s' (table, json or yaml)", arg);
			return -ST_CLI_EXIT_USAGE;
		}
		ctx->output_set = true;
		return 1;
	default:
		return 0;
	}
}

int st_cli_bad_option(const struct st_cli_ctx *ctx, int ch, char *const *argv)
{
	const char *arg = argv[optind - 1];

	if (ch == ':')
		st_cli_errorf(ctx, "option %s needs an argument", arg);
	else if (optopt != 0 && strncmp(arg, "--", 2) != 0)
		st_cli_errorf(ctx, "unknown option -%c", optopt);
	else
		st_cli_errorf(ctx, "unknown option %s", arg);
	fprintf(stderr, "Run 'stasis %s --help' for usage.\n", ctx->verb);
	return ST_CLI_EXIT_USAGE;
}

int st_cli_bad_value(const struct st_cli_ctx *ctx, const struct option *longopts, int c,
                     const char *arg)
{
	const struct option *o;

	for (o = longopts; o->name != NULL; o++)
		if (o->val == c)
			break;
	if (o->name != NULL)
		st_cli_errorf(ctx, "invalid value '%s' for --%s", arg != NULL ? arg : "", o->name);
	else
		st_cli_errorf(ctx, "invalid value '%s' for -%c", arg != NULL ? arg : "", c);
	fprintf(stderr, "Run 'stasis %s --help' for usage.\n", ctx->verb);
	return ST_CLI_EXIT_USAGE;
}

int st_cli_parse_options(struct st_cli_ctx *ctx, int argc, char **argv, const char *shortopts,
                         const struct option *longopts, const char *usage, st_cli_option_cb own,
                         void *payload)
{
	int c, r;

	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		if ((r = st_cli_common_option(ctx, c, optarg)) != 0) {
			if (r < 0)
				return -r;
			continue;
		}
		if (c == 'h') {
			fputs(usage, stdout);
			return ST_CLI_EXIT_OK;
		}
		if (c == '?' || c == ':')
			return st_cli_bad_option(ctx, c, argv);
		if (own == NULL || own(payload, c, optarg != NULL ? optarg : "") < 0)
			return st_cli_bad_value(ctx, longopts, c, optarg);
	}
	return -1;
}

static int collect_item(struct json_object *item, void *payload)
{
	json_object_array_add(payload, json_object_get(item));
	return 0;
}

int st_cli_fetch(struct st_cli_ctx *ctx, const struct st_kube_gvr *gvr, const char *what,
                 struct json_object *items, char *const *names, int n, const char *selector)
{
	struct st_kube_list_options lo = ST_KUBE_LIST_OPTIONS_INIT;
	struct st_err err = ST_ERR_INIT;
	struct json_object *o = NULL;
	char msg[128];
	int i, rc, failed = 0;
	long http = 0;

	if (n == 0) {
		lo.label_selector = selector;
		rc = st_kube_list_items(NULL, ctx->client, gvr, ctx->ns, &lo, collect_item, items,
		                        &err);
		(void)snprintf(msg, sizeof(msg), "list %ss", what);
		if (rc < 0)
			st_cli_kube_error(ctx, msg, rc, &err);
		if (rc == ST_ENOTFOUND)
			fprintf(stderr,
			        "  the API server does not serve %s.%s/%s; is stasis installed? "
			        "(stasis install -n %s)\n",
			        gvr->resource, gvr->group, gvr->version, ctx->ns);
		return rc;
	}
	for (i = 0; i < n; i++) {
		st_err_clear(&err);
		if ((rc = st_kube_get(&o, ctx->client, gvr, ctx->ns, names[i], &http, &err)) == 0) {
			json_object_array_add(items, o);
			continue;
		}
		(void)snprintf(msg, sizeof(msg), "get %s %s", what, names[i]);
		if (http == 404)
			st_cli_errorf(ctx, "%s %s not found in namespace %s", what, names[i],
			              ctx->ns);
		else
			st_cli_kube_error(ctx, msg, rc, &err);
		if (rc != ST_ENOTFOUND)
			return rc;
		failed = rc;
	}
	return failed;
}

/* Says where st_kube_config_load looked, in its order. */
static void print_config_search(const struct st_cli_ctx *ctx)
{
	const char *env = getenv("KUBECONFIG");
	const char *home = getenv("HOME");

	fprintf(stderr, "  looked at: ");
	if (ctx->kubeconfig != NULL)
		fprintf(stderr, "--kubeconfig %s\n", ctx->kubeconfig);
	else if (env != NULL && env[0] != '\0')
		fprintf(stderr, "$KUBECONFIG (%s)\n", env);
	else
		fprintf(stderr,
		        "$KUBECONFIG (unset), %s/.kube/config, in-cluster service account "
		        "(KUBERNETES_SERVICE_HOST %s)\n",
		        home != NULL ? home : "$HOME",
		        getenv("KUBERNETES_SERVICE_HOST") != NULL ? "set" : "unset");
	fprintf(stderr, "  fix: pass --kubeconfig FILE (and --context NAME), or set KUBECONFIG\n");
}

int st_cli_connect(struct st_cli_ctx *ctx)
{
	struct st_kube_config_options o = ST_KUBE_CONFIG_OPTIONS_INIT;
	struct st_kube_client_options co = ST_KUBE_CLIENT_OPTIONS_INIT;
	struct st_err err = ST_ERR_INIT;
	struct st_kube_config cfg;
	int rc;

	if (ctx->client != NULL)
		return 0;
	st_kube_config_init(&cfg);
	o.path = ctx->kubeconfig;
	o.context = ctx->context;
	if ((rc = st_kube_config_load(&cfg, &o, &err)) < 0) {
		(void)snprintf(ctx->why, sizeof(ctx->why), "%s", st_err_text(&err));
		if (ctx->quiet)
			goto out;
		st_cli_errorf(ctx, "cannot load the Kubernetes configuration: %s",
		              st_err_text(&err));
		print_config_search(ctx);
		goto out;
	}
	co.max_retries = CLI_MAX_RETRIES;
	co.connect_timeout_ms = CLI_CONNECT_MS;
	co.timeout_ms = CLI_TIMEOUT_MS;
	if ((rc = st_kube_client_new(&ctx->client, &cfg, &co, &err)) < 0) {
		(void)snprintf(ctx->why, sizeof(ctx->why), "%s", st_err_text(&err));
		if (ctx->quiet)
			goto out;
		st_cli_errorf(ctx, "%s: %s", cfg.source != NULL ? cfg.source : "kubeconfig",
		              st_err_text(&err));
		goto out;
	}
	rc = 0;
out:
	st_kube_config_dispose(&cfg);
	return rc;
}

void st_cli_kube_error(const struct st_cli_ctx *ctx, const char *what, int rc,
                       const struct st_err *err)
{
	const struct st_kube_config *cfg = ctx->client ? st_kube_client_config(ctx->client) : NULL;
	const char *server = cfg != NULL && cfg->server != NULL ? cfg->server : "?";
	const char *context = cfg != NULL && cfg->context != NULL ? cfg->context : "?";
	const char *source = cfg != NULL && cfg->source != NULL ? cfg->source : "?";

	st_cli_errorf(ctx, "%s: %s", what, st_err_text(err));
	if (rc == ST_EIO || rc == ST_ETIMEDOUT)
		fprintf(stderr,
		        "  the API server %s (context %s, from %s) cannot be reached; check that "
		        "it is running and the address is right, or pick another --context\n",
		        server, context, source);
	else if (rc == ST_ETLS)
		fprintf(stderr,
		        "  TLS with %s (context %s, from %s) failed; check the kubeconfig's "
		        "certificate-authority\n",
		        server, context, source);
	else if (rc == ST_EUPSTREAM && err != NULL &&
	         (strstr(err->msg, "Unauthorized") != NULL || strstr(err->msg, "401") != NULL))
		fprintf(stderr, "  the credentials of context %s (from %s) were refused\n", context,
		        source);
}

void st_cli_gvr_backup(struct st_kube_gvr *gvr)
{
	int rc = st_kube_gvr_set(gvr, ST_CLI_GROUP, ST_CLI_VERSION, "backups", "Backup", true);

	ST_ASSERT(rc == 0);
}

void st_cli_gvr_bsl(struct st_kube_gvr *gvr)
{
	int rc = st_kube_gvr_set(gvr, ST_CLI_GROUP, ST_CLI_VERSION, "backupstoragelocations",
	                         "BackupStorageLocation", true);

	ST_ASSERT(rc == 0);
}

void st_cli_gvr_schedule(struct st_kube_gvr *gvr)
{
	int rc = st_kube_gvr_set(gvr, ST_CLI_GROUP, ST_CLI_VERSION, "schedules", "Schedule", true);

	ST_ASSERT(rc == 0);
}

/* Copies what the server assigned and a replace must keep (the Service's cluster IPs). */
static void keep_assigned(struct json_object *obj, struct json_object *cur)
{
	static const char *const keep[] = { "clusterIP", "clusterIPs", "healthCheckNodePort",
		                            NULL };
	struct json_object *spec = st_json_get_obj(obj, "spec");
	struct json_object *cur_spec = st_json_get_obj(cur, "spec");
	struct json_object *v;
	size_t i;

	if (strcmp(st_json_get_str(obj, "kind") != NULL ? st_json_get_str(obj, "kind") : "",
	           "Service") != 0 ||
	    spec == NULL)
		return;
	for (i = 0; keep[i] != NULL; i++)
		if ((v = st_json_get(cur_spec, keep[i])) != NULL &&
		    st_json_get(spec, keep[i]) == NULL)
			json_object_object_add(spec, keep[i], json_object_get(v));
}

/* Replaces the existing object by obj (a copy gets its resourceVersion). */
static int replace(struct st_kube_client *c, const struct st_kube_gvr *gvr, const char *ns,
                   const char *name, struct json_object *obj, long *http, struct st_err *err)
{
	struct json_object *cur = NULL, *copy = NULL, *res = NULL;
	const char *rv;
	int rc;

	if ((rc = st_kube_get(&cur, c, gvr, ns, name, http, err)) < 0)
		goto out;
	rv = st_json_get_str(st_json_get_obj(cur, "metadata"), "resourceVersion");
	if (json_object_deep_copy(obj, &copy, NULL) != 0) {
		rc = ST_ENOMEM;
		goto out;
	}
	if (rv != NULL)
		st_json_add_str(st_json_get_obj(copy, "metadata"), "resourceVersion", rv);
	keep_assigned(copy, cur);
	rc = st_kube_update(&res, c, gvr, ns, copy, http, err);
out:
	json_object_put(res);
	json_object_put(copy);
	json_object_put(cur);
	return rc;
}

int st_cli_apply(bool *created_out, struct st_kube_client *c, const struct st_kube_gvr *gvr,
                 struct json_object *obj, struct st_err *err)
{
	struct json_object *meta = st_json_get_obj(obj, "metadata");
	const char *name = st_json_get_str(meta, "name");
	const char *ns = st_json_get_str(meta, "namespace");
	struct json_object *res = NULL;
	struct st_err cerr = ST_ERR_INIT;
	long http = 0;
	int rc, attempt;

	if (created_out != NULL)
		*created_out = false;
	if (name == NULL)
		return st_err_set(err, ST_EINVAL, "%s without metadata.name", gvr->kind);
	rc = st_kube_create(&res, c, gvr, ns, obj, &http, &cerr);
	json_object_put(res);
	if (rc == 0) {
		if (created_out != NULL)
			*created_out = true;
		return 0;
	}
	if (http != 409) {
		(void)st_err_set(err, rc, "%s", st_err_text(&cerr));
		return rc;
	}
	/* Replace, as `kubectl replace` does; a concurrent writer (409) gets one more try. */
	for (attempt = 0; attempt < 2; attempt++) {
		st_err_clear(&cerr);
		rc = replace(c, gvr, ns, name, obj, &http, &cerr);
		if (rc == 0 || http != 409)
			break;
	}
	if (rc < 0)
		(void)st_err_set(err, rc, "%s", st_err_text(&cerr));
	return rc;
}

int st_cli_parse_list(struct json_object **arr, const char *s)
{
	const char *p = s, *end;
	size_t n;

	if (*arr == NULL)
		*arr = json_object_new_array();
	while (*p != '\0') {
		end = strchr(p, ',');
		n = end != NULL ? (size_t)(end - p) : strlen(p);
		if (memchr(p, ' ', n) != NULL)
			return ST_EINVAL;
		if (n > 0)
			json_object_array_add(*arr, json_object_new_string_len(p, (int)n));
		p += n;
		if (*p == ',')
			p++;
	}
	return 0;
}

int st_cli_add_list(struct json_object *obj, const char *key, const char *s)
{
	struct json_object *arr = NULL;

	if (json_object_object_get_ex(obj, key, &arr))
		return st_cli_parse_list(&arr, s);
	if (st_cli_parse_list(&arr, s) < 0) {
		json_object_put(arr);
		return ST_EINVAL;
	}
	json_object_object_add(obj, key, arr);
	return 0;
}

int st_cli_add_bool(struct json_object *obj, const char *key, const char *s)
{
	bool v = false;

	if (st_cli_parse_bool(&v, s) < 0)
		return ST_EINVAL;
	json_object_object_add(obj, key, json_object_new_boolean(v));
	return 0;
}

int st_cli_parse_map(struct json_object **map, const char *s)
{
	const char *p = s, *end, *eq;
	char *key = NULL;
	size_t n;

	if (*map == NULL)
		*map = json_object_new_object();
	while (*p != '\0') {
		end = strchr(p, ',');
		n = end != NULL ? (size_t)(end - p) : strlen(p);
		if (n > 0) {
			eq = memchr(p, '=', n);
			if (eq == NULL || eq == p)
				return ST_EINVAL;
			key = st_xstrndup(p, (size_t)(eq - p));
			json_object_object_add(*map, key,
			                       json_object_new_string_len(
			                               eq + 1, (int)(n - (size_t)(eq - p) - 1)));
			free(key);
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return 0;
}

/*
 * "k=v" parses as {key: k, operator: In, values: [v]}; Velero and kubectl
 * keep it in matchLabels, which reads better in `backup get`. Moves such
 * terms there (first one per key) and drops an empty matchExpressions.
 */
static void equality_to_match_labels(struct json_object *sel)
{
	struct json_object *exprs = st_json_get_arr(sel, "matchExpressions");
	struct json_object *ml = json_object_new_object();
	struct json_object *rest = json_object_new_array();
	size_t i;

	for (i = 0; exprs != NULL && i < json_object_array_length(exprs); i++) {
		struct json_object *e = json_object_array_get_idx(exprs, i);
		struct json_object *vals = st_json_get_arr(e, "values");
		const char *key = st_json_get_str(e, "key");
		const char *op = st_json_get_str(e, "operator");

		if (key != NULL && op != NULL && strcmp(op, "In") == 0 && vals != NULL &&
		    json_object_array_length(vals) == 1 && st_json_get(ml, key) == NULL)
			json_object_object_add(ml, key,
			                       json_object_get(json_object_array_get_idx(vals, 0)));
		else
			json_object_array_add(rest, json_object_get(e));
	}
	json_object_object_del(sel, "matchExpressions");
	if (json_object_object_length(ml) > 0)
		json_object_object_add(sel, "matchLabels", ml);
	else
		json_object_put(ml);
	if (json_object_array_length(rest) > 0)
		json_object_object_add(sel, "matchExpressions", rest);
	else
		json_object_put(rest);
}

int st_cli_parse_selector(struct json_object **out, const char *text, struct st_err *err)
{
	size_t n = strlen(text);
	char *copy = st_xmalloc(n + 2);
	int rc;

	*out = NULL;
	/*
	 * st_labels_parse scans a word with strchr(set, c), which also matches the
	 * terminating NUL, so a word that ends the text is read past its end. A
	 * trailing blank (skipped as whitespace) keeps the scan inside the string,
	 * and text that ends where a word is still expected ("a in (", "a=", "!")
	 * is refused here, before the scan could start at the NUL.
	 */
	while (n > 0 && isspace((unsigned char)text[n - 1]))
		n--;
	if (n == 0 || !(isalnum((unsigned char)text[n - 1]) || strchr("-_./)", text[n - 1]))) {
		free(copy);
		return st_err_set(err, ST_EINVAL,
		                  "selector \"%s\": ends where a label or value "
		                  "is expected",
		                  text);
	}
	memcpy(copy, text, n);
	copy[n] = ' ';
	copy[n + 1] = '\0';
	rc = st_labels_parse(out, copy, err);
	free(copy);
	if (rc == 0)
		equality_to_match_labels(*out);
	return rc;
}

int st_cli_parse_bool(bool *out, const char *s)
{
	if (s == NULL || s[0] == '\0' || strcmp(s, "true") == 0)
		*out = true;
	else if (strcmp(s, "false") == 0)
		*out = false;
	else
		return ST_EINVAL;
	return 0;
}

long long st_cli_now(void)
{
	return (long long)time(NULL);
}

int st_cli_dispatch(const char *group, const char *usage, const struct st_cli_sub_verb *verbs,
                    int argc, char **argv)
{
	const struct st_cli_sub_verb *v;
	struct st_cli_ctx ctx;
	int rc;

	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? ST_CLI_EXIT_USAGE : ST_CLI_EXIT_OK;
	}
	for (v = verbs; v->name != NULL; v++)
		if (strcmp(v->name, argv[1]) == 0)
			break;
	if (v->name == NULL) {
		fprintf(stderr, "stasis %s: unknown verb '%s'\n%s", group, argv[1], usage);
		return ST_CLI_EXIT_USAGE;
	}
	st_cli_ctx_init(&ctx, v->verb);
	opterr = 0;
	optind = 0;
	rc = v->run(&ctx, argc - 1, argv + 1);
	st_cli_ctx_dispose(&ctx);
	return rc;
}

int st_cli_flush(const struct st_buf *b)
{
	if (b->len > 0 && fwrite(b->ptr, 1, b->len, stdout) != b->len)
		return ST_EIO;
	return fflush(stdout) == 0 ? 0 : ST_EIO;
}

int st_cli_create(struct st_cli_ctx *ctx, const struct st_kube_gvr *gvr, const char *what,
                  struct json_object *obj, const char *name)
{
	struct json_object *res = NULL;
	struct st_err err = ST_ERR_INIT;
	char action[64];
	long http = 0;
	int rc;

	if (st_cli_connect(ctx) < 0)
		return ST_CLI_EXIT_FAIL;
	rc = st_kube_create(&res, ctx->client, gvr, ctx->ns, obj, &http, &err);
	json_object_put(res);
	if (rc == 0)
		return ST_CLI_EXIT_OK;
	(void)snprintf(action, sizeof(action), "create %s", what);
	if (http == 409)
		st_cli_errorf(ctx, "a %s named %s already exists in namespace %s", what, name,
		              ctx->ns);
	else if (http == 404)
		st_cli_errorf(ctx,
		              "%s; is stasis installed in namespace %s? (stasis install -n %s)",
		              st_err_text(&err), ctx->ns, ctx->ns);
	else
		st_cli_kube_error(ctx, action, rc, &err);
	return ST_CLI_EXIT_FAIL;
}

/* Formats items as `get` (table, JSON, YAML) or `describe` text. */
static int show_items(struct st_buf *out, const struct st_cli_ctx *ctx, const struct st_cli_kind *k,
                      struct json_object *items, bool describe, void *payload, bool single)
{
	size_t i;
	int rc = 0;

	if (!describe && ctx->output == ST_CLI_OUTPUT_TABLE)
		return k->table(out, items, st_cli_now());
	if (!describe)
		return st_cli_output_list(out, items, ctx->output, single);
	for (i = 0; i < json_object_array_length(items) && rc == 0; i++) {
		if (i > 0)
			rc = st_buf_putc(out, '\n');
		if (rc == 0)
			rc = k->describe(out, json_object_array_get_idx(items, i), payload);
	}
	return rc;
}

int st_cli_show(struct st_cli_ctx *ctx, const struct st_cli_kind *k, char *const *names, int n,
                const char *selector, bool describe, void *payload)
{
	struct json_object *items = json_object_new_array();
	struct st_buf out = ST_BUF_INIT(ST_CLI_CAP_OUTPUT);
	struct st_kube_gvr gvr;
	int rc = ST_CLI_EXIT_FAIL;

	k->gvr(&gvr);
	if (st_cli_connect(ctx) < 0)
		goto out;
	if (st_cli_fetch(ctx, &gvr, k->what, items, names, n, selector) < 0 &&
	    json_object_array_length(items) == 0)
		goto out;
	if (show_items(&out, ctx, k, items, describe, payload, n == 1) < 0 ||
	    st_cli_flush(&out) < 0)
		goto out;
	rc = (size_t)n > json_object_array_length(items) ? ST_CLI_EXIT_FAIL : ST_CLI_EXIT_OK;
out:
	json_object_put(items);
	st_buf_dispose(&out);
	return rc;
}

bool st_cli_confirm(const char *what, int n, char *const *names, const char *rest)
{
	char line[32];
	int i;

	printf("Are you sure you want to continue (Y/N)? The %s%s", what, n == 1 ? "" : "s");
	for (i = 0; i < n; i++)
		printf(" %s", names[i]);
	printf(" %s: ", rest);
	(void)fflush(stdout);
	if (fgets(line, sizeof(line), stdin) == NULL)
		return false;
	return line[0] == 'y' || line[0] == 'Y';
}

struct json_object *st_cli_new_object(const char *kind, const char *name, const char *ns,
                                      struct json_object *labels)
{
	struct json_object *o = json_object_new_object();
	struct json_object *meta = json_object_new_object();

	st_json_add_str(o, "apiVersion", ST_CLI_API_VERSION);
	st_json_add_str(o, "kind", kind);
	st_json_add_str(meta, "name", name);
	st_json_add_str(meta, "namespace", ns);
	if (labels != NULL)
		json_object_object_add(meta, "labels", json_object_get(labels));
	json_object_object_add(o, "metadata", meta);
	return o;
}

int st_cli_print_object(const struct st_cli_ctx *ctx, struct json_object *obj)
{
	struct st_buf out = ST_BUF_INIT(ST_CLI_CAP_OUTPUT);
	int rc = ST_CLI_EXIT_OK;

	if (st_cli_output_object(&out, obj, ctx->output) < 0 || st_cli_flush(&out) < 0)
		rc = ST_CLI_EXIT_FAIL;
	st_buf_dispose(&out);
	return rc;
}
