"""The ingest listener's /metrics, scraped over HTTP after real pushes (agent's HttpSink)
and pull-mode writes (StoreSink): the series of the cluster and type move."""

from __future__ import annotations

import asyncpg
import orjson

from agent import protocol
from agent.events import RawObject, WatchEvent
from agent.push import HttpSink
from syncer.ingest import Store
from syncer.sink import StoreSink
from tests.factories import PODS, pod
from tests.scraping import scrape
from tests.syncer.conftest import Ingest


async def test_a_push_moves_its_clusters_series(ingest: Ingest) -> None:
    token = await ingest.register_push("metered")
    before = await scrape(ingest.session, ingest.url)
    async with HttpSink(base_url=ingest.url, cluster="metered", token=token) as sink:
        snapshot = await sink.snapshot_start(PODS, reason="expired")
        await sink.snapshot_page(PODS, snapshot, [pod("a", 1), pod("b", 2)])
        await sink.snapshot_end(PODS, snapshot, resource_version="2", count=2)
        await sink.changes(PODS, [WatchEvent(type="MODIFIED", object=pod("a", 3))], resource_version="3",
                           after="2")
    after = await scrape(ingest.session, ingest.url)
    key = {"cluster": "metered", "resource": "pods"}
    assert after.value("kubepedia_ingest_relists_total", **key, reason="expired") == \
        before.value("kubepedia_ingest_relists_total", **key, reason="expired") + 1
    assert after.value("kubepedia_ingest_snapshot_objects_total", **key) == 2
    assert after.value("kubepedia_ingest_events_total", **key) == 1
    for operation in ("snapshot_start", "snapshot_page", "snapshot_end", "changes"):
        assert after.value("kubepedia_ingest_write_seconds_count", operation=operation) > \
            before.value("kubepedia_ingest_write_seconds_count", operation=operation)
    assert {"cluster": "metered"} in after.series("kubepedia_sync_lag_seconds")
    assert after.value("kubepedia_db_pool_max_connections", pool="ingest") > 0
    assert {"pool": "ingest", "state": "idle"} in after.series("kubepedia_db_pool_connections")


async def test_a_reason_we_do_not_know_is_unknown(ingest: Ingest) -> None:
    token = await ingest.register_push("odd")
    body = {**protocol.snapshot_start_body(PODS), "reason": "made-up-" + "x" * 50}
    async with ingest.session.post(ingest.url + protocol.snapshots_path("odd"), data=orjson.dumps(body),
                                   headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
    found = await scrape(ingest.session, ingest.url)
    reasons = {s["reason"] for s in found.series("kubepedia_ingest_relists_total") if s["cluster"] == "odd"}
    assert reasons == {"unknown"}


async def test_a_removed_clusters_series_go(ingest: Ingest) -> None:
    token = await ingest.register_push("leaving")
    async with HttpSink(base_url=ingest.url, cluster="leaving", token=token) as sink:
        await sink.snapshot_start(PODS)
    assert any(s["cluster"] == "leaving" for s in (await scrape(ingest.session, ingest.url))
               .series("kubepedia_ingest_relists_total"))
    status, _ = await ingest.admin("DELETE", "/admin/v1/clusters/leaving")
    assert status == 200
    found = await scrape(ingest.session, ingest.url)
    for name in ("kubepedia_ingest_relists_total", "kubepedia_sync_lag_seconds"):
        assert not any(s.get("cluster") == "leaving" for s in found.series(name)), name


async def test_pull_mode_writes_are_counted_per_cluster(ingest: Ingest, pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO clusters (name, mode) VALUES ('pulled', 'pull')")
    sink = StoreSink(store=Store(pool), cluster="pulled")
    snapshot = await sink.snapshot_start(PODS, reason="overflow")
    await sink.snapshot_page(PODS, snapshot, [RawObject.encode(pod("a", 1))])
    await sink.snapshot_end(PODS, snapshot, resource_version="1", count=1)
    await sink.changes(PODS, [WatchEvent(type="ADDED", object=pod("b", 2))], resource_version="2", after="1")
    found = await scrape(ingest.session, ingest.url)
    key = {"cluster": "pulled", "resource": "pods"}
    assert found.value("kubepedia_ingest_relists_total", **key, reason="overflow") == 1
    assert found.value("kubepedia_ingest_snapshot_objects_total", **key) == 1
    assert found.value("kubepedia_ingest_events_total", **key) == 1
    assert {"cluster": "pulled"} in found.series("kubepedia_sync_lag_seconds")
