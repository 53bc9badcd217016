"""API plumbing of the end-to-end harness: a client with persistent
connections (so a snapshot cut costs a few milliseconds of API calls, not a
TLS handshake each), informers (list + watch, re-listing after a 410 or a
broken stream, synthesising DELETED for objects that vanished meanwhile), and
workers (one thread, one queue, timers) that handle events one at a time."""

import heapq
import http.client
import itertools
import json
import os
import queue
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "k8s"))
from kclient import APIStatusError, Client  # noqa: E402

GROUPS = {
    "pods": ("", "v1"), "persistentvolumeclaims": ("", "v1"),
    "persistentvolumes": ("", "v1"), "secrets": ("", "v1"), "configmaps": ("", "v1"),
    "nodes": ("", "v1"),
    "storageclasses": ("storage.k8s.io", "v1"),
    "deployments": ("apps", "v1"), "statefulsets": ("apps", "v1"),
    "volumesnapshots": ("snapshot.storage.k8s.io", "v1"),
    "volumesnapshotcontents": ("snapshot.storage.k8s.io", "v1"),
    "volumesnapshotclasses": ("snapshot.storage.k8s.io", "v1"),
}


class Kube(Client):
    """kclient.Client with one kept-alive connection per thread for plain requests."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.local = threading.local()
        u = urllib.parse.urlsplit(self.url)
        self.https = u.scheme == "https"
        self.host, self.port = u.hostname, u.port or (443 if self.https else 80)

    def _conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            if self.https:
                c = http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                                timeout=self.timeout)
            else:
                c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.local.conn = c
        return c

    def request(self, method, path, body=None, ctype="application/json", **query):
        if query:
            path += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        if data is not None:
            headers["Content-Type"] = ctype
        for attempt in (0, 1):
            c = self._conn()
            try:
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                raw = r.read()
                break
            except (OSError, http.client.HTTPException):
                c.close()
                self.local.conn = None
                if attempt:
                    raise
        if r.status >= 400:
            try:
                status = json.loads(raw)
            except ValueError:
                status = {"message": raw.decode(errors="replace")}
            raise APIStatusError(r.status, status)
        return json.loads(raw) if raw else None

    def rpath(self, plural, ns=None, name=None, sub=None):
        g, v = GROUPS[plural]
        return self.path(g, v, plural, ns=ns, name=name, sub=sub)

    def get_or_none(self, plural, ns, name):
        try:
            return self.get(self.rpath(plural, ns, name))
        except APIStatusError as e:
            if e.code == 404:
                return None
            raise

    def patch_status(self, plural, ns, name, status):
        return self.patch(self.rpath(plural, ns, name, "status"), {"status": status})


def key_of(obj):
    md = obj["metadata"]
    return (md.get("namespace") or "", md["name"])


class Informer(threading.Thread):
    """Keeps a cache of one resource (all namespaces) and hands each change to
    on_event(type, obj, old) (type ADDED, MODIFIED or DELETED)."""

    def __init__(self, kube, plural, on_event, log, stopping):
        super().__init__(name="watch-" + plural, daemon=True)
        self.kube = kube
        self.plural = plural
        self.on_event = on_event
        self.log = log
        self.stopping = stopping
        self.cache = {}
        self.lock = threading.Lock()
        self.synced = threading.Event()

    def get(self, ns, name):
        with self.lock:
            return self.cache.get((ns or "", name))

    def items(self):
        with self.lock:
            return list(self.cache.values())

    def _apply(self, typ, obj):
        k = key_of(obj)
        with self.lock:
            old = self.cache.get(k)
            if typ == "DELETED":
                self.cache.pop(k, None)
            else:
                self.cache[k] = obj
        if typ != "DELETED" and old is not None:
            if old["metadata"].get("uid") != obj["metadata"].get("uid"):
                self.on_event("DELETED", old, None)
                old = None
            elif old["metadata"].get("resourceVersion") == obj["metadata"].get("resourceVersion"):
                return
        self.on_event(typ if typ == "DELETED" or old is not None else "ADDED", obj, old)

    def _relist(self):
        path = self.kube.rpath(self.plural)
        page = self.kube.get(path)
        items = page["items"]
        while page["metadata"].get("continue"):
            page = self.kube.get(path, **{"continue": page["metadata"]["continue"]})
            items += page["items"]
        seen = set()
        for it in items:
            seen.add(key_of(it))
        with self.lock:
            gone = [o for k, o in self.cache.items() if k not in seen]
        for o in gone:
            self._apply("DELETED", o)
        for it in items:
            self._apply("MODIFIED", it)
        return page["metadata"]["resourceVersion"]

    def run(self):
        rv = None
        failures = 0
        while not self.stopping.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                    self.synced.set()
                failures = 0
                for ev in self.kube.watch(self.kube.rpath(self.plural), resource_version=rv,
                                          timeout_seconds=300):
                    typ, obj = ev.get("type"), ev.get("object") or {}
                    if typ == "ERROR":
                        rv = None
                        break
                    if typ == "BOOKMARK":
                        rv = obj["metadata"]["resourceVersion"]
                        continue
                    rv = obj["metadata"].get("resourceVersion", rv)
                    self._apply(typ, obj)
            except Exception as e:  # the stream broke or the server went away
                if self.stopping.is_set():
                    return
                self.log("watch %s: %s; re-listing" % (self.plural, e))
                rv = None
                failures += 1
                time.sleep(min(5.0, 0.25 * 2 ** min(failures, 5)))


class Worker(threading.Thread):
    """Runs submitted callables one at a time, now or at a time (timers)."""

    def __init__(self, name, log):
        super().__init__(name=name, daemon=True)
        self.q = queue.Queue()
        self.timers = []
        self.seq = itertools.count()
        self.log = log
        self.stopped = False

    def submit(self, fn, *args):
        self.q.put((fn, args))

    def at(self, when, fn, *args):
        """Runs fn(*args) at time.monotonic() >= when; returns a handle for cancel()."""
        h = [False]
        self.q.put((self._add_timer, (when, h, fn, args)))
        return h

    def after(self, seconds, fn, *args):
        return self.at(time.monotonic() + seconds, fn, *args)

    @staticmethod
    def cancel(h):
        if h is not None:
            h[0] = True

    def _add_timer(self, when, h, fn, args):
        heapq.heappush(self.timers, (when, next(self.seq), h, fn, args))

    def call(self, fn, *args, timeout=120):
        """Runs fn on the worker and returns its result (or raises its exception)."""
        box = queue.Queue()

        def wrapped():
            try:
                box.put((True, fn(*args)))
            except Exception as e:
                box.put((False, e))
        self.submit(wrapped)
        ok, v = box.get(timeout=timeout)
        if not ok:
            raise v
        return v

    def stop(self):
        self.q.put(None)

    def _run_one(self, fn, args):
        try:
            fn(*args)
        except Exception as e:
            import traceback
            self.log("%s: %s failed: %s\n%s" % (self.name, getattr(fn, "__name__", fn), e,
                                               traceback.format_exc()))

    def run(self):
        while True:
            timeout = None
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, _, h, fn, args = heapq.heappop(self.timers)
                if not h[0]:
                    self._run_one(fn, args)
                now = time.monotonic()
            if self.timers:
                timeout = max(0.0, self.timers[0][0] - now)
            try:
                item = self.q.get(timeout=timeout)
            except queue.Empty:
                continue
            if item is None:
                self.stopped = True
                return
            self._run_one(*item)
