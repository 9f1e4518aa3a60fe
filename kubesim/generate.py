"""Bulk population for ``--generate``: a cluster-shaped set of objects.

Objects are written without watch history (as if etcd had compacted after
they were created): a watch from before the population answers 410.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from kube.resources import ResourceType, type_key
from kubesim import objects
from kubesim.api import Api

JSON = dict[str, Any]
KNOWN = ("namespaces", "nodes", "deployments", "pods", "configmaps", "services", "events", "secrets")


def parse_counts(text: str) -> dict[str, int]:
    """``pods=100,deployments=10`` -> {"pods": 100, "deployments": 10}."""
    counts: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in KNOWN:
            raise ValueError(f"unknown kind to generate: {name} (known: {', '.join(KNOWN)})")
        counts[name] = int(value)
    return counts


def _rtype(api: Api, group: str, plural: str) -> ResourceType:
    rtype = api.registry.by_key(type_key(group, plural))
    assert rtype is not None
    return rtype


def _create(api: Api, group: str, plural: str, obj: JSON) -> JSON:
    rtype = _rtype(api, group, plural)
    namespace = obj["metadata"].get("namespace", "")
    entry = api.create(rtype, namespace, obj, record=False)
    obj["metadata"]["uid"] = entry.uid
    return obj


def populate(api: Api, counts: Mapping[str, int], seed: int = 0) -> None:
    rng = random.Random(seed)
    names = ["default", "kube-system"] + [f"ns-{n:03d}" for n in range(counts.get("namespaces", 3))]
    for name in names:
        if api.tstore(_rtype(api, "", "namespaces")).get("", name) is None:
            _create(api, "", "namespaces", objects.make_namespace(name))
    spaces = names[2:] or names[:1]
    nodes = [f"node-{n:03d}" for n in range(counts.get("nodes", 0))]
    for node in nodes:
        _create(api, "", "nodes", objects.make_node(rng, node))
    _workloads(api, rng, spaces, nodes, counts.get("deployments", 0), counts.get("pods", 0))
    for n in range(counts.get("configmaps", 0)):
        _create(api, "", "configmaps", objects.make_configmap(rng, spaces[n % len(spaces)], f"config-{n}"))
    for n in range(counts.get("services", 0)):
        _create(api, "", "services", objects.make_service(rng, spaces[n % len(spaces)], f"svc-{n}"))
    for n in range(counts.get("secrets", 0)):
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": f"secret-{n}", "namespace": spaces[n % len(spaces)]},
            "data": {"token": "c2VjcmV0"},
        }
        _create(api, "", "secrets", secret)
    _events(api, rng, spaces, counts.get("events", 0))


def _workloads(
    api: Api, rng: random.Random, spaces: list[str], nodes: list[str], deployments: int, pods: int
) -> None:
    owners: list[JSON] = []
    for n in range(deployments):
        namespace = spaces[n % len(spaces)]
        replicas = pods // deployments + (1 if n < pods % deployments else 0)
        deploy = _create(
            api, "apps", "deployments", objects.make_deployment(rng, namespace, f"app-{n}", replicas)
        )
        rs_name = f"app-{n}-{objects.hex_id(rng, 10)}"
        owners.append(
            _create(
                api,
                "apps",
                "replicasets",
                objects.make_replicaset(rng, namespace, rs_name, owner=deploy, replicas=replicas),
            )
        )
    for n in range(pods):
        node = nodes[n % len(nodes)] if nodes else None
        if owners:
            owner = owners[n % len(owners)]
            namespace = owner["metadata"]["namespace"]
            name = f"{owner['metadata']['name']}-{objects.suffix(rng)}{n}"
            app = owner["metadata"]["labels"]["app"]
            pod = objects.make_pod(rng, namespace, name, owner=owner, node=node, app=app)
        else:
            namespace = spaces[n % len(spaces)]
            pod = objects.make_pod(rng, namespace, f"pod-{n}", node=node)
        _create(api, "", "pods", pod)


def _events(api: Api, rng: random.Random, spaces: list[str], count: int) -> None:
    for n in range(count):
        namespace = spaces[n % len(spaces)]
        involved = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": f"pod-{n}", "uid": ""}}
        _create(api, "", "events", objects.make_event(rng, namespace, f"event-{n}", involved))
