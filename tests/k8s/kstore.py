"""Object storage of the stand-in: one global resourceVersion counter, a
bounded event history for watches, CRUD with the API server's semantics
(server-set metadata, optimistic concurrency, status subresource, generation,
finalizers, namespace deletion, CRD registration) and optional persistence."""

import base64
import collections
import copy
import datetime
import json
import os
import random
import re
import threading
import time
import uuid

import kpatch
import kresources
import kschema
import kselect

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Types whose names are path segments rather than DNS names.
PATH_NAMED = {("rbac.authorization.k8s.io", "roles"), ("rbac.authorization.k8s.io", "rolebindings"),
              ("rbac.authorization.k8s.io", "clusterroles"),
              ("rbac.authorization.k8s.io", "clusterrolebindings")}
UNCONDITIONAL_GROUPS = {"", "apps", "batch", "storage.k8s.io", "coordination.k8s.io",
                        "rbac.authorization.k8s.io", "admissionregistration.k8s.io",
                        "apiextensions.k8s.io"}
# Groups served by CRDs on a real cluster: no strategic merge patch for them.
CRD_GROUPS = {"stasis.io", "snapshot.storage.k8s.io"}
SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"


class APIError(Exception):
    """An error the API answers with a Status object."""

    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self):
        out = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            out["details"] = self.details
        return out


def _details(rt, name, causes=None):
    d = {"kind": rt.plural if rt.crd is None else rt.plural}
    if name:
        d["name"] = name
    if rt.group:
        d["group"] = rt.group
    if causes:
        d["causes"] = causes
    return d


def not_found(rt, name):
    return APIError(404, "NotFound", "%s \"%s\" not found" % (rt.qualified, name),
                    _details(rt, name))


def already_exists(rt, name):
    return APIError(409, "AlreadyExists", "%s \"%s\" already exists" % (rt.qualified, name),
                    _details(rt, name))


def conflict(rt, name, why="the object has been modified; please apply your changes to the "
             "latest version and try again"):
    return APIError(409, "Conflict", "Operation cannot be fulfilled on %s \"%s\": %s"
                    % (rt.qualified, name, why), _details(rt, name))


def invalid(rt, name, causes):
    """causes: list of (field, message)."""
    kind = "%s.%s" % (rt.kind, rt.group) if rt.group else rt.kind
    msg = "%s \"%s\" is invalid: %s" % (kind, name, ", ".join("%s: %s" % c for c in causes))
    return APIError(422, "Invalid", msg, {
        "name": name, "group": rt.group, "kind": rt.kind,
        "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes]})


def bad_request(message):
    return APIError(400, "BadRequest", message)


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_part(obj, rt):
    out = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
    if "status" in rt.subresources:
        out.pop("status", None)
    return out


def _strip_volatile(obj):
    o = copy.deepcopy(obj)
    md = o.get("metadata", {})
    for k in ("resourceVersion", "managedFields", "generation"):
        md.pop(k, None)
    return o


Event = collections.namedtuple("Event", "rv key type obj old")


class Store:
    def __init__(self, history=2000, with_stasis=True, namespace_delay=0.2, state_file=None,
                 schemas=True):
        self.schemas = schemas
        self.cond = threading.Condition(threading.RLock())
        self.rv = 1
        self.history = collections.deque()
        self.history_size = max(1, history)
        self.compacted = 0  # events with rv <= compacted are gone
        self.objects = collections.defaultdict(dict)
        self.types = {}
        self.builtins = {}
        self.namespace_delay = namespace_delay
        self.subscribers = []
        self.state_file = state_file
        self.dirty = False
        self.closed = False
        for rt in kresources.builtin_types(with_stasis):
            self.types[(rt.group, rt.version, rt.plural)] = rt
            self.builtins[(rt.group, rt.version, rt.plural)] = rt
        loaded = state_file and os.path.exists(state_file) and self._load()
        if not loaded:
            for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
                self.create(self.lookup("", "v1", "namespaces"), None,
                            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    # --- types and discovery --------------------------------------------------------
    def lookup(self, group, version, plural):
        return self.types.get((group, version, plural))

    def groups(self):
        """{group: [versions sorted by preference]}"""
        out = collections.defaultdict(set)
        with self.cond:
            for (g, v, _p) in self.types:
                out[g].add(v)
        return {g: sorted(vs, key=kresources.version_priority) for g, vs in out.items()}

    def resources_of(self, group, version):
        with self.cond:
            return sorted((rt for (g, v, _p), rt in self.types.items()
                           if g == group and v == version), key=lambda r: r.plural)

    def all_types(self):
        with self.cond:
            return list(self.types.values())

    def _register_crd(self, crd):
        name = crd["metadata"]["name"]
        new = kresources.types_from_crd(crd)
        self._unregister_crd(name, delete_objects=False)
        for rt in new:
            for k in [k for k, t in self.types.items()
                      if t.key == rt.key and t.crd is None]:
                del self.types[k]
            self.types[(rt.group, rt.version, rt.plural)] = rt

    def _unregister_crd(self, name, delete_objects):
        gone = [k for k, t in self.types.items() if t.crd == name]
        keys = {self.types[k].key for k in gone}
        for k in gone:
            del self.types[k]
        for key in keys:
            if delete_objects:
                for _okey, obj in sorted(self.objects.get(key, {}).items()):
                    self._emit("DELETED", key, obj, None)
                self.objects.pop(key, None)
            if not any(t.key == key for t in self.types.values()):
                for bk, bt in self.builtins.items():
                    if bt.key == key:
                        self.types[bk] = bt

    # --- events ------------------------------------------------------------------------
    def _next_rv(self):
        self.rv += 1
        return self.rv

    def _emit(self, etype, key, obj, old):
        ev = Event(self.rv, key, etype, copy.deepcopy(obj), copy.deepcopy(old))
        self.history.append(ev)
        while len(self.history) > self.history_size:
            self.compacted = self.history.popleft().rv
        self.dirty = True
        for fn in self.subscribers:
            fn(ev)
        self.cond.notify_all()

    # --- reads -------------------------------------------------------------------------
    def _render(self, rt, obj):
        o = {"apiVersion": rt.api_version, "kind": rt.kind}
        for k, v in obj.items():
            if k not in o:
                o[k] = copy.deepcopy(v)
        return o

    def get(self, rt, ns, name):
        with self.cond:
            obj = self.objects[rt.key].get((ns or "", name))
            if obj is None:
                raise not_found(rt, name)
            return self._render(rt, obj)

    def _select(self, rt, ns, lsel, fsel):
        items = []
        for (ons, _name), obj in self.objects[rt.key].items():
            if ns and ons != ns:
                continue
            if not kselect.labels_match(lsel, obj["metadata"].get("labels")):
                continue
            if not kselect.fields_match(fsel, obj):
                continue
            items.append(obj)
        items.sort(key=self._sort_key)
        return items

    @staticmethod
    def _sort_key(obj):
        md = obj["metadata"]
        return "%s/%s" % (md["namespace"], md["name"]) if md.get("namespace") else md["name"]

    def list(self, rt, ns, lsel, fsel, limit=0, cont=None):
        with self.cond:
            list_rv = self.rv
            start = None
            if cont:
                try:
                    pad = cont + "=" * (-len(cont) % 4)
                    tok = json.loads(base64.urlsafe_b64decode(pad.replace("+", "-")
                                                              .replace("/", "_")))
                    list_rv = int(tok["rv"])
                    start = tok["start"]
                except (ValueError, KeyError, TypeError):
                    raise bad_request("continue key is not valid: invalid continue token")
                if list_rv <= self.compacted:
                    raise APIError(410, "Expired",
                                   "The provided continue parameter is too old to display a "
                                   "consistent list result. You can start a new list without "
                                   "the continue parameter.")
            items = self._select(rt, ns, lsel, fsel)
            if start is not None:
                items = [o for o in items if self._sort_key(o) >= start]
            meta = {"resourceVersion": str(list_rv)}
            if limit and len(items) > limit:
                rest = len(items) - limit
                items = items[:limit]
                tok = {"v": "meta.k8s.io/v1", "rv": list_rv,
                       "start": self._sort_key(items[-1]) + "\x00"}
                meta["continue"] = base64.urlsafe_b64encode(
                    json.dumps(tok).encode()).decode().rstrip("=")
                if not lsel and not fsel:
                    meta["remainingItemCount"] = rest
            return meta, [self._render(rt, o) for o in items]

    # --- writes ------------------------------------------------------------------------
    def _check_name(self, rt, name):
        if rt.key in PATH_NAMED:
            ok = name not in (".", "..") and "/" not in name and "%" not in name
        elif rt.key == ("", "namespaces"):
            ok = len(name) <= 63 and DNS_LABEL.match(name)
        else:
            ok = len(name) <= 253 and DNS_SUBDOMAIN.match(name)
        if not ok:
            raise invalid(rt, name, [("metadata.name", "Invalid value: \"%s\": a lowercase RFC "
                                      "1123 subdomain must consist of lower case alphanumeric "
                                      "characters, '-' or '.'" % name)])

    def _check_body(self, rt, ns, obj, name=None):
        if not isinstance(obj, dict):
            raise bad_request("the body of the request was in an unknown format")
        if obj.get("kind") and obj["kind"] != rt.kind:
            raise bad_request("the kind of the provided object (%s) does not match the kind of "
                              "the resource (%s)" % (obj["kind"], rt.kind))
        if obj.get("apiVersion") and obj["apiVersion"] != rt.api_version:
            raise bad_request("the API version in the data (%s) does not match the expected "
                              "API version (%s)" % (obj["apiVersion"], rt.api_version))
        md = obj.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise bad_request("metadata must be an object")
        self._check_maps(rt, md)
        if rt.namespaced:
            if md.get("namespace") and md["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        if name is not None:
            if md.get("name") and md["name"] != name:
                raise bad_request("the name of the object (%s) does not match the name on the "
                                  "URL (%s)" % (md["name"], name))
            md["name"] = name

    def _check_maps(self, rt, md):
        causes = []
        for field in ("labels", "annotations"):
            m = md.get(field)
            if m is None:
                continue
            if not isinstance(m, dict) or not all(isinstance(v, str) or v is None
                                                  for v in m.values()):
                raise bad_request("metadata.%s must map strings to strings" % field)
            for k in list(m):
                if m[k] is None:  # as Go decodes null into a map[string]string
                    m[k] = ""
                if not kselect.valid_key(k):
                    causes.append(("metadata.%s" % field, "Invalid value: \"%s\": name part "
                                   "must consist of alphanumeric characters, '-', '_' or '.'"
                                   % k))
                elif field == "labels" and not kselect.valid_value(m[k]):
                    causes.append(("metadata.labels", "Invalid value: \"%s\": a valid label "
                                   "must be an empty string or consist of alphanumeric "
                                   "characters, '-', '_' or '.'" % m[k]))
        if causes:
            raise invalid(rt, md.get("name") or md.get("generateName") or "", causes)

    def _require_namespace(self, rt, ns):
        if not rt.namespaced:
            return
        nsobj = self.objects[("", "namespaces")].get(("", ns))
        if nsobj is None:
            raise APIError(404, "NotFound", "namespaces \"%s\" not found" % ns,
                           {"name": ns, "kind": "namespaces"})
        if nsobj["metadata"].get("deletionTimestamp"):
            raise APIError(403, "Forbidden", "%s \"%s\" is forbidden: unable to create new "
                           "content in namespace %s because it is being terminated"
                           % (rt.qualified, "", ns),
                           {"name": ns, "kind": rt.plural, "group": rt.group, "causes": [{
                               "reason": "NamespaceTerminating", "message":
                               "namespace %s is being terminated" % ns,
                               "field": "metadata.namespace"}]})

    def _defaults(self, rt, obj):
        key = rt.key
        if key == ("", "namespaces"):
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = \
                obj["metadata"]["name"]
        elif key == ("", "pods"):
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        elif key == ("", "secrets"):
            sd = obj.pop("stringData", None) or {}
            for k, v in sd.items():
                obj.setdefault("data", {})[k] = base64.b64encode(str(v).encode()).decode()
            obj.setdefault("type", "Opaque")
        elif key == ("", "services"):
            obj.setdefault("spec", {}).setdefault("type", "ClusterIP")
        elif key == ("", "persistentvolumeclaims"):
            obj["status"] = {"phase": "Pending"}
        elif key == ("", "persistentvolumes"):
            obj["status"] = {"phase": "Pending"}
        elif key == ("apps", "deployments"):
            obj.setdefault("spec", {}).setdefault("replicas", 1)

    def _crd_status(self, crd):
        spec = crd.get("spec") or {}
        storage = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
        old = (crd.get("status") or {}).get("storedVersions") or []
        t = now_rfc3339()
        crd["status"] = {
            "acceptedNames": spec.get("names") or {},
            "storedVersions": sorted(set(old) | set(storage)),
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": t},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": t}]}

    def _validate_crd(self, rt, crd):
        try:
            kresources.types_from_crd(crd)
        except ValueError as e:
            raise invalid(rt, crd["metadata"].get("name", ""),
                          [tuple(x.split(": ", 1)) for x in e.args[0]])

    def create(self, rt, ns, obj, dry_run=False):
        with self.cond:
            obj = copy.deepcopy(obj)
            self._check_body(rt, ns, obj)
            md = obj["metadata"]
            if not md.get("name"):
                if md.get("generateName"):
                    md["name"] = md["generateName"] + "".join(
                        random.choice(SUFFIX_CHARS) for _ in range(5))
                else:
                    raise invalid(rt, "", [("metadata.name", "Required value: name or "
                                            "generateName is required")])
            name = md["name"]
            self._check_name(rt, name)
            if md.get("resourceVersion"):
                raise bad_request("resourceVersion should not be set on objects to be created")
            self._require_namespace(rt, ns)
            if (ns or "", name) in self.objects[rt.key]:
                raise already_exists(rt, name)
            for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
                md.pop(k, None)
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now_rfc3339()
            if rt.generation:
                md["generation"] = 1
            else:
                md.pop("generation", None)
            if "status" in rt.subresources:
                obj.pop("status", None)
            self._defaults(rt, obj)
            obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
            if rt.schema and self.schemas:
                obj = kschema.prune_and_default(obj, rt.schema)
            if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
                self._validate_crd(rt, obj)
                self._crd_status(obj)
            if dry_run:
                md["resourceVersion"] = str(self.rv)
                return self._render(rt, obj)
            md["resourceVersion"] = str(self._next_rv())
            self.objects[rt.key][(ns or "", name)] = obj
            if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
                self._register_crd(obj)
            self._emit("ADDED", rt.key, obj, None)
            return self._render(rt, obj)

    def update(self, rt, ns, name, obj, subresource=None, dry_run=False, from_patch=False):
        with self.cond:
            old = self.objects[rt.key].get((ns or "", name))
            if old is None:
                raise not_found(rt, name)
            obj = copy.deepcopy(obj)
            self._check_body(rt, ns, obj, name)
            md = obj["metadata"]
            want_rv = md.get("resourceVersion")
            if want_rv:
                if want_rv != old["metadata"]["resourceVersion"]:
                    raise conflict(rt, name)
            elif not from_patch and not (rt.crd is None and rt.group in UNCONDITIONAL_GROUPS):
                raise invalid(rt, name, [("metadata.resourceVersion", "Invalid value: 0x0: "
                                          "must be specified for an update")])
            if subresource == "status":
                new = copy.deepcopy(old)
                if "status" in obj:
                    new["status"] = obj["status"]
                else:
                    new.pop("status", None)
            else:
                new = obj
                if "status" in rt.subresources:
                    if "status" in old:
                        new["status"] = copy.deepcopy(old["status"])
                    else:
                        new.pop("status", None)
                nmd = new["metadata"]
                for k in ("uid", "creationTimestamp", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "generation"):
                    if k in old["metadata"]:
                        nmd[k] = old["metadata"][k]
                    else:
                        nmd.pop(k, None)
                if rt.key == ("", "namespaces"):
                    new["status"] = copy.deepcopy(old.get("status", {}))
                if rt.key == ("", "secrets"):
                    sd = new.pop("stringData", None) or {}
                    for k, v in sd.items():
                        new.setdefault("data", {})[k] = base64.b64encode(str(v).encode()).decode()
            new["apiVersion"], new["kind"] = rt.api_version, rt.kind
            if rt.schema and self.schemas:
                new = kschema.prune_and_default(new, rt.schema)
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if rt.generation and _spec_part(new, rt) != _spec_part(old, rt):
                new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
                self._validate_crd(rt, new)
                self._crd_status(new)
                new["status"]["conditions"] = old.get("status", {}).get(
                    "conditions", new["status"]["conditions"])
            if _strip_volatile(new) == _strip_volatile(old):
                return self._render(rt, old)
            if dry_run:
                return self._render(rt, new)
            new["metadata"]["resourceVersion"] = str(self._next_rv())
            nmd = new["metadata"]
            if nmd.get("deletionTimestamp") and not nmd.get("finalizers"):
                del self.objects[rt.key][(ns or "", name)]
                self._emit("DELETED", rt.key, new, old)
                self._collect_garbage(nmd.get("uid"), None)
                return self._render(rt, new)
            self.objects[rt.key][(ns or "", name)] = new
            if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
                self._register_crd(new)
            self._emit("MODIFIED", rt.key, new, old)
            return self._render(rt, new)

    def patch(self, rt, ns, name, ptype, body, subresource=None, dry_run=False):
        with self.cond:
            old = self.objects[rt.key].get((ns or "", name))
            if ptype == "apply":
                if old is None:
                    return self.create(rt, ns, body, dry_run), True
                ptype = "merge"
            if old is None:
                raise not_found(rt, name)
            cur = self._render(rt, old)
            try:
                if ptype == "json":
                    new = kpatch.json_patch(cur, body)
                elif ptype == "strategic":
                    if rt.crd is not None or rt.group in CRD_GROUPS:
                        raise APIError(415, "UnsupportedMediaType", "the body of the request "
                                       "was in an unknown format - accepted media types "
                                       "include: application/json-patch+json, "
                                       "application/merge-patch+json, "
                                       "application/apply-patch+yaml")
                    new = kpatch.strategic_merge_patch(cur, body)
                else:
                    if not isinstance(body, dict):
                        raise kpatch.PatchError("a merge patch must be a JSON object")
                    new = kpatch.merge_patch(cur, body)
            except kpatch.PatchError as e:
                raise APIError(422, "Invalid", "the server rejected our request due to an error "
                               "in our request: %s" % e)
            if not isinstance(new, dict):
                raise APIError(422, "Invalid", "the patch produced something other than an "
                               "object")
            return self.update(rt, ns, name, new, subresource, dry_run, from_patch=True), False

    def delete(self, rt, ns, name, opts=None, dry_run=False):
        opts = opts or {}
        with self.cond:
            old = self.objects[rt.key].get((ns or "", name))
            if old is None:
                raise not_found(rt, name)
            pre = opts.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise conflict(rt, name, "Precondition failed: UID in precondition: %s, UID in "
                               "object meta: %s" % (pre["uid"], old["metadata"]["uid"]))
            if pre.get("resourceVersion") and \
                    pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise conflict(rt, name, "Precondition failed: ResourceVersion in precondition: "
                               "%s, ResourceVersion in object meta: %s"
                               % (pre["resourceVersion"], old["metadata"]["resourceVersion"]))
            if dry_run:
                return self._render(rt, old)
            if rt.key == ("", "namespaces"):
                return self._delete_namespace(rt, old)
            if old["metadata"].get("finalizers"):
                if old["metadata"].get("deletionTimestamp"):
                    return self._render(rt, old)
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = now_rfc3339()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                new["metadata"]["resourceVersion"] = str(self._next_rv())
                self.objects[rt.key][(ns or "", name)] = new
                self._emit("MODIFIED", rt.key, new, old)
                return self._render(rt, new)
            return self._remove(rt, ns, name, opts.get("propagationPolicy"))

    def _remove(self, rt, ns, name, policy=None):
        old = self.objects[rt.key].pop((ns or "", name))
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self._next_rv())
        self._emit("DELETED", rt.key, gone, old)
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._unregister_crd(name, delete_objects=True)
        self._collect_garbage(old["metadata"].get("uid"), policy)
        return self._render(rt, gone)

    def _collect_garbage(self, uid, policy):
        """Dependents of a deleted owner: deleted when none of their owners is
        left (Background/Foreground), or released from it (Orphan). Done at
        once, where a real cluster's garbage collector does it soon after."""
        if not uid:
            return
        live = None
        for key in list(self.objects):
            for (ons, oname), obj in list(self.objects[key].items()):
                refs = obj["metadata"].get("ownerReferences") or []
                if not any(r.get("uid") == uid for r in refs):
                    continue
                rt = next((t for t in self.types.values() if t.key == key), None)
                if rt is None:
                    continue
                if policy == "Orphan":
                    new = copy.deepcopy(obj)
                    new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                    if not new["metadata"]["ownerReferences"]:
                        del new["metadata"]["ownerReferences"]
                    new["metadata"]["resourceVersion"] = str(self._next_rv())
                    self.objects[key][(ons, oname)] = new
                    self._emit("MODIFIED", key, new, obj)
                    continue
                if live is None:
                    live = {o["metadata"].get("uid") for objs in self.objects.values()
                            for o in objs.values()}
                if any(r.get("uid") in live for r in refs if r.get("uid") != uid):
                    continue
                if (ons, oname) in self.objects[key]:
                    self.delete(rt, ons or None, oname, {"propagationPolicy": "Background"})

    def _delete_namespace(self, rt, old):
        name = old["metadata"]["name"]
        if old["metadata"].get("deletionTimestamp"):
            return self._render(rt, old)
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = now_rfc3339()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        new["status"] = {"phase": "Terminating"}
        new["metadata"]["resourceVersion"] = str(self._next_rv())
        self.objects[rt.key][("", name)] = new
        self._emit("MODIFIED", rt.key, new, old)
        for key in list(self.objects):
            for (ons, oname) in sorted(self.objects[key]):
                if ons == name:
                    obj = self.objects[key].pop((ons, oname))
                    obj["metadata"]["resourceVersion"] = str(self._next_rv())
                    self._emit("DELETED", key, obj, obj)
        out = self._render(rt, new)
        if self.namespace_delay <= 0:
            self._finalize_namespace(rt, name)
        else:
            t = threading.Timer(self.namespace_delay, self._finalize_namespace, (rt, name))
            t.daemon = True
            t.start()
        return out

    def _finalize_namespace(self, rt, name):
        with self.cond:
            cur = self.objects[rt.key].get(("", name))
            if cur is not None and cur["metadata"].get("deletionTimestamp"):
                self._remove(rt, None, name)

    def delete_collection(self, rt, ns, lsel, fsel, opts=None, dry_run=False):
        with self.cond:
            out = []
            for obj in self._select(rt, ns, lsel, fsel):
                md = obj["metadata"]
                out.append(self.delete(rt, md.get("namespace"), md["name"], opts, dry_run))
            return {"resourceVersion": str(self.rv)}, out

    # --- watch ---------------------------------------------------------------------------
    def watch(self, rt, ns, lsel, fsel, since, stop, timeout=None, bookmark_every=None,
              initial_events=False):
        """Yields watch events (dicts with type and object) until stop is set,
        timeout passes, or the history no longer covers the watcher."""
        deadline = time.monotonic() + timeout if timeout else None
        next_bookmark = time.monotonic() + bookmark_every if bookmark_every else None

        def matches(obj):
            if obj is None:
                return False
            md = obj["metadata"]
            if ns and md.get("namespace") != ns:
                return False
            return kselect.labels_match(lsel, md.get("labels")) and \
                kselect.fields_match(fsel, obj)

        def bookmark(rv, annotations=None):
            md = {"resourceVersion": str(rv)}
            if annotations:
                md["annotations"] = annotations
            return {"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version,
                                                   "metadata": md}}

        with self.cond:
            batch = []
            if since in (None, "", "0") or initial_events:
                last = self.rv
                for obj in self._select(rt, ns, lsel, fsel):
                    batch.append({"type": "ADDED", "object": self._render(rt, obj)})
                if initial_events:
                    batch.append(bookmark(last, {"k8s.io/initial-events-end": "true"}))
            else:
                try:
                    last = int(since)
                except ValueError:
                    yield self._gone_event(since, "invalid resource version")
                    return
        yield from batch
        while True:
            batch = []
            with self.cond:
                if stop.is_set() or self.closed:
                    return
                if deadline and time.monotonic() >= deadline:
                    return
                if last < self.compacted:
                    batch.append(self._gone_event(last, None))
                    last = None
                else:
                    pending = []
                    for ev in reversed(self.history):
                        if ev.rv <= last:
                            break
                        pending.append(ev)
                    for ev in reversed(pending):
                        last = ev.rv
                        if ev.key != rt.key:
                            continue
                        now_in, was_in = matches(ev.obj), matches(ev.old)
                        if ev.type == "DELETED":
                            if was_in or now_in:
                                batch.append({"type": "DELETED",
                                              "object": self._render(rt, ev.obj)})
                        elif now_in:
                            t = "MODIFIED" if (was_in and ev.type == "MODIFIED") else "ADDED"
                            batch.append({"type": t, "object": self._render(rt, ev.obj)})
                        elif was_in:
                            batch.append({"type": "DELETED", "object": self._render(rt, ev.obj)})
                    now = time.monotonic()
                    if next_bookmark and now >= next_bookmark:
                        batch.append(bookmark(self.rv))
                        last = max(last, self.rv)
                        next_bookmark = now + bookmark_every
                    if not batch:
                        if deadline and now >= deadline:
                            return
                        wait = 1.0
                        if deadline:
                            wait = min(wait, deadline - now)
                        if next_bookmark:
                            wait = min(wait, next_bookmark - now)
                        self.cond.wait(max(0.01, wait))
                        batch.append(None)  # a tick: lets the caller check its client
            yield from batch
            if last is None:
                return

    def _gone_event(self, rv, why):
        msg = why or "too old resource version: %s (%d)" % (rv, self.compacted + 1)
        return {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                            "status": "Failure", "message": msg,
                                            "reason": "Expired", "code": 410}}

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    # --- persistence -----------------------------------------------------------------------
    def save(self):
        if not self.state_file:
            return
        with self.cond:
            if not self.dirty:
                return
            state = {"resourceVersion": self.rv,
                     "objects": {"%s/%s" % k: list(v.values()) for k, v in self.objects.items()
                                 if v}}
            text = json.dumps(state)
            self.dirty = False
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.state_file)

    def _load(self):
        with open(self.state_file) as f:
            state = json.load(f)
        self.rv = int(state["resourceVersion"])
        self.compacted = self.rv
        for key, items in state["objects"].items():
            group, plural = key.split("/", 1)
            for obj in items:
                md = obj["metadata"]
                self.objects[(group, plural)][(md.get("namespace", ""), md["name"])] = obj
        for crd in self.objects[("apiextensions.k8s.io", "customresourcedefinitions")].values():
            self._register_crd(crd)
        return True
