"""Mutating admission webhooks, called the way the API server calls them:
for each MutatingWebhookConfiguration (in name order) and each webhook in it
whose rules, namespaceSelector and objectSelector match the request, an
AdmissionReview is POSTed over HTTPS (verified with the caBundle, server name
<service>.<namespace>.svc for service references) and a JSONPatch in the
response is applied. failurePolicy Fail (the default) turns a call failure
into 500 InternalError, Ignore skips the webhook; a denial becomes an error
with the webhook's status. Service references are reached through
--service-endpoint NAMESPACE/NAME:PORT=HOST:PORT, since there is no cluster
network; URL clientConfigs are called as they are."""

import base64
import http.client
import json
import socket
import ssl
import urllib.parse
import uuid

import kpatch
from kstore import APIError

WEBHOOK_RT = ("admissionregistration.k8s.io", "mutatingwebhookconfigurations")


def _selector_reqs(sel):
    reqs = []
    for k, v in ((sel or {}).get("matchLabels") or {}).items():
        reqs.append((k, "=", v))
    for e in (sel or {}).get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}.get(
            e.get("operator"))
        if op is None:
            raise ValueError("unknown selector operator %r" % e.get("operator"))
        reqs.append((e.get("key"), op, set(e.get("values") or []) if op in ("in", "notin")
                     else None))
    return reqs


def _matches(sel, labels):
    import kselect
    return kselect.labels_match(_selector_reqs(sel), labels or {})


def _rule_matches(rule, rt, operation):
    ops = rule.get("operations") or []
    if "*" not in ops and operation not in ops:
        return False
    if not any(g in ("*", rt.group) for g in rule.get("apiGroups") or []):
        return False
    if not any(v in ("*", rt.version) for v in rule.get("apiVersions") or []):
        return False
    if not any(r in ("*", "*/*", rt.plural) for r in rule.get("resources") or []):
        return False
    scope = rule.get("scope", "*")
    if scope == "Namespaced" and not rt.namespaced:
        return False
    if scope == "Cluster" and rt.namespaced:
        return False
    return True


class _Conn(http.client.HTTPSConnection):
    """HTTPS to a fixed address while verifying another server name."""

    def __init__(self, addr, server_name, ctx, timeout):
        super().__init__(server_name, timeout=timeout, context=ctx)
        self._addr = addr
        self._ctx = ctx
        self._server_name = server_name

    def connect(self):
        sock = socket.create_connection(self._addr, self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self._server_name)


class Admission:
    def __init__(self, store, service_endpoints):
        self.store = store
        self.endpoints = {}
        for spec in service_endpoints:
            left, _, right = spec.partition("=")
            svc, _, port = left.rpartition(":")
            host, _, hport = right.rpartition(":")
            if not svc or "/" not in svc or not port.isdigit() or not hport.isdigit():
                raise ValueError("--service-endpoint %r is not NAMESPACE/NAME:PORT=HOST:PORT"
                                 % spec)
            self.endpoints[(svc, int(port))] = (host, int(hport))

    def _webhooks(self):
        rt = self.store.lookup(WEBHOOK_RT[0], "v1", WEBHOOK_RT[1])
        if rt is None:
            return []
        _, configs = self.store.list(rt, None, [], [])
        out = []
        for cfg in configs:
            for wh in cfg.get("webhooks") or []:
                out.append(wh)
        return out

    def mutate(self, rt, ns, operation, obj, old=None, dry_run=False, user="standin"):
        """Returns obj after every matching webhook has seen it."""
        hooks = self._webhooks()
        if not hooks:
            return obj
        ns_labels = None
        if rt.namespaced and ns:
            try:
                nsobj = self.store.get(self.store.lookup("", "v1", "namespaces"), None, ns)
                ns_labels = nsobj["metadata"].get("labels") or {}
            except APIError:
                ns_labels = {}
        elif rt.key == ("", "namespaces"):
            ns_labels = (obj.get("metadata") or {}).get("labels") or {}
        for wh in hooks:
            if not any(_rule_matches(r, rt, operation) for r in wh.get("rules") or []):
                continue
            try:
                if ns_labels is not None and not _matches(wh.get("namespaceSelector"), ns_labels):
                    continue
                labels = (obj.get("metadata") or {}).get("labels")
                if old is not None:
                    labels = labels or (old.get("metadata") or {}).get("labels")
                if not _matches(wh.get("objectSelector"), labels):
                    continue
            except ValueError as e:
                raise APIError(500, "InternalError", "webhook %s: %s" % (wh.get("name"), e))
            obj = self._call(wh, rt, ns, operation, obj, old, dry_run, user)
        return obj

    def _call(self, wh, rt, ns, operation, obj, old, dry_run, user):
        name = wh.get("name", "")
        policy = wh.get("failurePolicy", "Fail")
        timeout = wh.get("timeoutSeconds", 10)
        versions = wh.get("admissionReviewVersions") or ["v1"]
        version = "v1" if "v1" in versions else versions[0]
        uid = str(uuid.uuid4())
        md = obj.get("metadata") or {}
        review = {"apiVersion": "admission.k8s.io/" + version, "kind": "AdmissionReview",
                  "request": {
                      "uid": uid,
                      "kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
                      "resource": {"group": rt.group, "version": rt.version,
                                   "resource": rt.plural},
                      "requestKind": {"group": rt.group, "version": rt.version,
                                      "kind": rt.kind},
                      "requestResource": {"group": rt.group, "version": rt.version,
                                          "resource": rt.plural},
                      "name": md.get("name", ""), "operation": operation,
                      "userInfo": {"username": user, "groups": ["system:authenticated"]},
                      "object": obj, "oldObject": old, "dryRun": bool(dry_run),
                      "options": {"apiVersion": "meta.k8s.io/v1",
                                  "kind": "CreateOptions" if operation == "CREATE"
                                  else "UpdateOptions"}}}
        if rt.namespaced:
            review["request"]["namespace"] = ns
        try:
            resp = self._post(wh, review, timeout)
            r = resp.get("response") or {}
            if r.get("uid") != uid:
                raise ValueError("expected response.uid=%r, got %r" % (uid, r.get("uid")))
            if "allowed" not in r:
                raise ValueError("response.allowed is missing")
        except (OSError, ValueError, ssl.SSLError, http.client.HTTPException) as e:
            if policy == "Ignore":
                return obj
            raise APIError(500, "InternalError", "Internal error occurred: failed calling "
                           "webhook \"%s\": %s" % (name, e))
        if not r["allowed"]:
            st = r.get("status") or {}
            code = st.get("code") or 400
            if code < 400:
                code = 400
            msg = st.get("message") or "without explanation"
            raise APIError(code, st.get("reason") or "BadRequest",
                           "admission webhook \"%s\" denied the request: %s" % (name, msg))
        if r.get("patch"):
            if r.get("patchType") != "JSONPatch":
                raise APIError(500, "InternalError", "webhook \"%s\": unsupported patchType %r"
                               % (name, r.get("patchType")))
            try:
                ops = json.loads(base64.b64decode(r["patch"]))
                obj = kpatch.json_patch(obj, ops)
            except (ValueError, kpatch.PatchError) as e:
                raise APIError(500, "InternalError", "Internal error occurred: webhook \"%s\" "
                               "returned a patch that cannot be applied: %s" % (name, e))
        return obj

    def _post(self, wh, review, timeout):
        cc = wh.get("clientConfig") or {}
        ctx = ssl.create_default_context()
        if cc.get("caBundle"):
            ctx = ssl.create_default_context(cadata=base64.b64decode(cc["caBundle"]).decode())
        if cc.get("url"):
            u = urllib.parse.urlsplit(cc["url"])
            if u.scheme != "https":
                raise ValueError("webhook URL %s is not https" % cc["url"])
            server_name, addr = u.hostname, (u.hostname, u.port or 443)
            path = u.path or "/"
        elif cc.get("service"):
            svc = cc["service"]
            port = svc.get("port", 443)
            key = ("%s/%s" % (svc.get("namespace"), svc.get("name")), port)
            if key not in self.endpoints:
                raise ValueError("service %s:%d has no endpoint (use --service-endpoint)" % key)
            addr = self.endpoints[key]
            server_name = "%s.%s.svc" % (svc.get("name"), svc.get("namespace"))
            path = svc.get("path") or "/"
        else:
            raise ValueError("clientConfig has neither url nor service")
        conn = _Conn(addr, server_name, ctx, timeout)
        try:
            body = json.dumps(review).encode()
            conn.request("POST", "%s?timeout=%ds" % (path, timeout), body=body,
                         headers={"Content-Type": "application/json",
                                  "Accept": "application/json"})
            resp = conn.getresponse()
            data = resp.read(16 << 20)
            if resp.status != 200:
                raise ValueError("the server responded with HTTP %d" % resp.status)
            return json.loads(data)
        finally:
            conn.close()
