# Shared helpers for integration scripts (sourced). Every server started here
# binds 127.0.0.1, and every resource is released by the caller's trap.

PY=/usr/bin/python3 # Debian's interpreter, with python3-jsonpatch and python3-yaml

# free_port: prints a TCP port nobody listens on right now.
free_port() {
	$PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# make_certs DIR NAME: a CA (reused when present) and a server leaf for
# 127.0.0.1/localhost signed by it, made with the openssl tool (an
# implementation independent of stasis).
make_certs() {
	local d=$1 n=${2:-tls}
	if [ ! -f "$d/ca.crt" ]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-keyout "$d/ca.key" -out "$d/ca.crt" -days 30 -subj /CN=test-ca 2>/dev/null
	fi
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/$n.key" \
		-out "$d/$n.csr" -subj "/CN=$n" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$d/$n.ext"
	openssl x509 -req -in "$d/$n.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
		-days 30 -extfile "$d/$n.ext" -out "$d/$n.crt" 2>/dev/null
}

# wait_for_log FILE PATTERN SECONDS: waits until PATTERN appears in FILE.
wait_for_log() {
	local f=$1 pat=$2 limit=${3:-10} i=0
	while [ $i -lt $((limit * 10)) ]; do
		grep -q -- "$pat" "$f" 2>/dev/null && return 0
		sleep 0.1
		i=$((i + 1))
	done
	echo "timed out waiting for '$pat' in $f" >&2
	cat "$f" >&2
	return 1
}

# stop_pid PID [SECONDS]: SIGTERM, then SIGKILL after the grace period.
stop_pid() {
	local pid=$1 grace=${2:-5} i=0
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt $((grace * 10)) ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -KILL "$pid" 2>/dev/null || true
}

# undo_host DIR: what a harness (tests/e2e/harness.py) that died left under DIR:
# thaws and unmounts (deepest first), then detaches loop devices backed by files
# under DIR.
undo_host() {
	local d=$1 m l
	for m in $(findmnt -rn -o TARGET | grep "^$d/" | sort -r); do
		fsfreeze -u "$m" 2>/dev/null || :
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || :
	done
	for l in $(losetup -a 2>/dev/null | grep -F "($d/" | cut -d: -f1); do
		losetup -d "$l" 2>/dev/null || :
	done
}
