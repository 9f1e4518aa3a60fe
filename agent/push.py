"""The HTTP :class:`~agent.sink.Sink`: ships an agent's messages to the syncer.

The wire format is specified in :mod:`agent.protocol`. Each call is one request that
returns when the syncer has committed it; HTTP answers map to the sink exceptions:

* connection failures, timeouts, 5xx other than 503, 401/403/404 -> ``SinkUnavailable``
  (401/403/404 are configuration problems an operator fixes without restarting agents);
* 429 and 503 -> ``SinkBusy`` with the ``Retry-After`` delay;
* 409 ``SnapshotLost`` or ``CheckpointMismatch`` -> ``SnapshotLost``;
* other 4xx -> ``SinkRejected``.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import ipaddress
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from agent import protocol
from agent.events import Change, KubeObject, ResourceType
from agent.sink import SinkBusy, SinkRejected, SinkUnavailable, SnapshotLost

# Level 1 compresses Kubernetes JSON about 8:1 (level 5: 11:1) at half the CPU: the agent runs
# inside member clusters, where its CPU is the scarcer resource.
GZIP_LEVEL = 1
GZIP_IN_THREAD = 256 * 1024  # compress big bodies off the event loop
BYTESIO_ABOVE = 512 * 1024
DEFAULT_RETRY_AFTER = 1.0
_UNAVAILABLE = frozenset({401, 403, 404})


class HttpSink:
    """A :class:`agent.sink.Sink` speaking :mod:`agent.protocol` to a syncer."""

    def __init__(
        self,
        *,
        base_url: str,
        cluster: str,
        token: str,
        timeout: float = 60.0,
        ssl: bool | Any = True,
        compress: bool | None = None,
    ) -> None:
        """``compress`` defaults to gzip unless the syncer is on this machine (a loopback
        address), where compressing would only spend CPU both ends share."""
        self.base_url = base_url.rstrip("/")
        self._compress = not _is_loopback(self.base_url) if compress is None else compress
        self.cluster = cluster
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10.0)
        self._ssl = ssl
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpSink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    # --- the Sink protocol -------------------------------------------------------------

    async def checkpoints(self) -> dict[str, str]:
        body = await self._call("GET", protocol.checkpoints_path(self.cluster), None)
        found = body.get("checkpoints") or {}
        if not isinstance(found, dict):
            raise SinkUnavailable("checkpoints answer is not a mapping")
        return {str(k): str(v) for k, v in found.items() if v}

    async def snapshot_start(self, rtype: ResourceType) -> str:
        body = await self._call(
            "POST", protocol.snapshots_path(self.cluster), protocol.snapshot_start_body(rtype)
        )
        try:
            return protocol.required_str(body, "snapshot")
        except protocol.ProtocolError as exc:
            raise SinkUnavailable(f"bad snapshot answer: {exc}") from exc

    async def snapshot_page(self, rtype: ResourceType, snapshot_id: str, items: list[KubeObject]) -> None:
        path = protocol.snapshot_pages_path(self.cluster, snapshot_id)
        await self._call("POST", path, protocol.snapshot_page_body(rtype, items))

    async def snapshot_end(
        self, rtype: ResourceType, snapshot_id: str, *, resource_version: str, count: int
    ) -> None:
        path = protocol.snapshot_end_path(self.cluster, snapshot_id)
        body = protocol.snapshot_end_body(rtype, resource_version=resource_version, count=count)
        await self._call("POST", path, body)

    async def changes(
        self, rtype: ResourceType, changes: list[Change], *, resource_version: str, after: str | None = None
    ) -> None:
        body = protocol.changes_body(rtype, changes, resource_version=resource_version, after=after)
        await self._call("POST", protocol.changes_path(self.cluster), body)

    async def remove_type(self, rtype: ResourceType) -> None:
        path = protocol.remove_type_path(self.cluster)
        await self._call("POST", path, protocol.remove_type_body(rtype))

    # --- transport ---------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        headers = dict(self._headers)
        data: bytes | io.BytesIO | None = None
        if body is not None:
            data = await _encode(body, headers, compress=self._compress)
            if len(data) > BYTESIO_ABOVE:
                data = io.BytesIO(data)  # aiohttp warns that big raw bytes block the loop
        try:
            async with self.session.request(
                method, self.base_url + path, data=data, headers=headers
            ) as response:
                raw = await response.read()
                return _answer(response, raw)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SinkUnavailable(f"{method} {path}: {exc!r}") from exc


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _encode(body: dict[str, Any], headers: dict[str, str], *, compress: bool) -> bytes:
    data = orjson.dumps(body)
    headers["Content-Type"] = "application/json"
    if not compress or len(data) <= protocol.GZIP_MIN:
        return data
    headers["Content-Encoding"] = "gzip"
    if len(data) > GZIP_IN_THREAD:
        return await asyncio.to_thread(gzip.compress, data, GZIP_LEVEL)
    return gzip.compress(data, GZIP_LEVEL)


def _answer(response: aiohttp.ClientResponse, raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        body = {"message": raw[:500].decode(errors="replace")}
    if not isinstance(body, dict):
        body = {"message": str(body)[:500]}
    status = response.status
    if status < 400:
        return body
    message = f"{status} {body.get('reason') or response.reason}: {body.get('message', '')}"
    if status in (429, 503):
        raise SinkBusy(message, retry_after=_retry_after(response))
    if status == 409 and body.get("reason") in (protocol.SNAPSHOT_LOST, protocol.CHECKPOINT_MISMATCH):
        raise SnapshotLost(message)
    if status >= 500 or status in _UNAVAILABLE:
        raise SinkUnavailable(message)
    raise SinkRejected(message, status=status)


def _retry_after(response: aiohttp.ClientResponse) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return DEFAULT_RETRY_AFTER
