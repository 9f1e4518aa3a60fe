"""``kubepedia demo``: three simulated member clusters, synced, served, ready for kubectl.

On the embedded PostgreSQL in the data dir it starts three kubesim clusters with
realistic workloads (namespaces, deployments with their pods, nodes, services, events,
config maps, and a custom resource in one of them, and one problem of each kind the
inspections find) and light churn, registers two in pull
mode and one in push mode with an agent of its own, serves the read API, writes a
kubeconfig and prints the kubectl commands to try. Ctrl-C stops everything; a second run
replaces the first run's clusters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from agent.kubeclient import Connection, KubeClient
from agent.push import HttpSink
from agent.runner import Runner
from kube.tasks import STOP_TIMEOUT_S, stop_tasks
from kubepedia import tls
from kubepedia.config import ensure_read_token, read_admin_token
from kubepedia.kubeconfig import document
from kubepedia.serve import ServeConfig, running, stop_on_signals
from kubesim.kubeconfig import kubeconfig as sim_kubeconfig
from kubesim.load import LoadGenerator
from kubesim.server import SimServer
from kubesim.server import running as sim_running
from kubesim.simulator import SimConfig

log = logging.getLogger(__name__)

CLUSTERS = (("demo-east", "pull"), ("demo-west", "pull"), ("demo-edge", "push"))
WORKLOAD = {"namespaces": 4, "nodes": 4, "deployments": 8, "pods": 40, "services": 6, "configmaps": 8,
            "events": 20, "secrets": 4, "problems": 1}
CHURN_PER_S = 2.0
GADGETS = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.demo.kubepedia.io"},
    "spec": {"group": "demo.kubepedia.io", "scope": "Namespaced",
             "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "shortNames": ["gd"]},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "additionalPrinterColumns": [
                               {"name": "Color", "type": "string", "jsonPath": ".spec.color"}]}]},
}


class DemoError(RuntimeError):
    """A step of the demo failed; the message is one line for the user."""


async def _call(session: aiohttp.ClientSession, method: str, url: str, body: Any = None,
                token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, url, json=body, headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read() or b"{}")


async def _gadgets(session: aiohttp.ClientSession, sim: SimServer) -> None:
    crds = sim.url + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    status, body = await _call(session, "POST", crds, GADGETS)
    if status >= 300:
        raise DemoError(f"kubesim refused the demo CRD: {body.get('message')}")
    for i, color in enumerate(("red", "green", "blue")):
        gadget = {"apiVersion": "demo.kubepedia.io/v1", "kind": "Gadget", "spec": {"color": color},
                  "metadata": {"name": f"gadget-{i}", "namespace": "default"}}
        await _call(session, "POST", sim.url + "/apis/demo.kubepedia.io/v1/namespaces/default/gadgets",
                    gadget)


async def _register(session: aiohttp.ClientSession, admin: str, token: str, name: str, mode: str,
                    sim: SimServer) -> str | None:
    """(Re)register a demo cluster; returns the agent token of a push cluster."""
    status, _ = await _call(session, "DELETE", f"{admin}/admin/v1/clusters/{name}", token=token)
    if status not in (200, 404):
        raise DemoError(f"cannot replace the earlier demo cluster {name} (HTTP {status})")
    body: dict[str, Any] = {"name": name, "mode": mode}
    if mode == "pull":
        body["kubeconfig"] = yaml.safe_dump(sim_kubeconfig(sim.url, name))
    status, answer = await _call(session, "POST", f"{admin}/admin/v1/clusters", body, token=token)
    if status != 201:
        raise DemoError(f"cannot register {name}: {answer.get('message')}")
    return answer.get("token")


@contextlib.asynccontextmanager
async def _agent(stack: AsyncExitStack, *, sim: SimServer, ingest: str, cluster: str,
                 token: str) -> AsyncIterator[None]:
    client = await stack.enter_async_context(KubeClient(connection=Connection.plain(sim.url)))
    sink = await stack.enter_async_context(HttpSink(base_url=ingest, cluster=cluster, token=token))
    task = asyncio.create_task(Runner(client=client, sink=sink).run(), name=f"agent {cluster}")
    try:
        yield
    finally:
        await stop_tasks([task], timeout=STOP_TIMEOUT_S, log=log)


def _instructions(kubeconfig: Path, names: list[str], server: str) -> str:
    k = f"kubectl --kubeconfig {kubeconfig}"
    return "\n".join([
        "", "kubepedia demo is running: three clusters synced into one view. Try:", "",
        f"  {k} get pods -A                      # every cluster, with a CLUSTER column",
        f"  {k} get deploy,svc -A -o wide",
        f"  {k} get pods -A -l tier=web --field-selector status.phase=Running",
        f"  {k} get gadgets -A                   # a custom resource and its printer columns",
        f"  {k} --context kubepedia-{names[0]} get nodes   # one cluster",
        f"  {k} get pods -A --watch              # changes as the clusters churn",
        f"  {k} api-resources",
        f"  kubepedia inspect --run --server {server}   # problems the checks find in the store",
        "",
        "Ctrl-C stops everything; the data stays in the data dir for the next run.", ""])


async def demo(config: ServeConfig) -> None:
    stop = stop_on_signals()
    async with running(config) as server, AsyncExitStack() as stack, aiohttp.ClientSession() as session:
        token = read_admin_token(config.data_dir)
        if token is None:
            raise DemoError(f"no admin token in {config.data_dir}")
        sims: dict[str, SimServer] = {}
        for seed, (name, mode) in enumerate(CLUSTERS, start=1):
            sim = await stack.enter_async_context(sim_running(generate=WORKLOAD, seed=seed,
                                                              config=SimConfig(name=name)))
            sims[name] = sim
            if seed == 1:
                await _gadgets(session, sim)
            agent_token = await _register(session, server.admin, token, name, mode, sim)
            if agent_token is not None:
                await stack.enter_async_context(_agent(stack, sim=sim, ingest=server.ingest, cluster=name,
                                                       token=agent_token))
        churn = [asyncio.create_task(LoadGenerator(sim.url, rate=CHURN_PER_S, seed=i).run(duration=10**9))
                 for i, sim in enumerate(sims.values())]
        kubeconfig = config.data_dir / "kubeconfig"
        # The data dir's read token: the demo's kubeconfig reads everything, as before.
        read_token = ensure_read_token(config.data_dir)
        kubeconfig.touch(mode=0o600)
        kubeconfig.chmod(0o600)  # it holds a token
        # The data dir's certificate, when serve made one (no --tls-cert).
        made = server.api.startswith("https:") and config.tls is None
        ca = tls.certificate_pem(config.data_dir / tls.CERT_FILE) if made else None
        doc = document(server.api, list(sims), token=read_token, ca=ca)
        kubeconfig.write_text(yaml.safe_dump(doc, sort_keys=False))
        print(_instructions(kubeconfig, list(sims), server.api), flush=True)
        try:
            await stop.wait()
        finally:
            await stop_tasks(churn, timeout=STOP_TIMEOUT_S, log=log)
        log.info("demo stopping")
