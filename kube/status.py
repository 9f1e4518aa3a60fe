"""Kubernetes ``Status`` bodies: how every failure is answered.

The wire shape follows ``metav1.Status`` as kube-apiserver writes it
(k8s.io/apimachinery/pkg/api/errors): ``kind: Status``, ``status: Failure``, ``message``,
``reason``, optional ``details``, and ``code`` equal to the HTTP status.
"""

from __future__ import annotations

from typing import Any

import orjson

JSON = dict[str, Any]

# The reason kube-apiserver gives for each status code it answers (metav1.StatusReason).
REASONS: dict[int, str] = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    405: "MethodNotAllowed", 406: "NotAcceptable", 408: "Timeout", 409: "Conflict", 410: "Expired",
    413: "RequestEntityTooLarge", 415: "UnsupportedMediaType", 422: "Invalid",
    429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}


def status_body(code: int, reason: str, message: str, details: JSON | None = None) -> JSON:
    body: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


class StatusError(Exception):
    """An API failure that is answered as a ``Status`` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: JSON | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}
        # ListMeta.continue of the Status, set when a continue token expired.
        self.list_continue: str | None = None

    def status(self) -> JSON:
        body = status_body(self.code, self.reason, self.message, self.details)
        if self.list_continue:
            body["metadata"] = {"continue": self.list_continue}
        return body

    def body(self) -> bytes:
        return orjson.dumps(self.status())
