"""Watches across clusters, from the change log.

Semantics follow kube-apiserver
(https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes,
#watch-bookmarks and #streaming-lists):

- from a resourceVersion N: every change after N, in change-log order. Changes are read
  only up to the change-log horizon (``apiserver.horizon``), below which every writer has
  ended, so resuming after N never misses a change committed later with a smaller
  number. Below the retained change log the stream is one ERROR event carrying a 410
  Expired Status; above every number handed out, 504 (too large);
- ``resourceVersion`` unset or ``"0"``, or ``sendInitialEvents=true``: synthetic ADDED
  events for the current objects (read in one snapshot taken after the horizon was read),
  then the changes after that horizon (a change above it that the snapshot already holds
  comes again: at least once, never lost);
  with ``sendInitialEvents`` a BOOKMARK annotated ``k8s.io/initial-events-end`` follows;
- ``allowWatchBookmarks``: a BOOKMARK with the newest sequence when nothing was sent
  for a while, so a client resumes near the head;
- selectors: an object that stops matching is sent as DELETED, one that starts matching
  as ADDED.

Each event carries the object as it was at that change: the change log keeps the state an
object leaves (on MODIFIED and DELETED), so the state after change s is the next change's
before-image, or the current row. Readers are woken by LISTEN/NOTIFY on one connection
per process (``ChangeFeed``); nothing polls.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from apiserver import horizon, render
from apiserver.catalog import Catalog
from apiserver.keys import FEED, WATCHES, scope_of, subject_of
from apiserver.metrics import OPEN_WATCHES
from apiserver.params import ListOptions, parse_resource_version, too_large
from apiserver.query import (
    CLUSTER_ANNOTATION,
    CLUSTERPEDIA_ANNOTATION,
    MEMBER_VERSION_ANNOTATION,
    Target,
    clusters_read,
    compiled,
    identity_matches,
    list_statement,
    watch_statement,
)
from apiserver.replicas import read_pool
from apiserver.served import warn
from kube.changes import ChangeType
from kube.media import PARTIAL, PARTIAL_LIST, TABLE
from kube.status import status_body

log = logging.getLogger(__name__)

BOOKMARK_INTERVAL_S = 30.0
DEFAULT_TIMEOUT_S = 1800.0
BATCH = 500
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@dataclass(kw_only=True, slots=True)
class Stream:
    """One watch response: encodes and writes events in the negotiated shape."""

    response: web.StreamResponse
    opts: ListOptions
    target: Target
    table: render.ClusterTable | None

    def encode(self, kind: ChangeType, cluster: str, text: str) -> bytes:
        if not self.opts.shape:
            return b'{"type":"' + kind.encode() + b'","object":' + text.encode() + b"}\n"
        else:
            obj = orjson.loads(text)
            if self.opts.shape == TABLE and self.table is not None:
                rv = (obj.get("metadata") or {}).get("resourceVersion", "")
                meta = {"resourceVersion": rv}
                shaped: Any = self.table.table([(cluster, obj)], meta, self.opts.include_object)
            else:
                shaped = render.partial(obj) if self.opts.shape in (PARTIAL, PARTIAL_LIST) else obj
            return orjson.dumps({"type": kind, "object": shaped}) + b"\n"

    async def write(self, lines: list[bytes]) -> None:
        """Events go out in one write per batch: each write waits for the socket to drain."""
        if lines:
            await self.response.write(b"".join(lines))
            lines.clear()

    async def bookmark(self, seq: int, *, initial_end: bool = False) -> None:
        meta: dict[str, Any] = {"resourceVersion": str(seq)}
        if initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        kind = self.target.kind
        obj = {"kind": kind, "apiVersion": f"{self.target.group}/{self.target.version}".lstrip("/"),
               "metadata": meta}
        await self.response.write(orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n")

    async def error(self, code: int, reason: str, message: str) -> None:
        event = {"type": "ERROR", "object": status_body(code, reason, message)}
        await self.response.write(orjson.dumps(event) + b"\n")


def _matches(target: Target, text: str | None) -> bool:
    if text is None:
        return False
    if target.labels.empty() and target.fields.empty():
        return True
    obj = orjson.loads(text)
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return target.labels.matches(labels) and (target.fields.empty()
                                              or target.fields.selects(target.kind, _as_stored(obj)))


_ADDED_ANNOTATIONS = (CLUSTER_ANNOTATION, CLUSTERPEDIA_ANNOTATION, MEMBER_VERSION_ANNOTATION)


def _as_stored(obj: dict[str, Any]) -> dict[str, Any]:
    """An event's object as stored, which is what lists select on (a JSON path may name
    any field): without the annotations the read API adds, and with the member cluster's
    resourceVersion. An object whose only annotations were those had none (Kubernetes
    omits an empty map)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("annotations"), dict):
        return obj
    annotations = dict(meta["annotations"])
    meta = dict(meta)
    if MEMBER_VERSION_ANNOTATION in annotations:
        version = annotations[MEMBER_VERSION_ANNOTATION]
        if version is None:
            meta.pop("resourceVersion", None)
        else:
            meta["resourceVersion"] = version
    for key in _ADDED_ANNOTATIONS:
        annotations.pop(key, None)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations")
    return {**obj, "metadata": meta}


def _event_kind(kind: ChangeType, target: Target, before: str | None, after: str | None) -> ChangeType | None:
    """The event a selector-filtered watcher sees, or None (kube-apiserver's watch cache)."""
    now = _matches(target, after)
    if kind == "ADDED":
        return "ADDED" if now else None
    if kind == "DELETED":
        return "DELETED" if _matches(target, before or after) else None
    was = _matches(target, before)
    if was and now:
        return "MODIFIED"
    if now:
        return "ADDED"
    return "DELETED" if was else None


async def _floor(pool: asyncpg.Pool) -> int | None:
    value: int | None = await pool.fetchval("SELECT min(seq) FROM change_log")
    return value


async def _initial(request: web.Request, stream: Stream) -> int:
    """Synthetic ADDED events for what exists now, read in one snapshot; returns the horizon
    read before it (every change up to it is in the snapshot)."""
    async with horizon.snapshot(read_pool(request)) as (conn, seen):
        seq = seen or 0
        sql, params = compiled(list_statement(stream.target, scope_of(request), limit=None,
                                              aggregated_version=True))
        lines: list[bytes] = []
        async for row in conn.cursor(sql, *params, prefetch=BATCH):
            lines.append(stream.encode("ADDED", row["cluster"], row["json"]))
            if len(lines) >= BATCH:
                await stream.write(lines)
        await stream.write(lines)
    return seq


def _encoded(stream: Stream, kind: ChangeType, cluster: str, before: str | None, after: str | None,
             lines: list[bytes]) -> None:
    event = _event_kind(kind, stream.target, before, after)
    text = after if kind != "DELETED" else (before or after)
    if event is not None and text is not None:
        lines.append(stream.encode(event, cluster, text))


async def _changes(request: web.Request, stream: Stream, after: int) -> int:
    """Send the changes after ``after``; returns the sequence the watch has now seen up to:
    from the process's shared tail when it reaches back far enough, else from the log."""
    feed = request.app[FEED]
    upto, tail = feed.read_upto, feed.since(after)
    if tail is None:
        return await _changes_from_log(request, stream, after)
    scope = scope_of(request)
    lines: list[bytes] = []
    for c in tail:
        if identity_matches(stream.target, scope, group=c.group, version=c.version, resource=c.resource,
                            cluster=c.cluster, namespace=c.namespace, name=c.name):
            _encoded(stream, c.type, c.cluster, c.before, c.after, lines)
    await stream.write(lines)
    return max(after, upto)


async def _changes_from_log(request: web.Request, stream: Stream, after: int) -> int:
    """Changes after ``after`` up to the horizon, read for this watch alone (the horizon first,
    in a statement of its own). When a read finds no more rows of this type, the watch has
    seen everything up to the horizon, and resumes from there instead of re-reading other
    types' changes."""
    pool = read_pool(request)
    upto = await horizon.horizon(pool)
    sql, params = compiled(watch_statement(stream.target, scope_of(request), after=after, upto=upto,
                                           limit=BATCH))
    rows = await pool.fetch(sql, *params)
    lines: list[bytes] = []
    for row in rows:
        _encoded(stream, row["type"], row["cluster"], row["before"], row["after"], lines)
        after = row["seq"]
    await stream.write(lines)
    return max(after, upto) if len(rows) < BATCH else after


async def _start(request: web.Request, opts: ListOptions) -> tuple[bool, int, bool]:
    """Where a watch starts, checked before its response begins: (initial events?, the
    sequence after which changes are sent, expired?)."""
    pool = read_pool(request)
    rv = opts.resource_version
    initial = opts.send_initial_events if opts.send_initial_events is not None else rv in ("", "0")
    if initial:
        return True, 0, False  # the start is the initial events' horizon
    if rv in ("", "0"):  # no initial events, from now on
        return False, await horizon.horizon(pool), False
    start = parse_resource_version(rv)
    # A hot standby that has not replayed up to it is waited for, then a 504 (never a
    # watch from an older state). Too large is a number never handed out; one handed out
    # but still in flight is a version we gave (the horizon may dip just below one it
    # was): the watch waits for it.
    await horizon.reach(pool, start)
    newest = await horizon.drawn(pool)
    if start > newest:
        raise too_large(start, newest)
    floor = await _floor(pool)
    return False, start, floor is not None and start < floor - 1


async def watch(request: web.Request, opts: ListOptions, target: Target, catalog: Catalog,
                table: render.ClusterTable | None) -> web.StreamResponse:
    """A watch, counted against its subject's bound (``apiserver.limits``) while it runs."""
    with request.app[WATCHES].slot(subject_of(request)):
        return await _watch(request, opts, target, catalog, table)


async def _watch(request: web.Request, opts: ListOptions, target: Target, catalog: Catalog,
                 table: render.ClusterTable | None) -> web.StreamResponse:
    initial, seq, expired = await _start(request, opts)
    response = web.StreamResponse(headers={"Content-Type": "application/json",
                                           "Transfer-Encoding": "chunked"})
    warn(response, catalog.warnings(target.cluster, among=clusters_read(target, scope_of(request))))
    await response.prepare(request)
    stream = Stream(response=response, opts=opts, target=target, table=table)
    deadline = time.monotonic() + (opts.timeout_seconds or DEFAULT_TIMEOUT_S)
    if expired:
        await stream.error(410, "Expired", f"too old resource version: {seq}")
        return response
    if initial:
        seq = await _initial(request, stream)
        if opts.send_initial_events:
            await stream.bookmark(seq, initial_end=True)
    await _follow(request, stream, seq, deadline)
    return response


async def _follow(request: web.Request, stream: Stream, seq: int, deadline: float) -> None:
    feed = request.app[FEED]
    with feed.following(), OPEN_WATCHES.track_inprogress():
        seq = await _follow_feed(request, stream, seq, deadline)
    if feed.closed:
        await _farewell(request, stream, seq)


def _client_gone(request: web.Request) -> bool:
    """The client closed the connection. aiohttp does not cancel the handler then, and a watch
    of a quiet type writes nothing that would fail: without this check it would hold its
    subject's watch slot (``apiserver.limits``) until its timeout. Checked at every wake-up
    (a change anywhere, or the bookmark interval at the latest)."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def _farewell(request: web.Request, stream: Stream, seq: int) -> None:
    """The server is shutting down: send what committed before it did, then, to a watcher
    that takes bookmarks, one with the sequence it has seen everything up to, so that it
    resumes from there (on this server's successor) without a gap or a relist. The stream
    then ends cleanly. A store that no longer answers leaves the bookmark at ``seq``."""
    try:  # from the log: the feed may not have read the last commits yet
        seq = await _changes_from_log(request, stream, seq)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("watch: the last changes could not be read at shutdown", extra={"error": str(exc)})
    if stream.opts.allow_bookmarks:
        await stream.bookmark(seq)


async def _follow_feed(request: web.Request, stream: Stream, seq: int, deadline: float) -> int:
    """Follow until the deadline or the feed's close; returns the sequence sent up to."""
    feed = request.app[FEED]
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and not feed.closed and not _client_gone(request):
        ticket = feed.ticket()
        newest = await _changes(request, stream, seq)
        if newest != seq:
            seq, quiet_since = newest, time.monotonic()
            continue
        if stream.opts.allow_bookmarks and time.monotonic() - quiet_since >= BOOKMARK_INTERVAL_S:
            await stream.bookmark(seq)
            quiet_since = time.monotonic()
        await feed.wait(ticket, min(BOOKMARK_INTERVAL_S, max(deadline - time.monotonic(), 0.0)))
    return seq
