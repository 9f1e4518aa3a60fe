"""An RFC 6902 applier written from the RFC for tests, independent of ``apiserver.patches``:
``add``, ``remove`` and ``replace``, each checked the way the RFC says."""

from __future__ import annotations

import copy
from typing import Any


class PatchFailed(ValueError):
    pass


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchFailed(f"not a JSON pointer: {pointer!r}")
    # RFC 6901: ~1 first, then ~0, so that "~01" stays "~1".
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, *, adding: bool) -> int:
    if token == "-" and adding:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchFailed(f"bad array index {token!r}")
    index = int(token)
    if index > len(container) or (index == len(container) and not adding):
        raise PatchFailed(f"array index {index} out of range")
    return index


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchFailed(f"no member {token!r}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, adding=False)]
        else:
            raise PatchFailed("path goes through a scalar")
    return node


def apply_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    doc = copy.deepcopy(doc)
    for op in ops:
        tokens = _tokens(op["path"])
        if not tokens:
            if op["op"] in ("add", "replace"):
                doc = copy.deepcopy(op["value"])
                continue
            raise PatchFailed(f"{op['op']} of the whole document")
        parent, last = _parent(doc, tokens), tokens[-1]
        if isinstance(parent, dict):
            if op["op"] != "add" and last not in parent:
                raise PatchFailed(f"{op['op']}: no member {last!r}")
            if op["op"] == "remove":
                del parent[last]
            else:
                parent[last] = copy.deepcopy(op["value"])
        elif isinstance(parent, list):
            index = _index(parent, last, adding=op["op"] == "add")
            if op["op"] == "add":
                parent.insert(index, copy.deepcopy(op["value"]))
            elif op["op"] == "remove":
                del parent[index]
            else:
                parent[index] = copy.deepcopy(op["value"])
        else:
            raise PatchFailed("target's parent is a scalar")
    return doc
