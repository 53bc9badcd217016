"""Structural-schema pruning and defaulting of custom resources, as the API
server does with a CRD's openAPIV3Schema: fields the schema does not name are
dropped unless x-kubernetes-preserve-unknown-fields allows them, and missing
fields with a `default` get it (inside objects that exist). apiVersion, kind
and metadata at the root (and in x-kubernetes-embedded-resource objects) are
kept as they are."""

import copy

ROOT_KEEP = ("apiVersion", "kind", "metadata")


def _walk(value, schema, root=False):
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
        keep = ROOT_KEEP if root or schema.get("x-kubernetes-embedded-resource") else ()
        out = {}
        for k, v in value.items():
            if k in keep:
                out[k] = v
            elif props is not None and k in props:
                out[k] = _walk(v, props[k])
            elif isinstance(addl, dict):
                out[k] = _walk(v, addl)
            elif preserve or addl is True or (props is None and addl is None and
                                               schema.get("type") != "object"):
                out[k] = v
        for k, sub in (props or {}).items():
            if k not in out and isinstance(sub, dict) and "default" in sub:
                out[k] = _walk(copy.deepcopy(sub["default"]), sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_walk(v, schema["items"]) for v in value]
    return value


def prune_and_default(obj, schema):
    """Returns obj as the API server would store it under this schema."""
    if not isinstance(schema, dict) or not schema:
        return obj
    return _walk(obj, schema, root=True)
