"""HTTP handlers for the resource paths under /api/v1 and /apis/{group}/{version}."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import orjson
import yaml
from aiohttp import web

from kube.resources import ResourceType
from kubesim import errors, fields, media
from kubesim.faults import Faults
from kubesim.listing import ListOptions, Page, parse_rv, validate, wait_for_rv
from kubesim.scale import patch_scale, scalable, to_scale, write_scale
from kubesim.selectors import parse_field_selector, parse_label_selector
from kubesim.simulator import Simulator
from kubesim.store import Entry, TooOld, TypeStore
from kubesim.watch import (
    Pacer,
    SharedJoins,
    Watcher,
    default_timeout,
    expired_line,
    wait_for_lines,
)

JSON = dict[str, Any]
JSON_TYPE = "application/json"
YAML_TYPE = "application/yaml"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
INITIAL_CHUNK = 500
# How often an idle watch checks that its client is still connected. aiohttp does not
# cancel a handler whose client went away; kube-apiserver ends such a watch at once, and
# ``openWatches`` in the stats should count only the watches someone is reading.
CLIENT_CHECK_S = 0.5


@dataclass(frozen=True)
class Target:
    rtype: ResourceType
    namespace: str
    name: str
    subresource: str
    watch_path: bool


def not_found_path() -> errors.StatusError:
    return errors.StatusError(
        404,
        "NotFound",
        "the server could not find the requested resource",
        {"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]},
    )


def json_response(body: bytes, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    response = web.Response(body=body, status=status, content_type=JSON_TYPE)
    for name, value in fields.warning_header(warnings or []):
        response.headers.add(name, value)
    return response


def _flag(query: Any, name: str) -> bool:
    return str(query.get(name, "")).lower() in ("1", "true")


def _dry_run(request: web.Request) -> bool:
    """``dryRun=All``: validate and answer, but persist nothing."""
    values = request.query.getall("dryRun", [])
    if any(v not in ("All", "") for v in values):
        raise errors.bad_request(f"unsupported dryRun value: {values}")
    return "All" in values


async def _delete_dry_run(request: web.Request) -> bool:
    """DELETE carries its options (``DeleteOptions.dryRun``) in the body."""
    raw = await request.read()
    if not raw.strip():
        return False
    try:
        options = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.bad_request("the body of the request is not valid DeleteOptions") from None
    return isinstance(options, dict) and "All" in (options.get("dryRun") or [])


def parse_options(request: web.Request, rtype: ResourceType, watch_path: bool) -> ListOptions:
    query = request.query
    try:
        limit = int(query.get("limit", "0") or 0)
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
    except ValueError as exc:
        raise errors.bad_request(str(exc)) from None
    sie = query.get("sendInitialEvents")
    return ListOptions(
        resource_version=query.get("resourceVersion", ""),
        match=query.get("resourceVersionMatch", ""),
        limit=max(limit, 0),
        continue_token=query.get("continue", ""),
        labels=parse_label_selector(query.get("labelSelector")),
        fields=parse_field_selector(query.get("fieldSelector"), rtype.kind),
        watch=watch_path or _flag(query, "watch"),
        bookmarks=_flag(query, "allowWatchBookmarks"),
        timeout_seconds=timeout,
        send_initial_events=None if sie is None else sie.lower() in ("1", "true"),
    )


class ResourceHandlers:
    def __init__(self, sim: Simulator, faults: Faults) -> None:
        self.sim = sim
        self.faults = faults
        self.watchers: weakref.WeakSet[Watcher] = weakref.WeakSet()
        self.responses: weakref.WeakSet[web.StreamResponse] = weakref.WeakSet()
        self.joins = SharedJoins()

    # -- routing -----------------------------------------------------------

    def target(self, group: str, version: str, tail: str) -> Target:
        segs = [s for s in tail.split("/") if s]
        watch_path = bool(segs) and segs[0] == "watch"
        segs = segs[1:] if watch_path else segs
        namespace = ""
        lookup = self.sim.registry.lookup
        if len(segs) >= 3 and segs[0] == "namespaces":
            inner = lookup(group, version, segs[2])
            if inner is not None and inner.namespaced:
                namespace, segs = segs[1], segs[2:]
        if not segs or len(segs) > 3:
            raise not_found_path()
        rtype = lookup(group, version, segs[0])
        if rtype is None:
            raise not_found_path()
        name = segs[1] if len(segs) > 1 else ""
        sub = segs[2] if len(segs) > 2 else ""
        if sub and not ((sub == "status" and rtype.has_status) or (sub == "scale" and scalable(rtype))):
            raise not_found_path()
        return Target(rtype, namespace, name, sub, watch_path)

    async def core(self, request: web.Request) -> web.StreamResponse:
        return await self.dispatch(request, "", "v1", request.match_info["tail"])

    async def grouped(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        return await self.dispatch(request, info["group"], info["version"], info["tail"])

    async def dispatch(self, request: web.Request, group: str, version: str, tail: str) -> web.StreamResponse:
        target = self.target(group, version, tail)
        if target.name:
            return await self._item(request, target)
        return await self._collection(request, target)

    async def _collection(self, request: web.Request, target: Target) -> web.StreamResponse:
        rtype = target.rtype
        if request.method == "GET":
            opts = parse_options(request, rtype, target.watch_path)
            if opts.watch:
                # Every watch counts as one; a watch that opens with the current
                # state is also a list by another name, counted as watch-list.
                self.sim.stats.count("watch", rtype)
                if _sends_initial(opts):
                    self.sim.stats.count("watch-list", rtype)
                return await self.watch(request, target, opts)
            self.sim.stats.count("list", rtype)
            return await self.list_objects(request, target, opts)
        if rtype.namespaced and not target.namespace:
            raise errors.method_not_allowed()
        if request.method == "POST":
            self.sim.stats.count("create", rtype)
            mode = fields.directive(request.query, "CreateOptions")
            body = await self._body(request)
            warnings = fields.check(rtype, body, mode, decoding=True)
            entry = self.sim.api.create(rtype, target.namespace, body, dry_run=_dry_run(request))
            return json_response(entry.raw, 201, warnings)
        if request.method == "DELETE" and "deletecollection" in rtype.verbs:
            self.sim.stats.count("deletecollection", rtype)
            return await self.delete_collection(request, target)
        raise errors.method_not_allowed()

    async def _item(self, request: web.Request, target: Target) -> web.StreamResponse:
        rtype, api = target.rtype, self.sim.api
        ns, name, sub = target.namespace, target.name, target.subresource
        if rtype.namespaced and not ns:
            raise not_found_path()
        method = request.method
        self.sim.stats.count(method.lower() if method != "PUT" else "update", rtype)
        dry = _dry_run(request)
        if sub == "scale":
            return await self._scale(request, target, dry)
        if method == "GET":
            return self._object(request, rtype, api.get(rtype, ns, name))
        if method == "PUT":
            mode = fields.directive(request.query, "UpdateOptions")
            body = await self._body(request)
            said = fields.check(rtype, body, mode, decoding=True)
            return json_response(api.update(rtype, ns, name, body, sub, dry_run=dry).raw, 200, said)
        if method == "PATCH":
            mode = fields.directive(request.query, "PatchOptions")
            content_type = request.headers.get("Content-Type", "")
            body = await self._body(request)
            warnings: list[str] = []

            def validate(obj: JSON) -> None:
                warnings.extend(fields.check(rtype, obj, mode, decoding=False))

            patched = api.patch(rtype, ns, name, content_type, body, sub, dry_run=dry, validate=validate)
            return json_response(patched.raw, 200, warnings)
        if method == "DELETE" and not sub:
            dry = dry or await _delete_dry_run(request)
            return json_response(api.delete(rtype, ns, name, dry_run=dry).raw)
        raise errors.method_not_allowed()

    async def _scale(self, request: web.Request, target: Target, dry: bool) -> web.Response:
        api, rtype = self.sim.api, target.rtype
        ns, name = target.namespace, target.name
        if request.method == "GET":
            return json_response(orjson.dumps(to_scale(api.get(rtype, ns, name))))
        body = await self._body(request)
        if request.method == "PUT":
            return json_response(orjson.dumps(write_scale(api, rtype, ns, name, body, dry)))
        if request.method == "PATCH":
            content_type = request.headers.get("Content-Type", "")
            scale = patch_scale(api, rtype, ns, name, content_type, body, dry)
            return json_response(orjson.dumps(scale))
        raise errors.method_not_allowed()

    @staticmethod
    async def _body(request: web.Request) -> Any:
        media_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        # A patch's media type names its kind of patch (kubesim.patch dispatches on it); its
        # body is JSON. An object's body is JSON or YAML here; kube-apiserver also takes
        # protobuf for built-in types (kubectl create sends it), which kubesim does not speak.
        if request.method != "PATCH" and media_type not in ("", JSON_TYPE, YAML_TYPE):
            raise errors.unsupported_body_type(media_type, accepted=(JSON_TYPE, YAML_TYPE))
        raw = await request.read()
        if media_type == YAML_TYPE:
            return _yaml_body(raw)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise errors.bad_request(f"the body of the request is not valid JSON: {exc}") from None

    # -- reads ---------------------------------------------------------------

    @staticmethod
    def _include(request: web.Request) -> str:
        return request.query.get("includeObject", "Metadata") or "Metadata"

    @staticmethod
    def _shape(request: web.Request) -> str:
        return media.negotiate(request.headers.get("Accept", ""))

    def _object(self, request: web.Request, rtype: ResourceType, entry: Entry) -> web.Response:
        shape = self._shape(request)
        if shape:
            obj = orjson.loads(entry.raw)
            rendered = media.render_object(shape, rtype, obj, self._include(request))
            return json_response(orjson.dumps(rendered))
        return json_response(entry.raw)

    async def list_objects(self, request: web.Request, target: Target, opts: ListOptions) -> web.Response:
        tstore = self.sim.api.tstore(target.rtype)
        page = await self.sim.lister.list(tstore, target.namespace, opts)
        shape = self._shape(request)
        if shape:
            objs = [orjson.loads(e.raw) for e in page.entries]
            meta, include = self._list_meta(page), self._include(request)
            rendered = media.render_list(shape, target.rtype, objs, meta, include)
            return json_response(orjson.dumps(rendered))
        return json_response(self._list_bytes(target.rtype, page))

    @staticmethod
    def _list_meta(page: Page) -> JSON:
        meta: JSON = {"resourceVersion": str(page.rv)}
        if page.continue_token:
            meta["continue"] = page.continue_token
        if page.remaining is not None:
            meta["remainingItemCount"] = page.remaining
        return meta

    def _list_bytes(self, rtype: ResourceType, page: Page) -> bytes:
        head = b'{"kind":"%s","apiVersion":"%s","metadata":%s,"items":[' % (
            rtype.list_kind.encode(),
            rtype.api_version.encode(),
            orjson.dumps(self._list_meta(page)),
        )
        return head + b",".join(e.raw for e in page.entries) + b"]}"

    async def delete_collection(self, request: web.Request, target: Target) -> web.Response:
        opts = parse_options(request, target.rtype, False)
        tstore = self.sim.api.tstore(target.rtype)
        page = await self.sim.lister.list(
            tstore, target.namespace, ListOptions(labels=opts.labels, fields=opts.fields)
        )
        dry = _dry_run(request) or await _delete_dry_run(request)
        gone = [self.sim.api.delete(target.rtype, e.namespace, e.name, dry_run=dry)
                for e in page.entries]
        return json_response(self._list_bytes(target.rtype, Page(gone, self.sim.store.rv, None, None)))

    # -- watch ---------------------------------------------------------------

    def _watcher(self, request: web.Request, target: Target, opts: ListOptions) -> Watcher:
        rtype, shape, include = target.rtype, self._shape(request), self._include(request)
        transform = None
        if shape:

            def transform(obj: JSON) -> JSON:
                return media.render_object(shape, rtype, obj, include)

        return Watcher(
            rtype, target.namespace, opts.labels, opts.fields, self.sim.config.watch_queue_max,
            transform,
        )

    def _start(
        self, tstore: TypeStore, watcher: Watcher, opts: ListOptions
    ) -> tuple[list[Entry], bytes | None]:
        """Register the watcher and take its starting point atomically (no await)."""
        rv_text = opts.resource_version
        initial: list[Entry] = []
        if _sends_initial(opts):
            initial = watcher.initial(tstore.iter_at(None, watcher.namespace, ""))
        elif rv_text not in ("", "0"):
            watcher.after = parse_rv(rv_text)
            try:
                watcher.replay(tstore.events_after(watcher.after))
            except TooOld as exc:
                return [], expired_line(exc.requested, exc.floor)
        tstore.sinks.add(watcher)
        return initial, None

    async def watch(self, request: web.Request, target: Target, opts: ListOptions) -> web.StreamResponse:
        validate(opts)
        error_line = None
        if opts.resource_version not in ("", "0"):
            rv = parse_rv(opts.resource_version)
            if opts.send_initial_events:
                error_line = await self._wait_fresh(rv)
        tstore = self.sim.api.tstore(target.rtype)
        self.sim.store.expire(tstore)
        watcher = self._watcher(request, target, opts)
        initial: list[Entry] = []
        if error_line is None:
            initial, error_line = self._start(tstore, watcher, opts)
        start_rv = self.sim.store.rv
        response = web.StreamResponse(headers={"Content-Type": JSON_TYPE})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            if error_line is not None:
                await response.write(error_line)
                return response
            self.watchers.add(watcher)
            self.responses.add(response)
            await self._stream(request, response, watcher, opts, initial, start_rv)
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            watcher.stop_timer()
            tstore.sinks.discard(watcher)
            self.watchers.discard(watcher)
        return response

    async def _wait_fresh(self, rv: int) -> bytes | None:
        """A streaming list waits for its RV; the cacher reports a timeout as an ERROR event."""
        try:
            await wait_for_rv(self.sim.store, rv, self.sim.config.rv_wait)
        except errors.StatusError as exc:
            return orjson.dumps({"type": "ERROR", "object": exc.status()}) + b"\n"
        return None

    async def _stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        watcher: Watcher,
        opts: ListOptions,
        initial: list[Entry],
        start_rv: int,
    ) -> None:
        interval = self.sim.config.bookmark_interval if opts.bookmarks else None
        pacer = Pacer(opts.timeout_seconds or default_timeout(), interval)
        for index in range(0, len(initial), INITIAL_CHUNK):
            chunk = initial[index : index + INITIAL_CHUNK]
            await response.write(b"".join(watcher.encode("ADDED", e) for e in chunk))
        if opts.send_initial_events:
            await response.write(watcher.bookmark(start_rv, initial_end=True))
        while not watcher.closed and not pacer.expired():
            await wait_for_lines(watcher, pacer, at_most=CLIENT_CHECK_S)
            if request.transport is None or request.transport.is_closing():
                break  # the client is gone
            await self.faults.gate()
            if watcher.closed:
                break  # dropped or overflowed: end the stream without what is queued
            rv = self.sim.store.rv
            lines = watcher.take()
            if lines:
                await response.write(self.joins.join(lines) if watcher.plain else b"".join(lines))
            if pacer.bookmark_due() and not watcher.closed:
                await response.write(watcher.bookmark(rv))

    def drop_watches(self) -> int:
        watchers = list(self.watchers)
        for watcher in watchers:
            watcher.close()
        return len(watchers)


def _sends_initial(opts: ListOptions) -> bool:
    """Whether a watch starts with synthetic ADDED events for every current object."""
    if opts.send_initial_events is not None:
        return opts.send_initial_events
    return opts.resource_version in ("", "0")


def _yaml_body(raw: bytes) -> Any:
    """One YAML document, read with the safe loader (plain data, no tags that build objects)."""
    try:
        return yaml.load(raw, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise errors.bad_request(f"the body of the request is not valid YAML: {exc}") from None

