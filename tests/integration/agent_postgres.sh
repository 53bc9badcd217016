#!/usr/bin/env bash
# A PostgreSQL 15 data directory on an XFS volume (an image in the reflink
# pool) is snapshotted by `stasis-agent snapshot` while pgbench writes to it.
# A copy of the mounted snapshot starts as a new cluster (crash recovery
# from WAL), and pgbench's invariants hold: the sums of balances over
# accounts, tellers and branches all equal the sum of history deltas.
set -euo pipefail
. "$(dirname "$0")/agent_common.inc"

PGBIN=/usr/lib/postgresql/15/bin
if [ ! -x "$PGBIN/initdb" ] || ! command -v pgbench >/dev/null || ! id postgres >/dev/null 2>&1; then
	echo "PostgreSQL 15 (initdb, pg_ctl, pgbench, user postgres) is not installed"
	exit 77
fi
as_pg() { runuser -u postgres -- "$@"; }

pool_create 2G
vol_create pg xfs 640M
V=$T/vol/pg
chmod 755 "$T" "$T/vol"
mkdir -p "$V/data" "$T/sock" "$T/logs"
chown postgres:postgres "$V/data" "$T/sock" "$T/logs"
as_pg "$PGBIN/initdb" -D "$V/data" -A trust -U postgres >/dev/null

pg_start() { # DATADIR PORT LOG
	as_pg "$PGBIN/pg_ctl" -D "$1" -l "$3" -w -t 60 start \
		-o "-p $2 -k $T/sock -c listen_addresses= -c fsync=on" >/dev/null
	CLEANUP_HOOKS+=("runuser -u postgres -- $PGBIN/pg_ctl -D $1 -m immediate stop >/dev/null 2>&1")
}
pg_stop() { as_pg "$PGBIN/pg_ctl" -D "$1" -m fast -w stop >/dev/null; }
sql() { # PORT QUERY
	as_pg psql -h "$T/sock" -p "$1" -U postgres -d postgres -XAtq -c "$2"
}

P1=$(free_port)
pg_start "$V/data" "$P1" "$T/logs/pg1.log"
as_pg pgbench -h "$T/sock" -p "$P1" -U postgres -i -s 4 -q postgres >/dev/null 2>&1
as_pg pgbench -h "$T/sock" -p "$P1" -U postgres -c 4 -j 2 -T 12 postgres >"$T/bench.out" 2>&1 &
BENCH=$!
sleep 4

out=$("$AGENT" snapshot --volume "$V" --json)
echo "snapshot under pgbench: $(jq -c '{id, freezeWindowMs, cutMs}' <<<"$out")"
mnt=$(jq -r .mountpoint <<<"$out")
live_hist=$(sql "$P1" "select count(*) from pgbench_history")
wait "$BENCH" || fail "pgbench failed: $(cat "$T/bench.out")"
pg_stop "$V/data"

# Start a new cluster from a copy of the read-only snapshot (as a restore would).
cp -a "$mnt/data" "$T/restored"
rm -f "$T/restored/postmaster.pid"
chown -R postgres:postgres "$T/restored"
chmod 700 "$T/restored"
P2=$(free_port)
pg_start "$T/restored" "$P2" "$T/logs/pg2.log" || fail "restored cluster did not start: $(cat "$T/logs/pg2.log")"
grep -q "database system is ready to accept connections" "$T/logs/pg2.log" || fail "not ready"

hist=$(sql "$P2" "select count(*) from pgbench_history")
[ "$hist" -gt 0 ] || fail "the snapshot holds no pgbench transactions"
[ "$hist" -le "$live_hist" ] || fail "snapshot has more history ($hist) than the live database had"
sums=$(sql "$P2" "select (select sum(abalance) from pgbench_accounts), \
	(select sum(tbalance) from pgbench_tellers), (select sum(bbalance) from pgbench_branches), \
	(select coalesce(sum(delta), 0) from pgbench_history)")
IFS='|' read -r a t b h <<<"$sums"
[ "$a" = "$h" ] && [ "$t" = "$h" ] && [ "$b" = "$h" ] || fail "invariants broken: $sums"
echo "restored cluster: $hist transactions, balances $a = $t = $b = $h"
as_pg "$PGBIN/pg_amcheck" --install-missing -h "$T/sock" -p "$P2" -U postgres -d postgres >"$T/amcheck.out" 2>&1 ||
	fail "pg_amcheck: $(cat "$T/amcheck.out")"
pg_stop "$T/restored"
"$AGENT" snapshot delete "$(jq -r .id <<<"$out")" >/dev/null
echo "agent_postgres: ok"
