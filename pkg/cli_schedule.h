/*
 * `stasis schedule create|get|describe|delete|pause|unpause`: the Schedule
 * custom resource from the command line, with Velero's flags and output.
 *
 * create builds a stasis.io/v1alpha1 Schedule in the install namespace: a
 * cron expression (--schedule, checked here with pkg/cron before anything
 * is sent) and a Backup template from the same flags as `backup create`.
 * get prints the table NAME STATUS CREATED SCHEDULE BACKUP TTL LAST BACKUP
 * SELECTOR PAUSED or the objects as JSON or YAML; describe prints one
 * schedule for people. delete removes Schedule objects (the Backups they
 * made stay, each until its own TTL). pause and unpause set spec.paused.
 * The controller (pkg/server) creates the Backups.
 */
#ifndef ST_PKG_CLI_SCHEDULE_H
#define ST_PKG_CLI_SCHEDULE_H

#include <json-c/json.h>

#include "pkg/util/buf.h"
#include "pkg/util/err.h"

/*
 * argv[0] is "schedule", argv[1] the sub-verb. Returns the process exit
 * status (0 success, 1 failure, 2 usage).
 */
int st_cli_schedule_main(int argc, char **argv);

/* Usage text of `stasis schedule`. */
extern const char st_cli_schedule_usage[];

/*
 * Appends the `schedule get` table for items (an array of Schedule objects,
 * borrowed), with LAST BACKUP relative to now (Unix seconds).
 */
int st_cli_schedule_table(struct st_buf *out, struct json_object *items,
                          long long now) ST_WARN_UNUSED;

/* Appends the `schedule describe` text of one Schedule. */
int st_cli_schedule_describe(struct st_buf *out, struct json_object *schedule) ST_WARN_UNUSED;

#endif
