#!/usr/bin/python3
"""Checks a backup in a file:// storage location against the Kubernetes API.

    controller_check.py URL STORE BACKUP [--must KEY]... [--mustnot KEY]...
        [--only-types gr,gr] [--print]

The tarball is listed and unpacked with the system tar. Every object file
under resources/ must exist twice (plain and <version>-preferredversion/,
with the API group's preferred version), parse as JSON, and equal the object
the API returns now (objects of the stasis namespace and Leases change while
the controller runs and are only checked to exist). KEYs are
"<group-resource>/<namespace>/<name>" or "<group-resource>/<name>" for
cluster-scoped objects. The metadata/version, velero-backup.json, the
resource list and the log are checked too. Exits non-zero with a message on
the first mismatch; prints the keys found with --print.
"""
import gzip
import json
import os
import subprocess
import sys
import tempfile
import urllib.request


def die(msg):
    print("controller_check: " + msg, file=sys.stderr)
    sys.exit(1)


def get(url, path):
    try:
        with urllib.request.urlopen(url + path) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def preferred_versions(url):
    pv = {"": "v1"}
    for g in get(url, "/apis")["groups"]:
        pv[g["name"]] = g["preferredVersion"]["version"]
    return pv


def main():
    args = sys.argv[1:]
    url, store, name = args[0], args[1], args[2]
    must, mustnot, only, show = [], [], None, False
    i = 3
    while i < len(args):
        if args[i] == "--must":
            must.append(args[i + 1]); i += 2
        elif args[i] == "--mustnot":
            mustnot.append(args[i + 1]); i += 2
        elif args[i] == "--only-types":
            only = set(args[i + 1].split(",")); i += 2
        elif args[i] == "--print":
            show = True; i += 1
        else:
            die("unknown argument " + args[i])
    bdir = os.path.join(store, "backups", name)
    tarball = os.path.join(bdir, name + ".tar.gz")
    if not os.path.isfile(tarball):
        die("no tarball " + tarball)
    names = subprocess.run(["tar", "-tzf", tarball], check=True, capture_output=True,
                           text=True).stdout.split()
    if len(names) != len(set(names)):
        die("duplicate entries in the tarball")
    x = tempfile.mkdtemp(prefix="ctlcheck-")
    subprocess.run(["tar", "-xzf", tarball, "-C", x], check=True)
    with open(os.path.join(x, "metadata", "version")) as f:
        if f.read() != "1.1.0":
            die("metadata/version is not 1.1.0")
    pv = preferred_versions(url)
    plain, pref = {}, {}
    for n in names:
        if n == "metadata/version":
            continue
        parts = n.split("/")
        if parts[0] != "resources" or not n.endswith(".json"):
            die("unexpected entry " + n)
        gr = parts[1]
        res, _, group = gr.partition(".")
        rest = parts[2:]
        target = plain
        if rest[0].endswith("-preferredversion"):
            v = rest[0][: -len("-preferredversion")]
            if v != pv.get(group):
                die("%s: version %s is not the preferred %s" % (n, v, pv.get(group)))
            rest = rest[1:]
            target = pref
        if rest[0] == "namespaces" and len(rest) == 3:
            key, ns, obj = "%s/%s/%s" % (gr, rest[1], rest[2][:-5]), rest[1], rest[2][:-5]
        elif rest[0] == "cluster" and len(rest) == 2:
            key, ns, obj = "%s/%s" % (gr, rest[1][:-5]), None, rest[1][:-5]
        else:
            die("unexpected layout " + n)
        with open(os.path.join(x, n)) as f:
            target[key] = (json.load(f), res, group, ns, obj)
    if set(plain) != set(pref):
        die("plain and preferred-version entries differ: %s" %
            sorted(set(plain) ^ set(pref))[:5])
    for key, (doc, res, group, ns, obj) in plain.items():
        if doc != pref[key][0]:
            die(key + ": plain and preferred copies differ")
        base = "/api/v1" if group == "" else "/apis/%s/%s" % (group, pv[group])
        path = "%s/namespaces/%s/%s/%s" % (base, ns, res, obj) if ns else "%s/%s/%s" % (base, res, obj)
        live = get(url, path)
        if live is None:
            die(key + ": not in the API")
        if ns == "stasis" or res == "leases":
            continue
        if live != doc:
            die(key + ": differs from the API's object")
        if only is not None and (res if group == "" else res + "." + group) not in only:
            die(key + ": type not allowed in this backup")
    for m in must:
        if m not in plain:
            die("missing " + m)
    for m in mustnot:
        if m in plain:
            die("should not contain " + m)
    meta = json.load(open(os.path.join(bdir, "velero-backup.json")))
    if meta["metadata"]["name"] != name or meta["status"]["formatVersion"] != "1.1.0" \
            or meta["status"]["version"] != 1:
        die("velero-backup.json: wrong name or format")
    rl = json.loads(gzip.open(os.path.join(bdir, name + "-resource-list.json.gz")).read())
    count = sum(len(v) for v in rl.values())
    if count != len(plain):
        die("resource list has %d entries, tarball %d objects" % (count, len(plain)))
    if meta["status"]["progress"]["itemsBackedUp"] != len(plain):
        die("status.progress.itemsBackedUp %d != %d objects" %
            (meta["status"]["progress"]["itemsBackedUp"], len(plain)))
    log = gzip.open(os.path.join(bdir, name + "-logs.gz")).read().decode()
    if "backup started" not in log:
        die("log lacks the start line")
    subprocess.run(["rm", "-rf", x], check=True)
    if show:
        print("\n".join(sorted(plain)))
    print("ok %s: %d objects, phase %s" % (name, len(plain), meta["status"]["phase"]))


main()
