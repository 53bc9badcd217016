/*
 * Remapping of restored objects: namespaces, storage classes, image registries.
 *
 * One set of rules serves the restore engine (pkg/restore.c) and the webhook's
 * /mutate/restore. Rules come from flags ("old:new,old2:new2"), from a
 * Restore's spec, from the webhook's config, or from ConfigMaps in Velero's
 * formats (label velero.io/change-storage-class=RestoreItemAction: data maps
 * old class -> new class; label velero.io/change-image-name=RestoreItemAction:
 * data values "<old>,<new>" replacing a registry/repository prefix).
 *
 * Storage classes are rewritten in PersistentVolumeClaims
 * (spec.storageClassName and the beta annotation), PersistentVolumes, and
 * StatefulSet volumeClaimTemplates. Image registries are rewritten in every
 * pod template's containers, initContainers and ephemeralContainers (Pod,
 * Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob,
 * ReplicationController, and any object with spec.template.spec or
 * spec.jobTemplate.spec.template.spec). A registry rule "old" matches an
 * image whose registry (first path component when it has a '.' or ':' or is
 * "localhost"; else the implied docker.io) equals old, or whose text starts
 * with "old/". Namespaces are rewritten in metadata.namespace (and the name of
 * a Namespace object).
 */
#ifndef ST_PKG_REMAP_H
#define ST_PKG_REMAP_H

#include <stddef.h>

#include <json-c/json.h>

#include "pkg/util/err.h"

enum st_remap_kind {
	ST_REMAP_NAMESPACE = 0,
	ST_REMAP_STORAGE_CLASS,
	ST_REMAP_IMAGE_REGISTRY,
	ST_REMAP_KINDS,
};

struct st_remap;

int st_remap_new(struct st_remap **out, struct st_err *err) ST_WARN_UNUSED;
void st_remap_free(struct st_remap *m);

/* Adds one rule; ST_EINVAL for an empty or malformed name, or a second rule for the same from. */
int st_remap_add(struct st_remap *m, enum st_remap_kind kind, const char *from, const char *to,
                 struct st_err *err) ST_WARN_UNUSED;
/* "old:new,old2:new2" (spaces around items ignored). */
int st_remap_add_pairs(struct st_remap *m, enum st_remap_kind kind, const char *text,
                       struct st_err *err) ST_WARN_UNUSED;
/* A JSON object {"old":"new",...}. */
int st_remap_add_map(struct st_remap *m, enum st_remap_kind kind, struct json_object *map,
                     struct st_err *err) ST_WARN_UNUSED;
/*
 * A ConfigMap in one of Velero's formats (see above), recognised by its label.
 * Returns 1 when it was one and its rules were added, 0 when it is not one of them.
 */
int st_remap_add_velero_configmap(struct st_remap *m, struct json_object *cm,
                                  struct st_err *err) ST_WARN_UNUSED;

/* The mapped name, or NULL when no rule applies. */
const char *st_remap_lookup(const struct st_remap *m, enum st_remap_kind kind, const char *from);
/* Maps one image reference ("reg.io/team/app:1.0"); returns malloc'd text, or NULL if unchanged. */
char *st_remap_image(const struct st_remap *m, const char *image);

/*
 * Applies every rule to obj in place. *changes_out (may be NULL) counts the
 * fields rewritten. ST_EINVAL only for an object that is not a JSON object.
 */
int st_remap_object(const struct st_remap *m, struct json_object *obj, unsigned *changes_out,
                    struct st_err *err) ST_WARN_UNUSED;

/* Number of rules of a kind. */
size_t st_remap_count(const struct st_remap *m, enum st_remap_kind kind);

#endif
