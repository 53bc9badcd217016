#!/usr/bin/env bash
# `stasis certs` and the manifest renderer, checked with the openssl tool as an
# independent oracle: chains, purposes, SANs, CA reuse and --force, an expired
# client certificate, real TLS handshakes (mutual TLS) between openssl s_server
# and s_client on 127.0.0.1, and the rendered YAML with its caBundle and Secrets.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

if ! command -v openssl >/dev/null 2>&1; then
	echo "openssl command-line tool not installed (Debian package openssl)"
	exit 77
fi

work=$(mktemp -d /tmp/st-certs-XXXXXX)
srv=
cleanup() {
	stop_pid "$srv"
	rm -rf "$work"
}
trap cleanup EXIT

stasis=$STASIS_BIN/stasis
fail() {
	echo "FAIL: $*" >&2
	exit 1
}
fp() { openssl x509 -noout -fingerprint -sha256 -in "$1"; }

# --- the CLI itself -------------------------------------------------------------------
"$stasis" --help | grep -q "certs" || fail "stasis --help does not list certs"
"$stasis" version | grep -q '^stasis ' || fail "stasis version"
"$stasis" version -o json | $PY -c 'import json,sys; assert json.load(sys.stdin)["version"]'
rc=0
"$stasis" no-such-verb 2>"$work/err" || rc=$?
[ $rc -eq 2 ] && grep -q "unknown verb 'no-such-verb'" "$work/err" || fail "unknown verb: exit $rc"
rc=0
"$stasis" certs --out-dir "$work/x" --no-such-flag 2>"$work/err" || rc=$?
[ $rc -eq 2 ] && grep -q "unknown option --no-such-flag" "$work/err" || fail "unknown flag: exit $rc"
[ ! -e "$work/x" ] || fail "a refused command created its output directory"
for args in "--log-level bogus version" "--log-level=bogus version"; do
	rc=0
	# shellcheck disable=SC2086 # split on purpose
	"$stasis" $args 2>"$work/err" || rc=$?
	[ $rc -eq 2 ] && grep -q "invalid value 'bogus' for --log-level" "$work/err" ||
		fail "stasis $args: exit $rc, $(cat "$work/err")"
done
rc=0
"$stasis" certs --days 0 --out-dir "$work/x" 2>"$work/err" || rc=$?
[ $rc -eq 2 ] && grep -q "invalid value '0' for --days" "$work/err" || fail "--days 0: exit $rc"
rc=0
"$stasis" certs 2>"$work/err" || rc=$?
[ $rc -eq 2 ] && grep -q -- "--out-dir is required" "$work/err" || fail "missing --out-dir: exit $rc"
# Every flag the help shows is one the parser knows.
for flag in $("$stasis" certs --help | grep -o -- '--[a-z-]*' | sort -u); do
	"$stasis" certs "$flag" 2>"$work/err" >/dev/null || true
	! grep -q "unknown option" "$work/err" || fail "certs --help shows $flag but the parser refuses it"
done

# --- issue and verify -------------------------------------------------------------------
a=$work/a
bash "$STASIS_ROOT/hack/gen-certs.sh" "$a" >"$work/out1"
grep -q "^wrote CA" "$work/out1" || fail "first run did not report a new CA"
for f in ca.crt ca.key tls.crt tls.key client.crt client.key; do
	[ -s "$a/$f" ] || fail "$f missing"
done
for f in ca.key tls.key client.key; do
	[ "$(stat -c %a "$a/$f")" = 600 ] || fail "$f has mode $(stat -c %a "$a/$f")"
done
openssl verify -CAfile "$a/ca.crt" -purpose sslserver "$a/tls.crt" >/dev/null || fail "tls.crt does not verify"
openssl verify -CAfile "$a/ca.crt" -purpose sslclient "$a/client.crt" >/dev/null || fail "client.crt does not verify"
! openssl verify -CAfile "$a/ca.crt" -purpose sslclient "$a/tls.crt" >/dev/null 2>&1 ||
	fail "the serving certificate passes as a client certificate"
openssl x509 -noout -text -in "$a/ca.crt" >"$work/ca.txt"
grep -A1 "Basic Constraints: critical" "$work/ca.txt" | grep -q "CA:TRUE" || fail "CA basicConstraints"
grep -A1 "Key Usage: critical" "$work/ca.txt" | grep -q "Certificate Sign, CRL Sign" || fail "CA keyUsage"
grep -q "Subject Key Identifier" "$work/ca.txt" || fail "CA subject key identifier"
openssl x509 -noout -text -in "$a/tls.crt" | grep -q "ecdsa-with-SHA256" || fail "signature algorithm"
san=$(openssl x509 -noout -ext subjectAltName -in "$a/tls.crt")
# The trailing commas make each name match exactly, not as a prefix of a longer one.
for want in "DNS:stasis-webhook," "DNS:stasis-webhook.stasis," "DNS:stasis-webhook.stasis.svc," \
	DNS:stasis-webhook.stasis.svc.cluster.local DNS:localhost "IP Address:127.0.0.1"; do
	grep -qF "$want" <<<"$san" || fail "SAN $want missing from: $san"
done
openssl x509 -noout -subject -in "$a/client.crt" | grep -q "CN = stasis-controller" || fail "client CN"
openssl x509 -noout -ext extendedKeyUsage -in "$a/client.crt" | grep -q "Client Authentication" ||
	fail "client extendedKeyUsage"
serial=$(openssl x509 -noout -serial -in "$a/tls.crt" | cut -d= -f2)
[ ${#serial} -ge 16 ] || fail "serial $serial is not random-looking"

# --- rotation: the CA is kept without --force, replaced with it ------------------------
ca1=$(fp "$a/ca.crt")
tls1=$(fp "$a/tls.crt")
cp "$a/tls.crt" "$work/old-tls.crt"
bash "$STASIS_ROOT/hack/gen-certs.sh" "$a" >"$work/out2"
grep -q "^kept CA" "$work/out2" || fail "second run did not keep the CA"
[ "$(fp "$a/ca.crt")" = "$ca1" ] || fail "CA changed without --force"
[ "$(fp "$a/tls.crt")" != "$tls1" ] || fail "serving certificate was not reissued"
openssl verify -CAfile "$a/ca.crt" "$a/tls.crt" "$work/old-tls.crt" >/dev/null || fail "reissued leaves"
cp -a "$a" "$work/forced"
bash "$STASIS_ROOT/hack/gen-certs.sh" "$work/forced" --force >/dev/null
[ "$(fp "$work/forced/ca.crt")" != "$ca1" ] || fail "--force kept the CA"
! openssl verify -CAfile "$work/forced/ca.crt" "$work/old-tls.crt" >/dev/null 2>&1 ||
	fail "an old leaf verifies against the new CA"

# --- an expired client certificate under the same CA ------------------------------------
e=$work/expired
mkdir -m 700 "$e"
cp "$a/ca.crt" "$a/ca.key" "$e/"
now=$(date +%s)
"$stasis" certs --out-dir "$e" --not-before "@$((now - 200))" --not-after "@$((now - 100))" >/dev/null
out=$(openssl verify -CAfile "$e/ca.crt" "$e/client.crt" 2>&1 || true)
grep -q "certificate has expired" <<<"$out" || fail "expired client: $out"
"$stasis" certs --out-dir "$work/future" --not-before 2099-01-01T00:00:00Z \
	--not-after 2099-02-01T00:00:00Z >/dev/null
out=$(openssl verify -CAfile "$work/future/ca.crt" "$work/future/tls.crt" 2>&1 || true)
grep -q "not yet valid" <<<"$out" || fail "future leaf: $out"

# --- RSA keys -----------------------------------------------------------------------------
"$stasis" certs --out-dir "$work/rsa" --key-type rsa --dns localhost >/dev/null
openssl pkey -in "$work/rsa/tls.key" -noout -text | grep -q "Private-Key: (2048 bit" || fail "RSA 2048"
openssl verify -CAfile "$work/rsa/ca.crt" "$work/rsa/tls.crt" >/dev/null || fail "RSA chain"

# --- real handshakes: mutual TLS between openssl s_server and s_client ----------------
port=$(free_port)
openssl s_server -accept "127.0.0.1:$port" -cert "$a/tls.crt" -key "$a/tls.key" \
	-CAfile "$a/ca.crt" -Verify 1 -verify_return_error -www >"$work/server.log" 2>&1 &
srv=$!
wait_for_log "$work/server.log" "ACCEPT" 10

# handshake CERT KEY [s_client options...]: prints s_client's output (never fails).
handshake() {
	local cert=$1 key=$2
	shift 2
	printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
		-CAfile "$a/ca.crt" -verify_return_error -cert "$cert" -key "$key" -ign_eof "$@" 2>&1 ||
		true
}

for name in stasis-webhook.stasis.svc stasis-webhook.stasis.svc.cluster.local localhost; do
	for proto in -tls1_2 -tls1_3; do
		out=$(handshake "$a/client.crt" "$a/client.key" -verify_hostname "$name" "$proto")
		grep -q "Verify return code: 0 (ok)" <<<"$out" || fail "handshake $name $proto: $out"
		grep -q "HTTP/1.0 200 ok" <<<"$out" || fail "no response over $name $proto: $out"
	done
done
out=$(handshake "$a/client.crt" "$a/client.key" -verify_ip 127.0.0.1)
grep -q "Verify return code: 0 (ok)" <<<"$out" || fail "handshake by IP: $out"
out=$(handshake "$a/client.crt" "$a/client.key" -verify_hostname other.example)
! grep -q "HTTP/1.0 200 ok" <<<"$out" && grep -q "hostname mismatch" <<<"$out" ||
	fail "a wrong host name was accepted: $out"
# The server refuses an expired client certificate, in TLS 1.2 and 1.3.
for proto in -tls1_2 -tls1_3; do
	out=$(handshake "$e/client.crt" "$e/client.key" "$proto")
	! grep -q "HTTP/1.0 200 ok" <<<"$out" || fail "expired client certificate accepted ($proto)"
	grep -qi "certificate expired\|alert number 45" <<<"$out" || fail "no expiry alert ($proto): $out"
done
# ...and a client certificate from another CA.
out=$(handshake "$work/forced/client.crt" "$work/forced/client.key")
! grep -q "HTTP/1.0 200 ok" <<<"$out" || fail "client certificate of a foreign CA accepted"
stop_pid "$srv"
srv=

# --- rendered manifests -------------------------------------------------------------------
m=$work/manifests
bash "$STASIS_ROOT/hack/render-manifests.sh" "$(dirname "$STASIS_BIN")" "$m" >/dev/null 2>"$work/render.log" ||
	{ cat "$work/render.log" >&2; fail "render-manifests"; }
$PY - "$m" <<'EOF' || fail "rendered manifests"
import base64, glob, os, sys, yaml
m = sys.argv[1]
docs = {}
for path in sorted(glob.glob(os.path.join(m, "*.yaml"))):
    for d in yaml.safe_load_all(open(path)):
        docs[(d["kind"], d["metadata"]["name"])] = d
certs = lambda n: open(os.path.join(m, "certs", n), "rb").read()
mwc = docs[("MutatingWebhookConfiguration", "stasis-webhook")]
wh = mwc["webhooks"][0]
assert base64.b64decode(wh["clientConfig"]["caBundle"]) == certs("ca.crt"), "caBundle"
assert wh["clientConfig"]["service"] == {"name": "stasis-webhook", "namespace": "stasis",
                                         "path": "/mutate/pods", "port": 443}, wh["clientConfig"]
assert wh["admissionReviewVersions"] == ["v1", "v1beta1"]
assert wh["rules"][0]["operations"] == ["CREATE"] and wh["rules"][0]["resources"] == ["pods"]
assert wh["sideEffects"] == "None" and wh["failurePolicy"] == "Ignore"
assert wh["timeoutSeconds"] == 5 and wh["reinvocationPolicy"] == "IfNeeded"
expr = wh["namespaceSelector"]["matchExpressions"][0]
assert expr["key"] == "kubernetes.io/metadata.name" and expr["operator"] == "NotIn"
assert set(expr["values"]) == {"stasis", "kube-system"}, expr
sec = docs[("Secret", "stasis-webhook-tls")]
assert sec["type"] == "kubernetes.io/tls"
for key, f in (("tls.crt", "tls.crt"), ("tls.key", "tls.key"), ("ca.crt", "ca.crt")):
    assert base64.b64decode(sec["data"][key]) == certs(f), key
cli = docs[("Secret", "stasis-controller-tls")]
assert base64.b64decode(cli["data"]["tls.crt"]) == certs("client.crt")
assert base64.b64decode(cli["data"]["tls.key"]) == certs("client.key")
dep = docs[("Deployment", "stasis-webhook")]
assert dep["spec"]["replicas"] == 2
c = dep["spec"]["template"]["spec"]["containers"][0]
assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
assert c["ports"][0]["containerPort"] == 8443
assert c["securityContext"]["readOnlyRootFilesystem"] is True
assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
mounts = {v["mountPath"]: v["name"] for v in c["volumeMounts"]}
assert mounts == {"/etc/stasis/tls": "tls", "/etc/stasis/config": "config"}, mounts
svc = docs[("Service", "stasis-webhook")]
assert svc["spec"]["ports"][0]["port"] == 443 and svc["spec"]["ports"][0]["targetPort"] == "https"
cfg = yaml.safe_load(docs[("ConfigMap", "stasis-webhook-config")]["data"]["config.yaml"])
assert cfg["listen"] == "0.0.0.0:8443" and cfg["tls"]["certFile"] == "/etc/stasis/tls/tls.crt"
assert cfg["injection"]["image"] == "stasis/stasis-agent:v0.1.0"
assert docs[("Namespace", "stasis")]
# No private CA key leaves the machine.
for path in glob.glob(os.path.join(m, "*.yaml")):
    assert base64.b64encode(certs("ca.key")).decode() not in open(path).read(), path
EOF
# Field names and shapes checked against the Kubernetes round-trip fixtures, whose
# objects carry every field of their type: a misspelt or misplaced field fails here.
fixtures=$STASIS_SHARED/conformance/k8s-fixtures
if [ -d "$fixtures" ]; then
	$PY - "$m" "$fixtures" <<'EOF' || fail "rendered manifests do not match the Kubernetes types"
import json, os, sys, yaml
m, fx = sys.argv[1], sys.argv[2]
types = {("apps/v1", "Deployment"): "apps.v1.Deployment.json",
         ("v1", "Service"): "core.v1.Service.json",
         ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"):
             "admissionregistration.k8s.io.v1.MutatingWebhookConfiguration.json"}

def check(obj, ref, path):
    if isinstance(ref, dict):
        assert isinstance(obj, dict), "%s: expected a map" % path
        # A map of free-form keys appears in the fixtures as {"<field>Key": "<field>Value"}.
        if len(ref) == 1 and next(iter(ref)).endswith("Key"):
            return
        for k, v in obj.items():
            assert k in ref, "%s.%s: no such field" % (path, k)
            check(v, ref[k], path + "." + k)
    elif isinstance(ref, list):
        assert isinstance(obj, list), "%s: expected a list" % path
        for i, v in enumerate(obj):
            check(v, ref[0], "%s[%d]" % (path, i))
    elif isinstance(ref, bool):
        assert isinstance(obj, bool), "%s: expected a boolean" % path
    elif isinstance(ref, int):
        assert isinstance(obj, (int, str)) and not isinstance(obj, bool), "%s: expected a number" % path

seen = 0
for name in sorted(os.listdir(m)):
    if not name.endswith(".yaml"):
        continue
    for doc in yaml.safe_load_all(open(os.path.join(m, name))):
        ref = types.get((doc["apiVersion"], doc["kind"]))
        if ref:
            check(doc, json.load(open(os.path.join(fx, ref))), doc["kind"])
            seen += 1
assert seen == 3, seen
EOF
else
	echo "note: $fixtures missing; field names not checked against the Kubernetes types" >&2
fi
# The ConfigMap carries the example of docs/configuration.md, so the two stay in sync.
if [ -f "$STASIS_ROOT/docs/configuration.md" ]; then
	$PY - "$m/20-config.yaml" "$STASIS_ROOT/docs/configuration.md" <<'EOF' ||
import re, sys, yaml
cm = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d)
rendered = yaml.safe_load(cm["data"]["config.yaml"])
doc = open(sys.argv[2]).read()
block = re.search(r"## Example\s+```yaml\n(.*?)```", doc, re.S)
assert block, "no '## Example' yaml block in docs/configuration.md"
example = yaml.safe_load(block.group(1))
assert rendered == example, "ConfigMap %r\n!= docs example %r" % (rendered, example)
EOF
		fail "manifests/20-config.yaml differs from the example in docs/configuration.md"
fi
# The webhook itself accepts the ConfigMap's config.yaml.
if [ -x "$STASIS_BIN/stasis-webhook" ]; then
	$PY -c 'import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    open(sys.argv[2], "w").write(d["data"]["config.yaml"])' "$m/20-config.yaml" "$work/config.yaml"
	"$STASIS_BIN/stasis-webhook" --config "$work/config.yaml" --print-config >"$work/printed" 2>&1 ||
		{ cat "$work/printed" >&2; fail "stasis-webhook refuses the rendered config.yaml"; }
	grep -q 'stasis/stasis-agent:v0.1.0' "$work/printed" ||
		fail "rendered config.yaml was not read as expected: $(cat "$work/printed")"
fi
# The caBundle, decoded, is a CA that the openssl tool accepts for the rendered Secret.
$PY - "$m" "$work" <<'EOF'
import base64, sys, yaml
m, w = sys.argv[1], sys.argv[2]
for d in yaml.safe_load_all(open(m + "/50-mutatingwebhook.yaml")):
    open(w + "/bundle.crt", "wb").write(base64.b64decode(d["webhooks"][0]["clientConfig"]["caBundle"]))
for d in yaml.safe_load_all(open(m + "/20-secrets.yaml")):
    if d["metadata"]["name"] == "stasis-webhook-tls":
        open(w + "/secret-tls.crt", "wb").write(base64.b64decode(d["data"]["tls.crt"]))
EOF
openssl verify -CAfile "$work/bundle.crt" -purpose sslserver "$work/secret-tls.crt" >/dev/null ||
	fail "rendered caBundle does not verify the rendered serving certificate"
# Parameters: namespace and failure policy; the leaves follow the namespace, the CA stays.
ca_before=$(fp "$m/certs/ca.crt")
STASIS_NAMESPACE=backup STASIS_FAILURE_POLICY=Fail \
	bash "$STASIS_ROOT/hack/render-manifests.sh" "$(dirname "$STASIS_BIN")" "$m" >/dev/null 2>&1
grep -q 'failurePolicy: "Fail"' "$m/50-mutatingwebhook.yaml" || fail "failure policy parameter"
grep -q 'values: \["backup", "kube-system"\]' "$m/50-mutatingwebhook.yaml" || fail "namespace parameter"
openssl x509 -noout -ext subjectAltName -in "$m/certs/tls.crt" | grep -q "stasis-webhook.backup.svc" ||
	fail "serving certificate not reissued for the new namespace"
[ "$(fp "$m/certs/ca.crt")" = "$ca_before" ] || fail "namespace change replaced the CA"
rc=0
STASIS_FAILURE_POLICY=Sometimes bash "$STASIS_ROOT/hack/render-manifests.sh" \
	"$(dirname "$STASIS_BIN")" "$m" >/dev/null 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "an invalid failure policy was rendered"

echo "certs: all checks passed"
