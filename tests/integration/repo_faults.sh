#!/usr/bin/env bash
# Faults on file://: wrong key; a flipped byte in a pack (check and restore
# name the file and the chunk); disk full during restore (a 4 MiB tmpfs as the
# target); a backup killed mid-way (no snapshot, nothing referenced is missing,
# the rerun uploads only what is missing).
set -euo pipefail
. "$(dirname "$0")/repo_common.inc"

R=file://$WORK/repo
mkdir -p "$WORK/repo" "$WORK/src"
head -c $((12 * 1024 * 1024)) /dev/urandom >"$WORK/src/victim.bin"
echo "small" >"$WORK/src/small.txt"
"$AGENT" repo init --repo "$R" >/dev/null
snap=$(json_field "$("$AGENT" backup "$WORK/src" --repo "$R" --json | tail -1)" snapshot)

# Wrong key: a clear message and exit 1, for every verb.
for verb in "repo list" "repo check" "restore $snap --target $WORK/x"; do
	set +e
	msg=$(STASIS_REPO_KEY=wrong "$AGENT" $verb --repo "$R" 2>&1)
	rc=$?
	set -e
	[ $rc = 1 ] || { echo "FAIL: wrong key: '$verb' exited $rc"; exit 1; }
	echo "$msg" | grep -q "wrong repository key" || { echo "FAIL: wrong key message: $msg"; exit 1; }
done

# Disk full during restore: a clear error, exit 1, no crash.
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$WORK/full"
	mount -t tmpfs -o size=4m tmpfs "$WORK/full"
	cleanup_hooks+=("umount '$WORK/full'")
	set +e
	msg=$("$AGENT" restore "$snap" --target "$WORK/full/t" --repo "$R" 2>&1)
	rc=$?
	set -e
	echo "disk full: exit $rc: $msg"
	[ $rc = 1 ] || { echo "FAIL: disk full exited $rc"; exit 1; }
	echo "$msg" | grep -q "No space left on device" || { echo "FAIL: disk full message"; exit 1; }
	echo "$msg" | grep -q "victim.bin" || { echo "FAIL: disk full does not name the file"; exit 1; }
else
	echo "disk-full case skipped: needs root to mount a tmpfs"
fi

# Flipped byte in the middle of the biggest pack.
pack=$(find "$WORK/repo/data" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2)
size=$(stat -c %s "$pack")
off=$((size / 2))
byte=$(od -An -tu1 -j "$off" -N1 "$pack" | tr -d ' ')
printf "$(printf '\\%03o' $((byte ^ 0x20)))" | dd of="$pack" bs=1 seek="$off" conv=notrunc status=none
set +e
msg=$("$AGENT" repo check --repo "$R" 2>&1)
rc=$?
set -e
echo "$msg"
[ $rc = 1 ] || { echo "FAIL: check exited $rc on a damaged pack"; exit 1; }
echo "$msg" | grep -q "file 'victim.bin'.*chunk [0-9a-f]\{64\}" ||
	{ echo "FAIL: check does not name the file and chunk"; exit 1; }
set +e
msg=$("$AGENT" restore "$snap" --target "$WORK/bad" --repo "$R" 2>&1)
rc=$?
set -e
echo "$msg"
[ $rc = 1 ] || { echo "FAIL: restore exited $rc on a damaged pack"; exit 1; }
echo "$msg" | grep -q "'victim.bin'.*chunk [0-9a-f]\{64\}" ||
	{ echo "FAIL: restore does not name the file and chunk"; exit 1; }

# A backup killed mid-way.
R2=file://$WORK/repo2
mkdir -p "$WORK/repo2" "$WORK/src2"
for i in 1 2 3 4; do head -c $((40 * 1024 * 1024)) /dev/urandom >"$WORK/src2/f$i"; done
"$AGENT" repo init --repo "$R2" >/dev/null
"$AGENT" backup "$WORK/src2" --repo "$R2" --jobs 1 >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 600); do
	n=$( (find "$WORK/repo2/data" -type f -name '[0-9a-f]*' 2>/dev/null || true) | wc -l)
	[ "$n" -ge 3 ] && break
	kill -0 $pid 2>/dev/null || break
	sleep 0.05
done
kill -9 $pid 2>/dev/null || { echo "FAIL: backup finished before it could be killed"; exit 1; }
wait $pid 2>/dev/null || true
packs=$(find "$WORK/repo2/data" -type f -name '[0-9a-f]*' | wc -l)
echo "killed backup left $packs pack(s)"
[ "$packs" -ge 1 ]
[ -z "$(ls "$WORK/repo2/snapshots" 2>/dev/null)" ] || { echo "FAIL: snapshot after kill"; exit 1; }
"$AGENT" repo check --repo "$R2"
out=$("$AGENT" backup "$WORK/src2" --repo "$R2" --json | tail -1)
total=$(json_field "$out" bytes)
new=$(json_field "$out" bytes_new)
echo "rerun: $new new bytes of $total"
[ "$new" -lt "$total" ] || { echo "FAIL: the rerun uploaded everything again"; exit 1; }
"$AGENT" repo check --repo "$R2"
"$AGENT" restore latest --target "$WORK/dst2" --repo "$R2" >/dev/null
for i in 1 2 3 4; do cmp "$WORK/src2/f$i" "$WORK/dst2/f$i"; done
echo "faults OK"
