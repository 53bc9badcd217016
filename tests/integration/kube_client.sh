#!/usr/bin/env bash
# The Kubernetes client (pkg/kube*) against the API stand-in over TLS: starts
# tests/k8s/standin.py with a bearer token and client-certificate auth, writes
# a second kubeconfig that authenticates with a client certificate only (key
# and certificates as base64 -data fields), makes a CA that did not sign the
# server, and runs the live half of the kube unit-test binary. Every live test
# must run: a skip here is a failure.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

standin=$STASIS_ROOT/tests/k8s/standin.py
bin=$STASIS_BIN/../tests/kube_test
if [ ! -f "$standin" ]; then
	echo "the API stand-in tests/k8s/standin.py is missing"
	exit 77
fi
if [ ! -x "$bin" ]; then
	echo "$bin not built (make unit)"
	exit 77
fi

work=$(mktemp -d /tmp/st-kube-XXXXXX)
pid=
cleanup() {
	stop_pid "$pid"
	rm -rf "$work"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	[ -f "$work/standin.log" ] && tail -20 "$work/standin.log" >&2
	exit 1
}

make_certs "$work" tls
make_certs "$work" client
mkdir "$work/other"
make_certs "$work/other" stray

token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
$PY "$standin" --port 0 --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" \
	--kubeconfig-ca "$work/ca.crt" --client-ca "$work/ca.crt" --token "$token" \
	--kubeconfig-out "$work/kubeconfig" --watch-history 50 --namespace-delay 0 --bookmark-interval 1 \
	>"$work/standin.log" 2>&1 &
pid=$!
wait_for_log "$work/standin.log" "standin listening on https://127.0.0.1:" 20 ||
	fail "the stand-in did not start"

# A client-certificate-only kubeconfig with everything inline, as kubeadm writes them.
$PY - "$work" <<'EOF'
import base64, json, sys
w = sys.argv[1]
def b64(p):
    return base64.b64encode(open(p, "rb").read()).decode()
url = open(w + "/standin.log").read().split("standin listening on ")[1].split()[0]
cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "cert",
       "clusters": [{"name": "standin", "cluster": {"server": url,
                     "certificate-authority-data": b64(w + "/ca.crt")}}],
       "users": [{"name": "cert-user", "user": {
           "client-certificate-data": b64(w + "/client.crt"),
           "client-key-data": b64(w + "/client.key")}}],
       "contexts": [{"name": "cert", "context": {"cluster": "standin", "user": "cert-user"}}]}
json.dump(cfg, open(w + "/kubeconfig-cert", "w"))
EOF

grep -q "$token" "$work/kubeconfig" || fail "the stand-in's kubeconfig has no token"

export STASIS_KUBECONFIG=$work/kubeconfig
export STASIS_KUBECONFIG_CERT=$work/kubeconfig-cert
export STASIS_KUBE_WRONG_CA=$work/other/ca.crt
export STASIS_KUBE_BOOKMARKS=1
rc=0
timeout 300 "$bin" >"$work/out" 2>&1 || rc=$?
cat "$work/out"
[ $rc -eq 0 ] || fail "kube_test exited with $rc"
! grep -q "SKIPPED" "$work/out" || fail "a live test was skipped"
grep -q "PASSED.*26 test" "$work/out" || fail "not every test passed"

# kubectl, an independent client, sees what ours wrote.
ns=$(sed -n 's/.*test namespace \(kube-test-[0-9]*\).*/\1/p' "$work/out" | head -1)
[ -n "$ns" ] || fail "the test namespace was not reported"
if command -v kubectl >/dev/null 2>&1; then
	kc() { timeout 60 kubectl --kubeconfig "$STASIS_KUBECONFIG" "$@"; }
	n=$(kc get configmaps -n "$ns" -l set=pages -o name | wc -l)
	[ "$n" -eq 300 ] || fail "kubectl sees $n of the 300 paginated configmaps"
	n=$(kc get configmaps -n "$ns" -l 'tier in (a)' -o name | wc -l)
	[ "$n" -eq 100 ] || fail "kubectl sees $n configmaps with tier=a, not 100"
	kc get configmap w-churn -n "$ns" -o jsonpath='{.metadata.name}' | grep -qx w-churn ||
		fail "kubectl does not see w-churn"
	! kc get configmap c1 -n "$ns" >/dev/null 2>&1 || fail "the deleted c1 is still there"
	echo "kubectl agrees: 300 paginated configmaps, 100 with tier=a, w-churn present, c1 gone"
else
	echo "kubectl not installed; objects not cross-checked"
fi

# The token is a secret: it must not appear in anything the client printed.
! grep -q "$token" "$work/out" || fail "the bearer token was printed"
echo "kube client: all live tests passed against the stand-in"
