#!/usr/bin/env bash
# The end-to-end harness (tests/e2e/harness.py) against the API stand-in:
# claims are provisioned as images in the reflink pool and bound to PVs
# (ext4 by default, XFS by StorageClass, 32 MiB minimum, foreign provisioners
# left Pending); a pod gets an IP and Running; data in a claim is in a
# VolumeSnapshot's restored claim when written before the cut and not when
# written after; a restore waits for readyToUse; a pod running `stasis-agent
# serve --listen 0.0.0.0` answers HTTPS on its pod IP (certificates from
# --agent-certs) and freezes its claim's filesystem; restartPolicy Never pods
# end Succeeded or Failed with exit codes and logs; a container named in the
# stasis.test/run annotation serves the claim on its pod IP as runAsUser;
# the class knobs error,
# never-cut and cut-delay; a read-write mount refused while the claim is
# mounted read-only is written into the pod's status; Deployments and
# StatefulSets get pods and template claims; a namespace deleted and
# re-created at once (a restore) gets fresh volumes; deletions of pods,
# snapshots and claims undo their processes, mounts and images; SIGTERM
# leaves no mount, loop device or process behind.
set -uo pipefail
# shellcheck source=e2e_common.inc
. "$(dirname "$0")/e2e_common.inc"
e2e_require

# Agent certificates as the controller expects them: DNS SAN stasis-agent.
mkdir -p "$work/agent"
make_certs "$work/agent" client
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/agent/tls.key" \
	-out "$work/agent/tls.csr" -subj /CN=stasis-agent 2>/dev/null
printf 'subjectAltName=DNS:stasis-agent\n' >"$work/agent/tls.ext"
openssl x509 -req -in "$work/agent/tls.csr" -CA "$work/agent/ca.crt" -CAkey "$work/agent/ca.key" \
	-CAcreateserial -days 30 -extfile "$work/agent/tls.ext" -out "$work/agent/tls.crt" 2>/dev/null

e2e_start --agent-certs "$work/agent"
pod_ip_1=$IP_BASE
base3=${IP_BASE%.*}

k create namespace test >/dev/null || fail "namespace"
k apply -f - >/dev/null <<'EOF' || fail "storage classes"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: xfs}
provisioner: stasis.test.csi
parameters: {csi.storage.k8s.io/fstype: xfs}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: other}
provisioner: ebs.csi.aws.com
---
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata: {name: snap}
driver: stasis.test.csi
deletionPolicy: Delete
---
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata: {name: slow}
driver: stasis.test.csi
deletionPolicy: Delete
parameters: {stasis.test/ready-delay-ms: "4000", stasis.test/cut-delay-ms: "300"}
---
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata: {name: broken}
driver: stasis.test.csi
deletionPolicy: Delete
parameters: {stasis.test/error: "injected storage failure"}
---
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata: {name: stuck}
driver: stasis.test.csi
deletionPolicy: Delete
parameters: {stasis.test/never-cut: "true"}
EOF

# claim NAME SIZE [CLASS] [DATASOURCE-SNAPSHOT]
claim() {
	{
		printf 'apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: %s, namespace: test}\n' "$1"
		printf 'spec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: %s}}\n' "$2"
		if [ -n "${3:-}" ]; then printf '  storageClassName: %s\n' "$3"; fi
		if [ -n "${4:-}" ]; then
			printf '  dataSource: {kind: VolumeSnapshot, apiGroup: snapshot.storage.k8s.io, name: %s}\n' "$4"
		fi
	} | k apply -f - >/dev/null || fail "claim $1"
}

# snapshot NAME CLASS [CLAIM]
snapshot() {
	printf 'apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot
metadata: {name: %s, namespace: test}
spec: {volumeSnapshotClassName: %s, source: {persistentVolumeClaimName: %s}}\n' \
		"$1" "$2" "${3:-web}" | k apply -f - >/dev/null || fail "snapshot $1"
}

vol_field() { # NS/PVC FIELD: from volumes.json
	jq -r --arg k "$1" ".[\$k].$2" "$work/root/volumes.json"
}

echo "== claims are provisioned and bound"
claim web 50Mi
claim tiny 1Mi
claim x 64Mi xfs
claim foreign 50Mi other
wait_jp test pvc web .status.phase Bound 20 >/dev/null || fail "claim web not bound"
wait_jp test pvc tiny .status.phase Bound 20 >/dev/null || fail "claim tiny not bound"
wait_jp test pvc x .status.phase Bound 30 >/dev/null || fail "claim x not bound"
pv=$(k -n test get pvc web -o jsonpath='{.spec.volumeName}')
[ -n "$pv" ] || fail "bound claim has no spec.volumeName"
[ "$(k get pv "$pv" -o jsonpath='{.spec.csi.driver}')" = stasis.test.csi ] || fail "PV driver"
[ "$(k get pv "$pv" -o jsonpath='{.spec.claimRef.namespace}/{.spec.claimRef.name}')" = test/web ] ||
	fail "PV claimRef"
[ "$(k get pv "$pv" -o jsonpath='{.status.phase}')" = Bound ] || fail "PV phase"
[ "$(k -n test get pvc web -o jsonpath='{.status.capacity.storage}')" = 50Mi ] || fail "capacity"
[ "$(stat -c %s "$(vol_field test/web image)")" = 52428800 ] || fail "web image is not 50 MiB"
[ "$(stat -c %s "$(vol_field test/tiny image)")" = 33554432 ] || fail "tiny image is not 32 MiB"
xdir=$(hpath test x) || fail "path of claim x"
[ "$(findmnt -n -o FSTYPE "$xdir")" = xfs ] || fail "claim of class xfs is not XFS"
[ "$(findmnt -n -o FSTYPE "$(hpath test web)")" = ext4 ] || fail "default claim is not ext4"
sleep 1
[ "$(k -n test get pvc foreign -o jsonpath='{.status.phase}')" = Pending ] ||
	fail "a claim of another provisioner was bound"
echo "   web -> $pv, ext4 50Mi; tiny 32Mi image; x xfs; foreign Pending"

echo "== a pod using the claim gets an IP and Running"
k apply -f - >/dev/null <<'EOF' || fail "pod nginx"
apiVersion: v1
kind: Pod
metadata: {name: nginx, namespace: test}
spec:
  containers:
  - name: nginx
    image: nginx:1.25
    ports: [{containerPort: 80}]
    volumeMounts: [{name: html, mountPath: /usr/share/nginx/html}]
  volumes:
  - {name: html, persistentVolumeClaim: {claimName: web}}
EOF
wait_jp test pod nginx .status.phase Running 20 >/dev/null || fail "nginx not Running"
[ "$(k -n test get pod nginx -o jsonpath='{.status.podIP}')" = "$pod_ip_1" ] ||
	fail "nginx IP is not $pod_ip_1"
[ "$(k -n test get pod nginx -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ] ||
	fail "nginx not Ready"
[ "$(k -n test get pod nginx -o jsonpath='{.spec.nodeName}')" = harness ] || fail "nginx not bound to node harness"
[ "$(k get node harness -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ] ||
	fail "node harness not Ready"

echo "== a snapshot holds what was written before the cut, not after"
web=$(hpath test web) || fail "path of web"
[ "$web" = "$(vol_field test/web mount)" ] || fail "path and volumes.json disagree"
echo 'hello world 001' >"$web/index.html"
# What the agent does before a cut: syncfs + FIFREEZE; the cut happens while frozen.
fsfreeze -f "$web" || fail "freeze"
t0=$(date +%s%N)
snapshot s1 snap
ct=$(wait_jp test vs s1 .status.creationTime '.+' 10) || { fsfreeze -u "$web"; fail "s1 not cut"; }
t1=$(date +%s%N)
fsfreeze -u "$web"
echo "   cut seen by kubectl $(((t1 - t0) / 1000000)) ms after create (creationTime $ct)"
echo 'hello world 002' >"$web/index.html"
sync -f "$web"
[[ $ct =~ \.[0-9]+Z$ ]] || fail "creationTime $ct has no fractional seconds"
wait_jp test vs s1 .status.readyToUse true 10 >/dev/null || fail "s1 not ready"
content=$(k -n test get vs s1 -o jsonpath='{.status.boundVolumeSnapshotContentName}')
[ "$(k get vsc "$content" -o jsonpath='{.spec.driver}')" = stasis.test.csi ] || fail "content driver"
[[ $(k get vsc "$content" -o jsonpath='{.status.creationTime}') =~ ^[0-9]{19}$ ]] ||
	fail "content creationTime is not int64 nanoseconds"
[ "$(k -n test get vs s1 -o jsonpath='{.status.restoreSize}')" = 50Mi ] || fail "restoreSize"
claim r1 50Mi "" s1
wait_jp test pvc r1 .status.phase Bound 20 >/dev/null || fail "restored claim not bound"
r1=$(hpath test r1) || fail "path of r1"
[ "$(cat "$r1/index.html")" = 'hello world 001' ] ||
	fail "restored claim has '$(cat "$r1/index.html")', want the data before the cut"
[ "$(cat "$web/index.html")" = 'hello world 002' ] || fail "live claim lost its write"

echo "== cut latency through the API (watch from create to creationTime)"
$PY - "$work/kubeconfig" "$STASIS_ROOT" <<'EOF' || fail "cut latency"
import queue, sys, threading, time
sys.dont_write_bytecode = True
sys.path.insert(0, sys.argv[2] + "/tests/e2e")
from hkube import Kube  # kept-alive connections: no handshake inside the measure
c = Kube.from_kubeconfig(sys.argv[1])
p = c.path("snapshot.storage.k8s.io", "v1", "volumesnapshots", ns="test")
cuts = queue.Queue()
rv = c.get(p)["metadata"]["resourceVersion"]


def watch():  # one stream, opened before the first create
    for ev in c.watch(p, resource_version=rv, timeout_seconds=60):
        if (ev["object"].get("status") or {}).get("creationTime"):
            cuts.put((ev["object"]["metadata"]["name"], time.monotonic()))


threading.Thread(target=watch, daemon=True).start()
time.sleep(0.5)
worst = 0
for i in range(5):
    name = "lat%d" % i
    c.get(p)
    t0 = time.monotonic()
    c.create(p, {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                 "metadata": {"name": name, "namespace": "test"},
                 "spec": {"volumeSnapshotClassName": "snap",
                          "source": {"persistentVolumeClaimName": "web"}}})
    while True:
        n, t = cuts.get(timeout=10)
        if n == name:
            break
    worst = max(worst, (t - t0) * 1000)
    c.delete(p + "/" + name)
print("   create -> creationTime seen on a watch: worst of 5 is %.1f ms" % worst)
if worst > 500:
    sys.exit("a cut took %.1f ms to show" % worst)
EOF

echo "== a claim from a snapshot waits for readyToUse; cut-delay knob"
echo 'hello world 003' >"$web/index.html"
fsfreeze -f "$web" && fsfreeze -u "$web"
t0=$(date +%s%N)
snapshot s2 slow
claim r2 50Mi "" s2
sleep 0.5
[ "$(k -n test get vs s2 -o jsonpath='{.status.readyToUse}')" != true ] || fail "s2 ready too soon"
[ "$(k -n test get pvc r2 -o jsonpath='{.status.phase}')" = Pending ] ||
	fail "claim from a snapshot not readyToUse was bound"
ct=$(wait_jp test vs s2 .status.creationTime '.+' 10) || fail "s2 not cut"
ct_ns=$(($(date -d "$ct" +%s%N)))
[ $((ct_ns - t0)) -ge 300000000 ] || fail "cut-delay-ms 300 not honoured ($(((ct_ns - t0) / 1000000)) ms)"
snap_ns() { # NS/VS FIELD: an exact int64 from snapshots.json (jq would round it to a double)
	$PY -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]][sys.argv[3]])' \
		"$work/root/snapshots.json" "$1" "$2"
}
ev_ns=$(snap_ns test/s2 eventNs)
cut_ns=$(snap_ns test/s2 cutNs)
[ "$cut_ns" = "$ct_ns" ] || fail "snapshots.json cutNs $cut_ns is not the creationTime $ct_ns"
[ $((cut_ns - ev_ns)) -ge 300000000 ] || fail "harness cut s2 $(((cut_ns - ev_ns) / 1000000)) ms after its event"
wait_jp test pvc r2 .status.phase Bound 20 >/dev/null || fail "r2 not bound after ready"
[ "$(k -n test get vs s2 -o jsonpath='{.status.readyToUse}')" = true ] || fail "r2 bound before ready"
[ "$(cat "$(hpath test r2)/index.html")" = 'hello world 003' ] || fail "r2 content"

echo "== class knobs: error and never-cut"
snapshot s3 broken
wait_jp test vs s3 .status.error.message 'injected storage failure' 10 >/dev/null ||
	fail "error knob not written"
[ -z "$(k -n test get vs s3 -o jsonpath='{.status.creationTime}')" ] || fail "failed snapshot cut"
snapshot s4 stuck
wait_jp test vs s4 .status.boundVolumeSnapshotContentName '.+' 10 >/dev/null ||
	fail "never-cut snapshot has no content"
sleep 1
[ -z "$(k -n test get vs s4 -o jsonpath='{.status.creationTime}')" ] || fail "never-cut was cut"
[ "$(k -n test get vs s4 -o jsonpath='{.status.readyToUse}')" = false ] || fail "never-cut ready"

echo "== deleting a snapshot deletes its content and image"
simg=$(jq -r '.["test/s1"].image' "$work/root/snapshots.json")
[ -f "$simg" ] || fail "snapshot image $simg missing"
k -n test delete vs s1 >/dev/null
i=0
while { [ -f "$simg" ] || k get vsc "$content" >/dev/null 2>&1; } && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
[ -f "$simg" ] && fail "snapshot image left after delete"
k get vsc "$content" >/dev/null 2>&1 && fail "content left after delete"
[ "$(cat "$r1/index.html")" = 'hello world 001' ] || fail "restored claim changed with its snapshot"

echo "== an agent pod answers HTTPS on its pod IP and freezes its volume"
port=$(free_port)
k apply -f - >/dev/null <<EOF || fail "pod agent"
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: test}
spec:
  containers:
  - name: app
    image: nginx:1.25
    volumeMounts: [{name: data, mountPath: /usr/share/nginx/html}]
  - name: stasis-freezer
    image: stasis/stasis-agent:v0.1.0
    command: [/stasis-agent, serve, --volumes-dir, /stasis/volumes, --default-deadline, 30s,
      --listen, 0.0.0.0, --port, "$port", --cert, /etc/stasis/agent-tls/tls.crt,
      --key, /etc/stasis/agent-tls/tls.key, --client-ca, /etc/stasis/agent-tls/ca.crt]
    ports: [{name: stasis-agent, containerPort: $port}]
    env:
    - {name: STASIS_POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: STASIS_VOLUMES, value: /stasis/volumes/data}
    volumeMounts:
    - {name: data, mountPath: /stasis/volumes/data}
    - {name: stasis-agent-tls, mountPath: /etc/stasis/agent-tls, readOnly: true}
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: web}}
  - {name: stasis-agent-tls, secret: {secretName: stasis-agent-tls}}
EOF
wait_jp test pod agent '.status.conditions[?(@.type=="Ready")].status' True 30 >/dev/null ||
	fail "agent pod not Ready"
aip=$(k -n test get pod agent -o jsonpath='{.status.podIP}')
[ "$aip" = "$base3.11" ] || fail "agent pod IP $aip, want $base3.11"
acurl() {
	curl -sS --cacert "$work/agent/ca.crt" --cert "$work/agent/client.crt" \
		--key "$work/agent/client.key" --resolve "stasis-agent:$port:$aip" "$@"
}
st=$(acurl "https://stasis-agent:$port/v1/status") || fail "agent does not answer on $aip:$port"
[[ $(jq -r '.volumes[0]' <<<"$st") == */stasis/volumes/data ]] || fail "agent volumes: $st"
acurl -X POST -d '{"deadlineSeconds":10}' "https://stasis-agent:$port/v1/freeze" | grep -q '"frozen":true' ||
	fail "freeze over HTTPS"
is_frozen() { # MNT: a freeze attempt answers EBUSY while frozen
	if fsfreeze -f "$1" 2>/dev/null; then
		fsfreeze -u "$1"
		return 1
	fi
	return 0
}
is_frozen "$web" || fail "the claim is not frozen after the agent's freeze"
H exec test agent stasis-freezer -- stasis-agent status | jq -e '.frozen == true' >/dev/null ||
	fail "exec status in the agent container"
acurl -X POST "https://stasis-agent:$port/v1/thaw" | grep -q '"thawed":true' || fail "thaw"
is_frozen "$web" && fail "still frozen after thaw"
apid=$(jq -r '.["test/agent"].containers["stasis-freezer"].pid' "$work/root/pods.json")
kill -0 "$apid" || fail "agent pid $apid from pods.json is not running"
aroot=$(jq -r '.["test/agent"].containers["stasis-freezer"].root' "$work/root/pods.json")
[ -S "$aroot/run/stasis/agent.sock" ] || fail "no agent socket in $aroot/run/stasis"

echo "== a killed agent is restarted (restartPolicy Always)"
kill -KILL "$apid"
wait_jp test pod agent '.status.containerStatuses[?(@.name=="stasis-freezer")].restartCount' 1 20 \
	>/dev/null || fail "agent not restarted"
wait_jp test pod agent '.status.conditions[?(@.type=="Ready")].status' True 30 >/dev/null ||
	fail "agent pod not Ready after the restart"
[ "$(k -n test get pod agent -o jsonpath='{.status.containerStatuses[?(@.name=="stasis-freezer")].lastState.terminated.exitCode}')" = 137 ] ||
	fail "lastState of the killed agent is not exit 137"
apid=$(jq -r '.["test/agent"].containers["stasis-freezer"].pid' "$work/root/pods.json")
kill -0 "$apid" || fail "restarted agent pid $apid is not running"
acurl "https://stasis-agent:$port/v1/status" | jq -e '.frozen == false' >/dev/null ||
	fail "restarted agent does not answer"

echo "== a container named in stasis.test/run runs its host command (as runAsUser)"
wport=$(free_port)
k apply -f - >/dev/null <<EOF || fail "pod static"
apiVersion: v1
kind: Pod
metadata:
  name: static
  namespace: test
  annotations: {stasis.test/run: web}
spec:
  securityContext: {runAsUser: 65534, runAsGroup: 65534}
  containers:
  - name: web
    image: python:3
    command: [/usr/bin/python3, -m, http.server, --bind, 0.0.0.0, "$wport", --directory, /srv]
    ports: [{containerPort: $wport}]
    volumeMounts: [{name: html, mountPath: /srv, readOnly: true}]
  volumes:
  - {name: html, persistentVolumeClaim: {claimName: web}}
EOF
wait_jp test pod static '.status.conditions[?(@.type=="Ready")].status' True 30 >/dev/null ||
	fail "static pod not Ready"
sip=$(k -n test get pod static -o jsonpath='{.status.podIP}')
[ "$(curl -sS "http://$sip:$wport/index.html")" = "$(cat "$web/index.html")" ] ||
	fail "the static pod does not serve the claim's index.html on $sip:$wport"
spid=$(jq -r '.["test/static"].containers.web.pid' "$work/root/pods.json")
grep -q '^Uid:[[:space:]]*65534[[:space:]]' "/proc/$spid/status" || fail "web does not run as 65534"
k -n test delete pod static >/dev/null

echo "== restartPolicy Never pods: Succeeded and Failed with exit codes and logs"
k apply -f - >/dev/null <<'EOF' || fail "job pods"
apiVersion: v1
kind: Pod
metadata: {name: ok, namespace: test}
spec:
  restartPolicy: Never
  containers:
  - {name: run, image: stasis/stasis-agent:v0.1.0, command: [/stasis-agent, help]}
---
apiVersion: v1
kind: Pod
metadata: {name: bad, namespace: test}
spec:
  restartPolicy: Never
  containers:
  - {name: run, image: stasis/stasis-agent:v0.1.0, command: [/stasis-agent, no-such-verb]}
EOF
wait_jp test pod ok .status.phase Succeeded 20 >/dev/null || fail "ok pod not Succeeded"
wait_jp test pod bad .status.phase Failed 20 >/dev/null || fail "bad pod not Failed"
[ "$(k -n test get pod ok -o jsonpath='{.status.containerStatuses[0].state.terminated.exitCode}')" = 0 ] ||
	fail "ok exit code"
[ "$(k -n test get pod bad -o jsonpath='{.status.containerStatuses[0].state.terminated.exitCode}')" = 2 ] ||
	fail "bad exit code"
grep -q freeze "$work/root/logs/test/ok/run.log" || fail "ok log lacks the help text"
grep -q 'no-such-verb' "$work/root/logs/test/bad/run.log" || fail "bad log lacks the error"

echo "== read-only mounts; a read-write mount of a read-only-mounted claim is refused"
k apply -f - >/dev/null <<'EOF' || fail "reader pod"
apiVersion: v1
kind: Pod
metadata: {name: reader, namespace: test}
spec:
  containers:
  - name: r
    image: busybox
    volumeMounts: [{name: d, mountPath: /d, readOnly: true}]
  volumes:
  - {name: d, persistentVolumeClaim: {claimName: tiny, readOnly: true}}
EOF
wait_jp test pod reader .status.phase Running 20 >/dev/null || fail "reader not Running"
k apply -f - >/dev/null <<'EOF' || fail "writer pod"
apiVersion: v1
kind: Pod
metadata: {name: writer, namespace: test}
spec:
  containers:
  - name: w
    image: busybox
    volumeMounts: [{name: d, mountPath: /d}]
  volumes:
  - {name: d, persistentVolumeClaim: {claimName: tiny}}
EOF
tiny=$(vol_field test/tiny mount)
findmnt -n -o OPTIONS "$tiny" | grep -q '^ro' || fail "read-only claim mounted $(findmnt -n -o OPTIONS "$tiny")"
wait_jp test pod writer .status.reason FailedMount 20 >/dev/null || fail "writer has no FailedMount"
k -n test get pod writer -o jsonpath='{.status.message}' | grep -q 'read-only' ||
	fail "writer message: $(k -n test get pod writer -o jsonpath='{.status.message}')"

echo "== deleting a pod stops its processes and unmounts its volumes"
k -n test delete pod agent >/dev/null
i=0
while kill -0 "$apid" 2>/dev/null && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
kill -0 "$apid" 2>/dev/null && fail "agent process survived its pod"
sleep 0.5
grep -q " $aroot/" /proc/mounts && fail "agent container mounts left under $aroot"
[ -e "$aroot" ] && fail "agent container root $aroot left"
grep -q "$work/root/pods/test/agent" /proc/mounts && fail "agent pod mounts left"

echo "== deleting a claim deletes its PV and image (after its pods)"
H release test r1 || fail "release r1"
img=$(vol_field test/r1 image)
r1pv=$(k -n test get pvc r1 -o jsonpath='{.spec.volumeName}')
k -n test delete pvc r1 >/dev/null
i=0
while { [ -f "$img" ] || k get pv "$r1pv" >/dev/null 2>&1; } && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
[ -f "$img" ] && fail "image of a deleted claim left"
k get pv "$r1pv" >/dev/null 2>&1 && fail "PV of a deleted claim left"
grep -q " $r1 " /proc/mounts && fail "deleted claim still mounted"

echo "== Deployments and StatefulSets get pods (and claims from templates)"
k apply -f - >/dev/null <<'EOF' || fail "workloads"
apiVersion: apps/v1
kind: Deployment
metadata: {name: site, namespace: test}
spec:
  replicas: 1
  selector: {matchLabels: {app: site}}
  template:
    metadata: {labels: {app: site}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        volumeMounts: [{name: html, mountPath: /usr/share/nginx/html}]
      volumes:
      - {name: html, persistentVolumeClaim: {claimName: web}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: test}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: postgres
        image: postgres:15
        volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 64Mi}}
EOF
wait_jp test deploy site .status.readyReplicas 1 20 >/dev/null || fail "deployment not ready"
wait_jp test sts db .status.readyReplicas 2 30 >/dev/null || fail "statefulset not ready"
[ "$(k -n test get pvc data-db-1 -o jsonpath='{.status.phase}')" = Bound ] || fail "data-db-1"
[ "$(k -n test get pod db-1 -o jsonpath='{.spec.volumes[0].persistentVolumeClaim.claimName}')" = data-db-1 ] ||
	fail "db-1 does not mount data-db-1"
old_pod=$(k -n test get pod -l app=site -o jsonpath='{.items[0].metadata.name}')
k -n test delete pod "$old_pod" >/dev/null
new_pod=''
i=0
while [ $i -lt 100 ]; do
	new_pod=$(k -n test get pod -l app=site -o jsonpath='{.items[?(@.status.phase=="Running")].metadata.name}')
	[ -n "$new_pod" ] && [ "$new_pod" != "$old_pod" ] && break
	sleep 0.2
	i=$((i + 1))
done
if [ -z "$new_pod" ] || [ "$new_pod" = "$old_pod" ]; then
	fail "deleted deployment pod not replaced"
fi
k -n test delete sts db >/dev/null
i=0
while k -n test get pod db-0 >/dev/null 2>&1 && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
k -n test get pod db-0 >/dev/null 2>&1 && fail "statefulset pods left after its deletion"
[ "$(k -n test get pvc data-db-0 -o jsonpath='{.status.phase}')" = Bound ] ||
	fail "statefulset claims must stay"

echo "== a namespace deleted and re-created at once gets new volumes, the old ones go"
ns_objs() {
	cat <<'EOF'
apiVersion: v1
kind: Namespace
metadata: {name: again}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: vol, namespace: again}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 40Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: again}
spec:
  containers:
  - {name: c, image: busybox, volumeMounts: [{name: v, mountPath: /v}]}
  volumes:
  - {name: v, persistentVolumeClaim: {claimName: vol}}
EOF
}
ns_objs | k apply -f - >/dev/null || fail "namespace again"
wait_jp again pod p .status.phase Running 20 >/dev/null || fail "pod again/p not Running"
d1=$(hpath again vol) || fail "path again/vol"
img1=$(vol_field again/vol image)
echo old >"$d1/f"
k delete namespace again >/dev/null || fail "delete namespace again"
ns_objs | k apply -f - >/dev/null || fail "namespace again re-created"
wait_jp again pod p .status.phase Running 20 >/dev/null || fail "re-created pod not Running"
d2=$(hpath again vol) || fail "path of the re-created claim"
[ "$d2" != "$d1" ] || fail "re-created claim shares the mount directory $d1"
[ ! -e "$d2/f" ] || fail "re-created claim has the old claim's data"
i=0
while { grep -q " $d1 " /proc/mounts || [ -f "$img1" ]; } && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
grep -q " $d1 " /proc/mounts && fail "old claim still mounted at $d1"
[ -f "$img1" ] && fail "old claim's image left"

echo "== SIGTERM leaves no mounts, loop devices or processes"
e2e_stop_harness
echo "PASS"
