#!/usr/bin/env bash
# Runs a throwaway Ceph RGW (S3) on 127.0.0.1 from the Debian packages
# (ceph-mon ceph-osd radosgw ceph-common): one monitor, one memstore OSD and
# one radosgw, all state, logs and sockets under DIR.
#
#   hack/rgw.sh start DIR   start everything, create an S3 user, write DIR/env
#   hack/rgw.sh env DIR     print the env lines (AWS_ACCESS_KEY_ID=..., STASIS_S3_ENDPOINT=...)
#   hack/rgw.sh stop DIR    stop every daemon by the PID recorded in DIR/pids
#   hack/rgw.sh restart-rgw DIR
#                           start radosgw again (same port, same cluster) after
#                           its process was killed (PID in DIR/rgw.pid); the
#                           monitor and the OSD keep running, so every object
#                           stored before survives (memstore keeps data only
#                           while the OSD process lives)
#
# What the configuration needs, and why (Ceph 16, "pacific"):
#  - auth {cluster,service,client} required = none: no keyrings to create or
#    distribute; the cluster only ever listens on 127.0.0.1.
#  - ms bind msgr1 = false and a v2-only mon address; ms mon client mode = crc
#    (the default "secure crc" would negotiate encryption we do not need).
#  - paxos propose interval = 0.1 (default 1 s): each map change (pool
#    creation by radosgw, OSD boot) otherwise waits a second; this is most of
#    the start-up time.
#  - osd objectstore = memstore: no block device or file to format; data
#    lives in the OSD's memory (memstore device bytes caps it) and is gone on
#    stop, which is what a test wants.
#  - osd pool default size = 1, min size = 1 and mon allow pool size one:
#    one OSD must be enough for every pool; osd crush chooseleaf type = 0
#    lets CRUSH place replicas on one host.
#  - osd pool default pg num = 8 and autoscale off: radosgw creates about
#    seven pools and the default of 32 PGs each slows peering on one OSD.
#  - rgw zone/zonegroup are left unset: radosgw creates the "default" ones.
#  - rgw frontends = beast on 127.0.0.1 with a free port, plus an https
#    ssl_endpoint with a certificate from a private CA made here (DIR/tls).
#  - no ceph-mgr: RGW and the OSD do not need one; health warnings about it
#    are harmless here.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
	echo "usage: $0 start|stop|env|restart-rgw DIR" >&2
	exit 2
fi

need() {
	local b
	for b in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph; do
		if ! command -v "$b" >/dev/null 2>&1; then
			echo "rgw.sh: $b not found; install ceph-mon ceph-osd radosgw ceph-common (hack/install-deps.sh)" >&2
			exit 77
		fi
	done
}

# A port nobody listens on (a refused connection), not handed out before in
# this run. Pure bash: a Python start costs seconds on a loaded machine.
used_ports=" "
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 30000))
		case "$used_ports" in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used_ports+="$p "
			echo "$p"
			return
		fi
	done
}

# A private CA and a server certificate for 127.0.0.1, so that the https
# endpoint can be checked with caFile= (and fails verification without it).
gen_tls() {
	local t=$dir/tls
	mkdir -p "$t"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=stasis test CA" -keyout "$t/ca.key" -out "$t/ca.pem" >/dev/null 2>&1
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
		-keyout "$t/server.key" -out "$t/server.csr" >/dev/null 2>&1
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$t/ext"
	openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
		-days 2 -extfile "$t/ext" -out "$t/server.pem" >/dev/null 2>&1
}

stop() {
	local pid
	[ -f "$dir/pids" ] || return 0
	# Reverse order: radosgw, OSD, then the monitor the others talk to.
	for pid in $(tac "$dir/pids"); do
		kill "$pid" 2>/dev/null || true
	done
	for _ in $(seq 50); do
		local alive=0
		for pid in $(cat "$dir/pids"); do
			kill -0 "$pid" 2>/dev/null && alive=1
		done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for pid in $(cat "$dir/pids"); do
		kill -9 "$pid" 2>/dev/null || true
	done
	rm -f "$dir/pids"
}

wait_for() { # seconds description command...
	local t=$1 what=$2
	shift 2
	local end=$((SECONDS + t))
	until "$@" >/dev/null 2>&1; do
		if [ $SECONDS -ge $end ]; then
			echo "rgw.sh: timed out waiting for $what (logs in $dir/log)" >&2
			return 1
		fi
		sleep 0.2
	done
}

start() {
	SECONDS=0
	need
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	stop
	rm -rf "$dir/mon" "$dir/osd" "$dir/run" "$dir/log" "$dir/tls" "$dir/env" "$dir/monmap" "$dir/rgw.pid"
	mkdir -p "$dir/mon/a" "$dir/osd/0" "$dir/run" "$dir/log"
	local mport rport tport fsid conf
	free_port >"$dir/port" && mport=$(cat "$dir/port")
	free_port >"$dir/port" && rport=$(cat "$dir/port")
	free_port >"$dir/port" && tport=$(cat "$dir/port")
	rm -f "$dir/port"
	gen_tls
	fsid=$(cat /proc/sys/kernel/random/uuid)
	conf=$dir/ceph.conf
	cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mport
mon initial members = a
public addr = 127.0.0.1
ms bind msgr1 = false
ms mon client mode = crc
ms mon service mode = crc
ms client mode = crc
ms service mode = crc
ms cluster mode = crc
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
keyring = /dev/null
paxos propose interval = 0.1
mon data = $dir/mon/\$id
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd data = $dir/osd/\$id
osd objectstore = memstore
memstore device bytes = 3221225472
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd journal size = 16
osd max object name len = 460
osd max object namespace len = 64
osd op num shards = 2
osd op num threads per shard = 1
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$rport ssl_endpoint=127.0.0.1:$tport ssl_certificate=$dir/tls/server.pem ssl_private_key=$dir/tls/server.key
rgw data = $dir/run/rgw
rgw enable usage log = false
rgw dns name = localhost
EOF
	: >"$dir/pids"
	monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mport]" "$dir/monmap" >/dev/null
	ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" >"$dir/log/mkfs-mon.out" 2>&1
	ceph-mon -c "$conf" -f -i a >"$dir/log/mon.out" 2>&1 &
	echo $! >>"$dir/pids"
	# The CLI waits for the monitor itself (polling with it costs a Python start each time).
	local uuid id
	uuid=$(cat /proc/sys/kernel/random/uuid)
	if ! id=$(ceph -c "$conf" --connect-timeout 30 osd new "$uuid" 2>"$dir/log/osd-new.out"); then
		echo "rgw.sh: the monitor did not answer (logs in $dir/log)" >&2
		return 1
	fi
	local t_mon=$SECONDS
	ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$uuid" >"$dir/log/mkfs-osd.out" 2>&1
	ceph-osd -c "$conf" -f -i "$id" >"$dir/log/osd.out" 2>&1 &
	echo $! >>"$dir/pids"
	# radosgw waits for the OSD by itself while it creates its pools.
	radosgw -c "$conf" -f -n client.rgw >"$dir/log/rgw.out" 2>&1 &
	echo $! >>"$dir/pids"
	echo $! >"$dir/rgw.pid"
	wait_for 60 "radosgw on port $rport" curl -sf -o /dev/null "http://127.0.0.1:$rport/"
	echo "rgw.sh: up after ${SECONDS}s (monitor answered after ${t_mon}s)" >&2
	local ak sk
	ak=STASIS$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
	sk=$(head -c 24 /dev/urandom | base64 | tr '+/' 'xy')
	radosgw-admin -c "$conf" -n client.rgw user create --uid=stasis --display-name=stasis \
		--access-key="$ak" --secret-key="$sk" >"$dir/log/user.out" 2>&1
	cat >"$dir/env" <<EOF
AWS_ACCESS_KEY_ID=$ak
AWS_SECRET_ACCESS_KEY=$sk
AWS_REGION=default
STASIS_S3_ENDPOINT=http://127.0.0.1:$rport
STASIS_S3_TLS_ENDPOINT=https://127.0.0.1:$tport
STASIS_S3_CA_FILE=$dir/tls/ca.pem
STASIS_S3_REGION=default
EOF
	chmod 600 "$dir/env"
	cat "$dir/env"
}

# radosgw alone, on the configuration and cluster that start made. The old
# PID is dropped from DIR/pids only once it is gone, so stop never signals a
# reused PID.
restart_rgw() {
	dir=$(cd "$dir" && pwd)
	local old rport
	if [ ! -f "$dir/ceph.conf" ] || [ ! -f "$dir/rgw.pid" ]; then
		echo "rgw.sh: $dir holds no cluster started by '$0 start'" >&2
		return 1
	fi
	old=$(cat "$dir/rgw.pid")
	if kill -0 "$old" 2>/dev/null; then
		echo "rgw.sh: radosgw (PID $old) is still running" >&2
		return 1
	fi
	grep -vx "$old" "$dir/pids" >"$dir/pids.new" || true
	mv "$dir/pids.new" "$dir/pids"
	rport=$(sed -n 's/^rgw frontends = beast endpoint=127.0.0.1:\([0-9]*\) .*/\1/p' "$dir/ceph.conf")
	radosgw -c "$dir/ceph.conf" -f -n client.rgw >>"$dir/log/rgw.out" 2>&1 &
	echo $! >>"$dir/pids"
	echo $! >"$dir/rgw.pid"
	wait_for 60 "radosgw on port $rport" curl -sf -o /dev/null "http://127.0.0.1:$rport/"
}

case "$cmd" in
start) start ;;
restart-rgw) restart_rgw ;;
stop) stop ;;
env) cat "$dir/env" ;;
*)
	echo "usage: $0 start|stop|env|restart-rgw DIR" >&2
	exit 2
	;;
esac
