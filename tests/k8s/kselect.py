"""Label and field selectors with the Kubernetes API's grammar and semantics.

Label selectors: comma-separated requirements, each one of
  key=value  key==value  key!=value  key in (a,b)  key notin (a,b)  key  !key
A "!=" or "notin" requirement also matches objects that lack the key.
Field selectors: key=value, key==value, key!=value over a fixed set of fields
per resource; anything else is a BadRequest, as on a real API server.
"""

import re

_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


class SelectorError(ValueError):
    pass


def _split_top(text):
    """Splits on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError("unbalanced parentheses")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise SelectorError("unbalanced parentheses")
    parts.append("".join(cur))
    return parts


def _check_key(key):
    if not key or len(key) > 316 or not _KEY.match(key):
        raise SelectorError("invalid label key \"%s\"" % key)


def _check_value(value):
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError("invalid label value: \"%s\"" % value)


def valid_key(key):
    return 0 < len(key) <= 316 and bool(_KEY.match(key))


def valid_value(value):
    return len(value) <= 63 and bool(_VALUE.match(value))


def parse_labels(text):
    """Returns a list of (key, op, values) requirements; op in
    'in', 'notin', 'exists', '!exists', '=', '!='."""
    reqs = []
    if text is None or text.strip() == "":
        return reqs
    for raw in _split_top(text):
        part = raw.strip()
        if not part:
            raise SelectorError("empty requirement in label selector \"%s\"" % text)
        m = re.match(r"^(\S+)\s+(in|notin)\s*\((.*)\)$", part)
        if m:
            key, op, vals = m.group(1), m.group(2), m.group(3)
            _check_key(key)
            if not vals.strip():
                raise SelectorError("for 'in', 'notin' operators, values set can't be empty")
            values = [v.strip() for v in vals.split(",")]
            for v in values:
                _check_value(v)
            reqs.append((key, op, set(values)))
            continue
        if part.startswith("!"):
            key = part[1:].strip()
            _check_key(key)
            reqs.append((key, "!exists", None))
            continue
        for op in ("==", "!=", "="):
            if op in part:
                key, value = part.split(op, 1)
                key, value = key.strip(), value.strip()
                _check_key(key)
                _check_value(value)
                reqs.append((key, "!=" if op == "!=" else "=", value))
                break
        else:
            _check_key(part)
            reqs.append((part, "exists", None))
    return reqs


def labels_match(reqs, labels):
    labels = labels or {}
    for key, op, val in reqs:
        have = key in labels
        cur = labels.get(key)
        if op == "=" and (not have or cur != val):
            return False
        if op == "!=" and have and cur == val:
            return False
        if op == "in" and (not have or cur not in val):
            return False
        if op == "notin" and have and cur in val:
            return False
        if op == "exists" and not have:
            return False
        if op == "!exists" and have:
            return False
    return True


def _field_value(obj, field):
    cur = obj
    for part in field.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_fields(text, allowed):
    """Returns a list of (field, op, value); allowed is the set of field
    names the resource supports."""
    reqs = []
    if text is None or text.strip() == "":
        return reqs
    for raw in text.split(","):
        part = raw.strip()
        for op in ("==", "!=", "="):
            if op in part:
                field, value = part.split(op, 1)
                field = field.strip()
                if field not in allowed:
                    raise SelectorError("field label not supported: %s" % field)
                reqs.append((field, "!=" if op == "!=" else "=", value.strip()))
                break
        else:
            raise SelectorError("invalid selector: '%s'; can't understand '%s'" % (text, part))
    return reqs


def fields_match(reqs, obj):
    for field, op, value in reqs:
        cur = _field_value(obj, field)
        if op == "=" and cur != value:
            return False
        if op == "!=" and cur == value:
            return False
    return True
