"""LIST semantics: resourceVersion rules, paging with continue tokens.

https://kubernetes.io/docs/reference/using-api/api-concepts/#semantics-for-get-and-list
and #retrieving-large-results-sets-in-chunks:

- ``resourceVersion`` unset: most recent; ``"0"``: any (we serve the latest);
  a value with ``resourceVersionMatch=NotOlderThan`` (or unset match without
  ``limit``): at least that new; ``Exact`` (or an unset match with ``limit``):
  exactly that version, reconstructed from the history window, 410 Expired
  below it. A version newer than the server's waits briefly, then answers 504
  Timeout with a ``ResourceVersionTooLarge`` cause.
- ``continue`` tokens are opaque (base64 of JSON with the list's RV and the
  next key); every page is served from the snapshot at the first page's RV.
  A token older than the history window, or older than the configured token
  lifetime, answers 410 Expired carrying a fresh token that continues from the
  current state, as kube-apiserver does after an etcd compaction.
- ``remainingItemCount`` is set only when a continue token is and no selector
  was given.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any

import orjson

from kubesim import errors
from kubesim.selectors import EVERYTHING, Selector
from kubesim.store import Entry, Store, TooOld, TypeStore

JSON = dict[str, Any]

LIST_EXPIRED = "The resourceVersion for the provided list is too old."
CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter, or use the continue token "
    "in this response to retrieve the remainder of the results. Continuing with the "
    "provided token results in an inconsistent list - objects that were created, "
    "modified, or deleted between the time the first chunk was returned and now may "
    "show up in the list."
)


@dataclass(frozen=True)
class ListOptions:
    resource_version: str = ""
    match: str = ""
    limit: int = 0
    continue_token: str = ""
    labels: Selector = EVERYTHING
    fields: Selector = EVERYTHING
    watch: bool = False
    bookmarks: bool = False
    timeout_seconds: float | None = None
    send_initial_events: bool | None = None


@dataclass
class Page:
    entries: list[Entry]
    rv: int
    continue_token: str | None
    remaining: int | None


def parse_rv(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise errors.bad_request(f'invalid resource version "{text}"') from None
    if value < 0:
        raise errors.bad_request(f'invalid resource version "{text}"')
    return value


def _forbidden(field: str, message: str) -> tuple[str, str]:
    return field, f"Forbidden: {message}"


def validate(opts: ListOptions) -> None:
    """``ValidateListOptions`` of apimachinery: 422 Invalid ListOptions."""
    causes = _watch_problems(opts) if opts.watch else _list_problems(opts)
    if causes:
        raise errors.invalid("ListOptions", "", "meta.k8s.io", causes)


def _list_problems(opts: ListOptions) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if opts.match:
        if not opts.resource_version:
            out.append(
                _forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                )
            )
        if opts.continue_token:
            out.append(
                _forbidden(
                    "resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided"
                )
            )
        if opts.match not in ("Exact", "NotOlderThan"):
            out.append(
                (
                    "resourceVersionMatch",
                    f'Unsupported value: "{opts.match}": supported values: "Exact", "NotOlderThan", ""',
                )
            )
        if opts.match == "Exact" and opts.resource_version == "0":
            out.append(
                _forbidden(
                    "resourceVersionMatch",
                    'resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                )
            )
    if opts.send_initial_events is not None:
        out.append(_forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"))
    return out


def _watch_problems(opts: ListOptions) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if opts.send_initial_events is not None:
        if opts.match != "NotOlderThan":
            out.append(
                _forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                )
            )
        if not opts.bookmarks:
            out.append(
                _forbidden(
                    "allowWatchBookmarks", "sendInitialEvents requires setting allowWatchBookmarks to true"
                )
            )
    elif opts.match:
        out.append(
            _forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            )
        )
    if opts.match and opts.match != "NotOlderThan":
        out.append(
            ("resourceVersionMatch", f'Unsupported value: "{opts.match}": supported values: "NotOlderThan"')
        )
    return out


async def wait_for_rv(store: Store, rv: int, timeout: float) -> None:  # noqa: ASYNC109
    """Wait until the store reaches ``rv``; 504 ResourceVersionTooLarge after ``timeout``."""
    deadline = time.monotonic() + timeout
    while store.rv < rv:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise errors.too_large_resource_version(rv, store.rv)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        store.write_waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, remaining)
        except TimeoutError:
            pass


def encode_token(rv: int, start: str, issued: float) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start, "ts": issued})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_token(token: str) -> tuple[int, str, float]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        return int(data["rv"]), str(data["start"]), float(data.get("ts", 0.0))
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise errors.bad_request(f"continue key is not valid: {exc}") from None


class Lister:
    """Answers LIST requests for one store."""

    def __init__(self, store: Store, token_ttl: float = 300.0, rv_wait: float = 3.0) -> None:
        self.store = store
        self.token_ttl = token_ttl
        self.rv_wait = rv_wait

    async def snapshot_rv(self, tstore: TypeStore, opts: ListOptions) -> int | None:
        """The RV to serve at (None: the current state), per the docs' table."""
        rv_text = opts.resource_version
        if rv_text in ("", "0"):
            return None
        rv = parse_rv(rv_text)
        exact = opts.match == "Exact" or (not opts.match and opts.limit > 0)
        if rv > self.store.rv:
            await wait_for_rv(self.store, rv, self.rv_wait)
        if not exact or rv >= self.store.rv:
            return None
        if rv < tstore.floor:
            raise errors.expired(LIST_EXPIRED)
        return rv

    async def list(self, tstore: TypeStore, namespace: str, opts: ListOptions) -> Page:
        validate(opts)
        self.store.expire(tstore)
        if opts.continue_token:
            if opts.resource_version not in ("", "0"):
                raise errors.bad_request("specifying resource version is not allowed when using continue")
            rv, start, issued = decode_token(opts.continue_token)
            return self._continue(tstore, namespace, opts, rv, start, issued)
        at = await self.snapshot_rv(tstore, opts)
        return self._page(tstore, namespace, opts, at, "", time.time())

    def _continue(
        self,
        tstore: TypeStore,
        namespace: str,
        opts: ListOptions,
        rv: int,
        start: str,
        issued: float,
    ) -> Page:
        too_old = rv != -1 and (rv < tstore.floor or time.time() - issued > self.token_ttl)
        if too_old:
            exc = errors.expired(CONTINUE_EXPIRED)
            exc.list_continue = encode_token(-1, start, time.time())
            raise exc
        at = None if rv in (-1, self.store.rv) else rv
        return self._page(tstore, namespace, opts, at, start, issued)

    def _page(
        self,
        tstore: TypeStore,
        namespace: str,
        opts: ListOptions,
        at: int | None,
        start: str,
        issued: float,
    ) -> Page:
        list_rv = self.store.rv if at is None else at
        filtered = not (opts.labels.empty() and opts.fields.empty())
        items: list[Entry] = []
        more = False
        try:
            for entry in tstore.iter_at(at, namespace, start):
                if filtered and not (opts.labels.matches(entry.labels) and opts.fields.matches(entry.fields)):
                    continue
                if opts.limit and len(items) >= opts.limit:
                    more = True
                    break
                items.append(entry)
        except TooOld:
            raise errors.expired(LIST_EXPIRED) from None
        if not more:
            return Page(items, list_rv, None, None)
        last = items[-1].key
        token = encode_token(list_rv, last + "\x00", issued)
        remaining = None if filtered else tstore.count_at(at, namespace, last)
        return Page(items, list_rv, token, remaining)
