/*
 * The controller behind `stasis server`.
 *
 * It holds a coordination.k8s.io/v1 Lease in its namespace so that only one
 * replica acts (acquire, renew every few seconds, exit when it is lost,
 * release on SIGTERM/SIGINT). While it holds the Lease it watches, in that
 * namespace:
 *   - BackupStorageLocations: each one is opened and probed (a small object
 *     put, read back and deleted) when it appears, when its spec changes and
 *     every --bsl-sync-period; status.phase becomes Available or Unavailable
 *     with the store's error text in status.message.
 *   - Backups: new ones are queued and run one at a time by pkg/backup
 *     (New -> InProgress -> Completed/PartiallyFailed/Failed, progress in
 *     status); ones found InProgress when the controller starts are marked
 *     Failed ("controller restarted while the backup was in progress"); ones
 *     annotated stasis.io/delete-requested="true" go to phase Deleting, their
 *     objects are removed from the storage location, then the Backup itself.
 *     Claims in scope are frozen, cut and moved by pkg/volumes (with
 *     --data-listen and a repository key); a deletion also forgets the
 *     Backup's repository snapshots.
 *   - Restores: new ones are queued on the same worker and run by
 *     pkg/restore, their claims filled by restore movers (pkg/volumes);
 *     ones found InProgress when the controller starts are marked Failed
 *     ("controller restarted while the restore was in progress").
 *   - Schedules: each is validated (phase Enabled or FailedValidation) and,
 *     at every slot of its cron schedule, one Backup is created from its
 *     template (pkg/schedule decides; one catch-up after downtime, never a
 *     burst); status.lastBackup records the slot.
 *   - Retention: every --gc-period, finished Backups past status.expiration
 *     are annotated stasis.io/delete-requested="true" and deleted as above.
 * On SIGTERM the current backup is stopped between pages and marked Failed,
 * the Lease is released, and the process exits 0.
 */
#ifndef ST_PKG_SERVER_H
#define ST_PKG_SERVER_H

/* The annotation that asks the controller to delete a Backup and its objects. */
#define ST_SERVER_DELETE_ANNOTATION "stasis.io/delete-requested"
/* failureReason of a Backup that was InProgress when its controller died. */
#define ST_SERVER_RESTART_REASON "controller restarted while the backup was in progress"

/* `stasis server --help`. */
extern const char st_server_usage[];

/*
 * Entry point of `stasis server` (argv[0] is "server"): parses its options
 * with getopt_long and runs until SIGTERM/SIGINT or the loss of the Lease.
 * Returns the process exit status: 0 after a clean shutdown, 1 on failure
 * (including a lost Lease), 2 on a usage error.
 */
int st_server_main(int argc, char **argv);

#endif
