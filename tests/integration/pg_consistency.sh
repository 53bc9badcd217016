#!/usr/bin/env bash
# Crash consistency on a real database, standalone host mode: PostgreSQL 15
# on an XFS volume image (reflink pool) under continuous pgbench load; five
# backups through `stasis-agent backup --volume` (freeze -> image clone ->
# thaw -> back up the clone); each restored onto a fresh volume image, where
# PostgreSQL must start (crash recovery) and pgbench's TPC-B invariant must
# hold: sum(abalance) = sum(tbalance) = sum(bbalance) = sum(delta).
# For information only, the same check on plain copies of the live data
# directory (no freeze, no snapshot) is printed afterwards.
set -euo pipefail
. "$(dirname "$0")/agent_common.inc"

PGBIN=/usr/lib/postgresql/15/bin
if [ ! -x "$PGBIN/initdb" ] || ! command -v pgbench >/dev/null || ! id postgres >/dev/null 2>&1; then
	echo "PostgreSQL 15 (initdb, pg_ctl, pgbench, user postgres) is not installed"
	exit 77
fi
as_pg() { runuser -u postgres -- "$@"; }
export STASIS_REPO_KEY="consistency test key"
R=file://$T/repo
mkdir -p "$T/repo" "$T/sock" "$T/logs"
chmod 755 "$T" "$T/vol"
chown postgres:postgres "$T/sock" "$T/logs"

pool_create 4G
vol_create pg xfs 400M
V=$T/vol/pg
mkdir -p "$V/data"
chown postgres:postgres "$V/data"
as_pg "$PGBIN/initdb" -D "$V/data" -A trust -U postgres >/dev/null

pg_start() { # DATADIR PORT LOG
	as_pg "$PGBIN/pg_ctl" -D "$1" -l "$3" -w -t 120 start \
		-o "-p $2 -k $T/sock -c listen_addresses=" >/dev/null
	CLEANUP_HOOKS+=("runuser -u postgres -- $PGBIN/pg_ctl -D $1 -m immediate stop >/dev/null 2>&1")
}
pg_stop() { as_pg "$PGBIN/pg_ctl" -D "$1" -m fast -w stop >/dev/null; }
sql() { as_pg psql -h "$T/sock" -p "$1" -U postgres -d postgres -XAtq -c "$2"; }

# check DATADIR LABEL: starts PostgreSQL on a restored data directory and
# prints "ok N" or "bad: reason"; never fails the script itself.
check() {
	local dir=$1 label=$2 port sums a t b h n
	rm -f "$dir/postmaster.pid"
	chown -R postgres:postgres "$dir"
	chmod 700 "$dir"
	port=$(free_port)
	if ! as_pg "$PGBIN/pg_ctl" -D "$dir" -l "$T/logs/$label.log" -w -t 120 start \
		-o "-p $port -k $T/sock -c listen_addresses=" >/dev/null 2>&1; then
		echo "bad: PostgreSQL did not start ($(grep -E 'FATAL|PANIC' "$T/logs/$label.log" | head -1))"
		return 0
	fi
	CLEANUP_HOOKS+=("runuser -u postgres -- $PGBIN/pg_ctl -D $dir -m immediate stop >/dev/null 2>&1")
	if ! sums=$(sql "$port" "select (select sum(abalance) from pgbench_accounts), (select sum(tbalance) from pgbench_tellers), (select sum(bbalance) from pgbench_branches), (select coalesce(sum(delta),0) from pgbench_history), (select count(*) from pgbench_history)" 2>&1); then
		echo "bad: query failed: $sums"
	else
		IFS='|' read -r a t b h n <<<"$sums"
		if [ "$a" = "$h" ] && [ "$t" = "$h" ] && [ "$b" = "$h" ]; then
			echo "ok $n"
		else
			echo "bad: invariant broken ($sums)"
		fi
	fi
	pg_stop "$dir" || true
}

P=$(free_port)
pg_start "$V/data" "$P" "$T/logs/live.log"
as_pg pgbench -h "$T/sock" -p "$P" -U postgres -i -s 1 -q postgres >/dev/null 2>&1
"$AGENT" repo init --repo "$R" >/dev/null
as_pg pgbench -h "$T/sock" -p "$P" -U postgres -c 4 -j 2 -T 300 postgres >"$T/bench.out" 2>&1 &
BENCH=$!
CLEANUP_HOOKS=("kill $BENCH 2>/dev/null" "${CLEANUP_HOOKS[@]}")
sleep 3

snaps=()
for i in 1 2 3 4 5; do
	"$AGENT" backup --volume "$V" --method image --state-dir "$STATE" --repo "$R" \
		>"$T/backup$i.out" 2>&1 || fail "backup $i: $(cat "$T/backup$i.out")"
	snap=$(grep -oE 'snapshot [0-9a-f]{64} saved' "$T/backup$i.out" | cut -d' ' -f2)
	[ -n "$snap" ] || fail "backup $i printed no snapshot id: $(cat "$T/backup$i.out")"
	snaps+=("$snap")
	echo "backup $i: $(grep -oE 'frozen [0-9.]+ ms' "$T/backup$i.out"), snapshot ${snap:0:8}"
	# A plain copy of the live directory, for comparison only.
	cp -a "$V/data" "$T/plain$i" 2>/dev/null || true
	sleep 1
done
kill -0 "$BENCH" 2>/dev/null || fail "pgbench stopped early: $(tail -3 "$T/bench.out")"
kill "$BENCH" 2>/dev/null || true
wait "$BENCH" 2>/dev/null || true
pg_stop "$V/data"

pass=0
for i in 1 2 3 4 5; do
	vol_create "r$i" xfs 400M
	"$AGENT" restore "${snaps[$((i - 1))]}" --target "$T/vol/r$i" --repo "$R" >/dev/null
	res=$(check "$T/vol/r$i/data" "restore$i")
	echo "restore $i: $res"
	case $res in ok*) pass=$((pass + 1)) ;; esac
done

plain_ok=0
for i in 1 2 3 4 5; do
	res=$(check "$T/plain$i" "plain$i")
	echo "information: plain copy $i (no freeze, no snapshot): $res"
	case $res in ok*) plain_ok=$((plain_ok + 1)) ;; esac
done
echo "frozen snapshots: $pass/5 consistent; plain copies: $plain_ok/5 consistent (information)"
[ "$pass" = 5 ] || fail "only $pass of 5 restored backups are consistent"
echo "pg_consistency: ok"
