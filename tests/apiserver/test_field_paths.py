"""Field selectors on JSON paths over real HTTP: lists (SQL) and watches (in memory) agree
with the evaluator of kube.fieldpaths on generated objects in several clusters; asOf
lists select the same way; bad selectors are 400s naming fieldSelector; kubectl sends
them; and a container's image is found by its index at a realistic size."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest_asyncio

from apiserver.app import build_app
from apiserver.query import EVERYTHING_SCOPE, Target, compiled, list_statement
from apiserver.times import rfc3339
from apiserver.watch import _matches
from kube.selectors import parse_field_selector
from kubepedia.tls import CERT_FILE
from kubesim import objects
from syncer.ingest import Store
from tests.access import TEST_TOKEN, granted
from tests.apiserver.conftest import CLUSTERS, Api, next_events, serving, watching
from tests.factories import PODS, event, pod

Key = tuple[str, str, str]  # cluster, namespace, name
IMAGES = ("nginx:1.25", "nginx:1.27", "redis:7", "a,b=c(d)", "3", "true", "")
TIMES = ("2026-01-02T03:04:05Z", "2026-01-02T04:04:05+01:00", "2026-01-02T03:04:05.0000005Z",
         "2026-01-02 03:04:06z", "2025-12-31T23:59:60Z", "2026-02-30T00:00:00Z", "yesterday", "")
ODD_KEY = "q'\"\u00e9 /x.y\t\u0001\\"
# Paths, and values they may be compared with (escaped in the selector where needed).
PATHS: dict[str, tuple[str, ...]] = {
    "spec.containers[].image": IMAGES,
    "spec.initContainers[].image": IMAGES,
    "spec.containers[].ports[].containerPort": ("80", "80.0", "8080", "443", "true"),
    "spec.containers.image": ("nginx:1.25",),  # containers is a list: reaches nothing
    "spec.containers[].name": ("c0", "c1"),
    "spec.replicas": ("3", "3.0", "1.5", "-2", "0", "true", "03", str(2**62 + 1), str(2**62)),
    "spec.args": ("a", "1"),
    "spec.args[]": ("a", "1", "1.0", "false"),
    "spec.args[][]": ("a",),
    "metadata.annotations['a.b/c']": ("x", "x,y", "", "1"),
    "metadata.annotations[\"" + ODD_KEY.replace("\\", "\\\\").replace('"', '\\"') + "\"]": ("v", "w"),
    "metadata.labels.app": ("web", "db"),
    "metadata.annotations": ("x",),  # the object's own: not the annotations the read API adds
    "metadata.annotations['kubepedia.io/cluster']": CLUSTERS,
    "status.podIP": ("10.0.0.1", ""),
    "status.startTime": TIMES,
    "spec.flag": ("true", "false"),
    "spec.nodeName": ("n1", "n2", ""),  # Kubernetes' fields for pods: their meaning
    "status.phase": ("Running", "Pending", ""),
    "spec.hostNetwork": ("true", "false"),
    "metadata.name": ("p-001", "p-002"),
    "spec": ("x",),
}
BOUNDS = {"spec.replicas": ("0", "2.5", "-3", "1e2"),
          "spec.containers[].ports[].containerPort": ("80", "443.5"),
          "spec.args[]": ("0",),
          "status.startTime": ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05.000001Z",
                               "2026-01-01T23:00:00-04:00")}


def _some(rng: random.Random, *choices: Any) -> Any:
    return rng.choice(choices)


def _container(rng: random.Random, i: int) -> Any:
    if rng.random() < 0.05:
        return _some(rng, "text", None, 3)
    container: dict[str, Any] = {"name": f"c{i}"}
    if rng.random() < 0.9:
        container["image"] = _some(rng, *IMAGES, 3, True, None, ["nginx:1.25"])
    ports = _some(rng, None, [], [{"containerPort": _some(rng, 80, 8080, 443, "80", 80.0, None, 1.5)}
                                  for _ in range(rng.randrange(1, 3))],
                  {"containerPort": 80}, "80")
    if ports is not None:
        container["ports"] = ports
    return container


def _generated(rng: random.Random, cluster: str, i: int) -> dict[str, Any]:
    """A pod whose fields take the shapes a JSON path can meet: missing, null, lists,
    numbers, booleans, strings, objects, dotted keys."""
    spec: dict[str, Any] = {"nodeName": _some(rng, "n1", "n2", None)}
    containers = [_container(rng, k) for k in range(rng.randrange(0, 4))]
    spec["containers"] = _some(rng, containers, containers, containers, {"image": "nginx:1.25"}, None)
    if rng.random() < 0.3:
        spec["initContainers"] = [_container(rng, 9)]
    if i % 10 == 3:  # images too long to index: pod_images is NULL, the object decides
        spec["initContainers"] = [{"name": f"i{k}", "image": "x" * 150} for k in range(15)]
        spec["containers"] = [_container(rng, k) for k in range(3)]
    for key, shapes in (("replicas", (0, 3, 3.0, 1.5, -2, "3", True, None, [3], {"a": 3}, 2**62 + 1)),
                        ("args", (["a", 1, True], ["b"], "a", [["a"]], [], 1.0)),
                        ("flag", (True, False, "true", None)),
                        ("hostNetwork", (True, False))):
        if rng.random() < 0.8:
            spec[key] = _some(rng, *shapes)
    annotations = {k: v for k, v in (("a.b/c", _some(rng, "x", "x,y", "", 1, None)),
                                     (ODD_KEY, _some(rng, "v", "w"))) if rng.random() < 0.6}
    status = {k: v for k, v in (("phase", _some(rng, "Running", "Pending")),
                                ("podIP", _some(rng, "10.0.0.1", "", None)),
                                ("startTime", _some(rng, *TIMES, 5))) if rng.random() < 0.8}
    return pod(f"p-{i:03d}", 10 + i, namespace=_some(rng, "default", "web"), uid=f"{cluster}-{i}",
               labels={"app": _some(rng, "web", "db")}, metadata={"annotations": annotations} if annotations
               else {}, spec=spec, status=status)


def _escaped(value: str) -> str:
    for char in "\\,=()":
        value = value.replace(char, "\\" + char)
    return value


def _requirement(rng: random.Random) -> str:
    path = rng.choice(list(PATHS))
    values = PATHS[path]
    op = rng.choice(("=", "==", "!=", "in", "notin", "exists", "!", "<", ">"))
    if op in ("<", ">"):
        if path not in BOUNDS:
            return path
        return f"{path}{op}{rng.choice(BOUNDS[path])}"
    if op == "exists":
        return path
    if op == "!":
        return "!" + path
    if op in ("in", "notin"):
        chosen = rng.sample(values, rng.randrange(1, min(3, len(values)) + 1))
        inner = ", ".join(_escaped(v) for v in chosen)
        return f"{path} {op} ({inner if inner.strip() else ','})"  # (,): the empty value alone
    return f"{path}{op}{_escaped(rng.choice(values))}"


def _selectors(rng: random.Random, count: int) -> Iterator[str]:
    for path, values in PATHS.items():  # every path and value once
        for value in values:
            yield f"{path}={_escaped(value)}"
        yield path
    for _ in range(count):
        yield ",".join(_requirement(rng) for _ in range(rng.randrange(1, 4)))


@pytest_asyncio.fixture
async def generated(pool: asyncpg.Pool) -> dict[Key, dict[str, Any]]:
    rng = random.Random(7)
    store = Store(pool)
    stored: dict[Key, dict[str, Any]] = {}
    for cluster in CLUSTERS:
        await pool.execute("INSERT INTO clusters (name, mode) VALUES ($1, 'push')", cluster)
        pods = [_generated(rng, cluster, i) for i in range(60)]
        async with store.snapshot(cluster=cluster, rtype=PODS) as snap:
            await snap.add(pods)
            await snap.end("100")
        stored.update({(cluster, p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods})
    return stored


def _key(obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return meta["annotations"]["kubepedia.io/cluster"], meta["namespace"], meta["name"]


async def _paged(api: Api, selector: str) -> list[Key]:
    """Every page of a list of 7 objects a page, through its continue tokens."""
    found: list[Key] = []
    query = {"fieldSelector": selector, "limit": "7"}
    while True:
        status, body = await api.get("/api/v1/pods", **query)
        assert status == 200, body
        found += [_key(i) for i in body["items"]]
        if not body["metadata"].get("continue"):
            return found
        query["continue"] = body["metadata"]["continue"]


async def test_lists_and_watches_agree_with_the_evaluator(api: Api,
                                                          generated: dict[Key, dict[str, Any]]) -> None:
    async with watching(api, "/api/v1/pods", resourceVersion="0") as events:  # objects as watches see them
        watched = {_key(e["object"]): orjson.dumps(e["object"]).decode()
                   for e in await next_events(events, len(generated))}
    assert watched.keys() == generated.keys()
    assert len({"".join(sorted(str(p["spec"]))) for p in generated.values()}) > 100, "varied objects"
    nonempty = 0
    for selector in _selectors(random.Random(11), 300):
        fields = parse_field_selector(selector, "Pod", json_paths=True)
        expected = {k for k, p in generated.items() if fields.selects("Pod", p)}
        status, body = await api.get("/api/v1/pods", fieldSelector=selector)
        assert status == 200, (selector, body)
        assert {_key(i) for i in body["items"]} == expected, selector
        if selector.startswith("spec.containers[].image"):  # pages of keys first (apiserver.query)
            assert await _paged(api, selector) == sorted(expected, key=lambda k: (k[1], k[2], k[0])), selector
        target = Target(group="", version="v1", resource="pods", kind="Pod", fields=fields)
        assert {k for k, text in watched.items() if _matches(target, text)} == expected, selector
        nonempty += 0 < len(expected) < len(generated)
    assert nonempty > 150, "most selectors choose some objects, not none or all"


async def test_each_shape_reads_as_documented(api: Api, pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO clusters (name, mode) VALUES ('east', 'push')")
    spec = {"replicas": 3.0, "l": [["a"], "b", None, 2], "m": {"k": [1]}, "z": None}
    notes = {"a.b/c": "x,y", "kubepedia.io/cluster": "mine"}
    async with Store(pool).snapshot(cluster="east", rtype=PODS) as snap:
        await snap.add([pod("one", 1, spec=spec, metadata={"annotations": notes}), pod("two", 2)])
        await snap.end("3")
    cases = {"spec.replicas=3": ["one"], "spec.replicas=3.00": ["one"], "spec.replicas in (3.5, 3)": ["one"],
             "spec.l=b": [], "spec.l[]=b": ["one"], "spec.l[][]=a": ["one"], "spec.l[]=2": ["one"],
             "spec.l[]!=b": ["two"], "spec.m.k[]=1": ["one"], "spec.m.k=1": [], "spec.z": [],
             "!spec.z": ["one", "two"], r"metadata.annotations['a.b/c']=x\,y": ["one"],
             # The object as the member cluster has it: not the annotation the read API adds.
             "metadata.annotations['kubepedia.io/cluster']=east": [],
             "metadata.annotations['kubepedia.io/cluster']=mine": ["one"],
             "spec.containers[].image in (nginx:1.27)": ["two"],
             "metadata.creationTimestamp>2026-01-02T03:04:04.999999Z": ["one", "two"],
             "metadata.creationTimestamp<2026-01-02T04:04:05.000001+01:00": ["one", "two"],
             "metadata.creationTimestamp>2026-01-02T03:04:05Z": []}
    for selector, names in cases.items():
        status, body = await api.get("/api/v1/pods", fieldSelector=selector)
        assert status == 200, body
        assert sorted(i["metadata"]["name"] for i in body["items"]) == names, selector


BAD = {"spec.containers[0].image=x": "bad path", "spec..x=1": "bad path",
       "spec.unknown~x": "unknown operator", "spec.replicas>=3": "unknown operator",
       "spec.replicas>three": "bad number or time",
       "status.startTime<2026-13-01T00:00:00Z": "bad number or time", "a=b=c": "unescaped '='",
       "a in (" + ",".join(["vvv"] * 101) + ")": "more than 100 values",
       "metadata.annotations['a\x00']": "NUL"}


async def test_bad_selectors_are_400s_that_say_why(api: Api, pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO clusters (name, mode) VALUES ('east', 'push')")
    async with Store(pool).snapshot(cluster="east", rtype=PODS) as snap:
        await snap.add([pod("one", 1)])
        await snap.end("2")
    for selector, words in BAD.items():
        for path in ("/api/v1/pods", "/clusters/east/api/v1/namespaces/default/pods"):
            for watch in ({}, {"watch": "1"}):
                status, body = await api.get(path, fieldSelector=selector, **watch)
                where = (selector, path, watch, status, body)
                assert (status, body.get("kind"), body.get("reason")) == (400, "Status", "BadRequest"), where
                assert body["message"].startswith("invalid fieldSelector: "), where
                assert words in body["message"], where


async def test_a_watch_follows_an_object_in_and_out_of_a_json_path_selector(api: Api,
                                                                            pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO clusters (name, mode) VALUES ('east', 'push')")
    store = Store(pool)
    old = pod("web", 1, spec={"containers": [{"name": "c", "image": "nginx:1.25"}]})
    async with store.snapshot(cluster="east", rtype=PODS) as snap:
        await snap.add([old, pod("other", 2)])
        await snap.end("3")
    _, body = await api.get("/api/v1/pods", limit="1")
    rv = body["metadata"]["resourceVersion"]
    newer = pod("web", 4, spec={"containers": [{"name": "c", "image": "nginx:1.27"},
                                               {"name": "d", "image": "nginx:1.25"}]})
    moved = pod("web", 5, spec={"containers": [{"name": "c", "image": "nginx:1.27"}]})
    back = pod("web", 6, spec={"containers": [{"name": "c", "image": "nginx:1.25"}]})
    selector = "spec.containers[].image=nginx:1.25,metadata.resourceVersion!=4"
    portless = "!spec.containers[].ports"
    async with watching(api, "/api/v1/pods", resourceVersion=rv, fieldSelector=selector) as web, \
            watching(api, "/api/v1/pods", resourceVersion="0", fieldSelector=portless) as bare:
        assert [e["object"]["metadata"]["name"] for e in await next_events(bare, 2)] == ["other", "web"]
        await store.apply_batch(cluster="east", rtype=PODS, events=[
            event("MODIFIED", newer), event("MODIFIED", moved), event("MODIFIED", back),
            event("DELETED", back)])
        # Out of the selection (the member's resourceVersion 4, then no such image), back in, gone;
        # an object leaving the selection is sent as DELETED in its new state, as Kubernetes does.
        got = [(e["type"], e["object"]["metadata"]["annotations"]["kubepedia.io/resource-version"])
               for e in await next_events(web, 3)]
        assert got == [("DELETED", "4"), ("ADDED", "6"), ("DELETED", "6")]
        assert [e["type"] for e in await next_events(bare, 4)] == ["MODIFIED"] * 3 + ["DELETED"]


async def test_as_of_lists_select_on_json_paths(api: Api, pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO clusters (name, mode) VALUES ('east', 'push')")
    store = Store(pool)
    pods = [pod(f"p{i}", i, spec={"replicas": i, "containers": [{"name": "c", "image": f"app:{i % 2}"}]})
            for i in range(1, 7)]
    async with store.snapshot(cluster="east", rtype=PODS) as snap:
        await snap.add(pods)
        await snap.end("10")
    when = rfc3339(await pool.fetchval("SELECT clock_timestamp()"))
    changed = [{**p, "metadata": {**p["metadata"], "resourceVersion": "20"},
                "spec": {**p["spec"], "replicas": 0, "containers": [{"name": "c", "image": "app:2"}]}}
               for p in pods[:3]]
    await store.apply_batch(cluster="east", rtype=PODS, events=[event("MODIFIED", p) for p in changed])
    for selector, then, now in (("spec.containers[].image=app:1", ["p1", "p3", "p5"], ["p5"]),
                                ("spec.replicas>2,spec.replicas<6", ["p3", "p4", "p5"], ["p4", "p5"]),
                                ("spec.containers[].image notin (app:0)", ["p1", "p3", "p5"],
                                 ["p1", "p2", "p3", "p5"])):
        for params, names in (({"asOf": when}, then), ({}, now), ({"asOf": when, "limit": "2"}, then[:2])):
            status, body = await api.get("/api/v1/pods", fieldSelector=selector, **params)
            assert status == 200, body
            assert [i["metadata"]["name"] for i in body["items"]] == names, (selector, params)


async def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, list(args), capture_output=True, text=True, check=False)


async def test_kubectl_sends_json_path_field_selectors(db_url: str, pool: asyncpg.Pool,
                                                       tmp_path: Path) -> None:
    # Over https: kubectl sends the kubeconfig's token to an https server only.
    async with serving(build_app(database_url=db_url, access=granted()), tls=tmp_path) as api:
        await _kubectl_field_selectors(api, pool, tmp_path)


async def _kubectl_field_selectors(api: Api, pool: asyncpg.Pool, tmp_path: Path) -> None:
    await pool.execute("INSERT INTO clusters (name, mode) VALUES ('east', 'push'), ('west', 'push')")
    store = Store(pool)
    for cluster in ("east", "west"):
        async with store.snapshot(cluster=cluster, rtype=PODS) as snap:
            await snap.add([pod("old", 1, spec={"nodeName": f"{cluster}-n", "containers": [
                               {"name": "c", "image": "nginx:1.25"}]}), pod("new", 2)])
            await snap.end("3")
    config = await _run(sys.executable, "-m", "kubepedia", "kubeconfig", "--server", api.url,
                        "--token", TEST_TOKEN, "--ca", str(tmp_path / CERT_FILE))
    assert config.returncode == 0, config.stderr
    (tmp_path / "kubeconfig").write_text(config.stdout)
    kubectl = ["kubectl", "--kubeconfig", str(tmp_path / "kubeconfig"), "get", "pods", "-A", "-o", "name"]
    found = await _run(*kubectl, "--field-selector", "spec.containers[].image=nginx:1.25")
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["pod/old", "pod/old"]
    found = await _run(*kubectl, "--field-selector",
                       "metadata.annotations['x.io/y'] notin (a,b),spec.nodeName=west-n")
    assert (found.returncode, found.stdout.split()) == (0, ["pod/old"]), found.stderr
    found = await _run(*kubectl, "--field-selector", "spec.nodeName=east-n")  # Kubernetes' own syntax
    assert (found.returncode, found.stdout.split()) == (0, ["pod/old"]), found.stderr
    refused = await _run(*kubectl, "--field-selector", "spec.containers[0].image=x")
    assert refused.returncode == 1 and "invalid fieldSelector: bad path" in refused.stderr


# -- the index, at a realistic size ----------------------------------------------------------------

PLAN_CLUSTERS = ("c1", "c2", "c3", "c4")
PLAN_PODS = 10_000  # per cluster
TEMPLATES = 400  # each with an image of its own: 100 pods per image
COLUMNS = ("cluster", "grp", "version", "resource", "kind", "namespace", "name", "uid", "resource_version",
           "labels", "created_at", "seq", "object")


def _plan_rows(rng: random.Random) -> Iterator[tuple[Any, ...]]:
    templates = []
    for i in range(TEMPLATES):
        tpl = objects.make_pod(rng, "t", f"t-{i}")
        tpl["spec"]["containers"][0]["image"] = f"registry.example.com/team-{i % 40}/app-{i}:1.{i}"
        templates.append(tpl)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    seq = 0
    for cluster in PLAN_CLUSTERS:
        for i in range(PLAN_PODS):
            seq += 1
            tpl = templates[i % TEMPLATES]
            ns, name = f"ns-{i % 20:02d}", f"pod-{i}"
            meta = {**tpl["metadata"], "name": name, "namespace": ns, "uid": f"{cluster}-{i}"}
            yield (cluster, "", "v1", "pods", "Pod", ns, name, f"{cluster}-{i}", "1", meta["labels"], created,
                   seq, orjson.dumps({**tpl, "metadata": meta}))


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


async def test_a_container_image_is_found_by_its_index(pool: asyncpg.Pool) -> None:
    """40,000 realistic pods (4.6 KB each) in four clusters: the first page of a list by
    image (as kubectl asks, 500 at a time) reads the GIN index on pod_images and the
    (empty) index of pods whose images are not indexed, never every pod."""
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("resources", columns=COLUMNS, records=_plan_rows(random.Random(5)))
        await conn.execute("VACUUM (ANALYZE) resources")
        await conn.execute("SET plan_cache_mode = force_custom_plan")  # as the read API plans
        for selector, count in (("spec.containers[].image=registry.example.com/team-7/app-47:1.47", 100),
                                ("spec.containers[].image in (registry.example.com/team-7/app-47:1.47,"
                                 " registry.example.com/team-8/app-8:1.8)", 200)):
            target = Target(group="", version="v1", resource="pods", kind="Pod",
                            fields=parse_field_selector(selector, "Pod", json_paths=True))
            sql, params = compiled(list_statement(target, EVERYTHING_SCOPE, limit=500))
            plan = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *params)
            nodes = list(_plan_nodes(plan[0]["Plan"]))
            scans = [(n["Node Type"], n.get("Index Name", "")) for n in nodes if "Scan" in n["Node Type"]]
            assert ("Bitmap Index Scan", "resources_pod_images") in scans, scans
            assert ("Bitmap Index Scan", "resources_pod_images_unbounded") in scans, scans
            assert not [s for s in scans if s[0] == "Seq Scan"], scans
            assert nodes[0]["Actual Rows"] == count
