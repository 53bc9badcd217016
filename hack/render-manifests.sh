#!/usr/bin/env bash
# Renders the templates in manifests/ into ready-to-apply YAML.
#
#   hack/render-manifests.sh BUILD_DIR OUT_DIR       (make manifests: build/release out/manifests)
#
# Uses BUILD_DIR/bin/stasis to create OUT_DIR/certs (CA, serving and client
# certificates) when it holds none yet, then fills every @@NAME@@ placeholder
# and writes OUT_DIR/<template>.yaml. Existing certificates are reused; when
# they were made for another namespace, the leaves are reissued under the same
# CA. Each rendered file is parsed as YAML before the script succeeds.
#
# Parameters (environment):
#   STASIS_NAMESPACE       namespace to install into              (default stasis)
#   STASIS_IMAGE           stasis-webhook image                   (default stasis/stasis-webhook:v0.1.0)
#   STASIS_AGENT_IMAGE     image of the injected freezer sidecar  (default stasis/stasis-agent:v0.1.0)
#   STASIS_FAILURE_POLICY  Ignore or Fail                         (default Ignore)
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 2
}
[ $# -eq 2 ] || usage
build=$1
out=$2
root=$(cd "$(dirname "$0")/.." && pwd)
stasis=$build/bin/stasis
ns=${STASIS_NAMESPACE:-stasis}
image=${STASIS_IMAGE:-stasis/stasis-webhook:v0.1.0}
agent_image=${STASIS_AGENT_IMAGE:-stasis/stasis-agent:v0.1.0}
policy=${STASIS_FAILURE_POLICY:-Ignore}

die() {
	echo "render-manifests: $*" >&2
	exit 1
}

[ -x "$stasis" ] || die "$stasis not found; build it first (make)"
[[ $ns =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] || die "STASIS_NAMESPACE '$ns' is not a DNS-1123 label"
case $policy in Ignore | Fail) ;; *) die "STASIS_FAILURE_POLICY must be Ignore or Fail, not '$policy'" ;; esac
for img in "$image" "$agent_image"; do
	[[ $img =~ ^[A-Za-z0-9][A-Za-z0-9._/:@-]*$ ]] || die "invalid image reference '$img'"
done

umask 077
mkdir -p "$out/certs"
certs=$out/certs
if [ ! -s "$certs/ca.crt" ] || [ ! -s "$certs/tls.crt" ] || [ ! -s "$certs/client.crt" ] ||
	[ "$(cat "$certs/namespace" 2>/dev/null)" != "$ns" ]; then
	"$stasis" certs --out-dir "$certs" --namespace "$ns" >&2
	printf '%s\n' "$ns" >"$certs/namespace"
fi

b64() { base64 -w0 <"$1"; }
ca_crt=$(b64 "$certs/ca.crt")
tls_crt=$(b64 "$certs/tls.crt")
tls_key=$(b64 "$certs/tls.key")
client_crt=$(b64 "$certs/client.crt")
client_key=$(b64 "$certs/client.key")

# Quoted replacements: bash 5.2 would otherwise expand '&' in them.
render() {
	local t
	t=$(<"$1")
	t=${t//@@NAMESPACE@@/"$ns"}
	t=${t//@@IMAGE@@/"$image"}
	t=${t//@@AGENT_IMAGE@@/"$agent_image"}
	t=${t//@@FAILURE_POLICY@@/"$policy"}
	t=${t//@@CA_BUNDLE@@/"$ca_crt"}
	t=${t//@@CA_CRT@@/"$ca_crt"}
	t=${t//@@TLS_CRT@@/"$tls_crt"}
	t=${t//@@TLS_KEY@@/"$tls_key"}
	t=${t//@@CLIENT_CRT@@/"$client_crt"}
	t=${t//@@CLIENT_KEY@@/"$client_key"}
	printf '%s\n' "$t"
}

shopt -s nullglob
templates=("$root"/manifests/*.yaml)
[ ${#templates[@]} -gt 0 ] || die "no templates in $root/manifests"
rendered=()
for tpl in "${templates[@]}"; do
	dst=$out/$(basename "$tpl")
	render "$tpl" >"$dst.tmp"
	if grep -n '@@[A-Z_]*@@' "$dst.tmp" >&2; then
		rm -f "$dst.tmp"
		die "$(basename "$tpl"): unknown placeholder (above)"
	fi
	# Only the Secrets hold keys, but nothing here needs to be world-readable.
	chmod 600 "$dst.tmp"
	mv -f "$dst.tmp" "$dst"
	rendered+=("$dst")
done

# Debian's python3 has python3-yaml (hack/install-deps.sh); another python3 on PATH may not.
py=/usr/bin/python3
[ -x "$py" ] || py=python3
if "$py" -c 'import yaml' 2>/dev/null; then
	"$py" - "${rendered[@]}" <<'EOF' || die "rendered YAML does not parse"
import sys, yaml
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        if doc is None:
            continue
        for key in ("apiVersion", "kind", "metadata"):
            if key not in doc:
                sys.exit("%s: a document has no %s" % (path, key))
        if doc["kind"] == "ConfigMap":
            for name, text in doc.get("data", {}).items():
                if name.endswith(".yaml"):
                    yaml.safe_load(text)
EOF
else
	echo "render-manifests: python3 with PyYAML not found; YAML not validated" >&2
fi

echo "rendered ${#rendered[@]} manifests into $out (namespace $ns, failurePolicy $policy); apply with: kubectl apply -f $out/"
