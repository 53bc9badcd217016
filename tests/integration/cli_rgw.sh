#!/usr/bin/env bash
# The CLI end to end on a real Ceph RGW (hack/rgw.sh) and the API stand-in,
# with the real controller: `stasis install` with an S3 location over HTTPS
# (--cacert) and its credentials Secret (--secret-file); the controller marks
# the location Available; `backup create nginx-backup-01 --include-namespaces
# test --wait` completes and `backup get` shows Completed; `backup logs`
# prints what an independent SigV4 client downloads and gunzips; `backup
# logs` through a location whose Secret holds a wrong key fails with S3's
# reason; `backup delete --confirm --wait` empties the backup's prefix.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

stasis=$STASIS_BIN/stasis
if ! command -v kubectl >/dev/null 2>&1; then
	echo "kubectl not installed; the CLI's results are read back with the real kubectl"
	exit 77
fi
if ! command -v radosgw >/dev/null 2>&1; then
	echo "radosgw not installed (hack/install-deps.sh); no real S3 to test against"
	exit 77
fi
if ! "$stasis" server --help >/dev/null 2>&1; then
	echo "stasis server not built in; this test needs the real controller"
	exit 77
fi

work=$(mktemp -d /tmp/st-clirgw-XXXXXX)
rgw=$work/rgw
mkdir -p "$rgw"
standin='' server='' waiter=''
cleanup() {
	stop_pid "$waiter"
	stop_pid "$server" 10
	stop_pid "$standin"
	bash "$STASIS_ROOT/hack/rgw.sh" stop "$rgw" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	for f in "$work"/*.err "$work"/server.log; do
		[ -s "$f" ] && sed "s|^|$(basename "$f"): |" "$f" | tail -20 >&2
	done
	exit 1
}

bash "$STASIS_ROOT/hack/rgw.sh" start "$rgw" >/dev/null 2>"$work/rgw.err" || fail "RGW did not start"
set -a
# shellcheck disable=SC1091
. "$rgw/env"
set +a
s3() { $PY "$STASIS_ROOT/tests/integration/controller_s3.py" "$@"; }
s3 mb cli-backups || fail "creating the bucket"

$PY "$STASIS_ROOT/tests/k8s/standin.py" --port 0 --no-stasis-types --namespace-delay 0 \
	--kubeconfig-out "$work/kubeconfig" >"$work/standin.out" 2>"$work/standin.err" &
standin=$!
wait_for_log "$work/standin.out" "^standin listening on " 15 || fail "stand-in did not start"
export KUBECONFIG=$work/kubeconfig KUBECACHEDIR=$work/kcache HOME=$work/home
mkdir -p "$HOME"
unset STASIS_NAMESPACE
k() { kubectl --request-timeout=20s "$@"; }
st() { timeout 90 "$stasis" "$@"; }

cat >"$work/creds" <<EOF
[default]
aws_access_key_id = $AWS_ACCESS_KEY_ID
aws_secret_access_key = $AWS_SECRET_ACCESS_KEY
EOF
st install --provider aws --bucket cli-backups --prefix cluster-a --secret-file "$work/creds" \
	--backup-location-config "region=$STASIS_S3_REGION,s3Url=$STASIS_S3_TLS_ENDPOINT,s3ForcePathStyle=true" \
	--cacert "$STASIS_S3_CA_FILE" >"$work/install.out" 2>"$work/install.err" || fail "install"

"$stasis" server --namespace stasis --kubeconfig "$KUBECONFIG" --bsl-sync-period 2s \
	--identity cli-test >"$work/server.log" 2>&1 &
server=$!
i=0
until st backup-location get default | grep -Eq '^default +aws +cli-backups/cluster-a +Available '; do
	i=$((i + 1))
	[ $i -lt 60 ] || fail "location not Available: $(st backup-location get default -o yaml)"
	sleep 0.5
done

k apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Namespace
metadata: {name: test}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: nginx-index, namespace: test, labels: {app: nginx}}
data: {index.html: "hello world 001"}
EOF
st backup create nginx-backup-01 --include-namespaces test --wait --timeout 60s \
	>"$work/create.out" 2>"$work/create.err" || fail "backup did not complete: $(cat "$work/create.out")"
grep -q "Backup completed with status: Completed" "$work/create.out" || fail "completion line"
st backup get >"$work/get.out"
grep -Eq '^nginx-backup-01 +Completed +0 +[0-9]+ +.* UTC +(29|30)d +default +<none>$' "$work/get.out" ||
	fail "backup get: $(cat "$work/get.out")"

st backup logs nginx-backup-01 >"$work/logs.out" 2>"$work/logs.err" || fail "backup logs"
[ -s "$work/logs.out" ] || fail "empty logs"
s3 get cli-backups cluster-a/backups/nginx-backup-01/nginx-backup-01-logs.gz "$work/logs.gz" ||
	fail "independent download of the logs"
gunzip -c "$work/logs.gz" | cmp -s - "$work/logs.out" || fail "logs differ from the stored object"

# The same store through a Secret with a wrong key: S3 refuses the signature.
sed 's/^aws_secret_access_key = .*/aws_secret_access_key = wrong/' "$work/creds" >"$work/badcreds"
st backup-location create badkey --provider aws --bucket cli-backups --prefix cluster-a \
	--config "region=$STASIS_S3_REGION,s3Url=$STASIS_S3_ENDPOINT,s3ForcePathStyle=true" \
	--credential bad-creds=cloud >/dev/null || fail "badkey location"
printf '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"bad-creds","namespace":"stasis"},"data":{"cloud":"%s"}}\n' \
	"$(base64 -w0 <"$work/badcreds")" | k create -f - >/dev/null || fail "bad secret"
k -n stasis get backup nginx-backup-01 -o json |
	$PY -c 'import json,sys; o=json.load(sys.stdin); o["metadata"]={"name":"via-badkey","namespace":"stasis"}; o["spec"]["storageLocation"]="badkey"; o.pop("status",None); print(json.dumps(o))' |
	k create -f - >/dev/null || fail "backup object for the badkey location"
st backup logs via-badkey >/dev/null 2>"$work/badkey.err" && fail "a wrong key was accepted"
grep -Eqi "SignatureDoesNotMatch|403|denied" "$work/badkey.err" || fail "bad key message: $(cat "$work/badkey.err")"
k -n stasis delete backup via-badkey >/dev/null

[ -n "$(s3 ls cli-backups cluster-a/backups/nginx-backup-01/)" ] || fail "no objects before delete"
st backup delete nginx-backup-01 --confirm --wait --timeout 60s >"$work/delete.out" 2>"$work/delete.err" ||
	fail "delete --wait: $(cat "$work/delete.out" "$work/delete.err")"
[ -z "$(s3 ls cli-backups cluster-a/backups/nginx-backup-01/)" ] || fail "objects left after delete"
echo "cli_rgw: install, location Available, backup Completed, logs, delete on RGW"
