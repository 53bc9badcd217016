"""Host side of the end-to-end harness: the reflink XFS pool, volume images,
loop devices, mounts, FICLONE, Kubernetes quantities and atomic JSON files.
Every mount and loop device made here is recorded in a Host object so that
Host.cleanup() can undo all of it (mounts deepest first, then loop devices,
then the pool) whatever state the harness is in."""

import errno
import fcntl
import json
import os
import re
import subprocess
import threading

FICLONE = 0x40049409
MIB = 1 << 20
MIN_IMAGE = 32 * MIB
# mkfs.xfs refuses filesystems smaller than 300 MB (xfsprogs >= 5.19).
MIN_XFS_IMAGE = 320 * MIB

_SUFFIX = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50,
           "Ei": 1 << 60, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
           "E": 10**18, "": 1}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([-+]?[0-9]+))?"
                       r"(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")


class HostError(Exception):
    pass


def parse_quantity(text):
    """Bytes in a Kubernetes quantity ("50Mi", "1G", "1e9", "0.5Gi"), rounded up."""
    m = _QUANTITY.match(str(text).strip())
    if not m:
        raise HostError("%r is not a Kubernetes quantity (e.g. 50Mi, 1Gi)" % (text,))
    num, exp, suffix = m.group(1), m.group(2), m.group(3) or ""
    whole, _, frac = num.partition(".")
    value = int(whole or "0") * 10**len(frac) + int(frac or "0")
    scale_num, scale_den = 1, 10**len(frac)
    if exp:
        e = int(exp)
        if e >= 0:
            scale_num *= 10**e
        else:
            scale_den *= 10**-e
    if suffix == "m":
        scale_den *= 1000
    else:
        scale_num *= _SUFFIX[suffix]
    return -(-value * scale_num // scale_den)


def format_quantity(n):
    """The shortest binary-suffixed form of a byte count."""
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        if n and n % _SUFFIX[suffix] == 0:
            return "%d%s" % (n // _SUFFIX[suffix], suffix)
    return str(n)


def write_json(path, obj):
    """Writes obj to path atomically (mode 0600)."""
    tmp = "%s.tmp.%d" % (path, threading.get_ident())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def run(argv, what, timeout=120):
    """Runs a host tool; a failure raises HostError with its stderr."""
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise HostError("%s: %s: %s" % (what, argv[0], e)) from None
    if p.returncode != 0:
        raise HostError("%s: %s exited %d: %s" % (what, " ".join(argv), p.returncode,
                                                  p.stderr.decode(errors="replace").strip()))
    return p.stdout.decode(errors="replace")


def ficlone(src, dst):
    """Makes dst (must not exist) a reflink copy of src, sharing its blocks."""
    sfd = os.open(src, os.O_RDONLY)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.ioctl(dfd, FICLONE, sfd)
        except OSError:
            os.close(dfd)
            dfd = -1
            os.unlink(dst)
            raise
        finally:
            if dfd >= 0:
                os.close(dfd)
    finally:
        os.close(sfd)


def mounts_under(root):
    """Mount points at or below root from /proc/self/mounts, deepest first."""
    out = []
    prefix = root.rstrip("/") + "/"
    with open("/proc/self/mounts") as f:
        for line in f:
            target = line.split()[1].encode().decode("unicode_escape")
            if target == root or target.startswith(prefix):
                out.append(target)
    return sorted(set(out), key=lambda p: (-p.count("/"), p))


def loops_backed_under(root):
    """Loop devices whose backing file lies below root (from /sys/block)."""
    out = []
    prefix = root.rstrip("/") + "/"
    try:
        names = os.listdir("/sys/block")
    except OSError:
        return out
    for n in names:
        if not n.startswith("loop"):
            continue
        try:
            with open("/sys/block/%s/loop/backing_file" % n) as f:
                backing = f.read().strip()
        except OSError:
            continue
        if backing.endswith(" (deleted)"):
            backing = backing[:-len(" (deleted)")]
        if backing.startswith(prefix):
            out.append("/dev/" + n)
    return out


class Host:
    """Pool, images, loop devices and mounts below one root directory."""

    def __init__(self, root, log):
        self.root = root
        self.log = log
        self.pool = os.path.join(root, "pool")
        self.pool_image = os.path.join(root, "pool.img")
        self.pool_loop = None
        self.lock = threading.Lock()
        self.loops = set()

    # -- pool ---------------------------------------------------------------
    def create_pool(self, size):
        if mounts_under(self.root):
            raise HostError("something is already mounted under %s (%s); unmount it or use "
                            "another --root" % (self.root, mounts_under(self.root)[0]))
        os.makedirs(self.pool, exist_ok=True)
        with open(self.pool_image, "wb") as f:
            f.truncate(size)
        run(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", self.pool_image], "creating the pool")
        self.pool_loop = self.attach(self.pool_image, False)
        run(["mount", self.pool_loop, self.pool], "mounting the pool")
        for d in ("volumes", "snapshots"):
            os.makedirs(os.path.join(self.pool, d), exist_ok=True)

    # -- images -------------------------------------------------------------
    def make_image(self, path, size, fstype):
        """A new formatted filesystem image of size bytes."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        try:
            if fstype == "xfs":
                run(["mkfs.xfs", "-q", "-f", path], "formatting " + path)
            else:
                run(["mkfs.ext4", "-q", "-F", "-E", "nodiscard", path], "formatting " + path)
        except HostError:
            os.unlink(path)
            raise

    def clone_image(self, src, dst, size=None):
        """dst becomes a FICLONE of src, grown (file only) to size when larger."""
        ficlone(src, dst)
        if size and size > os.path.getsize(dst):
            os.truncate(dst, size)

    def remove(self, path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    # -- loop devices and mounts -------------------------------------------
    def attach(self, image, readonly):
        argv = ["losetup", "--find", "--show"] + (["--read-only"] if readonly else []) + [image]
        dev = run(argv, "attaching " + image).strip()
        with self.lock:
            self.loops.add(dev)
        return dev

    def detach(self, dev):
        try:
            run(["losetup", "-d", dev], "detaching " + dev)
        except HostError as e:
            if "No such device" not in str(e):  # already gone (autoclear)
                self.log("warning: %s" % e)
        with self.lock:
            self.loops.discard(dev)

    def mount_image(self, image, target, fstype, readonly):
        """Loop-mounts image at target; returns the loop device."""
        os.makedirs(target, exist_ok=True)
        dev = self.attach(image, readonly)
        if fstype == "xfs":
            opts = "ro,norecovery,nouuid" if readonly else "nouuid"
        else:
            opts = "ro,noload" if readonly else "rw"
        try:
            run(["mount", "-t", fstype, "-o", opts, dev, target], "mounting " + image)
        except HostError:
            self.detach(dev)
            raise
        return dev

    def bind(self, src, target, readonly):
        if os.path.isdir(src):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.exists(target):
                open(target, "a").close()
        run(["mount", "--bind", src, target], "bind-mounting " + src)
        if readonly:
            try:
                run(["mount", "-o", "remount,bind,ro", target], "remounting %s read-only" % target)
            except HostError:
                self.unmount(target)
                raise

    def tmpfs(self, target, size="4m"):
        """A small tmpfs at target (a container's /run, as container runtimes give)."""
        os.makedirs(target, exist_ok=True)
        run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "tmpfs", target],
            "mounting a tmpfs at " + target)

    def unmount(self, target):
        """Unmounts target (lazily when busy); True when it is gone."""
        for argv in (["umount", target], ["umount", "-l", target]):
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            if p.returncode == 0:
                return True
            if b"not mounted" in p.stderr:
                return True
            self.log("warning: %s: %s" % (" ".join(argv),
                                          p.stderr.decode(errors="replace").strip()))
        return False

    def unmount_tree(self, top):
        """Unmounts everything at or below top, deepest first."""
        for m in mounts_under(top):
            subprocess.run(["fsfreeze", "-u", m], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            self.unmount(m)

    def cleanup(self):
        """Unmounts and detaches everything under root, the pool last; removes the pool image."""
        for m in mounts_under(self.root):
            if m == self.pool:
                continue
            # A frozen filesystem would block the unmount: thaw first (a no-op when thawed).
            subprocess.run(["fsfreeze", "-u", m], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            self.unmount(m)
        for dev in sorted((self.loops | set(loops_backed_under(self.pool))) - {self.pool_loop}):
            self.detach(dev)
        if self.pool in mounts_under(self.root):
            self.unmount(self.pool)
        if self.pool_loop:
            self.detach(self.pool_loop)
        for dev in loops_backed_under(self.root):
            self.detach(dev)    # anything the steps above missed
        try:
            os.unlink(self.pool_image)
        except OSError as e:
            if e.errno != errno.ENOENT:
                self.log("warning: removing %s: %s" % (self.pool_image, e))
