/*
 * `stasis restore create|get|describe|logs`: the Restore custom resource
 * from the command line, with Velero's flags and output.
 *
 * create builds a stasis.io/v1alpha1 Restore in the install namespace from
 * a backup (--from-backup, which must exist and have Completed or
 * PartiallyFailed) or from the newest Completed backup of a schedule
 * (--from-schedule), with the scope filters, the mappings
 * (--namespace-mappings, --storage-class-mappings,
 * --image-registry-mappings, "old:new,old2:new2") and the existing-object
 * policy; with --wait it follows the Restore with a watch to a terminal
 * phase. get prints NAME BACKUP STATUS STARTED COMPLETED ERRORS WARNINGS
 * CREATED SELECTOR or the objects as JSON or YAML. describe prints one
 * restore for people; --details adds the warnings and errors of
 * restores/<R>/restore-<R>-results.gz. logs prints
 * restores/<R>/restore-<R>-logs.gz. Both files are read from the storage
 * location of the restore's backup.
 */
#ifndef ST_PKG_CLI_RESTORE_H
#define ST_PKG_CLI_RESTORE_H

#include <json-c/json.h>

#include "pkg/util/buf.h"
#include "pkg/util/err.h"

/*
 * argv[0] is "restore", argv[1] the sub-verb. Returns the process exit
 * status (0 success, 1 failure or a restore that did not complete, 2 usage).
 */
int st_cli_restore_main(int argc, char **argv);

/* Usage text of `stasis restore`. */
extern const char st_cli_restore_usage[];

/*
 * Parses mapping text "old:new,old2:new2" (also "old=new", needed when a
 * name holds ':' as a registry with a port does) into the object *map
 * (created when NULL). what is the flag for messages; registry allows '.',
 * ':' and '/' in names, otherwise names must be DNS-1123 names. ST_EINVAL
 * with a sentence in err naming the bad item.
 */
int st_cli_restore_parse_mappings(struct json_object **map, const char *text, const char *what,
                                  int registry, struct st_err *err) ST_WARN_UNUSED;

/* Appends the `restore get` table for items (an array of Restore objects, borrowed). */
int st_cli_restore_table(struct st_buf *out, struct json_object *items,
                         long long now) ST_WARN_UNUSED;

/*
 * Appends the `restore describe` text of one Restore; results (the parsed
 * results file, may be NULL) adds its warnings and errors by namespace.
 */
int st_cli_restore_describe(struct st_buf *out, struct json_object *restore,
                            struct json_object *results) ST_WARN_UNUSED;

#endif
