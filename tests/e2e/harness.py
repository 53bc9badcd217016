#!/usr/bin/python3
"""End-to-end harness: plays kubelet and the CSI driver "stasis.test.csi" on top
of the Kubernetes API stand-in (tests/k8s/standin.py). See tests/e2e/README.md
for the contract (options, files, knobs, what a pod and a claim become).

    harness.py --kubeconfig F --root DIR --bin-dir build/asan/bin [options]
        serve: prints "harness ready", runs until SIGTERM/SIGINT, then undoes everything
    harness.py --kubeconfig F --root DIR path NS PVC
        prints the host directory where claim NS/PVC is mounted (mounting it read-write
        when nothing has it mounted)
    harness.py --kubeconfig F --root DIR release NS PVC
        drops the mount `path` made (unmounted when no pod uses it)
    harness.py --root DIR exec NS POD CONTAINER -- CMD [ARG...]
        runs CMD on the host as if inside that container of a running pod
"""

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, HERE)

from hhost import Host, HostError, parse_quantity, write_json  # noqa: E402
from hkube import Informer, Kube, Worker  # noqa: E402
from hpods import RUN_BINARIES, Pods  # noqa: E402
from hvolumes import MountError, Volumes  # noqa: E402
from hworkloads import Workloads  # noqa: E402

READY_LINE = "harness ready"
SOCKET = "harness.sock"
TOOLS = ("mkfs.xfs", "mkfs.ext4", "losetup", "mount", "umount", "fsfreeze")


def log(msg):
    sys.stderr.write("%s harness: %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class Harness:
    def __init__(self, args):
        self.args = args
        self.root = args.root
        self.kubeconfig = os.path.abspath(args.kubeconfig)
        self.log = log
        self.lock = threading.RLock()
        self.state_lock = threading.Lock()
        self.stopping = threading.Event()
        self.host = Host(self.root, log)
        self.kube = None
        self.inf = {}
        self.main = Worker("kubelet", log)
        self.snapw = Worker("snapshotter", log)
        self.volumes = None
        self.pods = None
        self.workloads = None
        self.sock = None

    # ----------------------------------------------------------------- state
    def save_state(self):
        """volumes.json, snapshots.json and pods.json under --root (atomic rewrites)."""
        if self.volumes is None or self.pods is None:
            return
        with self.state_lock:
            with self.lock:
                vols = {"%s/%s" % k: v.info() for k, v in list(self.volumes.vols.items())}
                snaps = {"%s/%s" % k: s.info() for k, s in list(self.volumes.snaps.items())}
            pods = self.pods.info()
            write_json(os.path.join(self.root, "volumes.json"), vols)
            write_json(os.path.join(self.root, "snapshots.json"), snaps)
            write_json(os.path.join(self.root, "pods.json"), pods)

    # ------------------------------------------------------------------ serve
    def start(self):
        os.makedirs(self.root, exist_ok=True)
        for d in ("logs", "pods", "volumes", "c"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        self.host.create_pool(self.args.pool_size)
        self.kube = Kube.from_kubeconfig(self.kubeconfig)
        self.kube.get("/version")
        self._ensure_node()
        self.volumes = Volumes(self)
        self.pods = Pods(self)
        self.workloads = Workloads(self)
        self.main.start()
        self.snapw.start()

        def to(worker, fn):
            return lambda typ, obj, old: worker.submit(fn, typ, obj, old)

        def kick(worker, fn):
            return lambda typ, obj, old: worker.submit(fn)
        plan = [
            ("storageclasses", kick(self.main, self.volumes.retry_pending_claims)),
            ("volumesnapshotclasses", kick(self.snapw, self.volumes.retry_pending_snapshots)),
            ("secrets", kick(self.main, self.pods.retry_pending)),
            ("configmaps", kick(self.main, self.pods.retry_pending)),
            ("persistentvolumeclaims", to(self.main, self.volumes.on_pvc)),
            ("volumesnapshots", to(self.snapw, self.volumes.on_vs)),
            ("pods", to(self.main, self._on_pod)),
        ]
        if not self.args.no_workloads:
            wl = self.workloads
            plan += [
                ("deployments", lambda t, o, old: self.main.submit(wl.on_owner, "Deployment",
                                                                   t, o, old)),
                ("statefulsets", lambda t, o, old: self.main.submit(wl.on_owner, "StatefulSet",
                                                                    t, o, old)),
            ]
        for plural, cb in plan:
            inf = Informer(self.kube, plural, cb, log, self.stopping)
            self.inf[plural] = inf
            inf.start()
            if not inf.synced.wait(30):
                raise HostError("could not list %s from the API server" % plural)
        self.pods.prober.start()
        self._serve_socket()
        write_json(os.path.join(self.root, "harness.json"), {
            "pid": os.getpid(), "binDir": self.args.bin_dir, "pool": self.host.pool,
            "socket": os.path.join(self.root, SOCKET), "kubeconfig": self.kubeconfig})
        # Initial events are queued before the sync; let the workers drain them.
        self.main.call(lambda: None)
        self.snapw.call(lambda: None)
        self.save_state()

    def _ensure_node(self):
        """The one Node pods are bound to (created when missing, marked Ready)."""
        name = self.args.node_name
        if self.kube.get_or_none("nodes", None, name) is None:
            self.kube.create(self.kube.rpath("nodes"), {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                      "kubernetes.io/os": "linux"}}})
        self.kube.patch_status("nodes", None, name, {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "stasis end-to-end harness"}]})

    def _on_pod(self, typ, obj, old):
        self.pods.on_pod(typ, obj, old)
        if not self.args.no_workloads:
            self.workloads.on_pod(typ, obj, old)

    def _serve_socket(self):
        path = os.path.join(self.root, SOCKET)
        if os.path.exists(path):
            os.unlink(path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            s.bind(path)
        finally:
            os.umask(old)
        s.listen(16)
        self.sock = s
        threading.Thread(target=self._accept, name="control", daemon=True).start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        with conn:
            try:
                f = conn.makefile("rwb")
                req = json.loads(f.readline(65536) or b"{}")
                try:
                    resp = self.main.call(self._control, req)
                except (MountError, HostError, ValueError, KeyError) as e:
                    resp = {"error": str(e)}
                f.write(json.dumps(resp).encode() + b"\n")
                f.flush()
            except (OSError, ValueError) as e:
                log("control request failed: %s" % e)

    def _control(self, req):
        op, k = req.get("op"), (req.get("namespace"), req.get("claim"))
        if op == "path":
            return {"path": self.volumes.acquire(k, "host", True).mount}
        if op == "release":
            self.volumes.release_key(k, "host")
            return {"released": True}
        raise ValueError("unknown request %r" % op)

    def stop(self):
        """Processes killed, everything unmounted and detached, the pool removed."""
        self.stopping.set()
        if self.sock is not None:
            self.sock.close()
            try:
                os.unlink(os.path.join(self.root, SOCKET))
            except OSError:
                pass
        for w in (self.main, self.snapw):
            if w.is_alive():
                w.stop()
                w.join(30)
        if self.pods is not None:
            self.pods.shutdown()
        self.host.cleanup()
        for d in ("pods", "volumes", "c"):
            p = os.path.join(self.root, d)
            if os.path.isdir(p) and not [m for m in open("/proc/self/mounts")
                                         if (" " + p + "/") in m]:
                shutil.rmtree(p, ignore_errors=True)
        try:
            os.rmdir(self.host.pool)
        except OSError:
            pass
        try:
            self.save_state_final()
        except OSError:
            pass

    def save_state_final(self):
        write_json(os.path.join(self.root, "volumes.json"), {})
        write_json(os.path.join(self.root, "pods.json"), {})
        write_json(os.path.join(self.root, "snapshots.json"), {})


def serve(args):
    for t in TOOLS:
        if shutil.which(t) is None:
            sys.exit("harness: %s is not installed" % t)
    if os.geteuid() != 0:
        sys.exit("harness: needs root (loop devices and mounts)")
    for b in RUN_BINARIES:
        if not os.access(os.path.join(args.bin_dir, b), os.X_OK):
            log("warning: %s/%s is not executable; containers running it will fail to start" %
                (args.bin_dir, b))
    h = Harness(args)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    rc = 0
    try:
        h.start()
        print(READY_LINE, flush=True)
        log("ready: root %s, pool %s, pod IPs from %s" % (args.root, h.host.pool, args.ip_base))
        while not stop.wait(1):
            pass
        log("stopping")
    except Exception as e:
        log("error: %s" % e)
        rc = 1
    finally:
        h.stop()
        log("stopped; nothing left mounted under %s" % args.root)
    return rc


def control(args, op, ns, claim):
    path = os.path.join(args.root, SOCKET)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        sys.exit("harness: no harness serving %s (%s: %s)" % (args.root, path, e.strerror))
    with s:
        s.sendall(json.dumps({"op": op, "namespace": ns, "claim": claim}).encode() + b"\n")
        resp = json.loads(s.makefile("rb").readline() or b"{}")
    if "error" in resp:
        sys.exit("harness: %s" % resp["error"])
    if op == "path":
        print(resp["path"])
    return 0


def exec_in(args, ns, pod, container, argv):
    """Runs argv with the container's environment, paths and binaries (like kubectl exec)."""
    try:
        with open(os.path.join(args.root, "pods.json")) as f:
            pods = json.load(f)
        with open(os.path.join(args.root, "harness.json")) as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit("harness: cannot read the harness state under %s: %s" % (args.root, e))
    p = pods.get("%s/%s" % (ns, pod))
    if p is None or container not in p["containers"]:
        sys.exit("harness: no running container %s in pod %s/%s" % (container, ns, pod))
    c = p["containers"][container]
    if not c["run"] or not c["root"]:
        sys.exit("harness: container %s of %s/%s is not run by the harness" % (container, ns,
                                                                               pod))
    if not argv:
        sys.exit("harness: exec needs a command after --")

    def rw(v):
        if v == "0.0.0.0":
            return p["ip"]
        if v.startswith("/") and v != "/":
            for mp in c["mounts"]:
                if v == mp or v.startswith(mp + "/") or mp.startswith(v.rstrip("/") + "/"):
                    return c["root"] + v
        return v
    if os.path.basename(argv[0]) in RUN_BINARIES:
        argv = [os.path.join(info["binDir"], os.path.basename(argv[0]))] + argv[1:]
    argv = [argv[0]] + [rw(a) for a in argv[1:]]
    os.chdir(c["root"])
    os.execvpe(argv[0], argv, c["env"])


def main():
    ap = argparse.ArgumentParser(
        description="kubelet and CSI driver stand-ins for end-to-end tests (see README.md)")
    ap.add_argument("--kubeconfig", help="kubeconfig of the API stand-in")
    ap.add_argument("--root", required=True, help="directory for the pool, mounts, logs, state")
    ap.add_argument("--bin-dir", default="build/asan/bin",
                    help="where stasis-agent and stasis are (default build/asan/bin)")
    ap.add_argument("--ip-base", default="127.0.2.10",
                    help="first pod IP; the next pods get the following addresses")
    ap.add_argument("--pool-size", default="8G", help="size of the sparse XFS pool image")
    ap.add_argument("--agent-certs", help="directory with tls.crt, tls.key and ca.crt used for "
                    "secret volumes of --agent-tls-secret when that Secret does not exist")
    ap.add_argument("--agent-tls-secret", default="stasis-agent-tls",
                    help="Secret name --agent-certs stands in for (default stasis-agent-tls)")
    ap.add_argument("--strict-storage-classes", action="store_true",
                    help="claims naming a StorageClass that does not exist stay Pending")
    ap.add_argument("--node-name", default="harness",
                    help="the Node pods are bound to (spec.nodeName; created if missing)")
    ap.add_argument("--no-workloads", action="store_true",
                    help="do not create pods (and claims) for Deployments and StatefulSets")
    ap.add_argument("--pass-env", action="append", metavar="NAME",
                    help="environment variable passed on to the processes (repeatable)")
    ap.add_argument("command", nargs="*", help="path NS PVC | release NS PVC | "
                    "exec NS POD CONTAINER -- CMD...")
    args = ap.parse_args()
    args.root = os.path.abspath(args.root)
    args.bin_dir = os.path.abspath(args.bin_dir)
    cmd = args.command
    if cmd and cmd[0] in ("path", "release"):
        if len(cmd) != 3:
            ap.error("%s needs NS PVC" % cmd[0])
        return control(args, cmd[0], cmd[1], cmd[2])
    if cmd and cmd[0] == "exec":
        if len(cmd) < 5:
            ap.error("exec needs NS POD CONTAINER -- CMD...")
        return exec_in(args, cmd[1], cmd[2], cmd[3], cmd[4:])
    if cmd:
        ap.error("unknown command %r (path, release, exec, or none to serve)" % cmd[0])
    if not args.kubeconfig:
        ap.error("--kubeconfig is required to serve")
    try:
        args.pool_size = parse_quantity(args.pool_size)
        ip = [int(x) for x in args.ip_base.split(".")]
        if len(ip) != 4 or ip[0] != 127 or not all(0 <= x <= 255 for x in ip):
            raise ValueError
    except (HostError, ValueError):
        ap.error("--pool-size must be a size (8G) and --ip-base an address in 127.0.0.0/8")
    if args.agent_certs:
        for n in ("tls.crt", "tls.key", "ca.crt"):
            if not os.path.isfile(os.path.join(args.agent_certs, n)):
                ap.error("--agent-certs %s has no %s" % (args.agent_certs, n))
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
