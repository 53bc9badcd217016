#!/usr/bin/env bash
# Throughput, latency and memory of stasis-webhook against the Go reference
# webhook (../shared/bench/go-webhook), same machine, same run, same review:
# wrk POSTs a ~1.4 KB AdmissionReview over TLS keep-alive, 2 threads, 32
# connections. Runs alternate between the two servers; medians are reported
# with the ratio. Usage: tests/bench/bench-webhook.sh BUILD_DIR
# Environment: RUNS (default 5), DURATION (default 10s).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B=${1:-build/release}
BIN=$ROOT/$B/bin
SHARED=${STASIS_SHARED:-$ROOT/../shared}
RUNS=${RUNS:-5}
DURATION=${DURATION:-10s}
. "$ROOT/tests/integration/lib/common.sh"

work=$(mktemp -d /tmp/st-bench-webhook-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do stop_pid "$p"; done
	rm -rf "$work"
}
trap cleanup EXIT

GO=/usr/lib/go-1.19/bin/go
[ -x "$GO" ] || { echo "bench-webhook: $GO missing (STASIS_BENCH_DEPS=1 hack/install-deps.sh installs golang-1.19-go)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "bench-webhook: wrk missing" >&2; exit 1; }
(cd "$SHARED/bench/go-webhook" && GO111MODULE=off GOCACHE=$work/gocache "$GO" build -o "$work/go-webhook" main.go)

make_certs "$work" tls
# The review: the reference nginx pod, opted in, as kube-apiserver sends it.
cat >"$work/review.json" <<'JSON'
{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"test","operation":"CREATE","userInfo":{"username":"system:serviceaccount:kube-system:replicaset-controller"},"object":{"kind":"Pod","apiVersion":"v1","metadata":{"generateName":"nginx-deployment-7c79c4bf97-","namespace":"test","labels":{"app":"nginx","pod-template-hash":"7c79c4bf97"},"annotations":{"stasis.io/freeze":"true"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"nginx-deployment-7c79c4bf97","uid":"4b1c7e0e-3c5e-4f8a-9a57-0d1e2f3a4b5c","controller":true,"blockOwnerDeletion":true}]},"spec":{"volumes":[{"name":"html","persistentVolumeClaim":{"claimName":"nginx-html"}},{"name":"kube-api-access-x7k2p","projected":{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}}],"defaultMode":420}}],"containers":[{"name":"nginx","image":"nginx:1.25","ports":[{"containerPort":80,"protocol":"TCP"}],"resources":{},"volumeMounts":[{"name":"html","mountPath":"/usr/share/nginx/html"},{"name":"kube-api-access-x7k2p","readOnly":true,"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}],"imagePullPolicy":"IfNotPresent"}],"restartPolicy":"Always","dnsPolicy":"ClusterFirst","serviceAccountName":"default","securityContext":{},"schedulerName":"default-scheduler"}},"oldObject":null,"dryRun":false}}
JSON
size=$(wc -c <"$work/review.json")
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/review.json", "rb")
wrk.body = f:read("*a")
f:close()
LUA

st_port=$(free_port)
"$BIN/stasis-webhook" --listen "127.0.0.1:$st_port" --cert "$work/tls.crt" --key "$work/tls.key" \
	--log-level warn >"$work/st.log" 2>&1 &
pids+=($!)
st_pid=$!
go_port=$(free_port)
"$work/go-webhook" -addr "127.0.0.1:$go_port" -cert "$work/tls.crt" -key "$work/tls.key" >"$work/go.log" 2>&1 &
pids+=($!)
go_pid=$!
sleep 1
for p in $st_port $go_port; do
	code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/ca.crt" -H 'Content-Type: application/json' \
		--data-binary @"$work/review.json" "https://127.0.0.1:$p/mutate/pods")
	[ "$code" = 200 ] || { echo "bench-webhook: server on $p answered $code" >&2; exit 1; }
done

# run NAME PORT PID: one wrk run; appends "rps p50 p99 rss_kib" to $work/NAME.txt
run() {
	local name=$1 port=$2 pid=$3 out peak=0
	out=$work/$name.wrk
	wrk -t2 -c32 -d"$DURATION" --latency -s "$work/post.lua" "https://127.0.0.1:$port/mutate/pods" >"$out" 2>&1 &
	local wpid=$!
	while kill -0 "$wpid" 2>/dev/null; do
		local r
		r=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
		[ "$r" -gt "$peak" ] && peak=$r
		sleep 0.2
	done
	wait "$wpid"
	local rps p50 p99 errs
	rps=$(awk '/Requests\/sec/{print $2}' "$out")
	p50=$(awk '$1=="50%"{print $2}' "$out")
	p99=$(awk '$1=="99%"{print $2}' "$out")
	errs=$(awk '/Non-2xx|Socket errors/{print}' "$out")
	[ -z "$errs" ] || echo "  $name: $errs"
	echo "$rps $(to_ms "$p50") $(to_ms "$p99") $peak" >>"$work/$name.txt"
	printf '  %-8s run: %10.0f req/s  p50 %7.2f ms  p99 %7.2f ms  RSS %6d KiB\n' "$name" "$rps" "$(to_ms "$p50")" "$(to_ms "$p99")" "$peak"
}
to_ms() { # wrk prints 1.23ms / 456.00us / 1.02s
	awk -v v="$1" 'BEGIN{ if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v+0 } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000 } else print v }'
}
median() { sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

echo "bench-webhook: review $size bytes, wrk -t2 -c32 -d$DURATION, $RUNS runs each, alternating"
for i in $(seq "$RUNS"); do
	run stasis "$st_port" "$st_pid"
	run go "$go_port" "$go_pid"
done
hwm=$(awk '/VmHWM/{print $2}' "/proc/$st_pid/status")
go_hwm=$(awk '/VmHWM/{print $2}' "/proc/$go_pid/status")
for n in stasis go; do
	eval "${n}_rps=$(cut -d' ' -f1 "$work/$n.txt" | median)"
	eval "${n}_p50=$(cut -d' ' -f2 "$work/$n.txt" | median)"
	eval "${n}_p99=$(cut -d' ' -f3 "$work/$n.txt" | median)"
	eval "${n}_rss=$(cut -d' ' -f4 "$work/$n.txt" | median)"
done
echo
printf '%-22s %12s %12s %10s\n' "median of $RUNS" stasis go-reference ratio
printf '%-22s %12.0f %12.0f %9.2fx\n' "throughput (req/s)" "$stasis_rps" "$go_rps" "$(awk -v a="$stasis_rps" -v b="$go_rps" 'BEGIN{print a/b}')"
printf '%-22s %12.2f %12.2f %9.2fx\n' "p50 latency (ms)" "$stasis_p50" "$go_p50" "$(awk -v a="$stasis_p50" -v b="$go_p50" 'BEGIN{print a/b}')"
printf '%-22s %12.2f %12.2f %9.2fx\n' "p99 latency (ms)" "$stasis_p99" "$go_p99" "$(awk -v a="$stasis_p99" -v b="$go_p99" 'BEGIN{print a/b}')"
printf '%-22s %12d %12d %9.2fx\n' "RSS under load (KiB)" "$stasis_rss" "$go_rss" "$(awk -v a="$stasis_rss" -v b="$go_rss" 'BEGIN{print a/b}')"
printf '%-22s %12d %12d\n' "peak RSS, VmHWM (KiB)" "$hwm" "$go_hwm"
echo "targets: throughput >= 1.5x, p99 <= reference, RSS under load <= 8192 KiB"
