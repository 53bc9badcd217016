"""Decoding of the protobuf request bodies kubectl's typed clients send
(`kubectl create namespace|configmap|secret|serviceaccount|deployment|job|
cronjob|service|role|rolebinding|clusterrole|clusterrolebinding`) into the
JSON form of the object.

The envelope is the magic "k8s\\0" followed by a runtime.Unknown message
(typeMeta = 1 {apiVersion = 1, kind = 2}, raw = 2, contentEncoding = 3,
contentType = 4); raw is the object's own message. The field numbers below
are those of the Kubernetes API's generated.proto files for the fields these
commands set. A field that is not listed is skipped when it holds its zero
value (the generated code writes every non-pointer field) and refused
otherwise, so nothing is silently lost."""

import base64
import datetime
import struct

MAGIC = b"k8s\x00"


class ProtoError(ValueError):
    pass


def _varint(buf, pos):
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise ProtoError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtoError("varint too long")


def fields(buf):
    """Yields (number, wiretype, value) of one message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            if pos + 8 > len(buf):
                raise ProtoError("truncated fixed64")
            val, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ProtoError("truncated field %d" % num)
            val, pos = buf[pos:pos + n], pos + n
        elif wt == 5:
            if pos + 4 > len(buf):
                raise ProtoError("truncated fixed32")
            val, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise ProtoError("unsupported wire type %d" % wt)
        yield num, wt, val


# Field kinds: "s" string, "b" bytes (base64 in JSON), "i" integer, "t" bool,
# "time" metav1.Time, "ios" IntOrString, "q" Quantity, "ignore" (dropped),
# a message name, ("map", key kind, value kind). A trailing "*" marks a
# repeated field; "?" a pointer field whose zero value is kept.
S = {
    "ObjectMeta": {1: ("name", "s"), 2: ("generateName", "s"), 3: ("namespace", "s"),
                   4: ("selfLink", "s"), 5: ("uid", "s"), 6: ("resourceVersion", "s"),
                   7: ("generation", "i"), 8: ("creationTimestamp", "time"),
                   9: ("deletionTimestamp", "time"), 10: ("deletionGracePeriodSeconds", "i?"),
                   11: ("labels", ("map", "s", "s")), 12: ("annotations", ("map", "s", "s")),
                   13: ("ownerReferences", "OwnerReference*"), 14: ("finalizers", "s*"),
                   17: ("managedFields", "ignore")},
    "OwnerReference": {1: ("kind", "s"), 3: ("name", "s"), 4: ("uid", "s"),
                       5: ("apiVersion", "s"), 6: ("controller", "t?"),
                       7: ("blockOwnerDeletion", "t?")},
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec"),
                  3: ("status", "ignore")},
    "NamespaceSpec": {1: ("finalizers", "s*")},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", ("map", "s", "s")),
                  3: ("binaryData", ("map", "s", "b")), 4: ("immutable", "t?")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", ("map", "s", "b")), 3: ("type", "s"),
               4: ("stringData", ("map", "s", "s")), 5: ("immutable", "t?")},
    "ServiceAccount": {1: ("metadata", "ObjectMeta"), 2: ("secrets", "ObjectReference*"),
                       3: ("imagePullSecrets", "LocalObjectReference*"),
                       4: ("automountServiceAccountToken", "t?")},
    "ObjectReference": {1: ("kind", "s"), 2: ("namespace", "s"), 3: ("name", "s"),
                        4: ("uid", "s"), 5: ("apiVersion", "s"), 6: ("resourceVersion", "s"),
                        7: ("fieldPath", "s")},
    "LocalObjectReference": {1: ("name", "s")},
    "LabelSelector": {1: ("matchLabels", ("map", "s", "s")),
                      2: ("matchExpressions", "LabelSelectorRequirement*")},
    "LabelSelectorRequirement": {1: ("key", "s"), 2: ("operator", "s"), 3: ("values", "s*")},
    "Deployment": {1: ("metadata", "ObjectMeta"), 2: ("spec", "DeploymentSpec"),
                   3: ("status", "ignore")},
    "DeploymentSpec": {1: ("replicas", "i?"), 2: ("selector", "LabelSelector"),
                       3: ("template", "PodTemplateSpec"), 4: ("strategy", "DeploymentStrategy"),
                       5: ("minReadySeconds", "i"), 6: ("revisionHistoryLimit", "i?"),
                       7: ("paused", "t"), 9: ("progressDeadlineSeconds", "i?")},
    "DeploymentStrategy": {1: ("type", "s"), 2: ("rollingUpdate", "RollingUpdateDeployment")},
    "RollingUpdateDeployment": {1: ("maxUnavailable", "ios"), 2: ("maxSurge", "ios")},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec")},
    "PodSpec": {2: ("containers", "Container*"), 3: ("restartPolicy", "s"),
                4: ("terminationGracePeriodSeconds", "i?"), 5: ("activeDeadlineSeconds", "i?"),
                6: ("dnsPolicy", "s"), 7: ("nodeSelector", ("map", "s", "s")),
                8: ("serviceAccountName", "s"), 9: ("serviceAccount", "s"), 10: ("nodeName", "s"),
                11: ("hostNetwork", "t"), 12: ("hostPID", "t"), 13: ("hostIPC", "t"),
                15: ("imagePullSecrets", "LocalObjectReference*"), 16: ("hostname", "s"),
                17: ("subdomain", "s"), 19: ("schedulerName", "s"),
                20: ("initContainers", "Container*")},
    "Container": {1: ("name", "s"), 2: ("image", "s"), 3: ("command", "s*"), 4: ("args", "s*"),
                  5: ("workingDir", "s"), 6: ("ports", "ContainerPort*"), 7: ("env", "EnvVar*"),
                  8: ("resources", "ResourceRequirements"), 9: ("volumeMounts", "VolumeMount*"),
                  13: ("terminationMessagePath", "s"), 14: ("imagePullPolicy", "s"),
                  16: ("stdin", "t"), 17: ("stdinOnce", "t"), 18: ("tty", "t"),
                  20: ("terminationMessagePolicy", "s")},
    "ContainerPort": {1: ("name", "s"), 2: ("hostPort", "i"), 3: ("containerPort", "i"),
                      4: ("protocol", "s"), 5: ("hostIP", "s")},
    "EnvVar": {1: ("name", "s"), 2: ("value", "s")},
    "ResourceRequirements": {1: ("limits", ("map", "s", "q")), 2: ("requests", ("map", "s", "q"))},
    "VolumeMount": {1: ("name", "s"), 2: ("readOnly", "t"), 3: ("mountPath", "s"),
                    4: ("subPath", "s"), 6: ("subPathExpr", "s")},
    "Job": {1: ("metadata", "ObjectMeta"), 2: ("spec", "JobSpec"), 3: ("status", "ignore")},
    "JobSpec": {1: ("parallelism", "i?"), 2: ("completions", "i?"),
                3: ("activeDeadlineSeconds", "i?"), 4: ("selector", "LabelSelector"),
                5: ("manualSelector", "t?"), 6: ("template", "PodTemplateSpec"),
                7: ("backoffLimit", "i?"), 8: ("ttlSecondsAfterFinished", "i?"),
                9: ("completionMode", "s?"), 10: ("suspend", "t?")},
    "CronJob": {1: ("metadata", "ObjectMeta"), 2: ("spec", "CronJobSpec"),
                3: ("status", "ignore")},
    "CronJobSpec": {1: ("schedule", "s"), 2: ("startingDeadlineSeconds", "i?"),
                    3: ("concurrencyPolicy", "s"), 4: ("suspend", "t?"),
                    5: ("jobTemplate", "JobTemplateSpec"), 6: ("successfulJobsHistoryLimit", "i?"),
                    7: ("failedJobsHistoryLimit", "i?"), 8: ("timeZone", "s?")},
    "JobTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "JobSpec")},
    "Service": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ServiceSpec"),
                3: ("status", "ignore")},
    "ServiceSpec": {1: ("ports", "ServicePort*"), 2: ("selector", ("map", "s", "s")),
                    3: ("clusterIP", "s"), 4: ("type", "s"), 5: ("externalIPs", "s*"),
                    7: ("sessionAffinity", "s"), 8: ("loadBalancerIP", "s"),
                    11: ("externalName", "s"), 18: ("clusterIPs", "s*")},
    "ServicePort": {1: ("name", "s"), 2: ("protocol", "s"), 3: ("port", "i"),
                    4: ("targetPort", "ios"), 5: ("nodePort", "i"), 6: ("appProtocol", "s?")},
    "Role": {1: ("metadata", "ObjectMeta"), 2: ("rules", "PolicyRule*")},
    "ClusterRole": {1: ("metadata", "ObjectMeta"), 2: ("rules", "PolicyRule*"),
                    3: ("aggregationRule", "AggregationRule")},
    "AggregationRule": {1: ("clusterRoleSelectors", "LabelSelector*")},
    "PolicyRule": {1: ("verbs", "s*"), 2: ("apiGroups", "s*"), 3: ("resources", "s*"),
                   4: ("resourceNames", "s*"), 5: ("nonResourceURLs", "s*")},
    "RoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "Subject*"),
                    3: ("roleRef", "RoleRef")},
    "ClusterRoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "Subject*"),
                           3: ("roleRef", "RoleRef")},
    "Subject": {1: ("kind", "s"), 2: ("apiGroup", "s"), 3: ("name", "s"), 4: ("namespace", "s")},
    "RoleRef": {1: ("apiGroup", "s"), 2: ("kind", "s"), 3: ("name", "s")},
}
TOP_KINDS = {"Namespace", "ConfigMap", "Secret", "ServiceAccount", "Deployment", "Job", "CronJob",
             "Service", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}


def _signed(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def _zero(wt, val):
    return val == 0 if wt in (0, 1, 5) else len(val) == 0


def _scalar(kind, wt, val, where):
    base = kind.rstrip("*?")
    if base in ("s", "b", "q", "time", "ios") and wt != 2:
        raise ProtoError("%s: wire type %d for a length-delimited field" % (where, wt))
    if base == "s":
        return val.decode("utf-8")
    if base == "b":
        return base64.b64encode(val).decode()
    if base == "i":
        if wt != 0:
            raise ProtoError("%s: wire type %d for an integer" % (where, wt))
        return _signed(val)
    if base == "t":
        if wt != 0:
            raise ProtoError("%s: wire type %d for a bool" % (where, wt))
        return bool(val)
    if base == "q":
        out = ""
        for num, fwt, fval in fields(val):
            if num == 1 and fwt == 2:
                out = fval.decode()
        return out
    if base == "time":
        secs = nanos = 0
        for num, fwt, fval in fields(val):
            if num == 1:
                secs = _signed(fval)
            elif num == 2:
                nanos = fval
        if secs == 0 and nanos == 0:
            return None
        t = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc)
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if base == "ios":
        typ, ival, sval = 0, 0, ""
        for num, fwt, fval in fields(val):
            if num == 1:
                typ = fval
            elif num == 2:
                ival = _signed(fval)
            elif num == 3:
                sval = fval.decode()
        return sval if typ == 1 else ival
    return decode_message(base, val)


def decode_message(name, buf):
    schema = S.get(name)
    if schema is None:
        raise ProtoError("message %s is not decoded by the stand-in" % name)
    out = {}
    for num, wt, val in fields(buf):
        spec = schema.get(num)
        if spec is None:
            if _zero(wt, val):
                continue
            raise ProtoError("field %d of %s is not decoded by the stand-in; send JSON"
                             % (num, name))
        jname, kind = spec
        where = "%s.%s" % (name, jname)
        if kind == "ignore":
            continue
        if isinstance(kind, tuple):
            _, _kk, vk = kind
            key, value = "", None
            for mnum, mwt, mval in fields(val):
                if mnum == 1:
                    key = mval.decode()
                elif mnum == 2:
                    value = _scalar(vk, mwt, mval, where)
            if value is None:
                value = "" if vk != "q" else "0"
            out.setdefault(jname, {})[key] = value
            continue
        if kind.endswith("*"):
            out.setdefault(jname, []).append(_scalar(kind, wt, val, where))
            continue
        value = _scalar(kind, wt, val, where)
        if value is None:
            continue
        if not kind.endswith("?") and kind in ("s", "i", "t") and not value:
            continue
        out[jname] = value
    return out


def decode(raw):
    """Returns the object a protobuf body carries, with apiVersion and kind."""
    if not raw.startswith(MAGIC):
        raise ProtoError("not a Kubernetes protobuf body (no k8s magic)")
    api_version = kind = ""
    payload = None
    for num, wt, val in fields(raw[len(MAGIC):]):
        if num == 1 and wt == 2:
            for tnum, twt, tval in fields(val):
                if tnum == 1:
                    api_version = tval.decode()
                elif tnum == 2:
                    kind = tval.decode()
        elif num == 2 and wt == 2:
            payload = val
        elif num == 3 and wt == 2 and val:
            raise ProtoError("content encoding %r is not supported" % val.decode())
    if kind not in TOP_KINDS:
        raise ProtoError("protobuf bodies of kind %r are not decoded by the stand-in; send JSON"
                         % kind)
    obj = {"apiVersion": api_version, "kind": kind}
    obj.update(decode_message(kind, payload or b""))
    return obj
