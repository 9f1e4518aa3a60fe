"""Kubernetes ``Status`` failures.

The wire shape follows ``metav1.Status`` as kube-apiserver writes it
(https://kubernetes.io/docs/reference/using-api/api-concepts/#api-verbs and
k8s.io/apimachinery/pkg/api/errors): ``kind: Status``, ``status: Failure``,
``message``, ``reason``, ``details`` and ``code`` equal to the HTTP status.
"""

from __future__ import annotations

from typing import Any

from kube.resources import type_key
from kube.status import StatusError as StatusError  # re-exported: kubesim raises it

JSON = dict[str, Any]


def _details(kind: str, name: str, group: str) -> JSON:
    details: JSON = {"name": name, "kind": kind}
    if group:
        details["group"] = group
    return details


def not_found(resource: str, name: str, group: str = "") -> StatusError:
    qualified = type_key(group, resource)
    return StatusError(404, "NotFound", f'{qualified} "{name}" not found', _details(resource, name, group))


def already_exists(resource: str, name: str, group: str = "") -> StatusError:
    qualified = type_key(group, resource)
    return StatusError(
        409,
        "AlreadyExists",
        f'{qualified} "{name}" already exists',
        _details(resource, name, group),
    )


def conflict(resource: str, name: str, group: str = "") -> StatusError:
    qualified = type_key(group, resource)
    message = (
        f'Operation cannot be fulfilled on {qualified} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )
    return StatusError(409, "Conflict", message, _details(resource, name, group))


def invalid(kind: str, name: str, group: str, causes: list[tuple[str, str]]) -> StatusError:
    """422 Invalid; ``causes`` are (field, message) pairs."""
    text = ", ".join(f"{field}: {msg}" for field, msg in causes)
    details = _details(kind, name, group)
    details["causes"] = [
        {"reason": "FieldValueInvalid", "message": msg, "field": field} for field, msg in causes
    ]
    qualified = f"{kind}.{group}" if group else kind
    return StatusError(422, "Invalid", f'{qualified} "{name}" is invalid: {text}', details)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def expired(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def too_large_resource_version(requested: int, current: int) -> StatusError:
    """504 as ``storage.NewTooLargeResourceVersionError`` builds it.

    kube-apiserver waits up to a few seconds for the watch cache to catch up,
    then answers a Timeout with a ``ResourceVersionTooLarge`` cause
    (https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions).
    """
    details: JSON = {
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1,
    }
    message = f"Too large resource version: {requested}, current: {current}"
    return StatusError(504, "Timeout", message, details)


def method_not_allowed(message: str = "the server does not allow this method") -> StatusError:
    return StatusError(405, "MethodNotAllowed", message)


def unsupported_body_type(content_type: str, *, accepted: tuple[str, ...]) -> StatusError:
    """A create or update body in a format the server does not read (kube-apiserver's
    wording for an input serializer it cannot negotiate)."""
    return StatusError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}; got {content_type}",
    )


def unsupported_media_type(content_type: str) -> StatusError:
    return StatusError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, "
        f"application/strategic-merge-patch+json; got {content_type}",
    )
