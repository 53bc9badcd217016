#!/usr/bin/env bash
# A resource type the controller may not list (403 from a proxy in front of
# the API stand-in, as RBAC refuses it) costs the backup one error, not its
# other objects: the Backup ends PartiallyFailed with errors 1, the log in
# the storage location names the type and the API's reason, and the tarball
# holds everything else. A backup that does not touch that type Completes.
set -euo pipefail
STASIS_ROOT=${STASIS_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$(dirname "$0")/controller_common.inc"

ctl_require

work=$(mktemp -d /tmp/st-ctlpartial-XXXXXX)
proxy=
cleanup() {
	ctl_cleanup
	stop_pid "$proxy"
	rm -rf "$work"
}
trap cleanup EXIT

start_standin
store=$work/store
file_bsl default "$store" true
k create -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Namespace
metadata: {name: test}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config, namespace: test}
data: {k: v}
---
apiVersion: v1
kind: Secret
metadata: {name: app-secret, namespace: test}
stringData: {password: p}
EOF

$PY "$STASIS_ROOT/tests/integration/controller_proxy.py" "$url" '^/api/v1/(namespaces/[^/]+/)?secrets$' \
	>"$work/proxy.out" 2>"$work/proxy.err" &
proxy=$!
wait_for_log "$work/proxy.out" "^proxy listening on " 10 || fail "proxy did not start"
purl=$(sed -n 's/^proxy listening on //p' "$work/proxy.out")
sed "s|server: .*|server: $purl|" "$work/kubeconfig" >"$work/kubeconfig.proxy"
"$STASIS" --log-level info server --namespace stasis --kubeconfig "$work/kubeconfig.proxy" \
	--identity test-controller >>"$work/server.log" 2>&1 &
server=$!
wait_for_log "$work/server.log" "acquired lease" 30 || fail "controller did not take the lease"

make_backup partial '{"includedNamespaces":["test"]}'
wait_phase backup partial PartiallyFailed 30 >/dev/null ||
	fail "partial: phase $(jp backup partial .status.phase)"
[ "$(jp backup partial .status.errors)" = 1 ] || fail "errors $(jp backup partial .status.errors)"
k -n stasis get backups | grep -E "^partial +PartiallyFailed +1 +0 " >/dev/null ||
	fail "kubectl get backups: $(k -n stasis get backups)"
gzip -dc "$store/backups/partial/partial-logs.gz" >"$work/partial.log"
grep 'level=error' "$work/partial.log" | grep -q 'listing secrets failed.*forbidden' ||
	fail "the log does not explain the error: $(cat "$work/partial.log")"
$PY "$STASIS_ROOT/tests/integration/controller_check.py" "$url" "$store" partial \
	--must configmaps/test/app-config --must namespaces/test --mustnot secrets/test/app-secret ||
	fail "partial content"
$PY -c 'import json,sys; assert json.load(open(sys.argv[1]))["status"]["phase"] == "PartiallyFailed"' \
	"$store/backups/partial/velero-backup.json" || fail "velero-backup.json phase"

make_backup no-secrets '{"includedNamespaces":["test"],"excludedResources":["secrets"]}'
wait_phase backup no-secrets Completed 30 >/dev/null ||
	fail "no-secrets: phase $(jp backup no-secrets .status.phase)"
echo "controller_partial: ok"
