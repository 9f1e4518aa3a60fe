"""Bulk population for ``--generate``: a cluster-shaped set of objects.

Objects are written without watch history (as if etcd had compacted after
they were created): a watch from before the population answers 410.

Many clusters in one process (``kubesim serve --clusters N``) are populated once and
copied: :func:`copy_objects` gives every copy uids of its own and shares what never
changes (names, labels, selectable fields) with the original.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from kube.resources import ResourceType, type_key
from kubesim import objects
from kubesim.api import Api
from kubesim.problems import populate_problems
from kubesim.store import Entry

JSON = dict[str, Any]
KNOWN = ("namespaces", "nodes", "deployments", "pods", "configmaps", "services", "events", "secrets",
         "problems")


def parse_counts(text: str) -> dict[str, int]:
    """``pods=100,deployments=10`` -> {"pods": 100, "deployments": 10}."""
    counts: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in KNOWN:
            raise ValueError(f"unknown kind to generate: {name} (known: {', '.join(KNOWN)})")
        counts[name] = int(value)
    return counts


def cluster_counts(total: int) -> dict[str, int]:
    """About ``total`` objects shaped like a cluster: mostly pods, owned by ReplicaSets of
    Deployments, with the ConfigMaps, Services, Secrets and Events that go with them."""
    deployments = max(total // 100, 1)
    counts = {
        "namespaces": min(20, max(total // 50, 1)),
        "nodes": max(total // 1000, 3),
        "deployments": deployments,
        "configmaps": total // 50,
        "services": total // 100,
        "secrets": total // 100,
        "events": total // 50,
    }
    # Each Deployment comes with one ReplicaSet; every cluster has 4 system namespaces.
    others = sum(counts.values()) + deployments + 4
    counts["pods"] = max(total - others, 1)
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
    if counts.get("problems"):  # one of each kind an inspection finds
        populate_problems(api, spaces[0])


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


def copy_objects(source: Api, target: Api) -> int:
    """Write a copy of every object of ``source`` into ``target`` (without history, as
    :func:`populate` writes), in the order they were written, each with a uid of its own;
    owner references point at the copies. Returns how many were copied; objects
    ``target`` already holds (the system namespaces) are kept. Built-in types only, as
    :func:`populate` makes them: a copied CRD would not serve its type in ``target``."""
    originals = sorted(
        ((tstore.rtype, entry) for tstore in source.store.types.values()
         for entry in tstore.objects.values()),
        key=lambda pair: pair[1].rv,
    )
    uids = {entry.uid: str(uuid.uuid4()) for _, entry in originals if entry.uid}
    copied = 0
    for rtype, entry in originals:
        tstore = target.tstore(rtype)
        if entry.key in tstore.objects:
            continue
        obj = orjson.loads(entry.raw)
        if _rebind(obj, entry, uids):
            target.store.write(tstore, obj, record=False)
        else:
            target.store.write_copy(tstore, entry, obj)
        copied += 1
    return copied


def _rebind(obj: JSON, entry: Entry, uids: Mapping[str, str]) -> bool:
    """Give ``obj`` its new uid and its owners' new uids; True when a selectable field
    changed with them (an Event's ``involvedObject.uid``), so the copy cannot share them."""
    meta = obj["metadata"]
    meta["uid"] = uids.get(entry.uid, entry.uid)
    for ref in meta.get("ownerReferences") or ():
        ref["uid"] = uids.get(ref.get("uid", ""), ref.get("uid", ""))
    involved = obj.get("involvedObject")
    if isinstance(involved, dict) and involved.get("uid") in uids:
        involved["uid"] = uids[involved["uid"]]
        return True
    return False
