"""The kubelet of the end-to-end harness: pods get an IP, their volumes
(claims loop-mounted, secrets, configMaps, emptyDirs) and, for each container
whose command is stasis-agent or stasis, a real process from --bin-dir that
sees the container's mounts through bind mounts in a per-container root.
Everything here runs on the harness's main worker, except the process
waiters and the readiness prober, which only submit work to it."""

import base64
import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

from hhost import HostError, mounts_under
from hvolumes import MountError

RUN_BINARIES = ("stasis-agent", "stasis")
RUN_ANN = "stasis.test/run"   # pod annotation: more containers to run ("a,b")
STATE_DIR = "/run/stasis"
PASS_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
            "STASIS_LOG_LEVEL")
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def termination_message(c):
    """With terminationMessagePolicy FallbackToLogsOnError, the end of the
    container's log (at most 2048 bytes or 80 lines), as the kubelet does."""
    if c.spec.get("terminationMessagePolicy") != "FallbackToLogsOnError" or not c.log_path:
        return None
    try:
        with open(c.log_path, "rb") as f:
            f.seek(max(0, os.path.getsize(c.log_path) - 2048))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    return "\n".join(tail.strip().splitlines()[-80:]) or None


class NotReady(Exception):
    """The pod cannot start yet (a claim unbound, a secret missing); retried later."""

    def __init__(self, reason, message, scheduling=False):
        super().__init__(message)
        self.reason, self.message, self.scheduling = reason, message, scheduling


def expand(text, env):
    """Kubernetes $(VAR) expansion ($$ escapes, unknown variables stay)."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR.sub(sub, text)


class Container:
    def __init__(self, spec, init, run_names):
        self.spec = spec
        self.name = spec["name"]
        self.init = init
        self.sidecar = init and spec.get("restartPolicy") == "Always"
        cmd = list(spec.get("command") or [])
        image = spec.get("image") or ""
        if not cmd and os.path.basename(image.split("@")[0].split(":")[0]) in RUN_BINARIES:
            cmd = [os.path.basename(image.split("@")[0].split(":")[0])]
        self.binary = os.path.basename(cmd[0]) if cmd else None
        # stasis binaries always run; other containers when the pod's annotation names
        # them and they have a command (an image's entrypoint is not known here).
        self.run = self.binary in RUN_BINARIES or (self.name in run_names and bool(cmd))
        self.cmd = cmd
        self.ports = [p["containerPort"] for p in spec.get("ports") or []
                      if (p.get("protocol") or "TCP") == "TCP" and p.get("containerPort")]
        self.proc = None
        self.state = "waiting"       # waiting, running, terminated
        self.reason = "ContainerCreating"
        self.exit_code = None
        self.message = None          # terminated.message (FallbackToLogsOnError)
        self.started_at = self.finished_at = None
        self.restarts = 0
        self.last = None             # lastState.terminated
        self.ready = False
        self.final = False           # terminated for good (no restart)
        self.root = None
        self.log_path = None
        self.env = {}
        self.argv = []
        self.mounts = {}             # mountPath -> host path (inside self.root)
        self.restart_timer = None
        self.cwd = None
        self.uid = self.gid = None   # securityContext runAsUser/runAsGroup

    def status(self, pod):
        image = self.spec.get("image") or ""
        s = {"name": self.name, "image": image, "imageID": "", "ready": self.ready,
             "restartCount": self.restarts, "started": self.state == "running"}
        if self.proc is not None or self.state != "waiting":
            s["containerID"] = "harness://%s/%s" % (pod.uid, self.name)
        if self.state == "running":
            s["state"] = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            s["state"] = {"terminated": {
                "exitCode": self.exit_code, "reason": "Completed" if self.exit_code == 0 else
                "Error", "startedAt": self.started_at, "finishedAt": self.finished_at}}
            if self.exit_code != 0 and self.message:
                s["state"]["terminated"]["message"] = self.message
        else:
            s["state"] = {"waiting": {"reason": self.reason}}
        if self.last:
            s["lastState"] = {"terminated": self.last}
        return s


class Pod:
    def __init__(self, obj):
        md = obj["metadata"]
        self.ns, self.name, self.uid = md["namespace"], md["name"], md["uid"]
        self.key = "%s/%s" % (self.ns, self.name)
        self.obj = obj
        spec = obj.get("spec") or {}
        self.policy = spec.get("restartPolicy") or "Always"
        ann = (md.get("annotations") or {}).get(RUN_ANN, "")
        run = {n.strip() for n in ann.split(",") if n.strip()}
        self.inits = [Container(c, True, run) for c in spec.get("initContainers") or []]
        self.mains = [Container(c, False, run) for c in spec.get("containers") or []]
        self.ip = None
        self.phase = "Pending"
        self.waiting = None          # NotReady while it cannot start
        self.error = None            # (reason, message) of a failure written to status
        self.started = False
        self.start_time = None
        self.next_init = 0           # index of the init container to run next
        self.claims = []             # Volumes acquired for this pod
        self.dir = None
        self.volumes = {}            # volume name -> host directory
        self.deleting = False
        self.last_status = None

    def containers(self):
        return self.inits + self.mains


class Pods:
    def __init__(self, h):
        self.h = h
        self.kube = h.kube
        self.log = h.log
        self.pods = {}               # "ns/name" -> Pod
        self.ips = {}                # ip -> pod key
        self.prober = threading.Thread(target=self._probe_loop, name="prober", daemon=True)

    # ----------------------------------------------------------------- events
    def on_pod(self, typ, obj, old):
        md = obj["metadata"]
        key = "%s/%s" % (md["namespace"], md["name"])
        p = self.pods.get(key)
        if typ == "DELETED" or md.get("deletionTimestamp"):
            if p is not None and p.uid == md["uid"]:
                self.stop_pod(p)
            return
        if p is not None:
            if p.uid == md["uid"]:
                p.obj = obj
                return
            self.stop_pod(p)         # same name, new pod: the old one goes first
        if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return                   # finished before the harness started
        p = Pod(obj)
        self.pods[key] = p
        self.try_start(p)

    def retry_pending(self):
        for p in list(self.pods.values()):
            if not p.started and not p.deleting:
                self.try_start(p)
        self.h.save_state()

    # ------------------------------------------------------------------ start
    def try_start(self, p):
        if p.started or p.deleting or p.error:
            return
        try:
            self._check_claims(p)
            self._check_refs(p)
        except NotReady as e:
            if p.waiting is None or p.waiting.message != e.message:
                self.log("pod %s waits: %s" % (p.key, e.message))
            p.waiting = e
            self.push_status(p)
            return
        p.waiting = None
        try:
            self._setup(p)
        except (MountError, HostError, OSError) as e:
            self.log("pod %s: %s" % (p.key, e))
            p.error = ("FailedMount", str(e))
            self._teardown_mounts(p)
            self.push_status(p)
            return
        p.started = True
        p.start_time = now_rfc3339()
        self._bind_node(p)
        self._advance(p)

    def _bind_node(self, p):
        """spec.nodeName, as the scheduler's binding would set it."""
        node = self.h.args.node_name
        if (p.obj.get("spec") or {}).get("nodeName") not in (None, "", node):
            self.log("pod %s: spec.nodeName %s is not %s; run here anyway" % (
                p.key, p.obj["spec"]["nodeName"], node))
            return
        if not (p.obj.get("spec") or {}).get("nodeName"):
            try:
                self.kube.patch(self.kube.rpath("pods", p.ns, p.name),
                                {"spec": {"nodeName": node}})
            except Exception as e:
                self.log("pod %s: binding to node %s failed: %s" % (p.key, node, e))

    def _claims_of(self, p):
        out = []
        for v in (p.obj.get("spec") or {}).get("volumes") or []:
            if v.get("persistentVolumeClaim"):
                out.append((v["name"], v["persistentVolumeClaim"]))
        return out

    def _check_claims(self, p):
        for _, ref in self._claims_of(p):
            name = ref.get("claimName")
            pvc = self.h.inf["persistentvolumeclaims"].get(p.ns, name)
            if pvc is None:
                raise NotReady("Unschedulable", 'persistentvolumeclaim "%s" not found' % name,
                               True)
            if (p.ns, name) not in self.h.volumes.vols:
                raise NotReady("Unschedulable",
                               "pod has unbound immediate PersistentVolumeClaims (%s)" % name,
                               True)

    def _secret(self, ns, name):
        return self.h.inf["secrets"].get(ns, name)

    def _configmap(self, ns, name):
        return self.h.inf["configmaps"].get(ns, name)

    def _check_refs(self, p):
        for v in (p.obj.get("spec") or {}).get("volumes") or []:
            if v.get("secret"):
                sec = v["secret"]
                if (self._secret(p.ns, sec.get("secretName")) is None and
                        not sec.get("optional") and not self._agent_cert_fallback(sec)):
                    raise NotReady("ContainerCreating", 'secret "%s" not found' %
                                   sec.get("secretName"))
            if v.get("configMap"):
                cm = v["configMap"]
                if self._configmap(p.ns, cm.get("name")) is None and not cm.get("optional"):
                    raise NotReady("ContainerCreating", 'configmap "%s" not found' %
                                   cm.get("name"))
        for c in p.containers():
            if c.run:
                self._env(p, c)      # raises NotReady for a missing reference

    def _agent_cert_fallback(self, sec):
        a = self.h.args
        return bool(a.agent_certs) and sec.get("secretName") == a.agent_tls_secret

    def _alloc_ip(self, p):
        base = [int(x) for x in self.h.args.ip_base.split(".")]
        n = (base[0] << 24) | (base[1] << 16) | (base[2] << 8) | base[3]
        while True:
            ip = "%d.%d.%d.%d" % (n >> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255)
            if ip not in self.ips:
                self.ips[ip] = p.key
                return ip
            n += 1

    def _setup(self, p):
        """IP, volume directories and claim mounts, container roots."""
        p.ip = self._alloc_ip(p)
        p.dir = os.path.join(self.h.root, "pods", p.ns, "%s.%s" % (p.name, p.uid[:8]))
        os.makedirs(p.dir, exist_ok=True)
        spec = p.obj.get("spec") or {}
        ro_only = self._read_only_volumes(p)
        for v in spec.get("volumes") or []:
            name = v["name"]
            if v.get("persistentVolumeClaim"):
                ref = v["persistentVolumeClaim"]
                k = (p.ns, ref["claimName"])
                rw = not (ref.get("readOnly") or name in ro_only)
                vol = self.h.volumes.acquire(k, p.key, rw)
                p.claims.append(vol)
                p.volumes[name] = vol.mount
                continue
            d = os.path.join(p.dir, "volumes", name)
            os.makedirs(d, exist_ok=True)
            if v.get("secret"):
                self._materialise_secret(p, v["secret"], d)
            elif v.get("configMap"):
                self._materialise_configmap(p, v["configMap"], d)
            elif not v.get("emptyDir"):
                self.log("pod %s: volume %s: only persistentVolumeClaim, secret, configMap "
                         "and emptyDir are served; it is an empty directory" % (p.key, name))
            p.volumes[name] = d
        for i, c in enumerate(p.containers()):
            if c.run:
                self._container_root(p, c, i)

    def _read_only_volumes(self, p):
        """Volumes that every volumeMount of every container mounts read-only."""
        rw, seen = set(), set()
        for c in p.containers():
            for m in c.spec.get("volumeMounts") or []:
                seen.add(m["name"])
                if not m.get("readOnly"):
                    rw.add(m["name"])
        return seen - rw

    def _write_files(self, d, data, items, mode, decode):
        mapping = {}
        if items:
            for it in items:
                if it["key"] in data:
                    mapping[it["key"]] = (it.get("path") or it["key"], it.get("mode", mode))
        else:
            mapping = {k: (k, mode) for k in data}
        for k, (rel, m) in mapping.items():
            path = os.path.join(d, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            raw = base64.b64decode(data[k]) if decode else data[k].encode()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
            os.chmod(path, m & 0o7777)

    def _materialise_secret(self, p, sec, d):
        obj = self._secret(p.ns, sec.get("secretName"))
        mode = sec.get("defaultMode", 0o644)
        if obj is None and self._agent_cert_fallback(sec):
            data = {}
            for n in ("tls.crt", "tls.key", "ca.crt"):
                with open(os.path.join(self.h.args.agent_certs, n), "rb") as f:
                    data[n] = base64.b64encode(f.read()).decode()
            obj = {"data": data}
        if obj is None:
            return                   # optional and missing
        self._write_files(d, obj.get("data") or {}, sec.get("items"), mode, True)

    def _materialise_configmap(self, p, cm, d):
        obj = self._configmap(p.ns, cm.get("name"))
        if obj is None:
            return
        mode = cm.get("defaultMode", 0o644)
        self._write_files(d, obj.get("data") or {}, cm.get("items"), mode, False)
        bin_data = obj.get("binaryData") or {}
        self._write_files(d, bin_data, cm.get("items"), mode, True)

    def _container_root(self, p, c, index):
        """The container's view: bind mounts of its volumes under ROOT/<mountPath>. The
        path is short (ROOT/c/<pod uid8>.<index>): an agent's Unix socket in
        run/stasis below it must fit in sun_path (108 bytes)."""
        c.root = os.path.join(self.h.root, "c", "%s.%d" % (p.uid[:8], index))
        os.makedirs(c.root, exist_ok=True)
        sock = c.root + STATE_DIR + "/agent.sock"
        if len(sock.encode()) > 107:
            self.log("warning: pod %s: container %s: %s is longer than a Unix socket path may "
                     "be; use a shorter --root" % (p.key, c.name, sock))
        mounts = sorted(c.spec.get("volumeMounts") or [], key=lambda m: m["mountPath"].count("/"))
        ro_claims = {v["name"] for v in (p.obj.get("spec") or {}).get("volumes") or []
                     if (v.get("persistentVolumeClaim") or {}).get("readOnly")}
        for m in mounts:
            src = p.volumes.get(m["name"])
            if src is None:
                raise MountError("container %s mounts volume %r, which the pod does not define" %
                                 (c.name, m["name"]))
            if m.get("subPath"):
                src = os.path.join(src, m["subPath"])
                os.makedirs(src, exist_ok=True)
            target = c.root + "/" + m["mountPath"].strip("/")
            self.h.host.bind(src, target, bool(m.get("readOnly")) or m["name"] in ro_claims)
            c.mounts[m["mountPath"].rstrip("/") or "/"] = target
        # /run is a tmpfs in a container: the agent's journal is fsynced there
        # on every freeze and thaw, which must not cost a disk write.
        if not any(mp == "/run" or mp.startswith("/run/") for mp in c.mounts):
            self.h.host.tmpfs(c.root + "/run")
        os.makedirs(c.root + STATE_DIR, exist_ok=True)
        logdir = os.path.join(self.h.root, "logs", p.ns, p.name)
        os.makedirs(logdir, exist_ok=True)
        c.log_path = os.path.join(logdir, c.name + ".log")
        open(c.log_path, "w").close()

    # ------------------------------------------------------------ environment
    def _rewrite_one(self, c, value):
        if not value.startswith("/") or value == "/":
            return value
        for mp in c.mounts:
            if value == mp or value.startswith(mp + "/") or mp.startswith(value.rstrip("/") +
                                                                         "/"):
                return c.root + value
        return value

    def rewrite(self, c, value, ip):
        """A value as the host process needs it: paths into the container root, 0.0.0.0
        to the pod IP (also after --opt= and in comma-separated lists)."""
        if value == "0.0.0.0":
            return ip
        prefix = ""
        if value.startswith("--") and "=" in value:
            prefix, value = value.split("=", 1)
            prefix += "="
            if value == "0.0.0.0":
                return prefix + ip
        parts = value.split(",")
        return prefix + ",".join(self._rewrite_one(c, x) for x in parts)

    def _field(self, p, path):
        md = p.obj["metadata"]
        simple = {"metadata.name": md["name"], "metadata.namespace": md["namespace"],
                  "metadata.uid": md["uid"], "status.podIP": p.ip or "",
                  "status.hostIP": "127.0.0.1", "spec.nodeName": self.h.args.node_name,
                  "spec.serviceAccountName": (p.obj.get("spec") or {}).get(
                      "serviceAccountName", "default")}
        if path in simple:
            return simple[path]
        m = re.match(r"^metadata\.(labels|annotations)\['(.*)'\]$", path)
        if m:
            return (md.get(m.group(1)) or {}).get(m.group(2), "")
        raise NotReady("CreateContainerConfigError", "fieldRef %s is not served" % path)

    def _ref(self, p, kind, ref):
        """Value of a secretKeyRef/configMapKeyRef, None when optional and missing."""
        name, key = ref.get("name"), ref.get("key")
        obj = self._secret(p.ns, name) if kind == "secret" else self._configmap(p.ns, name)
        data = (obj or {}).get("data") or {}
        if key not in data:
            if ref.get("optional"):
                return None
            what = "secret" if kind == "secret" else "configmap"
            raise NotReady("CreateContainerConfigError", "%s \"%s\"%s" % (
                what, name, " not found" if obj is None else " has no key %s" % key))
        return base64.b64decode(data[key]).decode(errors="replace") if kind == "secret" \
            else data[key]

    def _env(self, p, c):
        env = {}
        for ef in c.spec.get("envFrom") or []:
            pre = ef.get("prefix", "")
            for kind, field in (("secret", "secretRef"), ("configmap", "configMapRef")):
                ref = ef.get(field)
                if not ref:
                    continue
                obj = self._secret(p.ns, ref["name"]) if kind == "secret" else \
                    self._configmap(p.ns, ref["name"])
                if obj is None:
                    if ref.get("optional"):
                        continue
                    raise NotReady("CreateContainerConfigError",
                                   '%s "%s" not found' % (kind, ref["name"]))
                for k, val in (obj.get("data") or {}).items():
                    env[pre + k] = base64.b64decode(val).decode(errors="replace") \
                        if kind == "secret" else val
        for e in c.spec.get("env") or []:
            vf = e.get("valueFrom")
            if vf is None:
                env[e["name"]] = expand(e.get("value", ""), env)
            elif vf.get("secretKeyRef"):
                v = self._ref(p, "secret", vf["secretKeyRef"])
                if v is not None:
                    env[e["name"]] = v
            elif vf.get("configMapKeyRef"):
                v = self._ref(p, "configmap", vf["configMapKeyRef"])
                if v is not None:
                    env[e["name"]] = v
            elif vf.get("fieldRef"):
                env[e["name"]] = self._field(p, vf["fieldRef"].get("fieldPath", ""))
            else:
                raise NotReady("CreateContainerConfigError",
                               "env %s: only secretKeyRef, configMapKeyRef and fieldRef are "
                               "served" % e["name"])
        return env

    def _prepare(self, p, c):
        env = self._env(p, c)
        host_env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
        for name in self.h.args.pass_env or []:
            if name in os.environ:
                host_env[name] = os.environ[name]
        host_env["KUBECONFIG"] = self.h.kubeconfig
        host_env["HOME"] = c.root
        for k, v in env.items():
            host_env[k] = self.rewrite(c, v, p.ip)
        host_env.setdefault("STASIS_STATE_DIR", c.root + STATE_DIR)
        args = [expand(a, env) for a in c.cmd[1:] + list(c.spec.get("args") or [])]
        c.argv = [self._binary(c, host_env)] + [self.rewrite(c, a, p.ip) for a in args]
        c.env = host_env
        wd = c.spec.get("workingDir")
        c.cwd = self.rewrite(c, wd, p.ip) if wd else c.root
        if c.cwd == wd:
            c.cwd = c.root + wd       # a working directory is always inside the root
            os.makedirs(c.cwd, exist_ok=True)
        sc = dict((p.obj.get("spec") or {}).get("securityContext") or {})
        sc.update(c.spec.get("securityContext") or {})
        c.uid, c.gid = sc.get("runAsUser"), sc.get("runAsGroup")

    def _binary(self, c, env):
        """The host program of a container's command[0]."""
        if c.binary in RUN_BINARIES:
            return os.path.join(self.h.args.bin_dir, c.binary)
        first = c.cmd[0]
        inside = self._rewrite_one(c, first)
        if inside != first or (os.path.isabs(first) and os.access(first, os.X_OK)):
            return inside
        found = shutil.which(os.path.basename(first), path=env.get("PATH", os.defpath))
        if found is None:
            raise NotReady("StartError", "%s is not installed on this host" % first)
        return found

    # -------------------------------------------------------------- processes
    def _launch(self, p, c):
        try:
            if not c.argv:
                self._prepare(p, c)
            logf = os.open(c.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                ids = {}
                if c.uid is not None:
                    ids = {"user": c.uid, "group": c.gid if c.gid is not None else c.uid,
                           "extra_groups": []}
                c.proc = subprocess.Popen(c.argv, env=c.env, cwd=c.cwd,
                                          stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                          start_new_session=True, **ids)
            finally:
                os.close(logf)
        except (OSError, NotReady, subprocess.SubprocessError) as e:
            c.state, c.reason = "terminated", "StartError"
            c.exit_code, c.final = 128, True
            c.started_at = c.finished_at = now_rfc3339()
            with open(c.log_path, "a") as f:
                f.write("harness: cannot start %s: %s\n" % (c.argv[:1], e))
            self.log("pod %s: container %s: cannot start: %s" % (p.key, c.name, e))
            return
        c.state, c.started_at = "running", now_rfc3339()
        c.ready = not c.ports
        self.log("pod %s: container %s started (pid %d): %s" % (p.key, c.name, c.proc.pid,
                                                               " ".join(c.argv)))
        threading.Thread(target=self._wait_proc, args=(p, c, c.proc), daemon=True).start()

    def _wait_proc(self, p, c, proc):
        rc = proc.wait()
        self.h.main.submit(self._exited, p, c, proc, rc)

    def _exited(self, p, c, proc, rc):
        if c.proc is not proc:
            return
        c.proc = None
        code = rc if rc >= 0 else 128 - rc
        c.state, c.exit_code, c.finished_at, c.ready = "terminated", code, now_rfc3339(), False
        c.message = termination_message(c) if code != 0 else None
        self.log("pod %s: container %s exited %d" % (p.key, c.name, code))
        if p.deleting:
            return
        restart = (c.sidecar or (not c.init and (
            p.policy == "Always" or (p.policy == "OnFailure" and code != 0))))
        if c.init and not c.sidecar and code != 0 and p.policy != "Never":
            restart = True
        if restart and not self._main_done(p):
            c.last = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                      "startedAt": c.started_at, "finishedAt": c.finished_at}
            c.restarts += 1
            c.state, c.reason = "waiting", "CrashLoopBackOff"
            delay = min(10.0, 0.5 * (2 ** min(c.restarts - 1, 5)))
            c.restart_timer = self.h.main.after(delay, self._restart, p, c)
        else:
            c.final = True
        self._advance(p)

    def _restart(self, p, c):
        if p.deleting or c.proc is not None or self.pods.get(p.key) is not p:
            return
        self._launch(p, c)
        self.push_status(p)

    def _main_done(self, p):
        """True when restartPolicy Never/OnFailure and every run main container is done."""
        runs = [c for c in p.mains if c.run]
        return p.policy != "Always" and bool(runs) and all(c.final for c in runs)

    def _advance(self, p):
        """Starts what comes next (init containers in order, then the main ones) and
        decides the phase."""
        if p.deleting:
            return
        while p.next_init < len(p.inits):
            c = p.inits[p.next_init]
            if c.sidecar or not c.run:
                if c.run and c.proc is None and c.state == "waiting" and not c.restarts:
                    self._launch(p, c)
                elif not c.run:
                    c.state, c.started_at = ("running" if c.sidecar else "terminated"), \
                        p.start_time
                    c.exit_code, c.finished_at, c.final = 0, p.start_time, not c.sidecar
                    c.ready = c.sidecar
                p.next_init += 1
                continue
            if c.state == "waiting" and c.proc is None and not c.restarts:
                self._launch(p, c)
            if c.state == "terminated" and c.final:
                if c.exit_code != 0:
                    p.phase = "Failed"
                    self._stop_processes(p)
                    self.push_status(p)
                    return
                p.next_init += 1
                continue
            self.push_status(p)      # waiting for this init container
            return
        for c in p.mains:
            if c.state == "waiting" and c.proc is None and not c.restarts:
                if c.run:
                    self._launch(p, c)
                else:
                    c.state, c.started_at, c.ready = "running", p.start_time, True
        if self._main_done(p):
            ok = all(c.exit_code == 0 for c in p.mains if c.run)
            p.phase = "Succeeded" if ok else "Failed"
            for c in p.containers():
                if not c.run and c.state == "running":
                    c.state, c.exit_code, c.finished_at, c.ready = "terminated", 0, \
                        now_rfc3339(), False
            self._stop_processes(p)  # the sidecars
        else:
            p.phase = "Running"
        self.push_status(p)

    # ------------------------------------------------------------- readiness
    def _probe_loop(self):
        while not self.h.stopping.is_set():
            todo = []
            for p in list(self.pods.values()):
                if p.deleting or not p.ip:
                    continue
                for c in p.containers():
                    if c.run and c.state == "running" and not c.ready and c.ports:
                        todo.append((p, c, c.proc, p.ip, c.ports))
            for p, c, proc, ip, ports in todo:
                if all(self._port_open(ip, port) for port in ports):
                    self.h.main.submit(self._mark_ready, p, c, proc)
            time.sleep(0.05)

    @staticmethod
    def _port_open(ip, port):
        try:
            with socket.create_connection((ip, port), timeout=0.2):
                return True
        except OSError:
            return False

    def _mark_ready(self, p, c, proc):
        if c.proc is proc and c.state == "running" and not c.ready:
            c.ready = True
            self.push_status(p)

    # ----------------------------------------------------------------- status
    def push_status(self, p):
        if self.pods.get(p.key) is not p or p.deleting:
            return
        st = {"phase": p.phase, "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}]}
        conds = []
        t = now_rfc3339()
        if p.waiting is not None and p.waiting.scheduling:
            conds.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                          "message": p.waiting.message, "lastTransitionTime": t})
        else:
            conds.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": t})
        if p.started:
            st["podIP"] = p.ip
            st["podIPs"] = [{"ip": p.ip}]
            st["startTime"] = p.start_time
            inits_done = p.next_init >= len(p.inits)
            ready = inits_done and all(c.ready for c in p.mains) and p.phase == "Running"
            conds.append({"type": "Initialized", "status": "True" if inits_done else "False",
                          "lastTransitionTime": t})
            conds.append({"type": "ContainersReady", "status": "True" if ready else "False",
                          "lastTransitionTime": t})
            conds.append({"type": "Ready", "status": "True" if ready else "False",
                          "lastTransitionTime": t})
            st["containerStatuses"] = [c.status(p) for c in p.mains]
            if p.inits:
                st["initContainerStatuses"] = [c.status(p) for c in p.inits]
        st["conditions"] = conds
        st["reason"] = st["message"] = None
        if p.error:
            st["reason"], st["message"] = p.error
        elif p.waiting is not None:
            st["reason"], st["message"] = p.waiting.reason, p.waiting.message
        cmp = dict(st)
        cmp["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                             for c in conds]
        if cmp == p.last_status:
            return
        p.last_status = cmp
        try:
            self.kube.patch_status("pods", p.ns, p.name, st)
        except Exception as e:
            self.log("pod %s: status update failed: %s" % (p.key, e))
        self.h.save_state()

    # ---------------------------------------------------------------- stopping
    def _stop_processes(self, p, then=None):
        """SIGTERM to every process of the pod, SIGKILL (process group) after 5 s; then
        runs `then` on the main worker."""
        procs = []
        for c in p.containers():
            self.h.main.cancel(c.restart_timer)
            if c.proc is not None:
                procs.append(c.proc)
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except OSError:
                pass

        def reap():
            deadline = time.monotonic() + 5
            for proc in procs:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            for proc in procs:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.wait()
            if then is not None:
                self.h.main.submit(then)
        if procs:
            threading.Thread(target=reap, daemon=True).start()
        elif then is not None:
            then()

    def stop_pod(self, p):
        """The pod is deleted: processes stopped, then its mounts undone."""
        if p.deleting:
            return
        p.deleting = True
        self.log("pod %s deleted: stopping it" % p.key)

        def finish():
            self._teardown_mounts(p)
            if p.ip and self.ips.get(p.ip) == p.key:
                del self.ips[p.ip]
            if self.pods.get(p.key) is p:
                del self.pods[p.key]
            self.h.save_state()
            self.retry_pending()
        self._stop_processes(p, finish)

    def _teardown_mounts(self, p):
        dirs = [c.root for c in p.containers() if c.root] + ([p.dir] if p.dir else [])
        for d in dirs:
            self.h.host.unmount_tree(d)
        for vol in p.claims:
            self.h.volumes.release(vol, p.key)
        p.claims = []
        for d in dirs:
            if not mounts_under(d):         # never remove through a live mount
                shutil.rmtree(d, ignore_errors=True)
        if p.error and p.ip and self.ips.get(p.ip) == p.key:
            del self.ips[p.ip]
            p.ip = None

    def shutdown(self):
        """Stops every process (SIGTERM, SIGKILL after 5 s); called at harness exit."""
        procs = [c.proc for p in self.pods.values() for c in p.containers()
                 if c.proc is not None]
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + 5
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                self.log("warning: pid %d did not exit after SIGKILL" % proc.pid)

    def info(self):
        out = {}
        for p in self.pods.values():
            out[p.key] = {
                "uid": p.uid, "ip": p.ip, "phase": p.phase, "dir": p.dir,
                "volumes": dict(p.volumes),
                "error": p.error[1] if p.error else None,
                "containers": {c.name: {
                    "run": c.run, "pid": c.proc.pid if c.proc else None, "root": c.root,
                    "log": c.log_path, "argv": c.argv, "env": c.env, "mounts": c.mounts,
                    "state": c.state, "exitCode": c.exit_code, "restarts": c.restarts}
                    for c in p.containers()},
            }
        return out
