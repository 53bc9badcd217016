#!/usr/bin/env bash
# The agent's HTTPS API: only a client certificate signed by the install's
# CA may freeze, thaw or read status. No certificate, a certificate from
# another CA and an expired certificate are refused with a clear reason,
# and none of them freezes anything. Certificates come from `stasis certs`.
set -euo pipefail
. "$(dirname "$0")/agent_common.inc"

PKI=$T/pki
mkdir -p "$PKI/good" "$PKI/other" "$PKI/expired"
if [ ! -x "$STASIS_BIN/stasis" ]; then
	echo "stasis (for stasis certs) is not built"
	exit 77
fi
certs() { "$STASIS_BIN/stasis" certs --ip 127.0.0.1 --dns localhost "$@" >/dev/null; }
certs --out-dir "$PKI/good"
certs --out-dir "$PKI/other"
# Same CA, leaves valid only in 2020.
cp "$PKI/good/ca.crt" "$PKI/good/ca.key" "$PKI/expired/"
certs --out-dir "$PKI/expired" --not-before 2020-01-01T00:00:00Z --not-after 2020-02-01T00:00:00Z

pool_create 1G
vol_create a xfs
A=$T/vol/a
PORT=$(free_port)
agent_start --volume "$A" --listen 127.0.0.1 --port "$PORT" \
	--cert "$PKI/good/tls.crt" --key "$PKI/good/tls.key" --client-ca "$PKI/good/ca.crt"
URL=https://127.0.0.1:$PORT

# call NAME [curl args...]: prints "CODE BODY"
call() {
	local out code
	out=$(curl -s --max-time 10 --cacert "$PKI/good/ca.crt" -w '\n%{http_code}' "$@") || true
	code=$(tail -n1 <<<"$out")
	echo "$code $(head -n -1 <<<"$out")"
}

good=(--cert "$PKI/good/client.crt" --key "$PKI/good/client.key")
r=$(call "${good[@]}" "$URL/v1/status")
[ "${r%% *}" = 200 ] || fail "valid client refused: $r"

declare -A refuse=(
	[none]=""
	[other-ca]="--cert $PKI/other/client.crt --key $PKI/other/client.key"
	[expired]="--cert $PKI/expired/client.crt --key $PKI/expired/client.key"
)
for k in none other-ca expired; do
	# shellcheck disable=SC2086
	r=$(call ${refuse[$k]} -X POST -d '{"deadlineSeconds":30}' "$URL/v1/freeze")
	code=${r%% *}
	[ "$code" = 403 ] || [ "$code" = 000 ] || fail "$k: expected a refusal, got $r"
	is_frozen "$A" && fail "$k: a refused client froze $A"
	echo "refused ($k): $r"
	case $k in
	none) grep -qi "certificate" <<<"$r" || fail "no reason given: $r" ;;
	expired) grep -qi "expired" <<<"$r" || fail "reason does not say expired: $r" ;;
	other-ca) grep -qiE "not (signed|trusted)|unknown|issuer|verify" <<<"$r" ||
		fail "reason does not name the CA problem: $r" ;;
	esac
done

# The controller's certificate may freeze and thaw; the audit trail names it.
r=$(call "${good[@]}" -X POST -d '{"deadlineSeconds":30}' "$URL/v1/freeze")
[ "${r%% *}" = 200 ] || fail "freeze over mTLS: $r"
is_frozen "$A" || fail "mTLS freeze did not freeze"
[ "$(status_field frozenBy)" = "cn=stasis-controller" ] || fail "frozenBy: $(status_field frozenBy)"
r=$(call "${good[@]}" -X POST -d '{"deadlineSeconds":30}' "$URL/v1/freeze")
[ "${r%% *}" = 409 ] || fail "second freeze over mTLS: $r"
r=$(call "${good[@]}" -X POST "$URL/v1/thaw")
[ "${r%% *}" = 200 ] || fail "thaw over mTLS: $r"
is_frozen "$A" && fail "mTLS thaw did not thaw"
r=$(call "${good[@]}" -X POST -d '{"deadlineSeconds":"soon"}' "$URL/v1/freeze")
[ "${r%% *}" = 400 ] || fail "bad deadline accepted: $r"
r=$(call "${good[@]}" -X POST -d '{"volumes":[' "$URL/v1/freeze")
[ "${r%% *}" = 400 ] || fail "malformed JSON accepted: $r"
r=$(call "${good[@]}" "$URL/metrics")
grep -q "stasis_agent_freezes_total 1" <<<"$r" || fail "metrics over mTLS: $r"
echo "agent_mtls: ok"
