"""Churn: a cluster's own pod writes, made in-process, seen by watchers like any write."""

from __future__ import annotations

import aiohttp
import pytest

from kubesim import churn
from kubesim.clusters import running_clusters
from kubesim.server import SimServer
from tests.kubesim.conftest import call, fast_config, pod_body, wait_until, watch_lines

PODS = "/api/v1/pods"


async def _pods(http: aiohttp.ClientSession, sim: SimServer) -> tuple[int, int]:
    _, body = await call(http, "GET", sim.url + PODS)
    return int(body["metadata"]["resourceVersion"]), len(body["items"])


async def test_each_write_is_one_event_in_order(sim: SimServer, http: aiohttp.ClientSession) -> None:
    rv, before = await _pods(http, sim)
    status, started = await call(http, "POST", sim.url + "/_kubesim/churn", rate=5000, writes=300)
    assert status == 200 and started["rate"] == 5000
    events = await watch_lines(http, sim.url + PODS, count=300, resourceVersion=rv)
    # Nothing else writes: the churn's writes are the versions after the list's, in order.
    assert [int(e["object"]["metadata"]["resourceVersion"]) for e in events] == list(
        range(rv + 1, rv + 301))
    # The watcher may see the last write before the churn task has ended.
    await wait_until(lambda: not sim.churn.status()["running"])
    _, churn = await call(http, "GET", sim.url + "/_kubesim/churn")
    assert churn["writes"] == 300 and churn["errors"] == 0 and not churn["running"]
    ops = churn["byOperation"]
    kinds = [e["type"] for e in events]
    assert (kinds.count("ADDED"), kinds.count("DELETED"), kinds.count("MODIFIED")) == (
        ops["create"], ops["delete"], ops["status"])
    assert ops["status"] > ops["create"] > 0
    _, after = await _pods(http, sim)
    assert after == before + ops["create"] - ops["delete"]
    modified = next(e["object"] for e in events if e["type"] == "MODIFIED")
    assert modified["metadata"]["annotations"]["kubesim/churn-tick"]


async def test_recorded_status_writes_are_the_watched_ones(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    """A freshness measurement's record: each status update's resourceVersion and pod, as
    a watcher sees them, and nothing but status updates."""
    rv, before = await _pods(http, sim)
    _, started = await call(http, "POST", sim.url + "/_kubesim/churn", rate=5000, writes=200,
                            statusOnly="true", record="true")
    assert started["statusOnly"] and started["recording"]
    events = await watch_lines(http, sim.url + PODS, count=200, resourceVersion=rv)
    await wait_until(lambda: not sim.churn.status()["running"])
    _, taken = await call(http, "POST", sim.url + "/_kubesim/churn/acks")
    assert {e["type"] for e in events} == {"MODIFIED"}
    watched = [(int(e["object"]["metadata"]["resourceVersion"]), e["object"]["metadata"]["namespace"],
                e["object"]["metadata"]["name"]) for e in events]
    assert [(a[1], a[2], a[3]) for a in taken["acks"]] == watched and taken["dropped"] == 0
    times = [a[0] for a in taken["acks"]]
    assert times == sorted(times)
    assert (await _pods(http, sim))[1] == before
    _, again = await call(http, "POST", sim.url + "/_kubesim/churn/acks")
    assert again["acks"] == [], "a take empties the record"


async def test_the_record_is_bounded(
    sim: SimServer, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(churn, "ACKS_CAP", 30)
    await call(http, "POST", sim.url + "/_kubesim/churn", rate=5000, writes=50, statusOnly="true",
               record="true")
    await wait_until(lambda: not sim.churn.status()["running"])
    _, taken = await call(http, "POST", sim.url + "/_kubesim/churn/acks")
    assert (len(taken["acks"]), taken["dropped"]) == (30, 20)


async def test_unrecorded_churn_keeps_no_acks(sim: SimServer, http: aiohttp.ClientSession) -> None:
    _, started = await call(http, "POST", sim.url + "/_kubesim/churn", rate=5000, writes=50)
    assert not started["recording"]
    await wait_until(lambda: not sim.churn.status()["running"])
    _, taken = await call(http, "POST", sim.url + "/_kubesim/churn/acks")
    assert taken == {"acks": [], "dropped": 0}


async def test_rate_zero_stops(http: aiohttp.ClientSession) -> None:
    async with running_clusters(
        1, generate={"pods": 5}, config=fast_config(), churn=200.0
    ) as (server,):
        await wait_until(lambda: server.churn.status()["writes"] > 10)
        _, stopped = await call(http, "POST", server.url + "/_kubesim/churn", rate=0)
        assert not stopped["running"]
        rv = server.sim.store.rv
        await call(http, "POST", server.url + "/api/v1/namespaces/default/pods", pod_body("mine"))
        assert server.sim.store.rv == rv + 1


async def test_pods_to_copy_or_not(http: aiohttp.ClientSession) -> None:
    """Without pods the churn makes its own; writes that fail are counted, not raised."""
    async with running_clusters(1, config=fast_config()) as (server,):
        server.churn.write(5)
        assert server.churn.counts["create"] >= 2 and server.churn.errors == 0
        await call(http, "DELETE", server.url + "/api/v1/namespaces/default")
        rv = server.sim.store.rv
        server.churn.write(3)  # a new pod in the deleted namespace each time: 404
        assert server.churn.errors == 3 and server.sim.store.rv == rv


@pytest.mark.parametrize(
    ("params", "named"),
    [({}, "rate"), ({"rate": "-1"}, "rate"), ({"rate": "nan"}, "rate"),
     ({"rate": "fast"}, "rate"), ({"rate": "1e9"}, "rate"),
     ({"rate": "10", "seconds": "inf"}, "seconds"), ({"rate": "10", "writes": "-5"}, "writes"),
     ({"rate": "10", "record": "yes"}, "record"), ({"rate": "10", "statusOnly": "1"}, "statusOnly")],
)
async def test_bad_parameters_are_400(
    sim: SimServer, http: aiohttp.ClientSession, params: dict[str, str], named: str
) -> None:
    status, body = await call(http, "POST", sim.url + "/_kubesim/churn", **params)
    assert status == 400 and body["kind"] == "Status"
    assert body["message"].startswith(named)
    assert not sim.churn.running
