/*
 * `stasis install`: everything stasis needs in a cluster, applied in
 * dependency order, idempotently (create, or merge-patch what exists).
 *
 * The objects come from three places:
 *   - the manifests directory (--manifests-dir; default $STASIS_MANIFESTS,
 *     then the source tree's manifests/ found from the binary's location,
 *     build/<variant>/bin/../../../manifests, then
 *     <prefix>/share/stasis/manifests): the webhook set (each .yaml file at
 *     its top), the CRDs in crds/ and the RBAC in rbac/, with their @@NAME@@
 *     placeholders filled in as hack/render-manifests.sh fills them;
 *   - templates compiled into the binary: the controller Deployment;
 *   - objects built from flags: the credentials Secret (--secret-file) and
 *     the default BackupStorageLocation (--provider/--bucket/...).
 * The CA and the webhook and controller certificates are made with the
 * x509 bundle API in --certs-dir (default ~/.stasis/<namespace>/certs; an
 * existing CA there is kept, so a second install keeps trusting the agents
 * the first one set up). --dry-run prints the objects (-o yaml: a
 * multi-document stream; -o json: a v1 List) and touches nothing, not even
 * the certificate directory.
 */
#ifndef ST_PKG_CLI_INSTALL_H
#define ST_PKG_CLI_INSTALL_H

#include <stddef.h>

#include <json-c/json.h>

#include "pkg/util/err.h"

/* argv[0] is "install"; returns the exit status. */
int st_cli_install_main(int argc, char **argv);

/* Usage text of `stasis install`. */
extern const char st_cli_install_usage[];

/* One @@NAME@@ placeholder and its value. */
struct st_cli_placeholder {
	const char *name; /* without the @@ */
	const char *value;
};

/*
 * Replaces every @@NAME@@ in tpl (len bytes) by its value into *out (a new
 * NUL-terminated string). ST_EINVAL naming `what` and the placeholder when
 * one is unknown.
 */
int st_cli_template_fill(char **out, const char *tpl, size_t len,
                         const struct st_cli_placeholder *ph, size_t n, const char *what,
                         struct st_err *err) ST_WARN_UNUSED;

/*
 * Apply order of a kind: namespaces and CRDs first, then RBAC, Secrets and
 * ConfigMaps, Services, workloads, webhook configurations, custom resources
 * last. Lower comes first.
 */
int st_cli_install_rank(const char *kind);

#endif
