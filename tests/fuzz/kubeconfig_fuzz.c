/*
 * Fuzz target: kubeconfig text through st_kube_config_parse, with its
 * contract checked: success yields a usable configuration (http(s) server
 * without a trailing slash, context, namespace, a certificate only with its
 * key), failure yields a message and an empty struct. The input also goes
 * through the base64 decoder, whose output must fit its promised bound.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/kube.h"
#include "pkg/kube_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_ok(const struct st_kube_config *cfg)
{
	size_t n;

	if (cfg->server == NULL || cfg->context == NULL || cfg->namespace == NULL ||
	    cfg->source == NULL)
		__builtin_trap();
	if (strncmp(cfg->server, "https://", 8) != 0 && strncmp(cfg->server, "http://", 7) != 0)
		__builtin_trap();
	n = strlen(cfg->server);
	if (n == 0 || cfg->server[n - 1] == '/')
		__builtin_trap();
	if ((cfg->cert == NULL) != (cfg->key == NULL))
		__builtin_trap();
	if (cfg->token != NULL && cfg->token[0] == '\0' && cfg->token_file != NULL)
		__builtin_trap();
}

static bool empty(const struct st_kube_config *cfg)
{
	return cfg->server == NULL && cfg->context == NULL && cfg->cluster == NULL &&
	       cfg->user == NULL && cfg->namespace == NULL && cfg->ca == NULL &&
	       cfg->cert == NULL && cfg->key == NULL && cfg->token == NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st_kube_config cfg;
	struct st_err err = ST_ERR_INIT;
	char *dec = NULL;
	size_t len = 0;

	st_kube_config_init(&cfg);
	/* File references resolve under a directory that does not exist. */
	if (st_kube_config_parse(&cfg, (const char *)data, size, NULL, "/nonexistent/fuzz", "fuzz",
	                         &err) == 0) {
		check_ok(&cfg);
	} else if (err.msg[0] == '\0' || !empty(&cfg)) {
		__builtin_trap();
	}
	st_kube_config_dispose(&cfg);

	if (st_kube__b64_decode(&dec, &len, (const char *)data, size) == 0) {
		if (len > size / 4 * 3 + 3 || dec[len] != '\0')
			__builtin_trap();
		free(dec);
	} else if (dec != NULL) {
		__builtin_trap();
	}
	return 0;
}
