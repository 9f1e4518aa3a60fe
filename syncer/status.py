"""Every error of the syncer's listeners as a Kubernetes ``Status`` with the right code.

One middleware maps what the handlers raise to answers: the agent's protocol errors
(``agent.protocol``), the store's refusals, and the store being unreachable. Database error
text is logged, never sent: a 503 says only that the store is unavailable.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from agent import protocol
from kube.status import status_body
from syncer.guards import FenceLost
from syncer.ingest import CheckpointMismatch, SnapshotLost
from syncer.quota import QuotaExceeded
from syncer.registry import RegistryError
from syncer.sink import TRANSIENT, UNAVAILABLE
from syncer.validate import BadInput

log = logging.getLogger(__name__)

RETRY_AFTER_DOWN = "2"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(Exception):
    """A request refused with ``code`` and Kubernetes ``reason`` (e.g. 413
    RequestEntityTooLarge, 429 TooManyRequests with ``Retry-After``)."""

    def __init__(self, code: int, reason: str, message: str, *, headers: dict[str, str] | None = None,
                 close: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.headers = headers
        self.close = close  # the rest of the request was not read: do not reuse the connection


def status(code: int, reason: str, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(status_body(code, reason, message)), status=code,
                        content_type="application/json", headers=headers)


def ok(body: dict[str, Any], *, code: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=code, content_type="application/json")


@web.middleware
async def errors_as_status(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return status(exc.status, exc.reason.replace(" ", ""), exc.text or exc.reason)
    except Refused as exc:
        answer = status(exc.code, exc.reason, str(exc), headers=exc.headers)
        if exc.close:
            answer.force_close()
        return answer
    except RegistryError as exc:
        return status(exc.code, exc.reason, str(exc))
    except (BadInput, protocol.ProtocolError) as exc:
        return status(400, "BadRequest", str(exc))
    except QuotaExceeded as exc:
        return status(403, "Forbidden", str(exc))
    except SnapshotLost as exc:
        return status(409, protocol.SNAPSHOT_LOST, str(exc))
    except CheckpointMismatch as exc:
        return status(409, protocol.CHECKPOINT_MISMATCH, str(exc))
    except FenceLost as exc:
        return status(404, "NotFound", str(exc))
    except (*UNAVAILABLE, *TRANSIENT) as exc:
        log.warning("store unavailable", extra={"path": request.path, "error": str(exc)})
        return status(503, "ServiceUnavailable", "the store is unavailable; retry later",
                      headers={"Retry-After": RETRY_AFTER_DOWN})
    except asyncpg.DataError as exc:  # e.g. text PostgreSQL cannot store: about the data, not the store
        return status(400, "BadRequest", f"the store refused the data: {exc}")
    except Exception as exc:
        log.exception("request failed", extra={"path": request.path})
        return status(500, "InternalError", f"internal error: {type(exc).__name__}")
