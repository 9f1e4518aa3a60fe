"""Response bodies: lists assembled from PostgreSQL's JSON text, Tables with a CLUSTER column.

Objects leave PostgreSQL as JSON text with their cluster annotations already added
(``query.object_json``), so a plain list is spliced together as bytes: no object is
parsed or re-serialized in Python. Only Table and metadata-only shapes parse objects, one
page at a time: every shape is written as a prefix, pages of array members, and a suffix,
so a list of any size and shape can be streamed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from apiserver.catalog import ServedType
from kube.media import PARTIAL, PARTIAL_LIST, TABLE
from kube.tables import PrinterColumn, TablePrinter, printer_for

JSON = dict[str, Any]
CLUSTER_COLUMN = ("Cluster", "string", 0)


def list_meta(*, resource_version: int, continue_token: str | None, remaining: int | None = None) -> JSON:
    meta: JSON = {"resourceVersion": str(resource_version)}
    if continue_token:
        meta["continue"] = continue_token
    if remaining is not None:
        meta["remainingItemCount"] = remaining
    return meta


def list_prefix(rtype: ServedType, meta: JSON) -> bytes:
    head = orjson.dumps({"kind": f"{rtype.kind}List", "apiVersion": rtype.group_version, "metadata": meta})
    return head[:-1] + b',"items":['


LIST_SUFFIX = b"]}"


def plain_list(rtype: ServedType, meta: JSON, items: Sequence[str]) -> bytes:
    return list_prefix(rtype, meta) + ",".join(items).encode() + LIST_SUFFIX


class ClusterTable:
    """kubectl's columns for a type, with the object's cluster first."""

    def __init__(self, rtype: ServedType, *, printer_columns: Sequence[PrinterColumn] = ()) -> None:
        self._printer: TablePrinter = printer_for(group=rtype.group, resource=rtype.resource,
                                                  printer_columns=printer_columns)

    def column_definitions(self) -> list[JSON]:
        cluster = {"name": CLUSTER_COLUMN[0], "type": CLUSTER_COLUMN[1], "format": "",
                   "description": "The member cluster the object is in", "priority": 0}
        return [cluster, *self._printer.column_definitions()]

    def row(self, cluster: str, obj: JSON, include: str) -> JSON:
        row = self._printer.row(obj, include)
        row["cells"] = [cluster, *row["cells"]]
        return row

    def table(self, rows: Sequence[tuple[str, JSON]], meta: JSON, include: str) -> JSON:
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                "columnDefinitions": self.column_definitions(),
                "rows": [self.row(cluster, obj, include) for cluster, obj in rows]}


def partial(obj: JSON) -> JSON:
    return {"kind": PARTIAL, "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def shaped_prefix(shape: str, rtype: ServedType, meta: JSON, *, table: ClusterTable) -> bytes:
    """A list in the negotiated shape up to its array's opening bracket."""
    if not shape:
        return list_prefix(rtype, meta)
    if shape == TABLE:
        head = orjson.dumps({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                             "columnDefinitions": table.column_definitions()})
        return head[:-1] + b',"rows":['
    head = orjson.dumps({"kind": PARTIAL_LIST, "apiVersion": "meta.k8s.io/v1", "metadata": meta})
    return head[:-1] + b',"items":['


def shaped_items(shape: str, rows: Sequence[tuple[str, str]], *, include: str, table: ClusterTable) -> bytes:
    """The array members for ``rows`` ((cluster, object JSON text)), comma separated: one
    page of a streamed list, or all of a whole one."""
    if not shape:
        return ",".join(text for _, text in rows).encode()
    if shape == TABLE:
        return b",".join(orjson.dumps(table.row(cluster, orjson.loads(text), include))
                         for cluster, text in rows)
    return b",".join(orjson.dumps(partial(orjson.loads(text))) for _, text in rows)


def shaped_list(shape: str, rtype: ServedType, meta: JSON, rows: Sequence[tuple[str, str]],
                *, include: str, table: ClusterTable) -> bytes:
    """A page in the negotiated shape; ``rows`` are (cluster, object JSON text)."""
    items = shaped_items(shape, rows, include=include, table=table)
    return shaped_prefix(shape, rtype, meta, table=table) + items + LIST_SUFFIX


def shaped_object(shape: str, cluster: str, text: str, *, include: str, table: ClusterTable) -> bytes:
    if not shape:
        return text.encode()
    obj = orjson.loads(text)
    if shape == TABLE:
        meta = {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion", "")}
        return orjson.dumps(table.table([(cluster, obj)], meta, include))
    return orjson.dumps(partial(obj))
