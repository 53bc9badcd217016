"""PATCH bodies the API server accepts: JSON merge patch (RFC 7386), strategic
merge patch and JSON patch (RFC 6902).

The strategic merge patch knows the merge keys of the built-in types' lists by
field name (containers and volumes by name, volumeMounts by mountPath, ports
by containerPort or port, ...): such lists merge item by item (an item with
"$patch": "delete" is removed, $setElementOrder orders the result), finalizers
merge as a set, other lists are replaced. $patch: replace|delete on maps,
$retainKeys and $deleteFromPrimitiveList are honoured."""

import copy


class PatchError(ValueError):
    pass


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


MERGE_KEYS = {"containers": "name", "initContainers": "name", "ephemeralContainers": "name",
              "volumes": "name", "env": "name", "volumeMounts": "mountPath",
              "volumeDevices": "devicePath", "imagePullSecrets": "name", "conditions": "type",
              "ownerReferences": "uid", "hostAliases": "ip", "resourceClaims": "name",
              "subsets": None, "ports": ("containerPort", "port")}
SET_LISTS = {"finalizers"}


def _merge_key(field, items):
    key = MERGE_KEYS.get(field)
    if isinstance(key, tuple):
        for k in key:
            if all(isinstance(i, dict) and k in i for i in items):
                return k
        return None
    return key


def _merge_list(field, target, patch, order):
    if field in SET_LISTS and all(not isinstance(x, (dict, list)) for x in patch):
        out = list(target) if isinstance(target, list) else []
        return out + [x for x in patch if x not in out]
    if not isinstance(target, list) or not all(isinstance(i, dict) for i in patch + target):
        return copy.deepcopy(patch)
    key = _merge_key(field, patch + target)
    if key is None:
        return copy.deepcopy(patch)
    out = [copy.deepcopy(i) for i in target]
    for item in patch:
        idx = next((n for n, cur in enumerate(out) if cur.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
            continue
        if idx is None:
            out.append(strategic_merge_patch({}, item))
        else:
            out[idx] = strategic_merge_patch(out[idx], item)
    if isinstance(order, list):
        rank = {o.get(key) if isinstance(o, dict) else o: n for n, o in enumerate(order)}
        out.sort(key=lambda i: rank.get(i.get(key), len(rank)))
    return out


def strategic_merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(out.get(name), list):
                out[name] = [x for x in out[name] if x not in value]
            continue
        if value is None:
            out.pop(key, None)
            continue
        if isinstance(value, list):
            out[key] = _merge_list(key, out.get(key), value, patch.get("$setElementOrder/" + key))
            continue
        merged = strategic_merge_patch(out.get(key), value)
        if merged is None:
            out.pop(key, None)
        else:
            out[key] = merged
    if isinstance(retain, list):
        for key in list(out):
            if key not in retain:
                del out[key]
    return out


def _unescape(token):
    return token.replace("~1", "/").replace("~0", "~")


def _parse_pointer(ptr):
    if ptr == "":
        return []
    if not ptr.startswith("/"):
        raise PatchError("invalid JSON pointer \"%s\"" % ptr)
    return [_unescape(t) for t in ptr[1:].split("/")]


def _index(container, token, for_add):
    if token == "-" and for_add:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
        raise PatchError("invalid array index \"%s\"" % token)
    idx = int(token)
    limit = len(container) if for_add else len(container) - 1
    if idx > limit:
        raise PatchError("array index %d out of range" % idx)
    return idx


def _get(doc, tokens):
    cur = doc
    for t in tokens:
        if isinstance(cur, dict):
            if t not in cur:
                raise PatchError("path not found: /%s" % "/".join(tokens))
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_index(cur, t, False)]
        else:
            raise PatchError("path not found: /%s" % "/".join(tokens))
    return cur


def _add(doc, tokens, value):
    if not tokens:
        return value
    parent = _get(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, True), value)
    else:
        raise PatchError("cannot add to a scalar")
    return doc


def _remove(doc, tokens):
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _get(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError("path not found: /%s" % "/".join(tokens))
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, False))
    raise PatchError("cannot remove from a scalar")


def json_patch(doc, ops):
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be an array of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError("invalid operation %r" % (op,))
        kind = op["op"]
        path = _parse_pointer(op["path"])
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError("operation %s needs a value" % kind)
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            if not path:
                doc = copy.deepcopy(op["value"])
            else:
                _remove(doc, path)
                doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            if "from" not in op:
                raise PatchError("operation %s needs from" % kind)
            src = _parse_pointer(op["from"])
            value = copy.deepcopy(_get(doc, src))
            if kind == "move":
                _remove(doc, src)
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise PatchError("test operation failed at %s" % op["path"])
        else:
            raise PatchError("unknown operation \"%s\"" % kind)
    return doc
