"""What changed between two versions of an object: a JSON Patch (RFC 6902) and a unified
diff of their YAML.

The patch is correct rather than minimal: applied to the older version it gives exactly the
newer one (a test applies every patch of recorded histories). Objects are compared by
key; lists by index (what was added or removed at the end becomes ``add``/``remove``, a
change in the middle a ``replace`` of what differs). Values are compared with their JSON
types, so ``1``, ``1.0`` and ``true`` are all different. An object nested deeper than
Python's recursion allows is replaced whole.

https://www.rfc-editor.org/rfc/rfc6902 ; pointers: https://www.rfc-editor.org/rfc/rfc6901
"""

from __future__ import annotations

import difflib
from typing import Any

import yaml

JSON = Any
Op = dict[str, Any]

# The C emitter when PyYAML was built with libyaml: several times faster on large objects.
_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def pointer(path: list[str | int]) -> str:
    """A JSON Pointer: ``~`` and ``/`` in keys escaped (annotation keys hold slashes)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def equal(a: JSON, b: JSON) -> bool:
    """JSON equality: Python's ``==`` takes ``1 == 1.0 == True``."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _diff(a: JSON, b: JSON, path: list[str | int], ops: list[Op]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        ops.extend({"op": "remove", "path": pointer([*path, k])} for k in a if k not in b)
        for k, v in b.items():
            if k in a:
                _diff(a[k], v, [*path, k], ops)
            else:
                ops.append({"op": "add", "path": pointer([*path, k]), "value": v})
    elif isinstance(a, list) and isinstance(b, list):
        common = min(len(a), len(b))
        for i in range(common):
            _diff(a[i], b[i], [*path, i], ops)
        ops.extend({"op": "add", "path": pointer([*path, i]), "value": b[i]} for i in range(common, len(b)))
        # From the end, so that each index still names the element meant.
        ops.extend({"op": "remove", "path": pointer([*path, i])} for i in reversed(range(common, len(a))))
    elif not equal(a, b):
        ops.append({"op": "replace", "path": pointer(path), "value": b})


def json_patch(old: JSON, new: JSON) -> list[Op]:
    """The operations that turn ``old`` into ``new``."""
    ops: list[Op] = []
    try:
        _diff(old, new, [], ops)
    except RecursionError:
        return [{"op": "replace", "path": "", "value": new}]
    return ops


def creation_patch(new: JSON) -> list[Op]:
    """An object that did not exist before: RFC 6902 lets ``add`` at the root replace the
    whole document."""
    return [{"op": "add", "path": "", "value": new}]


def yaml_text(obj: JSON) -> str:
    """YAML as kubectl users read it: block style, keys sorted, ASCII only (anything else is
    escaped, so nothing from a member cluster reaches a terminal as a control sequence)."""
    if obj is None:
        return ""
    return yaml.dump(obj, Dumper=_DUMPER, sort_keys=True, default_flow_style=False, allow_unicode=False,
                     width=120)


def yaml_diff(old: JSON, new: JSON, *, old_label: str, new_label: str) -> str:
    """A unified diff of the two versions' YAML (``None``: the object did not exist)."""
    return text_diff(yaml_text(old), yaml_text(new), old_label=old_label, new_label=new_label)


def text_diff(old: str, new: str, *, old_label: str, new_label: str) -> str:
    """A unified diff of two texts (``yaml_text`` of two versions)."""
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), fromfile=old_label, tofile=new_label,
                                 lineterm="")
    return "".join(line + "\n" for line in lines)
