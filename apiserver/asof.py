"""``?asOf=TIME`` on any list of the aggregated API: what existed at that time, with the
objects as they were (docs/design.md, "History").

The time becomes S, the last change-log sequence at or before it, and no higher than the
change-log horizon read before the snapshot (``apiserver.horizon``: a change below S still
in flight would make the state at S one that never was); the list is the state at
S (``query_history.as_of_statement``), with the usual paths, namespaces, ``clusters=``,
selectors, ``limit``/``continue`` and Table output, and ``metadata.resourceVersion`` is S.
A time before the oldest retained change is 410 Expired (what happened before it is no
longer known); a time after the server's clock is 400 (a state not yet decided is not a
state that can be read, and waiting would not make it one); ``asOf`` with
``resourceVersion`` or ``watch`` is 400. Every page is read in one snapshot that also checks
that S is still retained, so a walk that outlives the retention period ends in a 410 rather
than in a silently wrong page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import asyncpg
from aiohttp import web

from apiserver import horizon, pagination, render
from apiserver.keys import CONTINUE_KEY, scope_of
from apiserver.params import ListOptions, bad_request
from apiserver.query import Target, compiled
from apiserver.query_history import as_of_point, as_of_statement
from apiserver.replicas import read_pool
from apiserver.served import warn
from apiserver.times import rfc3339, time_param
from kube.resources import ResourceType
from kube.status import StatusError

AS_OF = "asOf"
STREAM_PAGE = 1000  # rows per query when the whole list is asked for


def _check_options(opts: ListOptions) -> None:
    if opts.watch:
        raise bad_request("asOf cannot be combined with watch: a watch follows changes from now on")
    if opts.resource_version not in ("", "0"):
        raise bad_request("asOf and resourceVersion are exclusive: asOf names its own version")


def _expired(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


async def _sequence(conn: asyncpg.Connection, moment: datetime, cursor: pagination.Cursor | None,
                    upto: int) -> int:
    """S for ``moment`` (or the cursor's), checked against the retained log in this snapshot;
    at most ``upto``, the horizon read before it."""
    sql, params = compiled(as_of_point(None if cursor else moment))
    point = await conn.fetchrow(sql, *params)
    if moment > point["now"]:
        raise bad_request(f"asOf {rfc3339(moment)} is in the future (the server's time is"
                          f" {rfc3339(point['now'])})")
    floor = point["floor"]
    if cursor is not None:
        if floor is not None and floor > cursor.resource_version:
            raise _expired(f"the list as of {rfc3339(moment)} is no longer retained: list again with a later"
                           " asOf")
        return cursor.resource_version
    if point["seq"] is not None:
        return min(int(point["seq"]), upto)
    if floor is None:
        return 0  # nothing has ever been stored: the state at any time is empty
    oldest = await conn.fetchval("SELECT at FROM change_log WHERE seq = $1", floor)
    raise _expired(f"asOf {rfc3339(moment)} is older than the retained changes (from {rfc3339(oldest)}):"
                   " what existed then is no longer known")


async def _rows(conn: asyncpg.Connection, request: web.Request, target: Target, *, seq: int, limit: int,
                after: Sequence[str] | None) -> list[asyncpg.Record]:
    sql, params = compiled(as_of_statement(target, scope_of(request), seq=seq, limit=limit, after=after))
    rows: list[asyncpg.Record] = await conn.fetch(sql, *params)
    return rows


def _key(row: asyncpg.Record) -> tuple[str, str, str]:
    return (row["namespace"], row["name"], row["cluster"])


async def _pages(conn: asyncpg.Connection, request: web.Request, target: Target,
                 seq: int) -> AsyncIterator[list[asyncpg.Record]]:
    """Every object of the state at ``seq``, in keyset pages, so no query sorts it all."""
    page = await _rows(conn, request, target, seq=seq, limit=STREAM_PAGE, after=None)
    yield page
    while len(page) == STREAM_PAGE:
        page = await _rows(conn, request, target, seq=seq, limit=STREAM_PAGE, after=_key(page[-1]))
        yield page


async def _stream(request: web.Request, conn: asyncpg.Connection, target: Target, *, seq: int,
                  rtype: ResourceType, warnings: Sequence[str]) -> web.StreamResponse:
    """A plain list streamed page by page: memory stays flat however large the state."""
    stream = web.StreamResponse(headers={"Content-Type": "application/json"})
    warn(stream, warnings)
    await stream.prepare(request)
    await stream.write(render.list_prefix(rtype, render.list_meta(resource_version=seq, continue_token=None)))
    separator = b""
    async for page in _pages(conn, request, target, seq):
        if page:
            await stream.write(separator + ",".join(r["json"] for r in page).encode())
            separator = b","
    await stream.write(render.LIST_SUFFIX)
    await stream.write_eof()
    return stream


async def list_as_of(request: web.Request, *, rtype: ResourceType, target: Target, opts: ListOptions,
                     table: render.ClusterTable, warnings: Sequence[str]) -> web.StreamResponse:
    """The list as of ``asOf``: one page with ``limit``, else every object; either way read
    in one snapshot."""
    _check_options(opts)
    moment = time_param(request.query, AS_OF)
    assert moment is not None  # the caller routes here only when asOf is given
    query = pagination.fingerprint([AS_OF, request.path, opts.label_selector, opts.field_selector,
                                    sorted(opts.clusters or ()), request.query[AS_OF]])
    cursor = None
    if opts.continue_token:
        try:
            cursor = pagination.decode(opts.continue_token, query=query, key=request.app[CONTINUE_KEY])
        except pagination.BadContinue as exc:
            raise bad_request(str(exc)) from exc
    token = None
    async with horizon.snapshot(read_pool(request), with_horizon=cursor is None,
                                at_least=cursor.resource_version if cursor else None) as (conn, seen):
        seq = await _sequence(conn, moment, cursor, seen or 0)
        if not opts.limit and not opts.shape:
            return await _stream(request, conn, target, seq=seq, rtype=rtype, warnings=warnings)
        if opts.limit:
            rows = await _rows(conn, request, target, seq=seq, limit=opts.limit + 1,
                               after=cursor.after if cursor else None)
            if len(rows) > opts.limit:
                rows = rows[:opts.limit]
                token = pagination.encode(pagination.Cursor(resource_version=seq, after=_key(rows[-1])),
                                          query=query, key=request.app[CONTINUE_KEY])
        else:
            rows = [row async for page in _pages(conn, request, target, seq) for row in page]
    meta = render.list_meta(resource_version=seq, continue_token=token)
    body = render.shaped_list(opts.shape, rtype, meta, [(r["cluster"], r["json"]) for r in rows],
                              include=opts.include_object, table=table)
    response = web.Response(body=body, content_type="application/json")
    warn(response, warnings)
    return response
