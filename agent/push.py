"""The HTTP :class:`~agent.sink.Sink`: ships an agent's messages to the syncer.

The wire format is specified in :mod:`agent.protocol`. Each call is one request that
returns when the syncer has committed it; HTTP answers map to the sink exceptions:

* connection failures, timeouts, 5xx other than 503, 401/404 -> ``SinkUnavailable``
  (401/404 are configuration problems an operator fixes without restarting agents);
* 429 and 503 -> ``SinkBusy`` with the ``Retry-After`` delay;
* 409 ``SnapshotLost`` or ``CheckpointMismatch`` -> ``SinkNeedsSnapshot``;
* other 4xx (a refused request, 403 exceeded quota, 413) -> ``SinkRejected``.

Pages and batches go in as many bodies as the syncer's limits require (:mod:`agent.packing`).
A split batch remembers how far it got: the pipeline retries a failed call with the same
batch, and the parts already committed are not sent again (their checkpoints would no
longer follow the committed one).

A body is never copied whole: uncompressed, its parts (the objects' own JSON) are written
in chunks of at most :data:`CHUNK` bytes with their total as ``Content-Length``; compressed,
they are fed to one compressor, whose output is about an eighth of the body.
"""

from __future__ import annotations

import asyncio
import ipaddress
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import orjson

from agent import packing, protocol
from agent.errors import connection_problem
from agent.events import AnyObject, RawObject, RelistReason, WatchEvent
from agent.sink import SinkBusy, SinkNeedsSnapshot, SinkRejected, SinkUnavailable
from kube.resources import ResourceType

# Level 1 compresses Kubernetes JSON about 8:1 (level 5: 11:1) at half the CPU: the agent runs
# inside member clusters, where its CPU is the scarcer resource.
GZIP_LEVEL = 1
GZIP_IN_THREAD = 256 * 1024  # compress big bodies off the event loop
CHUNK = 64 * 1024  # bytes handed to the connection at once: what it may copy into its buffer
DEFAULT_RETRY_AFTER = 1.0
T = TypeVar("T")
_UNAVAILABLE = frozenset({401, 404})


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
        limits: packing.Limits = packing.DEFAULT_LIMITS,
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
        self._limits = limits
        # type key -> (after, resourceVersion, parts committed) of a split batch in progress
        self._progress: dict[str, tuple[str | None, str, int]] = {}

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

    async def snapshot_start(self, rtype: ResourceType, *, reason: RelistReason = "initial") -> str:
        body = await self._call(
            "POST", protocol.snapshots_path(self.cluster), protocol.snapshot_start_body(rtype, reason=reason)
        )
        try:
            return protocol.required_str(body, "snapshot")
        except protocol.ProtocolError as exc:
            raise SinkUnavailable(f"bad snapshot answer: {exc}") from exc

    async def snapshot_page(self, rtype: ResourceType, snapshot_id: str, items: Sequence[AnyObject]) -> None:
        path = protocol.snapshot_pages_path(self.cluster, snapshot_id)
        bodies = await _off_loop(_to_encode(items), lambda: packing.page_parts(rtype, items, self._limits))
        for body in bodies:
            await self._call("POST", path, body)  # a part sent again is a replay: harmless

    async def snapshot_end(
        self, rtype: ResourceType, snapshot_id: str, *, resource_version: str, count: int
    ) -> None:
        path = protocol.snapshot_end_path(self.cluster, snapshot_id)
        body = protocol.snapshot_end_body(rtype, resource_version=resource_version, count=count)
        await self._call("POST", path, body)

    async def changes(
        self, rtype: ResourceType, changes: list[WatchEvent], *, resource_version: str,
        after: str | None = None,
    ) -> None:
        bodies = await _off_loop(_to_encode([c.object for c in changes]), lambda: packing.change_bodies(
            rtype, changes, resource_version=resource_version, after=after, limits=self._limits))
        done = 0
        progress = self._progress.get(rtype.key)
        if progress is not None and progress[:2] == (after, resource_version):
            done = progress[2]
        for index in range(done, len(bodies)):
            await self._call("POST", protocol.changes_path(self.cluster), bodies[index].body)
            self._progress[rtype.key] = (after, resource_version, index + 1)
        self._progress.pop(rtype.key, None)

    async def remove_type(self, rtype: ResourceType) -> None:
        path = protocol.remove_type_path(self.cluster)
        await self._call("POST", path, protocol.remove_type_body(rtype))

    # --- transport ---------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: dict[str, Any] | packing.Body | None
                    ) -> dict[str, Any]:
        headers = dict(self._headers)
        data: bytes | AsyncIterator[bytes | memoryview] | None = None
        if body is not None:
            data = await _encode(body, headers, compress=self._compress)
        try:
            async with self.session.request(
                method, self.base_url + path, data=data, headers=headers
            ) as response:
                raw = await response.read()
                return _answer(response, raw)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SinkUnavailable(f"{method} {path}: {_problem(exc)}") from exc


def _problem(exc: BaseException) -> str:
    """The transport failure in plain words; a syncer certificate that is not trusted names
    what decides the trust, since that is a setting to fix, not a failure to wait out."""
    problem = connection_problem(exc)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        problem += ("; the syncer's certificate must be signed by the CA given as --syncer-ca "
                    "(without it, by one the system trusts)")
    return problem


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_BIG_BATCH = 100  # objects to encode: pack bigger pages and batches off the event loop


def _to_encode(objects: Sequence[AnyObject]) -> int:
    """How many of ``objects`` packing must encode (the informer's are JSON already)."""
    return sum(1 for obj in objects if not isinstance(obj, RawObject))


async def _off_loop(size: int, pack: Callable[[], T]) -> T:
    return await asyncio.to_thread(pack) if size > _BIG_BATCH else pack()


async def _encode(body: dict[str, Any] | packing.Body, headers: dict[str, str], *, compress: bool
                  ) -> bytes | AsyncIterator[bytes | memoryview]:
    """What aiohttp sends for ``body``, its headers set: bytes, or chunks of known total length."""
    parts = body.parts if isinstance(body, packing.Body) else (orjson.dumps(body),)
    size = sum(len(part) for part in parts)
    headers["Content-Type"] = "application/json"
    if compress and size > protocol.GZIP_MIN:
        headers["Content-Encoding"] = "gzip"
        if size > GZIP_IN_THREAD:
            return await asyncio.to_thread(_gzip, parts)
        return _gzip(parts)
    if len(parts) == 1 and size <= CHUNK:
        return parts[0]
    # With a Content-Length set, aiohttp sends the chunks as they are (not chunked encoding).
    headers["Content-Length"] = str(size)
    return _chunks(parts)


def _gzip(parts: Sequence[bytes]) -> bytes:
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
    out = [compressor.compress(part) for part in parts]
    out.append(compressor.flush())
    return b"".join(out)


async def _chunks(parts: Sequence[bytes]) -> AsyncIterator[bytes | memoryview]:
    """``parts`` as chunks of at most :data:`CHUNK` bytes: small parts joined, big ones cut
    (``memoryview``: no copy)."""
    pending: list[bytes] = []
    held = 0
    for part in parts:
        if held + len(part) > CHUNK and pending:
            yield b"".join(pending)
            pending, held = [], 0
        if len(part) > CHUNK:
            view = memoryview(part)
            for start in range(0, len(part), CHUNK):
                yield view[start:start + CHUNK]
            continue
        pending.append(part)
        held += len(part)
    if pending:
        yield b"".join(pending)


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
        raise SinkNeedsSnapshot(message)
    if status >= 500 or status in _UNAVAILABLE:
        raise SinkUnavailable(message)
    raise SinkRejected(message, status=status)


def _retry_after(response: aiohttp.ClientResponse) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return DEFAULT_RETRY_AFTER
