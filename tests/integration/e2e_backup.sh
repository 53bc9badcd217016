#!/bin/bash
# Coordinated quiesce end to end: pods injected by the real webhook run real
# agents; the controller freezes them in parallel over mTLS, cuts CSI
# VolumeSnapshots (FICLONE copies of the volume images, made by the harness),
# thaws, records the freeze windows, and moves the data with mover pods
# through its data door into the repository. Failures (snapshot error,
# snapshot timeout, a controller killed while pods are frozen) thaw and fail
# cleanly; nothing temporary is left behind.
set -euo pipefail
. "$STASIS_ROOT/tests/integration/e2e_stasis.inc"

e2e_require
work=$(mktemp -d /tmp/stasis-e2e-backup.XXXXXX)
cleanup() {
	e2e_cleanup
	[ -n "${E2E_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

e2e_start --cut-timeout 5s

no_temporaries() {
	local left
	left=$(k get pods,pvc,secrets -A -l stasis.io/temporary=true -o name 2>/dev/null)
	[ -z "$left" ] || fail "$1: temporary objects left: $left"
	left=$(k get volumesnapshots -A -o name 2>/dev/null)
	[ -z "$left" ] || fail "$1: VolumeSnapshots left: $left"
}

# --- the reference scenario ----------------------------------------------------------------------
k create namespace test >/dev/null
agent_tls_secret test
make_pvc test html 50Mi
make_pod test nginx html /usr/share/nginx/html
wait_running test nginx 60
[ -n "$(k -n test get pod nginx -o 'jsonpath={.metadata.annotations.stasis\.io/injected}')" ] ||
	fail "nginx was not injected"
html=$(volume_path test html)
[ -d "$html" ] || fail "no host path for test/html: '$html'"
printf 'hello world 001\n' >"$html/index.html"
head -c 20M /dev/urandom >"$html/blob.bin"
sync

"$STASIS" backup create nginx-backup-01 --include-namespaces test --wait \
	--kubeconfig "$work/kubeconfig" -n stasis >"$work/b1.out" 2>&1 ||
	fail "nginx-backup-01 did not complete: $(cat "$work/b1.out")"
grep -q "volumes 1/1" "$work/b1.out" || fail "--wait showed no volume progress: $(cat "$work/b1.out")"
"$STASIS" backup describe nginx-backup-01 --details --kubeconfig "$work/kubeconfig" -n stasis \
	>"$work/d1.out"
grep -q "test/nginx: frozen " "$work/d1.out" || fail "no freeze window in describe: $(cat "$work/d1.out")"
grep -q "test/html: Completed, method csi" "$work/d1.out" ||
	fail "volume not Completed in describe: $(cat "$work/d1.out")"
[ "$(agent_frozen test nginx)" = false ] || fail "nginx still frozen after the backup"
snap1=$(bjson nginx-backup-01 'b["status"]["volumes"][0]["repositorySnapshot"]')
bytes1=$(bjson nginx-backup-01 'b["status"]["volumes"][0]["bytes"]')
[ "$bytes1" -ge $((20 << 20)) ] || fail "first backup stored $bytes1 bytes"
repo_restore "$snap1" "$work/r1"
[ "$(cat "$work/r1/index.html")" = "hello world 001" ] || fail "page content not in the repository"
cmp -s "$work/r1/blob.bin" "$html/blob.bin" || fail "blob differs in the repository"
[ -f "$work/store/backups/nginx-backup-01/nginx-backup-01-volumes.json" ] ||
	fail "no volume manifest in the location"
# The window closed before any data moved: thawedAt precedes the mover's start.
$PY - "$work/server.log" <<'EOF' || fail "freeze window overlaps the data movement"
import re, sys
log = open(sys.argv[1]).read()
i, j = log.find("frozen for"), log.find("data mover")
sys.exit(0 if 0 <= i < j else 1)
EOF
no_temporaries "first backup"

# --- the mover runs where the volume can be used: its node affinity --------------------------------------
pv=$(k -n test get pvc html -o 'jsonpath={.spec.volumeName}')
[ -n "$pv" ] || fail "test/html has no volume"
k patch pv "$pv" --type merge -p '{"spec":{"nodeAffinity":{"required":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"topology.kubernetes.io/zone","operator":"In","values":["zone-a"]}]}]}}}}' \
	>/dev/null || fail "patching the node affinity of $pv"
# The snapshot becomes ready two seconds after its cut, so the watch is up before the mover exists.
k patch volumesnapshotclass test-snapclass --type merge \
	-p '{"parameters":{"stasis.test/ready-delay-ms":"2000"}}' >/dev/null
KUBECACHEDIR=$work/kcache kubectl --kubeconfig "$work/kubeconfig" -n test get pods \
	-l stasis.io/temporary=true --watch -o json >"$work/movers.json" 2>/dev/null &
watcher=$!
sleep 0.5
"$STASIS" backup create aff-01 --include-namespaces test --wait \
	--kubeconfig "$work/kubeconfig" -n stasis >"$work/a1.out" 2>&1 ||
	fail "aff-01 did not complete: $(cat "$work/a1.out")"
kill "$watcher" 2>/dev/null || true
wait "$watcher" 2>/dev/null || true
k patch volumesnapshotclass test-snapclass --type json \
	-p '[{"op":"replace","path":"/parameters","value":{}}]' >/dev/null
$PY - "$work/movers.json" <<'EOF' || fail "mover pod without the volume's node affinity: $(head -c 2000 "$work/movers.json")"
import json, sys
text, dec, i, pods = open(sys.argv[1]).read(), json.JSONDecoder(), 0, []
while True:
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        break
    o, i = dec.raw_decode(text, i)
    pods += o.get("items", [o]) if o.get("kind") == "List" else [o]
movers = [p for p in pods if p["metadata"]["name"].endswith("-mover")]
assert movers, "no mover pod seen"
for p in movers:
    terms = p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["zone-a"], terms
EOF
no_temporaries "node affinity"

# --- the second backup sends only what changed ------------------------------------------------------
printf 'hello world 002\n' >"$html/index.html"
sync
"$STASIS" backup create nginx-backup-02 --include-namespaces test --wait \
	--kubeconfig "$work/kubeconfig" -n stasis >"$work/b2.out" 2>&1 ||
	fail "nginx-backup-02 did not complete: $(cat "$work/b2.out")"
new2=$(bjson nginx-backup-02 'b["status"]["volumes"][0]["bytesNew"]')
sent2=$(bjson nginx-backup-02 'b["status"]["volumeProgress"]["bytesTransferred"]')
[ "$new2" -lt $((1 << 20)) ] || fail "second backup stored $new2 new bytes"
[ "$sent2" -lt $((2 << 20)) ] || fail "second backup sent $sent2 bytes"
repo_restore "$(bjson nginx-backup-02 'b["status"]["volumes"][0]["repositorySnapshot"]')" "$work/r2"
[ "$(cat "$work/r2/index.html")" = "hello world 002" ] || fail "second page content"
no_temporaries "second backup"

# --- three pods frozen at once ------------------------------------------------------------------------
k create namespace multi >/dev/null
agent_tls_secret multi
for i in 0 1 2; do
	make_pvc multi "data-$i" 40Mi
	make_pod multi "db-$i" "data-$i" /var/lib/data postgres:15
done
for i in 0 1 2; do wait_running multi "db-$i" 60; done
reset_requests
"$STASIS" backup create multi-01 --include-namespaces multi --wait \
	--kubeconfig "$work/kubeconfig" -n stasis >"$work/m1.out" 2>&1 ||
	fail "multi-01 did not complete: $(cat "$work/m1.out")"
k -n stasis get backup multi-01 -o json | $PY -c '
import json, sys
from datetime import datetime
b = json.load(sys.stdin)["status"]
w = b["freezeWindows"]
assert len(w) == 3, w
t = lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
assert max(t(x["frozenAt"]) for x in w) <= min(t(x["thawedAt"]) for x in w), w
assert all(v["phase"] == "Completed" for v in b["volumes"]), b["volumes"]
' || fail "multi-01: the three pods were not frozen together: $(bjson multi-01 'b["status"]')"
# The three claims share a driver: its VolumeSnapshotClasses are listed once.
classes=$(list_requests | awk '$1 ~ /^volumesnapshotclasses/ { print $2 }')
[ "$classes" = 1 ] || fail "multi-01 listed VolumeSnapshotClasses ${classes:-0} times, want 1"
no_temporaries "multi backup"

# --- the window does not grow with the data: 1 GiB and 4 GiB volumes ------------------------------
k create namespace sizes >/dev/null
agent_tls_secret sizes
make_pvc sizes small 1Gi
make_pvc sizes big 4Gi
make_pod sizes small small /var/lib/data postgres:15
make_pod sizes big big /var/lib/data postgres:15
wait_running sizes small 60
wait_running sizes big 60
fallocate -l 900M "$(volume_path sizes small)/fill"
fallocate -l 3900M "$(volume_path sizes big)/fill"
sync
for r in 1 2 3; do
	for s in small big; do
		"$STASIS" backup create "size-$s-$r" --include-namespaces sizes --selector "app=$s" --wait \
			--kubeconfig "$work/kubeconfig" -n stasis >"$work/size.out" 2>&1 ||
			fail "size-$s-$r did not complete: $(cat "$work/size.out")"
		bjson "size-$s-$r" 'b["status"]["freezeWindows"][0]["durationMs"]' >>"$work/win-$s"
	done
done
$PY - "$work/win-small" "$work/win-big" <<'EOF' ||
import statistics, sys
a, b = (statistics.median(float(x) for x in open(f)) for f in sys.argv[1:3])
print("freeze window median: 1 GiB %.1f ms, 4 GiB %.1f ms" % (a, b))
# 20%, plus 5 ms for the scheduling noise of a shared machine running sanitized binaries
sys.exit(0 if abs(a - b) <= 0.2 * max(a, b) + 5 else 1)
EOF
	fail "window depends on the volume size: 1 GiB $(tr '\n' ' ' <"$work/win-small"), 4 GiB $(tr '\n' ' ' <"$work/win-big")"
no_temporaries "size backups"

# --- no usable VolumeSnapshotClass: Failed before any pod is frozen ---------------------------------------
# Two classes of the driver both carry the label, so no class can be chosen.
k create -f - >/dev/null <<EOF || fail "second labelled class"
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata:
  name: test-snapclass-2
  labels: {stasis.io/csi-volumesnapshot-class: "true"}
driver: stasis.test.csi
deletionPolicy: Delete
EOF
"$STASIS" backup create cls-01 --include-namespaces test --wait \
	--kubeconfig "$work/kubeconfig" -n stasis >"$work/c1.out" 2>&1 && fail "cls-01 completed"
[ "$(jp backup cls-01 .status.phase)" = Failed ] || fail "cls-01: $(jp backup cls-01 .status.phase)"
jp backup cls-01 .status.failureReason | grep -q "keep the label on one" ||
	fail "cls-01 reason: $(jp backup cls-01 .status.failureReason)"
[ "$(bjson cls-01 'len(b["status"].get("freezeWindows") or [])')" = 0 ] ||
	fail "cls-01 froze pods although no snapshot could be made: $(bjson cls-01 'b["status"]["freezeWindows"]')"
k delete volumesnapshotclass test-snapclass-2 >/dev/null
no_temporaries "no usable class"

# --- a snapshot the driver fails: thawed, Failed with the driver's words ---------------------------------
k patch volumesnapshotclass test-snapclass --type merge \
	-p '{"parameters":{"stasis.test/error":"disk array says no"}}' >/dev/null
"$STASIS" backup create err-01 --include-namespaces test --wait \
	--kubeconfig "$work/kubeconfig" -n stasis >"$work/e1.out" 2>&1 && fail "err-01 completed"
[ "$(jp backup err-01 .status.phase)" = Failed ] || fail "err-01: $(jp backup err-01 .status.phase)"
jp backup err-01 .status.failureReason | grep -q "disk array says no" ||
	fail "err-01 reason: $(jp backup err-01 .status.failureReason)"
[ "$(agent_frozen test nginx)" = false ] || fail "nginx frozen after a snapshot error"
no_temporaries "snapshot error"

# --- a snapshot never cut: thawed at the cut timeout, Failed ------------------------------------------------
k patch volumesnapshotclass test-snapclass --type json \
	-p '[{"op":"replace","path":"/parameters","value":{"stasis.test/never-cut":"true"}}]' >/dev/null
"$STASIS" backup create slow-01 --include-namespaces test --wait \
	--kubeconfig "$work/kubeconfig" -n stasis >"$work/s1.out" 2>&1 && fail "slow-01 completed"
jp backup slow-01 .status.failureReason | grep -q "not cut" ||
	fail "slow-01 reason: $(jp backup slow-01 .status.failureReason)"
[ "$(agent_frozen test nginx)" = false ] || fail "nginx frozen after a snapshot timeout"
no_temporaries "snapshot timeout"

# --- the controller killed while the pods are frozen ------------------------------------------------------
stop_pid "$server" 10
e2e_server --cut-timeout 120s --freeze-deadline 3s
"$STASIS" backup create crash-01 --include-namespaces test \
	--kubeconfig "$work/kubeconfig" -n stasis >/dev/null
i=0
until [ "$(agent_frozen test nginx)" = true ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || fail "crash-01 never froze nginx"
	sleep 0.1
done
kill -KILL "$server"
wait "$server" 2>/dev/null || true
server=
sleep 4
[ "$(agent_frozen test nginx)" = false ] || fail "the agent did not thaw by its deadline"
k patch volumesnapshotclass test-snapclass --type json \
	-p '[{"op":"replace","path":"/parameters","value":{}}]' >/dev/null
e2e_server
wait_phase backup crash-01 Failed 20 >/dev/null || fail "crash-01 not Failed after the restart"
jp backup crash-01 .status.failureReason | grep -q "controller restarted" ||
	fail "crash-01 reason: $(jp backup crash-01 .status.failureReason)"
i=0
until [ -z "$(k get volumesnapshots -A -o name)" ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || fail "crash-01's VolumeSnapshot was not removed after the restart"
	sleep 0.1
done
echo "e2e backup: reference scenario, dedup, parallel freeze, mover node affinity, window vs size, no usable class, snapshot error/timeout, controller crash: ok"
