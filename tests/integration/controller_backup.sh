#!/usr/bin/env bash
# `stasis server` on the Kubernetes API stand-in with a file:// storage
# location: the CRDs from manifests/crds, the reference scenario's objects
# (namespace test: nginx Deployment, 50Mi PVC bound to a PV, Service,
# ConfigMap; a custom resource and its CRD) created with kubectl, Backups
# created with kubectl. Checks: `kubectl get backups` shows Completed; the
# tarball, read back with the system tar, matches the API entry by entry;
# namespace, resource and label filters proven by what is in and what is
# not; a default storage location written into spec; a bad ttl and a missing
# location fail validation; a type that cannot be listed makes the backup
# PartiallyFailed; a storage location that cannot be written is Unavailable
# with the reason; the controller killed (-9) mid-backup and restarted marks
# that backup Failed with the reason and runs the next one; deletion removes
# the objects and the Backup; SIGTERM releases the Lease.
set -euo pipefail
STASIS_ROOT=${STASIS_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$(dirname "$0")/controller_common.inc"

ctl_require

ctl_workdir st-ctl

start_standin
store=$work/store
file_bsl default "$store" true

k create -f - >/dev/null <<'EOF' || fail "scenario objects"
apiVersion: v1
kind: Namespace
metadata: {name: test, labels: {purpose: reference}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-nginx-html}
spec:
  capacity: {storage: 50Mi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /srv/nginx-html}
  claimRef: {namespace: test, name: nginx-html}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-unrelated}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /srv/unrelated}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: nginx-html, namespace: test, labels: {app: nginx}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 50Mi}}
  volumeName: pv-nginx-html
---
apiVersion: v1
kind: ConfigMap
metadata: {name: nginx-index, namespace: test, labels: {app: nginx}}
data: {index.html: "hello world 001"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unlabelled, namespace: test}
data: {k: v}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx, namespace: test, labels: {app: nginx}}
spec:
  replicas: 1
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
        - name: nginx
          image: nginx:1.25
          volumeMounts: [{name: html, mountPath: /usr/share/nginx/html}]
      volumes: [{name: html, persistentVolumeClaim: {claimName: nginx-html}}]
---
apiVersion: v1
kind: Service
metadata: {name: nginx, namespace: test, labels: {app: nginx}}
spec:
  selector: {app: nginx}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: elsewhere, namespace: other, labels: {app: nginx}}
data: {k: v}
EOF
make_widget test 3

start_server "$work/server.log" --bsl-sync-period 2s
[ "$(wait_phase bsl default Available 20)" = Available ] || fail "default location not Available"

# --- the reference backup ---------------------------------------------------------------
make_backup nginx-backup-01 '{"includedNamespaces":["test"]}'
wait_phase backup nginx-backup-01 Completed 30 >/dev/null || fail "nginx-backup-01 not Completed"
k -n stasis get backups | grep -E "^nginx-backup-01 +Completed +0 +0 " >/dev/null ||
	fail "kubectl get backups does not show Completed: $(k -n stasis get backups)"
[ "$(jp backup nginx-backup-01 .spec.storageLocation)" = default ] ||
	fail "default storage location not recorded in spec"
[ "$(jp backup nginx-backup-01 .spec.ttl)" = 720h0m0s ] || fail "default ttl not recorded in spec"
exp=$(jp backup nginx-backup-01 .status.expiration)
start=$(jp backup nginx-backup-01 .status.startTimestamp)
[ $(($(date -d "$exp" +%s) - $(date -d "$start" +%s))) -eq $((720 * 3600)) ] ||
	fail "expiration $exp is not start $start + 720h"
for f in nginx-backup-01.tar.gz velero-backup.json nginx-backup-01-resource-list.json.gz \
	nginx-backup-01-logs.gz; do
	[ -s "$store/backups/nginx-backup-01/$f" ] || fail "missing $f in the store"
done
$PY "$STASIS_ROOT/tests/integration/controller_check.py" "$url" "$store" nginx-backup-01 \
	--must deployments.apps/test/nginx --must services/test/nginx \
	--must configmaps/test/nginx-index --must configmaps/test/unlabelled \
	--must persistentvolumeclaims/test/nginx-html --must namespaces/test \
	--must persistentvolumes/pv-nginx-html --must widgets.example.com/test/w1 \
	--must customresourcedefinitions.apiextensions.k8s.io/widgets.example.com \
	--mustnot configmaps/other/elsewhere --mustnot namespaces/other \
	--mustnot persistentvolumes/pv-unrelated --mustnot storageclasses.storage.k8s.io \
	|| fail "nginx-backup-01 content"
tar -xzOf "$store/backups/nginx-backup-01/nginx-backup-01.tar.gz" \
	resources/configmaps/v1-preferredversion/namespaces/test/nginx-index.json |
	grep -q '"hello world 001"' || fail "index.html content not in the preferred-version copy"
gzip -dc "$store/backups/nginx-backup-01/nginx-backup-01-resource-list.json.gz" |
	$PY -c 'import json,sys; d=json.load(sys.stdin); assert d["apps/v1/Deployment"]==["test/nginx"], d; assert "pv-nginx-html" in d["v1/PersistentVolume"], d' ||
	fail "resource list"
echo "reference backup: ok"

# --- filters ------------------------------------------------------------------------------
make_backup f-resources '{"includedNamespaces":["test"],"includedResources":["cm","deploy"]}'
make_backup f-exclude '{"includedNamespaces":["te*"],"excludedResources":["configmaps","pvc"]}'
make_backup f-selector '{"includedNamespaces":["*"],"excludedNamespaces":["stasis","kube-*"],"labelSelector":{"matchLabels":{"app":"nginx"}},"includeClusterResources":false}'
make_backup f-expr '{"includedNamespaces":["test","other"],"labelSelector":{"matchExpressions":[{"key":"app","operator":"DoesNotExist"}]}}'
make_backup f-nsexclude '{"excludedNamespaces":["test","stasis"]}'
make_backup f-cluster '{"includedNamespaces":["other"],"includeClusterResources":true}'
for b in f-resources f-exclude f-selector f-expr f-nsexclude f-cluster; do
	wait_phase backup $b Completed 30 >/dev/null || fail "$b not Completed ($(jp backup $b .status.phase))"
done
check() { $PY "$STASIS_ROOT/tests/integration/controller_check.py" "$url" "$store" "$@" || fail "$1"; }
check f-resources --only-types configmaps,deployments.apps,namespaces \
	--must configmaps/test/nginx-index --must deployments.apps/test/nginx --must namespaces/test \
	--mustnot services/test/nginx --mustnot persistentvolumes/pv-nginx-html
check f-exclude --must services/test/nginx --must deployments.apps/test/nginx \
	--mustnot configmaps/test/nginx-index --mustnot persistentvolumeclaims/test/nginx-html \
	--mustnot persistentvolumes/pv-nginx-html --mustnot configmaps/other/elsewhere
check f-selector --must configmaps/test/nginx-index --must configmaps/other/elsewhere \
	--must services/test/nginx --must namespaces/other \
	--mustnot configmaps/test/unlabelled --mustnot widgets.example.com/test/w1 \
	--mustnot persistentvolumes/pv-nginx-html --mustnot namespaces/stasis
check f-expr --must configmaps/test/unlabelled --must widgets.example.com/test/w1 \
	--mustnot configmaps/test/nginx-index --mustnot configmaps/other/elsewhere
check f-nsexclude --must configmaps/other/elsewhere --must namespaces/other \
	--must namespaces/default \
	--mustnot configmaps/test/nginx-index --mustnot namespaces/test --mustnot namespaces/stasis \
	--mustnot persistentvolumes/pv-unrelated
# Velero's rule: cluster-scoped objects all go along only when asked for, or when
# every namespace is in scope; otherwise only those the namespaced objects need.
check f-cluster --must configmaps/other/elsewhere --must persistentvolumes/pv-unrelated \
	--must persistentvolumes/pv-nginx-html --must namespaces/other \
	--must customresourcedefinitions.apiextensions.k8s.io/widgets.example.com \
	--mustnot namespaces/test --mustnot configmaps/test/nginx-index
echo "filters: ok"

# --- validation and partial failure -------------------------------------------------------
make_backup bad-ttl '{"includedNamespaces":["test"],"ttl":"forever"}'
wait_phase backup bad-ttl Failed 20 >/dev/null || fail "bad ttl not Failed"
jp backup bad-ttl '.status.validationErrors[0]' | grep -q "spec.ttl" || fail "bad ttl reason"
make_backup overlap '{"includedNamespaces":["test"],"excludedNamespaces":["test"]}'
wait_phase backup overlap Failed 20 >/dev/null || fail "overlapping namespace lists not Failed"
jp backup overlap '.status.validationErrors[0]' | grep -q 'both name "test"' || fail "overlap reason"
make_backup no-bsl '{"includedNamespaces":["test"],"storageLocation":"nowhere"}'
wait_phase backup no-bsl Failed 20 >/dev/null || fail "missing location not Failed"
jp backup no-bsl .status.failureReason | grep -q nowhere || fail "missing location reason"
# A resource name that does not resolve is a warning (as in Velero), not a failure.
make_backup unknown-res '{"includedNamespaces":["test"],"includedResources":["configmaps","nosuchthing"]}'
wait_phase backup unknown-res Completed 20 >/dev/null || fail "unknown resource name should only warn"
[ "$(jp backup unknown-res .status.warnings)" = 1 ] || fail "unknown resource name: no warning"
echo "validation: ok"

# --- storage location that cannot be reached or written -----------------------------------
port=$(free_port)
printf '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s3-creds","namespace":"stasis"},"stringData":{"cloud":"[default]\\naws_access_key_id = AKIDTEST\\naws_secret_access_key = secrettest\\n"}}\n' |
	k create -f - >/dev/null || fail "secret"
printf '{"apiVersion":"stasis.io/v1alpha1","kind":"BackupStorageLocation","metadata":{"name":"down","namespace":"stasis"},"spec":{"provider":"aws","objectStorage":{"bucket":"backups"},"config":{"region":"us-east-1","s3Url":"http://127.0.0.1:%s","s3ForcePathStyle":"true"},"credential":{"name":"s3-creds","key":"cloud"}}}\n' "$port" |
	k create -f - >/dev/null
mkdir -p "$work/ro"
chmod 0555 "$work/ro"
file_bsl readonly "$work/ro"
wait_phase bsl down Unavailable 20 >/dev/null || fail "unreachable location not Unavailable"
jp bsl down .status.message | grep -qiE "connect|refused" ||
	fail "unreachable location message: $(jp bsl down .status.message)"
if [ "$(id -u)" != 0 ]; then
	wait_phase bsl readonly Unavailable 20 >/dev/null || fail "read-only location not Unavailable"
fi
make_backup to-down '{"includedNamespaces":["test"],"storageLocation":"down"}'
wait_phase backup to-down Failed 60 >/dev/null || fail "backup to an unreachable location not Failed"
[ -n "$(jp backup to-down .status.failureReason)" ] || fail "no failure reason for to-down"
echo "unavailable location: ok ($(jp bsl down .status.message | cut -c1-100))"

# Deleting a backup whose location is down stays Deleting with the reason, and is
# retried (by the idle resync) once the location works again.
k -n stasis annotate backup to-down stasis.io/delete-requested=true >/dev/null
i=0
until jp backup to-down .status.failureReason | grep -q "deleting the backup's objects"; do
	[ $i -lt 600 ] || fail "to-down: no deletion failure reported ($(jp backup to-down .status.failureReason))"
	sleep 0.1
	i=$((i + 1))
done
[ "$(jp backup to-down .status.phase)" = Deleting ] || fail "to-down: phase $(jp backup to-down .status.phase)"
k -n stasis patch bsl down --type=merge \
	-p "{\"spec\":{\"provider\":\"file\",\"config\":{\"path\":\"$store\"},\"objectStorage\":null,\"credential\":null}}" >/dev/null
i=0
while k -n stasis get backup to-down >/dev/null 2>&1; do
	[ $i -lt 300 ] || fail "to-down: deletion not retried after the location came back"
	sleep 0.1
	i=$((i + 1))
done
echo "deletion retried: ok"

# --- kill -9 mid-backup, restart -----------------------------------------------------------
stop_pid "$server" 10
wait "$server" 2>/dev/null || true
server=
# A slow client (2 requests/s) keeps the backup InProgress long enough to kill it.
start_server "$work/server2.log" --client-qps 2 --client-burst 1
make_backup killed '{"includedNamespaces":["test"]}'
wait_phase backup killed InProgress 30 >/dev/null || fail "killed: never InProgress"
kill -9 "$server"
wait "$server" 2>/dev/null || true
server=
[ "$(jp backup killed .status.phase)" = InProgress ] || fail "killed backup finished before the kill"
start_server "$work/server3.log"
wait_phase backup killed Failed 30 >/dev/null || fail "orphaned backup not marked Failed"
[ "$(jp backup killed .status.failureReason)" = "controller restarted while the backup was in progress" ] ||
	fail "orphan reason: $(jp backup killed .status.failureReason)"
make_backup after-restart '{"includedNamespaces":["test"]}'
wait_phase backup after-restart Completed 30 >/dev/null || fail "backup after restart"
check after-restart --must deployments.apps/test/nginx
echo "restart: ok"

# --- deletion ------------------------------------------------------------------------------
k -n stasis annotate backup f-resources stasis.io/delete-requested=true >/dev/null
i=0
while k -n stasis get backup f-resources >/dev/null 2>&1 && [ $i -lt 200 ]; do
	sleep 0.1
	i=$((i + 1))
done
k -n stasis get backup f-resources >/dev/null 2>&1 && fail "deleted backup still exists"
[ ! -e "$store/backups/f-resources" ] || [ -z "$(ls -A "$store/backups/f-resources")" ] ||
	fail "objects of the deleted backup remain: $(ls "$store/backups/f-resources")"
[ -s "$store/backups/nginx-backup-01/nginx-backup-01.tar.gz" ] || fail "deletion went too far"
echo "deletion: ok"

# --- SIGTERM releases the Lease --------------------------------------------------------------
kill -TERM "$server"
wait "$server" || fail "controller exit status $? after SIGTERM"
server=
[ -z "$(k -n stasis get lease stasis-controller -o 'jsonpath={.spec.holderIdentity}')" ] ||
	fail "lease not released"
grep -q "released lease" "$work/server3.log" || fail "no release logged"
echo "shutdown: ok"
echo "controller_backup: ok"
