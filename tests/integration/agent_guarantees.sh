#!/usr/bin/env bash
# The never-left-frozen guarantees of stasis-agent serve, each forced:
# the caller vanishes (killed) and the deadline thaws; the agent process is
# stopped (SIGSTOP: a stuck main thread) and its watchdog still thaws on
# time; the agent is killed with SIGKILL and its watchdog thaws at once; the
# agent and its watchdog are both killed and the next start thaws from the
# journal.
set -euo pipefail
. "$(dirname "$0")/agent_common.inc"

pool_create 1G
vol_create a ext4
A=$T/vol/a
agent_start --volume "$A"

# --- the caller is killed after freezing: the deadline thaws -------------------
(
	"$AGENT" freeze --timeout 2s -q
	sleep 60
	"$AGENT" thaw
) &
CLIENT=$!
# Poll the daemon, not the filesystem: a probe freeze would race the client's.
for _ in $(seq 50); do [ "$(status_field frozen)" = true ] && break; sleep 0.05; done
is_frozen "$A" || fail "client did not freeze"
t0=$(date +%s%N)
kill -9 $CLIENT
wait $CLIENT 2>/dev/null || true
wait_thawed "$A" 5 || fail "not thawed 5 s after a 2 s deadline"
held=$((($(date +%s%N) - t0) / 1000000))
[ $held -ge 1200 ] || fail "thawed after ${held} ms, before the deadline"
echo "auto-thaw: held ${held} ms after the client died (deadline 2 s)"
for _ in $(seq 20); do [ "$(status_field autoThaws)" = 1 ] && break; sleep 0.1; done
[ "$(status_field autoThaws)" = 1 ] || fail "autoThaws not counted"
[ "$(status_field frozen)" = false ] || fail "status still says frozen"
[ -e "$STATE/frozen.json" ] && fail "journal kept after the auto-thaw"
# The late post-hook learns that its freeze did not hold.
if err=$("$AGENT" thaw 2>&1); then fail "late thaw reported success"; fi
grep -q "thawed by the watchdog" <<<"$err" || fail "late thaw reason: $err"

# --- the agent is stuck (SIGSTOP): the watchdog process still thaws -------------
"$AGENT" freeze --timeout 2s -q
kill -STOP "$APID"
wait_thawed "$A" 5 || fail "a stopped agent left $A frozen past its deadline"
[ "$(ps -o stat= -p "$APID" | cut -c1)" = T ] || fail "agent was not stopped during the test"
kill -CONT "$APID"
for _ in $(seq 20); do [ "$(status_field autoThaws)" = 2 ] && break; sleep 0.1; done
[ "$(status_field autoThaws)" = 2 ] || fail "stopped-agent auto-thaw not counted"
echo "stuck agent: watchdog thawed on time"

# --- SIGKILL of the agent: its watchdog thaws at once ------------------------------
"$AGENT" freeze --timeout 5m -q
WD=$(status_field watchdogPid)
kill -9 "$APID"
wait "$APID" 2>/dev/null || true
wait_thawed "$A" 3 || fail "SIGKILL of the agent left $A frozen"
for _ in $(seq 30); do kill -0 "$WD" 2>/dev/null || break; sleep 0.1; done
kill -0 "$WD" 2>/dev/null && fail "watchdog outlived its agent"
[ -e "$STATE/frozen.json" ] || fail "journal missing after a crash"
agent_start --volume "$A"
[ -e "$STATE/frozen.json" ] && fail "restart did not clear the journal"
echo "SIGKILL: watchdog thawed at once"

# --- agent and watchdog both killed: the next start thaws ---------------------------
"$AGENT" freeze --timeout 5m -q
WD=$(status_field watchdogPid)
kill -9 "$WD"
for _ in $(seq 30); do
	code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" http://agent/healthz)
	[ "$code" = 503 ] && break
	sleep 0.1
done
[ "$code" = 503 ] || fail "healthz is $code with the watchdog dead"
kill -9 "$APID"
wait "$APID" 2>/dev/null || true
is_frozen "$A" || fail "the test needs $A still frozen here"
agent_start --volume "$A"
is_frozen "$A" && fail "restart did not thaw $A"
grep -q "thawed 1 filesystem(s) left frozen by a previous run" "$ALOG" || fail "no recovery log"
[ "$(status_field autoThaws)" = 1 ] || fail "recovery not counted as an auto-thaw"
echo "crash of both: restart thawed"

# --- and the agent still works afterwards ---------------------------------------------
"$AGENT" freeze --timeout 10s -q
is_frozen "$A" || fail "freeze after recovery"
"$AGENT" thaw -q
is_frozen "$A" && fail "thaw after recovery"
echo "agent_guarantees: ok"
