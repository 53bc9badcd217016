/*
 * Kubernetes label selectors.
 *
 * Matches a LabelSelector object ({matchLabels, matchExpressions} with In,
 * NotIn, Exists, DoesNotExist) against an object's labels, as the API server
 * does: all terms must hold; an empty selector matches everything. Also
 * parses the string form used on command lines ("app=nginx,tier!=db,env in
 * (a,b),!legacy") into the same object so that one matcher serves both.
 */
#ifndef ST_PKG_LABELS_H
#define ST_PKG_LABELS_H

#include <stdbool.h>

#include <json-c/json.h>

#include "pkg/util/err.h"

/* Checks a LabelSelector's shape; errors name `what` and the bad term. */
int st_labels_validate(struct json_object *selector, const char *what,
                       struct st_err *err) ST_WARN_UNUSED;

/* True when labels (a string map, or NULL) satisfy selector (NULL matches all). */
bool st_labels_match(struct json_object *selector, struct json_object *labels);

/* Parses the command-line string form into a new LabelSelector object. */
int st_labels_parse(struct json_object **out, const char *text, struct st_err *err) ST_WARN_UNUSED;

#endif
