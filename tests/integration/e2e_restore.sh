#!/bin/bash
# Restores end to end, on the same installation as e2e_backup.sh: the
# reference scenario full circle (namespace deleted, restored, page content
# read from the restored volume), a restore into a mapped namespace next to
# the original, storage-class and registry mappings, the existing-resource
# policy, the restore webhook on a Velero-labelled object, and a corrupted
# chunk that fails its volume (and keeps its workload from starting).
set -euo pipefail
. "$STASIS_ROOT/tests/integration/e2e_stasis.inc"

e2e_require
work=$(mktemp -d /tmp/st-e2e-restore.XXXXXX)
cleanup() {
	e2e_cleanup
	[ -n "${E2E_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

e2e_start
S() { "$STASIS" "$@" --kubeconfig "$work/kubeconfig" -n stasis; }

k create -f - >/dev/null <<'EOF' || fail "storage class fast"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: fast}
provisioner: stasis.test.csi
EOF

# --- the reference scenario --------------------------------------------------------------------------
k create namespace test >/dev/null
agent_tls_secret test
k create -f - >/dev/null <<'EOF' || fail "nginx objects"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: html, namespace: test}
spec:
  storageClassName: standard
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 50Mi}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: site, namespace: test}
data: {version: "1"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx, namespace: test, labels: {app: nginx}}
spec:
  replicas: 1
  selector: {matchLabels: {app: nginx}}
  template:
    metadata:
      labels: {app: nginx}
      annotations: {stasis.io/freeze: "true"}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        volumeMounts: [{name: html, mountPath: /usr/share/nginx/html}]
      volumes:
      - name: html
        persistentVolumeClaim: {claimName: html}
EOF
nginx_pod() { # NS: name of the Deployment's pod once it runs
	local i=0 p
	while [ $i -lt 600 ]; do
		p=$(k -n "$1" get pods -l app=nginx -o 'jsonpath={.items[0].metadata.name}' 2>/dev/null || true)
		if [ -n "$p" ] && [ "$(k -n "$1" get pod "$p" -o 'jsonpath={.status.phase}')" = Running ]; then
			echo "$p"
			return 0
		fi
		sleep 0.1
		i=$((i + 1))
	done
	fail "no running nginx pod in $1"
}
pod=$(nginx_pod test)
wait_running test "$pod" 60
printf 'hello world 001\n' >"$(volume_path test html)/index.html"
sync
S backup create nginx-backup-01 --include-namespaces test --wait >"$work/b1.out" 2>&1 ||
	fail "backup: $(cat "$work/b1.out")"
[ "$(bjson nginx-backup-01 'b["status"]["volumes"][0]["phase"]')" = Completed ] ||
	fail "volume not backed up: $(bjson nginx-backup-01 'b["status"]')"
$PY "$STASIS_ROOT/tests/e2e/harness.py" --kubeconfig "$work/kubeconfig" --root "$work/hroot" \
	release test html >/dev/null || true
k delete namespace test --wait=true >/dev/null || fail "delete namespace test"
i=0
while k get namespace test >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 300 ] || fail "namespace test not gone"
	sleep 0.1
done

S restore create r1 --from-backup nginx-backup-01 --wait >"$work/r1.out" 2>&1 ||
	fail "restore r1: $(cat "$work/r1.out"; S restore describe r1 --details)"
pod=$(nginx_pod test)
wait_running test "$pod" 60
[ "$(cat "$(volume_path test html)/index.html")" = "hello world 001" ] ||
	fail "restored page: '$(cat "$(volume_path test html)/index.html")'"
[ -n "$(k -n test get pod "$pod" -o 'jsonpath={.metadata.annotations.stasis\.io/injected}')" ] ||
	fail "restored pod was not injected"
[ -z "$(k get pods,secrets -A -l stasis.io/temporary=true -o name)" ] ||
	fail "restore movers left behind: $(k get pods,secrets -A -l stasis.io/temporary=true -o name)"

# --- into a mapped namespace next to the original, with storage-class and registry mappings -----------
S restore create r2 --from-backup nginx-backup-01 --namespace-mappings test:test-copy \
	--storage-class-mappings standard:fast --image-registry-mappings docker.io:registry.local \
	--wait >"$work/r2.out" 2>&1 || fail "restore r2: $(cat "$work/r2.out")"
pod2=$(nginx_pod test-copy)
[ "$(cat "$(volume_path test-copy html)/index.html")" = "hello world 001" ] || fail "mapped page"
[ "$(k -n test-copy get pvc html -o 'jsonpath={.spec.storageClassName}')" = fast ] ||
	fail "storage class not mapped: $(k -n test-copy get pvc html -o json)"
img=$(k -n test-copy get deployment nginx -o 'jsonpath={.spec.template.spec.containers[0].image}')
[ "$img" = registry.local/library/nginx:1.25 ] || fail "image not mapped: $img"
[ "$(k -n test get deployment nginx -o 'jsonpath={.spec.template.spec.containers[0].image}')" = nginx:1.25 ] ||
	fail "the original namespace changed"
# The restore labels the objects it creates; the pod comes from the restored Deployment's template.
[ "$(k -n test-copy get deployment nginx -o 'jsonpath={.metadata.labels.stasis\.io/restore-name}')" = r2 ] ||
	fail "restored Deployment not labelled: $(k -n test-copy get deployment nginx -o 'jsonpath={.metadata.labels}')"
[ -z "$(k -n test-copy get pod "$pod2" -o 'jsonpath={.metadata.labels.stasis\.io/restore-name}')" ] ||
	fail "pod $pod2 was created by the restore, not by its Deployment"

# --- existing objects: left alone, then updated ---------------------------------------------------------
k -n test patch configmap site --type merge -p '{"data":{"version":"2"}}' >/dev/null
S restore create r3 --from-backup nginx-backup-01 --include-resources configmaps --wait \
	>"$work/r3.out" 2>&1 || fail "restore r3: $(cat "$work/r3.out")"
[ "$(k -n test get configmap site -o 'jsonpath={.data.version}')" = 2 ] || fail "policy none replaced it"
[ "$(jp restore r3 .status.warnings)" -ge 1 ] || fail "no warning for an existing object"
S restore create r4 --from-backup nginx-backup-01 --include-resources configmaps \
	--existing-resource-policy update --wait >"$work/r4.out" 2>&1 || fail "restore r4: $(cat "$work/r4.out")"
[ "$(k -n test get configmap site -o 'jsonpath={.data.version}')" = 1 ] || fail "policy update did not"

# --- the restore webhook on an object a Velero restore creates -------------------------------------------
k create namespace velero-made >/dev/null
k create -f - >/dev/null <<'EOF' || fail "velero-labelled objects"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: velero-made, labels: {velero.io/restore-name: nightly-1}}
spec:
  storageClassName: standard
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 40Mi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: plain, namespace: velero-made}
spec:
  storageClassName: standard
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 40Mi}}
EOF
[ "$(k -n velero-made get pvc data -o 'jsonpath={.spec.storageClassName}')" = fast ] ||
	fail "the restore webhook did not remap a Velero-labelled claim"
[ "$(k -n velero-made get pvc plain -o 'jsonpath={.spec.storageClassName}')" = standard ] ||
	fail "the restore webhook remapped an unlabelled claim"

# --- a backup that keeps its VolumeSnapshot (restored later, after the repository is damaged) ----------
S backup create keep-01 --include-namespaces test --keep-volume-snapshots --wait >"$work/k1.out" 2>&1 ||
	fail "keep-01: $(cat "$work/k1.out")"
kept=$(bjson keep-01 'b["status"]["volumes"][0].get("volumeSnapshot", "")')
[ -n "$kept" ] && k -n test get volumesnapshot "$kept" >/dev/null ||
	fail "keep-01 kept no VolumeSnapshot: $(bjson keep-01 'b["status"]["volumes"]')"

# --- a corrupted chunk fails its volume by name, and its workload does not start ------------------------
$PY - "$work/store/repository" <<'EOF' || fail "no pack to corrupt"
import os, sys
packs = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(sys.argv[1], "data")) for f in fs]
for p in packs:
    with open(p, "r+b") as f:
        f.seek(os.path.getsize(p) // 3)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
sys.exit(0 if packs else 1)
EOF
S restore create r5 --from-backup nginx-backup-01 --namespace-mappings test:test-bad --wait \
	>"$work/r5.out" 2>&1 && fail "restore r5 completed from a corrupted repository"
[ "$(jp restore r5 .status.phase)" = PartiallyFailed ] || fail "r5 phase: $(jp restore r5 .status.phase)"
S restore describe r5 --details >"$work/r5.txt" 2>&1 || true
grep "test-bad/html" "$work/r5.txt" | grep -qiE "corrupt|damaged" ||
	fail "r5 does not name the failed volume: $(cat "$work/r5.txt")"
[ -z "$(k -n test-bad get deployment nginx -o name 2>/dev/null)" ] ||
	fail "the workload of a failed volume was created"

# --- the kept VolumeSnapshot restores the claim in place, with no data read from the repository ----------
k -n test delete deployment nginx >/dev/null
k -n test delete pvc html >/dev/null
i=0
while k -n test get pvc html >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 300 ] || fail "claim test/html not gone"
	sleep 0.1
done
S restore create r6 --from-backup keep-01 --include-namespaces test --wait >"$work/r6.out" 2>&1 ||
	fail "restore r6 from a kept snapshot: $(cat "$work/r6.out"; S restore describe r6 --details)"
[ "$(k -n test get pvc html -o 'jsonpath={.spec.dataSource.name}')" = "$kept" ] ||
	fail "claim not created from $kept: $(k -n test get pvc html -o json)"
pod=$(nginx_pod test)
[ "$(cat "$(volume_path test html)/index.html")" = "hello world 001" ] || fail "page from the kept snapshot"
echo "e2e restore: full circle, mapped namespace, storage class and registry, existing objects, webhook, corrupted chunk, kept snapshot: ok"
