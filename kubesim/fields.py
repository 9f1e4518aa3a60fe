"""Server-side field validation (``?fieldValidation=Strict|Warn|Ignore``) of built-in types.

kube-apiserver decodes a create, update or patch body into the type's Go struct; a field the
struct does not declare is an "unknown field". ``Strict`` refuses the write with 400
BadRequest, ``Warn`` writes and answers a ``Warning`` header per field, ``Ignore`` says
nothing (https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation).
kubectl sends ``Strict`` by default since 1.27. The refusal reads, for a create::

    Deployment in version "v1" cannot be handled as a Deployment: strict decoding error:
    unknown field "spec.template.spec.containers[0].foo"

The fields each type declares are read from the Kubernetes Python client's models (generated
from the same OpenAPI document kube-apiserver serves), imported on the first write that asks
for validation. Deviations, on purpose: kubesim keeps unknown fields it was not asked to
refuse (kube-apiserver drops them), checks nothing without the parameter (kube-apiserver
then warns), does not check value types, and does not check custom resources against their
CRD's schema.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Literal

from kube.resources import ResourceType
from kubesim import errors

Directive = Literal["", "Ignore", "Warn", "Strict"]
DIRECTIVES = ("Ignore", "Warn", "Strict")
_LIST = re.compile(r"^(?:List\[|list\[)(.+)\]$")
_DICT = re.compile(r"^(?:Dict\[str, |dict\(str, )(.+)[\])]$")
_SCALARS = frozenset({"str", "int", "float", "bool", "datetime", "date", "object", "bytearray"})
MAX_REPORTED = 100  # unknown fields named in one refusal, at most


def directive(query: Any, options_kind: str) -> Directive:
    """The request's ``fieldValidation``, or a 422 as kube-apiserver validates its options."""
    value = str(query.get("fieldValidation", ""))
    if value in ("", *DIRECTIVES):
        return value  # type: ignore[return-value]  # one of the literals, checked above
    supported = ", ".join(f'"{d}"' for d in sorted(DIRECTIVES))  # kube lists a sorted set
    message = f'Unsupported value: "{value}": supported values: {supported}'
    raise errors.invalid(options_kind, "", "meta.k8s.io", [("fieldValidation", message)])


@functools.cache
def _models() -> Any:
    import kubernetes.client.models as models  # heavy (about a second): only when asked

    return models


@functools.cache
def _fields(model: str) -> dict[str, str] | None:
    """A model's JSON field names and their declared types; None for an unknown model."""
    cls = getattr(_models(), model, None)
    if cls is None or not hasattr(cls, "attribute_map"):
        return None
    return {cls.attribute_map[attr]: kind for attr, kind in cls.openapi_types.items()}


def model_name(rtype: ResourceType) -> str | None:
    """The client model of a built-in type (``V1Deployment``); None for custom resources."""
    if rtype.crd_name:
        return None
    name = f"{rtype.version[:1].upper()}{rtype.version[1:]}{rtype.kind}"
    return name if _fields(name) is not None else None


def unknown_fields(rtype: ResourceType, obj: Any) -> list[str]:
    """The paths of the fields in ``obj`` its type does not declare, in kube's notation."""
    model = model_name(rtype)
    found: list[str] = []
    if model is not None:
        _walk(model, obj, "", found)
    return found


def _walk(declared: str, value: Any, path: str, found: list[str]) -> None:
    if len(found) >= MAX_REPORTED or value is None or declared in _SCALARS:
        return
    if (match := _LIST.match(declared)) is not None:
        if isinstance(value, list):
            for index, item in enumerate(value):
                _walk(match[1], item, f"{path}[{index}]", found)
        return
    if (match := _DICT.match(declared)) is not None:
        if isinstance(value, dict):
            for key, item in value.items():
                _walk(match[1], item, f"{path}[{key}]", found)
        return
    fields = _fields(declared)
    if fields is None or not isinstance(value, dict):
        return
    for key, item in value.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            found.append(where)
        else:
            _walk(fields[key], item, where, found)


def check(rtype: ResourceType, obj: Any, mode: Directive, *, decoding: bool) -> list[str]:
    """Apply ``mode`` to ``obj``: raise the 400 of ``Strict``, or return ``Warn``'s warnings.

    ``decoding``: the body is an object being decoded (create, update), whose refusal names
    the kind as kube's decoder does; otherwise a patch's result, refused in the patcher's words.
    """
    if mode not in ("Strict", "Warn"):
        return []
    unknown = unknown_fields(rtype, obj)
    if not unknown:
        return []
    named = [f'unknown field "{path}"' for path in unknown]
    if mode == "Warn":
        return named
    reason = f"strict decoding error: {', '.join(named)}"
    if decoding:
        version = rtype.version
        reason = f'{rtype.kind} in version "{version}" cannot be handled as a {rtype.kind}: {reason}'
    raise errors.bad_request(reason)


def warning_header(warnings: list[str]) -> list[tuple[str, str]]:
    """``Warning: 299 - "text"`` headers (RFC 7234 section 5.5, as kube-apiserver writes them)."""
    return [("Warning", '299 - "{}"'.format(w.replace("\\", "\\\\").replace('"', '\\"')))
            for w in warnings]
