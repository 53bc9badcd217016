#!/usr/bin/env bash
# The S3 client and the s3:// store against a real Ceph RGW started by
# hack/rgw.sh: every operation, pagination past 1000 keys, multipart with
# abort, If-None-Match, wrong secret, missing bucket, plus the store suite on
# s3:// and file://. The tests live in the s3_test binary, which skips its
# server tests when STASIS_S3_ENDPOINT is unset; here it is set.
# Set STASIS_S3_BENCH_MB=256 to add the timed single-stream PUT.
set -euo pipefail

ROOT=${STASIS_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${STASIS_BIN:-$ROOT/build/asan/bin}
TEST=$BIN/../tests/s3_test

for b in ceph-mon ceph-osd radosgw radosgw-admin; do
	if ! command -v "$b" >/dev/null 2>&1; then
		echo "skip: $b not installed (hack/install-deps.sh installs ceph-mon ceph-osd radosgw ceph-common)"
		exit 77
	fi
done
if [ ! -x "$TEST" ]; then
	echo "s3_rgw: $TEST not built (make SANITIZER=address,undefined unit)" >&2
	exit 1
fi

dir=$(mktemp -d /tmp/stasis-rgw.XXXXXX)
cleanup() {
	bash "$ROOT/hack/rgw.sh" stop "$dir" || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

t0=$(date +%s.%N)
if ! bash "$ROOT/hack/rgw.sh" start "$dir" >/dev/null; then
	echo "s3_rgw: RGW did not start; logs:" >&2
	tail -n 20 "$dir"/log/*.log >&2 || true
	exit 1
fi
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "RGW started in %.1f s\n", b - a }'

set -a
# shellcheck disable=SC1091
. "$dir/env"
set +a
timeout 500 "$TEST"
