"""Workload controllers of the end-to-end harness, kept minimal: a Deployment
owns its pods directly (no ReplicaSet) and replaces them all when its pod
template changes; a StatefulSet creates <name>-<i> pods in order (each one
after the previous is Ready, unless podManagementPolicy is Parallel) and the
claims of its volumeClaimTemplates (<template>-<name>-<i>, kept when the set
goes, as with the default retention policy). Both keep replicas,
readyReplicas, availableReplicas, updatedReplicas and observedGeneration in
their status. Runs on the main worker."""

import hashlib
import json

from hkube import APIStatusError


def template_hash(tmpl):
    return hashlib.sha256(json.dumps(tmpl, sort_keys=True).encode()).hexdigest()[:10]


def is_ready(pod):
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def ordinal(name):
    try:
        return int(name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def controller_of(obj):
    for r in obj["metadata"].get("ownerReferences") or []:
        if r.get("controller"):
            return r
    return None


class Workloads:
    def __init__(self, h):
        self.h = h
        self.kube = h.kube
        self.log = h.log
        self.created = {}    # owner uid -> {pod name}: created, not yet seen by the informer
        self.deleted = set()  # pod uids deleted, not yet gone from the informer

    def on_owner(self, kind, typ, obj, old):
        if typ == "DELETED":
            self.created.pop(obj["metadata"]["uid"], None)
            return
        self.reconcile(kind, obj["metadata"]["namespace"], obj["metadata"]["name"])

    def on_pod(self, typ, obj, old):
        if typ == "DELETED":
            self.deleted.discard(obj["metadata"]["uid"])
        ref = controller_of(obj)
        if ref and ref.get("kind") in ("Deployment", "StatefulSet"):
            self.reconcile(ref["kind"], obj["metadata"]["namespace"], ref["name"])

    def reconcile(self, kind, ns, name):
        plural = "deployments" if kind == "Deployment" else "statefulsets"
        obj = self.h.inf[plural].get(ns, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        try:
            if kind == "Deployment":
                self._deployment(obj)
            else:
                self._statefulset(obj)
        except APIStatusError as e:
            self.log("%s %s/%s: %s" % (kind.lower(), ns, name, e))

    def _owned(self, obj):
        uid = obj["metadata"]["uid"]
        out = {}
        for p in self.h.inf["pods"].items():
            r = controller_of(p)
            if (r and r.get("uid") == uid and not p["metadata"].get("deletionTimestamp") and
                    p["metadata"]["uid"] not in self.deleted):
                out[p["metadata"]["name"]] = p
        pending = self.created.get(uid, set())
        pending -= set(out)
        return out, pending

    def _owner_ref(self, obj, kind):
        return {"apiVersion": "apps/v1", "kind": kind, "name": obj["metadata"]["name"],
                "uid": obj["metadata"]["uid"], "controller": True,
                "blockOwnerDeletion": True}

    def _delete_pod(self, p):
        self.deleted.add(p["metadata"]["uid"])
        try:
            self.kube.delete(self.kube.rpath("pods", p["metadata"]["namespace"],
                                             p["metadata"]["name"]))
        except APIStatusError as e:
            if e.code != 404:
                raise

    def _create_pod(self, obj, kind, meta, spec):
        md = obj["metadata"]
        meta["namespace"] = md["namespace"]
        meta["ownerReferences"] = [self._owner_ref(obj, kind)]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
        made = self.kube.create(self.kube.rpath("pods", md["namespace"]), pod)
        self.created.setdefault(md["uid"], set()).add(made["metadata"]["name"])
        return made

    def _patch_status(self, plural, obj, st):
        cur = obj.get("status") or {}
        if all(cur.get(k) == v for k, v in st.items()):
            return
        self.kube.patch_status(plural, obj["metadata"]["namespace"], obj["metadata"]["name"],
                               st)

    # ------------------------------------------------------------- Deployment
    def _deployment(self, d):
        spec = d.get("spec") or {}
        want = spec.get("replicas", 1) if spec.get("replicas") is not None else 1
        tmpl = spec.get("template") or {}
        h = template_hash(tmpl)
        owned, pending = self._owned(d)
        old = [p for p in owned.values()
               if (p["metadata"].get("labels") or {}).get("pod-template-hash") != h]
        for p in old:
            self._delete_pod(p)
        current = [p for p in owned.values() if p not in old]
        if not old:
            n = len(current) + len(pending)
            for _ in range(max(0, want - n)):
                tmd = tmpl.get("metadata") or {}
                labels = dict(tmd.get("labels") or {})
                labels["pod-template-hash"] = h
                meta = {"generateName": "%s-%s-" % (d["metadata"]["name"], h), "labels": labels}
                if tmd.get("annotations"):
                    meta["annotations"] = dict(tmd["annotations"])
                self._create_pod(d, "Deployment", meta, json.loads(json.dumps(
                    tmpl.get("spec") or {})))
            if n > want:
                extra = sorted(current, key=lambda p: p["metadata"].get("creationTimestamp", ""),
                               reverse=True)[:n - want]
                for p in extra:
                    self._delete_pod(p)
                current = [p for p in current if p not in extra]
        ready = sum(1 for p in current if is_ready(p))
        self._patch_status("deployments", d, {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": len(current), "updatedReplicas": len(current),
            "readyReplicas": ready, "availableReplicas": ready,
            "unavailableReplicas": max(0, want - ready),
            "conditions": [{"type": "Available",
                            "status": "True" if ready >= want else "False",
                            "reason": "MinimumReplicasAvailable" if ready >= want else
                            "MinimumReplicasUnavailable"}]})

    # ------------------------------------------------------------ StatefulSet
    def _statefulset(self, s):
        md, spec = s["metadata"], s.get("spec") or {}
        name = md["name"]
        want = spec.get("replicas", 1) if spec.get("replicas") is not None else 1
        tmpl = spec.get("template") or {}
        rev = "%s-%s" % (name, template_hash(tmpl))
        ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        owned, pending = self._owned(s)
        for i in range(want):
            pname = "%s-%d" % (name, i)
            if pname in pending:
                if ordered:
                    break
                continue
            p = owned.get(pname)
            if p is None:
                self._ensure_claims(s, i)
                self._create_pod(s, "StatefulSet", self._sts_meta(s, tmpl, pname, rev),
                                 self._sts_spec(s, tmpl, pname, i))
                if ordered:
                    break
            elif ordered and not is_ready(p):
                break
        for pname, p in sorted(owned.items(), key=lambda kv: -ordinal(kv[0])):
            if ordinal(pname) >= want:
                self._delete_pod(p)
        live = [p for n, p in owned.items() if 0 <= ordinal(n) < want]
        ready = sum(1 for p in live if is_ready(p))
        self._patch_status("statefulsets", s, {
            "observedGeneration": md.get("generation", 1), "replicas": len(live),
            "readyReplicas": ready, "availableReplicas": ready, "currentReplicas": len(live),
            "updatedReplicas": len(live), "currentRevision": rev, "updateRevision": rev})

    def _sts_meta(self, s, tmpl, pname, rev):
        tmd = tmpl.get("metadata") or {}
        labels = dict(tmd.get("labels") or {})
        labels["controller-revision-hash"] = rev
        labels["statefulset.kubernetes.io/pod-name"] = pname
        meta = {"name": pname, "labels": labels}
        if tmd.get("annotations"):
            meta["annotations"] = dict(tmd["annotations"])
        return meta

    def _sts_spec(self, s, tmpl, pname, i):
        spec = json.loads(json.dumps(tmpl.get("spec") or {}))
        spec["hostname"] = pname
        if (s.get("spec") or {}).get("serviceName"):
            spec["subdomain"] = s["spec"]["serviceName"]
        vols = [v for v in spec.get("volumes") or []]
        for t in (s.get("spec") or {}).get("volumeClaimTemplates") or []:
            tname = t["metadata"]["name"]
            vols = [v for v in vols if v.get("name") != tname]
            vols.append({"name": tname, "persistentVolumeClaim": {
                "claimName": "%s-%s" % (tname, pname)}})
        spec["volumes"] = vols
        return spec

    def _ensure_claims(self, s, i):
        md = s["metadata"]
        ns, name = md["namespace"], md["name"]
        sel = ((s.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        for t in (s.get("spec") or {}).get("volumeClaimTemplates") or []:
            cname = "%s-%s-%d" % (t["metadata"]["name"], name, i)
            if self.h.inf["persistentvolumeclaims"].get(ns, cname) is not None:
                continue
            labels = dict(sel)
            labels.update((t.get("metadata") or {}).get("labels") or {})
            claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                     "metadata": {"name": cname, "namespace": ns, "labels": labels},
                     "spec": json.loads(json.dumps(t.get("spec") or {}))}
            try:
                self.kube.create(self.kube.rpath("persistentvolumeclaims", ns), claim)
            except APIStatusError as e:
                if e.code != 409:
                    raise
