#!/usr/bin/env bash
# make demo: stasis on one machine with no cluster.
#  1. stasis certs makes a CA and the webhook's serving certificate;
#  2. stasis-webhook starts on 127.0.0.1 with them;
#  3. the reference nginx pod (namespace test, index.html on a 50Mi PVC) is
#     sent through /mutate/pods as kube-apiserver would send it, and the pod
#     that comes out is shown next to the one that went in.
# Usage: hack/demo.sh BUILD_DIR
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/${1:-build/release}/bin
. "$ROOT/tests/integration/lib/common.sh"

work=$(mktemp -d /tmp/stasis-demo-XXXXXX)
pid=
cleanup() {
	stop_pid "$pid"
	rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. certificates (stasis certs)"
"$BIN/stasis" certs --out-dir "$work/certs" --dns localhost --ip 127.0.0.1

step "2. stasis-webhook on 127.0.0.1"
port=$(free_port)
cat >"$work/config.yaml" <<YAML
listen: "127.0.0.1:$port"
tls: {certFile: $work/certs/tls.crt, keyFile: $work/certs/tls.key}
injection:
  image: stasis/stasis-agent:v0.1.0
  freezeTimeout: 30s
YAML
"$BIN/stasis-webhook" --config "$work/config.yaml" >"$work/webhook.log" 2>&1 &
pid=$!
wait_for_log "$work/webhook.log" "serving https" 10
sed 's/^/  /' "$work/webhook.log"

step "3. the reference pod goes in (namespace test, nginx, html on a PVC)"
cat >"$work/pod.yaml" <<'YAML'
apiVersion: v1
kind: Pod
metadata:
  generateName: nginx-deployment-
  namespace: test
  labels:
    app: nginx
  annotations:
    stasis.io/freeze: "true"
spec:
  volumes:
    - name: html
      persistentVolumeClaim:
        claimName: nginx-html
  containers:
    - name: nginx
      image: nginx:1.25
      ports:
        - containerPort: 80
      volumeMounts:
        - name: html
          mountPath: /usr/share/nginx/html
YAML
cat "$work/pod.yaml"

$PY - "$work" "$port" <<'PY'
import base64, json, ssl, sys, urllib.request
import jsonpatch, yaml
work, port = sys.argv[1], sys.argv[2]
pod = yaml.safe_load(open(work + "/pod.yaml"))
review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
          "request": {"uid": "demo-0001", "operation": "CREATE", "namespace": "test",
                      "resource": {"group": "", "version": "v1", "resource": "pods"}, "object": pod}}
ctx = ssl.create_default_context(cafile=work + "/certs/ca.crt")
req = urllib.request.Request("https://127.0.0.1:%s/mutate/pods" % port, data=json.dumps(review).encode(),
                             headers={"Content-Type": "application/json"})
resp = json.load(urllib.request.urlopen(req, context=ctx))["response"]
ops = json.loads(base64.b64decode(resp["patch"]))
print("\nAdmissionReview answer: uid=%s allowed=%s, %d patch operations, warnings=%s"
      % (resp["uid"], resp["allowed"], len(ops), resp.get("warnings", [])))
for op in ops:
    print("  %-4s %s" % (op["op"], op["path"]))
out = jsonpatch.JsonPatch(ops).apply(pod)
open(work + "/pod-injected.yaml", "w").write(yaml.safe_dump(out, sort_keys=False))
open(work + "/pod-in.yaml", "w").write(yaml.safe_dump(pod, sort_keys=False))
PY

step "4. what admission changed (diff of the pod, in -> out)"
diff -u --label pod-in.yaml --label pod-out.yaml "$work/pod-in.yaml" "$work/pod-injected.yaml" || true

step "5. metrics"
curl -s --cacert "$work/certs/ca.crt" "https://127.0.0.1:$port/metrics" | grep -E '^stasis_webhook_(injections|requests)_total'

stop_pid "$pid"
pid=
echo
echo "demo: done (the webhook was stopped with SIGTERM)"
