#!/usr/bin/env bash
# Resource backup benchmark: a namespace of 1,000 objects of mixed kinds
# (600 ConfigMaps, 200 Secrets, 100 Services, 60 ServiceAccounts, 40
# Deployments) on the Kubernetes API stand-in, backed up by `stasis server`
# to a file:// location, $RUNS times. Reported per run and as the median:
# the engine's time (discovery, lists, tarball, uploads; from its last log
# line), the time from creating the Backup (kubectl create returned) to
# seeing it Completed (polled with curl every 20 ms), and the API requests the backup made, by verb, as counted
# by the stand-in. Target: under 2 s, at most one list per resource type
# plus pagination. Usage: tests/bench/bench-backup-resources.sh build/release
set -euo pipefail

B=${1:?usage: bench-backup-resources.sh BUILD_DIR}
STASIS_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STASIS_BIN=${STASIS_BIN:-$STASIS_ROOT/$B/bin}
RUNS=${RUNS:-5}
N=${N:-1000}
# shellcheck source=../integration/controller_common.inc
. "$STASIS_ROOT/tests/integration/controller_common.inc"
command -v kubectl >/dev/null || { echo "bench-backup-resources: kubectl missing"; exit 1; }
[ -x "$STASIS" ] || { echo "bench-backup-resources: $STASIS is not built"; exit 1; }

work=$(mktemp -d /tmp/stasis-bench-backup.XXXXXX)
trap 'ctl_cleanup; rm -rf "$work"' EXIT

start_standin
file_bsl default "$work/store" true
printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n' | k create -f - >/dev/null
gen_objects bench "$N" "$work/objects.json"
t0=$(date +%s.%N)
post_objects "$work/objects.json"
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" -v n="$N" 'BEGIN { printf "created %d objects in %.1f s\n", n, b - a }'
start_server "$work/server.log" --bsl-sync-period 1h
wait_phase bsl default Available 20 >/dev/null

printf '%-4s %10s %10s %8s %6s %s\n' run engine_ms e2e_ms objects lists "requests by verb"
for r in $(seq 1 "$RUNS"); do
	reset_requests
	make_backup "bench-$r" '{"includedNamespaces":["bench"],"storageLocation":"default"}'
	s=$(date +%s%N)
	# curl, not kubectl, so that polling costs milliseconds, not a process start each time.
	while :; do
		p=$(curl -sf "$url/apis/stasis.io/v1alpha1/namespaces/stasis/backups/bench-$r" |
			grep -o '"phase": *"[A-Za-z]*"' | tail -n 1 | sed 's/.*"\([A-Za-z]*\)"$/\1/') || p=
		case $p in
		Completed) break ;;
		Failed | PartiallyFailed)
			echo "bench-$r: $p"
			exit 1
			;;
		esac
		sleep 0.02
	done
	e=$(date +%s%N)
	curl -sf "$url/standin/requests" >"$work/req-$r.json"
	eng=$(sed -n "s/.*backup stasis\/bench-$r: backup Completed in \([0-9]*\) ms.*/\1/p" "$work/server.log")
	objs=$(jp backup "bench-$r" .status.progress.itemsBackedUp)
	lists=$($PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["byVerb"].get("list",0))' "$work/req-$r.json")
	verbs=$($PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join("%s=%d" % kv for kv in sorted(d["byVerb"].items())))' "$work/req-$r.json")
	printf '%-4s %10s %10s %8s %6s %s\n' "$r" "$eng" $(((e - s) / 1000000)) "$objs" "$lists" "$verbs"
	echo "$eng $(((e - s) / 1000000)) $lists" >>"$work/runs"
done
$PY - "$work/runs" "$work/req-1.json" <<'EOF'
import json, statistics, sys
rows = [list(map(int, l.split())) for l in open(sys.argv[1])]
req = json.load(open(sys.argv[2]))["byResource"]
types = sum(1 for r, v in req.items() if v.get("list"))
print("median: engine %d ms, create->Completed %d ms, %d list requests over %d resource types"
      % (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows),
         statistics.median(r[2] for r in rows), types))
print("lists per type (run 1): " + ", ".join("%s=%d" % (r, v["list"]) for r, v in sorted(req.items()) if v.get("list")))
ok = statistics.median(r[0] for r in rows) < 2000
print("target (< 2 s): " + ("met" if ok else "NOT met"))
EOF
