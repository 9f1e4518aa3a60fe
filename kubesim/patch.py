"""The three PATCH flavours kubectl and client libraries send.

- ``application/merge-patch+json``: RFC 7386.
- ``application/json-patch+json``: RFC 6902.
- ``application/strategic-merge-patch+json``: Kubernetes' strategic merge
  (https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/):
  maps merge, ``null`` deletes, lists with a merge key (``containers`` by
  ``name``, ``ports`` by ``containerPort``, ...) merge item by item, and the
  ``$patch``, ``$setElementOrder/<list>``, ``$deleteFromPrimitiveList/<list>``
  and ``$retainKeys`` directives kubectl apply emits are honoured. The merge key
  is looked up by list field name, which covers the built-in types kubectl
  apply patches.
"""

from __future__ import annotations

import copy
from typing import Any

from kubesim.errors import StatusError, bad_request, unsupported_media_type

JSON = dict[str, Any]

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"

MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "ports": "containerPort",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "secrets": "name",
}
# Lists of scalars merged as sets (patchStrategy=merge without a key).
MERGE_SETS = frozenset({"finalizers"})


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> Any:
    cur = doc
    for part in parts[:-1]:
        cur = cur[int(part)] if isinstance(cur, list) else cur[part]
    return cur


def _get(doc: Any, parts: list[str]) -> Any:
    cur = doc
    for part in parts:
        cur = cur[int(part)] if isinstance(cur, list) else cur[part]
    return cur


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _parent(doc, parts)
    last = parts[-1]
    if isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else int(last), value)
    else:
        parent[last] = value
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    parent = _parent(doc, parts)
    last = parts[-1]
    if isinstance(parent, list):
        return parent.pop(int(last))
    return parent.pop(last)


def _json_op(doc: Any, op: JSON) -> Any:
    kind = op.get("op")
    parts = _pointer(str(op.get("path", "")))
    if kind == "add":
        return _add(doc, parts, copy.deepcopy(op.get("value")))
    if kind == "remove":
        _remove(doc, parts)
        return doc
    if kind == "replace":
        _remove(doc, parts) if parts else None
        return _add(doc, parts, copy.deepcopy(op.get("value")))
    if kind in ("move", "copy"):
        source = _pointer(str(op.get("from", "")))
        value = _remove(doc, source) if kind == "move" else copy.deepcopy(_get(doc, source))
        return _add(doc, parts, value)
    if kind == "test":
        if _get(doc, parts) != op.get("value"):
            raise StatusError(422, "Invalid", f"the json patch test failed at {op.get('path')}")
        return doc
    raise bad_request(f"unexpected json patch operation {kind!r}")


def json_patch(target: JSON, ops: Any) -> Any:
    """RFC 6902 JSON Patch; a failing operation is a 422 like kube's."""
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")
    doc: Any = copy.deepcopy(target)
    for op in ops:
        try:
            doc = _json_op(doc, op)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise StatusError(
                422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
            ) from exc
    return doc


def _merge_keyed_list(field: str, target: list[Any], patch: list[Any], key: str) -> list[Any]:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [i for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    result = [copy.deepcopy(i) for i in target]
    index = {i.get(key): n for n, i in enumerate(result) if isinstance(i, dict)}
    for item in patch:
        if not isinstance(item, dict):
            continue
        ident = item.get(key)
        if item.get("$patch") == "delete":
            if ident in index:
                result[index[ident]] = None
            continue
        if ident in index and result[index[ident]] is not None:
            result[index[ident]] = strategic_merge(result[index[ident]], item)
        else:
            index[ident] = len(result)
            result.append(strategic_merge({}, item))
    return [i for i in result if i is not None]


def _order(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else item

    wanted = [ident(o) if key and isinstance(o, dict) else o for o in order]
    rank = {w: n for n, w in enumerate(wanted)}
    listed = sorted((i for i in items if ident(i) in rank), key=lambda i: rank[ident(i)])
    return listed + [i for i in items if ident(i) not in rank]


def _merge_list(field: str, target: Any, patch: list[Any]) -> list[Any]:
    key = MERGE_KEYS.get(field)
    if key is not None and isinstance(target, list):
        return _merge_keyed_list(field, target, patch, key)
    if key is not None:
        return _merge_keyed_list(field, [], patch, key)
    if field in MERGE_SETS and isinstance(target, list):
        return target + [i for i in patch if i not in target]
    return copy.deepcopy(patch)


def _apply_directives(result: JSON, patch: JSON) -> None:
    for name, value in patch.items():
        if name.startswith("$deleteFromPrimitiveList/"):
            field = name.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [i for i in result[field] if i not in value]
    for name, value in patch.items():
        if name.startswith("$setElementOrder/"):
            field = name.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = _order(result[field], value, MERGE_KEYS.get(field))
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        for name in [k for k in result if k not in retain]:
            del result[name]


def strategic_merge(target: Any, patch: Any) -> Any:
    """Strategic merge patch of ``patch`` onto ``target``."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if name.startswith("$"):
            continue
        if value is None:
            result.pop(name, None)
        elif isinstance(value, list):
            result[name] = _merge_list(name, result.get(name), value)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(name), value)
            if merged is None:
                result.pop(name, None)
            else:
                result[name] = merged
        else:
            result[name] = value
    _apply_directives(result, patch)
    return result


def apply_patch(content_type: str, target: JSON, patch: Any, custom: bool) -> Any:
    """Dispatch on the request's Content-Type (parameters ignored).

    Custom resources have no strategic merge metadata; kube-apiserver answers
    415 for strategic merge on them, which makes kubectl use merge patch.
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if media == MERGE:
        return merge_patch(target, patch)
    if media == JSON_PATCH:
        return json_patch(target, patch)
    if media == STRATEGIC and not custom:
        return strategic_merge(target, patch)
    raise unsupported_media_type(media)
