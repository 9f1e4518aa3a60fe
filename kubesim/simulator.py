"""The in-process state of one simulated cluster, shared by every handler."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kube.resources import ResourceType
from kubesim.api import Api
from kubesim.listing import Lister
from kubesim.resources import NAMESPACE_KEY, Registry
from kubesim.store import Store

JSON = dict[str, Any]
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")


@dataclass
class SimConfig:
    """Tunables; the defaults follow kube-apiserver where it has one."""

    name: str = "kubesim"
    # kube-apiserver sends a bookmark about once a minute.
    bookmark_interval: float = 60.0
    history_max_events: int = 50_000
    # etcd is compacted every 5 minutes by default.
    history_seconds: float = 300.0
    continue_ttl: float = 300.0
    # How long a list at a future resourceVersion waits before 504.
    rv_wait: float = 3.0
    watch_queue_max: int = 20_000


@dataclass
class Stats:
    """Request counts by verb and resource (``pods``, ``deployments.apps``)."""

    by_verb: Counter[str] = field(default_factory=Counter)
    by_resource: dict[str, Counter[str]] = field(default_factory=dict)

    def count(self, verb: str, rtype: ResourceType | None) -> None:
        self.by_verb[verb] += 1
        if rtype is not None:
            self.by_resource.setdefault(verb, Counter())[rtype.key] += 1

    def as_json(self) -> JSON:
        return {
            "requests": dict(self.by_verb),
            "resources": {verb: dict(c) for verb, c in self.by_resource.items()},
        }

    def reset(self) -> None:
        self.by_verb.clear()
        self.by_resource.clear()


class Simulator:
    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.registry = Registry()
        self.store = Store(self.config.history_max_events, self.config.history_seconds)
        self.api = Api(self.store, self.registry)
        self.lister = Lister(self.store, self.config.continue_ttl, self.config.rv_wait)
        self.stats = Stats()
        self._system_namespaces()

    def _system_namespaces(self) -> None:
        """Every cluster starts with these namespaces."""
        namespaces = self.registry.by_key(NAMESPACE_KEY)
        assert namespaces is not None
        for name in SYSTEM_NAMESPACES:
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            self.api.create(namespaces, "", body, record=False)

    def dump(self) -> list[JSON]:
        """Every object's identity and version, for comparing with a copy."""
        out: list[JSON] = []
        for tstore in self.store.types.values():
            rtype = tstore.rtype
            for key in tstore.keys:
                entry = tstore.objects[key]
                out.append(
                    {
                        "group": rtype.group,
                        "version": rtype.version,
                        "resource": rtype.resource,
                        "kind": rtype.kind,
                        "namespace": entry.namespace,
                        "name": entry.name,
                        "uid": entry.uid,
                        "resourceVersion": str(entry.rv),
                    }
                )
        return out
