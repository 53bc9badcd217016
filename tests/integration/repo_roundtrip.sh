#!/usr/bin/env bash
# Round trip on file://: a tree with every metadata kind is backed up, restored,
# and compared by content (cmp of every file) and by an independent metadata
# listing (find -printf, getfattr, stat), not by our own manifest. Sparse files
# must come back sparse. Then a second backup after changing ~1% of the bytes
# must upload at most 3% of the data.
set -euo pipefail
. "$(dirname "$0")/repo_common.inc"
[ "$(id -u)" = 0 ] || { echo "needs root (owners, device nodes)"; exit 77; }

R=file://$WORK/repo
mkdir -p "$WORK/repo"
gen_tree "$WORK/src"
# Listed before anything reads the tree: reading updates access times.
listing "$WORK/src" >"$WORK/src.list"
"$AGENT" repo init --repo "$R"
out=$("$AGENT" backup "$WORK/src" --repo "$R" --tag first --json | tail -1)
snap=$(json_field "$out" snapshot)
"$AGENT" repo list --repo "$R" | grep -q "first"
"$AGENT" restore "$snap" --target "$WORK/dst" --repo "$R"
listing "$WORK/dst" >"$WORK/dst.list"

# Content: every regular file byte for byte (special files are covered by the listing).
n=0
while IFS= read -r -d '' f; do
	cmp "$WORK/src/$f" "$WORK/dst/$f"
	n=$((n + 1))
done < <(cd "$WORK/src" && find . -type f -print0)
[ "$n" -ge 10 ] || { echo "FAIL: only $n files compared"; exit 1; }
if ! diff -u "$WORK/src.list" "$WORK/dst.list"; then
	echo "FAIL: metadata listings differ"
	exit 1
fi
# The listing must really contain what we claim to compare.
grep -q 'user.color="blue"' "$WORK/dst.list"
grep -q '^random.bin|f|644|1234:5678|' "$WORK/dst.list"
grep -q '^link sub/hardlink -> index.html' "$WORK/dst.list" ||
	grep -q 'sub/hardlink -> index.html\|index.html -> ' "$WORK/dst.list"
src_blocks=$(stat -c %b "$WORK/src/sparse")
dst_blocks=$(stat -c %b "$WORK/dst/sparse")
echo "sparse file blocks: source $src_blocks restored $dst_blocks"
[ "$dst_blocks" -le $((src_blocks + 64)) ] || { echo "FAIL: sparse file came back dense"; exit 1; }

# Incremental: change ~1% of the bytes of a bigger tree, back up again.
mkdir -p "$WORK/inc"
head -c $((384 * 1024 * 1024)) /dev/urandom >"$WORK/inc/big"
for i in $(seq 1 200); do seq "$i" 5000 >"$WORK/inc/small-$i"; done
"$AGENT" backup "$WORK/inc" --repo "$R" --json >/dev/null
total=$(du -sb --apparent-size "$WORK/inc" | cut -f1)
# Overwrite 1% of the data in one place. With 1 MiB average chunks the chunks
# around the change (about one on each side) are uploaded again as well.
head -c $((total / 100)) /dev/urandom |
	dd of="$WORK/inc/big" bs=1M seek=100 conv=notrunc status=none
out=$("$AGENT" backup "$WORK/inc" --repo "$R" --json | tail -1)
new=$(json_field "$out" bytes_new)
echo "incremental: $new new bytes of $total"
[ "$new" -le $((total * 3 / 100)) ] || { echo "FAIL: incremental uploaded $new of $total"; exit 1; }
"$AGENT" restore "$(json_field "$out" snapshot)" --target "$WORK/inc-dst" --repo "$R" >/dev/null
cmp "$WORK/inc/big" "$WORK/inc-dst/big"
"$AGENT" repo check --repo "$R"
echo "round trip and incremental OK"
