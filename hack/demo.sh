#!/usr/bin/env bash
# make demo: the whole story on one machine, with no cluster.
#
# Part 1, standalone host mode (needs root, loop devices and PostgreSQL 15):
#   PostgreSQL runs on an XFS volume image inside a reflink storage pool while
#   pgbench writes to it; stasis-agent freezes the volume, clones its image
#   (the storage snapshot), thaws, and backs the clone up to a deduplicating,
#   encrypted repository (file:// by default). The volume is then destroyed,
#   restored from the repository onto a new volume, PostgreSQL starts on it
#   (crash recovery) and pgbench's invariants are checked.
# Part 2, the webhook: the reference nginx pod goes through /mutate/pods and
#   comes out with the freezer sidecar and Velero hook annotations.
#
# Usage: hack/demo.sh BUILD_DIR
# Environment: STASIS_DEMO_REPO=URL uses another repository (e.g. s3://bucket/prefix?...; repo
#   init creates the bucket when missing; AWS credentials in the environment); STASIS_DEMO_SECONDS (default 20)
#   sets how long pgbench runs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/${1:-build/release}/bin
. "$ROOT/tests/integration/lib/common.sh"
PGBIN=/usr/lib/postgresql/15/bin
SECONDS_LOAD=${STASIS_DEMO_SECONDS:-20}

W=$(mktemp -d /tmp/stasis-demo-XXXXXX)
chmod 755 "$W"
pids=()
loops=()
pg_dirs=()
cleanup() {
	set +e
	for d in "${pg_dirs[@]}"; do runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1; done
	for p in "${pids[@]}"; do stop_pid "$p"; done
	for m in $(findmnt -rn -o TARGET 2>/dev/null | grep "^$W/" | sort -r); do
		fsfreeze -u "$m" 2>/dev/null
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null; done
	rm -rf "$W"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
as_pg() { runuser -u postgres -- "$@"; }
sql() { as_pg psql -h "$W/sock" -p "$1" -U postgres -d postgres -XAtq -c "$2"; }

# vol_attach IMAGE MOUNTPOINT: loop-attach and mount a volume image.
vol_attach() {
	local l
	l=$(losetup -f --show "$1")
	loops+=("$l")
	mkdir -p "$2"
	mount "$l" "$2"
}

invariants() { # PORT -> prints "accounts tellers branches history count"
	sql "$1" "select (select sum(abalance) from pgbench_accounts), (select sum(tbalance) from pgbench_tellers), (select sum(bbalance) from pgbench_branches), (select coalesce(sum(delta),0) from pgbench_history), (select count(*) from pgbench_history)"
}

standalone() {
	local repo=${STASIS_DEMO_REPO:-file://$W/repo} port port2 bench a t b h n
	export STASIS_REPO_KEY="stasis demo repository key"
	export STASIS_STATE_DIR=$W/state
	mkdir -p "$W/state" "$W/repo" "$W/sock" "$W/logs"
	chown postgres:postgres "$W/sock" "$W/logs"

	step "1. a storage pool (XFS with reflink) and a 640 MiB XFS volume image for PostgreSQL"
	truncate -s 3G "$W/pool.img"
	mkfs.xfs -q -m reflink=1 "$W/pool.img"
	vol_attach "$W/pool.img" "$W/pool"
	truncate -s 640M "$W/pool/pg.img"
	mkfs.xfs -q "$W/pool/pg.img"
	vol_attach "$W/pool/pg.img" "$W/vol/pg"
	echo "pool $W/pool, volume $W/vol/pg (backed by $W/pool/pg.img)"

	step "2. PostgreSQL 15 on the volume, pgbench writing for ${SECONDS_LOAD}s"
	mkdir -p "$W/vol/pg/data"
	chown postgres:postgres "$W/vol/pg/data"
	as_pg "$PGBIN/initdb" -D "$W/vol/pg/data" -A trust -U postgres >/dev/null
	port=$(free_port)
	as_pg "$PGBIN/pg_ctl" -D "$W/vol/pg/data" -l "$W/logs/pg1.log" -w start \
		-o "-p $port -k $W/sock -c listen_addresses=" >/dev/null
	pg_dirs+=("$W/vol/pg/data")
	as_pg pgbench -h "$W/sock" -p "$port" -U postgres -i -s 4 -q postgres >/dev/null 2>&1
	as_pg pgbench -h "$W/sock" -p "$port" -U postgres -c 4 -j 2 -T "$SECONDS_LOAD" postgres >"$W/bench.out" 2>&1 &
	bench=$!
	sleep $((SECONDS_LOAD / 3))

	step "3. freeze -> image snapshot -> thaw, then back the snapshot up ($repo)"
	"$BIN/stasis-agent" repo init --repo "$repo" >/dev/null
	"$BIN/stasis-agent" backup --volume "$W/vol/pg" --method image --repo "$repo" 2>&1 | sed 's/^/  /'
	echo "pgbench kept writing during the backup: $(sql "$port" 'select count(*) from pgbench_history') transactions so far"
	wait "$bench"
	grep -E "^(tps|number of transactions actually processed)" "$W/bench.out" | sed 's/^/  pgbench: /'
	as_pg "$PGBIN/pg_ctl" -D "$W/vol/pg/data" -m fast -w stop >/dev/null
	"$BIN/stasis-agent" repo list --repo "$repo" | sed 's/^/  /'

	step "4. the volume is destroyed"
	umount "$W/vol/pg"
	rm -f "$W/pool/pg.img"
	echo "removed $W/pool/pg.img"

	step "5. a new volume, restored from the repository (every chunk verified)"
	truncate -s 640M "$W/pool/pg2.img"
	mkfs.xfs -q "$W/pool/pg2.img"
	vol_attach "$W/pool/pg2.img" "$W/vol/pg2"
	"$BIN/stasis-agent" restore latest --target "$W/vol/pg2" --repo "$repo" 2>&1 | tail -3 | sed 's/^/  /'

	step "6. PostgreSQL starts on the restored volume (crash recovery) and the invariants hold"
	rm -f "$W/vol/pg2/data/postmaster.pid"
	port2=$(free_port)
	as_pg "$PGBIN/pg_ctl" -D "$W/vol/pg2/data" -l "$W/logs/pg2.log" -w start \
		-o "-p $port2 -k $W/sock -c listen_addresses=" >/dev/null
	pg_dirs+=("$W/vol/pg2/data")
	grep -E "redo (starts|done)|database system is ready" "$W/logs/pg2.log" | sed 's/^.*LOG: */  postgres: /'
	IFS='|' read -r a t b h n <<<"$(invariants "$port2")"
	echo "  sum(abalance)=$a  sum(tbalance)=$t  sum(bbalance)=$b  sum(delta)=$h  ($n transactions in the backup)"
	if [ "$a" = "$h" ] && [ "$t" = "$h" ] && [ "$b" = "$h" ]; then
		echo "  invariants hold: the backup is crash-consistent"
	else
		echo "  INVARIANTS BROKEN" >&2
		exit 1
	fi
	as_pg "$PGBIN/pg_ctl" -D "$W/vol/pg2/data" -m fast -w stop >/dev/null
}

webhook() {
	local port pid
	step "7. the webhook: certificates (stasis certs)"
	"$BIN/stasis" certs --out-dir "$W/certs" --dns localhost --ip 127.0.0.1
	port=$(free_port)
	cat >"$W/config.yaml" <<YAML
listen: "127.0.0.1:$port"
tls: {certFile: $W/certs/tls.crt, keyFile: $W/certs/tls.key}
injection:
  image: stasis/stasis-agent:v0.1.0
  freezeTimeout: 30s
YAML
	"$BIN/stasis-webhook" --config "$W/config.yaml" >"$W/webhook.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	wait_for_log "$W/webhook.log" "serving https" 10

	step "8. the reference nginx pod goes through /mutate/pods"
	cat >"$W/pod.yaml" <<'YAML'
apiVersion: v1
kind: Pod
metadata:
  generateName: nginx-deployment-
  namespace: test
  labels:
    app: nginx
  annotations:
    stasis.io/freeze: "true"
spec:
  volumes:
    - name: html
      persistentVolumeClaim:
        claimName: nginx-html
  containers:
    - name: nginx
      image: nginx:1.25
      ports:
        - containerPort: 80
      volumeMounts:
        - name: html
          mountPath: /usr/share/nginx/html
YAML
	$PY - "$W" "$port" <<'PY'
import base64, json, ssl, sys, urllib.request
import jsonpatch, yaml
work, port = sys.argv[1], sys.argv[2]
pod = yaml.safe_load(open(work + "/pod.yaml"))
review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
          "request": {"uid": "demo-0001", "operation": "CREATE", "namespace": "test",
                      "resource": {"group": "", "version": "v1", "resource": "pods"}, "object": pod}}
ctx = ssl.create_default_context(cafile=work + "/certs/ca.crt")
req = urllib.request.Request("https://127.0.0.1:%s/mutate/pods" % port, data=json.dumps(review).encode(),
                             headers={"Content-Type": "application/json"})
resp = json.load(urllib.request.urlopen(req, context=ctx))["response"]
ops = json.loads(base64.b64decode(resp["patch"]))
print("AdmissionReview answer: uid=%s allowed=%s, %d patch operations, warnings=%s"
      % (resp["uid"], resp["allowed"], len(ops), resp.get("warnings", [])))
out = jsonpatch.JsonPatch(ops).apply(pod)
open(work + "/pod-out.yaml", "w").write(yaml.safe_dump(out, sort_keys=False))
open(work + "/pod-in.yaml", "w").write(yaml.safe_dump(pod, sort_keys=False))
PY
	echo
	diff -u --label pod-in.yaml --label pod-out.yaml "$W/pod-in.yaml" "$W/pod-out.yaml" || true
	curl -s --cacert "$W/certs/ca.crt" "https://127.0.0.1:$port/metrics" | grep -E '^stasis_webhook_injections_total'
}

if [ "$(id -u)" != 0 ]; then
	step "standalone host mode skipped: it needs root (loop devices, mount, FIFREEZE)"
elif [ ! -x "$PGBIN/initdb" ] || ! command -v pgbench >/dev/null; then
	step "standalone host mode skipped: PostgreSQL 15 is not installed (make deps installs it)"
else
	standalone
fi
webhook
echo
echo "demo: done"
