#!/usr/bin/env bash
# stasis-webhook end to end over real HTTPS: reviews built from real manifests
# and the Kubernetes round-trip fixtures, patches applied by an independent
# RFC 6902 implementation (python3-jsonpatch), bad inputs, certificate
# rotation under traffic, metrics and graceful shutdown.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

work=$(mktemp -d /tmp/st-webhook-XXXXXX)
pid=
cleanup() {
	stop_pid "$pid"
	rm -rf "$work"
}
trap cleanup EXIT

make_certs "$work" tls
port=$(free_port)
cat >"$work/config.yaml" <<YAML
listen: "127.0.0.1:$port"
tls: {certFile: $work/tls.crt, keyFile: $work/tls.key}
server: {maxBodyBytes: 8Mi, connectionTimeout: 3s, threads: 2}
injection:
  image: registry.example/stasis-agent:test
  freezeTimeout: 20s
rules:
  - name: by-namespace
    namespaces: [rules-ns]
  - name: excluded
    namespaces: [quiet-ns]
    freeze: false
YAML
"$STASIS_BIN/stasis-webhook" --config "$work/config.yaml" >"$work/webhook.log" 2>&1 &
pid=$!
wait_for_log "$work/webhook.log" "serving https" 10

$PY "$STASIS_ROOT/tests/integration/lib/webhook_check.py" \
	--url "https://127.0.0.1:$port" --ca "$work/ca.crt" --shared "$STASIS_SHARED" \
	--work "$work" --log "$work/webhook.log"

# Graceful shutdown: SIGTERM ends the process cleanly and promptly.
kill -TERM "$pid"
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
	echo "FAIL: webhook still running 5 s after SIGTERM" >&2
	exit 1
fi
wait "$pid" || { echo "FAIL: webhook exited non-zero after SIGTERM" >&2; exit 1; }
pid=
grep -q "stopped" "$work/webhook.log"
# docs/configuration.md must list every setting the binary knows.
"$STASIS_BIN/stasis-webhook" --config-reference | grep -o '^| `[^`]*`' | while read -r line; do
	grep -qF -- "$line" "$STASIS_ROOT/docs/configuration.md" ||
		{ echo "FAIL: docs/configuration.md lacks ${line#| }" >&2; exit 1; }
done
# --print-config reflects the file and a bad file is refused with its name.
"$STASIS_BIN/stasis-webhook" --config "$work/config.yaml" --print-config | grep -q 'injection.freezeTimeout: 20s'
printf 'injection:\n  imagee: x\n' >"$work/bad.yaml"
if "$STASIS_BIN/stasis-webhook" --config "$work/bad.yaml" 2>"$work/bad.err"; then
	echo "FAIL: a config with an unknown key was accepted" >&2
	exit 1
fi
grep -q 'bad.yaml: unknown key "injection.imagee"' "$work/bad.err"
echo "webhook: all checks passed"
