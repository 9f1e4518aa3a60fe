"""The read API's /metrics, scraped over HTTP after real requests."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.apiserver.conftest import Api, watching
from tests.scraping import Scrape, scrape

LIST_ROUTE = "/api/{version}/{resource}"
Synced = dict[str, list[dict[str, Any]]]
DURATION = "kubepedia_api_request_duration_seconds_count"


def _count(found: Scrape, route: str, method: str, code: str) -> float:
    return found.value(DURATION, route=route, method=method, code=code)


async def test_requests_count_under_their_route_template(api: Api, filled: Synced) -> None:
    before = await scrape(api.session, api.url)
    for _ in range(2):
        assert (await api.get("/api/v1/pods"))[0] == 200
    assert (await api.get("/api/v1/nosuchthings"))[0] == 404
    assert (await api.request("POST", "/api/v1/pods"))[0] == 405
    assert (await api.get("/not/a/kubernetes/path/at-all"))[0] == 404
    after = await scrape(api.session, api.url)
    assert _count(after, LIST_ROUTE, "GET", "200") == _count(before, LIST_ROUTE, "GET", "200") + 2
    assert _count(after, LIST_ROUTE, "GET", "404") == _count(before, LIST_ROUTE, "GET", "404") + 1
    assert _count(after, LIST_ROUTE, "POST", "405") == _count(before, LIST_ROUTE, "POST", "405") + 1
    assert _count(after, "unmatched", "GET", "404") == _count(before, "unmatched", "GET", "404") + 1
    routes = {s["route"] for s in after.series(DURATION)}
    assert not any("nosuchthings" in r or "at-all" in r for r in routes), routes
    assert after.value("kubepedia_db_pool_max_connections", pool="api") > 0
    assert after.value("kubepedia_change_log_oldest_age_seconds") > 0


async def test_unknown_methods_make_no_series(api: Api) -> None:
    async with api.session.request("PROPFIND", api.url + "/api/v1/pods") as resp:
        code = str(resp.status)
    found = await scrape(api.session, api.url)
    assert "PROPFIND" not in {s["method"] for s in found.series(DURATION)}
    assert found.value(DURATION, route=LIST_ROUTE, method="other", code=code) >= 1


async def test_open_watches_are_counted_and_timed_apart(api: Api, filled: Synced) -> None:
    before = await scrape(api.session, api.url)
    opened = before.value("kubepedia_api_open_watches") + 1
    async with watching(api, "/api/v1/pods", resourceVersion="0", timeoutSeconds="3"):
        # Polled: the handler counts itself once past its initial events.
        while (await scrape(api.session, api.url)).value("kubepedia_api_open_watches") < opened:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    # Polled: the watch ends when its timeoutSeconds is up (other tests' watches may have
    # been timed already: this one's is the next).
    timed = before.value(DURATION, route=LIST_ROUTE, method="WATCH", code="200") + 1
    while (after := await scrape(api.session, api.url)).value(  # noqa: ASYNC110
            DURATION, route=LIST_ROUTE, method="WATCH", code="200") < timed:
        await asyncio.sleep(0.05)
    assert after.value("kubepedia_api_open_watches") == before.value("kubepedia_api_open_watches")
