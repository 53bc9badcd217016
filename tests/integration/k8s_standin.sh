#!/usr/bin/env bash
# The Kubernetes API stand-in (tests/k8s/standin.py) held to the real API by
# the real kubectl over HTTPS with a bearer token: create -f of a namespace,
# deployment, configmap, CRD and a custom resource of it, get -o json and
# tables, label, annotate, patch --type=merge, get --watch, api-resources,
# delete; then raw HTTP checks of Status errors (401/404/409/422), optimistic
# concurrency, the status subresource, pagination over 250 objects, label and
# field selectors, watches (events, timeout, 410 for an expired
# resourceVersion), mutating admission webhooks (patch, denial, selectors,
# failure policies), namespace and CRD deletion, client-certificate auth, the
# state file and write hooks. kubectl's generator commands (create namespace,
# configmap, deployment, ... sent as protobuf) must store exactly what
# kubectl renders with --dry-run=client.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

if ! command -v kubectl >/dev/null 2>&1; then
	echo "kubectl not installed; the stand-in is checked against the real kubectl"
	exit 77
fi

work=$(mktemp -d /tmp/st-k8s-XXXXXX)
standin='' standin2='' standin3='' watcher='' watcher2='' whk=''
url1='' url2='' url3=''
cleanup() {
	stop_pid "$whk"
	stop_pid "$watcher"
	stop_pid "$watcher2"
	stop_pid "$standin"
	stop_pid "$standin2"
	stop_pid "$standin3"
	rm -rf "$work"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	for f in "$work"/standin*.err; do
		[ -s "$f" ] && sed "s|^|$(basename "$f"): |" "$f" | tail -20 >&2
	done
	exit 1
}

standin_py=$STASIS_ROOT/tests/k8s/standin.py
make_certs "$work" tls
make_certs "$work" client
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

# start_standin N ARGS...: starts instance N (stdout in standin$N.out) and sets url$N.
start_standin() {
	local n=$1
	shift
	$PY "$standin_py" --port 0 "$@" >"$work/standin$n.out" 2>"$work/standin$n.err" &
	case $n in
	1) standin=$! ;;
	2) standin2=$! ;;
	*) standin3=$! ;;
	esac
	wait_for_log "$work/standin$n.out" "^standin listening on " 15 || fail "instance $n did not start"
	printf -v "url$n" '%s' "$(sed -n 's/^standin listening on //p' "$work/standin$n.out")"
}

# The webhook server (see "mutating admission webhooks" below), with a certificate for its
# service name only, so that the stand-in must verify whk.hooks.svc, not the address it dials.
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/whk.key" \
	-out "$work/whk.csr" -subj /CN=whk 2>/dev/null
printf 'subjectAltName=DNS:whk.hooks.svc\n' >"$work/whk.ext"
openssl x509 -req -in "$work/whk.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
	-days 1 -extfile "$work/whk.ext" -out "$work/whk.crt" 2>/dev/null
cat >"$work/whk.py" <<'EOF'
import base64, json, ssl, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
log = open(sys.argv[2], "a")
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        req = review["request"]
        log.write(json.dumps({"path": self.path, "operation": req["operation"],
                              "kind": req["kind"]["kind"]}, separators=(",", ": ")) + "\n")
        log.flush()
        labels = req["object"]["metadata"].get("labels") or {}
        resp = {"uid": req["uid"], "allowed": labels.get("deny") != "yes"}
        if not resp["allowed"]:
            resp["status"] = {"code": 403, "reason": "Forbidden", "message": "denied by test"}
        else:
            ops = [] if labels else [{"op": "add", "path": "/metadata/labels", "value": {}}]
            ops.append({"op": "add", "path": "/metadata/labels/mutated", "value": "yes"})
            resp["patchType"] = "JSONPatch"
            resp["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
        body = json.dumps({"apiVersion": review["apiVersion"], "kind": "AdmissionReview",
                           "response": resp}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("webhook ready", flush=True)
srv.serve_forever()
EOF
whport=$(free_port)
$PY "$work/whk.py" "$whport" "$work/whk.log" "$work/whk.crt" "$work/whk.key" >"$work/whk.out" 2>&1 &
whk=$!
wait_for_log "$work/whk.out" "webhook ready" 10 || fail "webhook server did not start"

start_standin 1 --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" --token "$token" \
	--kubeconfig-out "$work/kubeconfig" --kubeconfig-ca "$work/ca.crt" --watch-history 200 \
	--service-endpoint "hooks/whk:443=127.0.0.1:$whport"
[ "$(wc -l <"$work/standin1.out")" -eq 1 ] || fail "more than one line on stdout"
grep -q "^standin listening on https://127.0.0.1:[0-9]*$" "$work/standin1.out" || fail "ready line"
[ "$(stat -c %a "$work/kubeconfig")" = 600 ] || fail "kubeconfig mode"

export KUBECONFIG=$work/kubeconfig KUBECACHEDIR=$work/kcache HOME=$work
export STANDIN_URL=$url1 STANDIN_TOKEN=$token STANDIN_CA=$work/ca.crt
k() { kubectl --request-timeout=20s "$@"; }

# A small HTTP client for the raw checks: call(method, path, body, ctype) -> (code, json).
cat >"$work/api.py" <<'EOF'
import json, os, ssl, urllib.request, urllib.error
URL = os.environ["STANDIN_URL"]
CTX = ssl.create_default_context(cafile=os.environ["STANDIN_CA"])
def call(method, path, body=None, ctype="application/json", token=True, accept=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + os.environ["STANDIN_TOKEN"])
    if data is not None:
        req.add_header("Content-Type", ctype)
    if accept:
        req.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(req, context=CTX, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
def ok(code, obj, want):
    assert code == want, "HTTP %d, wanted %d: %s" % (code, want, json.dumps(obj)[:400])
    return obj
def status(code, obj, want, reason):
    assert code == want, "HTTP %d, wanted %d: %s" % (code, want, json.dumps(obj)[:400])
    assert obj["kind"] == "Status" and obj["apiVersion"] == "v1", obj
    assert obj["status"] == "Failure" and obj["code"] == want and obj["reason"] == reason, obj
    assert obj["message"], obj
    return obj
def watch(path, timeout=10):
    """Events of a watch (until the server ends it), as a list."""
    req = urllib.request.Request(URL + path)
    req.add_header("Authorization", "Bearer " + os.environ["STANDIN_TOKEN"])
    out = []
    with urllib.request.urlopen(req, context=CTX, timeout=timeout) as r:
        assert r.headers.get("Transfer-Encoding") == "chunked", r.headers
        for line in r:
            out.append(json.loads(line))
    return out
EOF
py() { PYTHONPATH=$work $PY -c "from api import *
$1"; }

# --- kubectl: create -f ----------------------------------------------------------------------
cat >"$work/objs.yaml" <<'EOF'
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: nginx, image: nginx:1.27}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
data: {mode: fast}
---
apiVersion: v1
kind: Pod
metadata:
  name: db-0
  namespace: demo
  labels: {app: db}
spec:
  containers: [{name: pg, image: postgres:16}]
EOF
cat >"$work/crd.yaml" <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Phase, type: string, jsonPath: .status.phase}
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
EOF
cat >"$work/widget.yaml" <<'EOF'
apiVersion: example.com/v1
kind: Widget
metadata: {name: gear, namespace: demo}
spec: {size: 7}
---
apiVersion: stasis.io/v1alpha1
kind: Backup
metadata: {name: nightly, namespace: demo}
spec: {includedNamespaces: [demo]}
EOF
k create -f "$work/objs.yaml" >"$work/out" || fail "kubectl create -f objs.yaml"
for want in "namespace/demo created" "deployment.apps/web created" "configmap/settings created" \
	"pod/db-0 created"; do
	grep -qx "$want" "$work/out" || fail "create -f printed: $(cat "$work/out")"
done
k create -f "$work/crd.yaml" >/dev/null || fail "kubectl create CRD"
k create -f "$work/widget.yaml" >"$work/out" || fail "kubectl create custom resources"
grep -qx "widget.example.com/gear created" "$work/out" || fail "widget: $(cat "$work/out")"
rc=0
k create -f "$work/objs.yaml" 2>"$work/err" >/dev/null || rc=$?
[ $rc -ne 0 ] && grep -q 'namespaces "demo" already exists' "$work/err" ||
	fail "second create -f: exit $rc, $(cat "$work/err")"

# --- kubectl: generator commands (typed clients send protobuf bodies) ---------------------------
# Each stored object must equal what kubectl itself renders with --dry-run=client.
k create namespace gen >/dev/null || fail "kubectl create namespace"
gen_check() {
	k create -n gen --dry-run=client -o json "$@" >"$work/want.json" || fail "dry-run $*"
	k create -n gen -o json "$@" >"$work/got.json" || fail "kubectl create $*"
	$PY - "$work" <<'EOF' || fail "kubectl create $*: stored object differs from the client's"
import json, sys
def clean(o):
    if isinstance(o, dict):
        return {k: clean(v) for k, v in o.items() if v not in (None, {}, [], "")}
    if isinstance(o, list):
        return [clean(x) for x in o]
    return o
want = clean(json.load(open(sys.argv[1] + "/want.json")))
got = clean(json.load(open(sys.argv[1] + "/got.json")))
for k in ("uid", "creationTimestamp", "resourceVersion", "generation", "namespace"):
    got["metadata"].pop(k, None)
    want["metadata"].pop(k, None)
got.pop("status", None)
want.pop("status", None)
assert want == got, (json.dumps(want, sort_keys=True), json.dumps(got, sort_keys=True))
EOF
}
gen_check configmap gc --from-literal=a=b --from-literal=c=d
gen_check secret generic gs --from-literal=user=admin --type=example.com/x
gen_check serviceaccount gsa
gen_check deployment gd --image=nginx:1.27 --replicas=3 --port=8080
gen_check job gj --image=busybox -- echo hello
gen_check cronjob gcj --image=busybox --schedule="*/5 * * * *" -- date
gen_check service clusterip gsvc --tcp=80:8080 --tcp=443:https
gen_check role gr --verb=get,list --resource=pods,configmaps
gen_check rolebinding grb --role=gr --user=alice --serviceaccount=gen:gsa
[ "$(k get secret gs -n gen -o jsonpath='{.data.user}')" = "$(printf admin | base64)" ] ||
	fail "secret data"

# --- kubectl: get -o json ------------------------------------------------------------------------
k get deployment web -n demo -o json >"$work/deploy.json" || fail "get deployment -o json"
$PY - "$work/deploy.json" <<'EOF' || fail "deployment fields"
import json, re, sys, uuid
d = json.load(open(sys.argv[1]))
md = d["metadata"]
assert d["apiVersion"] == "apps/v1" and d["kind"] == "Deployment", d
assert md["name"] == "web" and md["namespace"] == "demo" and md["labels"] == {"app": "web"}, md
uuid.UUID(md["uid"])
assert re.fullmatch(r"[0-9]+", md["resourceVersion"]), md
assert md["generation"] == 1, md
assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", md["creationTimestamp"]), md
assert d["spec"]["replicas"] == 2, d["spec"]
EOF
k get widget gear -n demo -o json >"$work/w.json" || fail "get widget -o json"
k get crd widgets.example.com -o json >"$work/crd.json" || fail "get crd -o json"
k get namespace demo -o json >"$work/ns.json" || fail "get ns -o json"
$PY - "$work" <<'EOF' || fail "custom resource, CRD and namespace fields"
import json, sys
w = json.load(open(sys.argv[1] + "/w.json"))
assert w["apiVersion"] == "example.com/v1" and w["kind"] == "Widget", w
assert w["spec"] == {"size": 7} and w["metadata"]["generation"] == 1, w
c = json.load(open(sys.argv[1] + "/crd.json"))
conds = {x["type"]: x["status"] for x in c["status"]["conditions"]}
assert conds.get("Established") == "True" and conds.get("NamesAccepted") == "True", c["status"]
assert c["status"]["acceptedNames"]["kind"] == "Widget", c["status"]
n = json.load(open(sys.argv[1] + "/ns.json"))
assert n["status"]["phase"] == "Active", n
assert n["metadata"]["labels"]["kubernetes.io/metadata.name"] == "demo", n
EOF

# --- kubectl: tables ---------------------------------------------------------------------------------
k get pods -n demo >"$work/out" || fail "kubectl get pods"
head -1 "$work/out" | grep -Eq '^NAME +READY +STATUS +RESTARTS +AGE$' || fail "pods header: $(cat "$work/out")"
grep -Eq '^db-0 +0/1 +Pending +0 +[0-9]+s$' "$work/out" || fail "pods row: $(cat "$work/out")"
k get deploy -n demo >"$work/out" || fail "kubectl get deploy"
grep -Eq '^web +0/2 ' "$work/out" || fail "deploy table: $(cat "$work/out")"
k get wdg -n demo >"$work/out" || fail "kubectl get wdg (short name)"
head -1 "$work/out" | grep -Eq '^NAME +SIZE +PHASE$' || fail "widget header: $(cat "$work/out")"
grep -Eq '^gear +7 *$' "$work/out" || fail "widget row: $(cat "$work/out")"
k get backups -n demo >"$work/out" || fail "kubectl get backups"
grep -Eq '^nightly ' "$work/out" || fail "backups table: $(cat "$work/out")"
k get pods -A >"$work/out" || fail "kubectl get pods -A"
grep -Eq '^demo +db-0 ' "$work/out" || fail "get pods -A: $(cat "$work/out")"
k get ns >"$work/out" || fail "kubectl get ns"
grep -Eq '^demo +Active ' "$work/out" && grep -Eq '^kube-system +Active ' "$work/out" ||
	fail "namespaces: $(cat "$work/out")"

# --- kubectl: label, annotate, patch --type=merge ----------------------------------------------------
k label deployment web -n demo tier=frontend >/dev/null || fail "kubectl label"
k annotate deployment web -n demo owner=team-a >/dev/null || fail "kubectl annotate"
jp='{.metadata.labels.tier} {.metadata.annotations.owner} {.metadata.generation} {.spec.replicas}'
[ "$(k get deploy web -n demo -o jsonpath="$jp")" = "frontend team-a 1 2" ] ||
	fail "after label/annotate: $(k get deploy web -n demo -o jsonpath="$jp")"
k patch deployment web -n demo --type=merge -p '{"spec":{"replicas":5}}' >/dev/null ||
	fail "kubectl patch --type=merge"
[ "$(k get deploy web -n demo -o jsonpath="$jp")" = "frontend team-a 2 5" ] ||
	fail "after patch (generation must bump): $(k get deploy web -n demo -o jsonpath="$jp")"
k label deployment web -n demo tier- >/dev/null || fail "kubectl label tier-"
[ -z "$(k get deploy web -n demo -o jsonpath='{.metadata.labels.tier}')" ] || fail "label removal"
k patch widget gear -n demo --type=merge -p '{"spec":{"size":9}}' >/dev/null || fail "patch widget"
[ "$(k get widget gear -n demo -o jsonpath='{.spec.size}/{.metadata.generation}')" = 9/2 ] ||
	fail "widget patch"
k patch widget gear -n demo --subresource=status --type=merge -p '{"status":{"phase":"Spinning"}}' \
	>/dev/null || fail "patch --subresource=status"
k get wdg gear -n demo | grep -Eq '^gear +9 +Spinning$' || fail "status column: $(k get wdg -n demo)"
k scale deployment web -n demo --replicas=3 >/dev/null || fail "kubectl scale"
[ "$(k get deploy web -n demo -o jsonpath='{.spec.replicas}')" = 3 ] || fail "scale"

# --- kubectl apply: strategic merge keeps fields others set on list items --------------------------
sed 's/nginx:1.27/nginx:1.28/' "$work/objs.yaml" >"$work/objs2.yaml"
k apply -f "$work/objs.yaml" >/dev/null 2>&1 || fail "kubectl apply over created objects"
k patch deployment web -n demo --type=json -p \
	'[{"op":"add","path":"/spec/template/spec/containers/0/workingDir","value":"/srv"}]' \
	>/dev/null || fail "json patch of a container"
k apply -f "$work/objs2.yaml" >/dev/null 2>&1 || fail "kubectl apply with a new image"
[ "$(k get deploy web -n demo -o jsonpath='{.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].workingDir} {.spec.template.spec.containers[*].name}')" = \
	"nginx:1.28 /srv nginx" ] || fail "apply lost fields: $(k get deploy web -n demo -o json)"
k apply --server-side --force-conflicts -f "$work/objs2.yaml" >/dev/null ||
	fail "kubectl apply --server-side"
rc=0
k patch widget gear -n demo --type=strategic -p '{"spec":{"size":8}}' 2>"$work/err" >/dev/null || rc=$?
[ $rc -ne 0 ] && grep -q "unknown format" "$work/err" || fail "strategic patch of a custom resource"

# --- kubectl: get --watch -----------------------------------------------------------------------------
k get configmaps -n demo --watch -o json --output-watch-events >"$work/watch.json" 2>"$work/watch.err" &
watcher=$!
k get configmaps -n demo --watch >"$work/watch.txt" 2>"$work/watch2.err" &
watcher2=$!
wait_for_log "$work/watch.json" '"settings"' 10 || fail "watch did not list the existing configmap"
wait_for_log "$work/watch.txt" '^settings ' 10 || fail "table watch did not list the existing configmap"
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra, namespace: demo}\ndata: {a: "1"}\n' |
	k create -f - >/dev/null || fail "create extra"
k label configmap extra -n demo stage=two >/dev/null || fail "label extra"
k delete configmap extra -n demo >/dev/null || fail "delete extra"
wait_for_log "$work/watch.json" '"DELETED"' 10 || fail "watch did not see the deletion"
wait_for_log "$work/watch.txt" '^extra .*' 10 || fail "table watch did not see extra"
stop_pid "$watcher"
stop_pid "$watcher2"
watcher='' watcher2=''
$PY - "$work/watch.json" <<'EOF' || fail "kubectl watch events: $(cat "$work/watch.json")"
import json, sys
text = open(sys.argv[1]).read()
dec, pos, evs = json.JSONDecoder(), 0, []
while pos < len(text):
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text):
        break
    obj, pos = dec.raw_decode(text, pos)
    evs.append(obj)
seen = [(e["type"], e["object"]["metadata"]["name"]) for e in evs]
want = [("ADDED", "settings"), ("ADDED", "extra"), ("MODIFIED", "extra"), ("DELETED", "extra")]
assert seen == want, seen
assert evs[2]["object"]["metadata"]["labels"] == {"stage": "two"}, evs[2]
EOF
[ "$(grep -c '^extra ' "$work/watch.txt")" -ge 3 ] || fail "table watch rows: $(cat "$work/watch.txt")"

# --- kubectl: api-resources, delete ----------------------------------------------------------------
k api-resources >"$work/out" || fail "kubectl api-resources"
for re in '^deployments +deploy +apps/v1 +true +Deployment$' '^pods +po +v1 +true +Pod$' \
	'^namespaces +ns +v1 +false +Namespace$' '^widgets +wdg +example.com/v1 +true +Widget$' \
	'^volumesnapshots +vs +snapshot.storage.k8s.io/v1 +true +VolumeSnapshot$' \
	'^backups +stasis.io/v1alpha1 +true +Backup$' '^persistentvolumeclaims +pvc +v1 +true' \
	'^customresourcedefinitions +crd,crds +apiextensions.k8s.io/v1 +false'; do
	grep -Eq "$re" "$work/out" || fail "api-resources lacks $re"
done
k api-resources --namespaced=false -o name | grep -qx "storageclasses.storage.k8s.io" ||
	fail "api-resources -o name"
k delete configmap settings -n demo >"$work/out" || fail "kubectl delete"
grep -q 'configmap "settings" deleted' "$work/out" || fail "delete printed $(cat "$work/out")"
rc=0
k get configmap settings -n demo 2>"$work/err" || rc=$?
[ $rc -ne 0 ] && grep -q 'configmaps "settings" not found' "$work/err" || fail "get after delete"

# --- raw HTTP: authentication, Status errors, concurrency, subresources -------------------------------
py '
code, obj = call("GET", "/api/v1/namespaces", token=False)
status(code, obj, 401, "Unauthorized")
status(*call("GET", "/api/v1/namespaces/demo/configmaps/nope"), 404, "NotFound")
e = status(*call("GET", "/apis/apps/v1/namespaces/demo/deployments/nope"), 404, "NotFound")
assert e["message"] == "deployments.apps \"nope\" not found", e
assert e["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}, e
status(*call("GET", "/apis/no.such/v1"), 404, "NotFound")
cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}, "data": {"k": "v"}}
c1 = ok(*call("POST", "/api/v1/namespaces/demo/configmaps", cm), 201)
e = status(*call("POST", "/api/v1/namespaces/demo/configmaps", cm), 409, "AlreadyExists")
assert e["details"]["name"] == "c1" and e["details"]["kind"] == "configmaps", e
e = status(*call("POST", "/api/v1/namespaces/ghost/configmaps", cm), 404, "NotFound")
assert e["message"] == "namespaces \"ghost\" not found", e
status(*call("POST", "/api/v1/namespaces/demo/configmaps", {"metadata": {}}), 422, "Invalid")
e = status(*call("POST", "/api/v1/namespaces/demo/configmaps",
                 {"metadata": {"name": "x", "resourceVersion": "5"}}), 400, "BadRequest")
assert e["message"] == "resourceVersion should not be set on objects to be created", e
status(*call("POST", "/api/v1/namespaces/demo/configmaps", {"metadata": {"name": "Bad_Name"}}),
       422, "Invalid")
status(*call("POST", "/api/v1/namespaces/demo/configmaps",
             {"kind": "Secret", "metadata": {"name": "x"}}), 400, "BadRequest")
status(*call("POST", "/api/v1/namespaces/demo/configmaps",
             {"metadata": {"name": "x", "labels": {"a:b": "c"}}}), 422, "Invalid")
status(*call("POST", "/api/v1/namespaces/demo/configmaps",
             {"metadata": {"name": "x", "labels": {"a": 1}}}), 400, "BadRequest")
# generateName
names = set()
for _ in range(3):
    o = ok(*call("POST", "/api/v1/namespaces/demo/configmaps",
                 {"metadata": {"generateName": "gen-"}}), 201)
    assert o["metadata"]["name"].startswith("gen-") and len(o["metadata"]["name"]) == 9, o
    names.add(o["metadata"]["name"])
assert len(names) == 3, names
# optimistic concurrency
rv = c1["metadata"]["resourceVersion"]
c1["data"] = {"k": "v2"}
c2 = ok(*call("PUT", "/api/v1/namespaces/demo/configmaps/c1", c1), 200)
assert int(c2["metadata"]["resourceVersion"]) > int(rv), (rv, c2)
c1["data"] = {"k": "stale"}
e = status(*call("PUT", "/api/v1/namespaces/demo/configmaps/c1", c1), 409, "Conflict")
assert "the object has been modified" in e["message"], e
status(*call("PATCH", "/api/v1/namespaces/demo/configmaps/c1",
             {"metadata": {"resourceVersion": rv}}, "application/merge-patch+json"), 409, "Conflict")
status(*call("PUT", "/api/v1/namespaces/demo/configmaps/nope", cm), 404, "NotFound")
assert call("GET", "/api/v1/namespaces/demo/configmaps/c1")[1]["data"] == {"k": "v2"}
# a no-op update keeps the resourceVersion
same = ok(*call("PUT", "/api/v1/namespaces/demo/configmaps/c1", c2), 200)
assert same["metadata"]["resourceVersion"] == c2["metadata"]["resourceVersion"], same
# JSON patch, strategic merge patch, unsupported patch type
p = ok(*call("PATCH", "/api/v1/namespaces/demo/configmaps/c1",
             [{"op": "add", "path": "/data/j", "value": "p"}], "application/json-patch+json"), 200)
assert p["data"] == {"k": "v2", "j": "p"}, p
status(*call("PATCH", "/api/v1/namespaces/demo/configmaps/c1",
             [{"op": "test", "path": "/data/j", "value": "q"}], "application/json-patch+json"),
       422, "Invalid")
p = ok(*call("PATCH", "/api/v1/namespaces/demo/configmaps/c1", {"data": {"k": None}},
             "application/strategic-merge-patch+json"), 200)
assert p["data"] == {"j": "p"}, p
code, _ = call("PATCH", "/api/v1/namespaces/demo/configmaps/c1", {}, "text/plain")
assert code == 415, code
# custom resources require a resourceVersion on PUT
w = ok(*call("GET", "/apis/example.com/v1/namespaces/demo/widgets/gear"), 200)
del w["metadata"]["resourceVersion"]
status(*call("PUT", "/apis/example.com/v1/namespaces/demo/widgets/gear", w), 422, "Invalid")
# status subresource: main writes keep status, status writes keep spec
w = ok(*call("GET", "/apis/example.com/v1/namespaces/demo/widgets/gear"), 200)
assert w["status"] == {"phase": "Spinning"}, w
w["spec"]["size"] = 11
w["status"] = {"phase": "Ignored"}
w2 = ok(*call("PUT", "/apis/example.com/v1/namespaces/demo/widgets/gear", w), 200)
assert w2["spec"]["size"] == 11 and w2["status"] == {"phase": "Spinning"}, w2
assert w2["metadata"]["generation"] == w["metadata"]["generation"] + 1, w2
w2["spec"]["size"] = 99
w2["status"] = {"phase": "Stopped"}
w3 = ok(*call("PUT", "/apis/example.com/v1/namespaces/demo/widgets/gear/status", w2), 200)
assert w3["spec"]["size"] == 11 and w3["status"] == {"phase": "Stopped"}, w3
assert w3["metadata"]["generation"] == w2["metadata"]["generation"], w3
status(*call("GET", "/api/v1/namespaces/demo/configmaps/c1/status"), 404, "NotFound")
# pods get Pending; the pod status subresource moves the phase
pod = ok(*call("PATCH", "/api/v1/namespaces/demo/pods/db-0/status",
               {"status": {"phase": "Running"}}, "application/merge-patch+json"), 200)
assert pod["status"]["phase"] == "Running", pod
# finalizers hold a deletion until they are removed
f = ok(*call("POST", "/api/v1/namespaces/demo/configmaps",
             {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}), 201)
d = ok(*call("DELETE", "/api/v1/namespaces/demo/configmaps/held"), 202)
assert d["metadata"]["deletionTimestamp"], d
ok(*call("GET", "/api/v1/namespaces/demo/configmaps/held"), 200)
ok(*call("PATCH", "/api/v1/namespaces/demo/configmaps/held", {"metadata": {"finalizers": None}},
         "application/merge-patch+json"), 200)
status(*call("GET", "/api/v1/namespaces/demo/configmaps/held"), 404, "NotFound")
# ownerReferences: dependents go with their last owner, or are released with Orphan
def mk(name, owners=()):
    md = {"name": name}
    if owners:
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"],
                                  "uid": o["metadata"]["uid"]} for o in owners]
    return ok(*call("POST", "/api/v1/namespaces/demo/configmaps", {"metadata": md}), 201)
o1, o2, o3 = mk("owner-1"), mk("owner-2"), mk("owner-3")
mk("dep-a", [o1]); mk("dep-b", [o1, o2]); mk("dep-c", [o3])
ok(*call("DELETE", "/api/v1/namespaces/demo/configmaps/owner-1"), 200)
status(*call("GET", "/api/v1/namespaces/demo/configmaps/dep-a"), 404, "NotFound")
b = ok(*call("GET", "/api/v1/namespaces/demo/configmaps/dep-b"), 200)
ok(*call("DELETE", "/api/v1/namespaces/demo/configmaps/owner-2"), 200)
status(*call("GET", "/api/v1/namespaces/demo/configmaps/dep-b"), 404, "NotFound")
ok(*call("DELETE", "/api/v1/namespaces/demo/configmaps/owner-3", {"propagationPolicy": "Orphan"}), 200)
c = ok(*call("GET", "/api/v1/namespaces/demo/configmaps/dep-c"), 200)
assert "ownerReferences" not in c["metadata"], c
# Table and metadata-only forms
t = ok(*call("GET", "/api/v1/namespaces/demo/configmaps", accept="application/json;as=Table;v=v1;g=meta.k8s.io"), 200)
assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1", t
assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Data", "Age"], t
assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata", t["rows"][0]
# discovery details
g = ok(*call("GET", "/apis"), 200)
snap = [x for x in g["groups"] if x["name"] == "snapshot.storage.k8s.io"][0]
assert snap["preferredVersion"] == {"groupVersion": "snapshot.storage.k8s.io/v1", "version": "v1"}
r = ok(*call("GET", "/apis/stasis.io/v1alpha1"), 200)
byname = {x["name"]: x for x in r["resources"]}
assert byname["backups"]["namespaced"] and byname["backups"]["kind"] == "Backup", byname
assert byname["backups/status"]["verbs"] == ["get", "patch", "update"], byname
assert ok(*call("GET", "/api"), 200)["versions"] == ["v1"]
# request counts
ok(*call("DELETE", "/standin/requests"), 200)
ok(*call("GET", "/api/v1/namespaces/demo/configmaps?limit=2"), 200)
ok(*call("GET", "/apis/apps/v1/namespaces/demo/deployments/web"), 200)
n = ok(*call("GET", "/standin/requests"), 200)
assert n["total"] == 2 and n["byVerb"] == {"list": 1, "get": 1}, n
assert n["byResource"] == {"configmaps": {"list": 1}, "deployments.apps": {"get": 1}}, n
' || fail "HTTP checks"

# --- pagination and selectors over 250 objects --------------------------------------------------
py '
ok(*call("POST", "/api/v1/namespaces", {"metadata": {"name": "bulk"}}), 201)
for i in range(250):
    ok(*call("POST", "/api/v1/namespaces/bulk/configmaps", {"metadata": {
        "name": "cm-%03d" % i, "labels": dict({"parity": "even" if i % 2 == 0 else "odd",
                                                 "tier": "t%d" % (i % 3)},
                                                **({"special": "yes"} if i % 50 == 0 else {}))}}),
       201)
full = ok(*call("GET", "/api/v1/namespaces/bulk/configmaps"), 200)
assert full["kind"] == "ConfigMapList" and len(full["items"]) == 250
list_rv = full["metadata"]["resourceVersion"]
pages, cont, names = 0, None, []
while True:
    q = "/api/v1/namespaces/bulk/configmaps?limit=100" + ("&continue=" + cont if cont else "")
    page = ok(*call("GET", q), 200)
    pages += 1
    names += [o["metadata"]["name"] for o in page["items"]]
    cont = page["metadata"].get("continue")
    if pages == 1:
        assert page["metadata"]["remainingItemCount"] == 150, page["metadata"]
        assert len(page["items"]) == 100
    if not cont:
        assert "remainingItemCount" not in page["metadata"], page["metadata"]
        break
assert pages == 3 and names == ["cm-%03d" % i for i in range(250)], (pages, names[:5])
status(*call("GET", "/api/v1/namespaces/bulk/configmaps?limit=5&continue=garbage"), 400, "BadRequest")
def count(q):
    return len(ok(*call("GET", "/api/v1/namespaces/bulk/configmaps?" + q), 200)["items"])
assert count("labelSelector=parity%3Deven") == 125
assert count("labelSelector=parity%3D%3Dodd") == 125
assert count("labelSelector=parity!%3Deven") == 125
assert count("labelSelector=tier%20in%20(t0,t1)") == 167
assert count("labelSelector=tier%20notin%20(t0,t1)") == 83
assert count("labelSelector=special") == 5
assert count("labelSelector=!special") == 245
assert count("labelSelector=parity%3Deven,tier%3Dt0") == 42
assert count("labelSelector=parity%3Deven,special") == 5
assert count("fieldSelector=metadata.name%3Dcm-007") == 1
assert count("fieldSelector=metadata.name!%3Dcm-007") == 249
assert count("fieldSelector=metadata.namespace%3Dbulk&labelSelector=special") == 5
# a selector with pagination: pages hold only matching objects
page = ok(*call("GET", "/api/v1/namespaces/bulk/configmaps?labelSelector=parity%3Dodd&limit=50"), 200)
assert len(page["items"]) == 50 and page["metadata"]["continue"], page["metadata"]
assert all(o["metadata"]["labels"]["parity"] == "odd" for o in page["items"])
status(*call("GET", "/api/v1/namespaces/bulk/configmaps?fieldSelector=data.k%3Dv"), 400, "BadRequest")
status(*call("GET", "/api/v1/namespaces/bulk/configmaps?labelSelector=a%20in%20(b"), 400, "BadRequest")
pods = ok(*call("GET", "/api/v1/pods?fieldSelector=status.phase%3DRunning"), 200)["items"]
assert [p["metadata"]["name"] for p in pods] == ["db-0"], pods
assert len(ok(*call("GET", "/api/v1/pods?fieldSelector=status.phase%3DPending"), 200)["items"]) == 0
# cross-namespace list
assert len(ok(*call("GET", "/api/v1/configmaps?labelSelector=special"), 200)["items"]) == 5
# deletecollection with a label selector
gone = ok(*call("DELETE", "/api/v1/namespaces/bulk/configmaps?labelSelector=tier%3Dt2"), 200)
assert len(gone["items"]) == 83, len(gone["items"])
assert count("") == 167
' || fail "pagination and selectors"

# --- watches: events, timeout, 410 for an expired resourceVersion --------------------------------
py '
import threading, time
rv = ok(*call("GET", "/api/v1/namespaces/bulk/configmaps?limit=1"), 200)["metadata"]["resourceVersion"]
# history holds 200 events; 250 creates happened since resourceVersion 1
evs = watch("/api/v1/namespaces/bulk/configmaps?watch=true&resourceVersion=1")
assert len(evs) == 1 and evs[0]["type"] == "ERROR", evs[:3]
st = evs[0]["object"]
assert st["kind"] == "Status" and st["code"] == 410 and st["reason"] == "Expired", st
assert "too old resource version" in st["message"], st
# a watch from a current resourceVersion sees ADDED, MODIFIED, DELETED in order
def writer():
    time.sleep(0.3)
    ok(*call("POST", "/api/v1/namespaces/bulk/configmaps", {"metadata": {"name": "w1", "labels": {"parity": "odd"}}}), 201)
    ok(*call("POST", "/api/v1/namespaces/bulk/configmaps", {"metadata": {"name": "w2", "labels": {"parity": "even"}}}), 201)
    ok(*call("PATCH", "/api/v1/namespaces/bulk/configmaps/w1", {"data": {"a": "b"}}, "application/merge-patch+json"), 200)
    ok(*call("PATCH", "/api/v1/namespaces/bulk/configmaps/w2", {"metadata": {"labels": {"parity": "odd"}}}, "application/merge-patch+json"), 200)
    ok(*call("PATCH", "/api/v1/namespaces/bulk/configmaps/w1", {"metadata": {"labels": {"parity": "even"}}}, "application/merge-patch+json"), 200)
    ok(*call("DELETE", "/api/v1/namespaces/bulk/configmaps/w2"), 200)
t = threading.Thread(target=writer)
t.start()
start = time.monotonic()
evs = watch("/api/v1/namespaces/bulk/configmaps?watch=true&timeoutSeconds=2&labelSelector=parity%%3Dodd&resourceVersion=%s" % rv)
took = time.monotonic() - start
t.join()
assert 1.5 <= took < 5, took
seen = [(e["type"], e["object"]["metadata"]["name"]) for e in evs]
assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("ADDED", "w2"), ("DELETED", "w1"),
                ("DELETED", "w2")], seen
rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
assert rvs == sorted(rvs) and rvs[0] > int(rv), rvs
# without a resourceVersion the current objects arrive first as ADDED
evs = watch("/api/v1/namespaces/bulk/configmaps?watch=true&timeoutSeconds=1&labelSelector=special")
assert [e["type"] for e in evs] == ["ADDED"] * 3, [e["type"] for e in evs]
# bookmarks
evs = watch("/api/v1/namespaces/bulk/configmaps?watch=true&timeoutSeconds=1&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&labelSelector=special")
assert evs[-1]["type"] == "BOOKMARK", evs[-1]
assert evs[-1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
' || fail "watch checks"

# --- a Python harness (kclient) that watches and acts ------------------------------------------------
PYTHONPATH=$STASIS_ROOT/tests/k8s $PY - "$work/kubeconfig" <<'EOF' || fail "kclient harness"
import sys, threading
sys.dont_write_bytecode = True
from kclient import Client, APIStatusError
c = Client.from_kubeconfig(sys.argv[1])
def vs(name=None, sub=None):
    return c.path("snapshot.storage.k8s.io", "v1", "volumesnapshots", "demo", name, sub)
rv = c.get(vs(), limit="1")["metadata"]["resourceVersion"]
def act():
    for ev in c.watch(vs(), resource_version=rv, timeout_seconds=10):
        if ev["type"] == "ADDED":
            c.patch(vs(ev["object"]["metadata"]["name"], "status"), {"status": {"readyToUse": True}})
            return
t = threading.Thread(target=act)
t.start()
c.create(vs(), {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                "metadata": {"name": "snap-1"},
                "spec": {"source": {"persistentVolumeClaimName": "data"}}})
t.join()
got = c.get(vs("snap-1"))
assert got["status"] == {"readyToUse": True} and got["spec"]["source"], got
try:
    c.get(vs("snap-2"))
    raise AssertionError("snap-2 exists")
except APIStatusError as e:
    assert e.code == 404 and e.reason == "NotFound", e
assert len(c.list(c.path("", "v1", "namespaces"), limit="2")) >= 5
EOF
k get vs -n demo snap-1 | grep -Eq '^snap-1 +true +data ' || fail "vs table: $(k get vs -n demo)"

# --- mutating admission webhooks ----------------------------------------------------------------
# A webhook server of the test's own: it labels pods mutated=yes with a JSON patch and denies pods
# labelled deny=yes; its certificate is for the service name whk.hooks.svc only.
k create -f - >/dev/null <<EOF || fail "create webhook configuration"
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: test-hooks}
webhooks:
- name: pods.test.io
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 5
  clientConfig:
    service: {namespace: hooks, name: whk, port: 443, path: /mutate}
    caBundle: $(base64 -w0 "$work/ca.crt")
  rules:
  - {operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods], scope: Namespaced}
  namespaceSelector:
    matchExpressions:
    - {key: kubernetes.io/metadata.name, operator: NotIn, values: [skipme]}
EOF
k create namespace skipme >/dev/null || fail "create namespace skipme"
pod_yaml() { # NAME NAMESPACE [LABEL]
	printf 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: %s\n' "$1" "$2"
	[ -z "${3:-}" ] || printf '  labels: {%s}\n' "$3"
	printf 'spec:\n  containers: [{name: c, image: busybox}]\n'
}
pod_yaml hooked demo "app: x" | k create -f - >/dev/null || fail "create pod hooked"
[ "$(k get pod hooked -n demo -o jsonpath='{.metadata.labels.mutated}/{.metadata.labels.app}')" = \
	"yes/x" ] || fail "webhook patch not applied: $(k get pod hooked -n demo -o json)"
rc=0
pod_yaml refused demo 'deny: "yes"' | k create -f - 2>"$work/err" >/dev/null || rc=$?
[ $rc -ne 0 ] && grep -q 'admission webhook "pods.test.io" denied the request: denied by test' \
	"$work/err" || fail "denial: exit $rc, $(cat "$work/err")"
pod_yaml skipped skipme | k create -f - >/dev/null || fail "create pod skipped"
[ -z "$(k get pod skipped -n skipme -o jsonpath='{.metadata.labels.mutated}')" ] ||
	fail "namespaceSelector did not exclude skipme"
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nohook, namespace: demo}\n' |
	k create -f - >/dev/null || fail "configmap with a pods-only webhook"
[ "$(grep -c '"operation": "CREATE"' "$work/whk.log")" -eq 2 ] ||
	fail "webhook calls: $(cat "$work/whk.log")"
stop_pid "$whk"
whk=
rc=0
pod_yaml orphan demo | k create -f - 2>"$work/err" >/dev/null || rc=$?
[ $rc -ne 0 ] && grep -q 'failed calling webhook "pods.test.io"' "$work/err" ||
	fail "failurePolicy Fail with the webhook down: exit $rc, $(cat "$work/err")"
k patch mutatingwebhookconfiguration test-hooks --type=json \
	-p '[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Ignore"}]' >/dev/null ||
	fail "patch failurePolicy"
pod_yaml orphan demo | k create -f - >/dev/null || fail "failurePolicy Ignore with the webhook down"
k delete mutatingwebhookconfiguration test-hooks >/dev/null || fail "delete webhook configuration"

# --- namespace deletion ----------------------------------------------------------------------------
py '
import threading
rv = ok(*call("GET", "/api/v1/namespaces/bulk/configmaps?limit=1"), 200)["metadata"]["resourceVersion"]
n = ok(*call("GET", "/api/v1/namespaces/bulk/configmaps"), 200)["items"]
res = {}
def watcher():
    res["evs"] = watch("/api/v1/namespaces/bulk/configmaps?watch=true&timeoutSeconds=2&resourceVersion=" + rv)
t = threading.Thread(target=watcher)
t.start()
import time; time.sleep(0.3)
ns = ok(*call("DELETE", "/api/v1/namespaces/bulk"), 200)
assert ns["status"]["phase"] == "Terminating" and ns["metadata"]["deletionTimestamp"], ns
assert ok(*call("GET", "/api/v1/namespaces/bulk/configmaps"), 200)["items"] == []
assert ok(*call("GET", "/api/v1/configmaps?fieldSelector=metadata.namespace%3Dbulk"), 200)["items"] == []
status(*call("POST", "/api/v1/namespaces/bulk/configmaps", {"metadata": {"name": "late"}}), 403, "Forbidden")
t.join()
dels = [e["object"]["metadata"]["name"] for e in res["evs"] if e["type"] == "DELETED"]
assert sorted(dels) == sorted(o["metadata"]["name"] for o in n) and len(dels) == len(n), (len(dels), len(n))
deadline = time.monotonic() + 5
while call("GET", "/api/v1/namespaces/bulk")[0] != 404:
    assert time.monotonic() < deadline, "namespace bulk still there"
    time.sleep(0.05)
ok(*call("POST", "/api/v1/namespaces", {"metadata": {"name": "bulk"}}), 201)
assert ok(*call("GET", "/api/v1/namespaces/bulk/configmaps"), 200)["items"] == []
' || fail "namespace deletion"
k delete namespace demo >/dev/null || fail "kubectl delete namespace"
rc=0
k get namespace demo 2>/dev/null || rc=$?
[ $rc -ne 0 ] || fail "namespace demo still there after kubectl delete"
[ -z "$(k get pods -n demo -o name)" ] || fail "pods left after the namespace deletion"
[ "$(k get pods -A -o name)" = pod/skipped ] || fail "pods of other namespaces: $(k get pods -A)"

# --- CRD deletion ------------------------------------------------------------------------------------
k delete crd widgets.example.com >/dev/null || fail "kubectl delete crd"
py '
status(*call("GET", "/apis/example.com/v1"), 404, "NotFound")
assert "example.com" not in [g["name"] for g in ok(*call("GET", "/apis"), 200)["groups"]]
status(*call("GET", "/apis/example.com/v1/widgets"), 404, "NotFound")
' || fail "CRD deletion"
k api-resources | grep -q '^widgets ' && fail "widgets still in api-resources"

# --- structural schemas: pruning and defaulting of custom resources -------------------------------
py '
import time
crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
       "metadata": {"name": "gadgets.example.com"},
       "spec": {"group": "example.com", "scope": "Cluster",
                "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                "versions": [{"name": "v1beta1", "served": True, "storage": False,
                              "schema": {"openAPIV3Schema": {"type": "object",
                                                             "x-kubernetes-preserve-unknown-fields": True}}},
                             {"name": "v1", "served": True, "storage": True,
                              "subresources": {"status": {}},
                              "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                  "spec": {"type": "object", "properties": {
                                      "size": {"type": "integer", "default": 1},
                                      "tags": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
                                      "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                      "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
                                  "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}}}]}}
ok(*call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd), 201)
bad = dict(crd, metadata={"name": "gizmos.example.com"})
status(*call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", bad), 422, "Invalid")
g = ok(*call("GET", "/apis/example.com"), 200)
assert g["preferredVersion"]["version"] == "v1" and [v["version"] for v in g["versions"]] == ["v1", "v1beta1"], g
o = ok(*call("POST", "/apis/example.com/v1/gadgets", {"metadata": {"name": "g1"}, "spec": {
    "extra": 1, "tags": [{"k": "a", "x": 2}], "free": {"any": {"thing": 1}}, "labels": {"a": "b"}},
    "top": 3, "status": {"phase": "X"}}), 201)
assert o["spec"] == {"size": 1, "tags": [{"k": "a"}], "free": {"any": {"thing": 1}}, "labels": {"a": "b"}}, o
assert "top" not in o and "status" not in o, o
s = ok(*call("PATCH", "/apis/example.com/v1/gadgets/g1/status", {"status": {"phase": "Up", "junk": 1}},
             "application/merge-patch+json"), 200)
assert s["status"] == {"phase": "Up"}, s
# the other version serves the same objects under its own apiVersion
o = ok(*call("GET", "/apis/example.com/v1beta1/gadgets/g1"), 200)
assert o["apiVersion"] == "example.com/v1beta1" and o["spec"]["size"] == 1, o
' || fail "structural schemas"

# --- client certificates, state file and hooks (second instance) -------------------------------------
start_standin 2 --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" --client-ca "$work/ca.crt" \
	--state-file "$work/state.json" --kubeconfig-out "$work/kc2" --kubeconfig-ca "$work/ca.crt" \
	--kubeconfig-client-cert "$work/client.crt" --kubeconfig-client-key "$work/client.key" \
	--on-create "configmaps=cat >\"$work/hook.json\"; env | grep ^STANDIN_ >\"$work/hook.env\"" \
	--on-create "volumesnapshots=kubectl --kubeconfig \"\$STANDIN_KUBECONFIG\" \
		-n \"\$STANDIN_NAMESPACE\" patch volumesnapshot \"\$STANDIN_NAME\" --subresource=status \
		--type=merge -p '{\"status\":{\"readyToUse\":true}}' >/dev/null"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/ca.crt" "$url2/api/v1/namespaces")
[ "$code" = 401 ] || fail "no client certificate: HTTP $code"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/ca.crt" --cert "$work/client.crt" \
	--key "$work/client.key" "$url2/api/v1/namespaces")
[ "$code" = 200 ] || fail "client certificate: HTTP $code"
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept}\ndata: {a: "1"}\n' |
	KUBECONFIG=$work/kc2 kubectl --request-timeout=20s create -f - >/dev/null || fail "create on instance 2"
for i in $(seq 50); do [ -s "$work/hook.env" ] && break; sleep 0.1; done
$PY -c 'import json,sys; o=json.load(open(sys.argv[1])); assert o["metadata"]["name"] == "kept", o' \
	"$work/hook.json" || fail "hook stdin"
grep -qx "STANDIN_NAME=kept" "$work/hook.env" && grep -qx "STANDIN_EVENT=ADDED" "$work/hook.env" &&
	grep -qx "STANDIN_NAMESPACE=default" "$work/hook.env" || fail "hook env: $(cat "$work/hook.env")"
printf 'apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot\nmetadata: {name: s1}\nspec: {}\n' |
	KUBECONFIG=$work/kc2 kubectl --request-timeout=20s create -f - >/dev/null || fail "create vs"
for i in $(seq 100); do
	[ "$(KUBECONFIG=$work/kc2 kubectl get vs s1 -o jsonpath='{.status.readyToUse}')" = true ] && break
	[ "$i" -lt 100 ] || fail "the volumesnapshots hook did not mark s1 ready"
	sleep 0.1
done
rv_before=$(KUBECONFIG=$work/kc2 kubectl get cm kept -o jsonpath='{.metadata.resourceVersion}')
stop_pid "$standin2"
standin2=
[ -s "$work/state.json" ] || fail "state file not written"
start_standin 3 --state-file "$work/state.json"
rv_after=$(curl -s "$url3/api/v1/namespaces/default/configmaps/kept" |
	$PY -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["resourceVersion"])')
[ "$rv_before" = "$rv_after" ] || fail "state file: resourceVersion $rv_before became $rv_after"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
	-d '{"metadata":{"name":"more"}}' "$url3/api/v1/namespaces/default/configmaps")
[ "$code" = 201 ] || fail "plain HTTP create: $code"
stop_pid "$standin3"
standin3=''
# Without authentication over HTTPS, the kubeconfig names the serving certificate as its CA and
# kubectl must not ask for credentials.
start_standin 3 --state-file "$work/state.json" --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" \
	--kubeconfig-out "$work/kc3"
[ "$(KUBECONFIG=$work/kc3 kubectl --request-timeout=20s get cm more -o jsonpath='{.metadata.name}' \
	</dev/null)" = more ] || fail "kubectl with the written kubeconfig and no authentication"

# SIGTERM ends the server, its open watches included, with status 0.
k get configmaps -A --watch >/dev/null 2>&1 &
watcher=$!
sleep 0.5
kill -TERM "$standin"
rc=0
timeout 10 tail --pid="$standin" -f /dev/null || fail "the stand-in did not stop on SIGTERM"
wait "$standin" || rc=$?
standin=
[ $rc -eq 0 ] || fail "the stand-in exited $rc on SIGTERM"
echo "k8s stand-in: kubectl create/get/label/annotate/patch/scale/watch/delete/api-resources and HTTP checks passed"
