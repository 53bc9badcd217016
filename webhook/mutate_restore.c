#include "webhook/mutate_restore.h"

#include <stdlib.h>
#include <string.h>

#include "pkg/jsonpatch.h"
#include "pkg/remap.h"
#include "pkg/restore.h"
#include "pkg/util/caps.h"
#include "pkg/util/json.h"
#include "pkg/util/mem.h"

const char *st_restore_outcome_name(enum st_restore_outcome o)
{
	switch (o) {
	case ST_RESTORE_REMAPPED:
		return "remapped";
	case ST_RESTORE_UNCHANGED:
		return "unchanged";
	case ST_RESTORE_NOT_LABELLED:
		return "not_labelled";
	case ST_RESTORE_NOT_APPLICABLE:
		break;
	}
	return "not_applicable";
}

static bool restore_labelled(const struct json_object *obj)
{
	struct json_object *labels = st_json_get_obj(st_json_get_obj(obj, "metadata"), "labels");

	return st_json_get(labels, ST_LABEL_VELERO_RESTORE) != NULL ||
	       st_json_get(labels, ST_RESTORE_LABEL_RESTORE) != NULL;
}

int st_mutate_restore(struct st_admission_result *res, enum st_restore_outcome *outcome,
                      unsigned *changes_out, const struct st_webhook_config *cfg,
                      const struct st_admission_request *req)
{
	struct json_object *copy = NULL;
	struct json_object *patch = NULL;
	const char *text;
	unsigned changes = 0;
	size_t len = 0;
	int rc = ST_EINTERNAL;

	*outcome = ST_RESTORE_NOT_APPLICABLE;
	if (changes_out != NULL)
		*changes_out = 0;
	if (req->object == NULL || strcmp(req->operation, "CREATE") != 0 ||
	    req->sub_resource[0] != '\0')
		return 0;
	if (!restore_labelled(req->object)) {
		*outcome = ST_RESTORE_NOT_LABELLED;
		return 0;
	}
	*outcome = ST_RESTORE_UNCHANGED;
	if (st_remap_count(cfg->remap, ST_REMAP_STORAGE_CLASS) == 0 &&
	    st_remap_count(cfg->remap, ST_REMAP_IMAGE_REGISTRY) == 0)
		return 0;
	if (json_object_deep_copy(req->object, &copy, NULL) != 0) {
		rc = ST_ENOMEM;
		goto out;
	}
	/* The object was checked to be a JSON object at decode: this cannot fail. */
	if ((rc = st_remap_object(cfg->remap, copy, &changes, NULL)) < 0)
		goto out;
	if (changes == 0) {
		rc = 0;
		goto out;
	}
	if ((rc = st_jsonpatch_diff(&patch, req->object, copy)) < 0)
		goto out;
	text = st_json_to_string(patch, &len);
	if (len > ST_CAP_PATCH) {
		rc = ST_ETOOBIG;
		goto out;
	}
	res->patch = st_xstrndup(text, len);
	res->patch_len = len;
	*outcome = ST_RESTORE_REMAPPED;
	if (changes_out != NULL)
		*changes_out = changes;
	rc = 0;
out:
	json_object_put(copy);
	json_object_put(patch);
	return rc;
}
