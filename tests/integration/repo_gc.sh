#!/usr/bin/env bash
# gc on file://: keeps packs referenced by any snapshot, deletes unreferenced
# ones older than the grace period, keeps young ones, and refuses to run while
# a live backup lock exists (a stale one is ignored).
set -euo pipefail
. "$(dirname "$0")/repo_common.inc"

R=file://$WORK/repo
mkdir -p "$WORK/repo" "$WORK/a" "$WORK/b" "$WORK/c"
head -c $((20 * 1024 * 1024)) /dev/urandom >"$WORK/a/fa"
head -c $((20 * 1024 * 1024)) /dev/urandom >"$WORK/b/fb"
head -c $((3 * 1024 * 1024)) /dev/urandom >"$WORK/c/fc"
"$AGENT" repo init --repo "$R" >/dev/null
sa=$(json_field "$("$AGENT" backup "$WORK/a" --repo "$R" --json | tail -1)" snapshot)
sb=$(json_field "$("$AGENT" backup "$WORK/b" --repo "$R" --json | tail -1)" snapshot)
npacks() { find "$WORK/repo/data" -type f -name '[0-9a-f]*' | wc -l; }
before=$(npacks)

# A live backup lock blocks gc; a stale one does not.
now=$(date +%s)
printf '{"kind":"backup","host":"h","pid":1,"time":%s}' "$now" >"$WORK/repo/locks/live"
set +e
msg=$("$AGENT" repo gc --repo "$R" --grace 0 2>&1)
rc=$?
set -e
[ $rc = 1 ] && echo "$msg" | grep -q "repository is locked" ||
	{ echo "FAIL: gc ran under a live backup lock: $msg"; exit 1; }
[ "$(npacks)" = "$before" ]
printf '{"kind":"backup","host":"h","pid":1,"time":%s}' $((now - 7200)) >"$WORK/repo/locks/live"

# Nothing unreferenced yet: gc deletes nothing.
"$AGENT" repo gc --repo "$R" --grace 0 | tee "$WORK/gc0"
grep -q " 0 deleted" "$WORK/gc0"
[ "$(npacks)" = "$before" ]

# Forget A: its packs go, B's stay and B restores intact.
"$AGENT" repo forget "$sa" --repo "$R" | grep -q "forgot snapshot $sa"
"$AGENT" repo gc --repo "$R" --grace 0 | tee "$WORK/gc1"
after=$(npacks)
echo "packs: $before before, $after after"
[ "$after" -lt "$before" ] || { echo "FAIL: gc removed nothing"; exit 1; }
[ "$after" -ge 1 ] || { echo "FAIL: gc removed everything"; exit 1; }
"$AGENT" repo check --repo "$R"
"$AGENT" restore "$sb" --target "$WORK/dst" --repo "$R" >/dev/null
cmp "$WORK/b/fb" "$WORK/dst/fb"
set +e
"$AGENT" restore "$sa" --target "$WORK/gone" --repo "$R" >/dev/null 2>&1
rc=$?
set -e
[ $rc = 1 ] || { echo "FAIL: a forgotten snapshot still restores"; exit 1; }

# Within the default grace period an unreferenced pack is kept.
sc=$(json_field "$("$AGENT" backup "$WORK/c" --repo "$R" --json | tail -1)" snapshot)
"$AGENT" repo forget "$sc" --repo "$R" >/dev/null
n1=$(npacks)
"$AGENT" repo gc --repo "$R" | tee "$WORK/gc2"
grep -q "[1-9][0-9]* unreferenced but younger" "$WORK/gc2"
[ "$(npacks)" = "$n1" ]
"$AGENT" repo check --repo "$R"
echo "gc OK"
