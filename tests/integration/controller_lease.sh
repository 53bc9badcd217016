#!/usr/bin/env bash
# Leader election of `stasis server` on the API stand-in: of two replicas
# only the Lease holder runs backups; SIGTERM hands the Lease over at once
# (released, the other takes it within its retry period); a holder killed
# with -9 is replaced only after its Lease expires (15 s), and the Lease
# records the transitions.
set -euo pipefail
STASIS_ROOT=${STASIS_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$(dirname "$0")/controller_common.inc"

ctl_require

work=$(mktemp -d /tmp/st-ctllease-XXXXXX)
b_pid= c_pid=
cleanup() {
	stop_pid "$b_pid" 10
	stop_pid "$c_pid" 10
	ctl_cleanup
	rm -rf "$work"
}
trap cleanup EXIT

start_standin
file_bsl default "$work/store" true
printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: test}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: test}\n' |
	k create -f - >/dev/null

# replica NAME LOG: starts a controller with identity NAME, prints its PID.
replica() {
	"$STASIS" --log-level info server --namespace stasis --kubeconfig "$work/kubeconfig" \
		--identity "$1" >>"$2" 2>&1 &
	echo $!
}
holder() { k -n stasis get lease stasis-controller -o 'jsonpath={.spec.holderIdentity}'; }

start_server "$work/a.log" # identity test-controller
b_pid=$(replica replica-b "$work/b.log")
wait_for_log "$work/b.log" "held by another replica" 15 || fail "replica-b did not wait"
[ "$(holder)" = test-controller ] || fail "holder $(holder)"
make_backup one '{"includedNamespaces":["test"]}'
wait_phase backup one Completed 30 >/dev/null || fail "one not Completed"
grep -q "backup stasis/one: starting" "$work/a.log" || fail "the holder did not run backup one"
grep -q "backup stasis/one" "$work/b.log" && fail "the standby replica acted on backup one"

t0=$(date +%s)
kill -TERM "$server"
wait "$server" || fail "holder exit status after SIGTERM"
server=
wait_for_log "$work/b.log" "acquired lease" 10 || fail "replica-b did not take over"
echo "handover after SIGTERM: $(($(date +%s) - t0)) s"
[ "$(holder)" = replica-b ] || fail "holder $(holder) after handover"
make_backup two '{"includedNamespaces":["test"]}'
wait_phase backup two Completed 30 >/dev/null || fail "two not Completed"
grep -q "backup stasis/two: starting" "$work/b.log" || fail "the new holder did not run backup two"

c_pid=$(replica replica-c "$work/c.log")
wait_for_log "$work/c.log" "held by another replica" 15 || fail "replica-c did not wait"
before=$(k -n stasis get lease stasis-controller -o 'jsonpath={.spec.leaseTransitions}')
t0=$(date +%s)
kill -9 "$b_pid"
wait "$b_pid" 2>/dev/null || true
b_pid=
wait_for_log "$work/c.log" "acquired lease" 40 || fail "replica-c did not take over an expired lease"
waited=$(($(date +%s) - t0))
[ "$waited" -ge 10 ] || fail "replica-c took a live lease after $waited s"
after=$(k -n stasis get lease stasis-controller -o 'jsonpath={.spec.leaseTransitions}')
[ "$after" -gt "$before" ] || fail "leaseTransitions $before -> $after"
make_backup three '{"includedNamespaces":["test"]}'
wait_phase backup three Completed 30 >/dev/null || fail "three not Completed"
echo "takeover after kill -9: $waited s, transitions $before -> $after"
echo "controller_lease: ok"
