"""The test CSI driver "stasis.test.csi" of the end-to-end harness: dynamic
provisioning of PersistentVolumeClaims as filesystem images in the reflink
pool (fresh, or cloned from a VolumeSnapshot or another claim), the shared
mounts of those images, and VolumeSnapshots as FICLONEs of a claim's image.

Claims and mounts are handled on the harness's main worker ("kubelet"),
snapshots on their own worker so that a cut never waits behind a mkfs."""

import datetime
import os
import time

from hhost import HostError, MIB, MIN_IMAGE, MIN_XFS_IMAGE, format_quantity, parse_quantity
from hkube import APIStatusError

DRIVER = "stasis.test.csi"
SNAP_GROUP = "snapshot.storage.k8s.io"
P_READY_DELAY = "stasis.test/ready-delay-ms"
P_CUT_DELAY = "stasis.test/cut-delay-ms"
P_ERROR = "stasis.test/error"
P_NEVER_CUT = "stasis.test/never-cut"
DEFAULT_SC_ANN = ("storageclass.kubernetes.io/is-default-class",
                  "storageclass.beta.kubernetes.io/is-default-class")
DEFAULT_VSC_ANN = "snapshot.storage.kubernetes.io/is-default-class"


def rfc3339(ns):
    t = datetime.datetime.fromtimestamp(ns // 10**9, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ".%09dZ" % (ns % 10**9)


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class MountError(Exception):
    pass


class Volume:
    """A provisioned claim: its PV, image and (at most one) mount."""

    def __init__(self, ns, name, uid, pv, image, fstype, size, access_modes, reclaim):
        self.ns, self.name, self.uid = ns, name, uid
        self.pv, self.image, self.fstype, self.size = pv, image, fstype, size
        self.access_modes = access_modes
        self.reclaim = reclaim
        self.dev = None
        self.mount = None
        self.mode = None        # "rw" or "ro" while mounted
        self.users = {}         # user ("ns/pod" or "host") -> "rw" | "ro"
        self.doomed = False     # the claim is gone; delete once no user is left

    def info(self):
        return {"image": self.image, "mount": self.mount, "pv": self.pv, "fsType": self.fstype,
                "device": self.dev, "mode": self.mode, "size": self.size,
                "users": sorted(self.users)}


class Snap:
    def __init__(self, ns, name, uid):
        self.ns, self.name, self.uid = ns, name, uid
        self.content = "snapcontent-" + uid
        self.image = None
        self.state = "new"      # new, pending, cutting, cut, ready, error, never
        self.size = 0
        self.timer = None
        self.deletion_policy = "Delete"
        self.source = None      # (ns, pvc)
        self.seen = 0.0         # time.monotonic() when its first event was handled
        self.seen_ns = 0        # the same, Unix ns
        self.cut_ns = 0         # creationTime (Unix ns): when FICLONE returned
        self.status_ns = 0      # when the snapshot's status with creationTime was written
        self.fstype = "ext4"

    def info(self):
        return {"image": self.image, "content": self.content, "state": self.state,
                "handle": self.content, "fsType": self.fstype, "eventNs": self.seen_ns,
                "cutNs": self.cut_ns, "statusNs": self.status_ns,
                "source": "%s/%s" % self.source if self.source else None}


class Volumes:
    """Claims, PVs, images and their mounts (main worker) and snapshots (snap worker)."""

    def __init__(self, h):
        self.h = h
        self.kube = h.kube
        self.host = h.host
        self.log = h.log
        self.vols = {}      # (ns, pvc) -> Volume
        self.snaps = {}     # (ns, vs) -> Snap

    # ------------------------------------------------------------------ claims
    def on_pvc(self, typ, obj, old):
        md = obj["metadata"]
        k = (md["namespace"], md["name"])
        if typ == "DELETED":
            self._claim_gone(k, md.get("uid"))
            return
        if md.get("deletionTimestamp"):
            return
        v = self.vols.get(k)
        if v is not None and v.uid == md["uid"]:
            return
        self.provision(k, obj)

    def retry_pending_claims(self):
        for obj in self.h.inf["persistentvolumeclaims"].items():
            md = obj["metadata"]
            k = (md["namespace"], md["name"])
            if k not in self.vols and not md.get("deletionTimestamp"):
                self.provision(k)

    def _storage_class(self, pvc):
        """(class object or None, refusal reason or None) for a claim."""
        name = (pvc.get("spec") or {}).get("storageClassName")
        scs = self.h.inf["storageclasses"]
        if name is None:
            for sc in scs.items():
                ann = sc["metadata"].get("annotations") or {}
                if any(ann.get(a) == "true" for a in DEFAULT_SC_ANN):
                    name = sc["metadata"]["name"]
                    break
        if not name:
            return None, None
        sc = scs.get("", name)
        if sc is None:
            if self.h.args.strict_storage_classes:
                return None, "storageclass.storage.k8s.io %r not found" % name
            return None, None
        if sc.get("provisioner") != DRIVER:
            return sc, "provisioner %s is not %s" % (sc.get("provisioner"), DRIVER)
        return sc, None

    def provision(self, k, pvc=None):
        """Binds claim k; pvc is the object of the event being handled (the
        informer's cache may not hold it yet)."""
        if pvc is None:
            pvc = self.h.inf["persistentvolumeclaims"].get(*k)
        if pvc is None:
            return
        md, spec = pvc["metadata"], pvc.get("spec") or {}
        st = pvc.get("status") or {}
        if spec.get("volumeName"):
            self._adopt(k, pvc)
            return
        if st.get("phase") == "Bound":
            return
        sc, refusal = self._storage_class(pvc)
        if refusal:
            self.log("claim %s/%s stays Pending: %s" % (k[0], k[1], refusal))
            return
        params = (sc or {}).get("parameters") or {}
        fstype = (params.get("fsType") or params.get("csi.storage.k8s.io/fstype") or "ext4").lower()
        if fstype not in ("ext4", "xfs"):
            self.log("claim %s/%s stays Pending: fsType %r is not ext4 or xfs" % (k[0], k[1],
                                                                                   fstype))
            return
        try:
            req = parse_quantity(((spec.get("resources") or {}).get("requests") or {})
                                 .get("storage", "0"))
        except HostError as e:
            self.log("claim %s/%s stays Pending: %s" % (k[0], k[1], e))
            return
        size = max(req, MIN_XFS_IMAGE if fstype == "xfs" else MIN_IMAGE)
        size = -(-size // MIB) * MIB
        pv = "pvc-" + md["uid"]
        image = os.path.join(self.host.pool, "volumes", pv + ".img")
        src = spec.get("dataSource") or spec.get("dataSourceRef")
        if os.path.exists(image):
            os.unlink(image)   # left by an earlier attempt that failed half-way
        if src:
            kind, group = src.get("kind"), src.get("apiGroup") or ""
            if kind == "VolumeSnapshot" and group == SNAP_GROUP:
                with self.h.lock:
                    s = self.snaps.get((k[0], src.get("name")))
                    if s is None or s.state != "ready":
                        return      # retried when the snapshot becomes ready
                    self.host.clone_image(s.image, image, size)
                    fstype = s.fstype
            elif kind == "PersistentVolumeClaim" and not group:
                with self.h.lock:
                    sv = self.vols.get((k[0], src.get("name")))
                    if sv is None or sv.doomed:
                        return
                    self.host.clone_image(sv.image, image, size)
                    fstype = sv.fstype
            else:
                self.log("claim %s/%s stays Pending: dataSource kind %s is not served" %
                         (k[0], k[1], kind))
                return
            size = os.path.getsize(image)
        else:
            self.host.make_image(image, size, fstype)
        reclaim = (sc or {}).get("reclaimPolicy") or "Delete"
        modes = spec.get("accessModes") or ["ReadWriteOnce"]
        v = Volume(k[0], k[1], md["uid"], pv, image, fstype, size, modes, reclaim)
        try:
            self._bind(pvc, v, sc)
        except Exception:
            self.host.remove(image)
            raise
        with self.h.lock:
            self.vols[k] = v
        self.h.save_state()
        self.log("claim %s/%s bound to %s (%s, %s)" % (k[0], k[1], pv, fstype,
                                                       format_quantity(size)))
        self.h.pods.retry_pending()
        self.h.snapw.submit(self.retry_pending_snapshots)

    def _bind(self, pvc, v, sc):
        md, spec = pvc["metadata"], pvc.get("spec") or {}
        cap = format_quantity(v.size)
        pv = {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": v.pv, "annotations": {
                "pv.kubernetes.io/provisioned-by": DRIVER,
                "volume.kubernetes.io/provisioner-deletion-secret-name": "",
                "volume.kubernetes.io/provisioner-deletion-secret-namespace": ""}},
            "spec": {
                "capacity": {"storage": cap},
                "accessModes": v.access_modes,
                "persistentVolumeReclaimPolicy": v.reclaim,
                "storageClassName": spec.get("storageClassName") or
                (sc["metadata"]["name"] if sc else ""),
                "volumeMode": "Filesystem",
                "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                             "namespace": md["namespace"], "name": md["name"],
                             "uid": md["uid"], "resourceVersion": md["resourceVersion"]},
                "csi": {"driver": DRIVER, "volumeHandle": v.pv, "fsType": v.fstype,
                        "volumeAttributes": {"stasis.test/image": v.image}},
            },
        }
        try:
            self.kube.create(self.kube.rpath("persistentvolumes"), pv)
        except APIStatusError as e:
            if e.code != 409:
                raise
        self.kube.patch_status("persistentvolumes", None, v.pv, {"phase": "Bound"})
        ns, name = md["namespace"], md["name"]
        self.kube.patch(self.kube.rpath("persistentvolumeclaims", ns, name), {
            "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes",
                                         "pv.kubernetes.io/bound-by-controller": "yes",
                                         "volume.kubernetes.io/storage-provisioner": DRIVER,
                                         "volume.beta.kubernetes.io/storage-provisioner": DRIVER}},
            "spec": {"volumeName": v.pv}})
        self.kube.patch_status("persistentvolumeclaims", ns, name, {
            "phase": "Bound", "accessModes": v.access_modes, "capacity": {"storage": cap}})

    def _adopt(self, k, pvc):
        """A claim bound before the harness started: kept when its PV and image are ours."""
        name = pvc["spec"]["volumeName"]
        if k in self.vols:
            return
        pv = self.kube.get_or_none("persistentvolumes", None, name)
        csi = ((pv or {}).get("spec") or {}).get("csi") or {}
        image = os.path.join(self.host.pool, "volumes", name + ".img")
        if csi.get("driver") != DRIVER or not os.path.exists(image):
            return
        size = os.path.getsize(image)
        v = Volume(k[0], k[1], pvc["metadata"]["uid"], name, image, csi.get("fsType", "ext4"),
                   size, pvc["spec"].get("accessModes") or ["ReadWriteOnce"],
                   pv["spec"].get("persistentVolumeReclaimPolicy", "Delete"))
        with self.h.lock:
            self.vols[k] = v
        self.h.save_state()

    def _claim_gone(self, k, uid):
        v = self.vols.get(k)
        if v is None or v.uid != uid:
            return
        v.doomed = True
        if "host" in v.users:
            self.release(v, "host")     # finishes the claim when it was the last user
        elif not v.users:
            self._finish(v)

    def _finish(self, v):
        """Deletes a gone claim's PV and image once nothing uses them."""
        with self.h.lock:
            if self.vols.get((v.ns, v.name)) is v:
                del self.vols[(v.ns, v.name)]
        if v.reclaim == "Delete":
            try:
                self.kube.delete(self.kube.rpath("persistentvolumes", None, v.pv))
            except APIStatusError as e:
                if e.code != 404:
                    self.log("deleting PV %s: %s" % (v.pv, e))
            self.host.remove(v.image)
            self.log("claim %s/%s deleted with %s" % (v.ns, v.name, v.pv))
        else:
            try:
                self.kube.patch_status("persistentvolumes", None, v.pv, {"phase": "Released"})
            except APIStatusError as e:
                self.log("releasing PV %s: %s" % (v.pv, e))
        self.h.save_state()
        # A claim created again under the same name while this one was going
        # waited for the name: provision it now.
        self.h.main.submit(self.retry_pending_claims)

    # ------------------------------------------------------------------ mounts
    def acquire(self, k, user, rw):
        """Mounts claim k for user (read-write when rw) and returns its Volume (v.mount is
        the directory). One mount per claim, shared by its users; MountError when the
        modes clash."""
        v = self.vols.get(k)
        if v is None or v.doomed:
            raise MountError("persistentvolumeclaim %r is not bound" % k[1])
        if v.mount is not None:
            if rw and v.mode == "ro":
                raise MountError("claim %s/%s is mounted read-only (by %s) and cannot also be "
                                 "mounted read-write" % (k[0], k[1], ", ".join(sorted(v.users))))
            others = [u for u, m in v.users.items() if u != user and u != "host" and m == "rw"]
            if rw and others and "ReadWriteOncePod" in v.access_modes:
                raise MountError("claim %s/%s is ReadWriteOncePod and mounted read-write by %s" %
                                 (k[0], k[1], others[0]))
        else:
            # The claim's uid in the name: a claim re-created under the same name (a
            # namespace deleted and restored) never mounts over its predecessor.
            target = os.path.join(self.h.root, "volumes", k[0], "%s.%s" % (k[1], v.uid[:8]))
            try:
                v.dev = self.host.mount_image(v.image, target, v.fstype, not rw)
            except HostError as e:
                raise MountError(str(e)) from None
            v.mount, v.mode = target, "rw" if rw else "ro"
        if v.users.get(user) != "rw":
            v.users[user] = "rw" if rw else "ro"
        self.h.save_state()
        return v

    def release(self, v, user):
        if v.users.pop(user, None) is None and user != "host":
            return
        if not v.users and v.mount is not None:
            if self.host.unmount(v.mount):
                self.host.detach(v.dev)
                try:
                    os.rmdir(v.mount)
                except OSError:
                    pass
            v.mount = v.dev = v.mode = None
        self.h.save_state()
        if v.doomed and not v.users:
            self._finish(v)

    def release_key(self, k, user):
        v = self.vols.get(k)
        if v is not None:
            self.release(v, user)

    # --------------------------------------------------------------- snapshots
    # Everything below runs on the snapshot worker.
    def on_vs(self, typ, obj, old):
        md = obj["metadata"]
        k = (md["namespace"], md["name"])
        if typ == "DELETED":
            self._snapshot_gone(k, md["uid"])
            return
        s = self.snaps.get(k)
        if s is not None and s.uid == md["uid"]:
            if s.state == "pending":
                self._start_snapshot(s, obj)
            return
        s = Snap(k[0], k[1], md["uid"])
        s.seen = time.monotonic()
        s.seen_ns = time.time_ns()
        with self.h.lock:
            self.snaps[k] = s
        self._start_snapshot(s, obj)

    def retry_pending_snapshots(self):
        for s in list(self.snaps.values()):
            if s.state == "pending":
                obj = self.h.inf["volumesnapshots"].get(s.ns, s.name)
                if obj is not None and obj["metadata"]["uid"] == s.uid:
                    self._start_snapshot(s, obj)

    def _class_for(self, obj):
        """(class parameters, deletionPolicy) or None when the snapshot is not ours."""
        name = (obj.get("spec") or {}).get("volumeSnapshotClassName")
        classes = self.h.inf["volumesnapshotclasses"]
        if name:
            c = classes.get("", name)
            if c is None or c.get("driver") != DRIVER:
                return None
            return c.get("parameters") or {}, c.get("deletionPolicy", "Delete")
        for c in classes.items():
            if c.get("driver") == DRIVER and (c["metadata"].get("annotations") or {}).get(
                    DEFAULT_VSC_ANN) == "true":
                return c.get("parameters") or {}, c.get("deletionPolicy", "Delete")
        return {}, "Delete"

    def _start_snapshot(self, s, obj):
        spec, st = obj.get("spec") or {}, obj.get("status") or {}
        src = (spec.get("source") or {}).get("persistentVolumeClaimName")
        s.state = "pending"
        if not src:
            s.state = "ignored"  # pre-provisioned contents are not served
            return
        if st.get("boundVolumeSnapshotContentName") or st.get("error"):
            self._adopt_snapshot(s, st)
            return
        cls = self._class_for(obj)
        if cls is None:
            return               # another driver's class, or the class is not there yet
        params, s.deletion_policy = cls
        s.source = (s.ns, src)
        if params.get(P_ERROR):
            s.state = "error"
            self.kube.patch_status("volumesnapshots", s.ns, s.name, {
                "readyToUse": False,
                "error": {"message": params[P_ERROR], "time": now_rfc3339()}})
            self.log("snapshot %s/%s: error %r (class knob)" % (s.ns, s.name, params[P_ERROR]))
            return
        with self.h.lock:
            v = self.vols.get(s.source)
            if v is None or v.doomed:
                return           # retried when the claim is bound
            vol_handle, image, s.fstype = v.pv, v.image, v.fstype
        s.image = os.path.join(self.host.pool, "snapshots", s.content + ".img")
        try:
            ready_ms = int(params.get(P_READY_DELAY, 200))
            cut_ms = int(params.get(P_CUT_DELAY, 0))
        except ValueError:
            ready_ms, cut_ms = 200, 0
        # A fast storage cuts first and records afterwards: without a cut delay
        # the clone is taken before any API call, so a frozen pod waits for the
        # clone and the status write only.
        early = None
        if cut_ms <= 0 and params.get(P_NEVER_CUT) != "true":
            early = self._clone(s, image)
            if early is None:
                return
        content = {
            "apiVersion": SNAP_GROUP + "/v1", "kind": "VolumeSnapshotContent",
            "metadata": {"name": s.content},
            "spec": {
                "deletionPolicy": s.deletion_policy, "driver": DRIVER,
                "source": {"volumeHandle": vol_handle},
                "volumeSnapshotClassName": spec.get("volumeSnapshotClassName") or "",
                "volumeSnapshotRef": {"kind": "VolumeSnapshot", "apiVersion": SNAP_GROUP + "/v1",
                                      "namespace": s.ns, "name": s.name, "uid": s.uid}},
        }
        try:
            self.kube.create(self.kube.rpath("volumesnapshotcontents"), content)
        except APIStatusError as e:
            if e.code != 409:
                raise
        if params.get(P_NEVER_CUT) == "true":
            s.state = "never"
            self.kube.patch_status("volumesnapshots", s.ns, s.name, {
                "boundVolumeSnapshotContentName": s.content, "readyToUse": False})
            self.log("snapshot %s/%s: never cut (class knob)" % (s.ns, s.name))
            return
        s.state = "cutting"
        if early is not None:
            self._publish(s, image, early, ready_ms)
        elif cut_ms > 0:
            s.timer = self.h.snapw.after(cut_ms / 1000.0, self._cut, s, image, ready_ms)
        else:
            self._cut(s, image, ready_ms)

    def _clone(self, s, image):
        """FICLONE of the claim's image: the cut. Its time (ns), or None on error."""
        with self.h.lock:
            try:
                self.host.clone_image(image, s.image)
            except OSError as e:
                s.state = "error"
                self.kube.patch_status("volumesnapshots", s.ns, s.name, {
                    "readyToUse": False,
                    "error": {"message": "FICLONE of %s: %s" % (image, e),
                              "time": now_rfc3339()}})
                return None
            return time.time_ns()

    def _cut(self, s, image, ready_ms):
        if self.snaps.get((s.ns, s.name)) is not s:
            return
        t = self._clone(s, image)
        if t is not None:
            self._publish(s, image, t, ready_ms)

    def _publish(self, s, image, t, ready_ms):
        s.size = os.path.getsize(s.image)
        s.state = "cut"
        self.kube.patch_status("volumesnapshots", s.ns, s.name, {
            "boundVolumeSnapshotContentName": s.content, "creationTime": rfc3339(t),
            "restoreSize": format_quantity(s.size), "readyToUse": False, "error": None})
        s.cut_ns, s.status_ns = t, time.time_ns()
        self.kube.patch_status("volumesnapshotcontents", None, s.content, {
            "creationTime": t, "restoreSize": s.size, "snapshotHandle": s.content,
            "readyToUse": False})
        self.h.save_state()
        self.log("snapshot %s/%s cut from %s, status written %.1f ms after its event" %
                 (s.ns, s.name, os.path.basename(image), (time.monotonic() - s.seen) * 1000))
        s.timer = self.h.snapw.after(max(ready_ms, 0) / 1000.0, self._ready, s)

    def _ready(self, s):
        if self.snaps.get((s.ns, s.name)) is not s:
            return
        self.kube.patch_status("volumesnapshotcontents", None, s.content, {"readyToUse": True})
        self.kube.patch_status("volumesnapshots", s.ns, s.name, {"readyToUse": True})
        s.state = "ready"
        self.h.save_state()
        self.h.main.submit(self.retry_pending_claims)

    def _adopt_snapshot(self, s, st):
        """A snapshot handled before the harness started (or failed): kept as it is."""
        image = os.path.join(self.host.pool, "snapshots", s.content + ".img")
        if st.get("error"):
            s.state = "error"
        elif st.get("readyToUse") and os.path.exists(image):
            s.image, s.state, s.size = image, "ready", os.path.getsize(image)
        else:
            s.state = "ignored"

    def _snapshot_gone(self, k, uid):
        s = self.snaps.get(k)
        if s is None or s.uid != uid:
            return
        with self.h.lock:
            del self.snaps[k]
            self.h.snapw.cancel(s.timer)
            if s.deletion_policy == "Delete":
                if s.image:
                    self.host.remove(s.image)
        if s.deletion_policy == "Delete" and s.state not in ("new", "pending", "error",
                                                              "ignored"):
            try:
                self.kube.delete(self.kube.rpath("volumesnapshotcontents", None, s.content))
            except APIStatusError as e:
                if e.code != 404:
                    self.log("deleting %s: %s" % (s.content, e))
        self.h.save_state()
        self.log("snapshot %s/%s deleted" % k)
