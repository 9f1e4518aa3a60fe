"""List-watch one resource type of a member cluster as a stream of snapshot and change
messages (:mod:`agent.events`), keeping no object cache.

The stream is three nested async generators, after kopf's ``watching.py``:

* :meth:`Informer.stream` (``infinite_watch``): never ends; after a failure it waits
  (exponential backoff with jitter) and continues from the last resourceVersion it holds,
  or from a fresh snapshot after 410 Gone.
* ``_continuous_watch``: snapshot when there is no position, then watch from it again
  and again; a watch that ends (server ``timeoutSeconds``, dropped connection, silence
  longer than the inactivity timeout) is re-opened from the last seen resourceVersion,
  without a list.
* ``_watch_objs``: one watch request.

Snapshots are either a paged LIST (``limit``/``continue``; the list's resourceVersion is
where the watch starts) or a streaming list (``sendInitialEvents=true``: the current
objects arrive as ADDED events, then a BOOKMARK annotated ``k8s.io/initial-events-end``
carries the snapshot's resourceVersion and the same connection continues as a watch).
See https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes,
#retrieving-large-results-sets-in-chunks and #streaming-lists.

Never watched from ``""``: that replays current objects as ADDED and hides the deletions
of the gap. A 410 (HTTP, or an ERROR event with code 410, or an expired ``continue``
token while paging) always leads to a fresh snapshot; every new ``SnapshotStart``
abandons an unfinished earlier one.

With ``namespaces_include``, a namespaced type is listed and watched per namespace (so
RBAC may be namespace-scoped); the snapshot covers all of them, and the position is a
composite checkpoint ``{"namespaces": {"ns": "rv", ...}}`` (opaque to the sink). Every
change is then followed by a ``Bookmark`` carrying that composite position.

Memory: every object is decoded on its own, pruned, and kept only as its JSON
(:class:`agent.events.RawObject`); no decoded page outlives its conversion, and no page is
held by the informer while the next is read. Pages are bounded by bytes (``page_bytes``) as
well as by count (``page_size``): a paged LIST asks for as many objects as the average
object size seen so far lets fit in ``page_bytes`` (the first page of a type: at most
``FIRST_PAGE``, since nothing is known of its objects yet; CRDs of 300 KB exist). Decoding a
LIST answer briefly takes about 17 times its size (orjson's parse tree, then the objects),
which is what ``page_bytes`` bounds; a streaming list decodes one object at a time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from agent import errors
from agent.backoff import Backoff
from agent.events import (
    Bookmark,
    InformerMessage,
    KubeObject,
    RawObject,
    RelistReason,
    SnapshotEnd,
    SnapshotPage,
    SnapshotStart,
    WatchEvent,
)
from agent.kubeclient import KubeClient, decode_object
from agent.status import TypeStatus
from kube.changes import CHANGE_TYPES, ChangeType
from kube.prune import prune
from kube.resources import ResourceType
from kube.tasks import STOP_TIMEOUT_S, stop_tasks

logger = logging.getLogger(__name__)

Scope = str | None  # a namespace, or None for the whole cluster
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
# Answers that mean "this server does not understand streaming lists".
STREAMING_REJECTED = frozenset({400, 405, 415, 422, 501})
_CHANGE_TYPES: dict[str, ChangeType] = {t: t for t in CHANGE_TYPES}  # narrows a str to the Literal
FIRST_PAGE = 10  # objects asked for by a type's first LIST page, before their size is known


@dataclass(frozen=True, kw_only=True)
class InformerSettings:
    page_size: int = 500  # objects per snapshot page, at most
    # JSON bytes per snapshot page, about: a LIST page is decoded whole, at ~17 times its size.
    page_bytes: int = 1024 * 1024
    # Server-side timeoutSeconds of one watch request (jittered up to +10%).
    watch_timeout: float = 300.0
    # No bytes for this long: reconnect. Above the apiserver's ~1 min bookmark interval.
    inactivity_timeout: float = 120.0
    # True/False force the choice; None tries streaming lists once per client.
    streaming_lists: bool | None = None
    # A streaming list whose initial events pause this long without the end bookmark is
    # taken as "not honoured" (an old server replaying ADDED events for an empty RV).
    streaming_idle: float = 10.0
    keep_secret_data: bool = False
    namespaces_include: tuple[str, ...] = ()
    namespace_excluded: Callable[[str | None], bool] = field(default=lambda _ns: False)
    backoff_base: float = 0.5
    backoff_cap: float = 30.0


class _StreamingUnsupported(Exception):
    """The server ignored or refused ``sendInitialEvents``: use a paged LIST."""


class _Position:
    """Where each scope's watch stands; ``None`` until a snapshot completed."""

    def __init__(self, scopes: tuple[Scope, ...], checkpoint: str | None, *,
                 reason: RelistReason = "initial") -> None:
        self.scopes = scopes
        self.rvs: dict[Scope, str] | None = _decode_checkpoint(checkpoint, scopes)
        # Why the next snapshot is taken, for its SnapshotStart.
        self.reason: RelistReason = "checkpoint_unusable" if checkpoint and self.rvs is None else reason

    @property
    def composite(self) -> bool:
        return self.scopes != (None,)

    def checkpoint(self) -> str:
        assert self.rvs is not None
        if not self.composite:
            return self.rvs[None]
        return orjson.dumps({"namespaces": dict(sorted(self.rvs.items()))}).decode()


class Informer:
    """The list-watch stream of one resource type; see the module docstring."""

    def __init__(
        self,
        *,
        client: KubeClient,
        rtype: ResourceType,
        settings: InformerSettings | None = None,
        status: TypeStatus | None = None,
    ) -> None:
        self.client = client
        self.rtype = rtype
        self.settings = settings or InformerSettings()
        self.status = status or TypeStatus(key=rtype.key)
        self._log_extra = {"resource": rtype.key}
        self._object_bytes = 0.0  # average JSON size of the objects listed so far; 0: none yet

    @property
    def scopes(self) -> tuple[Scope, ...]:
        if self.rtype.namespaced and self.settings.namespaces_include:
            return tuple(sorted(set(self.settings.namespaces_include)))
        return (None,)

    async def stream(self, *, checkpoint: str | None = None,
                     reason: RelistReason = "initial") -> AsyncGenerator[InformerMessage, None]:
        """Yield messages forever, resuming from ``checkpoint`` when it is still valid;
        ``reason``: why a snapshot is needed when there is no checkpoint."""
        position = _Position(self.scopes, checkpoint, reason=reason)
        backoff = Backoff(base=self.settings.backoff_base, cap=self.settings.backoff_cap)
        try:
            while True:
                try:
                    async for message in self._continuous_watch(position, backoff):
                        yield message
                except errors.Gone as exc:
                    logger.info("resourceVersion expired, relisting", extra=self._extra(exc))
                    position.rvs, position.reason = None, "expired"
                    if backoff.failures == 0:
                        backoff.failures = 1  # relist at once, but not in a tight loop
                        continue
                    await self._pause(backoff, exc)
                except errors.KubeClientError as exc:
                    await self._pause(backoff, exc)
        finally:
            self.status.phase = "stopped"

    async def _pause(self, backoff: Backoff, exc: errors.KubeClientError) -> None:
        delay = backoff.next_delay()
        if isinstance(exc, errors.TooManyRequests) and exc.retry_after:
            delay = max(delay, exc.retry_after)
        config_error = isinstance(exc, errors.Unauthorized | errors.Forbidden | errors.NotFound)
        self.status.failed(exc, phase="error" if config_error else "backoff")
        logger.warning("list-watch failed, retrying", extra=self._extra(exc, delay=delay))
        await asyncio.sleep(delay)

    async def _continuous_watch(
        self, position: _Position, backoff: Backoff
    ) -> AsyncIterator[InformerMessage]:
        if position.rvs is None:
            async for message in self._snapshot(position):
                yield message
            backoff.reset()
        while True:
            started = time.monotonic()
            count = 0
            async for message in self._watch_scopes(position):
                count += 1
                yield message
            if count:
                backoff.reset()
            elif time.monotonic() - started < 1.0:
                # A server that closes watches at once must not be hammered.
                await asyncio.sleep(backoff.next_delay())

    # --- snapshots ---------------------------------------------------------------------

    async def _snapshot(self, position: _Position) -> AsyncIterator[InformerMessage]:
        self.status.phase = "listing"
        self.status.snapshots += 1
        if self._try_streaming(position):
            try:
                async for message in self._streaming_list(position):
                    yield message
                return
            except _StreamingUnsupported as exc:
                self.client.streaming_lists = False
                logger.info("streaming lists not supported, using paged LIST", extra=self._extra(exc))
        async for message in self._paged_list(position):
            yield message

    def _try_streaming(self, position: _Position) -> bool:
        # Only for one scope: a per-namespace streaming list would need its own merging.
        wanted = self.settings.streaming_lists
        if wanted is False or position.composite:
            return False
        return wanted is True or self.client.streaming_lists is not False

    async def _paged_list(self, position: _Position) -> AsyncIterator[InformerMessage]:
        yield SnapshotStart(reason=position.reason)
        rvs: dict[Scope, str] = {}
        for scope in position.scopes:
            token: str | None = None
            while True:
                params = {"limit": str(self._limit())}
                if token:
                    params["continue"] = token
                message, token, rv = self._list_page(
                    await self.client.get_bytes(self.rtype.list_path(scope), params))
                if message is not None:
                    yield message
                    message = None  # the pipeline has the page: not held here while the next is read
                if token is None:
                    rvs[scope] = _required_rv(rv)
                    break
        position.rvs = rvs
        yield SnapshotEnd(resource_version=position.checkpoint())

    def _list_page(self, data: bytes) -> tuple[SnapshotPage | None, str | None, Any]:
        """One LIST answer as a page of raw objects (None if none is kept), the continue
        token and the list's resourceVersion; the decoded answer dies here."""
        body = decode_object(data)
        items = body.get("items") or []
        if not isinstance(items, list):
            raise errors.InvalidResponse("a list whose items are not a list")
        self.status.saw(len(items))
        if items:
            self._object_bytes = len(data) / len(items)
        kept = [raw for item in items if (raw := self._accept(item)) is not None]
        meta = body.get("metadata") or {}
        page = SnapshotPage(items=kept) if kept else None
        return page, meta.get("continue") or None, meta.get("resourceVersion")

    def _limit(self) -> int:
        """Objects to ask for: as many as fit ``page_bytes`` at the average size seen."""
        if not self._object_bytes:
            return min(self.settings.page_size, FIRST_PAGE)
        fitting = int(self.settings.page_bytes / self._object_bytes)
        return max(1, min(self.settings.page_size, fitting))

    async def _streaming_list(self, position: _Position) -> AsyncIterator[InformerMessage]:
        params = {
            "sendInitialEvents": "true",
            "resourceVersionMatch": "NotOlderThan",
        }
        page: list[RawObject] = []
        size = 0
        yield SnapshotStart(reason=position.reason)
        events = self._watch_request(None, params, idle=self.settings.streaming_idle)
        try:
            async for event in events:
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ADDED":
                    self.status.saw()
                    item = self._accept(obj)
                    if item is not None:
                        page.append(item)
                        size += len(item.json)
                    if len(page) >= self.settings.page_size or size >= self.settings.page_bytes:
                        yield SnapshotPage(items=page)
                        page, size = [], 0
                elif kind == "BOOKMARK" and _is_initial_end(obj):
                    if page:
                        yield SnapshotPage(items=page)
                    position.rvs = {None: _required_rv(_rv_of(obj))}
                    self.client.streaming_lists = True
                    yield SnapshotEnd(resource_version=position.checkpoint())
                    break
                elif kind == "ERROR":
                    raise _streaming_error(obj)
                else:
                    raise _StreamingUnsupported(f"{kind} event before the initial-events end")
            else:
                raise errors.ApiConnectionError("streaming list ended before its end bookmark")
        except errors.StreamInterrupted as exc:
            if self.client.streaming_lists is None and position.rvs is None:
                raise _StreamingUnsupported(f"no initial-events end: {exc}") from exc
            raise
        except errors.ApiError as exc:
            if exc.status in STREAMING_REJECTED and self.client.streaming_lists is None:
                raise _StreamingUnsupported(str(exc)) from exc
            raise
        # The same connection now carries the watch from the snapshot's resourceVersion.
        self.status.phase = "watching"
        try:
            async for message in self._watch_events(events, None, position):
                yield message
        except errors.StreamInterrupted as exc:
            # Quiet for streaming_idle or dropped: the regular watch takes over from here.
            logger.debug("streaming list connection ended", extra=self._extra(exc))

    # --- watching ----------------------------------------------------------------------

    async def _watch_scopes(self, position: _Position) -> AsyncIterator[InformerMessage]:
        self.status.phase = "watching"
        streams = [self._watch_objs(scope, position) for scope in position.scopes]
        async for message in _merged(streams):
            yield message

    async def _watch_objs(self, scope: Scope, position: _Position) -> AsyncIterator[InformerMessage]:
        """One watch request for one scope, from that scope's last resourceVersion."""
        assert position.rvs is not None
        params = {"resourceVersion": position.rvs[scope]}
        events = self._watch_request(scope, params, idle=self.settings.inactivity_timeout)
        try:
            async for message in self._watch_events(events, scope, position):
                yield message
        except errors.StreamInterrupted as exc:
            logger.info("watch interrupted, re-watching", extra=self._extra(exc))

    def _watch_request(
        self, scope: Scope, params: dict[str, str], *, idle: float
    ) -> AsyncIterator[dict[str, Any]]:
        self.status.watches += 1
        timeout = self.settings.watch_timeout * random.uniform(1.0, 1.1)
        query = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(max(1, int(timeout))),
            **params,
        }
        path = self.rtype.list_path(scope)
        return self.client.watch(path, query, inactivity_timeout=idle)

    async def _watch_events(
        self, events: AsyncIterator[dict[str, Any]], scope: Scope, position: _Position
    ) -> AsyncIterator[InformerMessage]:
        assert position.rvs is not None
        async for event in events:
            kind = str(event.get("type"))
            obj = event.get("object") or {}
            if kind == "ERROR":
                raise errors.error_from_status(obj)
            rv = _rv_of(obj)
            if not rv:
                logger.warning("watch event without resourceVersion", extra=self._extra(kind))
                continue
            position.rvs[scope] = rv
            if kind == "BOOKMARK":
                yield Bookmark(resource_version=position.checkpoint())
            elif kind in _CHANGE_TYPES:
                self.status.saw()
                for message in self._change(kind, obj, position):
                    yield message
            else:
                logger.warning("unknown watch event type", extra=self._extra(kind))

    def _change(self, kind: str, obj: KubeObject, position: _Position) -> list[InformerMessage]:
        item = self._accept(obj)
        if item is None:
            return [Bookmark(resource_version=position.checkpoint())]
        change = WatchEvent(type=_CHANGE_TYPES[kind], object=item)
        if position.composite:
            return [change, Bookmark(resource_version=position.checkpoint())]
        return [change]

    # --- objects -----------------------------------------------------------------------

    def _accept(self, obj: Any) -> RawObject | None:
        """The object as it is passed on (typed, pruned, as JSON); None when its namespace
        is excluded."""
        if not isinstance(obj, dict):
            raise errors.InvalidResponse("an object that is not a JSON object")
        namespace = (obj.get("metadata") or {}).get("namespace")
        if namespace and self.settings.namespace_excluded(namespace):
            return None
        # List items carry no apiVersion/kind; the store and prune() need them.
        obj.setdefault("apiVersion", self.rtype.api_version)
        obj.setdefault("kind", self.rtype.kind)
        return RawObject.encode(prune(obj, keep_secret_data=self.settings.keep_secret_data))

    def _extra(self, error: object, **more: Any) -> dict[str, Any]:
        return {**self._log_extra, "error": str(error), **more}


async def _merged(streams: list[AsyncIterator[InformerMessage]]) -> AsyncIterator[InformerMessage]:
    """Interleave streams; end when the first ends; raise the first failure."""
    if len(streams) == 1:
        async for message in streams[0]:
            yield message
        return
    queue: asyncio.Queue[InformerMessage | BaseException | None] = asyncio.Queue(maxsize=1)

    async def pump(stream: AsyncIterator[InformerMessage]) -> None:
        try:
            async for message in stream:
                await queue.put(message)
            await queue.put(None)
        except Exception as exc:  # handed to the consumer, which re-raises it
            await queue.put(exc)

    tasks = [asyncio.create_task(pump(stream)) for stream in streams]
    try:
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        await stop_tasks(tasks, timeout=STOP_TIMEOUT_S, log=logger)


def _decode_checkpoint(checkpoint: str | None, scopes: tuple[Scope, ...]) -> dict[Scope, str] | None:
    """Per-scope positions from a checkpoint, or None when it does not fit the scopes."""
    if not checkpoint:
        return None
    composite = checkpoint.startswith("{")
    if scopes == (None,):
        return None if composite else {None: checkpoint}
    if not composite:
        return None
    try:
        namespaces = orjson.loads(checkpoint).get("namespaces")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(namespaces, dict) or set(namespaces) != set(scopes):
        return None
    return {ns: str(rv) for ns, rv in namespaces.items() if rv} or None


def _rv_of(obj: KubeObject) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _required_rv(value: Any) -> str:
    if not value:
        raise errors.InvalidResponse("a list without resourceVersion cannot start a watch")
    return str(value)


def _is_initial_end(obj: KubeObject) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(INITIAL_EVENTS_END, "")).lower() == "true"


def _streaming_error(obj: KubeObject) -> errors.ApiError:
    return errors.error_from_status(obj)
