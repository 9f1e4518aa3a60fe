"""Paged lists stay consistent at the first page's RV under random concurrent writes."""

from __future__ import annotations

import random

from kubesim.listing import ListOptions
from kubesim.simulator import SimConfig, Simulator
from tests.kubesim.conftest import pod_body

NAMESPACES = ("default", "kube-public", "kube-system")


def _random_write(sim: Simulator, rng: random.Random, serial: list[int]) -> None:
    pods = sim.registry.lookup("", "v1", "pods")
    assert pods is not None
    tstore = sim.api.tstore(pods)
    roll = rng.random()
    if roll < 0.4 or not tstore.keys:
        serial[0] += 1
        sim.api.create(pods, rng.choice(NAMESPACES), pod_body(f"p{rng.randrange(10**6)}-{serial[0]}"))
        return
    entry = tstore.objects[rng.choice(tstore.keys)]
    if roll < 0.7:
        patch = {"metadata": {"labels": {"n": str(rng.randrange(10**6))}}}
        sim.api.patch(pods, entry.namespace, entry.name, "application/merge-patch+json", patch)
    else:
        sim.api.delete(pods, entry.namespace, entry.name)


async def test_random_writes_between_pages() -> None:
    sim = Simulator(SimConfig())
    rng = random.Random(42)
    serial = [0]
    for _ in range(80):
        _random_write(sim, rng, serial)
    pods = sim.registry.lookup("", "v1", "pods")
    assert pods is not None
    tstore = sim.api.tstore(pods)
    for trial in range(30):
        namespace = rng.choice(("", *NAMESPACES))
        expected = [e.raw for e in tstore.iter_at(None, namespace, "")]
        page = await sim.lister.list(tstore, namespace, ListOptions(limit=rng.randrange(1, 9)))
        got = [e.raw for e in page.entries]
        while page.continue_token:
            assert page.remaining == len(expected) - len(got), trial
            for _ in range(rng.randrange(0, 6)):
                _random_write(sim, rng, serial)
            opts = ListOptions(limit=rng.randrange(1, 9), continue_token=page.continue_token)
            page = await sim.lister.list(tstore, namespace, opts)
            got += [e.raw for e in page.entries]
        assert got == expected, trial
