"""The resource types the stand-in serves: the built-in catalog, types made
from CustomResourceDefinitions, version ordering and Table columns."""

import datetime
import re

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
SUB_VERBS = ["get", "patch", "update"]

# Groups whose objects carry metadata.generation, as on a real cluster.
GENERATION_GROUPS = {"apps", "batch", "apiextensions.k8s.io", "admissionregistration.k8s.io",
                     "snapshot.storage.k8s.io", "stasis.io", "policy"}


def parse_time(text):
    """RFC 3339 in UTC, with or without fractional seconds (MicroTime)."""
    try:
        if "." in text and text.endswith("Z"):
            text = text.split(".")[0] + "Z"
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None


def human_duration(seconds):
    """The short ages kubectl prints (5s, 3m20s, 7h, 12d)."""
    s = int(seconds)
    if s < 0:
        return "<invalid>"
    if s < 120:
        return "%ds" % s
    m = s // 60
    if m < 10:
        return "%dm%ds" % (m, s % 60) if s % 60 else "%dm" % m
    if m < 180:
        return "%dm" % m
    h = m // 60
    if h < 8:
        return "%dh%dm" % (h, m % 60) if m % 60 else "%dh" % h
    if h < 48:
        return "%dh" % h
    if h < 24 * 8:
        return "%dd%dh" % (h // 24, h % 24) if h % 24 else "%dd" % (h // 24)
    if h < 24 * 365 * 2:
        return "%dd" % (h // 24)
    if h < 24 * 365 * 8:
        return "%dy%dd" % (h // (24 * 365), (h // 24) % 365)
    return "%dy" % (h // (24 * 365))


def age_of(obj):
    t = parse_time(obj.get("metadata", {}).get("creationTimestamp"))
    if t is None:
        return "<unknown>"
    return human_duration((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds())


_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(v):
    """Sort key: GA before beta before alpha, higher numbers first, then
    non-Kubernetes-style names alphabetically (as the API server orders)."""
    m = _VERSION.match(v)
    if not m:
        return (3, 0, 0, v)
    major = int(m.group(1))
    if m.group(2) is None:
        return (0, -major, 0, v)
    minor = int(m.group(3))
    return (1 if m.group(2) == "beta" else 2, -major, -minor, v)


def jsonpath_get(obj, path):
    """Evaluates the simple JSONPath forms printer columns use: .a.b,
    .a[0].b, .metadata.labels.app (with escaped dots as a\\.b)."""
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    tokens = re.findall(r"\.((?:[^.\[\\]|\\.)+)|\[(\d+)\]|\['([^']*)'\]", path)
    cur = obj
    for name, idx, quoted in tokens:
        if idx:
            if not isinstance(cur, list) or int(idx) >= len(cur):
                return None
            cur = cur[int(idx)]
        else:
            key = quoted if quoted else name.replace("\\.", ".")
            if not isinstance(cur, dict) or key not in cur:
                return None
            cur = cur[key]
    return cur


def col(name, typ="string", path=None, fn=None, priority=0, desc="", fmt=""):
    return {"name": name, "type": typ, "format": fmt, "description": desc,
            "priority": priority, "path": path, "fn": fn}


NAME_COL = col("Name", fmt="name", fn=lambda o: o["metadata"]["name"],
               desc="Name must be unique within a namespace.")
AGE_COL = col("Age", fn=age_of,
              desc="CreationTimestamp is a timestamp representing the server time when this "
              "object was created.")


def _pod_ready(o):
    total = len((o.get("spec") or {}).get("containers") or [])
    ready = sum(1 for c in (o.get("status") or {}).get("containerStatuses") or [] if c.get("ready"))
    return "%d/%d" % (ready, total)


def _pod_restarts(o):
    return sum(int(c.get("restartCount", 0))
               for c in (o.get("status") or {}).get("containerStatuses") or [])


def _replicas(o, field):
    return "%d/%d" % ((o.get("status") or {}).get(field, 0) or 0,
                      (o.get("spec") or {}).get("replicas", 1))


def _ports(o):
    ports = (o.get("spec") or {}).get("ports") or []
    out = []
    for p in ports:
        s = str(p.get("port", ""))
        if p.get("nodePort"):
            s += ":%s" % p["nodePort"]
        out.append("%s/%s" % (s, p.get("protocol", "TCP")))
    return ",".join(out) or "<none>"


def _count(field):
    return lambda o: len(o.get(field) or {}) + (len(o.get("binaryData") or {})
                                                 if field == "data" else 0)


def _access_modes(o):
    short = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
             "ReadWriteOncePod": "RWOP"}
    modes = (o.get("spec") or {}).get("accessModes") or []
    return ",".join(short.get(m, m) for m in modes)


def _claim(o):
    ref = (o.get("spec") or {}).get("claimRef")
    return "%s/%s" % (ref.get("namespace", ""), ref.get("name", "")) if ref else ""


BUILTIN_COLUMNS = {
    ("", "namespaces"): [NAME_COL, col("Status", path=".status.phase"), AGE_COL],
    ("", "pods"): [NAME_COL, col("Ready", fn=_pod_ready), col("Status", path=".status.phase"),
                   col("Restarts", "integer", fn=_pod_restarts), AGE_COL,
                   col("IP", path=".status.podIP", priority=1),
                   col("Node", path=".spec.nodeName", priority=1)],
    ("", "services"): [NAME_COL, col("Type", path=".spec.type"),
                       col("Cluster-IP", path=".spec.clusterIP"), col("Port(s)", fn=_ports),
                       AGE_COL],
    ("", "configmaps"): [NAME_COL, col("Data", "integer", fn=_count("data")), AGE_COL],
    ("", "secrets"): [NAME_COL, col("Type", path=".type"),
                      col("Data", "integer", fn=_count("data")), AGE_COL],
    ("", "persistentvolumeclaims"): [
        NAME_COL, col("Status", path=".status.phase"), col("Volume", path=".spec.volumeName"),
        col("Capacity", path=".status.capacity.storage"), col("Access Modes", fn=_access_modes),
        col("StorageClass", path=".spec.storageClassName"), AGE_COL],
    ("", "persistentvolumes"): [
        NAME_COL, col("Capacity", path=".spec.capacity.storage"),
        col("Access Modes", fn=_access_modes),
        col("Reclaim Policy", path=".spec.persistentVolumeReclaimPolicy"),
        col("Status", path=".status.phase"), col("Claim", fn=_claim),
        col("StorageClass", path=".spec.storageClassName"), AGE_COL],
    ("", "events"): [
        col("Last Seen", fn=lambda o: age_of({"metadata": {"creationTimestamp": o.get(
            "lastTimestamp") or o.get("eventTime") or o["metadata"].get("creationTimestamp")}})),
        col("Type", path=".type"), col("Reason", path=".reason"),
        col("Object", fn=lambda o: "%s/%s" % ((o.get("involvedObject") or {}).get(
            "kind", "").lower(), (o.get("involvedObject") or {}).get("name", ""))),
        col("Message", path=".message")],
    ("apps", "deployments"): [
        NAME_COL, col("Ready", fn=lambda o: _replicas(o, "readyReplicas")),
        col("Up-to-date", "integer", path=".status.updatedReplicas"),
        col("Available", "integer", path=".status.availableReplicas"), AGE_COL],
    ("apps", "statefulsets"): [NAME_COL, col("Ready", fn=lambda o: _replicas(o, "readyReplicas")),
                               AGE_COL],
    ("batch", "jobs"): [NAME_COL, col("Completions", fn=lambda o: "%d/%d" % (
        (o.get("status") or {}).get("succeeded", 0) or 0,
        (o.get("spec") or {}).get("completions", 1))), AGE_COL],
    ("storage.k8s.io", "storageclasses"): [
        NAME_COL, col("Provisioner", path=".provisioner"),
        col("ReclaimPolicy", path=".reclaimPolicy"),
        col("VolumeBindingMode", path=".volumeBindingMode"), AGE_COL],
    ("snapshot.storage.k8s.io", "volumesnapshots"): [
        NAME_COL, col("ReadyToUse", "boolean", path=".status.readyToUse"),
        col("SourcePVC", path=".spec.source.persistentVolumeClaimName"),
        col("SnapshotContent", path=".status.boundVolumeSnapshotContentName"),
        col("SnapshotClass", path=".spec.volumeSnapshotClassName"), AGE_COL],
    ("stasis.io", "backups"): [
        NAME_COL, col("Status", path=".status.phase"),
        col("Errors", "integer", path=".status.errors"),
        col("Warnings", "integer", path=".status.warnings"), AGE_COL],
    ("stasis.io", "restores"): [NAME_COL, col("Backup", path=".spec.backupName"),
                                col("Status", path=".status.phase"), AGE_COL],
    ("stasis.io", "schedules"): [NAME_COL, col("Status", path=".status.phase"),
                                 col("Schedule", path=".spec.schedule"), AGE_COL],
    ("stasis.io", "backupstoragelocations"): [
        NAME_COL, col("Phase", path=".status.phase"),
        col("Last Validated", "date", path=".status.lastValidationTime"), AGE_COL],
}

POD_FIELDS = {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
              "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
              "status.nominatedNodeName"}
EXTRA_FIELDS = {
    ("", "pods"): POD_FIELDS,
    ("", "namespaces"): {"status.phase"},
    ("", "secrets"): {"type"},
    ("", "events"): {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                     "involvedObject.uid", "involvedObject.apiVersion",
                     "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                     "reportingComponent", "source", "type"},
    ("", "persistentvolumeclaims"): set(),
    ("batch", "jobs"): {"status.successful"},
    ("apps", "replicasets"): {"status.replicas"},
}


class ResourceType:
    """One resource of one group/version, as discovery describes it."""

    def __init__(self, group, version, plural, kind, namespaced, singular=None, short=(),
                 categories=(), subresources=(), columns=None, fields=None, crd=None,
                 verbs=None, schema=None):
        self.group = group
        self.version = version
        self.plural = plural
        self.kind = kind
        self.namespaced = namespaced
        self.singular = singular or kind.lower()
        self.short = list(short)
        self.categories = list(categories)
        self.subresources = set(subresources)
        self.columns = columns
        self.fields = {"metadata.name", "metadata.namespace"} | set(fields or ())
        self.crd = crd  # name of the CRD that defines it, or None
        self.schema = schema  # openAPIV3Schema of a CRD version
        self.verbs = verbs or ALL_VERBS
        self.generation = group in GENERATION_GROUPS or crd is not None

    @property
    def api_version(self):
        return "%s/%s" % (self.group, self.version) if self.group else self.version

    @property
    def key(self):
        return (self.group, self.plural)

    @property
    def qualified(self):
        """Name used in error messages: pods, deployments.apps."""
        return "%s.%s" % (self.plural, self.group) if self.group else self.plural

    def table_columns(self):
        return self.columns or BUILTIN_COLUMNS.get(self.key) or [NAME_COL, AGE_COL]

    def discovery(self):
        out = [{"name": self.plural, "singularName": self.singular,
                "namespaced": self.namespaced, "kind": self.kind, "verbs": list(self.verbs)}]
        if self.short:
            out[0]["shortNames"] = list(self.short)
        if self.categories:
            out[0]["categories"] = list(self.categories)
        for sub in sorted(self.subresources):
            entry = {"name": "%s/%s" % (self.plural, sub), "singularName": "",
                     "namespaced": self.namespaced, "kind": self.kind, "verbs": SUB_VERBS}
            if sub == "scale":
                entry.update(group="autoscaling", version="v1", kind="Scale")
            out.append(entry)
        return out


def _b(group, version, plural, kind, namespaced, short=(), cats=(), subs=(), verbs=None):
    return ResourceType(group, version, plural, kind, namespaced, short=short, categories=cats,
                        subresources=subs, fields=EXTRA_FIELDS.get((group, plural)),
                        verbs=verbs)


def builtin_types(with_stasis=True):
    t = [
        _b("", "v1", "namespaces", "Namespace", False, ["ns"], subs=["status", "finalize"],
           verbs=["create", "delete", "get", "list", "patch", "update", "watch"]),
        _b("", "v1", "pods", "Pod", True, ["po"], ["all"], ["status"]),
        _b("", "v1", "services", "Service", True, ["svc"], ["all"], ["status"]),
        _b("", "v1", "configmaps", "ConfigMap", True, ["cm"]),
        _b("", "v1", "secrets", "Secret", True),
        _b("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ["pvc"],
           subs=["status"]),
        _b("", "v1", "persistentvolumes", "PersistentVolume", False, ["pv"], subs=["status"]),
        _b("", "v1", "serviceaccounts", "ServiceAccount", True, ["sa"]),
        _b("", "v1", "events", "Event", True, ["ev"]),
        _b("", "v1", "endpoints", "Endpoints", True, ["ep"]),
        _b("", "v1", "nodes", "Node", False, ["no"], subs=["status"]),
        _b("apps", "v1", "deployments", "Deployment", True, ["deploy"], ["all"],
           ["status", "scale"]),
        _b("apps", "v1", "statefulsets", "StatefulSet", True, ["sts"], ["all"],
           ["status", "scale"]),
        _b("apps", "v1", "daemonsets", "DaemonSet", True, ["ds"], ["all"], ["status"]),
        _b("apps", "v1", "replicasets", "ReplicaSet", True, ["rs"], ["all"], ["status", "scale"]),
        _b("batch", "v1", "jobs", "Job", True, cats=["all"], subs=["status"]),
        _b("batch", "v1", "cronjobs", "CronJob", True, ["cj"], ["all"], ["status"]),
        _b("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ["sc"]),
        _b("snapshot.storage.k8s.io", "v1", "volumesnapshots", "VolumeSnapshot", True, ["vs"],
           subs=["status"]),
        _b("snapshot.storage.k8s.io", "v1", "volumesnapshotcontents", "VolumeSnapshotContent",
           False, ["vsc", "vscs"], subs=["status"]),
        _b("snapshot.storage.k8s.io", "v1", "volumesnapshotclasses", "VolumeSnapshotClass",
           False, ["vsclass", "vsclasses"]),
        _b("apiextensions.k8s.io", "v1", "customresourcedefinitions",
           "CustomResourceDefinition", False, ["crd", "crds"], subs=["status"]),
        _b("coordination.k8s.io", "v1", "leases", "Lease", True),
        _b("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
        _b("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
        _b("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
        _b("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
        _b("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
           "MutatingWebhookConfiguration", False),
        _b("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
           "ValidatingWebhookConfiguration", False),
    ]
    if with_stasis:
        for plural, kind in (("backups", "Backup"), ("restores", "Restore"),
                             ("schedules", "Schedule"),
                             ("backupstoragelocations", "BackupStorageLocation")):
            t.append(_b("stasis.io", "v1alpha1", plural, kind, True, subs=["status"]))
        t[-1].short = ["bsl"]
    return t


def types_from_crd(crd):
    """ResourceTypes for every served version of a CRD; raises ValueError
    with a field path when the definition is unusable."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group")
    plural = names.get("plural")
    kind = names.get("kind")
    scope = spec.get("scope")
    name = (crd.get("metadata") or {}).get("name")
    errs = []
    if not group:
        errs.append("spec.group: Required value")
    if not plural:
        errs.append("spec.names.plural: Required value")
    if not kind:
        errs.append("spec.names.kind: Required value")
    if scope not in ("Namespaced", "Cluster"):
        errs.append("spec.scope: Unsupported value: %r: supported values: \"Cluster\", "
                    "\"Namespaced\"" % scope)
    if group and plural and name != "%s.%s" % (plural, group):
        errs.append("metadata.name: Invalid value: %r: must be spec.names.plural+\".\"+"
                    "spec.group" % name)
    versions = spec.get("versions") or []
    if not versions:
        errs.append("spec.versions: Invalid value: null: must have exactly one version "
                    "marked as storage version")
    elif sum(1 for v in versions if v.get("storage")) != 1:
        errs.append("spec.versions: Invalid value: must have exactly one version marked as "
                    "storage version")
    if errs:
        raise ValueError(errs)
    out = []
    for v in versions:
        if not v.get("served"):
            continue
        subs = []
        sr = v.get("subresources") or spec.get("subresources") or {}
        if "status" in sr:
            subs.append("status")
        if "scale" in sr:
            subs.append("scale")
        cols = v.get("additionalPrinterColumns")
        if cols is None:
            cols = spec.get("additionalPrinterColumns")
        columns = [NAME_COL]
        if not cols:
            columns.append(col("Age", "date", path=".metadata.creationTimestamp"))
        for c in cols or []:
            columns.append(col(c.get("name", ""), c.get("type", "string"), path=c.get("jsonPath"),
                               priority=c.get("priority", 0), desc=c.get("description", ""),
                               fmt=c.get("format", "")))
        fields = [f.get("jsonPath", "").lstrip(".") for f in v.get("selectableFields") or []]
        schema = ((v.get("schema") or spec.get("validation") or {}).get("openAPIV3Schema"))
        out.append(ResourceType(group, v.get("name"), plural, kind, scope == "Namespaced",
                                singular=names.get("singular") or kind.lower(),
                                short=names.get("shortNames") or [],
                                categories=names.get("categories") or [], subresources=subs,
                                columns=columns, fields=fields, crd=name, schema=schema))
    return out


def cell_value(column, obj):
    if column.get("fn"):
        return column["fn"](obj)
    value = jsonpath_get(obj, column["path"] or "")
    if column["type"] == "date" and isinstance(value, str):
        t = parse_time(value)
        if t is not None:
            return human_duration((datetime.datetime.now(datetime.timezone.utc) - t)
                                  .total_seconds())
    if value is None:
        return None
    if column["type"] == "integer":
        try:
            return int(value)
        except (TypeError, ValueError):
            return value
    if isinstance(value, (dict, list)):
        import json
        return json.dumps(value, separators=(",", ":"))
    if column["type"] == "string" and not isinstance(value, str):
        return str(value).lower() if isinstance(value, bool) else str(value)
    return value
