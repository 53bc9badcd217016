#!/usr/bin/env bash
# Repository benchmark: chunking speed on one core, then full backup,
# incremental backup after changing ~1% of the bytes, and restore of a
# generated ~1 GiB tree (a large random file, compressible text, 20k small
# files, a sparse file), for stasis and for restic on the same data, both to a
# local file:// repository, or with BENCH_STORE=rgw both to the same Ceph RGW
# (hack/rgw.sh; a fresh cluster for every run, since its memstore OSD keeps
# everything in memory): stasis through s3://, restic through its S3 backend.
# Each figure is the median of $RUNS runs; peak RSS comes from /usr/bin/time -v.
# On RGW it also reports the CPU time the RGW's daemons spent during each command,
# and the floor that sets: (client CPU + RGW CPU) / cores, as they share the cores.
# Usage: [BENCH_STORE=file|rgw] [RUNS=3] tests/bench/bench-repo.sh build/release
set -euo pipefail

B=${1:?usage: bench-repo.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
AGENT=${STASIS_AGENT:-$ROOT/$B/bin/stasis-agent}
RUNS=${RUNS:-3}
[ -x "$AGENT" ] || { echo "bench-repo: $AGENT is not built"; exit 1; }
command -v restic >/dev/null || { echo "bench-repo: restic missing (STASIS_BENCH_DEPS=1 hack/install-deps.sh)"; exit 1; }
STORE=${BENCH_STORE:-file}
case "$STORE" in file | rgw) ;; *) echo "bench-repo: BENCH_STORE is file or rgw"; exit 2 ;; esac
W=$(mktemp -d "${BENCH_TMP:-/var/tmp}/stasis-bench-repo.XXXXXX")
rgw_stop() { [ "$STORE" != rgw ] || bash "$ROOT/hack/rgw.sh" stop "$W/rgw" || true; }
trap 'rgw_stop; rm -rf "$W"' EXIT
export STASIS_REPO_KEY="bench key" RESTIC_PASSWORD="bench key" RESTIC_CACHE_DIR=$W/restic-cache

# --- chunking speed, one core --------------------------------------------------
cat >"$W/chunk.c" <<'C'
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "pkg/chunker.h"
int main(void)
{
	size_t n = (size_t)1 << 30, off = 0, count = 0;
	uint8_t *p = malloc(n);
	uint64_t x = 88172645463325252ull;
	struct st_chunker c;
	struct timespec a, b, ca, cb;

	if (p == NULL || st_chunker_init(&c, 7, ST_CHUNK_MIN, ST_CHUNK_AVG, ST_CHUNK_MAX) != 0)
		return 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		p[i] = (uint8_t)x;
	}
	clock_gettime(CLOCK_MONOTONIC, &a);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ca);
	while (off < n) {
		off += st_chunker_cut(&c, p + off, n - off);
		count++;
	}
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cb);
	clock_gettime(CLOCK_MONOTONIC, &b);
	/* CPU-time rate first: it is what one core does, whatever else runs on the machine. */
	printf("%.3f %.3f %zu\n",
	       (double)n / ((cb.tv_sec - ca.tv_sec) + (cb.tv_nsec - ca.tv_nsec) / 1e9) / 1e9,
	       (double)n / ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9) / 1e9, n / count);
	return 0;
}
C
cc -O2 -I"$ROOT" -o "$W/chunk" "$W/chunk.c" "$ROOT/$B/libstasis.a"
for _ in 1 2 3; do taskset -c 0 "$W/chunk" >>"$W/chunk.out"; done
chunk_cpu=$(sort -n -k1 "$W/chunk.out" | sed -n 2p | cut -d' ' -f1)
chunk_wall=$(sort -n -k2 "$W/chunk.out" | sed -n 2p | cut -d' ' -f2)
chunk_avg=$(sed -n 1p "$W/chunk.out" | cut -d' ' -f3)

# --- data ------------------------------------------------------------------------
echo "bench-repo: generating the data set in $W/data"
D=$W/data
mkdir -p "$D/small"
head -c $((512 * 1024 * 1024)) /dev/urandom >"$D/random.bin"
python3 - "$D/text.txt" <<'PY'
import random, sys
random.seed(1)
words = [bytes(random.choice(b"etaoinshrdlucmfwypvbgkjqxz") for _ in range(random.randint(2, 10)))
         for _ in range(20000)]
with open(sys.argv[1], "wb") as f:
    for _ in range(384):
        line = b" ".join(random.choices(words, k=180000))
        f.write(line[: 1024 * 1024 - 1] + b"\n")
PY
python3 - "$D/small" <<'PY'
import os, random, sys
random.seed(2)
for i in range(20000):
    d = os.path.join(sys.argv[1], "d%03d" % (i // 200))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(os.urandom(random.randint(1, 4096)) + b"x" * random.randint(0, 4096))
PY
truncate -s 1G "$D/sparse.img"
for off in 1 200 600 1000; do head -c $((4 * 1024 * 1024)) /dev/urandom |
	dd of="$D/sparse.img" bs=1M seek=$off conv=notrunc status=none; done
data_bytes=$(du -s -B1 "$D" | cut -f1)
apparent=$(du -sb --apparent-size "$D" | cut -f1)

# Changes ~1% of the bytes: 8 MiB of the random file, 2 MiB of the text, 200 small files.
mutate() (
	set +o pipefail # head closes the pipes early on purpose
	for off in 50 150 250 350; do head -c $((2 * 1024 * 1024)) /dev/urandom |
		dd of="$D/random.bin" bs=1M seek=$off conv=notrunc status=none; done
	head -c $((2 * 1024 * 1024)) "$D/random.bin" | base64 -w 100 | head -c $((2 * 1024 * 1024)) |
		dd of="$D/text.txt" bs=1M seek=100 conv=notrunc status=none
	for i in $(seq 0 99 19999); do f=$(printf '%s/small/d%03d/f%05d' "$D" $((i / 200)) "$i"); echo changed >>"$f"; done
)
# Undo by regenerating would be slow: every run after the first mutates again,
# which changes a similar amount, so the runs stay comparable.

# CPU seconds used so far by the RGW's daemons (monitor, OSD, radosgw); 0 for file://.
store_cpu() {
	[ "$STORE" = rgw ] || { echo 0; return; }
	local p t=0 tck
	tck=$(getconf CLK_TCK)
	while read -r p; do
		# utime and stime are fields 14 and 15; comm (field 2) has no spaces here
		t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done <"$W/rgw/pids"
	awk -v t="$t" -v k="$tck" 'BEGIN { printf "%.2f", t / k }'
}
# measure NAME CMD...: appends "wall_seconds rss_kib cpu_seconds store_cpu_seconds" of one
# run to $W/NAME (store_cpu: what the RGW's daemons spent meanwhile)
measure() {
	local name=$1
	shift
	local c0
	c0=$(store_cpu)
	/usr/bin/time -v -o "$W/time.out" "$@" >"$W/cmd.out" 2>&1 || { cat "$W/cmd.out"; return 1; }
	local secs rss cpu scpu
	scpu=$(awk -v a="$c0" -v b="$(store_cpu)" 'BEGIN { printf "%.2f", b - a }')
	secs=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0;
		for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s }' "$W/time.out")
	rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$W/time.out")
	cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { print s }' "$W/time.out")
	echo "$secs $rss $cpu $scpu" >>"$W/$name"
}
median() { sort -n -k"$2" "$W/$1" | awk -v k="$2" '{ v[NR] = $k } END { print v[int((NR + 1) / 2)] }'; }
# Bytes stored: the directory, or the bucket's total object size on RGW.
repo_bytes() {
	if [ "$STORE" = file ]; then
		du -sb "$1" | cut -f1
		return
	fi
	radosgw-admin -c "$W/rgw/ceph.conf" -n client.rgw bucket stats --bucket="$1" 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["usage"]["rgw.main"]["size"])'
}

# Per run: SREPO/RREPO (the locations), SBYTES/RBYTES (what repo_bytes takes).
setup_run() {
	rm -rf "$W/srepo" "$W/rrepo" "$W/sout" "$W/rout" "$RESTIC_CACHE_DIR"
	if [ "$STORE" = file ]; then
		mkdir -p "$W/srepo"
		SREPO=file://$W/srepo RREPO=$W/rrepo SBYTES=$W/srepo RBYTES=$W/rrepo
	else
		rgw_stop
		bash "$ROOT/hack/rgw.sh" start "$W/rgw" >/dev/null
		set -a
		# shellcheck disable=SC1091
		. "$W/rgw/env"
		set +a
		SREPO="s3://stasis-bench/repo?endpoint=$STASIS_S3_ENDPOINT&region=default&pathStyle=true"
		RREPO="s3:$STASIS_S3_ENDPOINT/restic-bench"
		SBYTES=stasis-bench RBYTES=restic-bench
	fi
	"$AGENT" repo init --repo "$SREPO" >/dev/null
	restic init --repo "$RREPO" >/dev/null 2>&1
	sync
}

for run in $(seq 1 "$RUNS"); do
	echo "bench-repo: run $run/$RUNS ($STORE)"
	setup_run
	measure s_full "$AGENT" backup "$D" --repo "$SREPO" --jobs 2
	measure r_full restic backup --repo "$RREPO" "$D"
	s_stored=$(repo_bytes "$SBYTES")
	r_stored=$(repo_bytes "$RBYTES")
	echo "$s_stored" >>"$W/s_stored"
	echo "$r_stored" >>"$W/r_stored"
	mutate
	measure s_incr "$AGENT" backup "$D" --repo "$SREPO" --jobs 2
	measure r_incr restic backup --repo "$RREPO" "$D"
	echo "$(($(repo_bytes "$SBYTES") - s_stored))" >>"$W/s_up"
	echo "$(($(repo_bytes "$RBYTES") - r_stored))" >>"$W/r_up"
	sync
	measure s_rest "$AGENT" restore latest --target "$W/sout" --repo "$SREPO" --jobs 2
	measure r_rest restic restore latest --repo "$RREPO" --target "$W/rout"
	# the restores must be complete and equal to the source
	cmp "$D/random.bin" "$W/sout/random.bin"
	cmp "$D/random.bin" "$W/rout/$D/random.bin"
	[ "$(find "$W/sout" -type f | wc -l)" = "$(find "$D" -type f | wc -l)" ]
	rm -rf "$W/sout" "$W/rout"
done

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f%%", 100 * a / b }'; }

echo
echo "bench-repo: data set $(mib "$data_bytes") on disk ($(mib "$apparent") apparent), repository: $STORE, $RUNS run(s), medians"
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
printf 'chunking (FastCDC, one core): %s GB/s per CPU-second, %s GB/s wall, mean chunk %s B (target >= 1 GB/s)\n' \
	"$chunk_cpu" "$chunk_wall" "$chunk_avg"
for op in full incr rest; do
	st=$(median s_$op 1)
	rt=$(median r_$op 1)
	srss=$(median s_$op 2)
	rrss=$(median r_$op 2)
	sc=$(median s_$op 3)
	rc=$(median r_$op 3)
	printf '%-5s stasis %7.2f s wall %6.2f s CPU %4d MiB RSS | restic %7.2f s wall %6.2f s CPU %4d MiB RSS | restic/stasis: wall %sx CPU %sx\n' \
		"$op" "$st" "$sc" $((srss / 1024)) "$rt" "$rc" $((rrss / 1024)) "$(ratio "$rt" "$st")" "$(ratio "$rc" "$sc")"
	if [ "$STORE" = rgw ]; then
		# The RGW shares the cores: a run cannot take less wall time than
		# (client CPU + RGW CPU) / cores, whatever the client does.
		sg=$(median s_$op 4)
		rg=$(median r_$op 4)
		printf '      RGW daemons meanwhile: %6.2f s CPU, floor (stasis + RGW CPU) / %d cores = %.2f s | %6.2f s CPU, floor %.2f s\n' \
			"$sg" "$(nproc)" "$(awk -v a="$sc" -v b="$sg" -v n="$(nproc)" 'BEGIN { print (a + b) / n }')" \
			"$rg" "$(awk -v a="$rc" -v b="$rg" -v n="$(nproc)" 'BEGIN { print (a + b) / n }')"
	fi
done
su=$(sort -n "$W/s_up" | sed -n "$(( (RUNS + 1) / 2 ))p")
ru=$(sort -n "$W/r_up" | sed -n "$(( (RUNS + 1) / 2 ))p")
ss=$(sort -n "$W/s_stored" | sed -n "$(( (RUNS + 1) / 2 ))p")
rs=$(sort -n "$W/r_stored" | sed -n "$(( (RUNS + 1) / 2 ))p")
echo "stored after full:   stasis $(mib "$ss")  restic $(mib "$rs")"
echo "incremental upload:  stasis $(mib "$su") ($(pct "$su" "$data_bytes") of the data)  restic $(mib "$ru") ($(pct "$ru" "$data_bytes"))"
