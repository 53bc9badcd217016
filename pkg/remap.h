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
 * Namespaces are rewritten in metadata.namespace, the name of a Namespace
 * object, a PersistentVolume's spec.claimRef.namespace, and the namespace of
 * ServiceAccount subjects in RoleBindings and ClusterRoleBindings.
 *
 * Storage classes are rewritten in PersistentVolumeClaims and
 * PersistentVolumes (spec.storageClassName and the beta annotation
 * volume.beta.kubernetes.io/storage-class), StatefulSet volumeClaimTemplates,
 * and the claim templates of generic ephemeral volumes in pod templates.
 *
 * Image registries are rewritten in every pod template's containers,
 * initContainers and ephemeralContainers (Pod, PodTemplate, and any object
 * with spec.template.spec or spec.jobTemplate.spec.template.spec: Deployment,
 * ReplicaSet, StatefulSet, DaemonSet, Job, CronJob, ReplicationController).
 * An image rule "old" is a registry or a registry/repository prefix; it
 * matches an image that starts with old at a boundary: the end, '/', a digest
 * '@' or a tag ':' (a ':' followed later by '/' is a registry port, so
 * "localhost" does not match "localhost:5000/app"). An image without a
 * registry (first component without '.' or ':' and not "localhost") is on
 * docker.io, and single names are in library/: "nginx:1.25" is also matched
 * as "docker.io/library/nginx:1.25", and rewritten in that full form. The
 * longest matching rule wins; the rest of the reference (repository, tag,
 * digest) is kept. A trailing '/' in a rule is ignored ("dev/" is "dev").
 * Velero itself replaces any substring; here only prefixes match, which makes
 * a rule applied twice (by Velero and by us) harmless in the usual cases.
 *
 * Each field is rewritten at most once (rules do not chain). A rule set is
 * built once and then only read: the const functions are thread-safe.
 */
#ifndef ST_PKG_REMAP_H
#define ST_PKG_REMAP_H

#include <stddef.h>

#include <json-c/json.h>

#include "pkg/util/err.h"

/* Longest image reference or prefix accepted in a rule. */
#define ST_REMAP_IMAGE_MAX 1024u
/* Most rules of one kind. */
#define ST_REMAP_MAX_RULES 4096u

enum st_remap_kind {
	ST_REMAP_NAMESPACE = 0,
	ST_REMAP_STORAGE_CLASS,
	ST_REMAP_IMAGE_REGISTRY,
	ST_REMAP_KINDS,
};

struct st_remap;

/* An empty rule set (*out owned by the caller, freed with st_remap_free). */
int st_remap_new(struct st_remap **out, struct st_err *err) ST_WARN_UNUSED;
/* NULL-safe. */
void st_remap_free(struct st_remap *m);

/* "namespace", "storage class" or "image registry" (for messages). */
const char *st_remap_kind_name(enum st_remap_kind kind);

/*
 * Adds one rule; ST_EINVAL for an empty or malformed name (namespaces must be
 * RFC 1123 labels, storage classes RFC 1123 subdomains, images reference
 * characters), or a second rule for the same from; ST_ETOOBIG past
 * ST_REMAP_MAX_RULES. Names are copied.
 */
int st_remap_add(struct st_remap *m, enum st_remap_kind kind, const char *from, const char *to,
                 struct st_err *err) ST_WARN_UNUSED;
/*
 * "old:new,old2:new2" (spaces around items ignored; blank text adds nothing).
 * An item may be written "old=new", which image rules with ports or tags
 * need when the ':' is ambiguous; a ':' followed by digits and '/', ':' or
 * the end is read as a port ("localhost:5000:mirror.local" works). All or
 * nothing: on error no rule of the text is kept.
 */
int st_remap_add_pairs(struct st_remap *m, enum st_remap_kind kind, const char *text,
                       struct st_err *err) ST_WARN_UNUSED;
/* A JSON object {"old":"new",...} (borrowed); all or nothing. */
int st_remap_add_map(struct st_remap *m, enum st_remap_kind kind, struct json_object *map,
                     struct st_err *err) ST_WARN_UNUSED;
/*
 * A ConfigMap in one of Velero's formats (see above), recognised by its label
 * (value RestoreItemAction; another kind than ConfigMap is never one).
 * Returns 1 when it was one and its rules were added (none when it has no
 * data), 0 when it is not one of them, ST_EINVAL for a malformed entry or a
 * ConfigMap carrying both labels. All or nothing.
 */
int st_remap_add_velero_configmap(struct st_remap *m, struct json_object *cm,
                                  struct st_err *err) ST_WARN_UNUSED;

/* The mapped name (borrowed from m), or NULL when no rule applies. Exact match. */
const char *st_remap_lookup(const struct st_remap *m, enum st_remap_kind kind, const char *from);
/*
 * Maps one image reference ("reg.io/team/app:1.0") by the prefix rules above;
 * returns malloc'd text, or NULL if unchanged.
 */
char *st_remap_image(const struct st_remap *m, const char *image);

/*
 * Applies every rule to obj in place. *changes_out (may be NULL) counts the
 * fields rewritten. ST_EINVAL only for an object that is not a JSON object.
 * m may be NULL (no rules).
 */
int st_remap_object(const struct st_remap *m, struct json_object *obj, unsigned *changes_out,
                    struct st_err *err) ST_WARN_UNUSED;

/* Number of rules of a kind. */
size_t st_remap_count(const struct st_remap *m, enum st_remap_kind kind);

#endif
