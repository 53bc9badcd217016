"""A small Kubernetes API client for test harnesses (standard library plus
python3-yaml for kubeconfig files), for tests that watch the stand-in and act
on what they see, e.g. mark VolumeSnapshots ready while a backup runs:

    import sys; sys.path.insert(0, STASIS_ROOT + "/tests/k8s")
    from kclient import Client
    c = Client.from_kubeconfig(path)
    for ev in c.watch(c.path("snapshot.storage.k8s.io", "v1", "volumesnapshots", ns="db")):
        if ev["type"] == "ADDED":
            md = ev["object"]["metadata"]
            c.patch(c.path("snapshot.storage.k8s.io", "v1", "volumesnapshots", md["namespace"],
                           md["name"], "status"), {"status": {"readyToUse": True}})

Errors come back as APIStatusError carrying the Status object."""

import base64
import json
import os
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request

try:
    import yaml
except ImportError:
    yaml = None


class APIStatusError(Exception):
    def __init__(self, code, status):
        super().__init__("HTTP %d: %s" % (code, (status or {}).get("message", status)))
        self.code = code
        self.status = status
        self.reason = (status or {}).get("reason") if isinstance(status, dict) else None


class Client:
    def __init__(self, url, token=None, ca=None, cert=None, key=None, insecure=False,
                 timeout=30):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.ctx = None
        if self.url.startswith("https"):
            if insecure:
                self.ctx = ssl._create_unverified_context()
            else:
                self.ctx = ssl.create_default_context(cafile=ca)
            if cert:
                self.ctx.load_cert_chain(cert, key)

    @classmethod
    def from_kubeconfig(cls, path, context=None):
        with open(path) as f:
            text = f.read()
        cfg = yaml.safe_load(text) if yaml else json.loads(text)
        ctxname = context or cfg.get("current-context")
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctxname)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next((u["user"] for u in cfg.get("users", []) if u["name"] == ctx.get("user")),
                    {}) or {}
        base = os.path.dirname(os.path.abspath(path))

        def fileof(field):
            if user.get(field + "-data") or cluster.get(field + "-data"):
                data = user.get(field + "-data") or cluster.get(field + "-data")
                tmp = tempfile.NamedTemporaryFile(delete=False, suffix=".pem")
                tmp.write(base64.b64decode(data))
                tmp.close()
                return tmp.name
            value = user.get(field) or cluster.get(field)
            return os.path.join(base, value) if value else None

        client = cls(cluster["server"], token=user.get("token"),
                     ca=fileof("certificate-authority"), cert=fileof("client-certificate"),
                     key=fileof("client-key"),
                     insecure=bool(cluster.get("insecure-skip-tls-verify")))
        client.namespace = ctx.get("namespace", "default")
        return client

    @staticmethod
    def path(group, version, plural, ns=None, name=None, sub=None):
        parts = ["/api/" + version] if not group else ["/apis/%s/%s" % (group, version)]
        if ns:
            parts.append("namespaces/" + urllib.parse.quote(ns))
        parts.append(plural)
        if name:
            parts.append(urllib.parse.quote(name))
        if sub:
            parts.append(sub)
        return "/".join(parts)

    def _open(self, method, path, body=None, ctype="application/json", query=None,
              timeout=None):
        if query:
            path += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            req.add_header("Content-Type", ctype)
        req.add_header("Accept", "application/json")
        try:
            return urllib.request.urlopen(req, context=self.ctx, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                status = json.loads(raw)
            except ValueError:
                status = {"message": raw.decode(errors="replace")}
            raise APIStatusError(e.code, status) from None

    def request(self, method, path, body=None, ctype="application/json", **query):
        with self._open(method, path, body, ctype, query) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def get(self, path, **query):
        return self.request("GET", path, **query)

    def list(self, path, **query):
        """All items, following continue tokens."""
        items = []
        while True:
            page = self.request("GET", path, **query)
            items += page["items"]
            cont = page["metadata"].get("continue")
            if not cont:
                return items
            query["continue"] = cont

    def create(self, path, obj):
        return self.request("POST", path, obj)

    def update(self, path, obj):
        return self.request("PUT", path, obj)

    def patch(self, path, patch, ptype="application/merge-patch+json"):
        return self.request("PATCH", path, patch, ptype)

    def delete(self, path, **query):
        return self.request("DELETE", path, **query)

    def watch(self, path, resource_version=None, timeout_seconds=None, **query):
        """Yields watch events until the server ends the stream."""
        query["watch"] = "true"
        if resource_version is not None:
            query["resourceVersion"] = resource_version
        if timeout_seconds is not None:
            query["timeoutSeconds"] = str(timeout_seconds)
        with self._open("GET", path, query=query, timeout=(timeout_seconds or 3600) + 30) as r:
            for line in r:
                if line.strip():
                    yield json.loads(line)
