#!/usr/bin/env bash
# make bench-backup: a coordinated backup of 8 pods, each with a 256 MiB
# volume ($DATA_MIB MiB of random data, default 200), to a real Ceph RGW.
#
# Everything runs as in tests/integration/e2e_backup.sh: the API stand-in,
# the webhook injecting the pods, the e2e harness playing kubelet and CSI
# (FICLONE snapshots of loop-mounted images in an XFS pool), real agents on
# 127.0.4.x, and `stasis server` with its data door in front of RGW. Reported,
# each over $RUNS backups (the first full, the rest after rewriting 8 MiB per
# volume), as medians:
#   - total backup time (create to Completed, as `backup create --wait` sees it);
#   - every pod's freeze window (p50/p99 over all pods and runs) next to the
#     raw freeze floor of the same volumes measured in the same run by
#     tests/bench/freeze_floor.c (syncfs + FIFREEZE + FICLONE + FITHAW);
#   - bytes moved through the data door and the data throughput of the full
#     backup (bytes stored / mover phase time), next to a plain single-stream
#     PUT of a 256 MiB object to the same RGW.
#   - where the machine's CPU went during the full backup: the RGW's daemons,
#     the controller, and the rest (movers, harness, kernel), next to how busy
#     the plain PUT alone kept the RGW's daemons.
# Targets: every window <= 2 x floor + 10 ms; data throughput >= 70% of the PUT.
# Usage: tests/bench/bench-backup.sh BUILD_DIR
set -euo pipefail

B=${1:?usage: bench-backup.sh BUILD_DIR}
. "$(dirname "$0")/bench_e2e.inc"

floor1=$(floor 1)
floorn=$(floor "$PODS")
: >"$work/results"
for r in $(seq 1 "$RUNS"); do
	if [ "$r" -gt 1 ]; then
		while read -r p; do
			dd if=/dev/urandom of="$p/data.bin" bs=1M count=8 seek=$((r * 10)) conv=notrunc status=none
		done <"$work/mounts"
		sync
	fi
	[ "$r" -gt 1 ] || c0=$(cpu_now)
	t0=$(date +%s.%N)
	"$STASIS" backup create "bench-$r" --include-namespaces bench --wait \
		--kubeconfig "$work/kubeconfig" -n stasis >"$work/b$r.out" 2>&1 ||
		fail "bench-$r: $(tail -n 3 "$work/b$r.out")"
	t1=$(date +%s.%N)
	[ "$r" -gt 1 ] || echo "$c0 $(cpu_now)" >"$work/cpu1"
	k -n stasis get backup "bench-$r" -o json >"$work/b$r.json"
	echo "$r $t0 $t1" >>"$work/results"
done

grep -ho "quiesce: .*" "$work/server.log" >"$work/quiesce" || true
$PY - "$work" "$RUNS" "$floor1" "$floorn" "$put_mibs" "$PODS" "$put_cores" "$(nproc)" <<'PY'
import json, os, re, statistics, sys
work, runs, floor1, floorn, put, pods = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
put_cores, ncores = float(sys.argv[7]), int(sys.argv[8])
times = {}
for line in open(os.path.join(work, "results")):
    r, a, b = line.split()
    times[int(r)] = float(b) - float(a)
wins, moved, stored, tput = [], [], [], []
for r in range(1, runs + 1):
    b = json.load(open(os.path.join(work, "b%d.json" % r)))["status"]
    assert b["phase"] == "Completed", b.get("failureReason")
    w = [x["durationMs"] for x in b["freezeWindows"]]
    assert len(w) == pods, w
    wins += w
    moved.append(b["volumeProgress"]["bytesTransferred"])
    stored.append(sum(v["bytes"] for v in b["volumes"]))
    if r == 1:
        tput.append(b["volumeProgress"]["bytesPerSecond"] / 1048576)
wins.sort()
p = lambda q: wins[min(len(wins) - 1, int(q * len(wins)))]
limit = 2 * floor1 + 10
print("bench-backup: %d pods x 256 MiB volume, %d backups, RGW" % (pods, runs))
print("  total time   full %.2f s, incremental median %.2f s" % (times[1], statistics.median([times[r] for r in times if r > 1]) if runs > 1 else float("nan")))
print("  freeze floor 1 volume %.2f ms, %d volumes %.2f ms (median of 10)" % (floor1, pods, floorn))
print("  windows      p50 %.2f ms  p99 %.2f ms  max %.2f ms  (target <= 2 x floor + 10 = %.2f ms: %s)" % (p(0.5), p(0.99), wins[-1], limit, "met" if wins[-1] <= limit else "MISSED"))
print("  data         full: %.1f MiB stored, %.1f MiB sent; incremental median sent %.1f MiB" % (stored[0] / 1048576, moved[0] / 1048576, statistics.median(moved[1:]) / 1048576 if runs > 1 else float("nan")))
print("  throughput   %.1f MiB/s (bytes sent / volume phase) vs plain PUT %.1f MiB/s = %.0f%% (target >= 70%%)" % (tput[0], put, 100 * tput[0] / put))
c = [float(x) for x in open(os.path.join(work, "cpu1")).read().split()]
busy, rgw, ctl = c[3] - c[0], c[4] - c[1], c[5] - c[2]
print("  CPU, full    %.1f s busy of %.1f s (%d cores x %.1f s): RGW daemons %.1f s (%.1f ms per MiB stored), controller %.1f s, the rest %.1f s (movers, harness, kernel)" % (
    busy, ncores * times[1], ncores, times[1], rgw, 1000 * rgw / (stored[0] / 1048576), ctl, busy - rgw - ctl))
print("  plain PUT    kept the RGW daemons %.2f cores busy (of %d) at %.1f MiB/s" % (put_cores, ncores, put))
steps = [[float(x) for x in re.findall(r"in ([0-9.]+) ms|([0-9.]+) ms later", l) for x in x if x] for l in open(os.path.join(work, "quiesce"))]
if steps:
    med = [statistics.median(s[i] for s in steps) for i in range(4)]
    print("  quiesce      medians: freeze %.1f ms, VolumeSnapshots created %.1f ms, cut seen %.1f ms later, thaw %.1f ms" % tuple(med))
PY
