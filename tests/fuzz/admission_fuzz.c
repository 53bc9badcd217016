/*
 * Fuzz target: an AdmissionReview body through decode, injection (with one
 * rule so the policy paths run) and encode, exactly as /mutate/pods does.
 * The answer and the patch are written as text, so both must parse back,
 * and the patch must apply to the pod it was built for.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/jsonpatch.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/yaml.h"
#include "webhook/config.h"
#include "webhook/inject.h"
#include "webhook/review.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_answer(const char *out, size_t len, const struct st_admission_request *req,
                         const struct st_admission_result *res)
{
	struct json_object *answer = NULL;
	struct json_object *patch = NULL;
	struct json_object *pod = NULL;

	if (st_json_parse(&answer, out, len, len, "answer", NULL) != 0)
		__builtin_trap();
	json_object_put(answer);
	if (res->patch == NULL)
		return;
	if (st_json_parse(&patch, res->patch, res->patch_len, res->patch_len, "patch", NULL) != 0 ||
	    json_object_deep_copy(req->object, &pod, NULL) != 0)
		__builtin_trap();
	if (st_jsonpatch_apply(&pod, patch, NULL) != 0)
		__builtin_trap();
	json_object_put(pod);
	json_object_put(patch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char rules[] = "- namespaces: [db]\n  selector:\n    matchExpressions:\n"
	                            "    - {key: app, operator: In, values: [pg]}\n";
	struct st_webhook_config cfg;
	struct st_admission_request req;
	struct st_admission_result res;
	struct json_object *r = NULL;
	enum st_inject_outcome outcome;
	char *out = NULL;
	size_t len = 0;

	st_log_setup(ST_LOG_ERR, ST_LOG_TEXT);
	st_webhook_config_init(&cfg);
	if (st_yaml_parse_one(&r, rules, sizeof(rules) - 1, "rules", NULL) == 0)
		(void)!st_webhook_config_rules(&cfg, r, "rules", NULL);
	json_object_put(r);
	if (st_admission_decode(&req, (const char *)data, size, 1u << 20, NULL) == 0) {
		st_admission_result_init(&res);
		if (st_inject_pod(&res, &outcome, &cfg, &req) == 0 &&
		    st_admission_encode(&out, &len, &req, &res) == 0) {
			check_answer(out, len, &req, &res);
			free(out);
		}
		st_admission_result_dispose(&res);
		st_admission_request_dispose(&req);
	}
	st_webhook_config_dispose(&cfg);
	return 0;
}
