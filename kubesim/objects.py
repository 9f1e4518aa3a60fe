"""Realistic Kubernetes objects, deterministic for a given ``random.Random``.

Used by ``kubesim serve --generate``, the load generator and benchmarks.
Pods come out at roughly 2-6 KB of JSON: several containers with probes,
environment, resources and mounts, and a status with conditions and
containerStatuses, like pods of a typical Deployment.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

JSON = dict[str, Any]

IMAGES = (
    "registry.k8s.io/nginx-slim:0.27",
    "docker.io/library/redis:7.2.4",
    "quay.io/prometheus/node-exporter:v1.8.1",
    "ghcr.io/example/api-server:2.14.3",
    "docker.io/library/postgres:16.3",
    "gcr.io/distroless/java17:nonroot",
    "docker.io/envoyproxy/envoy:v1.30.2",
    "quay.io/jetstack/cert-manager-controller:v1.15.1",
)
APPS = (
    "checkout",
    "payments",
    "search",
    "catalog",
    "frontend",
    "auth",
    "ledger",
    "mailer",
    "reports",
    "gateway",
    "inventory",
    "billing",
)
TIERS = ("web", "backend", "cache", "worker")
STAMP = "2026-01-01T00:00:00Z"


def hex_id(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def suffix(rng: random.Random, n: int = 5) -> str:
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


def owner_reference(owner: JSON) -> JSON:
    """A controller ownerReference to ``owner`` (which needs metadata.name and uid)."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(namespace: str, name: str, labels: JSON, owner: JSON | None = None) -> JSON:
    meta: JSON = {"name": name, "namespace": namespace, "labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [owner_reference(owner)]
    return meta


def make_namespace(name: str, labels: dict[str, str] | None = None) -> JSON:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels or {})}}


def make_node(rng: random.Random, name: str) -> JSON:
    zone = rng.choice(("a", "b", "c"))
    ip = f"10.0.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "topology.kubernetes.io/zone": f"eu-west-1{zone}",
                "node.kubernetes.io/instance-type": rng.choice(("m5.xlarge", "c6i.2xlarge")),
            },
        },
        "spec": {"podCIDR": f"10.244.{rng.randrange(256)}.0/24"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "capacity": {"cpu": "4", "memory": "16101600Ki", "pods": "110"},
            "allocatable": {"cpu": "3920m", "memory": "15001600Ki", "pods": "110"},
            "conditions": [
                _condition("Ready", "True", "KubeletReady"),
                _condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            ],
            # Every field kubelet reports: clients (the Python client among them) require them.
            "nodeInfo": {
                "machineID": hex_id(rng, 32),
                "systemUUID": str(uuid.UUID(int=rng.getrandbits(128))),
                "bootID": str(uuid.UUID(int=rng.getrandbits(128))),
                "kubeProxyVersion": "v1.32.0",
                "kubeletVersion": "v1.32.0",
                "osImage": "Ubuntu 24.04 LTS",
                "kernelVersion": "6.8.0-1009-aws",
                "containerRuntimeVersion": "containerd://1.7.19",
                "architecture": "amd64",
                "operatingSystem": "linux",
            },
        },
    }


def _condition(kind: str, status: str, reason: str = "") -> JSON:
    cond: JSON = {"type": kind, "status": status, "lastTransitionTime": STAMP}
    if reason:
        cond["reason"] = reason
    return cond


def _env(rng: random.Random, app: str, extra: int) -> list[JSON]:
    env: list[JSON] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
        {
            "name": "POD_NAMESPACE",
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
        },
    ]
    for n in range(extra):
        env.append({"name": f"{app.upper()}_SETTING_{n}", "value": hex_id(rng, rng.randrange(4, 24))})
    return env


def _probe(path: str, port: int, delay: int) -> JSON:
    return {
        "httpGet": {"path": path, "port": port, "scheme": "HTTP"},
        "initialDelaySeconds": delay,
        "periodSeconds": 10,
        "timeoutSeconds": 1,
        "successThreshold": 1,
        "failureThreshold": 3,
    }


def make_container(rng: random.Random, name: str, app: str, extra_env: int = 2) -> JSON:
    port = rng.choice((8080, 8443, 9090, 3000, 5432))
    cpu = rng.choice((50, 100, 250, 500))
    container: JSON = {
        "name": name,
        "image": rng.choice(IMAGES),
        "imagePullPolicy": "IfNotPresent",
        "args": [f"--listen=:{port}", f"--log-level={rng.choice(('info', 'debug'))}"],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": _env(rng, app, extra_env),
        "resources": {
            "requests": {"cpu": f"{cpu}m", "memory": f"{cpu * 2}Mi"},
            "limits": {"cpu": f"{cpu * 2}m", "memory": f"{cpu * 4}Mi"},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": f"/etc/{app}"},
            {
                "name": "kube-api-access",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            },
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    if name == "app":  # sidecars usually go without probes
        container["livenessProbe"] = _probe("/healthz", port, 10)
        container["readinessProbe"] = _probe("/ready", port, 5)
    return container


def _container_status(rng: random.Random, container: JSON, running: bool) -> JSON:
    state: JSON = (
        {"running": {"startedAt": STAMP}} if running else {"waiting": {"reason": "ContainerCreating"}}
    )
    return {
        "name": container["name"],
        "image": container["image"],
        "imageID": f"{container['image'].split(':')[0]}@sha256:{hex_id(rng, 64)}",
        "containerID": f"containerd://{hex_id(rng, 64)}",
        "ready": running,
        "started": running,
        "restartCount": rng.choice((0, 0, 0, 1, 2)),
        "state": state,
    }


def pod_spec(rng: random.Random, app: str, node: str | None = None) -> JSON:
    names = ["app", "sidecar", "metrics", "proxy"][: rng.randrange(1, 4)]
    spec: JSON = {
        "containers": [
            make_container(rng, n, app, rng.randrange(2, 7) if n == "app" else rng.randrange(0, 2))
            for n in names
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": f"{app}-config", "defaultMode": 420}},
            {
                "name": "kube-api-access",
                "projected": {
                    "defaultMode": 420,
                    "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}],
                },
            },
        ],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler",
        "serviceAccountName": "default",
        "terminationGracePeriodSeconds": 30,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
        "tolerations": [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }
        ],
    }
    if node:
        spec["nodeName"] = node
    return spec


def make_pod(
    rng: random.Random,
    namespace: str,
    name: str,
    *,
    owner: JSON | None = None,
    node: str | None = None,
    app: str | None = None,
) -> JSON:
    """A realistic Pod; ``owner`` (a ReplicaSet-like object with uid) becomes its controller."""
    app = app or rng.choice(APPS)
    spec = pod_spec(rng, app, node or f"node-{rng.randrange(1000):03d}")
    running = rng.random() < 0.9
    labels = {"app": app, "tier": rng.choice(TIERS), "pod-template-hash": hex_id(rng, 10)}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **_meta(namespace, name, labels, owner),
            "annotations": {"kubectl.kubernetes.io/restartedAt": STAMP},
        },
        "spec": spec,
        "status": {
            "phase": "Running" if running else "Pending",
            "conditions": [
                _condition(t, "True" if running else "False")
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "hostIP": f"10.0.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "podIP": f"10.244.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "startTime": STAMP,
            "qosClass": "Burstable",
            "containerStatuses": [_container_status(rng, c, running) for c in spec["containers"]],
        },
    }


def _template(rng: random.Random, app: str) -> JSON:
    return {"metadata": {"labels": {"app": app}}, "spec": pod_spec(rng, app)}


def make_deployment(rng: random.Random, namespace: str, name: str, replicas: int = 3) -> JSON:
    app = name
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(namespace, name, {"app": app}),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": _template(rng, app),
        },
        "status": {
            "replicas": replicas,
            "readyReplicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
            "observedGeneration": 1,
            "conditions": [_condition("Available", "True", "MinimumReplicasAvailable")],
        },
    }


def make_replicaset(
    rng: random.Random, namespace: str, name: str, *, owner: JSON | None = None, replicas: int = 3
) -> JSON:
    app = owner["metadata"]["name"] if owner else name
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": _meta(namespace, name, {"app": app, "pod-template-hash": hex_id(rng, 10)}, owner),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": _template(rng, app),
        },
        "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas},
    }


def make_configmap(rng: random.Random, namespace: str, name: str) -> JSON:
    data = {f"key-{n}.conf": hex_id(rng, rng.randrange(16, 200)) for n in range(rng.randrange(1, 6))}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(namespace, name, {"app": rng.choice(APPS)}),
        "data": data,
    }


def make_service(rng: random.Random, namespace: str, name: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(namespace, name, {"app": name}),
        "spec": {
            "type": "ClusterIP",
            "clusterIP": f"10.96.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }


def make_event(rng: random.Random, namespace: str, name: str, involved: JSON) -> JSON:
    reason = rng.choice(("Scheduled", "Pulled", "Created", "Started", "BackOff", "Unhealthy"))
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {
            "kind": involved["kind"],
            "namespace": namespace,
            "name": involved["metadata"]["name"],
            "uid": involved["metadata"].get("uid", ""),
            "apiVersion": involved["apiVersion"],
        },
        "reason": reason,
        "message": f"{reason} {involved['metadata']['name']}",
        "type": "Warning" if reason in ("BackOff", "Unhealthy") else "Normal",
        "source": {"component": "kubelet"},
        "count": 1,
        "firstTimestamp": STAMP,
        "lastTimestamp": STAMP,
        "reportingComponent": "kubelet",
    }


def random_name(rng: random.Random, prefix: str) -> str:
    return f"{prefix}-{suffix(rng)}"
