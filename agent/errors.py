"""Exceptions of the member-cluster API client, mapped from HTTP status codes.

Every exception raised by :mod:`agent.kubeclient` is a :class:`KubeClientError`. HTTP
errors carry the Kubernetes ``Status`` the server sent (``reason``, ``message``, ``code``),
so callers branch on classes (``Gone``, ``TooManyRequests``) instead of numbers; transport
failures are chained to the aiohttp exception that caused them.

See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions
for the meaning of 410 Gone (an expired resourceVersion or continue token).
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import aiohttp


class KubeClientError(Exception):
    """Anything that went wrong talking to the member cluster's API."""


class ApiConnectionError(KubeClientError):
    """The request did not get an HTTP answer (refused, reset, TLS, timeout)."""


class StreamInterrupted(ApiConnectionError):
    """A response that had started broke off (reset, truncated, silent for too long)."""


class InvalidResponse(KubeClientError):
    """The server answered with something that is not the JSON it promised."""


class ApiError(KubeClientError):
    """An HTTP error answer; ``status`` is the HTTP code, ``reason`` the Status reason."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        reason: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.details = details or {}

    def __str__(self) -> str:
        return f"{self.status} {self.reason or 'Error'}: {self.message}"


class Unauthorized(ApiError):
    """401: the credentials are missing, wrong or expired."""


class Forbidden(ApiError):
    """403: the credentials are valid but not allowed to do this."""


class NotFound(ApiError):
    """404: the path (resource type, namespace) does not exist (anymore)."""


class Gone(ApiError):
    """410: the resourceVersion or continue token is too old; list again."""


class TooManyRequests(ApiError):
    """429: the server asks to slow down for ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx: the server failed; retrying later may help."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    410: Gone,
    429: TooManyRequests,
}


def error_from_status(
    status_obj: Any, *, http_status: int | None = None, retry_after: float | None = None
) -> ApiError:
    """Build the exception for a Kubernetes ``Status`` object (from a response or ERROR event).

    ``http_status`` wins over the Status ``code`` when both exist: the HTTP layer is what
    the server committed to; a watch ERROR event only has the ``code``.
    """
    body = status_obj if isinstance(status_obj, dict) else {}
    code = http_status if http_status is not None else _int_or(body.get("code"), 500)
    message = str(body.get("message") or status_obj or "")
    reason = str(body.get("reason") or "")
    details = body.get("details") if isinstance(body.get("details"), dict) else None
    cls = _BY_STATUS.get(code) or (ServerError if code >= 500 else ApiError)
    if cls is TooManyRequests:
        return TooManyRequests(message, status=code, reason=reason, details=details, retry_after=retry_after)
    return cls(message, status=code, reason=reason, details=details)


def _int_or(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def connection_problem(exc: BaseException) -> str:
    """A transport failure in a few plain words on one line, such as ``connection refused by
    10.0.0.1:6443``: aiohttp's exceptions print as multi-line reprs of connection keys, which
    belong in debug logs, not in messages for people."""
    where, cause, host = "", exc, "name"
    if isinstance(exc, aiohttp.ClientConnectorError):
        where, cause, host = f"{exc.host}:{exc.port}", exc.os_error, str(exc.host)
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(cause, socket.gaierror):
        return f"cannot resolve host {host}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        return _at("TLS certificate not trusted", where) + _why_not_trusted(exc)
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return _at("TLS handshake failed", where)
    if isinstance(cause, ConnectionRefusedError):
        return _at("connection refused", where, by=True)
    if isinstance(exc, TimeoutError) or isinstance(cause, TimeoutError):
        return _at("timed out", where)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection"
    if isinstance(cause, ConnectionResetError):
        return _at("connection reset", where)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "response broken off"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL {exc.url}"
    if isinstance(cause, OSError) and cause.strerror:
        return _at(cause.strerror[:1].lower() + cause.strerror[1:], where)
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _why_not_trusted(exc: BaseException) -> str:
    """OpenSSL's reason (``unable to get local issuer certificate``, ``Hostname mismatch``)."""
    cause = exc.certificate_error if isinstance(exc, aiohttp.ClientConnectorCertificateError) else exc
    reason = getattr(cause, "verify_message", None)
    return f": {reason}" if isinstance(reason, str) and reason else ""


def _at(what: str, where: str, *, by: bool = False) -> str:
    if not where:
        return what
    return f"{what} by {where}" if by else f"{what} ({where})"
