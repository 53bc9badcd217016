/*
 * Repository commands: the `backup`, `restore` and `repo` verbs.
 *
 * These are the command-line front end of the deduplicating repository
 * (pkg/repo.h). stasis-agent (standalone host tool and data mover) and the
 * stasis CLI dispatch to st_repo_cmd_main() with argv[0] set to the verb:
 *
 *   backup DIR --repo URL [--tag TAG] [--json] [--jobs N]
 *   backup --volume PATH [--method image|btrfs|copy] [--state-dir DIR] --repo URL ...
 *   restore SNAPSHOT --target DIR --repo URL [--json]
 *   repo init|list|check|forget|gc --repo URL ...
 *
 * The repository key comes from --key-file FILE, or the environment
 * (STASIS_REPO_KEY holds the key text, STASIS_REPO_KEY_FILE names a file).
 * Progress goes to stderr on a terminal; --json prints one JSON object per
 * line on stdout for machines. Keys are never printed or logged.
 */
#ifndef ST_PKG_REPO_CMD_H
#define ST_PKG_REPO_CMD_H

/*
 * Runs one verb. argv[0] is the verb ("backup", "restore", "repo"), the rest
 * its arguments (parsed here with getopt_long; optind is reset first).
 * Returns a process exit status: 0 success, 1 failure (the reason printed on
 * stderr), 2 usage error. Not thread-safe (uses getopt).
 */
int st_repo_cmd_main(int argc, char **argv);

#endif
