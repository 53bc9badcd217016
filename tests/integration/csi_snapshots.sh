#!/usr/bin/env bash
# CSI snapshots (pkg/csi) against the API stand-in over TLS: starts
# tests/k8s/standin.py with a bearer token and tests/integration/
# csi_controller.py (the CSI side: cuts after 0.3 s, ready 2.5 s later, a
# driver error for err-* claims, never a cut for never-* claims), then runs
# the live half of the csi unit-test binary. Every live test must run: a skip
# here is a failure. kubectl, when installed, checks that the snapshots were
# deleted.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

standin=$STASIS_ROOT/tests/k8s/standin.py
controller=$STASIS_ROOT/tests/integration/csi_controller.py
bin=$STASIS_BIN/../tests/csi_test
if [ ! -f "$standin" ]; then
	echo "the API stand-in tests/k8s/standin.py is missing"
	exit 77
fi
if [ ! -x "$bin" ]; then
	echo "$bin not built (make unit)"
	exit 77
fi

work=$(mktemp -d /tmp/st-csi-XXXXXX)
pid=
cpid=
cleanup() {
	stop_pid "$cpid"
	stop_pid "$pid"
	rm -rf "$work"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	[ -f "$work/standin.log" ] && tail -20 "$work/standin.log" >&2
	[ -f "$work/controller.log" ] && tail -40 "$work/controller.log" >&2
	exit 1
}

make_certs "$work" tls
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
$PY "$standin" --port 0 --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" \
	--kubeconfig-ca "$work/ca.crt" --token "$token" --kubeconfig-out "$work/kubeconfig" \
	--namespace-delay 0 >"$work/standin.log" 2>&1 &
pid=$!
wait_for_log "$work/standin.log" "standin listening on https://127.0.0.1:" 20 ||
	fail "the stand-in did not start"

# Quotes, a percent sign, a newline and braces: the message must come back verbatim.
errmsg='failed to take snapshot of the volume vol-7: "rpc error: code = Internal desc = quota 100% used
{retry later}"'
ready_s=2.5
$PY "$controller" --kubeconfig "$work/kubeconfig" --cut-delay 0.3 --ready-delay "$ready_s" \
	--error-message "$errmsg" >"$work/controller.log" 2>&1 &
cpid=$!
wait_for_log "$work/controller.log" "csi controller watching" 20 ||
	fail "the snapshot controller did not start"

export STASIS_KUBECONFIG=$work/kubeconfig
export STASIS_CSI_ERROR_MESSAGE=$errmsg
export STASIS_CSI_READY_DELAY_MS=2500
rc=0
timeout 300 "$bin" >"$work/out" 2>&1 || rc=$?
cat "$work/out"
[ $rc -eq 0 ] || fail "csi_test exited with $rc"
! grep -q "SKIP" "$work/out" || fail "a live test was skipped"
grep -q "PASSED.*14 test" "$work/out" || fail "not every test passed"
grep -q "^[0-9.]* cut csi-a-" "$work/controller.log" || fail "the controller cut nothing"
grep -q "^[0-9.]* error on csi-err-" "$work/controller.log" || fail "the controller wrote no error"

if command -v kubectl >/dev/null 2>&1; then
	n=$(KUBECACHEDIR=$work/kcache timeout 60 kubectl --kubeconfig "$STASIS_KUBECONFIG" \
		get volumesnapshots -A -o name | wc -l)
	[ "$n" -eq 0 ] || fail "kubectl still sees $n VolumeSnapshots after the tests deleted them"
	echo "kubectl agrees: no VolumeSnapshot left"
fi
! grep -q "$token" "$work/out" || fail "the bearer token was printed"
echo "csi: all live tests passed against the stand-in and the test snapshot controller"
