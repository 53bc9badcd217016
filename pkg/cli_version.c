#include "pkg/cli_version.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "pkg/cli_common.h"
#include "pkg/util/json.h"

#ifndef STASIS_VERSION
#define STASIS_VERSION "0.1.0-dev"
#endif

#define CONTROLLER_NAME "stasis-controller"

const char st_cli_version_usage[] =
        "Usage: stasis version [--client-only] [-o text|json]\n"
        "\n"
        "Prints the version of stasis and of the OpenSSL library it uses, then the\n"
        "server's: the image and version of the controller Deployment (stasis-controller\n"
        "in the install namespace), when the cluster is reachable.\n"
        "\n"
        "Options:\n"
        "  --client-only         do not contact the cluster\n"
        "  -o, --output FORMAT   text (default) or json\n"
        "  --kubeconfig FILE, --context NAME, -n/--namespace NS  (see 'stasis backup --help')\n"
        "  -h, --help            show this help\n";

const char *st_cli_version(void)
{
	return STASIS_VERSION;
}

/*
 * Reads the controller Deployment into *server (a new object with image and
 * version) or a sentence into why.
 */
static int server_version(struct json_object **server, struct st_cli_ctx *ctx, char *why,
                          size_t why_size)
{
	struct json_object *dep = NULL, *containers, *labels;
	struct st_err err = ST_ERR_INIT;
	struct st_kube_gvr gvr;
	const char *image = NULL, *version = NULL;
	long http = 0;
	int rc;

	*server = NULL;
	rc = st_kube_gvr_set(&gvr, "apps", "v1", "deployments", "Deployment", true);
	if (rc == 0)
		rc = st_kube_get(&dep, ctx->client, &gvr, ctx->ns, CONTROLLER_NAME, &http, &err);
	if (rc < 0) {
		if (http == 404)
			(void)snprintf(why, why_size,
			               "not installed (no deployment %s in namespace %s)",
			               CONTROLLER_NAME, ctx->ns);
		else
			(void)snprintf(why, why_size, "%s", st_err_text(&err));
		return rc;
	}
	containers = st_json_get_arr(
	        st_json_get_obj(st_json_get_obj(st_json_get_obj(dep, "spec"), "template"), "spec"),
	        "containers");
	if (containers != NULL && json_object_array_length(containers) > 0)
		image = st_json_get_str(json_object_array_get_idx(containers, 0), "image");
	labels = st_json_get_obj(st_json_get_obj(dep, "metadata"), "labels");
	version = st_json_get_str(labels, "app.kubernetes.io/version");
	*server = json_object_new_object();
	st_json_add_str(*server, "image", image != NULL ? image : "");
	st_json_add_str(*server, "version", version != NULL ? version : "unknown");
	json_object_put(dep);
	return 0;
}

static int print_version(struct st_cli_ctx *ctx, bool client_only, bool json)
{
	struct json_object *o = json_object_new_object(), *server = NULL;
	char why[512] = "";

	st_json_add_str(o, "version", STASIS_VERSION);
	st_json_add_str(o, "openssl", OpenSSL_version(OPENSSL_VERSION));
	if (!client_only) {
		/* A client without a cluster is normal here: say so on stdout only. */
		ctx->quiet = true;
		if (st_cli_connect(ctx) < 0)
			(void)snprintf(why, sizeof(why), "no cluster configuration (%s)", ctx->why);
		else
			(void)server_version(&server, ctx, why, sizeof(why));
	}
	if (json) {
		if (server != NULL)
			json_object_object_add(o, "server", json_object_get(server));
		else if (!client_only)
			st_json_add_str(o, "serverError", why);
		printf("%s\n", st_json_to_string(o, NULL));
	} else {
		printf("stasis %s (%s)\n", STASIS_VERSION, OpenSSL_version(OPENSSL_VERSION));
		if (server != NULL)
			printf("Server:\n  Version: %s\n  Image:   %s\n",
			       st_json_get_str(server, "version"),
			       st_json_get_str(server, "image"));
		else if (!client_only)
			printf("Server:\n  <error getting server version: %s>\n", why);
	}
	json_object_put(server);
	json_object_put(o);
	return ST_CLI_EXIT_OK;
}

enum { OPT_CLIENT_ONLY = ST_CLI_OPT_FIRST_FREE };

int st_cli_version_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		ST_CLI_COMMON_LONGOPTS,
		{ "client-only", no_argument, NULL, OPT_CLIENT_ONLY },
		{ NULL, 0, NULL, 0 },
	};
	struct st_cli_ctx ctx;
	bool client_only = false, json = false;
	int rc = ST_CLI_EXIT_USAGE, c;

	st_cli_ctx_init(&ctx, "version");
	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, ":hn:o:", longopts, NULL)) != -1) {
		if (c == 'o') {
			/* version speaks text or json, not table/yaml. */
			if (strcmp(optarg, "json") != 0 && strcmp(optarg, "text") != 0) {
				st_cli_errorf(&ctx, "unknown output format '%s' (text or json)",
				              optarg);
				goto out;
			}
			json = strcmp(optarg, "json") == 0;
			continue;
		}
		if ((rc = st_cli_common_option(&ctx, c, optarg)) != 0) {
			if (rc < 0) {
				rc = -rc;
				goto out;
			}
			continue;
		}
		rc = ST_CLI_EXIT_USAGE;
		if (c == OPT_CLIENT_ONLY) {
			client_only = true;
			continue;
		}
		if (c == 'h') {
			fputs(st_cli_version_usage, stdout);
			rc = ST_CLI_EXIT_OK;
		} else {
			rc = st_cli_bad_option(&ctx, c, argv);
		}
		goto out;
	}
	if (optind < argc) {
		st_cli_errorf(&ctx, "unexpected argument '%s'", argv[optind]);
		rc = ST_CLI_EXIT_USAGE;
		goto out;
	}
	rc = print_version(&ctx, client_only, json);
out:
	st_cli_ctx_dispose(&ctx);
	return rc;
}
