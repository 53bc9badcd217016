#!/usr/bin/env bash
# The stasis CLI against the Kubernetes API stand-in over HTTPS with a bearer
# token, checked with the real kubectl and python3-yaml as independent
# readers: install --dry-run (-o yaml and -o json: every expected object,
# nothing written), install (then again: idempotent, and a changed flag
# replaces the old value), backup-location create/get, backup create/get/
# describe in every output format, --wait following status updates made
# with kubectl --subresource=status (Completed -> exit 0, PartiallyFailed ->
# exit 1 with the reason), backup logs from a file location, backup delete
# (annotation, refusal without --confirm, --wait), the error messages for a
# missing kubeconfig and an unreachable server, and version. When the
# controller (`stasis server`) is built in, the reference backup runs for
# real: backup create nginx-backup-01 --include-namespaces test --wait.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

stasis=$STASIS_BIN/stasis
if ! command -v kubectl >/dev/null 2>&1; then
	echo "kubectl not installed; the CLI's results are read back with the real kubectl"
	exit 77
fi
if [ ! -d "$STASIS_ROOT/manifests/crds" ]; then
	echo "manifests/crds not present; stasis install needs the CRDs"
	exit 77
fi

work=$(mktemp -d /tmp/st-cli-XXXXXX)
standin='' waiter='' server=''
cleanup() {
	stop_pid "$waiter"
	stop_pid "$server"
	stop_pid "$standin"
	rm -rf "$work"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	for f in "$work"/*.err; do
		[ -s "$f" ] && sed "s|^|$(basename "$f"): |" "$f" | tail -20 >&2
	done
	exit 1
}

make_certs "$work" tls
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
$PY "$STASIS_ROOT/tests/k8s/standin.py" --port 0 --tls-cert "$work/tls.crt" \
	--tls-key "$work/tls.key" --token "$token" --kubeconfig-ca "$work/ca.crt" \
	--kubeconfig-out "$work/kubeconfig" --no-stasis-types >"$work/standin.out" \
	2>"$work/standin.err" &
standin=$!
wait_for_log "$work/standin.out" "^standin listening on " 15 || fail "stand-in did not start"
url=$(sed -n 's/^standin listening on //p' "$work/standin.out")

export KUBECONFIG=$work/kubeconfig KUBECACHEDIR=$work/kcache HOME=$work/home
mkdir -p "$HOME"
unset STASIS_NAMESPACE
k() { kubectl --request-timeout=20s "$@"; }
st() { timeout 60 "$stasis" "$@"; }
requests() { curl -s --cacert "$work/ca.crt" -H "Authorization: Bearer $token" "$url/standin/requests"; }

printf '[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = wJalrXUtnFEMI\n' \
	>"$work/creds"
install_flags=(--provider aws --bucket velero --prefix cluster1
	--backup-location-config 'region=minio,s3Url=http://127.0.0.1:9,s3ForcePathStyle=true'
	--secret-file "$work/creds" --image reg.example/stasis:t1)

# ---- install --dry-run ---------------------------------------------------------------------
tmp_before=$(find /tmp -maxdepth 1 -name 'stasis-install-*' | sort)
before=$(requests | $PY -c 'import json,sys; print(sum(v for k,v in json.load(sys.stdin)["byVerb"].items() if k in ("create","update","patch","delete")))')
st install --dry-run -o yaml "${install_flags[@]}" >"$work/dry.yaml" 2>"$work/dry.err" ||
	fail "install --dry-run -o yaml"
st install --dry-run -o json "${install_flags[@]}" >"$work/dry.json" 2>>"$work/dry.err" ||
	fail "install --dry-run -o json"
$PY - "$work/dry.yaml" "$work/dry.json" "$work/creds" <<'EOF' || fail "dry-run objects"
import base64, json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]
items = json.load(open(sys.argv[2]))
assert items["kind"] == "List", items["kind"]
assert [(d["kind"], d["metadata"]["name"]) for d in docs] == \
    [(d["kind"], d["metadata"]["name"]) for d in items["items"]], "yaml and json differ"
by = {}
for d in docs:
    by.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
want = {
    "Namespace": {"stasis"},
    "CustomResourceDefinition": {"backups.stasis.io", "restores.stasis.io",
                                 "schedules.stasis.io", "backupstoragelocations.stasis.io"},
    "ServiceAccount": {"stasis-controller", "stasis-webhook", "stasis-agent"},
    "ClusterRole": {"stasis-controller-read", "stasis-controller-volumes"},
    "ClusterRoleBinding": {"stasis-controller-read-stasis", "stasis-controller-volumes-stasis"},
    "Role": {"stasis-controller"}, "RoleBinding": {"stasis-controller"},
    "Secret": {"stasis-webhook-tls", "stasis-controller-tls", "stasis-credentials"},
    "ConfigMap": {"stasis-webhook-config"}, "Service": {"stasis-webhook"},
    "Deployment": {"stasis-webhook", "stasis-controller"},
    "PodDisruptionBudget": {"stasis-webhook"},
    "MutatingWebhookConfiguration": {"stasis-webhook"},
    "BackupStorageLocation": {"default"},
}
for kind, names in want.items():
    got = set(by.get(kind, {}))
    assert got == names, "%s: %s, want %s" % (kind, sorted(got), sorted(names))
assert set(by) == set(want), "unexpected kinds %s" % (set(by) - set(want))
# Dependency order: namespace and CRDs first, the custom resource last.
kinds = [d["kind"] for d in docs]
assert kinds[0] == "Namespace" and kinds[1] == "CustomResourceDefinition", kinds[:2]
assert kinds[-1] == "BackupStorageLocation", kinds[-1]
assert kinds.index("ClusterRoleBinding") < kinds.index("Deployment")
# The webhook trusts the CA that signed its serving certificate.
ca = base64.b64decode(by["MutatingWebhookConfiguration"]["stasis-webhook"]["webhooks"][0]
                      ["clientConfig"]["caBundle"])
assert ca.startswith(b"-----BEGIN CERTIFICATE-----"), ca[:40]
assert base64.b64decode(by["Secret"]["stasis-webhook-tls"]["data"]["ca.crt"]) == ca
cred = base64.b64decode(by["Secret"]["stasis-credentials"]["data"]["cloud"]).decode()
assert cred == open(sys.argv[3]).read(), "credentials secret"
# Least privilege: the webhook and the agent have no roles; the controller
# writes only its own kinds cluster-wide.
for b in list(by["ClusterRoleBinding"].values()) + list(by["RoleBinding"].values()):
    for s in b["subjects"]:
        assert s["name"] == "stasis-controller", s
for r in by["ClusterRole"]["stasis-controller-read"]["rules"]:
    assert set(r["verbs"]) <= {"get", "list", "watch"}, r
writes = {(g, res) for r in by["ClusterRole"]["stasis-controller-volumes"]["rules"]
          for g in r["apiGroups"] for res in r["resources"]}
assert writes == {("snapshot.storage.k8s.io", "volumesnapshots"),
                  ("snapshot.storage.k8s.io", "volumesnapshotcontents"),
                  ("", "persistentvolumeclaims"), ("", "pods"), ("", "secrets"), ("", "events"),
                  ("*", "*")}, writes
# Restores create and update any kind, but the only deletions are of the
# controller's own temporary objects.
for r in by["ClusterRole"]["stasis-controller-volumes"]["rules"]:
    if "*" in r["resources"]:
        assert set(r["verbs"]) == {"create", "update", "patch"}, r
    elif "delete" in r["verbs"]:
        assert set(r["resources"]) <= {"volumesnapshots", "volumesnapshotcontents",
                                       "persistentvolumeclaims", "pods", "secrets"}, r
assert by["ServiceAccount"]["stasis-agent"]["automountServiceAccountToken"] is False
ctl = by["Deployment"]["stasis-controller"]["spec"]["template"]["spec"]
assert ctl["serviceAccountName"] == "stasis-controller"
assert ctl["containers"][0]["image"] == "reg.example/stasis:t1"
bsl = by["BackupStorageLocation"]["default"]["spec"]
assert bsl["provider"] == "aws" and bsl["default"] is True
assert bsl["objectStorage"] == {"bucket": "velero", "prefix": "cluster1"}, bsl
assert bsl["config"]["s3ForcePathStyle"] == "true" and bsl["config"]["region"] == "minio"
assert bsl["credential"] == {"name": "stasis-credentials", "key": "cloud"}
EOF
after=$(requests | $PY -c 'import json,sys; print(sum(v for k,v in json.load(sys.stdin)["byVerb"].items() if k in ("create","update","patch","delete")))')
[ "$before" = "$after" ] || fail "--dry-run wrote to the API ($before -> $after writes)"
[ ! -e "$HOME/.stasis" ] || fail "--dry-run left a certificate directory"
[ "$(find /tmp -maxdepth 1 -name 'stasis-install-*' | sort)" = "$tmp_before" ] ||
	fail "--dry-run left a temporary certificate directory in /tmp"

# ---- install, twice ------------------------------------------------------------------------
st backup get >/dev/null 2>"$work/noinstall.err" && fail "backup get before install succeeded"
grep -q "is stasis installed? (stasis install -n stasis)" "$work/noinstall.err" ||
	fail "no hint before install: $(cat "$work/noinstall.err")"
st install "${install_flags[@]}" >"$work/install1.out" 2>"$work/install1.err" ||
	fail "install: $(cat "$work/install1.out")"
grep -q "^BackupStorageLocation/default: created$" "$work/install1.out" || fail "install output"
[ "$(k get crd -o name | grep -c stasis.io)" = 4 ] || fail "CRDs not created"
k -n stasis get deploy stasis-controller stasis-webhook -o name >/dev/null || fail "deployments"
k get mutatingwebhookconfiguration stasis-webhook -o name >/dev/null || fail "webhook config"
[ "$(k -n stasis get bsl default -o jsonpath='{.spec.objectStorage.bucket}')" = velero ] ||
	fail "default location"
[ -s "$HOME/.stasis/stasis/certs/ca.key" ] || fail "CA not kept in the certificate directory"
ca1=$(sha256sum <"$HOME/.stasis/stasis/certs/ca.crt")
rv1=$(k -n stasis get deploy stasis-controller -o jsonpath='{.metadata.resourceVersion}')
st install "${install_flags[@]}" >"$work/install2.out" 2>"$work/install2.err" ||
	fail "second install: $(cat "$work/install2.err")"
grep -q "created" "$work/install2.out" && fail "second install created something: $(grep created "$work/install2.out")"
[ "$(grep -c ': configured$' "$work/install2.out")" -ge 20 ] || fail "second install output"
[ "$(sha256sum <"$HOME/.stasis/stasis/certs/ca.crt")" = "$ca1" ] || fail "CA replaced"
[ "$(k -n stasis get deploy stasis-controller -o jsonpath='{.metadata.resourceVersion}')" = "$rv1" ] ||
	fail "unchanged Deployment was rewritten"
grep -q "warning: the cluster's CA" "$work/install2.err" && fail "warned about an unchanged CA"
st install --certs-dir "$work/othercerts" >"$work/install-ca.out" 2>"$work/install-ca.err" ||
	fail "install with another CA"
grep -q "warning: the cluster's CA (secret stasis/stasis-webhook-tls) is not the one in $work/othercerts" \
	"$work/install-ca.err" || fail "no warning for a new CA: $(cat "$work/install-ca.err")"
st install "${install_flags[@]}" >/dev/null 2>&1 || fail "install back with the first CA"
# A changed flag replaces the value (no leftovers of a merge).
st install --use-default-storage >"$work/install3.out" 2>"$work/install3.err" ||
	fail "install --use-default-storage: $(cat "$work/install3.err")"
k -n stasis get bsl default -o json >"$work/bsl.json"
$PY - "$work/bsl.json" <<'EOF' || fail "re-install did not replace the location"
import json, sys
s = json.load(open(sys.argv[1]))["spec"]
assert s["provider"] == "file" and s["config"] == {"path": "/var/lib/stasis/backups"}, s
assert "bucket" not in s.get("objectStorage", {}) and "credential" not in s, s
EOF

# ---- backup-location ------------------------------------------------------------------------
mkdir -p "$work/store"
st backup-location create s3 --provider aws --bucket b1 --prefix p1 \
	--config region=us-east-1,s3Url=http://127.0.0.1:9 --credential stasis-credentials=cloud \
	>"$work/bsl.out" 2>&1 || fail "bsl create: $(cat "$work/bsl.out")"
st backup-location create local --provider file --config "path=$work/store" >/dev/null ||
	fail "bsl create file"
st backup-location create bad --provider aws >/dev/null 2>&1 && fail "aws without bucket accepted"
k -n stasis patch bsl s3 --subresource=status --type=merge \
	-p '{"status":{"phase":"Available","lastValidationTime":"'"$(date -u +%FT%TZ)"'"}}' >/dev/null
st backup-location get >"$work/bslget.out" || fail "bsl get"
head -1 "$work/bslget.out" | grep -Eq '^NAME +PROVIDER +BUCKET/PREFIX +PHASE +LAST VALIDATED +DEFAULT$' ||
	fail "bsl table header: $(head -1 "$work/bslget.out")"
grep -Eq '^s3 +aws +b1/p1 +Available +([0-9]+s ago|0s) *$' "$work/bslget.out" ||
	fail "bsl row: $(cat "$work/bslget.out")"
grep -Eq '^default +file +/var/lib/stasis/backups +Unknown +<none> +true$' "$work/bslget.out" ||
	fail "default row: $(cat "$work/bslget.out")"
st backup-location get s3 -o json | $PY -c '
import json,sys; o=json.load(sys.stdin)
assert o["kind"]=="BackupStorageLocation" and o["spec"]["credential"]["key"]=="cloud", o' ||
	fail "bsl get -o json"
st backup-location get -o yaml | $PY -c '
import yaml,sys; o=yaml.safe_load(sys.stdin)
assert sorted(i["metadata"]["name"] for i in o["items"]) == ["default","local","s3"], o' ||
	fail "bsl get -o yaml"

# ---- backup create / get / describe ---------------------------------------------------------
st backup create b-print --include-namespaces test -o yaml >"$work/print.yaml" || fail "create -o yaml"
k -n stasis get backup b-print >/dev/null 2>&1 && fail "create -o yaml created the backup"
st backup create b1 --include-namespaces test,db --exclude-resources events \
	--selector 'app=nginx,tier in (db,web)' --ttl 24h --storage-location local \
	--include-cluster-resources=false --snapshot-volumes --labels team=db >"$work/create.out" ||
	fail "backup create"
grep -q 'Backup request "b1" submitted successfully.' "$work/create.out" || fail "create output"
st backup create b1 >/dev/null 2>"$work/dup.err" && fail "duplicate backup accepted"
grep -q "already exists" "$work/dup.err" || fail "duplicate message: $(cat "$work/dup.err")"
k -n stasis get backup b1 -o json >"$work/b1.json"
$PY - "$work/b1.json" <<'EOF' || fail "Backup spec as created"
import json, sys
s = json.load(open(sys.argv[1]))["spec"]
assert s["includedNamespaces"] == ["test", "db"], s
assert s["excludedResources"] == ["events"], s
assert s["labelSelector"]["matchLabels"] == {"app": "nginx"}, s
assert s["labelSelector"]["matchExpressions"] == [
    {"key": "tier", "operator": "In", "values": ["db", "web"]}], s
assert s["ttl"] == "24h0m0s" and s["storageLocation"] == "local", s
assert s["includeClusterResources"] is False and s["snapshotVolumes"] is True, s
EOF
st backup get >"$work/get.out" || fail "backup get"
head -1 "$work/get.out" | grep -Eq '^NAME +STATUS +ERRORS +WARNINGS +CREATED +EXPIRES +STORAGE LOCATION +SELECTOR$' ||
	fail "backup table header: $(head -1 "$work/get.out")"
grep -Eq '^b1 +New +0 +0 +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} \+0000 UTC +n/a +local +app=nginx,tier in \(db,web\)$' \
	"$work/get.out" || fail "backup row: $(cat "$work/get.out")"
st backup get b1 -o json | $PY -c '
import json,sys; o=json.load(sys.stdin)
assert o["kind"]=="Backup" and o["metadata"]["name"]=="b1", o' || fail "get NAME -o json"
st backup get -o yaml | $PY -c '
import yaml,sys; o=yaml.safe_load(sys.stdin)
assert o["kind"]=="List" and [i["metadata"]["name"] for i in o["items"]]==["b1"], o' ||
	fail "get -o yaml"
st backup get -o json | $PY -c '
import json,sys; o=json.load(sys.stdin); assert o["kind"]=="List" and len(o["items"])==1' ||
	fail "get -o json"
st backup create b-other --labels team=web >/dev/null || fail "create b-other"
[ "$(st backup get -l team=db | awk 'NR > 1 {print $1}')" = b1 ] || fail "get -l team=db"
[ "$(st backup get --selector 'team in (db,web)' | awk 'NR > 1 {print $1}' | sort | tr '\n' ' ')" = "b-other b1 " ] ||
	fail "get --selector in"
[ "$(st backup get -l team=none | wc -l)" = 1 ] || fail "get -l with no match"
k -n stasis delete backup b-other >/dev/null
st backup get nope >/dev/null 2>"$work/nope.err" && fail "get of a missing backup succeeded"
grep -q "backup nope not found in namespace stasis" "$work/nope.err" || fail "not-found message"
st backup describe b1 >"$work/describe.out" || fail "describe"
for want in "Name:         b1" "Labels:       team=db" "Phase:  New" "  Included:  test,db" "  Excluded:        events" \
	"  Cluster-scoped:  excluded" "Label selector:  app=nginx,tier in (db,web)" \
	"Storage Location:  local" "TTL:  24h0m0s"; do
	grep -qxF "$want" "$work/describe.out" || fail "describe lacks '$want'"
done

# ---- --wait, with status updates made as the controller would make them --------------------
st backup create b2 --include-namespaces test --wait --timeout 30s >"$work/wait.out" 2>"$work/wait.err" &
waiter=$!
wait_for_log "$work/wait.out" "Backup b2 New" 15 || fail "--wait shows no progress"
k -n stasis patch backup b2 --subresource=status --type=merge \
	-p '{"status":{"phase":"InProgress","startTimestamp":"'"$(date -u +%FT%TZ)"'","progress":{"totalItems":12,"itemsBackedUp":5}}}' >/dev/null
wait_for_log "$work/wait.out" "InProgress: 5/12 items backed up" 15 || fail "progress line"
exp=$(date -u -d '+720 hours' +%FT%TZ)
k -n stasis patch backup b2 --subresource=status --type=merge \
	-p '{"status":{"phase":"Completed","completionTimestamp":"'"$(date -u +%FT%TZ)"'","expiration":"'"$exp"'","progress":{"totalItems":12,"itemsBackedUp":12}}}' >/dev/null
rc=0
wait "$waiter" || rc=$?
waiter=
[ $rc = 0 ] || fail "--wait exit $rc for Completed: $(cat "$work/wait.out" "$work/wait.err")"
grep -q "Backup completed with status: Completed" "$work/wait.out" || fail "completion line"
st backup get b2 | grep -Eq '^b2 +Completed +0 +0 +.* UTC +(29|30)d +<none>' ||
	fail "Completed row: $(st backup get b2)"

st backup create b3 --wait --timeout 30s >"$work/wait3.out" 2>"$work/wait3.err" &
waiter=$!
wait_for_log "$work/wait3.out" "Backup b3 New" 15 || fail "--wait b3"
k -n stasis patch backup b3 --subresource=status --type=merge \
	-p '{"status":{"phase":"PartiallyFailed","errors":2,"warnings":1,"failureReason":"2 pods could not be frozen"}}' >/dev/null
rc=0
wait "$waiter" || rc=$?
waiter=
[ $rc = 1 ] || fail "--wait exit $rc for PartiallyFailed"
grep -q "2 pods could not be frozen" "$work/wait3.err" || fail "failure reason not shown"
st backup get b3 | grep -Eq '^b3 +PartiallyFailed \(2 errors\) +2 +1 ' || fail "PartiallyFailed row"
st backup describe b3 | grep -qxF "Failure reason:  2 pods could not be frozen" ||
	fail "describe failure reason"

# ---- logs from the file location -------------------------------------------------------------
mkdir -p "$work/store/backups/b1"
printf 'level=info msg="backup started"\nlevel=info msg="backed up 3 items"\n' |
	gzip >"$work/store/backups/b1/b1-logs.gz"
st backup logs b1 >"$work/logs.out" || fail "backup logs"
[ "$(cat "$work/logs.out")" = "$(printf 'level=info msg="backup started"\nlevel=info msg="backed up 3 items"')" ] ||
	fail "logs content: $(cat "$work/logs.out")"
head -c 20 "$work/store/backups/b1/b1-logs.gz" >"$work/store/backups/b1/b1-logs.gz.t"
mv "$work/store/backups/b1/b1-logs.gz.t" "$work/store/backups/b1/b1-logs.gz"
st backup logs b1 >/dev/null 2>"$work/logs.err" && fail "truncated logs accepted"
grep -q "truncated or corrupt" "$work/logs.err" || fail "truncated logs message"

# ---- delete --------------------------------------------------------------------------------
echo n | st backup delete b1 >/dev/null
[ -z "$(k -n stasis get backup b1 -o jsonpath='{.metadata.annotations}')" ] ||
	fail "delete without confirmation set the annotation"
st backup delete b1 --confirm >/dev/null || fail "delete --confirm"
[ "$(k -n stasis get backup b1 -o jsonpath='{.metadata.annotations.stasis\.io/delete-requested}')" = true ] ||
	fail "delete annotation not set"
st backup get b1 | grep -Eq '^b1 +Deleting ' || fail "Deleting status"
st backup delete b3 --confirm --wait --timeout 20s >"$work/delwait.out" &
waiter=$!
sleep 1
k -n stasis delete backup b3 >/dev/null
rc=0
wait "$waiter" || rc=$?
waiter=
[ $rc = 0 ] || fail "delete --wait exit $rc"
grep -q "Backup b3 deleted." "$work/delwait.out" || fail "delete --wait output"

# ---- errors that name the problem and the fix ----------------------------------------------
KUBECONFIG=$work/none st backup get >/dev/null 2>"$work/nokc.err" && fail "no kubeconfig accepted"
grep -q "looked at: \$KUBECONFIG ($work/none)" "$work/nokc.err" || fail "no-kubeconfig message: $(cat "$work/nokc.err")"
grep -q "fix: pass --kubeconfig" "$work/nokc.err" || fail "no-kubeconfig fix"
port=$(free_port)
sed "s|server: .*|server: https://127.0.0.1:$port|" "$work/kubeconfig" >"$work/kc-down"
st --help >/dev/null 2>&1 || true
"$stasis" backup get --kubeconfig "$work/kc-down" >/dev/null 2>"$work/down.err" && fail "down server accepted"
grep -q "https://127.0.0.1:$port (context standin" "$work/down.err" ||
	fail "unreachable message: $(cat "$work/down.err")"
[ "$(st backup get --context standin --kubeconfig "$KUBECONFIG" b2 | awk 'NR == 2 {print $1}')" = b2 ] ||
	fail "explicit --kubeconfig and --context"
[ "$(st backup get -n default | wc -l)" = 1 ] || fail "-n default should list no backups"
[ "$(STASIS_NAMESPACE=default st backup get | wc -l)" = 1 ] || fail "STASIS_NAMESPACE"
st backup get --context nosuch >/dev/null 2>"$work/ctx.err" && fail "unknown context accepted"
grep -q "nosuch" "$work/ctx.err" || fail "unknown context message: $(cat "$work/ctx.err")"

# ---- version -------------------------------------------------------------------------------
st version >"$work/version.out" || fail "version"
grep -q "^  Image:   reg.example/stasis:t1$" "$work/version.out" ||
	grep -q "^  Image:   stasis/stasis:v" "$work/version.out" || fail "server version: $(cat "$work/version.out")"
st version --client-only -o json | $PY -c 'import json,sys; o=json.load(sys.stdin); assert o["version"] and "server" not in o' ||
	fail "version --client-only"
st version -n elsewhere | grep -q "not installed (no deployment stasis-controller in namespace elsewhere)" ||
	fail "version of a missing install"

# ---- the reference backup with the real controller, when it is built in --------------------
if ! "$stasis" server --help >/dev/null 2>&1; then
	echo "cli_backup: stasis server not built in; --wait was tested with simulated status updates"
	exit 0
fi
k create namespace test >/dev/null 2>&1 || k apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Namespace
metadata: {name: test}
EOF
k apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata: {name: nginx-index, namespace: test, labels: {app: nginx}}
data: {index.html: "hello world 001"}
EOF
mkdir -p "$work/refstore"
st backup-location create default --provider file --config "path=$work/refstore" --default >/dev/null ||
	fail "reference location"
"$stasis" server --kubeconfig "$KUBECONFIG" -n stasis --bsl-sync-period 2s \
	>"$work/server.out" 2>"$work/server.err" &
server=$!
st backup create nginx-backup-01 --include-namespaces test --wait --timeout 50s \
	>"$work/ref.out" 2>"$work/ref.err" || fail "reference backup: $(cat "$work/ref.out" "$work/ref.err")"
st backup get nginx-backup-01 | grep -Eq '^nginx-backup-01 +Completed +0 ' ||
	fail "reference backup row: $(st backup get nginx-backup-01)"
[ -s "$work/refstore/backups/nginx-backup-01/nginx-backup-01.tar.gz" ] ||
	fail "no tarball in the store"
st backup logs nginx-backup-01 >/dev/null || fail "logs of the reference backup"
echo "cli_backup: all checks passed, including the reference backup with stasis server"
