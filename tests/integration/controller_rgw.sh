#!/usr/bin/env bash
# `stasis server` with storage locations on a real Ceph RGW (hack/rgw.sh):
# locations over HTTP and over HTTPS with the CA given as caCert, credentials
# from a Secret, are Available; a missing bucket and a wrong secret key are
# Unavailable with S3's reason; the reference backup lands in the bucket in
# Velero's layout (fetched with an independent S3 client and checked entry by
# entry against the API); deletion empties the backup's prefix; once RGW is
# stopped the location turns Unavailable with a connection error and a new
# backup fails with the reason.
set -euo pipefail
STASIS_ROOT=${STASIS_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$(dirname "$0")/controller_common.inc"

for b in ceph-mon ceph-osd radosgw radosgw-admin kubectl; do
	if ! command -v "$b" >/dev/null 2>&1; then
		echo "skip: $b not installed (hack/install-deps.sh installs it)"
		exit 77
	fi
done
[ -x "$STASIS" ] || fail "$STASIS not built"

work=$(mktemp -d /tmp/st-ctlrgw-XXXXXX)
rgw=$work/rgw
mkdir -p "$rgw"
cleanup() {
	ctl_cleanup
	bash "$STASIS_ROOT/hack/rgw.sh" stop "$rgw" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

bash "$STASIS_ROOT/hack/rgw.sh" start "$rgw" >/dev/null 2>"$work/rgw.err" || {
	tail -n 20 "$work/rgw.err" >&2
	fail "RGW did not start"
}
set -a
# shellcheck disable=SC1091
. "$rgw/env"
set +a
s3() { $PY "$STASIS_ROOT/tests/integration/controller_s3.py" "$@"; }
s3 mb stasis-backups || fail "creating the bucket"

start_standin
cat >"$work/creds" <<EOF
[default]
aws_access_key_id = $AWS_ACCESS_KEY_ID
aws_secret_access_key = $AWS_SECRET_ACCESS_KEY
EOF
secret() { # NAME FILE
	printf '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"%s","namespace":"stasis"},"data":{"cloud":"%s"}}\n' \
		"$1" "$(base64 -w0 <"$2")" | k create -f - >/dev/null || fail "secret $1"
}
secret rgw-creds "$work/creds"
sed 's/^aws_secret_access_key = .*/aws_secret_access_key = wrong/' "$work/creds" >"$work/badcreds"
secret bad-creds "$work/badcreds"
bsl() { # NAME ENDPOINT BUCKET SECRET [EXTRA_OBJECTSTORAGE_JSON]
	printf '{"apiVersion":"stasis.io/v1alpha1","kind":"BackupStorageLocation","metadata":{"name":"%s","namespace":"stasis"},"spec":{"provider":"aws","objectStorage":{"bucket":"%s","prefix":"cluster-a"%s},"config":{"region":"%s","s3Url":"%s","s3ForcePathStyle":"true"},"credential":{"name":"%s","key":"cloud"}}}\n' \
		"$1" "$3" "${5:-}" "$STASIS_S3_REGION" "$2" "$4" | k create -f - >/dev/null || fail "bsl $1"
}
bsl rgw "$STASIS_S3_ENDPOINT" stasis-backups rgw-creds
bsl rgw-tls "$STASIS_S3_TLS_ENDPOINT" stasis-backups rgw-creds ",\"caCert\":\"$(base64 -w0 <"$STASIS_S3_CA_FILE")\""
bsl nobucket "$STASIS_S3_ENDPOINT" no-such-bucket rgw-creds
bsl badkey "$STASIS_S3_ENDPOINT" stasis-backups bad-creds

k create -f - >/dev/null <<'EOF' || fail "scenario objects"
apiVersion: v1
kind: Namespace
metadata: {name: test}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: nginx-index, namespace: test, labels: {app: nginx}}
data: {index.html: "hello world 001"}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: nginx-html, namespace: test}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 50Mi}}
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
      containers: [{name: nginx, image: "nginx:1.25"}]
      volumes: [{name: html, persistentVolumeClaim: {claimName: nginx-html}}]
---
apiVersion: v1
kind: Service
metadata: {name: nginx, namespace: test}
spec:
  selector: {app: nginx}
  ports: [{port: 80}]
EOF

start_server "$work/server.log" --bsl-sync-period 3s
wait_phase bsl rgw Available 30 >/dev/null || fail "rgw: $(jp bsl rgw .status.message)"
wait_phase bsl rgw-tls Available 30 >/dev/null || fail "rgw-tls: $(jp bsl rgw-tls .status.message)"
wait_phase bsl nobucket Unavailable 30 >/dev/null || fail "nobucket not Unavailable"
jp bsl nobucket .status.message | grep -q NoSuchBucket ||
	fail "nobucket message: $(jp bsl nobucket .status.message)"
wait_phase bsl badkey Unavailable 30 >/dev/null || fail "badkey not Unavailable"
jp bsl badkey .status.message | grep -q SignatureDoesNotMatch ||
	fail "badkey message: $(jp bsl badkey .status.message)"
echo "locations: ok ($(jp bsl nobucket .status.message | cut -c1-90)...)"

for loc in rgw rgw-tls; do
	b=nginx-$loc
	make_backup "$b" "{\"includedNamespaces\":[\"test\"],\"storageLocation\":\"$loc\"}"
	wait_phase backup "$b" Completed 60 >/dev/null || fail "$b: $(jp backup "$b" .status.phase) $(jp backup "$b" .status.failureReason)"
	mkdir -p "$work/fetch/backups/$b"
	for f in "$b.tar.gz" velero-backup.json "$b-resource-list.json.gz" "$b-logs.gz"; do
		s3 get stasis-backups "cluster-a/backups/$b/$f" "$work/fetch/backups/$b/$f" || fail "fetch $f"
	done
	$PY "$STASIS_ROOT/tests/integration/controller_check.py" "$url" "$work/fetch" "$b" \
		--must configmaps/test/nginx-index --must deployments.apps/test/nginx \
		--must services/test/nginx --must persistentvolumeclaims/test/nginx-html \
		--must namespaces/test || fail "$b content"
done
# The controller re-probes every 3 s (put, head, delete), so one listing can
# catch a probe in flight; a probe left behind is present in every listing.
probe_gone=
for _ in 1 2 3 4 5; do
	if [ -z "$(s3 ls stasis-backups cluster-a/.stasis-probe)" ]; then
		probe_gone=1
		break
	fi
	sleep 0.3
done
[ -n "$probe_gone" ] || fail "probe object left behind"

k -n stasis annotate backup nginx-rgw stasis.io/delete-requested=true >/dev/null
i=0
while k -n stasis get backup nginx-rgw >/dev/null 2>&1 && [ $i -lt 300 ]; do
	sleep 0.1
	i=$((i + 1))
done
k -n stasis get backup nginx-rgw >/dev/null 2>&1 && fail "deleted backup still listed"
[ -z "$(s3 ls stasis-backups cluster-a/backups/nginx-rgw/)" ] || fail "objects remain in the bucket"
[ -n "$(s3 ls stasis-backups cluster-a/backups/nginx-rgw-tls/)" ] || fail "deletion went too far"
echo "deletion: ok"

# The same through the CLI: create --wait, get, logs, delete.
cli() { "$STASIS" backup "$@" --kubeconfig "$work/kubeconfig" -n stasis; }
if cli get >/dev/null 2>&1; then
	cli create cli-01 --include-namespaces test --storage-location rgw --wait >"$work/cli-create.out" 2>&1 ||
		fail "stasis backup create --wait: $(tail -n 3 "$work/cli-create.out")"
	cli get | grep -E "^cli-01 +Completed " >/dev/null || fail "stasis backup get: $(cli get)"
	cli logs cli-01 | grep -q "backup started" || fail "stasis backup logs"
	[ -n "$(s3 ls stasis-backups cluster-a/backups/cli-01/)" ] || fail "cli-01 not in the bucket"
	cli delete cli-01 --confirm --wait >/dev/null 2>&1 || fail "stasis backup delete"
	[ -z "$(s3 ls stasis-backups cluster-a/backups/cli-01/)" ] || fail "cli-01 objects remain"
	echo "CLI: ok"
else
	echo "CLI: stasis backup verbs not available, skipped"
fi

bash "$STASIS_ROOT/hack/rgw.sh" stop "$rgw" >/dev/null 2>&1
wait_phase bsl rgw Unavailable 30 >/dev/null || fail "rgw still Available after RGW stopped"
msg=$(jp bsl rgw .status.message)
echo "$msg" | grep -qiE "connect|refused" || fail "unclear message when RGW is down: $msg"
make_backup after-stop '{"includedNamespaces":["test"],"storageLocation":"rgw"}'
wait_phase backup after-stop Failed 120 >/dev/null || fail "backup to a stopped RGW: $(jp backup after-stop .status.phase)"
[ -n "$(jp backup after-stop .status.failureReason)" ] || fail "no failure reason"
echo "RGW down: ok ($(echo "$msg" | cut -c1-100))"
echo "controller_rgw: ok"
