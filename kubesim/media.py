"""Rendering objects and lists in the shape a client negotiated (``kube.media``)."""

from __future__ import annotations

from typing import Any

from kube.media import PARTIAL, PARTIAL_LIST, TABLE, negotiate
from kube.resources import ResourceType
from kube.tables import TablePrinter, printer_for

JSON = dict[str, Any]


def _printer(rtype: ResourceType) -> TablePrinter:
    return printer_for(group=rtype.group, resource=rtype.resource, printer_columns=rtype.printer_columns)


def partial(obj: JSON) -> JSON:
    return {"kind": PARTIAL, "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def render_object(shape: str, rtype: ResourceType, obj: JSON, include: str) -> JSON:
    """One object (a GET, or a watch event's object) in the negotiated shape."""
    if shape == TABLE:
        meta = {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion", "")}
        return _printer(rtype).table([obj], meta, include)
    if shape in (PARTIAL, PARTIAL_LIST):
        return partial(obj)
    return obj


def render_list(
    shape: str, rtype: ResourceType, objs: list[JSON], list_meta: JSON, include: str
) -> JSON:
    if shape == TABLE:
        return _printer(rtype).table(objs, list_meta, include)
    return {
        "kind": PARTIAL_LIST,
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "items": [partial(obj) for obj in objs],
    }


__all__ = ["PARTIAL", "PARTIAL_LIST", "TABLE", "negotiate", "render_list", "render_object"]
