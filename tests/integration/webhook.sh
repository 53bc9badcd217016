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
	[ -n "${STASIS_KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
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

# The injected command line must be one the real stasis-agent accepts: run it
# with the pod's volume root pointed at a temporary directory.
$PY - "https://127.0.0.1:$port" "$work/ca.crt" >"$work/cmd.json" <<'PY'
import base64, json, ssl, sys, urllib.request
url, ca = sys.argv[1], sys.argv[2]
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {"stasis.io/freeze": "true"}},
       "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}],
                "containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}}
rv = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
      "request": {"uid": "cmd", "operation": "CREATE", "namespace": "x", "object": pod}}
req = urllib.request.Request(url + "/mutate/pods", json.dumps(rv).encode(), {"Content-Type": "application/json"})
resp = json.load(urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ca)))["response"]
ops = json.loads(base64.b64decode(resp["patch"]))
print(json.dumps([op for op in ops if op["path"] == "/spec/containers/-"][0]["value"]["command"]))
PY
if [ -x "$STASIS_BIN/stasis-agent" ]; then
	mkdir -p "$work/volroot/data" "$work/agent-state"
	mapfile -t args < <($PY -c 'import json,sys; c=json.load(open(sys.argv[1])); print("\n".join(c[1:]))' "$work/cmd.json")
	args=("${args[@]//\/stasis\/volumes/$work/volroot}")
	STASIS_STATE_DIR=$work/agent-state "$STASIS_BIN/stasis-agent" "${args[@]}" >"$work/agent.log" 2>&1 &
	apid=$!
	for _ in $(seq 50); do [ -S "$work/agent-state/agent.sock" ] && break; sleep 0.1; done
	if ! kill -0 "$apid" 2>/dev/null || [ ! -S "$work/agent-state/agent.sock" ]; then
		echo "FAIL: stasis-agent did not start with the injected command ${args[*]}" >&2
		cat "$work/agent.log" >&2
		exit 1
	fi
	STASIS_STATE_DIR=$work/agent-state "$STASIS_BIN/stasis-agent" status >"$work/agent-status.json"
	grep -q "volroot/data" "$work/agent-status.json" ||
		{ echo "FAIL: the agent does not list the injected volume" >&2; cat "$work/agent-status.json" >&2; exit 1; }
	stop_pid "$apid"
else
	echo "FAIL: $STASIS_BIN/stasis-agent is not built" >&2
	exit 1
fi

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
