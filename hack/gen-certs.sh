#!/usr/bin/env bash
# Certificates for local runs and tests: a CA, a serving certificate that also
# covers localhost and 127.0.0.1, and the controller's client certificate.
#
#   hack/gen-certs.sh OUT_DIR [extra `stasis certs` flags...]
#
# Builds nothing: runs $STASIS_BIN/stasis (default build/release/bin). An
# existing CA in OUT_DIR is kept, so running it again reissues the leaves
# under the same CA (rotation); add --force for a new CA.
set -euo pipefail

if [ $# -lt 1 ]; then
	echo "usage: hack/gen-certs.sh OUT_DIR [stasis certs flags...]" >&2
	exit 2
fi
out=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${STASIS_BIN:-$root/build/release/bin}
if [ ! -x "$bin/stasis" ]; then
	echo "gen-certs: $bin/stasis not found; build it first (make) or set STASIS_BIN" >&2
	exit 1
fi
exec "$bin/stasis" certs --out-dir "$out" --dns localhost --ip 127.0.0.1 "$@"
