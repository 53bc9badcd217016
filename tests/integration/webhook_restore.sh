#!/usr/bin/env bash
# stasis-webhook's /mutate/restore end to end over real HTTPS. First direct
# AdmissionReviews (v1 and v1beta1) built from the real manifests, labelled as
# Velero or stasis label restored objects, with the patches applied by
# python3-jsonpatch and compared with the expected objects; unlabelled
# objects and UPDATEs pass unchanged. Then through the Kubernetes API
# stand-in with the MutatingWebhookConfiguration rendered from
# manifests/50-mutatingwebhook.yaml, so that its rules and objectSelectors are
# what routes the objects: restored claims, volumes and workloads are stored
# remapped, everything else as sent. Rules come from the config file and from
# a file of Velero-format ConfigMaps.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

work=$(mktemp -d /tmp/st-whrestore-XXXXXX)
pid='' standin=''
cleanup() {
	stop_pid "$standin"
	stop_pid "$pid"
	[ -n "${STASIS_KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	[ -s "$work/webhook.log" ] && tail -20 "$work/webhook.log" >&2
	[ -s "$work/standin.err" ] && tail -20 "$work/standin.err" >&2
	exit 1
}

# One serving certificate for both paths: 127.0.0.1 for the direct calls and
# the service name the stand-in verifies (stasis-webhook.stasis.svc).
make_certs "$work" apiserver
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/tls.key" \
	-out "$work/tls.csr" -subj /CN=stasis-webhook 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:stasis-webhook.stasis.svc\n' >"$work/tls.ext"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
	-days 1 -extfile "$work/tls.ext" -out "$work/tls.crt" 2>/dev/null

# Velero's two ConfigMaps, as `kubectl get cm -o yaml` would save them (a List)
# plus one more document.
cat >"$work/velero-cms.yaml" <<'YAML'
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: change-image-name-config
    namespace: velero
    labels:
      velero.io/plugin-config: ""
      velero.io/change-image-name: RestoreItemAction
  data:
    samples: "gcr.io/google-samples/,samples.local/"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: change-storage-class-config
  namespace: velero
  labels:
    velero.io/plugin-config: ""
    velero.io/change-storage-class: RestoreItemAction
data:
  gp2: gp3
YAML
port=$(free_port)
cat >"$work/config.yaml" <<YAML
listen: "127.0.0.1:$port"
tls: {certFile: $work/tls.crt, keyFile: $work/tls.key}
server: {threads: 2, connectionTimeout: 3s}
injection:
  image: registry.example/stasis-agent:test
restore:
  storageClassMappings:
    fast: standard-rwo
    ocs-storagecluster-ceph-rbd: rbd
  imageRegistryMappings: {docker.io: "mirror.local:5000"}
  configMaps: [$work/velero-cms.yaml]
YAML
"$STASIS_BIN/stasis-webhook" --config "$work/config.yaml" --print-config >"$work/printed" ||
	fail "stasis-webhook refuses the config"
grep -q '^restore: 3 storage class and 2 image registry mappings$' "$work/printed" ||
	fail "restore rules not loaded: $(cat "$work/printed")"
# A broken Velero ConfigMap is refused at start with the file and the entry named.
sed 's/"gcr.io\/google-samples\/,samples.local\/"/"gcr.io-no-delimiter"/' \
	"$work/velero-cms.yaml" >"$work/bad-cms.yaml"
sed "s|$work/velero-cms.yaml|$work/bad-cms.yaml|" "$work/config.yaml" >"$work/bad.yaml"
if "$STASIS_BIN/stasis-webhook" --config "$work/bad.yaml" --print-config >/dev/null 2>"$work/bad.err"; then
	fail "a malformed Velero ConfigMap was accepted"
fi
grep -q "bad-cms.yaml: ConfigMap change-image-name-config: data.samples must be" "$work/bad.err" ||
	fail "unexpected error for the malformed ConfigMap: $(cat "$work/bad.err")"

"$STASIS_BIN/stasis-webhook" --config "$work/config.yaml" >"$work/webhook.log" 2>&1 &
pid=$!
wait_for_log "$work/webhook.log" "serving https" 10 || fail "webhook did not start"
grep -q "3+2 restore mappings" "$work/webhook.log" || fail "start-up line lacks the rules"

# --- direct reviews ---------------------------------------------------------------------------
$PY "$STASIS_ROOT/tests/integration/lib/webhook_restore_check.py" \
	--url "https://127.0.0.1:$port" --ca "$work/ca.crt" --shared "$STASIS_SHARED" ||
	fail "direct review checks"

# --- through the API stand-in with the shipped MutatingWebhookConfiguration -------------------
$PY "$STASIS_ROOT/tests/k8s/standin.py" --port 0 --tls-cert "$work/apiserver.crt" \
	--tls-key "$work/apiserver.key" --kubeconfig-ca "$work/ca.crt" \
	--kubeconfig-out "$work/kubeconfig" --service-endpoint "stasis/stasis-webhook:443=127.0.0.1:$port" \
	>"$work/standin.out" 2>"$work/standin.err" &
standin=$!
wait_for_log "$work/standin.out" "^standin listening on " 15 || fail "stand-in did not start"

PYTHONPATH=$STASIS_ROOT/tests/k8s $PY - "$work/kubeconfig" "$STASIS_ROOT/manifests" \
	"$work/ca.crt" "https://127.0.0.1:$port" <<'EOF' || fail "API stand-in checks"
import base64, copy, ssl, sys, urllib.request
sys.dont_write_bytecode = True
import yaml
from kclient import Client

kc, manifests, ca, webhook = sys.argv[1:5]
c = Client.from_kubeconfig(kc)
fails = []
def check(cond, msg):
    if not cond:
        fails.append(msg)
        print("FAIL:", msg, file=sys.stderr)

text = open(manifests + "/50-mutatingwebhook.yaml").read()
text = text.replace("@@NAMESPACE@@", "stasis").replace("@@FAILURE_POLICY@@", "Fail")
text = text.replace("@@CA_BUNDLE@@", base64.b64encode(open(ca, "rb").read()).decode())
mwc = yaml.safe_load(text)
c.create(c.path("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations"), mwc)
for ns in ("shop", "kube-system", "stasis"):
    try:
        c.create(c.path("", "v1", "namespaces"), {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": ns}})
    except Exception as e:  # kube-system may exist already
        if getattr(e, "code", None) != 409:
            raise

VELERO = {"velero.io/restore-name": "r1", "velero.io/backup-name": "b1"}
STASIS = {"stasis.io/restore-name": "r2"}
def restore_calls():
    body = urllib.request.urlopen(webhook + "/metrics",
                                  context=ssl.create_default_context(cafile=ca)).read().decode()
    return sum(int(l.rsplit(" ", 1)[1]) for l in body.splitlines()
               if l.startswith('stasis_webhook_requests_total{path="/mutate/restore"'))

def pvc(name, labels, cls, ns="shop"):
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                     "resources": {"requests": {"storage": "50Mi"}}}}
def deploy(name, labels, image, ns="shop"):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}}}
def cm(name, labels):
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "shop", "labels": labels},
            "data": {"storageClassName": "fast", "image": "nginx"}}

pvcs = c.path("", "v1", "persistentvolumeclaims", "shop")
deps = c.path("apps", "v1", "deployments", "shop")
before = restore_calls()
c.create(pvcs, pvc("restored", VELERO, "fast"))
c.create(pvcs, pvc("ours", STASIS, "ocs-storagecluster-ceph-rbd"))
c.create(pvcs, pvc("plain", {"app": "x"}, "fast"))
c.create(pvcs, pvc("both", dict(VELERO, **STASIS), "fast"))
c.create(deps, deploy("web", VELERO, "nginx:1.17.6"))
c.create(deps, deploy("plain-web", {}, "nginx:1.17.6"))
c.create(deps, deploy("samples", STASIS, "gcr.io/google-samples/hello-app:2.0"))
c.create(c.path("", "v1", "configmaps", "shop"), cm("restored-cm", VELERO))
c.create(c.path("", "v1", "persistentvolumes"),
         {"apiVersion": "v1", "kind": "PersistentVolume",
          "metadata": {"name": "pv-restored", "labels": VELERO},
          "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                   "storageClassName": "gp2", "hostPath": {"path": "/tmp/pv"}}})
c.create(c.path("", "v1", "persistentvolumeclaims", "kube-system"),
         pvc("system", VELERO, "fast", ns="kube-system"))
got = {n: c.get(c.path("", "v1", "persistentvolumeclaims", "shop", n))["spec"]["storageClassName"]
       for n in ("restored", "ours", "plain", "both")}
check(got == {"restored": "standard-rwo", "ours": "rbd", "plain": "fast", "both": "standard-rwo"},
      "stored claim classes %r" % got)
img = {n: c.get(c.path("apps", "v1", "deployments", "shop", n))["spec"]["template"]["spec"][
    "containers"][0]["image"] for n in ("web", "plain-web", "samples")}
check(img == {"web": "mirror.local:5000/library/nginx:1.17.6", "plain-web": "nginx:1.17.6",
              "samples": "samples.local/hello-app:2.0"}, "stored images %r" % img)
pv = c.get(c.path("", "v1", "persistentvolumes", None, "pv-restored"))
check(pv["spec"]["storageClassName"] == "gp3", "stored PV class %r" % pv["spec"])
got = c.get(c.path("", "v1", "configmaps", "shop", "restored-cm"))["data"]
check(got == {"storageClassName": "fast", "image": "nginx"}, "ConfigMap changed: %r" % got)
got = c.get(c.path("", "v1", "persistentvolumeclaims", "kube-system", "system"))
check(got["spec"]["storageClassName"] == "fast", "kube-system is excluded: %r" % got["spec"])
# Called once per labelled claim, deployment and volume (the one with both
# labels once): 3 claims, 2 deployments, 1 volume; not for the ConfigMap, the
# unlabelled objects or kube-system.
calls = restore_calls() - before
check(calls == 6, "%d calls to /mutate/restore, expected 6" % calls)
if fails:
    sys.exit(1)
print("stand-in: restored objects stored remapped")
EOF
echo "webhook_restore: all checks passed"
