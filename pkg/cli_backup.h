/*
 * `stasis backup create|get|describe|logs|delete`: the Backup custom
 * resource from the command line, with Velero's flags and output.
 *
 * create builds a stasis.io/v1alpha1 Backup in the install namespace and,
 * with --wait, follows it with a watch until a terminal phase, printing each
 * change of phase and progress. get prints the table NAME STATUS ERRORS
 * WARNINGS CREATED EXPIRES STORAGE LOCATION SELECTOR or the objects as JSON
 * or YAML. describe prints one backup for people. logs reads
 * backups/<B>/<B>-logs.gz from the backup's storage location (credentials
 * from the location's Secret, or --credentials-file) and prints it
 * decompressed. delete asks the controller to delete a backup by setting the
 * stasis.io/delete-requested annotation, and with --wait waits for the
 * object to disappear.
 */
#ifndef ST_PKG_CLI_BACKUP_H
#define ST_PKG_CLI_BACKUP_H

#include <json-c/json.h>

#include "pkg/cli_output.h"
#include "pkg/util/buf.h"

/*
 * argv[0] is "backup", argv[1] the sub-verb. Returns the process exit status
 * (0 success, 1 failure or a backup that did not complete, 2 usage).
 */
int st_cli_backup_main(int argc, char **argv);

/* Usage text of `stasis backup`. */
extern const char st_cli_backup_usage[];

/*
 * Appends the `backup get` table for items (an array of Backup objects,
 * borrowed), with EXPIRES relative to now (Unix seconds).
 */
int st_cli_backup_table(struct st_buf *out, struct json_object *items,
                        long long now) ST_WARN_UNUSED;

/* Appends the `backup describe` text of one Backup (details: freeze windows and all status). */
int st_cli_backup_describe(struct st_buf *out, struct json_object *backup,
                           int details) ST_WARN_UNUSED;

/* The STATUS cell of a Backup: phase, "New" when unset, "Deleting" when asked, error count. */
void st_cli_backup_status(char *buf, size_t size, struct json_object *backup);

#endif
