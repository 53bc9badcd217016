#!/usr/bin/env bash
# make bench-freeze: the freeze window of stasis-agent against the raw floor.
#
# Volumes are 1 GiB ext4 images holding 10k files each, in a reflink XFS
# pool. For 1, 4 and 8 volumes, clean and with 64 MiB dirty per volume
# (rewritten before every run), each run cuts image snapshots two ways,
# interleaved:
#   floor  a minimal program: syncfs + FIFREEZE + FICLONE of each image + FITHAW
#   api    the same through stasis-agent: POST /v1/freeze on its Unix socket,
#          FICLONE of each image by the caller, POST /v1/thaw
# and reports p50/p99 of the caller's total (start to thawed, syncfs
# included) and of the window (first FIFREEZE to last FITHAW; for api as
# the agent measured it). Targets: api total p50 <= 1.2 x floor + 5 ms;
# window p99 <= 50 ms for one clean volume.
#
# Usage: tests/bench/bench-freeze.sh BUILD_DIR   (runs: STASIS_BENCH_RUNS, default
# 20; STASIS_BENCH_FULL=1 for the full 50)
set -euo pipefail

B=${1:?usage: bench-freeze.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
AGENT=$ROOT/$B/bin/stasis-agent
RUNS=${STASIS_BENCH_RUNS:-20}
[ -n "${STASIS_BENCH_FULL:-}" ] && RUNS=50
FILES=${STASIS_BENCH_FILES:-10000}
[ -x "$AGENT" ] || { echo "build $AGENT first (make all)"; exit 1; }
if [ "$(id -u)" != 0 ]; then
	echo "bench-freeze needs root (loop devices, FIFREEZE)"
	exit 1
fi

T=$(mktemp -d /tmp/st-bench-freeze-XXXXXX)
LOOPS=()
APID=
cleanup() {
	set +e
	[ -n "$APID" ] && kill -TERM "$APID" && wait "$APID"
	# Volumes first, then their loop devices, and only then the pool under them.
	for m in $(findmnt -rn -o TARGET | grep "^$T/" | sort -r); do
		fsfreeze -u "$m" 2>/dev/null
		[ "$m" = "$T/pool" ] || umount "$m" || umount -l "$m"
	done
	for ((i = ${#LOOPS[@]} - 1; i >= 1; i--)); do losetup -d "${LOOPS[i]}"; done
	umount "$T/pool" || umount -l "$T/pool"
	losetup -d "${LOOPS[0]}"
	rm -rf "$T"
}
trap cleanup EXIT

cc -O2 -o "$T/freeze_floor" "$ROOT/tests/bench/freeze_floor.c"

mkdir -p "$T/pool" "$T/state"
# The agent's state dir is /run/stasis in production: a tmpfs, so the journal's
# fsync costs nothing there. Do the same here.
mount -t tmpfs -o size=16m tmpfs "$T/state"
truncate -s 12G "$T/pool.img"
mkfs.xfs -q -m reflink=1 "$T/pool.img"
l=$(losetup -f --show "$T/pool.img")
LOOPS+=("$l")
mount "$l" "$T/pool"
VOLS=${STASIS_BENCH_VOLS:-1 4 8}
NVOL=$(tr ' ' '\n' <<<"$VOLS" | sort -n | tail -1)
echo "preparing $NVOL volumes of 1 GiB with $FILES files each..."
data=$(head -c 3072 /dev/urandom | base64 -w0)
for i in $(seq 1 "$NVOL"); do
	truncate -s 1G "$T/pool/v$i.img"
	mkfs.ext4 -q -F "$T/pool/v$i.img" >/dev/null
	l=$(losetup -f --show "$T/pool/v$i.img")
	LOOPS+=("$l")
	mkdir -p "$T/v$i"
	mount "$l" "$T/v$i"
	mkdir -p "$T/v$i/files"
	# Empty files, and 4 KiB of data in every tenth one (no process per file).
	(cd "$T/v$i/files" && seq -w 1 "$FILES" | xargs -n 1000 touch &&
		for f in *0; do printf '%s' "$data" >"$f"; done)
done
sync

# stats FILE COL: p50 and p99 (nearest rank) of column COL.
stats() {
	sort -g -k"$2","$2" "$1" | awk -v c="$2" '{v[NR]=$c} END {
		i50 = int(NR * 0.50 + 0.5); if (i50 < 1) i50 = 1
		i99 = int(NR * 0.99 + 0.5); if (i99 < 1) i99 = 1; if (i99 > NR) i99 = NR
		printf "%.2f %.2f", v[i50], v[i99] }'
}

dirty() { # N: 64 MiB of new data per volume, left in the page cache
	local i
	for i in $(seq 1 "$1"); do
		dd if=/dev/urandom of="$T/v$i/dirty.bin" bs=1M count=64 conv=notrunc status=none
	done
}

args_for() { # N: "MNT IMG" pairs
	local i
	for i in $(seq 1 "$1"); do printf '%s %s ' "$T/v$i" "$T/pool/v$i.img"; done
}

printf '\nfreeze window, %d runs each (ms; total = caller, start to thawed; window = first FIFREEZE to last FITHAW)\n' "$RUNS"
printf '%-4s %-6s | %-17s %-17s | %-17s %-17s | %-7s %s\n' vols state \
	"floor total p50/99" "api total p50/99" "floor win p50/99" "agent win p50/99" ratio verdict
for n in $VOLS; do
	vols=()
	for i in $(seq 1 "$n"); do vols+=(--volume "$T/v$i"); done
	"$AGENT" serve --state-dir "$T/state" "${vols[@]}" --log-level warn >"$T/agent.log" 2>&1 &
	APID=$!
	for _ in $(seq 100); do [ -S "$T/state/agent.sock" ] && break; sleep 0.05; done
	for state in ${STASIS_BENCH_STATES:-clean dirty}; do
		: >"$T/floor" && : >"$T/api"
		# shellcheck disable=SC2046
		for r in $(seq 1 "$RUNS"); do
			[ $state = dirty ] && dirty "$n"
			"$T/freeze_floor" floor $(args_for "$n") >>"$T/floor"
			[ $state = dirty ] && dirty "$n"
			"$T/freeze_floor" api "$T/state/agent.sock" $(args_for "$n") >>"$T/api"
		done
		read -r ft50 ft99 <<<"$(stats "$T/floor" 1)"
		read -r at50 at99 <<<"$(stats "$T/api" 1)"
		read -r fw50 fw99 <<<"$(stats "$T/floor" 2)"
		read -r aw50 aw99 <<<"$(stats "$T/api" 2)"
		ratio=$(awk -v a="$at50" -v f="$ft50" 'BEGIN { printf "%.2f", a / f }')
		verdict=$(awk -v a="$at50" -v f="$ft50" 'BEGIN { print (a <= 1.2 * f + 5) ? "ok" : "MISS" }')
		if [ $n = 1 ] && [ $state = clean ]; then
			verdict="$verdict, p99 $(awk -v w="$aw99" 'BEGIN { print (w <= 50) ? "ok" : "MISS" }')"
		fi
		printf '%-4s %-6s | %7s / %-7s %7s / %-7s | %7s / %-7s %7s / %-7s | %-7s %s\n' \
			"$n" "$state" "$ft50" "$ft99" "$at50" "$at99" "$fw50" "$fw99" "$aw50" "$aw99" \
			"$ratio" "$verdict"
	done
	kill -TERM "$APID"
	wait "$APID" || true
	APID=
done
