/*
 * `stasis version`: the client's version and, unless --client-only, the
 * server's, read from the controller Deployment (stasis-controller in the
 * install namespace): its container image and the
 * app.kubernetes.io/version label that `stasis install` sets.
 */
#ifndef ST_PKG_CLI_VERSION_H
#define ST_PKG_CLI_VERSION_H

/* The version of this build ("0.1.0-dev" unless STASIS_VERSION is defined). */
const char *st_cli_version(void);

/* argv[0] is "version"; returns the exit status. */
int st_cli_version_main(int argc, char **argv);

/* Usage text of `stasis version`. */
extern const char st_cli_version_usage[];

#endif
