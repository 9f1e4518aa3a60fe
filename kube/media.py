"""Response shapes a client can ask for in ``Accept``.

https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables
and #alternate-representations-of-resources: ``as=Table`` (kubectl get) and
``as=PartialObjectMetadata`` / ``as=PartialObjectMetadataList`` (metadata-only
informers), all ``g=meta.k8s.io;v=v1``. Alternatives are comma separated and
ranked by ``q``; the plain ``application/json`` object is the fallback.
"""

from __future__ import annotations

TABLE = "Table"
PARTIAL = "PartialObjectMetadata"
PARTIAL_LIST = "PartialObjectMetadataList"
SHAPES = frozenset({TABLE, PARTIAL, PARTIAL_LIST})
JSON_TYPES = frozenset({"application/json", "application/*", "*/*"})


def negotiate(accept: str) -> str:
    """The preferred supported shape: "" (the object itself) or one of SHAPES."""
    best_q, best = -1.0, ""
    for alternative in accept.split(","):
        media, *raw = (part.strip() for part in alternative.split(";"))
        params = dict(p.split("=", 1) for p in raw if "=" in p)
        shape = params.get("as", "")
        if media not in JSON_TYPES:
            continue
        if shape and (shape not in SHAPES or params.get("g") != "meta.k8s.io"
                      or params.get("v") != "v1"):
            continue
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            continue
        if q > best_q:
            best_q, best = q, shape
    return best
