#!/usr/bin/env bash
# make bench-backup: a coordinated backup of 8 pods, each with a 256 MiB
# volume (200 MiB of random data), to a real Ceph RGW.
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
# Targets: every window <= 2 x floor + 10 ms; data throughput >= 70% of the PUT.
# Usage: tests/bench/bench-backup.sh BUILD_DIR
set -euo pipefail

B=${1:?usage: bench-backup.sh BUILD_DIR}
export STASIS_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export STASIS_BIN=$STASIS_ROOT/$B/bin
export STASIS_SHARED=${STASIS_SHARED:-$STASIS_ROOT/../shared}
RUNS=${RUNS:-3}
PODS=${PODS:-8}
E2E_NS_IP_BASE=127.0.4.10
E2E_POOL_SIZE=12G
. "$STASIS_ROOT/tests/integration/e2e_stasis.inc"
e2e_require

work=$(mktemp -d "${BENCH_TMP:-/var/tmp}/stasis-bench-backup.XXXXXX")
rgw=$work/rgw
cleanup() {
	e2e_cleanup
	bash "$STASIS_ROOT/hack/rgw.sh" stop "$rgw" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$rgw"
bash "$STASIS_ROOT/hack/rgw.sh" start "$rgw" >/dev/null 2>"$work/rgw.err" || {
	tail -n 20 "$work/rgw.err" >&2
	fail "RGW did not start"
}
set -a
# shellcheck disable=SC1091
. "$rgw/env"
set +a
$PY "$STASIS_ROOT/tests/integration/controller_s3.py" mb bench || fail "bucket"

e2e_bsl() {
	cat >"$work/creds" <<CREDS
[default]
aws_access_key_id = $AWS_ACCESS_KEY_ID
aws_secret_access_key = $AWS_SECRET_ACCESS_KEY
CREDS
	printf '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"rgw","namespace":"stasis"},"data":{"cloud":"%s"}}\n' \
		"$(base64 -w0 <"$work/creds")" | k create -f - >/dev/null || fail "secret"
	printf '{"apiVersion":"stasis.io/v1alpha1","kind":"BackupStorageLocation","metadata":{"name":"default","namespace":"stasis"},"spec":{"provider":"aws","default":true,"objectStorage":{"bucket":"bench","prefix":"c1"},"config":{"region":"%s","s3Url":"%s","s3ForcePathStyle":"true"},"credential":{"name":"rgw","key":"cloud"}}}\n' \
		"$STASIS_S3_REGION" "$STASIS_S3_ENDPOINT" | k create -f - >/dev/null || fail "bsl"
}
e2e_start --movers 4
wait_phase bsl default Available 30 >/dev/null || fail "location not Available"

k create namespace bench >/dev/null
agent_tls_secret bench
for i in $(seq 0 $((PODS - 1))); do
	make_pvc bench "data-$i" 256Mi
	make_pod bench "db-$i" "data-$i" /var/lib/data postgres:15
done
for i in $(seq 0 $((PODS - 1))); do
	wait_running bench "db-$i" 120
	p=$(volume_path bench "data-$i")
	head -c 200M /dev/urandom >"$p/data.bin"
	echo "$p" >>"$work/mounts"
done
sync

# The floor: the same volumes (their mounts and images, as the harness has them).
cc -O2 -o "$work/freeze_floor" "$STASIS_ROOT/tests/bench/freeze_floor.c"
floor() { # N: floor for the first N volumes, median of 10, in ms
	$PY - "$work" "$1" <<'PY'
import json, os, statistics, subprocess, sys
work, n = sys.argv[1], int(sys.argv[2])
vols = json.load(open(os.path.join(work, "hroot", "volumes.json")))
pairs = [(v["mount"], v["image"]) for k, v in sorted(vols.items()) if k.startswith("bench/")][:n]
args = ["floor"]
for m, img in pairs:
    args += [m, img]
ws = []
for _ in range(10):
    out = subprocess.run([os.path.join(work, "freeze_floor")] + args, capture_output=True, text=True, check=True).stdout
    ws.append(float(out.split()[1]))
print("%.2f" % statistics.median(ws))
PY
}

# A plain single-stream PUT of 256 MiB to the same RGW (SigV4, unsigned payload).
head -c 256M /dev/urandom >"$work/put.bin"
put_mibs=$($PY - "$work/put.bin" <<'PY'
import datetime, hashlib, hmac, http.client, os, sys, time, urllib.parse
path = sys.argv[1]
ep = urllib.parse.urlparse(os.environ["STASIS_S3_ENDPOINT"])
region = os.environ.get("STASIS_S3_REGION", "us-east-1")
ak, sk = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
size = os.path.getsize(path)
def sign(k, m): return hmac.new(k, m.encode(), hashlib.sha256).digest()
rates = []
for run in range(3):
    now = datetime.datetime.utcnow()
    amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    uri = "/bench/put-%d" % run
    hdrs = {"host": ep.netloc, "x-amz-content-sha256": "UNSIGNED-PAYLOAD", "x-amz-date": amz}
    sh = ";".join(sorted(hdrs))
    creq = "\n".join(["PUT", uri, "", "".join("%s:%s\n" % (k, hdrs[k]) for k in sorted(hdrs)), sh, "UNSIGNED-PAYLOAD"])
    scope = "%s/%s/s3/aws4_request" % (day, region)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = sign(sign(sign(sign(("AWS4" + sk).encode(), day), region), "s3"), "aws4_request")
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    hdrs["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (ak, scope, sh, sig)
    hdrs["content-length"] = str(size)
    c = http.client.HTTPConnection(ep.hostname, ep.port)
    t = time.monotonic()
    with open(path, "rb") as f:
        c.request("PUT", uri, body=f, headers=hdrs)
        r = c.getresponse()
        r.read()
    if r.status != 200:
        sys.exit("PUT failed: %d" % r.status)
    rates.append(size / (time.monotonic() - t) / 1048576)
rates.sort()
print("%.1f" % rates[1])
PY
)
rm -f "$work/put.bin"

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
	t0=$(date +%s.%N)
	"$STASIS" backup create "bench-$r" --include-namespaces bench --wait \
		--kubeconfig "$work/kubeconfig" -n stasis >"$work/b$r.out" 2>&1 ||
		fail "bench-$r: $(tail -n 3 "$work/b$r.out")"
	t1=$(date +%s.%N)
	k -n stasis get backup "bench-$r" -o json >"$work/b$r.json"
	echo "$r $t0 $t1" >>"$work/results"
done

$PY - "$work" "$RUNS" "$floor1" "$floorn" "$put_mibs" "$PODS" <<'PY'
import json, os, statistics, sys
from datetime import datetime
work, runs, floor1, floorn, put, pods = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
times = {}
for line in open(os.path.join(work, "results")):
    r, a, b = line.split()
    times[int(r)] = float(b) - float(a)
wins, moved, stored, tput = [], [], [], []
t = lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
for r in range(1, runs + 1):
    b = json.load(open(os.path.join(work, "b%d.json" % r)))["status"]
    assert b["phase"] == "Completed", b.get("failureReason")
    w = [x["durationMs"] for x in b["freezeWindows"]]
    assert len(w) == pods, w
    wins += w
    moved.append(b["volumeProgress"]["bytesTransferred"])
    stored.append(sum(v["bytes"] for v in b["volumes"]))
    if r == 1:
        thawed = max(t(x["thawedAt"]) for x in b["freezeWindows"])
        done = t(b["completionTimestamp"]) if "." in b.get("completionTimestamp", "") else None
        tput.append(b["volumeProgress"]["bytesPerSecond"] / 1048576)
wins.sort()
p = lambda q: wins[min(len(wins) - 1, int(q * len(wins)))]
limit = 2 * floor1 + 10
print("bench-backup: %d pods x 256 MiB volume (200 MiB data), %d backups, RGW" % (pods, runs))
print("  total time   full %.2f s, incremental median %.2f s" % (times[1], statistics.median([times[r] for r in times if r > 1]) if runs > 1 else float("nan")))
print("  freeze floor 1 volume %.2f ms, %d volumes %.2f ms (median of 10)" % (floor1, pods, floorn))
print("  windows      p50 %.2f ms  p99 %.2f ms  max %.2f ms  (target <= 2 x floor + 10 = %.2f ms: %s)" % (p(0.5), p(0.99), wins[-1], limit, "met" if wins[-1] <= limit else "MISSED"))
print("  data         full: %.1f MiB stored, %.1f MiB sent; incremental median sent %.1f MiB" % (stored[0] / 1048576, moved[0] / 1048576, statistics.median(moved[1:]) / 1048576 if runs > 1 else float("nan")))
print("  throughput   %.1f MiB/s (bytes sent / volume phase) vs plain PUT %.1f MiB/s = %.0f%% (target >= 70%%)" % (tput[0], put, 100 * tput[0] / put))
PY
