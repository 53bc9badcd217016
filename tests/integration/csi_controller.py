"""A small snapshot controller for tests: it plays the CSI side (the
external-snapshotter and a driver) against the API stand-in.

On every new VolumeSnapshot (any namespace) it looks at the claim name in
spec.source.persistentVolumeClaimName:
  never-*  nothing happens (the snapshot is never cut);
  err-*    after --cut-delay, status.error.message is set to --error-message;
  others   after --cut-delay, a VolumeSnapshotContent is created with an int64
           nanosecond status.creationTime, and the VolumeSnapshot gets
           boundVolumeSnapshotContentName and a second-precision RFC 3339
           creationTime (as metav1.Time is written), readyToUse false; after
           --ready-delay more, both become readyToUse with restoreSize 50Mi.
It lists first and watches from the list's resourceVersion, relisting on
410. It prints "csi controller watching" once its first list is done, and one
line per action. Stop it with SIGTERM.

usage: csi_controller.py --kubeconfig F [--cut-delay S] [--ready-delay S]
                         [--error-message TEXT]
"""

import argparse
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "k8s"))
from kclient import APIStatusError, Client  # noqa: E402

G = "snapshot.storage.k8s.io"
SIZE = 50 * 1024 * 1024


def log(msg):
    print("%.3f %s" % (time.time(), msg), flush=True)


def rfc3339_seconds(ns):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 1000000000))


class Controller:
    def __init__(self, client, cut_delay, ready_delay, error_message):
        self.c = client
        self.cut_delay = cut_delay
        self.ready_delay = ready_delay
        self.error_message = error_message
        self.seen = set()
        self.lock = threading.Lock()

    def vs_path(self, ns, name, sub=None):
        return Client.path(G, "v1", "volumesnapshots", ns, name, sub)

    def vsc_path(self, name, sub=None):
        return Client.path(G, "v1", "volumesnapshotcontents", None, name, sub)

    def on_added(self, obj):
        uid = obj["metadata"]["uid"]
        with self.lock:
            if uid in self.seen:
                return
            self.seen.add(uid)
        if obj.get("status"):
            return
        threading.Thread(target=self.act, args=(obj,), daemon=True).start()

    def act(self, obj):
        md = obj["metadata"]
        ns, name, uid = md["namespace"], md["name"], md["uid"]
        pvc = obj["spec"]["source"]["persistentVolumeClaimName"]
        where = "%s/%s" % (ns, name)
        try:
            if pvc.startswith("never-"):
                log("never cutting " + where)
                return
            time.sleep(self.cut_delay)
            now = time.time_ns()
            if pvc.startswith("err-"):
                self.c.patch(self.vs_path(ns, name, "status"),
                             {"status": {"readyToUse": False, "error": {
                                 "message": self.error_message,
                                 "time": rfc3339_seconds(now)}}})
                log("error on " + where)
                return
            cls_name = obj["spec"].get("volumeSnapshotClassName")
            driver = "unknown.csi.test"
            if cls_name:
                cls = self.c.get(Client.path(G, "v1", "volumesnapshotclasses", None, cls_name))
                driver = cls["driver"]
            content = "snapcontent-" + uid
            self.c.create(self.vsc_path(None), {
                "apiVersion": G + "/v1", "kind": "VolumeSnapshotContent",
                "metadata": {"name": content},
                "spec": {"deletionPolicy": "Delete", "driver": driver,
                         "source": {"volumeHandle": "vol-" + pvc},
                         "volumeSnapshotClassName": cls_name,
                         "volumeSnapshotRef": {"apiVersion": G + "/v1",
                                               "kind": "VolumeSnapshot", "namespace": ns,
                                               "name": name, "uid": uid}}})
            self.c.patch(self.vsc_path(content, "status"),
                         {"status": {"creationTime": now, "readyToUse": False,
                                     "snapshotHandle": "snap-" + uid}})
            self.c.patch(self.vs_path(ns, name, "status"),
                         {"status": {"boundVolumeSnapshotContentName": content,
                                     "creationTime": rfc3339_seconds(now),
                                     "readyToUse": False}})
            log("cut " + where)
            time.sleep(self.ready_delay)
            self.c.patch(self.vsc_path(content, "status"),
                         {"status": {"readyToUse": True, "restoreSize": SIZE}})
            self.c.patch(self.vs_path(ns, name, "status"),
                         {"status": {"readyToUse": True, "restoreSize": "50Mi"}})
            log("ready " + where)
        except APIStatusError as e:
            # The test may delete a snapshot before it is cut or ready.
            log("gave up on %s: %s" % (where, e))

    def run(self):
        first = True
        while True:
            page = self.c.get(Client.path(G, "v1", "volumesnapshots"))
            rv = page["metadata"]["resourceVersion"]
            for it in page["items"]:
                self.on_added(it)
            if first:
                log("csi controller watching")
                first = False
            try:
                for ev in self.c.watch(Client.path(G, "v1", "volumesnapshots"),
                                       resource_version=rv, timeout_seconds=60):
                    if ev["type"] == "ERROR":
                        break
                    if ev["type"] == "ADDED":
                        self.on_added(ev["object"])
            except (OSError, APIStatusError) as e:
                log("watch ended: %s" % e)
                time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--cut-delay", type=float, default=0.3)
    ap.add_argument("--ready-delay", type=float, default=2.5)
    ap.add_argument("--error-message", default="snapshot failed")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    Controller(Client.from_kubeconfig(a.kubeconfig), a.cut_delay, a.ready_delay,
               a.error_message).run()


if __name__ == "__main__":
    main()
