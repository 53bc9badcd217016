#!/usr/bin/env bash
# Runs the built test suites of one build tree and prints a summary line
# "N passed, N failed, N skipped". Usage: hack/run-tests.sh build/asan
# STASIS_ONLY=unit|fuzz|integration limits the run; STASIS_TEST=<glob> filters
# integration scripts by name. An integration script exits 0 (pass), 77 (skip,
# after printing why) or anything else (fail); each has a time bound.
set -uo pipefail

B=${1:?usage: run-tests.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export STASIS_ROOT=$ROOT
export STASIS_BIN=$ROOT/$B/bin
export STASIS_SHARED=${STASIS_SHARED:-$ROOT/../shared}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
only=${STASIS_ONLY:-all}
pass=0 fail=0 skip=0
failed=()

run() { # name timeout cmd...
	local name=$1 limit=$2
	shift 2
	local log
	log=$(mktemp)
	local start=$SECONDS
	timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
	local rc=$?
	local took=$((SECONDS - start))
	if [ $rc -eq 0 ]; then
		pass=$((pass + 1))
		printf 'PASS  %-40s %3ds\n' "$name" "$took"
		[ -n "${STASIS_VERBOSE:-}" ] && cat "$log"
	elif [ $rc -eq 77 ]; then
		skip=$((skip + 1))
		printf 'SKIP  %-40s %s\n' "$name" "$(tail -1 "$log")"
	else
		fail=$((fail + 1))
		failed+=("$name")
		[ $rc -eq 124 ] && echo "TIMEOUT after ${limit}s: $name"
		printf 'FAIL  %-40s %3ds (exit %d)\n' "$name" "$took" "$rc"
		sed 's/^/    | /' "$log" | tail -80
	fi
	rm -f "$log"
}

if [ "$only" = all ] || [ "$only" = unit ]; then
	for t in "$B"/tests/*_test; do
		[ -x "$t" ] || continue
		run "unit/$(basename "$t")" 300 "$t"
	done
fi

if [ "$only" = all ] || [ "$only" = fuzz ]; then
	for r in "$B"/fuzz/*-replay; do
		[ -x "$r" ] || continue
		n=$(basename "$r" -replay)
		run "fuzz-replay/$n" 300 "$r" "$ROOT/tests/fuzz/corpus/$n"
	done
fi

if [ "$only" = all ] || [ "$only" = integration ]; then
	for s in "$ROOT"/tests/integration/*.sh; do
		[ -f "$s" ] || continue
		n=$(basename "$s" .sh)
		case "$n" in ${STASIS_TEST:-*}) ;; *) continue ;; esac
		run "integration/$n" "${STASIS_TEST_TIMEOUT:-600}" bash "$s"
	done
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
	echo "failed: ${failed[*]}"
fi
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
