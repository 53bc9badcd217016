#!/usr/bin/env bash
# stasis-agent serve: freeze/thaw over the Unix socket on real ext4 and XFS
# volumes. A writer blocks while frozen and resumes after thaw with nothing
# lost; a second freeze is refused unless it extends; all-or-nothing with a
# volume that cannot be frozen and with one frozen by someone else; volumes
# on one filesystem are frozen once; SIGTERM and SIGINT thaw before exit.
set -euo pipefail
. "$(dirname "$0")/agent_common.inc"

pool_create 1G
vol_create a ext4
vol_create b xfs
mkdir -p "$T/vol/a/sub" "$T/vol/c"
mount -t tmpfs tmpfs "$T/vol/c"
A=$T/vol/a B=$T/vol/b C=$T/vol/c

# The webhook passes durations in its own format ("1m30s").
agent_start --volume "$A" --volume "$B" --volume "$C" --default-deadline 1m30s

# --- a writer blocks while frozen and loses nothing -------------------------
# The count is renamed into place, so a reader never sees a truncated file.
(
	i=0
	while [ ! -e "$T/stop" ]; do
		i=$((i + 1))
		echo "record $i" >>"$A/log"
		echo $i >"$T/progress.new"
		mv "$T/progress.new" "$T/progress"
		sleep 0.01
	done
) &
WRITER=$!
CLEANUP_HOOKS+=("touch $T/stop; kill $WRITER 2>/dev/null")
sleep 0.5
out=$("$AGENT" freeze --volume a --volume b --timeout 30s)
[ "$(jq -r .frozen <<<"$out")" = true ] || fail "freeze answer: $out"
[ "$(jq '.volumes | length' <<<"$out")" = 2 ] || fail "two filesystems expected: $out"
is_frozen "$A" || fail "$A is not frozen"
is_frozen "$B" || fail "$B is not frozen"
sleep 0.3
c1=$(cat "$T/progress")
sleep 1
c2=$(cat "$T/progress")
[ "$c1" = "$c2" ] || fail "writer made progress while frozen ($c1 -> $c2)"
[ "$(status_field frozen)" = true ] || fail "status does not say frozen"

# --- a second freeze is refused; extend moves the deadline ------------------
if err=$("$AGENT" freeze --volume a 2>&1); then fail "second freeze accepted"; fi
grep -q "already frozen" <<<"$err" || fail "409 reason: $err"
out=$("$AGENT" freeze --extend --timeout 45s)
[ "$(jq -r .extended <<<"$out")" = true ] || fail "extend: $out"
rem=$(status_field remainingSeconds)
[ "$rem" -gt 30 ] || fail "deadline not extended (remaining $rem)"

out=$("$AGENT" thaw)
[ "$(jq -r .thawed <<<"$out")" = true ] || fail "thaw: $out"
jq -e '.windowMs > 0' <<<"$out" >/dev/null || fail "no window in $out"
is_frozen "$A" && fail "$A still frozen after thaw"
sleep 0.5
c3=$(cat "$T/progress")
[ "$c3" -gt "$c2" ] || fail "writer did not resume after thaw"
touch "$T/stop"
wait $WRITER
n=$(cat "$T/progress")
seq 1 "$n" | sed 's/^/record /' | cmp - "$A/log" || fail "records lost or torn"
echo "writer: $n records, stalled while frozen, none lost"

# A thaw with nothing frozen is harmless.
[ "$("$AGENT" thaw | jq -r .thawed)" = false ] || fail "idempotent thaw"

# --- all or nothing -----------------------------------------------------------
if err=$("$AGENT" freeze --volume a --volume b --volume c 2>&1); then
	fail "freeze with tmpfs accepted"
fi
grep -q "$C" <<<"$err" || fail "error does not name the bad volume: $err"
grep -q "does not support freezing" <<<"$err" || fail "reason: $err"
is_frozen "$A" && fail "$A left frozen by a failed request"
is_frozen "$B" && fail "$B left frozen by a failed request"

fsfreeze -f "$B"
if err=$("$AGENT" freeze --volume a --volume b 2>&1); then fail "freeze over a foreign freeze"; fi
grep -q "already frozen by someone else" <<<"$err" || fail "reason: $err"
is_frozen "$A" && fail "$A left frozen next to a foreign freeze"
# The agent must not thaw a freeze it does not own.
is_frozen "$B" || fail "foreign freeze of $B was undone"
fsfreeze -u "$B"

if "$AGENT" freeze --volume nosuch 2>/dev/null; then fail "unknown volume accepted"; fi

# --- one filesystem, frozen once -------------------------------------------------
"$AGENT" thaw -q
out=$("$AGENT" freeze --volume "$A" --volume "$A/sub" --volume a)
[ "$(jq '.volumes | length' <<<"$out")" = 1 ] || fail "dedupe: $out"
[ "$(jq .deadlineSeconds <<<"$out")" = 90 ] || fail "default deadline 1m30s: $out"
"$AGENT" thaw -q

# --- metrics ---------------------------------------------------------------------
m=$(curl -sf --unix-socket "$SOCK" http://agent/metrics)
grep -q '^stasis_agent_freezes_total 2' <<<"$m" || fail "freezes_total: $m"
grep -q '^stasis_agent_freeze_window_seconds_count 2' <<<"$m" || fail "window histogram: $m"
grep -q '^stasis_agent_failures_total{op="freeze"} [1-9]' <<<"$m" || fail "failures: $m"
curl -sf --unix-socket "$SOCK" http://agent/healthz | jq -e .ok >/dev/null || fail "healthz"

# --- SIGTERM and SIGINT thaw before exit -------------------------------------------
for sig in TERM INT; do
	"$AGENT" freeze --volume a --volume b --timeout 5m -q
	is_frozen "$A" || fail "not frozen before SIG$sig"
	kill -$sig "$APID"
	rc=0
	wait "$APID" || rc=$?
	[ $rc = 0 ] || fail "agent exit status $rc after SIG$sig"
	is_frozen "$A" && fail "SIG$sig left $A frozen"
	is_frozen "$B" && fail "SIG$sig left $B frozen"
	[ -e "$STATE/frozen.json" ] && fail "journal left after a clean thaw"
	grep -q "shutdown: thawed" "$ALOG" || fail "no shutdown thaw logged"
	agent_start --volume "$A" --volume "$B"
done

# --- the state dir may not share a filesystem with a volume -------------------------
kill -TERM "$APID"
wait "$APID" || true
mkdir -p "$A/state"
"$AGENT" serve --state-dir "$A/state" --volume "$A" >"$T/onvol.log" 2>&1 &
AGENT_PIDS+=($!)
for _ in $(seq 50); do [ -S "$A/state/agent.sock" ] && break; sleep 0.1; done
if err=$("$AGENT" freeze --socket "$A/state/agent.sock" 2>&1); then
	fail "froze the filesystem holding the state dir"
fi
grep -q "shares a filesystem with the state dir" <<<"$err" || fail "reason: $err"
echo "agent_freeze: ok"
