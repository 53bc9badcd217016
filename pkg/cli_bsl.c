#include "pkg/cli_bsl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "pkg/cli_common.h"
#include "pkg/util/caps.h"
#include "pkg/util/json.h"
#include "pkg/util/mem.h"

const char st_cli_bsl_usage[] =
        "Usage: stasis backup-location VERB [options]\n"
        "\n"
        "Verbs:\n"
        "  create NAME     create (or update) a backup storage location\n"
        "  get [NAME...]   list backup storage locations (-o table|json|yaml)\n"
        "\n"
        "Options every verb takes: --kubeconfig FILE, --context NAME, -n/--namespace NS\n"
        "(the install namespace, default $STASIS_NAMESPACE then stasis), -h/--help.\n";

static const char create_usage[] =
        "Usage: stasis backup-location create NAME --provider aws|file [options]\n"
        "\n"
        "Options:\n"
        "  --provider NAME         aws (any S3-compatible store) or file (a directory)\n"
        "  --bucket BUCKET         bucket (required for aws)\n"
        "  --prefix PREFIX         prefix inside the bucket (or below config path)\n"
        "  --config K=V,...        region, s3Url, s3ForcePathStyle, insecureSkipTLSVerify,\n"
        "                          path (file provider)\n"
        "  --credential SECRET=KEY Secret (in the install namespace) and key holding an AWS\n"
        "                          credentials file\n"
        "  --cacert FILE           PEM CA bundle of the S3 endpoint\n"
        "  --default               make it the default location\n"
        "  -o, --output json|yaml  print the object instead of creating it\n"
        "  plus --kubeconfig, --context, -n\n";

static const char get_usage[] =
        "Usage: stasis backup-location get [NAME...] [-o table|json|yaml]\n"
        "\n"
        "Lists locations: NAME PROVIDER BUCKET/PREFIX PHASE LAST VALIDATED DEFAULT.\n";

static const char *const config_keys[] = {
	"region", "s3Url", "s3ForcePathStyle", "insecureSkipTLSVerify", "path", NULL
};

static int check_config(struct json_object *config, struct st_err *err)
{
	size_t i;

	if (config == NULL)
		return 0;
	json_object_object_foreach(config, k, v)
	{
		(void)v;
		for (i = 0; config_keys[i] != NULL; i++)
			if (strcmp(k, config_keys[i]) == 0)
				break;
		if (config_keys[i] == NULL)
			return st_err_set(err, ST_EINVAL,
			                  "unknown --config key '%s' (known: region, s3Url, "
			                  "s3ForcePathStyle, insecureSkipTLSVerify, path)",
			                  k);
		if ((strcmp(k, "s3ForcePathStyle") == 0 ||
		     strcmp(k, "insecureSkipTLSVerify") == 0) &&
		    strcmp(json_object_get_string(v), "true") != 0 &&
		    strcmp(json_object_get_string(v), "false") != 0)
			return st_err_set(err, ST_EINVAL, "--config %s must be true or false", k);
	}
	return 0;
}

int st_cli_bsl_build(struct json_object **out, const struct st_cli_bsl_spec *s, struct st_err *err)
{
	struct json_object *o = NULL, *meta, *spec, *os, *cred;
	bool aws = s->provider != NULL && strcmp(s->provider, "aws") == 0;
	bool file = s->provider != NULL && strcmp(s->provider, "file") == 0;
	int rc;

	*out = NULL;
	if (!aws && !file)
		return st_err_set(err, ST_EINVAL, "--provider must be aws or file, not '%s'",
		                  s->provider != NULL ? s->provider : "");
	if (aws && (s->bucket == NULL || s->bucket[0] == '\0'))
		return st_err_set(err, ST_EINVAL, "--bucket is required for provider aws");
	if (file && st_json_get_str(s->config, "path") == NULL)
		return st_err_set(err, ST_EINVAL,
		                  "provider file needs the directory: --config path=/DIR");
	if ((rc = check_config(s->config, err)) < 0)
		return rc;
	o = json_object_new_object();
	st_json_add_str(o, "apiVersion", ST_CLI_API_VERSION);
	st_json_add_str(o, "kind", "BackupStorageLocation");
	meta = json_object_new_object();
	st_json_add_str(meta, "name", s->name);
	st_json_add_str(meta, "namespace", s->ns);
	json_object_object_add(o, "metadata", meta);
	spec = json_object_new_object();
	json_object_object_add(o, "spec", spec);
	st_json_add_str(spec, "provider", s->provider);
	os = json_object_new_object();
	if (s->bucket != NULL)
		st_json_add_str(os, "bucket", s->bucket);
	if (s->prefix != NULL && s->prefix[0] != '\0')
		st_json_add_str(os, "prefix", s->prefix);
	if (s->ca_cert_b64 != NULL)
		st_json_add_str(os, "caCert", s->ca_cert_b64);
	json_object_object_add(spec, "objectStorage", os);
	if (s->config != NULL)
		json_object_object_add(spec, "config", json_object_get(s->config));
	if (s->secret != NULL) {
		cred = json_object_new_object();
		st_json_add_str(cred, "name", s->secret);
		st_json_add_str(cred, "key", s->secret_key);
		json_object_object_add(spec, "credential", cred);
	}
	json_object_object_add(spec, "default", json_object_new_boolean(s->is_default));
	*out = o;
	return 0;
}

static const char *const table_headers[] = { "NAME",  "PROVIDER",       "BUCKET/PREFIX",
	                                     "PHASE", "LAST VALIDATED", "DEFAULT" };

static void bsl_row(struct st_cli_table *t, struct json_object *b, long long now)
{
	struct json_object *spec = st_json_get_obj(b, "spec");
	struct json_object *status = st_json_get_obj(b, "status");
	struct json_object *os = st_json_get_obj(spec, "objectStorage");
	const char *bucket = st_json_get_str(os, "bucket");
	const char *prefix = st_json_get_str(os, "prefix");
	const char *phase = st_json_get_str(status, "phase");
	const char *validated = st_json_get_str(status, "lastValidationTime");
	char where[1024], last[64];
	const char *cells[6];
	int64_t t_valid = 0;

	if (bucket == NULL) /* file provider: the directory */
		bucket = st_json_get_str(st_json_get_obj(spec, "config"), "path");
	(void)snprintf(where, sizeof(where), "%s%s%s", bucket != NULL ? bucket : "",
	               prefix != NULL && prefix[0] != '\0' ? "/" : "",
	               prefix != NULL ? prefix : "");
	if (validated == NULL || st_cli_time_parse(&t_valid, validated) < 0)
		(void)snprintf(last, sizeof(last), "<none>");
	else
		st_cli_time_from_now(last, sizeof(last), t_valid, now);
	cells[0] = st_json_get_str(st_json_get_obj(b, "metadata"), "name");
	cells[1] = st_json_get_str(spec, "provider");
	cells[2] = where;
	cells[3] = phase != NULL ? phase : "Unknown";
	cells[4] = last;
	cells[5] = st_json_get_bool(spec, "default", false) ? "true" : "";
	st_cli_table_add(t, cells);
}

int st_cli_bsl_table(struct st_buf *out, struct json_object *items, long long now)
{
	return st_cli_table_print(out, table_headers, 6, items, bsl_row, now);
}

/* Reads a PEM file into base64 (*out, owned). */
static int read_cacert(char **out, const char *path, struct st_err *err)
{
	unsigned char *b64 = NULL;
	char *pem = NULL;
	size_t n = 0;
	FILE *f = NULL;
	int rc = ST_EIO;

	*out = NULL;
	if ((f = fopen(path, "rb")) == NULL)
		return st_err_set(err, ST_EIO, "--cacert %s: cannot open", path);
	pem = st_xmalloc(ST_CAP_PEM + 1);
	n = fread(pem, 1, ST_CAP_PEM + 1, f);
	if (ferror(f) || n == 0 || n > ST_CAP_PEM || strstr(pem, "-----BEGIN") == NULL) {
		rc = st_err_set(err, ST_EINVAL, "--cacert %s: not a PEM file of at most %u bytes",
		                path, ST_CAP_PEM);
		goto out;
	}
	b64 = st_xmalloc(4 * ((n + 2) / 3) + 1);
	(void)EVP_EncodeBlock(b64, (const unsigned char *)pem, (int)n);
	*out = (char *)b64;
	rc = 0;
out:
	free(pem);
	fclose(f);
	return rc;
}

enum {
	OPT_PROVIDER = ST_CLI_OPT_FIRST_FREE,
	OPT_BUCKET,
	OPT_PREFIX,
	OPT_CONFIG,
	OPT_CREDENTIAL,
	OPT_CACERT,
	OPT_DEFAULT,
};

struct create_args {
	struct st_cli_bsl_spec s;
	char *secret;
	const char *cacert;
};

static int create_option(void *payload, int c, const char *arg)
{
	struct create_args *a = payload;
	const char *eq;

	switch (c) {
	case OPT_PROVIDER:
		a->s.provider = arg;
		return 0;
	case OPT_BUCKET:
		a->s.bucket = arg;
		return 0;
	case OPT_PREFIX:
		a->s.prefix = arg;
		return 0;
	case OPT_CONFIG:
		return st_cli_parse_map(&a->s.config, arg);
	case OPT_CREDENTIAL:
		eq = strchr(arg, '=');
		if (eq == NULL || eq == arg || eq[1] == '\0')
			return ST_EINVAL;
		free(a->secret);
		a->secret = st_xstrndup(arg, (size_t)(eq - arg));
		a->s.secret = a->secret;
		a->s.secret_key = eq + 1;
		return st_cli_valid_name(a->secret) ? 0 : ST_EINVAL;
	case OPT_CACERT:
		a->cacert = arg;
		return 0;
	case OPT_DEFAULT:
		a->s.is_default = true;
		return 0;
	default:
		return ST_EINVAL;
	}
}

/* Parses create's options; -1 to go on, else an exit status. */
static int create_parse(struct st_cli_ctx *ctx, struct create_args *a, int argc, char **argv)
{
	static const struct option longopts[] = {
		ST_CLI_COMMON_LONGOPTS,
		{ "provider", required_argument, NULL, OPT_PROVIDER },
		{ "bucket", required_argument, NULL, OPT_BUCKET },
		{ "prefix", required_argument, NULL, OPT_PREFIX },
		{ "config", required_argument, NULL, OPT_CONFIG },
		{ "credential", required_argument, NULL, OPT_CREDENTIAL },
		{ "cacert", required_argument, NULL, OPT_CACERT },
		{ "default", no_argument, NULL, OPT_DEFAULT },
		{ NULL, 0, NULL, 0 },
	};
	int rc;

	rc = st_cli_parse_options(ctx, argc, argv, ":hn:o:", longopts, create_usage, create_option,
	                          a);
	if (rc >= 0)
		return rc;
	if (optind + 1 != argc || !st_cli_valid_name(argv[optind])) {
		st_cli_errorf(ctx, "exactly one valid location NAME is needed");
		return ST_CLI_EXIT_USAGE;
	}
	a->s.name = argv[optind];
	a->s.ns = ctx->ns;
	return -1;
}

static int bsl_create(struct st_cli_ctx *ctx, int argc, char **argv)
{
	struct create_args a = { .s = { .provider = NULL } };
	struct st_buf out = ST_BUF_INIT(ST_CLI_CAP_OUTPUT);
	struct st_err err = ST_ERR_INIT;
	struct json_object *obj = NULL;
	char *ca = NULL;
	struct st_kube_gvr gvr;
	bool created = false;
	int rc;

	if ((rc = create_parse(ctx, &a, argc, argv)) >= 0)
		goto out;
	rc = ST_CLI_EXIT_USAGE;
	if (a.cacert != NULL && read_cacert(&ca, a.cacert, &err) < 0) {
		st_cli_errorf(ctx, "%s", st_err_text(&err));
		goto out;
	}
	a.s.ca_cert_b64 = ca;
	if (st_cli_bsl_build(&obj, &a.s, &err) < 0) {
		st_cli_errorf(ctx, "%s", st_err_text(&err));
		goto out;
	}
	rc = ST_CLI_EXIT_FAIL;
	if (ctx->output_set && ctx->output != ST_CLI_OUTPUT_TABLE) {
		if (st_cli_output_object(&out, obj, ctx->output) == 0 &&
		    fwrite(out.ptr, 1, out.len, stdout) == out.len)
			rc = ST_CLI_EXIT_OK;
		goto out;
	}
	if (st_cli_connect(ctx) < 0)
		goto out;
	st_cli_gvr_bsl(&gvr);
	if ((rc = st_cli_apply(&created, ctx->client, &gvr, obj, &err)) < 0) {
		st_cli_kube_error(ctx, "create backup storage location", rc, &err);
		rc = ST_CLI_EXIT_FAIL;
		goto out;
	}
	printf("Backup storage location \"%s\" %s successfully.\n", a.s.name,
	       created ? "created" : "updated");
	rc = ST_CLI_EXIT_OK;
out:
	json_object_put(obj);
	json_object_put(a.s.config);
	free(a.secret);
	free(ca);
	st_buf_dispose(&out);
	return rc;
}

static int bsl_get(struct st_cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		ST_CLI_COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct json_object *items = json_object_new_array();
	struct st_buf out = ST_BUF_INIT(ST_CLI_CAP_OUTPUT);
	struct st_kube_gvr gvr;
	int rc, r, n;

	if ((rc = st_cli_parse_options(ctx, argc, argv, ":hn:o:", longopts, get_usage, NULL,
	                               NULL)) >= 0)
		goto out;
	n = argc - optind;
	rc = ST_CLI_EXIT_FAIL;
	if (st_cli_connect(ctx) < 0)
		goto out;
	st_cli_gvr_bsl(&gvr);
	if (st_cli_fetch(ctx, &gvr, "backup storage location", items, argv + optind, n, NULL) < 0 &&
	    json_object_array_length(items) == 0)
		goto out;
	if (ctx->output == ST_CLI_OUTPUT_TABLE)
		r = st_cli_bsl_table(&out, items, st_cli_now());
	else
		r = st_cli_output_list(&out, items, ctx->output, n == 1);
	if (r < 0 || fwrite(out.ptr, 1, out.len, stdout) != out.len)
		goto out;
	rc = (size_t)n > json_object_array_length(items) ? ST_CLI_EXIT_FAIL : ST_CLI_EXIT_OK;
out:
	json_object_put(items);
	st_buf_dispose(&out);
	return rc;
}

int st_cli_bsl_main(int argc, char **argv)
{
	struct st_cli_ctx ctx;
	int rc;

	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		fputs(st_cli_bsl_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? ST_CLI_EXIT_USAGE : ST_CLI_EXIT_OK;
	}
	if (strcmp(argv[1], "create") != 0 && strcmp(argv[1], "get") != 0) {
		fprintf(stderr, "stasis backup-location: unknown verb '%s'\n%s", argv[1],
		        st_cli_bsl_usage);
		return ST_CLI_EXIT_USAGE;
	}
	st_cli_ctx_init(&ctx, argv[1][0] == 'c' ? "backup-location create" : "backup-location get");
	opterr = 0;
	optind = 0;
	if (argv[1][0] == 'c')
		rc = bsl_create(&ctx, argc - 1, argv + 1);
	else
		rc = bsl_get(&ctx, argc - 1, argv + 1);
	st_cli_ctx_dispose(&ctx);
	return rc;
}
