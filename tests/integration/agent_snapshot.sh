#!/usr/bin/env bash
# Snapshot backends on real filesystems. image: on ext4 and XFS volumes that
# live as image files in a reflink XFS pool, a snapshot cut while the daemon
# holds the freeze is, mounted read-only, byte for byte the frozen state
# while the writer keeps writing after thaw; the standalone command (its own
# freeze) gives a clean prefix of a running writer. TTL expiry, mount/unmount
# cycles, the copy backend, the btrfs backend on a subvolume, and refusals
# (image on a non-loop filesystem, btrfs on a plain directory).
set -euo pipefail
. "$(dirname "$0")/agent_common.inc"

pool_create 2G
vol_create e ext4
vol_create x xfs

# tree_sum DIR: sha256 of every file's path, size and content.
tree_sum() {
	(cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
}

populate() {
	mkdir -p "$1/small"
	head -c 8M /dev/urandom >"$1/big.bin"
	for i in $(seq 200); do echo "file $i" >"$1/small/$i.txt"; done
	ln -s big.bin "$1/link"
}

start_writer() { # DIR TAG: appends records, rewrites blocks until $T/stop-TAG; pid in $W
	local d=$1 tag=$2
	(
		i=0
		while [ ! -e "$T/stop-$tag" ]; do
			i=$((i + 1))
			echo "record $i" >>"$d/log"
			dd if=/dev/urandom of="$d/churn" bs=4k count=4 seek=$((i % 64)) conv=notrunc \
				status=none
			sleep 0.005
		done
	) >/dev/null 2>&1 &
	W=$!
}

agent_start --volume "$T/vol/e" --volume "$T/vol/x"

for fs in e x; do
	V=$T/vol/$fs
	populate "$V"
	start_writer "$V" "$fs"
	sleep 0.5

	# --- cut under the daemon's freeze: the snapshot equals the frozen state ----
	"$AGENT" freeze --volume "$fs" --timeout 60s -q
	tree_sum "$V" >"$T/frozen-$fs.sum"
	snap=$("$AGENT" snapshot --volume "$V" --already-frozen --json --ttl 1h)
	"$AGENT" thaw -q
	id=$(jq -r .id <<<"$snap")
	mnt=$(jq -r .mountpoint <<<"$snap")
	[ "$(jq -r .method <<<"$snap")" = image ] || fail "method: $snap"
	[ "$(jq -r .source <<<"$snap")" = "$T/pool/$fs.img" ] || fail "backing file: $snap"
	sleep 0.5
	tree_sum "$mnt" >"$T/snap-$fs.sum"
	cmp "$T/frozen-$fs.sum" "$T/snap-$fs.sum" || fail "$fs: snapshot differs from the frozen state"
	[ "$(tree_sum "$V")" = "$(cat "$T/frozen-$fs.sum")" ] && fail "$fs: the writer did not continue"
	findmnt -no OPTIONS "$mnt" | grep -q '^ro' || fail "$fs: snapshot not mounted read-only"
	if touch "$mnt/x" 2>/dev/null; then fail "$fs: snapshot writable"; fi
	echo "$fs: snapshot == frozen state ($(wc -l <"$T/frozen-$fs.sum") files)"

	# unmount / mount again / delete
	"$AGENT" snapshot unmount "$id"
	findmnt "$mnt" >/dev/null && fail "$fs: still mounted after unmount"
	m2=$("$AGENT" snapshot mount "$id" --json | jq -r .mountpoint)
	tree_sum "$m2" | cmp - "$T/frozen-$fs.sum" || fail "$fs: remount differs"
	"$AGENT" snapshot delete "$id" >/dev/null
	[ -e "$T/pool/$fs.img.$id" ] && fail "$fs: clone left after delete"
	findmnt "$m2" >/dev/null && fail "$fs: mounted after delete"

	# --- standalone: freeze -> clone -> thaw by the command itself ---------------
	out=$("$AGENT" snapshot --volume "$V" --ttl 1h)
	grep -q '^freeze  *[0-9.]* ms' <<<"$out" || fail "no freeze window printed: $out"
	id=$(awk '/^snapshot/ {print $2}' <<<"$out")
	mnt=$(awk '/^mounted/ {print $2}' <<<"$out")
	touch "$T/stop-$fs"
	wait "$W"
	n=$(wc -l <"$mnt/log")
	head -n "$n" "$V/log" | cmp - "$mnt/log" || fail "$fs: log in the snapshot is not a prefix"
	tail -n1 "$mnt/log" | grep -q "^record $n\$" || fail "$fs: torn last record"
	cmp "$V/big.bin" "$mnt/big.bin" || fail "$fs: static file differs"
	"$AGENT" snapshot list | grep -q "^$id " || fail "$fs: list does not show $id"
	echo "$fs: standalone snapshot $id holds $n records, window $(awk '/^freeze/ {print $2}' <<<"$out") ms"
	"$AGENT" snapshot delete "$id" >/dev/null
done

# --- TTL: a snapshot whose owner never came back --------------------------------------
id=$("$AGENT" snapshot --volume "$T/vol/e" --ttl 1s --no-mount --json | jq -r .id)
keep=$("$AGENT" snapshot --volume "$T/vol/x" --ttl 1h --no-mount --json | jq -r .id)
sleep 2
"$AGENT" snapshot gc | grep -q "removed 1 " || fail "gc did not remove the expired snapshot"
[ -e "$T/pool/e.img.$id" ] && fail "expired clone still in the pool"
"$AGENT" snapshot list | grep -q "^$keep " || fail "gc removed an unexpired snapshot"
"$AGENT" snapshot delete "$keep" >/dev/null

# --- copy: opt-in, frozen for the whole copy, warned ---------------------------------
out=$("$AGENT" snapshot --volume "$T/vol/e" --method copy --json 2>"$T/copy.err")
grep -q "stays frozen for the whole copy" "$T/copy.err" || fail "copy not warned"
mnt=$(jq -r .mountpoint <<<"$out")
tree_sum "$T/vol/e" | cmp - <(tree_sum "$mnt") || fail "copy differs from the volume"
[ "$(readlink "$mnt/link")" = big.bin ] || fail "copy lost a symlink"
"$AGENT" snapshot delete "$(jq -r .id <<<"$out")" >/dev/null
is_frozen "$T/vol/e" && fail "copy left the volume frozen"

# --- refusals -----------------------------------------------------------------------------
mkdir -p "$T/vol/t"
mount -t tmpfs tmpfs "$T/vol/t"
if err=$("$AGENT" snapshot --volume "$T/vol/t" 2>&1); then fail "image of tmpfs accepted"; fi
grep -q "not a loop-backed image" <<<"$err" || fail "reason: $err"
if err=$("$AGENT" snapshot --volume "$T/vol/e" --method csi 2>&1); then fail "csi accepted"; fi
grep -q "cut by the controller" <<<"$err" || fail "csi reason: $err"

# --- btrfs: read-only subvolume snapshot, no freeze ----------------------------------------
if command -v mkfs.btrfs >/dev/null && command -v btrfs >/dev/null; then
	truncate -s 512M "$T/pool/btr.img"
	mkfs.btrfs -q "$T/pool/btr.img" >/dev/null
	l=$(losetup -f --show "$T/pool/btr.img")
	LOOPS+=("$l")
	mkdir -p "$T/vol/btr"
	mount "$l" "$T/vol/btr"
	btrfs -q subvolume create "$T/vol/btr/pg"
	populate "$T/vol/btr/pg"
	start_writer "$T/vol/btr/pg" btr
	sleep 1
	out=$("$AGENT" snapshot --volume "$T/vol/btr/pg" --method btrfs --json)
	touch "$T/stop-btr"
	wait "$W"
	[ "$(jq -r .freezeWindowMs <<<"$out")" = 0 ] || fail "btrfs froze: $out"
	mnt=$(jq -r .mountpoint <<<"$out")
	n=$(wc -l <"$mnt/log")
	[ "$n" -gt 0 ] || fail "btrfs snapshot holds no records"
	head -n "$n" "$T/vol/btr/pg/log" | cmp - "$mnt/log" || fail "btrfs log not a prefix"
	cmp "$T/vol/btr/pg/big.bin" "$mnt/big.bin" || fail "btrfs static file differs"
	btrfs property get -ts "$(jq -r .path <<<"$out")" ro | grep -q true ||
		fail "btrfs snapshot is not read-only"
	"$AGENT" snapshot delete "$(jq -r .id <<<"$out")" >/dev/null
	btrfs subvolume list "$T/vol/btr" | grep -q "@btrfs-" && fail "btrfs snapshot not deleted"
	mkdir -p "$T/vol/btr/pg/plain"
	if err=$("$AGENT" snapshot --volume "$T/vol/btr/pg/plain" --method btrfs 2>&1); then
		fail "btrfs snapshot of a plain directory"
	fi
	grep -q "not a btrfs subvolume" <<<"$err" || fail "reason: $err"
	echo "btrfs: read-only snapshot with $n records, no freeze"
else
	echo "btrfs tools missing: btrfs backend not covered here"
fi

[ "$("$AGENT" snapshot list | wc -l)" = 0 ] || fail "snapshots left: $("$AGENT" snapshot list)"
echo "agent_snapshot: ok"
