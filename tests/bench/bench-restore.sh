#!/usr/bin/env bash
# make bench-restore: restore of a namespace of 1,000 objects and 8 pods, each
# with a 256 MiB volume (120 MiB of random data), from a real Ceph RGW.
#
# The installation is the one of bench-backup (tests/bench/bench_e2e.inc). The
# namespace is backed up once, then, $RUNS times: deleted, and restored with
# `stasis restore create --wait`. Reported as medians: total restore time,
# data throughput (bytes the restore movers read through the data door /
# time from the first claim filled to the last), and API requests made during
# the restore (counted by the API stand-in). The peer, in the same run: restic
# (its S3 backend, the same RGW) backs up the same 8 volume directories once,
# then restores them $RUNS times; its throughput is bytes restored / time.
# Target: data restore throughput >= 2 x restic's.
# Usage: tests/bench/bench-restore.sh BUILD_DIR
set -euo pipefail

B=${1:?usage: bench-restore.sh BUILD_DIR}
DATA_MIB=${DATA_MIB:-120}
OBJECTS=${OBJECTS:-1000}
command -v restic >/dev/null || {
	echo "bench-restore: restic missing (STASIS_BENCH_DEPS=1 hack/install-deps.sh)"
	exit 1
}
. "$(dirname "$0")/bench_e2e.inc"

# 1,000 objects in all: the pods, claims and Secret above, and ConfigMaps,
# Secrets and Services up to the count.
have=$(k -n bench get all,pvc,secrets,configmaps -o name | wc -l)
$PY - "$((OBJECTS - have))" >"$work/objects.json" <<'PY'
import json, sys
n, out = int(sys.argv[1]), []
for i in range(n):
    md = {"name": "obj-%04d" % i, "namespace": "bench", "labels": {"bench": "restore"}}
    if i % 10 < 7:
        out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": {"k": "v" * 200}})
    elif i % 10 < 9:
        out.append({"apiVersion": "v1", "kind": "Secret", "metadata": md, "data": {"k": "dmFsdWU="}})
    else:
        out.append({"apiVersion": "v1", "kind": "Service", "metadata": md,
                    "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}})
json.dump(out, sys.stdout)
PY
post_objects "$work/objects.json"

"$STASIS" backup create bench-src --include-namespaces bench --wait \
	--kubeconfig "$work/kubeconfig" -n stasis >"$work/b.out" 2>&1 || fail "backup: $(tail -n 3 "$work/b.out")"

# The peer: restic on the same data, the same RGW.
export RESTIC_PASSWORD="bench key" RESTIC_CACHE_DIR=$work/restic-cache
export RESTIC_REPOSITORY="s3:$STASIS_S3_ENDPOINT/bench/restic"
restic init >/dev/null 2>&1 || fail "restic init"
mapfile -t dirs <"$work/mounts"
restic backup --quiet "${dirs[@]}" >/dev/null 2>&1 || fail "restic backup"
restic_bytes=$(du -sb --apparent-size "${dirs[@]}" | awk '{s += $1} END {print s}')

: >"$work/results"
for r in $(seq 1 "$RUNS"); do
	rm -rf "$work/restic-out"
	t0=$(date +%s.%N)
	restic restore latest --target "$work/restic-out" >/dev/null 2>&1 || fail "restic restore"
	t1=$(date +%s.%N)
	rm -rf "$work/restic-out"

	k delete namespace bench --wait=true >/dev/null
	while k get namespace bench >/dev/null 2>&1; do sleep 0.2; done
	curl -s -X DELETE "$url/standin/requests" >/dev/null
	lines=$(wc -l <"$work/server.log")
	t2=$(date +%s.%N)
	"$STASIS" restore create "rr-$r" --from-backup bench-src --wait \
		--kubeconfig "$work/kubeconfig" -n stasis >"$work/r$r.out" 2>&1 ||
		fail "restore rr-$r: $(tail -n 3 "$work/r$r.out")"
	t3=$(date +%s.%N)
	reqs=$(curl -s "$url/standin/requests" | $PY -c 'import json,sys; d=json.load(sys.stdin); print(d.get("total", sum(v for v in d.values() if isinstance(v, int))))')
	tail -n +"$((lines + 1))" "$work/server.log" >"$work/server-r$r.log"
	echo "$r $t0 $t1 $t2 $t3 $reqs" >>"$work/results"
done

$PY - "$work" "$RUNS" "$restic_bytes" "$PODS" "$OBJECTS" "$DATA_MIB" <<'PY'
import os, re, statistics, sys
from datetime import datetime
work, runs, rbytes, pods, objects, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
ts = lambda l: datetime.strptime(l[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
total, ours, peer, reqs = [], [], [], []
for line in open(os.path.join(work, "results")):
    r, a, b, c, d, q = line.split()
    peer.append(rbytes / (float(b) - float(a)) / 1048576)
    total.append(float(d) - float(c))
    reqs.append(int(q))
    log = open(os.path.join(work, "server-r%s.log" % r)).read().splitlines()
    start = [ts(l) for l in log if "restoring the data of" in l]
    done = [(ts(l), int(m.group(1))) for l in log for m in [re.search(r"\((\d+) bytes read\)", l)] if m]
    assert start and len(done) == pods, (len(start), len(done))
    ours.append(sum(b for _, b in done) / (max(t for t, _ in done) - start[0]) / 1048576)
o, p = statistics.median(ours), statistics.median(peer)
print("bench-restore: %d objects, %d pods x 256 MiB volume (%d MiB data), %d restores, RGW" % (objects, pods, mib, runs))
print("  total time   median %.2f s (min %.2f, max %.2f)" % (statistics.median(total), min(total), max(total)))
print("  API requests median %d per restore" % statistics.median(reqs))
print("  data         stasis %.1f MiB/s (restore movers) vs restic restore %.1f MiB/s = %.2fx (target >= 2x)" % (o, p, o / p))
PY
