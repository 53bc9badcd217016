#!/usr/bin/python3
"""A stand-in for the Kubernetes API server, for tests: discovery, CRUD,
status subresources, list with selectors and pagination, watch, CRDs and
namespace deletion, over HTTP or HTTPS, close enough to the real API that the
real kubectl works against it. See tests/k8s/README.md for the command line."""

import argparse
import json
import os
import queue
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kadmit  # noqa: E402
import kproto  # noqa: E402
import kresources  # noqa: E402
import kselect  # noqa: E402
import kstore  # noqa: E402
from kstore import APIError  # noqa: E402

try:
    import yaml
except ImportError:  # YAML request bodies are then refused
    yaml = None

VERSION_INFO = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-standin",
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                "goVersion": "go1.23.0", "compiler": "gc", "platform": "linux/amd64"}
PATCH_TYPES = {"application/merge-patch+json": "merge",
               "application/strategic-merge-patch+json": "strategic",
               "application/json-patch+json": "json",
               "application/apply-patch+yaml": "apply"}
NS_SUBRESOURCES = {"status", "finalize"}


def method_not_allowed():
    return APIError(405, "MethodNotAllowed", "the server does not allow this method on the "
                    "requested resource")


def not_found_path():
    return APIError(404, "NotFound", "the server could not find the requested resource", {})


class Stats:
    """Counts of requests by verb and resource, served at /standin/requests."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.total = 0
            self.by_verb = {}
            self.by_resource = {}

    def add(self, verb, resource):
        with self.lock:
            self.total += 1
            self.by_verb[verb] = self.by_verb.get(verb, 0) + 1
            if resource:
                r = self.by_resource.setdefault(resource, {})
                r[verb] = r.get(verb, 0) + 1

    def json(self):
        with self.lock:
            return {"total": self.total, "byVerb": dict(self.by_verb),
                    "byResource": json.loads(json.dumps(self.by_resource))}


class Hooks:
    """Commands run after writes: --on-create/--on-update/--on-delete
    RESOURCE=CMD. Each runs through /bin/sh with the object as JSON on stdin,
    one at a time in event order, outside the store's lock (so it may call
    back into the API)."""

    TYPES = {"ADDED": "create", "MODIFIED": "update", "DELETED": "delete"}

    def __init__(self, specs, env):
        self.rules = []  # (event, plural, group or None, cmd)
        for event, spec in specs:
            res, _, cmd = spec.partition("=")
            if not res or not cmd:
                raise ValueError("hook %r is not RESOURCE=COMMAND" % spec)
            plural, _, group = res.partition(".")
            self.rules.append((event, plural, group if _ else None, cmd))
        self.env = env
        self.queue = queue.Queue()
        if self.rules:
            threading.Thread(target=self._run, daemon=True).start()

    def __call__(self, ev):
        event = self.TYPES.get(ev.type)
        for rule_event, plural, group, cmd in self.rules:
            if rule_event == event and plural == ev.key[1] and group in (None, ev.key[0]):
                self.queue.put((ev, cmd))

    def _run(self):
        while True:
            ev, cmd = self.queue.get()
            md = ev.obj.get("metadata", {})
            env = dict(os.environ, **self.env)
            env.update(STANDIN_EVENT=ev.type, STANDIN_GROUP=ev.key[0], STANDIN_RESOURCE=ev.key[1],
                       STANDIN_NAMESPACE=md.get("namespace", ""), STANDIN_NAME=md.get("name", ""),
                       STANDIN_RESOURCE_VERSION=md.get("resourceVersion", ""))
            try:
                p = subprocess.run(["/bin/sh", "-c", cmd], input=json.dumps(ev.obj).encode(),
                                   env=env, stdout=sys.stderr, stderr=sys.stderr, timeout=300)
                if p.returncode != 0:
                    log("hook %r exited %d" % (cmd, p.returncode))
            except (OSError, subprocess.TimeoutExpired) as e:
                log("hook %r failed: %s" % (cmd, e))


def log(msg):
    sys.stderr.write("standin: %s\n" % msg)
    sys.stderr.flush()


def _accept_params(accept):
    """The first Accept entry's parameters: {'as': 'Table', ...}."""
    for entry in (accept or "").split(","):
        parts = [p.strip() for p in entry.split(";")]
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        if parts[0] in ("application/json", "*/*", "application/yaml") or not parts[0]:
            return params
        if parts[0] == "application/vnd.kubernetes.protobuf" and params:
            continue
    return {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "standin"
    sys_version = ""

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's
        # algorithm and delayed ACKs add 40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.settimeout(10)
            self.connection.do_handshake()
            self.connection.settimeout(None)

    def log_message(self, fmt, *args):
        if self.server.opts.verbose:
            log("%s %s" % (self.address_string(), fmt % args))

    def log_request(self, code="-", size="-"):
        if self.server.access_log:
            self.server.access_log.write("%s %s %s\n" % (self.command, self.path, code))
            self.server.access_log.flush()
        if self.server.opts.verbose:
            log("%s %s %s" % (self.command, self.path, code))

    # --- plumbing ----------------------------------------------------------------------
    def send_json(self, code, obj, ctype="application/json"):
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_raw(self, code, body, ctype):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error_status(self, err):
        self.send_json(err.code, err.status())

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
                if len(data) > 64 << 20:
                    raise kstore.bad_request("request body too large")
            return data
        n = int(self.headers.get("Content-Length") or 0)
        if n > 64 << 20:
            self.close_connection = True
            raise APIError(413, "RequestEntityTooLarge", "request entity too large")
        return self.rfile.read(n) if n else b""

    def parse_body(self, raw):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if not raw.strip():
            raise kstore.bad_request("the body of the request was empty")
        if ctype == "application/vnd.kubernetes.protobuf":
            try:
                return kproto.decode(raw)
            except kproto.ProtoError as e:
                raise APIError(415, "UnsupportedMediaType", "the body of the request was in an "
                               "unknown format: %s" % e)
        try:
            if ctype in ("application/yaml", "application/apply-patch+yaml") and yaml:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, Exception) as e:  # yaml errors are not ValueErrors
            raise kstore.bad_request("the body of the request could not be decoded: %s" % e)

    def authenticate(self):
        o = self.server.opts
        if not o.token and not o.client_ca:
            return True
        auth = self.headers.get("Authorization", "")
        if o.token and auth == "Bearer " + o.token:
            return True
        if o.client_ca and isinstance(self.connection, ssl.SSLSocket):
            if self.connection.getpeercert():
                return True
        return False

    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def dispatch(self, method):
        try:
            url = urllib.parse.urlsplit(self.path)
            self.query = {k: v[-1] for k, v in urllib.parse.parse_qs(
                url.query, keep_blank_values=True).items()}
            raw = self.read_body()
            if url.path in ("/healthz", "/livez", "/readyz") or \
                    url.path.startswith(("/healthz/", "/livez/", "/readyz/")):
                return self.send_raw(200, b"ok", "text/plain; charset=utf-8")
            if not self.authenticate():
                self.server.stats.add("unauthorized", None)
                return self.send_error_status(APIError(401, "Unauthorized", "Unauthorized"))
            segs = [urllib.parse.unquote(s) for s in url.path.split("/") if s]
            self.route(method, segs, raw)
        except APIError as e:
            self.send_error_status(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        except Exception as e:  # an internal error must still answer with a Status
            log("internal error on %s %s: %r" % (method, self.path, e))
            import traceback
            traceback.print_exc()
            try:
                self.send_error_status(APIError(500, "InternalError", "internal error: %s" % e))
            except OSError:
                self.close_connection = True

    # --- routing -------------------------------------------------------------------------
    def route(self, method, segs, raw):
        store = self.server.store
        if not segs:
            paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version",
                     "/openapi/v2"]
            for g, vs in sorted(store.groups().items()):
                if g:
                    paths.append("/apis/" + g)
                    paths += ["/apis/%s/%s" % (g, v) for v in vs]
            return self.send_json(200, {"paths": sorted(paths)})
        if segs == ["version"]:
            return self.send_json(200, VERSION_INFO)
        if segs[0] == "openapi":
            return self.openapi(segs)
        if segs[0] == "standin" and segs[1:] == ["requests"]:
            if method == "DELETE":
                self.server.stats.reset()
            return self.send_json(200, self.server.stats.json())
        if segs[0] == "api":
            group, rest = "", segs[1:]
            if not rest:
                self.server.stats.add("discovery", None)
                return self.send_json(200, {
                    "kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                    "serverAddress": self.server.hostport}]})
        elif segs[0] == "apis":
            groups = store.groups()
            if len(segs) == 1:
                self.server.stats.add("discovery", None)
                return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                            "groups": [self.group_doc(g, vs) for g, vs in
                                                       sorted(groups.items()) if g]})
            group, rest = segs[1], segs[2:]
            if group not in groups:
                raise not_found_path()
            if not rest:
                doc = self.group_doc(group, groups[group])
                doc.update(kind="APIGroup", apiVersion="v1")
                return self.send_json(200, doc)
        else:
            raise not_found_path()
        version, rest = rest[0], rest[1:]
        if version not in store.groups().get(group, []):
            raise not_found_path()
        if not rest:
            self.server.stats.add("discovery", None)
            resources = []
            for rt in store.resources_of(group, version):
                resources += rt.discovery()
            return self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                                        "groupVersion": "%s/%s" % (group, version) if group
                                        else version, "resources": resources})
        watch = False
        if rest[0] == "watch":
            watch, rest = True, rest[1:]
        if not rest:
            raise not_found_path()
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in NS_SUBRESOURCES:
            ns, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise not_found_path()
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        rt = store.lookup(group, version, plural)
        if rt is None or (ns is not None and not rt.namespaced) or \
                (rt.namespaced and ns is None and name is not None) or \
                (sub is not None and sub not in rt.subresources):
            raise not_found_path()
        if name == "":
            raise not_found_path()
        self.resource(method, rt, ns, name, sub, watch, raw)

    def group_doc(self, group, versions):
        vs = [{"groupVersion": "%s/%s" % (group, v), "version": v} for v in versions]
        return {"name": group, "versions": vs, "preferredVersion": vs[0]}

    def openapi(self, segs):
        accept = self.headers.get("Accept", "")
        if segs == ["openapi", "v2"]:
            if "protobuf" in accept:
                # An empty message is a valid, empty openapi_v2.Document.
                return self.send_raw(200, b"", "application/com.github.proto-openapi.spec.v2."
                                     "v1.0+protobuf")
            return self.send_json(200, {"swagger": "2.0", "info": {
                "title": "Kubernetes", "version": VERSION_INFO["gitVersion"]},
                "paths": {}, "definitions": {}})
        if segs == ["openapi", "v3"]:
            return self.send_json(200, {"paths": {}})
        raise not_found_path()

    # --- resources -------------------------------------------------------------------------
    def selectors(self, rt):
        try:
            lsel = kselect.parse_labels(self.query.get("labelSelector"))
            fsel = kselect.parse_fields(self.query.get("fieldSelector"), rt.fields)
        except kselect.SelectorError as e:
            raise kstore.bad_request("unable to parse requirement: %s" % e)
        return lsel, fsel

    def dry_run(self):
        v = self.query.get("dryRun")
        if v not in (None, "", "All"):
            raise kstore.bad_request("dryRun: Unsupported value: %r: supported values: \"All\""
                                     % v)
        return v == "All"

    def resource(self, method, rt, ns, name, sub, watch, raw):
        store = self.server.store
        stats = self.server.stats
        if watch or self.query.get("watch") in ("true", "1"):
            if method != "GET":
                raise method_not_allowed()
            stats.add("watch", rt.qualified)
            lsel, fsel = self.selectors(rt)
            if name:
                fsel.append(("metadata.name", "=", name))
            return self.stream_watch(rt, ns, lsel, fsel)
        if method == "GET" and name is None:
            stats.add("list", rt.qualified)
            lsel, fsel = self.selectors(rt)
            try:
                limit = int(self.query.get("limit") or 0)
            except ValueError:
                raise kstore.bad_request("limit must be an integer")
            meta, items = store.list(rt, ns, lsel, fsel, max(0, limit),
                                     self.query.get("continue") or None)
            return self.reply_list(rt, meta, items)
        if method == "GET":
            stats.add("get", rt.qualified)
            obj = store.get(rt, ns, name)
            if sub == "scale":
                return self.send_json(200, self.scale_of(obj))
            return self.reply_object(200, rt, obj)
        if method == "POST":
            if name is not None:
                raise method_not_allowed()
            stats.add("create", rt.qualified)
            body = self.admit(rt, ns, "CREATE", self.parse_body(raw), None)
            obj = store.create(rt, ns or "", body, self.dry_run())
            return self.reply_object(201, rt, obj)
        if method == "PUT":
            if name is None:
                raise method_not_allowed()
            stats.add("update", rt.qualified)
            body = self.parse_body(raw)
            if sub == "scale":
                return self.put_scale(rt, ns, name, body)
            if sub is None:
                body = self.admit(rt, ns, "UPDATE", body, store.get(rt, ns, name))
            obj = store.update(rt, ns, name, body, sub if sub != "finalize" else None,
                               self.dry_run())
            return self.reply_object(200, rt, obj)
        if method == "PATCH":
            if name is None:
                raise method_not_allowed()
            stats.add("patch", rt.qualified)
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            ptype = PATCH_TYPES.get(ctype)
            if ptype is None:
                raise APIError(415, "UnsupportedMediaType", "the body of the request was in an "
                               "unknown format - accepted media types include: " +
                               ", ".join(PATCH_TYPES))
            body = self.parse_body(raw)
            if sub == "scale":
                return self.patch_scale(rt, ns, name, ptype, body)
            if ptype == "apply":
                if isinstance(body, dict):
                    body.setdefault("metadata", {}).setdefault("name", name)
                    if rt.namespaced:
                        body["metadata"].setdefault("namespace", ns)
            obj, created = store.patch(rt, ns, name, ptype, body, sub, self.dry_run())
            return self.reply_object(201 if created else 200, rt, obj)
        if method == "DELETE":
            opts = {}
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if raw.strip() and ctype != "application/vnd.kubernetes.protobuf":
                opts = self.parse_body(raw) or {}
            for k in ("propagationPolicy", "gracePeriodSeconds"):
                if k in self.query:
                    opts[k] = self.query[k]
            if name is None:
                if "deletecollection" not in rt.verbs:
                    raise method_not_allowed()
                stats.add("deletecollection", rt.qualified)
                lsel, fsel = self.selectors(rt)
                meta, items = store.delete_collection(rt, ns, lsel, fsel, opts, self.dry_run())
                return self.reply_list(rt, meta, items)
            if sub is not None:
                raise method_not_allowed()
            stats.add("delete", rt.qualified)
            obj = store.delete(rt, ns, name, opts, self.dry_run())
            pending = obj["metadata"].get("deletionTimestamp") and \
                obj["metadata"].get("finalizers") and rt.key != ("", "namespaces")
            return self.reply_object(202 if pending else 200, rt, obj)
        raise method_not_allowed()

    def admit(self, rt, ns, operation, body, old):
        """Runs the mutating admission webhooks over a create or update body."""
        if rt.key[0] == "admissionregistration.k8s.io" or not isinstance(body, dict):
            return body
        md = body.setdefault("metadata", {})
        if rt.namespaced and isinstance(md, dict) and not md.get("namespace"):
            md["namespace"] = ns
        return self.server.admission.mutate(rt, ns, operation, body, old, self.dry_run())

    # --- scale subresource -------------------------------------------------------------------
    def scale_of(self, obj):
        md = obj["metadata"]
        sel = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                "creationTimestamp") if k in md},
                "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                           "selector": ",".join("%s=%s" % kv for kv in sorted(sel.items()))}}

    def put_scale(self, rt, ns, name, body):
        obj = self.server.store.get(rt, ns, name)
        replicas = ((body or {}).get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise kstore.invalid(rt, name, [("spec.replicas", "Invalid value: must be a "
                                             "non-negative integer")])
        rv = ((body or {}).get("metadata") or {}).get("resourceVersion")
        obj.setdefault("spec", {})["replicas"] = replicas
        if not rv:
            obj["metadata"].pop("resourceVersion")
        else:
            obj["metadata"]["resourceVersion"] = rv
        obj = self.server.store.update(rt, ns, name, obj, None, self.dry_run(), from_patch=True)
        return self.send_json(200, self.scale_of(obj))

    def patch_scale(self, rt, ns, name, ptype, body):
        import kpatch
        cur = self.scale_of(self.server.store.get(rt, ns, name))
        try:
            if ptype == "json":
                new = kpatch.json_patch(cur, body)
            else:
                new = kpatch.merge_patch(cur, body)
        except kpatch.PatchError as e:
            raise APIError(422, "Invalid", str(e))
        return self.put_scale(rt, ns, name, new)

    # --- output shaping ------------------------------------------------------------------------
    def output_form(self):
        p = _accept_params(self.headers.get("Accept"))
        return p.get("as", "")

    def table(self, rt, items, meta):
        wide = self.query.get("includeObject", "Metadata")
        cols = rt.table_columns()
        rows = []
        for obj in items:
            row = {"cells": [kresources.cell_value(c, obj) for c in cols]}
            if wide == "Object":
                row["object"] = obj
            elif wide != "None":
                row["object"] = {"kind": "PartialObjectMetadata",
                                 "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
            rows.append(row)
        out = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
               "columnDefinitions": [{"name": c["name"], "type": c["type"],
                                      "format": c["format"], "description": c["description"],
                                      "priority": c["priority"]} for c in cols],
               "rows": rows}
        return out

    def shape(self, rt, obj):
        form = self.output_form()
        if form == "Table":
            return self.table(rt, [obj], {"resourceVersion": obj["metadata"].get(
                "resourceVersion", "")})
        if form == "PartialObjectMetadata":
            return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"]}
        return obj

    def reply_object(self, code, rt, obj):
        self.send_json(code, self.shape(rt, obj))

    def reply_list(self, rt, meta, items):
        form = self.output_form()
        if form == "Table":
            return self.send_json(200, self.table(rt, items, meta))
        if form == "PartialObjectMetadataList":
            return self.send_json(200, {
                "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                "metadata": meta, "items": [{"kind": "PartialObjectMetadata",
                                             "apiVersion": "meta.k8s.io/v1",
                                             "metadata": o["metadata"]} for o in items]})
        self.send_json(200, {"kind": rt.kind + "List", "apiVersion": rt.api_version,
                             "metadata": meta, "items": items})

    # --- watch -------------------------------------------------------------------------------
    def client_gone(self):
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(r)

    def stream_watch(self, rt, ns, lsel, fsel):
        timeout = self.query.get("timeoutSeconds")
        try:
            timeout = int(timeout) if timeout else None
        except ValueError:
            raise kstore.bad_request("timeoutSeconds must be an integer")
        bookmarks = self.query.get("allowWatchBookmarks") in ("true", "1")
        initial = self.query.get("sendInitialEvents") in ("true", "1")
        form = self.output_form()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()
        stop = threading.Event()
        self.server.watch_stops.add(stop)
        self.close_connection = True
        try:
            for ev in self.server.store.watch(
                    rt, ns, lsel, fsel, self.query.get("resourceVersion"), stop, timeout,
                    self.server.opts.bookmark_interval if bookmarks else None, initial):
                if ev is None:
                    if self.client_gone():
                        return
                    continue
                if ev["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    if form == "Table":
                        ev = {"type": ev["type"], "object": self.table(rt, [ev["object"]], {
                            "resourceVersion": ev["object"]["metadata"]["resourceVersion"]})}
                    elif form == "PartialObjectMetadata":
                        ev = {"type": ev["type"], "object": {
                            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                            "metadata": ev["object"]["metadata"]}}
                data = json.dumps(ev, separators=(",", ":")).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass
        finally:
            self.server.watch_stops.discard(stop)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError, socket.timeout, OSError)):
            if self.opts.verbose:
                log("connection from %s: %s" % (client_address[0], exc))
            return
        super().handle_error(request, client_address)


def write_kubeconfig(path, opts, url):
    cluster = {"server": url}
    if url.startswith("https"):
        ca = opts.kubeconfig_ca or opts.tls_cert
        cluster["certificate-authority"] = os.path.abspath(ca)
    user = {}
    if opts.token:
        user["token"] = opts.token
    if opts.kubeconfig_client_cert:
        user["client-certificate"] = os.path.abspath(opts.kubeconfig_client_cert)
        user["client-key"] = os.path.abspath(opts.kubeconfig_client_key)
    if not user:
        # kubectl asks for a user name on a terminal when an https cluster's
        # user has no credentials; a token the server does not check avoids it.
        user["token"] = "standin-anonymous"
    cfg = {"apiVersion": "v1", "kind": "Config", "preferences": {},
           "clusters": [{"name": "standin", "cluster": cluster}],
           "users": [{"name": "standin", "user": user}],
           "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin",
                                                        "namespace": "default"}}],
           "current-context": "standin"}
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        if yaml:
            yaml.safe_dump(cfg, f, default_flow_style=False, sort_keys=False)
        else:
            json.dump(cfg, f, indent=2)
    os.replace(tmp, path)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Kubernetes API stand-in for tests")
    p.add_argument("--port", type=int, required=True, help="TCP port; 0 picks a free one")
    p.add_argument("--addr", default="127.0.0.1")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--client-ca", help="CA for client certificates (enables cert auth)")
    p.add_argument("--token", help="bearer token that authenticates a request")
    p.add_argument("--state-file", help="load objects from here, save them here")
    p.add_argument("--kubeconfig-out", help="write a kubeconfig pointing at this server")
    p.add_argument("--kubeconfig-ca", help="CA file for the kubeconfig (default: --tls-cert)")
    p.add_argument("--kubeconfig-client-cert", help="client certificate for the kubeconfig")
    p.add_argument("--kubeconfig-client-key", help="client key for the kubeconfig")
    p.add_argument("--watch-history", type=int, default=2000,
                   help="events kept for watches; older resourceVersions get 410 Gone")
    p.add_argument("--namespace-delay", type=float, default=0.2,
                   help="seconds a deleted namespace stays Terminating (0: gone at once)")
    p.add_argument("--bookmark-interval", type=float, default=5.0,
                   help="seconds between BOOKMARK events on watches that allow them")
    p.add_argument("--no-stasis-types", action="store_true",
                   help="do not serve stasis.io without its CRDs")
    p.add_argument("--no-schemas", action="store_true",
                   help="store custom resources as sent (no pruning or defaulting)")
    p.add_argument("--on-create", action="append", default=[], metavar="RESOURCE=CMD")
    p.add_argument("--on-update", action="append", default=[], metavar="RESOURCE=CMD")
    p.add_argument("--on-delete", action="append", default=[], metavar="RESOURCE=CMD")
    p.add_argument("--service-endpoint", action="append", default=[],
                   metavar="NS/NAME:PORT=HOST:PORT",
                   help="where webhook service references are reached")
    p.add_argument("--access-log", help="append one line per request: METHOD PATH CODE")
    p.add_argument("--verbose", action="store_true")
    opts = p.parse_args(argv)
    if bool(opts.tls_cert) != bool(opts.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if opts.client_ca and not opts.tls_cert:
        p.error("--client-ca needs --tls-cert/--tls-key")
    if bool(opts.kubeconfig_client_cert) != bool(opts.kubeconfig_client_key):
        p.error("--kubeconfig-client-cert and --kubeconfig-client-key go together")
    return opts


def main(argv):
    opts = parse_args(argv)
    store = kstore.Store(history=opts.watch_history, with_stasis=not opts.no_stasis_types,
                         namespace_delay=opts.namespace_delay, state_file=opts.state_file,
                         schemas=not opts.no_schemas)
    srv = Server((opts.addr, opts.port), Handler)
    srv.opts = opts
    srv.store = store
    srv.stats = Stats()
    srv.watch_stops = set()
    try:
        srv.admission = kadmit.Admission(store, opts.service_endpoint)
    except ValueError as e:
        log(str(e))
        return 2
    srv.access_log = open(opts.access_log, "a") if opts.access_log else None
    port = srv.server_address[1]
    srv.hostport = "%s:%d" % (opts.addr, port)
    scheme = "http"
    if opts.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(opts.tls_cert, opts.tls_key)
        ctx.set_alpn_protocols(["http/1.1"])
        if opts.client_ca:
            ctx.load_verify_locations(opts.client_ca)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True,
                                     do_handshake_on_connect=False)
        scheme = "https"
    url = "%s://%s" % (scheme, srv.hostport)
    env = {"STANDIN_URL": url}
    if opts.kubeconfig_out:
        write_kubeconfig(opts.kubeconfig_out, opts, url)
        env["STANDIN_KUBECONFIG"] = os.path.abspath(opts.kubeconfig_out)
    hooks = Hooks([("create", s) for s in opts.on_create] +
                  [("update", s) for s in opts.on_update] +
                  [("delete", s) for s in opts.on_delete], env)
    store.subscribers.append(hooks)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    if opts.state_file:
        def saver():
            while not done.wait(0.5):
                try:
                    store.save()
                except OSError as e:
                    log("saving %s: %s" % (opts.state_file, e))
        threading.Thread(target=saver, daemon=True).start()
    print("standin listening on %s" % url, flush=True)
    while not done.wait(1.0):
        pass
    store.close()
    for stop in list(srv.watch_stops):
        stop.set()
    srv.shutdown()
    srv.server_close()
    store.save()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
