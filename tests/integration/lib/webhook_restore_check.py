"""Drives a running stasis-webhook's /mutate/restore and checks its answers.

Objects come from the real manifests in ../shared/conformance/manifests,
labelled the way Velero (velero.io/restore-name) or stasis
(stasis.io/restore-name) label what they restore. Each returned JSON Patch is
applied with python3-jsonpatch, and the result is compared with the object
the test expects, written out here field by field (no code shared with the
webhook). The rules are those of webhook_restore.sh's config:

  storage classes: fast -> standard-rwo, ocs-storagecluster-ceph-rbd -> rbd,
                   gp2 -> gp3 (Velero ConfigMap file)
  registries:      docker.io -> mirror.local:5000,
                   gcr.io/google-samples -> samples.local (Velero ConfigMap file)
"""
import argparse
import base64
import copy
import http.client
import json
import os
import ssl
import sys
import urllib.parse

import jsonpatch
import yaml

FAILS = []
VELERO = {"velero.io/restore-name": "nightly-20260101", "velero.io/backup-name": "nightly"}
STASIS = {"stasis.io/restore-name": "r-1"}
BETA = "volume.beta.kubernetes.io/storage-class"


def check(cond, msg):
    if not cond:
        FAILS.append(msg)
        print("FAIL:", msg, file=sys.stderr)


class Client:
    def __init__(self, url, ca):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=ca)

    def request(self, method, path, body=None):
        c = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=10)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data


def load(shared, rel):
    with open(os.path.join(shared, "conformance", "manifests", rel)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def labelled(obj, labels):
    o = copy.deepcopy(obj)
    o.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    return o


def review(obj, uid, version="v1", operation="CREATE"):
    kind = obj.get("kind", "")
    return {
        "apiVersion": "admission.k8s.io/" + version,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": kind.lower() + "s"},
            "namespace": obj.get("metadata", {}).get("namespace", "restored"),
            "name": obj.get("metadata", {}).get("name", ""),
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:velero:velero"},
            "object": obj,
        },
    }


def admit(client, obj, uid, version="v1", operation="CREATE"):
    """Returns the object after the webhook's patch (or the object itself) and the patch."""
    status, data = client.request("POST", "/mutate/restore",
                                  json.dumps(review(obj, uid, version, operation)))
    check(status == 200, "%s: status %d %r" % (uid, status, data[:200]))
    if status != 200:
        return obj, None
    out = json.loads(data)
    check(out.get("apiVersion") == "admission.k8s.io/" + version,
          "%s: answered in %r" % (uid, out.get("apiVersion")))
    resp = out["response"]
    check(resp.get("uid") == uid, "%s: uid %r" % (uid, resp.get("uid")))
    check(resp.get("allowed") is True, "%s: not allowed: %r" % (uid, resp))
    if "patch" not in resp:
        check("patchType" not in resp, "%s: patchType without a patch" % uid)
        return obj, None
    check(resp.get("patchType") == "JSONPatch", "%s: patchType %r" % (uid, resp.get("patchType")))
    ops = json.loads(base64.b64decode(resp["patch"]))
    return jsonpatch.apply_patch(obj, ops), ops


def expect_equal(uid, got, want):
    if got != want:
        diff = jsonpatch.make_patch(want, got).patch
        check(False, "%s: result differs from the expected object by %s" % (uid, json.dumps(diff)))


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--shared", required=True)
    a = ap.parse_args()
    cl = Client(a.url, a.ca)
    remapped = 0

    # 1. The Velero nginx example: its PVC, given the class "fast", and its Deployment.
    docs = {d["kind"]: d for d in load(a.shared, "velero-nginx-app/with-pv.yaml")}
    pvc = copy.deepcopy(docs["PersistentVolumeClaim"])
    pvc["spec"]["storageClassName"] = "fast"
    dep = docs["Deployment"]
    for version in ("v1", "v1beta1"):
        obj = labelled(pvc, VELERO)
        want = copy.deepcopy(obj)
        want["spec"]["storageClassName"] = "standard-rwo"
        got, ops = admit(cl, obj, "pvc-" + version, version)
        expect_equal("pvc-" + version, got, want)
        check(ops is not None and len(ops) == 1, "pvc-%s: patch %r" % (version, ops))
        obj = labelled(dep, VELERO)
        want = copy.deepcopy(obj)
        pod_spec(want)["containers"][0]["image"] = "mirror.local:5000/library/nginx:1.17.6"
        pod_spec(want)["containers"][1]["image"] = "mirror.local:5000/library/ubuntu:bionic"
        got, ops = admit(cl, obj, "deploy-" + version, version)
        expect_equal("deploy-" + version, got, want)
        remapped += 2
    # Unlabelled, they pass unchanged (no patch at all), in both versions.
    for version in ("v1", "v1beta1"):
        for name, obj in (("pvc", pvc), ("deploy", dep)):
            got, ops = admit(cl, obj, "plain-%s-%s" % (name, version), version)
            check(ops is None and got == obj, "plain-%s-%s: patched %r" % (name, version, ops))
    # A restore-labelled UPDATE is left alone (a claim's class cannot change).
    got, ops = admit(cl, labelled(pvc, VELERO), "update-pvc", "v1", "UPDATE")
    check(ops is None, "update-pvc: patched %r" % ops)

    # 2. StatefulSets: claim templates with the beta annotation and with
    # storageClassName, registries from the config map and from the Velero ConfigMap.
    mongo = [d for d in load(a.shared, "mongo-k8s-sidecar-mongodb/mongo-statefulset.yaml")
             if d["kind"] == "StatefulSet"][0]
    obj = labelled(mongo, STASIS)
    want = copy.deepcopy(obj)
    pod_spec(want)["containers"][0]["image"] = "mirror.local:5000/library/mongo:3.4"
    pod_spec(want)["containers"][1]["image"] = "mirror.local:5000/cvallance/mongo-k8s-sidecar"
    want["spec"]["volumeClaimTemplates"][0]["metadata"]["annotations"][BETA] = "standard-rwo"
    got, _ = admit(cl, obj, "mongo")
    expect_equal("mongo", got, want)
    cass = [d for d in load(a.shared, "k8s-examples-cassandra/cassandra-statefulset.yaml")
            if d["kind"] == "StatefulSet"][0]
    obj = labelled(cass, VELERO)
    want = copy.deepcopy(obj)
    pod_spec(want)["containers"][0]["image"] = "samples.local/cassandra:v14"
    want["spec"]["volumeClaimTemplates"][0]["metadata"]["annotations"][BETA] = "standard-rwo"
    got, _ = admit(cl, obj, "cassandra", "v1beta1")
    expect_equal("cassandra", got, want)
    pg = load(a.shared, "ocs-ci-postgres/StatefulSet.yaml")[0]
    obj = labelled(pg, VELERO)
    want = copy.deepcopy(obj)
    want["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] = "rbd"
    got, ops = admit(cl, obj, "postgres")
    expect_equal("postgres", got, want)
    check(ops is not None and len(ops) == 1, "postgres: quay.io has no rule, patch %r" % ops)
    mysql = load(a.shared, "k8s-website-mysql-replicated/mysql-statefulset.yaml")[0]
    obj = labelled(mysql, VELERO)
    want = copy.deepcopy(obj)
    for c in pod_spec(want)["initContainers"] + pod_spec(want)["containers"]:
        c["image"] = {"mysql:5.7": "mirror.local:5000/library/mysql:5.7",
                      "gcr.io/google-samples/xtrabackup:1.0": "samples.local/xtrabackup:1.0"}[
            c["image"]]
    got, ops = admit(cl, obj, "mysql")
    expect_equal("mysql", got, want)
    check(ops is not None and len(ops) == 4, "mysql: patch %r" % ops)
    remapped += 4

    # 3. A PersistentVolume (class from the Velero ConfigMap file), a Pod, a CronJob.
    pv = {"apiVersion": "v1", "kind": "PersistentVolume",
          "metadata": {"name": "pv-1", "labels": dict(VELERO),
                       "annotations": {BETA: "gp2"}},
          "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                   "storageClassName": "gp2", "hostPath": {"path": "/tmp/pv-1"},
                   "claimRef": {"namespace": "shop", "name": "data"}}}
    want = copy.deepcopy(pv)
    want["spec"]["storageClassName"] = "gp3"
    want["metadata"]["annotations"][BETA] = "gp3"
    got, _ = admit(cl, pv, "pv")
    expect_equal("pv", got, want)
    cj = {"apiVersion": "batch/v1", "kind": "CronJob",
          "metadata": {"name": "dump", "namespace": "shop", "labels": dict(STASIS)},
          "spec": {"schedule": "0 1 * * *", "jobTemplate": {"spec": {"template": {"spec": {
              "restartPolicy": "OnFailure",
              "containers": [{"name": "dump", "image": "postgres@sha256:" + "ab" * 32}],
              "volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
                  "spec": {"storageClassName": "fast", "accessModes": ["ReadWriteOnce"],
                           "resources": {"requests": {"storage": "1Gi"}}}}}}]}}}}}}
    want = copy.deepcopy(cj)
    js = want["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    js["containers"][0]["image"] = "mirror.local:5000/library/postgres@sha256:" + "ab" * 32
    js["volumes"][0]["ephemeral"]["volumeClaimTemplate"]["spec"]["storageClassName"] = \
        "standard-rwo"
    got, _ = admit(cl, cj, "cronjob")
    expect_equal("cronjob", got, want)
    remapped += 2

    # 4. The Kubernetes round-trip AdmissionReview fixtures: decoded and answered
    # (their object carries no restore label, so no patch).
    for version in ("v1", "v1beta1"):
        path = os.path.join(a.shared, "conformance", "k8s-fixtures",
                            "admission.k8s.io.%s.AdmissionReview.json" % version)
        with open(path) as f:
            body = f.read()
        uid = json.loads(body)["request"]["uid"]
        status, data = cl.request("POST", "/mutate/restore", body)
        check(status == 200, "fixture %s: status %d %r" % (version, status, data[:200]))
        if status == 200:
            resp = json.loads(data)["response"]
            check(resp["uid"] == uid and resp["allowed"] is True and "patch" not in resp,
                  "fixture %s: %r" % (version, resp))

    # 5. Bad requests are refused with a reason; the decisions are counted.
    status, data = cl.request("POST", "/mutate/restore", "{\"kind\": \"Pod\"}")
    check(status == 400 and b"AdmissionReview" in data, "bad review: %d %r" % (status, data))
    status, data = cl.request("GET", "/mutate/restore")
    check(status == 405, "GET: %d" % status)
    status, data = cl.request("GET", "/metrics")
    text = data.decode()
    line = 'stasis_webhook_restore_remaps_total{result="remapped"} %d' % remapped
    check(line in text, "metrics lack %r:\n%s" % (line, "\n".join(
        l for l in text.splitlines() if "restore" in l)))
    check('stasis_webhook_restore_remaps_total{result="not_labelled"} 4' in text,
          "not_labelled count: %s" % [l for l in text.splitlines() if "not_labelled" in l])
    # The fixtures' operation is a placeholder, not CREATE, as is the UPDATE above.
    check('stasis_webhook_restore_remaps_total{result="not_applicable"} 3' in text,
          "not_applicable count: %s" % [l for l in text.splitlines() if "not_appl" in l])
    check('stasis_webhook_requests_total{path="/mutate/restore",code="400"} 1' in text,
          "400 not counted under /mutate/restore")

    if FAILS:
        print("%d failures" % len(FAILS), file=sys.stderr)
        return 1
    print("webhook_restore_check: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
