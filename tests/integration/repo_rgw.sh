#!/usr/bin/env bash
# The repository on a real Ceph RGW (hack/rgw.sh):
#  - repo init creates a missing bucket and says so; a second repository in
#    the same bucket reuses it silently; a bucket the credentials may not use
#    and wrong credentials fail with a clear message;
#  - radosgw killed (by PID) in the middle of a large backup: the backup fails
#    naming the endpoint and writes no snapshot; radosgw restarted on the same
#    cluster (the OSD keeps the objects): repo check passes, the next backup
#    completes and reuses the packs uploaded before the kill.
set -euo pipefail
. "$(dirname "$0")/repo_common.inc"
ROOT=${STASIS_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}

for b in ceph-mon ceph-osd radosgw radosgw-admin; do
	if ! command -v "$b" >/dev/null 2>&1; then
		echo "skip: $b not installed (hack/install-deps.sh installs ceph-mon ceph-osd radosgw ceph-common)"
		exit 77
	fi
done
RGW=$WORK/rgw
cleanup_hooks+=("bash '$ROOT/hack/rgw.sh' stop '$RGW'")
if ! bash "$ROOT/hack/rgw.sh" start "$RGW" >/dev/null; then
	echo "FAIL: RGW did not start; logs:"
	tail -n 20 "$RGW"/log/*.log || true
	exit 1
fi
set -a
# shellcheck disable=SC1091
. "$RGW/env"
set +a
EP=$STASIS_S3_ENDPOINT
q="endpoint=$EP&region=default&pathStyle=true"
fail() { echo "FAIL: $*"; exit 1; }

# --- repo init creates the bucket -------------------------------------------
out=$("$AGENT" repo init --repo "s3://fresh-bucket/one?$q")
echo "$out"
echo "$out" | grep -q "^bucket created for s3://fresh-bucket/one" || fail "init did not say it created the bucket"
echo "$out" | grep -q "^repository created at" || fail "init did not create the repository"
out=$("$AGENT" repo init --repo "s3://fresh-bucket/two?$q")
echo "$out" | grep -q "bucket created" && fail "second init claims to have created an existing bucket"
"$AGENT" repo list --repo "s3://fresh-bucket/one?$q" >/dev/null
set +e
msg=$("$AGENT" repo init --repo "s3://fresh-bucket/one?$q" 2>&1)
rc=$?
set -e
echo "init twice: exit $rc: $msg"
[ $rc = 1 ] || fail "init of an existing repository exited $rc"

# A bucket owned by another user: refused, with the reason.
radosgw-admin -c "$RGW/ceph.conf" -n client.rgw user create --uid=other --display-name=other \
	--access-key=OTHERKEY0000 --secret-key=othersecret0000 >/dev/null 2>&1
AWS_ACCESS_KEY_ID=OTHERKEY0000 AWS_SECRET_ACCESS_KEY=othersecret0000 \
	"$AGENT" repo init --repo "s3://theirs/x?$q" >/dev/null
set +e
msg=$("$AGENT" repo init --repo "s3://theirs/mine?$q" 2>&1)
rc=$?
set -e
echo "someone else's bucket: exit $rc: $msg"
[ $rc = 1 ] || fail "init in someone else's bucket exited $rc"
echo "$msg" | grep -q "AccessDenied" || fail "no AccessDenied in: $msg"
echo "$msg" | grep -q "bucket created" && fail "claims to have created someone else's bucket"

# Wrong secret: a signature error, nothing created.
set +e
msg=$(AWS_SECRET_ACCESS_KEY=wrong "$AGENT" repo init --repo "s3://never/x?$q" 2>&1)
rc=$?
set -e
echo "wrong secret: exit $rc: $msg"
[ $rc = 1 ] || fail "init with a wrong secret exited $rc"
echo "$msg" | grep -q "SignatureDoesNotMatch" || fail "no SignatureDoesNotMatch in: $msg"

# --- radosgw killed in the middle of a backup --------------------------------
R="s3://faults/repo?$q"
"$AGENT" repo init --repo "$R" >/dev/null
mkdir -p "$WORK/src"
for i in 1 2 3 4 5 6; do head -c $((32 * 1024 * 1024)) /dev/urandom >"$WORK/src/f$i"; done
total=$((6 * 32 * 1024 * 1024))
usage() { # FIELD: num_objects or size of the bucket's objects
	radosgw-admin -c "$RGW/ceph.conf" -n client.rgw bucket stats --bucket=faults 2>/dev/null |
		python3 -c 'import json,sys; u=json.load(sys.stdin).get("usage",{}); print(u.get("rgw.main",{}).get(sys.argv[1],0))' "$1"
}
objects() { usage num_objects; }
"$AGENT" backup "$WORK/src" --repo "$R" --jobs 1 >"$WORK/b1.out" 2>"$WORK/b1.err" &
bpid=$!
# At least a third of the data stored in packs, whatever their size.
for _ in $(seq 1 600); do
	n=$(usage size)
	[ "${n:-0}" -ge $((64 * 1024 * 1024)) ] && break
	kill -0 $bpid 2>/dev/null || break
	sleep 0.1
done
rgwpid=$(cat "$RGW/rgw.pid")
kill -0 $bpid 2>/dev/null || { cat "$WORK/b1.err"; fail "backup ended before radosgw could be killed"; }
kill -9 "$rgwpid"
echo "radosgw (PID $rgwpid) killed with $(objects) objects in the bucket"
# At most 120 s for the retries to give up (a child shell cannot wait for $bpid).
for _ in $(seq 1 1200); do
	kill -0 $bpid 2>/dev/null || break
	sleep 0.1
done
if kill -0 $bpid 2>/dev/null; then
	kill -KILL $bpid
	fail "the backup still runs 120 s after radosgw was killed"
fi
set +e
wait $bpid
rc=$?
set -e
msg=$(cat "$WORK/b1.err")
echo "backup while radosgw is down: exit $rc: $(echo "$msg" | grep error)"
[ $rc = 1 ] || fail "backup exited $rc with radosgw down"
echo "$msg" | grep -q "error: .*cannot reach the endpoint $EP" || fail "the error does not name the endpoint $EP"
# The upload was retried (a dead pooled connection must not end it at once).
echo "$msg" | grep -q "after [2-9] attempts" || fail "the upload was not retried"
grep -q "snapshot .* saved" "$WORK/b1.out" && fail "a snapshot was reported"

bash "$ROOT/hack/rgw.sh" restart-rgw "$RGW"
echo "radosgw restarted (PID $(cat "$RGW/rgw.pid")), $(objects) objects in the bucket"
[ -z "$("$AGENT" repo list --repo "$R")" ] || fail "a snapshot exists after the failed backup"
"$AGENT" repo check --repo "$R"
out=$("$AGENT" backup "$WORK/src" --repo "$R" --jobs 2 --json | tail -1)
new=$(json_field "$out" bytes_new)
echo "second backup: $new new bytes of $total"
# Most of the 64 MiB or more stored before the kill is reused.
[ "$new" -le $((total - 48 * 1024 * 1024)) ] || fail "the second backup uploaded $new of $total bytes"
"$AGENT" repo check --repo "$R"
[ "$("$AGENT" repo list --repo "$R" | wc -l)" = 1 ] || fail "expected exactly one snapshot"
"$AGENT" restore latest --target "$WORK/dst" --repo "$R" >/dev/null
for i in 1 2 3 4 5 6; do cmp "$WORK/src/f$i" "$WORK/dst/f$i"; done
echo "repo_rgw OK"
