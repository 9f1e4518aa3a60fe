"""Many simulated clusters from one process, one port each.

Each cluster is a member cluster of its own, as if it ran alone: its own store and
resourceVersion counter, discovery, watches, faults, control endpoints and churn, behind
its own listening port, so a client (kubectl, an agent, a syncer in pull mode) cannot
tell it from a kubesim alone in its process, and one cluster's faults or restarts touch
no other. A scale test of a hundred member clusters then fits on one machine.

Generated objects are made once, for the first cluster, and copied into the others with
uids of their own (:func:`kubesim.generate.copy_objects`): the clusters hold the same
names and contents, each copy's names, labels and selectable fields are shared with the
first, so memory grows by about the objects' serialized bytes per cluster. Each
cluster's churn has a seed of its own (``seed + index``), so the clusters drift apart
as they change.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace

from kubesim.generate import copy_objects, populate
from kubesim.server import SimServer
from kubesim.simulator import SimConfig, Simulator

MAX_CLUSTERS = 1000


def cluster_names(base: str, count: int) -> list[str]:
    """``base`` alone for one cluster; ``base-0`` ... ``base-N`` (zero-padded, so that
    they sort in order) for several."""
    if count == 1:
        return [base]
    width = len(str(count - 1))
    return [f"{base}-{index:0{width}d}" for index in range(count)]


def make_simulators(
    count: int, *, generate: Mapping[str, int] | None = None, seed: int = 0,
    config: SimConfig | None = None,
) -> list[Simulator]:
    """``count`` clusters named after ``config.name``, populated alike."""
    if not 1 <= count <= MAX_CLUSTERS:
        raise ValueError(f"clusters must be from 1 to {MAX_CLUSTERS}")
    base = config or SimConfig()
    sims = [Simulator(replace(base, name=name)) for name in cluster_names(base.name, count)]
    if generate:
        populate(sims[0].api, generate, seed)
        for sim in sims[1:]:
            copy_objects(sims[0].api, sim.api)
        # The generated objects live as long as the servers: keep the cyclic collector
        # from re-scanning them on every full collection.
        gc.collect()
        gc.freeze()
    return sims


@asynccontextmanager
async def running_clusters(
    count: int,
    host: str = "127.0.0.1",
    *,
    port: int = 0,
    generate: Mapping[str, int] | None = None,
    seed: int = 0,
    config: SimConfig | None = None,
    churn: float = 0.0,
) -> AsyncIterator[list[SimServer]]:
    """Serve ``count`` clusters for the duration of the block; yields their servers in
    order. ``port`` 0 gives each a port the kernel picks; any other port P gives the
    clusters P, P+1, ... ``churn`` starts each cluster's in-process writes at that rate."""
    sims = make_simulators(count, generate=generate, seed=seed, config=config)
    async with AsyncExitStack() as stack:
        servers: list[SimServer] = []
        for index, sim in enumerate(sims):
            server = SimServer(sim, host, port + index if port else 0, seed=seed + index)
            await server.start()
            stack.push_async_callback(server.stop)
            servers.append(server)
        if churn > 0:
            for server in servers:
                await server.churn.start(churn)
        yield servers
