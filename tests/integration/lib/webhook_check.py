"""Drives a running stasis-webhook and checks its answers independently.

Every review is built from real manifests (../shared/conformance/manifests)
or the Kubernetes round-trip fixtures; the returned JSON Patch is applied
with python3-jsonpatch, and the resulting pod is compared with what the
injection rules say it must be, computed here without the webhook's code.
"""
import argparse
import base64
import copy
import glob
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

import jsonpatch
import yaml

FAILS = []


def check(cond, msg):
    if not cond:
        FAILS.append(msg)
        print("FAIL:", msg, file=sys.stderr)


class Client:
    def __init__(self, url, ca):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=ca)

    def conn(self):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=10)

    def post(self, path, body, ctype="application/json", conn=None):
        c = conn or self.conn()
        c.request("POST", path, body=body, headers={"Content-Type": ctype})
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        return r.status, data

    def get(self, path):
        c = self.conn()
        c.request("GET", path)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data


def review(pod, ns, uid, version="v1", dry_run=False, operation="CREATE"):
    return {
        "apiVersion": "admission.k8s.io/" + version,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": ns,
            "name": pod.get("metadata", {}).get("name", ""),
            "operation": operation,
            "dryRun": dry_run,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
        },
    }


def pods_from_manifest(path):
    """Pod objects as controllers would create them from each workload."""
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    out = []
    for d in docs:
        kind = d.get("kind")
        if kind == "Pod":
            out.append((d.get("metadata", {}).get("namespace", "default"), copy.deepcopy(d)))
            continue
        if kind not in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            continue
        tmpl = copy.deepcopy(d["spec"]["template"])
        meta = tmpl.setdefault("metadata", {})
        name = d["metadata"]["name"]
        ns = d["metadata"].get("namespace", "default")
        spec = tmpl["spec"]
        if kind == "StatefulSet":
            meta["name"] = name + "-0"
            for vct in d["spec"].get("volumeClaimTemplates", []):
                vname = vct["metadata"]["name"]
                spec.setdefault("volumes", []).append(
                    {"name": vname, "persistentVolumeClaim": {"claimName": "%s-%s-0" % (vname, name)}})
        else:
            meta["generateName"] = name + "-"
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
        out.append((ns, pod))
    return out


def expected_volumes(pod):
    """Writable PVC/ephemeral volumes mounted read-write by a container."""
    spec = pod.get("spec", {})
    rw = set()
    for c in spec.get("containers", []):
        for m in c.get("volumeMounts", []):
            if not m.get("readOnly", False):
                rw.add(m["name"])
    vols = []
    for v in spec.get("volumes", []):
        pvc = v.get("persistentVolumeClaim")
        ok = (pvc is not None and not pvc.get("readOnly", False)) or "ephemeral" in v
        if ok and v["name"] in rw and v["name"] not in vols:
            vols.append(v["name"])
    return vols


def decode(status, data, uid, version, what):
    check(status == 200, "%s: HTTP %s %r" % (what, status, data[:200]))
    if status != 200:
        return None
    r = json.loads(data)
    check(r.get("apiVersion") == "admission.k8s.io/" + version, "%s: answered in %s" % (what, r.get("apiVersion")))
    check(r.get("kind") == "AdmissionReview", "%s: kind" % what)
    resp = r.get("response", {})
    check(resp.get("uid") == uid, "%s: uid not echoed" % what)
    check(resp.get("allowed") is True, "%s: not allowed" % what)
    return resp


def apply_patch(pod, resp, what):
    if "patch" not in resp:
        return pod
    check(resp.get("patchType") == "JSONPatch", "%s: patchType" % what)
    ops = json.loads(base64.b64decode(resp["patch"]))
    return jsonpatch.JsonPatch(ops).apply(pod, in_place=False)


def check_injected(orig, patched, vols, what, image, timeout="20s"):
    ann = patched["metadata"].get("annotations", {})
    check(ann.get("stasis.io/injected") == "v1", "%s: injected mark" % what)
    check(ann.get("stasis.io/volumes") == ",".join(vols), "%s: volumes %r != %r" % (what, ann.get("stasis.io/volumes"), vols))
    fz = [c for c in patched["spec"]["containers"] if c["name"] == "stasis-freezer"]
    check(len(fz) == 1, "%s: one freezer container" % what)
    if not fz:
        return
    fz = fz[0]
    check(fz["image"] == image, "%s: image" % what)
    check(fz.get("securityContext", {}).get("privileged") is True, "%s: privileged" % what)
    mounts = [(m["name"], m["mountPath"]) for m in fz["volumeMounts"]]
    check(mounts == [(v, "/stasis/volumes/" + v) for v in vols], "%s: mounts %r" % (what, mounts))
    env = {e["name"]: e for e in fz["env"]}
    check(env["STASIS_FREEZE_TIMEOUT"]["value"] == timeout, "%s: timeout env" % what)
    check(env["STASIS_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", "%s: pod name env" % what)
    check("requests" in fz.get("resources", {}), "%s: resource requests" % what)
    user_hooks = any(k.startswith(("pre.hook.backup.velero.io/", "post.hook.backup.velero.io/"))
                     for k in orig["metadata"].get("annotations", {}) or {})
    if not user_hooks:
        check(ann.get("pre.hook.backup.velero.io/container") == "stasis-freezer", "%s: pre container" % what)
        check(json.loads(ann["pre.hook.backup.velero.io/command"]) == ["/stasis-agent", "freeze", "--timeout", timeout],
              "%s: pre command" % what)
        check(ann.get("pre.hook.backup.velero.io/on-error") == "Fail", "%s: on-error" % what)
        check(json.loads(ann["post.hook.backup.velero.io/command"]) == ["/stasis-agent", "thaw"], "%s: post command" % what)
    # Nothing else changed: strip our additions and compare with the original.
    stripped = copy.deepcopy(patched)
    stripped["spec"]["containers"] = [c for c in stripped["spec"]["containers"] if c["name"] != "stasis-freezer"]
    sa = stripped["metadata"].get("annotations", {})
    for k in list(sa):
        if k not in (orig["metadata"].get("annotations") or {}):
            del sa[k]
    if not sa and "annotations" not in orig["metadata"]:
        stripped["metadata"].pop("annotations", None)
    check(stripped == orig, "%s: the rest of the pod changed" % what)


def manifests(cli, shared, image):
    n = 0
    injected = 0
    for path in sorted(glob.glob(os.path.join(shared, "conformance/manifests/*/*.yaml"))):
        for ns, pod in pods_from_manifest(path):
            n += 1
            what = "%s[%s]" % (os.path.relpath(path, shared), pod["metadata"].get("name") or pod["metadata"].get("generateName"))
            for version in ("v1", "v1beta1"):
                p = copy.deepcopy(pod)
                p["metadata"].setdefault("annotations", {})
                p["metadata"]["annotations"]["stasis.io/freeze"] = "true"
                uid = "uid-%d-%s" % (n, version)
                st, data = cli.post("/mutate/pods", json.dumps(review(p, ns, uid, version)))
                resp = decode(st, data, uid, version, what)
                if resp is None:
                    continue
                vols = expected_volumes(p)
                patched = apply_patch(p, resp, what)
                if not vols:
                    check("patch" not in resp, "%s: patched a pod with nothing to freeze" % what)
                    check(any("mounts no writable" in w for w in resp.get("warnings", [])),
                          "%s: no warning for a pod that asked but has nothing to freeze" % what)
                    continue
                injected += version == "v1"
                check_injected(p, patched, vols, what, image)
                # Reinvocation: the patched pod comes back unchanged.
                st, data = cli.post("/mutate/pods", json.dumps(review(patched, ns, uid + "-again", version)))
                resp2 = decode(st, data, uid + "-again", version, what + " again")
                check(resp2 is not None and "patch" not in resp2, "%s: second pass changed the pod" % what)
    check(n >= 7, "only %d pod templates found" % n)
    check(injected >= 5, "only %d templates were injected" % injected)
    print("manifests: %d pod templates, %d injected" % (n, injected))


def policies(cli, image):
    base = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-", "labels": {"app": "web"}},
            "spec": {"volumes": [{"name": "html", "persistentVolumeClaim": {"claimName": "html"}}],
                     "containers": [{"name": "nginx", "image": "nginx",
                                     "volumeMounts": [{"name": "html", "mountPath": "/usr/share/nginx/html"}]}]}}
    # Rule by namespace, annotations absent, dryRun.
    st, data = cli.post("/mutate/pods", json.dumps(review(base, "rules-ns", "r1", dry_run=True)))
    resp = decode(st, data, "r1", "v1", "rule")
    if resp:
        check_injected(base, apply_patch(base, resp, "rule"), ["html"], "rule", image)
    # Excluding rule and an unmatched namespace: unchanged.
    for ns, uid in (("quiet-ns", "r2"), ("other", "r3")):
        st, data = cli.post("/mutate/pods", json.dumps(review(base, ns, uid)))
        resp = decode(st, data, uid, "v1", ns)
        check(resp is not None and "patch" not in resp, "%s: pod changed" % ns)
    # Opt-out annotation beats the rule.
    p = copy.deepcopy(base)
    p["metadata"]["annotations"] = {"stasis.io/freeze": "false"}
    st, data = cli.post("/mutate/pods", json.dumps(review(p, "rules-ns", "r4")))
    resp = decode(st, data, "r4", "v1", "opt-out")
    check(resp is not None and "patch" not in resp, "opt-out: pod changed")
    # Annotation keys needing ~0/~1 escaping survive next to ours.
    p = copy.deepcopy(base)
    p["metadata"]["annotations"] = {"stasis.io/freeze": "true", "odd~key/with/slashes": "1", "~": "2"}
    st, data = cli.post("/mutate/pods", json.dumps(review(p, "x", "r5")))
    resp = decode(st, data, "r5", "v1", "escaping")
    if resp:
        patched = apply_patch(p, resp, "escaping")
        check(patched["metadata"]["annotations"]["odd~key/with/slashes"] == "1", "escaping: user key lost")
        check_injected(p, patched, ["html"], "escaping", image)
    # UPDATE and non-pod objects pass untouched.
    st, data = cli.post("/mutate/pods", json.dumps(review(p, "x", "r6", operation="UPDATE")))
    resp = decode(st, data, "r6", "v1", "update")
    check(resp is not None and "patch" not in resp, "update: pod changed")


def fixtures(cli, shared):
    fx = os.path.join(shared, "conformance/k8s-fixtures")
    for version in ("v1", "v1beta1"):
        with open(os.path.join(fx, "admission.k8s.io.%s.AdmissionReview.json" % version)) as f:
            body = f.read()
        st, data = cli.post("/mutate/pods", body)
        resp = decode(st, data, "uidValue", version, "fixture " + version)
        check(resp is not None and "patch" not in resp, "fixture %s: a CustomType was patched" % version)
    with open(os.path.join(fx, "core.v1.Pod.json")) as f:
        pod = json.load(f)
    pod.setdefault("metadata", {}).setdefault("annotations", {})["stasis.io/freeze"] = "true"
    st, data = cli.post("/mutate/pods", json.dumps(review(pod, "ns", "fx-pod")))
    resp = decode(st, data, "fx-pod", "v1", "fixture pod")
    if resp is not None:
        patched = apply_patch(pod, resp, "fixture pod")
        vols = expected_volumes(pod)
        if vols:
            check_injected(pod, patched, vols, "fixture pod", patched["spec"]["containers"][-1]["image"], timeout="20s")
        else:
            check("patch" not in resp, "fixture pod: patched without volumes")
        print("fixture pod: volumes %r" % vols)


def bad_inputs(cli, work):
    cases = [
        ("truncated", b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x"', "application/json", 400, b"unexpected end"),
        ("not json", b"hello", "application/json", 400, b"invalid JSON"),
        ("wrong kind", b'{"apiVersion":"v1","kind":"Pod"}', "application/json", 400, b"expected AdmissionReview"),
        ("content type", b"{}", "text/plain", 415, b"application/json"),
    ]
    for name, body, ctype, code, msg in cases:
        st, data = cli.post("/mutate/pods", body, ctype)
        check(st == code, "%s: HTTP %s, expected %s" % (name, st, code))
        check(msg in data, "%s: message %r lacks %r" % (name, data[:200], msg))
    # 50 MiB body: refused with 413 before it is read, server stays up.
    big = b'{"a":"' + b"x" * (50 << 20) + b'"}'
    try:
        st, data = cli.post("/mutate/pods", big)
        check(st == 413, "50 MiB body: HTTP %s" % st)
        check(b"exceeds the limit" in data, "50 MiB body: message %r" % data[:200])
    except (ConnectionError, ssl.SSLError, http.client.HTTPException, OSError) as e:
        # The server may close the connection while the client is still sending.
        print("50 MiB body: connection closed early (%s)" % e.__class__.__name__)
    st, _ = cli.get("/healthz")
    check(st == 200, "healthz after the big body: %s" % st)
    st, _ = cli.get("/nope")
    check(st == 404, "unknown path: %s" % st)
    # Plain HTTP on the TLS port: no HTTP answer, and the server keeps serving.
    s = socket.create_connection((cli.host, cli.port), timeout=5)
    s.sendall(b"POST /mutate/pods HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    try:
        reply = s.recv(100)
    except (ConnectionResetError, socket.timeout):
        reply = b""
    s.close()
    check(not reply.startswith(b"HTTP/1.1 200"), "plain HTTP was answered: %r" % reply[:50])
    # Slow client: half a request, then silence. The server must drop it after the
    # connection timeout (3 s) while still serving others.
    raw = socket.create_connection((cli.host, cli.port), timeout=10)
    tls = cli.ctx.wrap_socket(raw, server_hostname=cli.host)
    tls.sendall(b"POST /mutate/pods HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a\":")
    t0 = time.time()
    st, _ = cli.get("/healthz")
    check(st == 200, "healthz while a slow client holds a connection: %s" % st)
    try:
        got = tls.recv(100)
    except (ConnectionResetError, ssl.SSLError, socket.timeout, OSError):
        got = b""
    waited = time.time() - t0
    tls.close()
    check(waited < 9, "slow client held for %.1f s" % waited)
    check(not got.startswith(b"HTTP/1.1 200"), "slow client got a 200")
    print("bad inputs: slow client dropped after %.1f s" % waited)


def served_serial(cli):
    der = None
    raw = socket.create_connection((cli.host, cli.port), timeout=5)
    with cli.ctx.wrap_socket(raw, server_hostname=cli.host) as t:
        der = t.getpeercert(binary_form=True)
    return der


def rotation(cli, work, image):
    """New certificate files are picked up while requests keep flowing."""
    before = served_serial(cli)
    stop = threading.Event()
    errors = []
    count = [0]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {"stasis.io/freeze": "true"}},
           "spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "d"}}],
                    "containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "d", "mountPath": "/d"}]}]}}
    body = json.dumps(review(pod, "ns", "rot"))

    def traffic():
        while not stop.is_set():
            try:
                c = cli.conn()
                for _ in range(20):
                    st, _ = cli.post("/mutate/pods", body, conn=c)
                    if st != 200:
                        errors.append(st)
                    count[0] += 1
                c.close()
            except Exception as e:  # noqa: BLE001 - any failure is a finding
                errors.append(repr(e))

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1)
    subprocess.run(["bash", "-c", ". %s/tests/integration/lib/common.sh; make_certs %s next" % (os.environ["STASIS_ROOT"], work)], check=True)
    # Replace the pair the way a Secret volume update does: new files renamed into place.
    shutil.copy(os.path.join(work, "next.key"), os.path.join(work, "tls.key.new"))
    shutil.copy(os.path.join(work, "next.crt"), os.path.join(work, "tls.crt.new"))
    os.rename(os.path.join(work, "tls.key.new"), os.path.join(work, "tls.key"))
    os.rename(os.path.join(work, "tls.crt.new"), os.path.join(work, "tls.crt"))
    time.sleep(2.5)
    after = served_serial(cli)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    check(before != after, "rotation: the old certificate is still served")
    with open(os.path.join(work, "next.crt")) as f:
        want = ssl.PEM_cert_to_DER_cert(f.read())
    check(after == want, "rotation: served certificate is not the new file")
    check(not errors, "rotation: %d failed requests: %r" % (len(errors), errors[:5]))
    check(count[0] > 50, "rotation: only %d requests under traffic" % count[0])
    print("rotation: %d requests during rotation, %d errors" % (count[0], len(errors)))


def metrics(cli):
    st, data = cli.get("/metrics")
    text = data.decode()
    check(st == 200, "metrics: HTTP %s" % st)
    check('stasis_webhook_requests_total{path="/mutate/pods",code="200"}' in text, "metrics: request counter")
    check('stasis_webhook_requests_total{path="/mutate/pods",code="400"}' in text, "metrics: 400 counter")
    check('stasis_webhook_injections_total{result="injected"}' in text, "metrics: injections")
    check("stasis_webhook_request_duration_seconds_bucket" in text, "metrics: histogram")
    st, data = cli.get("/readyz")
    check(st == 200, "readyz: %s" % st)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    cli = Client(a.url, a.ca)
    image = "registry.example/stasis-agent:test"
    manifests(cli, a.shared, image)
    policies(cli, image)
    fixtures(cli, a.shared)
    bad_inputs(cli, a.work)
    rotation(cli, a.work, image)
    metrics(cli)
    if FAILS:
        print("%d checks failed" % len(FAILS), file=sys.stderr)
        sys.exit(1)
    print("all webhook checks passed")


if __name__ == "__main__":
    main()
