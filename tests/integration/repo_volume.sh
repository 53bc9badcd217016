#!/usr/bin/env bash
# backup --volume: an ext4 volume image in a reflink XFS pool is frozen,
# cloned and thawed by the image backend, the mounted clone is backed up, the
# clone is deleted; the restore equals the volume's content at the cut, the
# volume is left thawed and no snapshot is left behind.
set -euo pipefail
# Pool, volumes, loop devices and the cleanup trap come from the agent tests.
. "$(dirname "$0")/agent_common.inc"
export STASIS_REPO_KEY="volume test key"

pool_create 1G
vol_create v ext4 200M
mkdir -p "$T/vol/v/www" "$T/repo"
echo "hello world 001" >"$T/vol/v/www/index.html"
head -c $((20 * 1024 * 1024)) /dev/urandom >"$T/vol/v/data.bin"
setfattr -n user.k -v v "$T/vol/v/www/index.html"
sync
R=file://$T/repo
"$AGENT" repo init --repo "$R" >/dev/null
out=$("$AGENT" backup --volume "$T/vol/v" --method image --state-dir "$STATE" --repo "$R" --json |
	tail -1)
snap=$(jq -r .snapshot <<<"$out")
[ -n "$snap" ] && [ "$snap" != null ] || fail "no snapshot id in: $out"
# written after the cut: must not be in the backup
echo "later" >"$T/vol/v/after.txt" || fail "volume left frozen"
"$AGENT" repo list --repo "$R" | grep -q "$T/vol/v" || fail "snapshot does not record the volume path"
"$AGENT" restore "$snap" --target "$T/out" --repo "$R" >/dev/null
cmp "$T/vol/v/www/index.html" "$T/out/www/index.html"
cmp "$T/vol/v/data.bin" "$T/out/data.bin"
[ ! -e "$T/out/after.txt" ] || fail "backup saw a write made after the cut"
[ "$(getfattr -n user.k --only-values "$T/out/www/index.html")" = v ] || fail "xattr lost"
left=$(find "$STATE/snapshots" -name '*.json' 2>/dev/null | wc -l)
[ "$left" = 0 ] || fail "$left snapshot(s) left behind"
is_frozen "$T/vol/v" && fail "volume still frozen"
echo "volume backup OK"
