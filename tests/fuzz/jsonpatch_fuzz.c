/*
 * Fuzz target for pkg/jsonpatch. The input is a document and a patch
 * separated by the first newline (or NUL). The patch is applied through the
 * text API; when it succeeds, diff(document, result) must apply to the
 * document and give the result again, and a failed apply must leave the
 * document as it was. Any violation aborts so that the fuzzer reports it.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/jsonpatch.h"
#include "pkg/util/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small enough that copy chains hit the cap quickly and runs stay fast. */
#define FUZZ_CAP ((size_t)64 * 1024)

/*
 * json-c reads NaN and Infinity, which are not JSON; NaN never equals itself,
 * so documents holding one cannot be compared and are left out of the check.
 */
static int has_nonfinite(struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_double:
		return !isfinite(json_object_get_double(v));
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(v); i++)
			if (has_nonfinite(json_object_array_get_idx(v, i)))
				return 1;
		return 0;
	case json_type_object: {
		json_object_object_foreach(v, key, val)
		{
			(void)key;
			if (has_nonfinite(val))
				return 1;
		}
		return 0;
	}
	default:
		return 0;
	}
}

static void check_round_trip(const char *doc, size_t doc_len, const char *res, size_t res_len)
{
	struct json_object *from = NULL;
	struct json_object *to = NULL;
	struct json_object *patch = NULL;

	/* A "null" document or result does not parse with st_json_parse. */
	if (st_json_parse(&from, doc, doc_len, FUZZ_CAP, "doc", NULL) < 0 ||
	    st_json_parse(&to, res, res_len, FUZZ_CAP, "result", NULL) < 0 || has_nonfinite(to))
		goto out;
	if (st_jsonpatch_diff(&patch, from, to) < 0)
		abort();
	if (st_jsonpatch_apply(&from, patch, NULL) < 0 || !json_object_equal(from, to))
		abort();
out:
	json_object_put(from);
	json_object_put(to);
	json_object_put(patch);
}

/* Applies through the object API to a parsed copy and checks atomicity. */
static void check_atomic(const char *doc, size_t doc_len, const char *patch, size_t patch_len)
{
	struct json_object *d = NULL;
	struct json_object *p = NULL;
	struct json_object *orig = NULL;
	char *before = NULL;

	if (st_json_parse(&d, doc, doc_len, FUZZ_CAP, "doc", NULL) < 0 ||
	    st_json_parse(&p, patch, patch_len, FUZZ_CAP, "patch", NULL) < 0)
		goto out;
	orig = d;
	before = strdup(st_json_to_string(d, NULL));
	if (before == NULL)
		goto out;
	if (st_jsonpatch_apply(&d, p, NULL) < 0 &&
	    (d != orig || strcmp(before, st_json_to_string(d, NULL)) != 0))
		abort();
out:
	free(before);
	json_object_put(d);
	json_object_put(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	size_t split = 0;
	char *out = NULL;
	size_t out_len = 0;
	int rc;

	while (split < size && in[split] != '\n' && in[split] != '\0')
		split++;
	if (split == size)
		return 0;
	rc = st_jsonpatch_apply_text(&out, &out_len, in, split, in + split + 1, size - split - 1,
	                             FUZZ_CAP, NULL);
	if (rc == 0) {
		if (out == NULL || strlen(out) != out_len)
			abort();
		check_round_trip(in, split, out, out_len);
	}
	free(out);
	/*
	 * The object API allows far more growth than FUZZ_CAP; replay only the
	 * failures that did not come from a cap, which fail the same way there.
	 */
	if (rc < 0 && rc != ST_ETOOBIG)
		check_atomic(in, split, in + split + 1, size - split - 1);
	return 0;
}
