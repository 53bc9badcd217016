#!/usr/bin/env bash
# The restore engine on the Kubernetes API stand-in with a file:// location:
# namespace test (a claim bound to a retained PV, one bound to a
# provisioned PV (reclaim policy Delete), a claim whose volume the test mover
# fails, ConfigMaps, a Secret, a NodePort Service, a Deployment with the
# ReplicaSet and Pod it controls, a Deployment mounting the failing claim, a
# Pod with a nodeName, a CronJob with the Job it controls, a custom resource
# and its CRD) is backed up by `stasis server`; the namespace, the PV and the
# CRD are deleted; then restore_test's "restore_engine" group runs
# st_restore_run (namespace mapping, PV claimRef, controller-owned children
# skipped, volumes before workloads, existing-object policies, filters,
# storage-class and image mappings from the spec and a Velero ConfigMap, a
# restore stopped half-way,
# unknown backup, a backupName with "/..", missing mapping ConfigMap,
# schedule without backups). Last
# the CLI reads what the engine wrote: `stasis restore get|describe
# --details|logs`, and `restore create` with its errors (unknown backup, bad
# mapping text) and a Restore object as Velero's flags build it; then the
# controller, started again, runs that Restore and one created with --wait.
set -euo pipefail
STASIS_ROOT=${STASIS_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$(dirname "$0")/controller_common.inc"

ctl_require
TESTBIN=$BIN/../tests/restore_test
[ -x "$TESTBIN" ] || fail "$TESTBIN not built"

ctl_workdir st-restore

start_standin
store=$work/store
file_bsl default "$store" true

k create -f - >/dev/null <<'EOF' || fail "scenario objects"
apiVersion: v1
kind: Namespace
metadata: {name: test, labels: {purpose: restore}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-data}
spec:
  capacity: {storage: 50Mi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /srv/data}
  claimRef: {namespace: test, name: data}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: test}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 50Mi}}
  volumeName: pv-data
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-dyn}
spec:
  capacity: {storage: 20Mi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Delete
  storageClassName: fast
  csi: {driver: csi.example.com, volumeHandle: vol-123}
  claimRef: {namespace: test, name: dyn}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: dyn, namespace: test}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: fast
  resources: {requests: {storage: 20Mi}}
  volumeName: pv-dyn
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: lost, namespace: test}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Mi}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: test}
data: {k: v}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: front-page, namespace: test, labels: {tier: front}}
data: {index.html: "hello world 001"}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: test}
type: Opaque
data: {password: cDQ1NQ==}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: test, labels: {tier: front}}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: test}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: nginx, image: nginx:1.25}]
      volumes: [{name: html, persistentVolumeClaim: {claimName: data}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken, namespace: test}
spec:
  replicas: 1
  selector: {matchLabels: {app: broken}}
  template:
    metadata: {labels: {app: broken}}
    spec:
      containers: [{name: c, image: busybox}]
      volumes: [{name: d, persistentVolumeClaim: {claimName: lost}}]
---
apiVersion: v1
kind: Pod
metadata: {name: solo, namespace: test}
spec:
  nodeName: node-1
  containers: [{name: c, image: busybox}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: test}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: c, image: busybox}]
EOF
make_widget test large

# The children a controller would have made, owned through the owners' uids.
dep_uid=$(k -n test get deployment web -o 'jsonpath={.metadata.uid}')
cj_uid=$(k -n test get cronjob nightly -o 'jsonpath={.metadata.uid}')
k create -f - >/dev/null <<EOF || fail "owned objects"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-6f9
  namespace: test
  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: "$dep_uid", controller: true}]
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: nginx, image: nginx:1.25}]}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: nightly-1
  namespace: test
  ownerReferences: [{apiVersion: batch/v1, kind: CronJob, name: nightly, uid: "$cj_uid", controller: true}]
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
EOF
rs_uid=$(k -n test get replicaset web-6f9 -o 'jsonpath={.metadata.uid}')
k create -f - >/dev/null <<EOF || fail "owned pod"
apiVersion: v1
kind: Pod
metadata:
  name: web-6f9-x1
  namespace: test
  labels: {app: web}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-6f9, uid: "$rs_uid", controller: true}]
spec:
  nodeName: node-1
  containers: [{name: nginx, image: nginx:1.25}]
EOF

start_server "$work/server.log" --bsl-sync-period 2s
wait_phase bsl default Available 20 >/dev/null || fail "default location not Available"
make_backup b1 '{"includedNamespaces":["test"]}'
wait_phase backup b1 Completed 60 >/dev/null || fail "backup b1 not Completed"
entries=$(tar -tzf "$store/backups/b1/b1.tar.gz")
grep -qx 'resources/replicasets.apps/v1-preferredversion/namespaces/test/web-6f9.json' <<<"$entries" ||
	fail "the backup lacks the ReplicaSet"
stop_pid "$server" 10
server=

# The disaster: the namespace, its volume and the CRD are gone.
k delete namespace test --wait=true >/dev/null || fail "delete namespace test"
k delete pv pv-data pv-dyn >/dev/null || fail "delete pvs"
k delete crd widgets.example.com >/dev/null || fail "delete crd"
for i in $(seq 50); do
	k get namespace test >/dev/null 2>&1 || break
	sleep 0.1
done

echo "--- st_restore_run against the stand-in"
STASIS_RESTORE_KUBECONFIG=$work/kubeconfig STASIS_RESTORE_STORE=file://$store \
	STASIS_RESTORE_BACKUP=b1 "$TESTBIN" >"$work/engine.log" 2>&1 ||
	{
		cat "$work/engine.log" >&2
		fail "restore_engine tests failed"
	}
grep -E '^\[  PASSED  \] 6 test' "$work/engine.log" >/dev/null || {
	cat "$work/engine.log" >&2
	fail "restore_engine did not run its 6 tests"
}
sed -n 's/^/engine: /p' "$work/engine.log" | grep -E 'PASSED|FAILED|OK' || true

echo "--- the CLI"
S() { "$STASIS" --log-level error "$@" --kubeconfig "$work/kubeconfig" -n stasis; }
out=$(S restore get) || fail "restore get"
echo "$out" | grep -E '^NAME +BACKUP +STATUS +STARTED +COMPLETED +ERRORS +WARNINGS +CREATED +SELECTOR$' >/dev/null ||
	fail "restore get header: $out"
echo "$out" | grep -E '^r-map +b1 +PartiallyFailed \(2 errors\) .* 2 +0 +' >/dev/null ||
	fail "restore get r-map row: $out"
echo "$out" | grep -E '^r-nosuch +nosuch +Failed ' >/dev/null || fail "restore get r-nosuch: $out"
[ "$(S restore get r-update -o json | $PY -c 'import json,sys; d=json.load(sys.stdin); print(d["kind"], d["status"]["phase"], d["spec"]["existingResourcePolicy"])')" = "Restore Completed update" ] ||
	fail "restore get -o json"
out=$(S restore describe r-map --details) || fail "restore describe"
for want in 'Phase:  PartiallyFailed (2 errors)' 'Backup:  b1' 'Namespace mappings:  test=test2' \
	'Errors:' 'volume test2/lost: test mover could not fill it' \
	'deployments.apps test2/broken: not created: volume test2/lost failed'; do
	grep -qF -- "$want" <<<"$out" || fail "restore describe lacks '$want': $out"
done
out=$(S restore describe r-nosuch) || fail "restore describe r-nosuch"
grep -q 'Failure reason:  reading the backup: backup nosuch has no backups/nosuch/nosuch.tar.gz' <<<"$out" ||
	fail "describe r-nosuch: $out"
logs=$(S restore logs r-map) || fail "restore logs"
grep -qF 'level=info msg="namespaces test2: created" restore=stasis/r-map' <<<"$logs" ||
	fail "restore logs: $(head -5 <<<"$logs")"
grep -q 'level=warning msg="restore PartiallyFailed: ' <<<"$logs" || fail "restore logs lacks the verdict"

# create: clear errors first, then a Restore the controller would run.
if S restore create rx --from-backup nosuch 2>"$work/err"; then fail "restore from an unknown backup accepted"; fi
grep -q "backup nosuch not found in namespace stasis" "$work/err" || fail "unknown backup message: $(cat "$work/err")"
set +e
S restore create rx --from-backup b1 --namespace-mappings test 2>"$work/err"
rc=$?
set -e
[ $rc -eq 2 ] || fail "bad mapping exit $rc"
grep -q "'test' is not old:new" "$work/err" || fail "bad mapping message: $(cat "$work/err")"
if S restore create rx --from-schedule daily 2>"$work/err"; then fail "schedule without backups accepted"; fi
grep -q "schedule daily has no Completed backup" "$work/err" || fail "schedule message: $(cat "$work/err")"
out=$(S restore create rx --from-backup b1 --namespace-mappings test:test9 --include-namespaces test \
	--existing-resource-policy update --preserve-nodeports) || fail "restore create"
grep -q 'Restore request "rx" submitted successfully.' <<<"$out" || fail "create output: $out"
[ "$(jp restore rx '.spec.namespaceMapping.test')" = test9 ] || fail "namespaceMapping not stored"
[ "$(jp restore rx '.spec.backupName')" = b1 ] || fail "backupName not stored"
[ "$(jp restore rx '.spec.preserveNodePorts')" = true ] || fail "preserveNodePorts not stored"
if S restore logs rx 2>"$work/err"; then fail "logs of a restore that has not run"; fi
grep -q "no logs for restore rx in file://$store (restores/rx/restore-rx-logs.gz): not written yet" "$work/err" ||
	fail "logs of a restore that has not run: $(cat "$work/err")"
S restore --help | grep -q 'create \[NAME\]' || fail "restore --help"

echo "--- the controller runs Restores"
start_server "$work/server2.log" --bsl-sync-period 2s
# rx was created above while no controller ran: it is picked up now.
wait_phase restore rx Completed 60 >/dev/null || fail "restore rx not Completed"
k -n test9 get deployment web >/dev/null 2>&1 || fail "rx did not restore into test9"
out=$(S restore create r-ctl --from-backup b1 --namespace-mappings test:test5 --wait) ||
	fail "restore create --wait: $out"
grep -q '^Restore r-ctl Completed: 15/15 items restored$' <<<"$out" || fail "--wait progress: $out"
grep -q 'Restore completed with status: Completed.' <<<"$out" || fail "--wait verdict: $out"
[ "$(k -n test5 get configmap settings -o 'jsonpath={.metadata.labels.stasis\.io/restore-name}')" = r-ctl ] ||
	fail "r-ctl did not restore the ConfigMap into test5"
S restore logs r-ctl | grep -q 'msg="persistentvolumes pv-data: already exists and differs' ||
	fail "r-ctl log lacks the existing PV"
sed -n '1,12s/^/logs: /p' <<<"$logs"
S restore describe r-map --details | sed 's/^/describe: /'
echo "restore_engine: all checks passed"
