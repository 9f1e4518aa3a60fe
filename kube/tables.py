"""Server-side printing: ``Table`` responses for ``kubectl get``.

https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables
— a client asks with ``Accept: application/json;as=Table;g=meta.k8s.io;v=v1``;
rows carry ``PartialObjectMetadata`` unless ``includeObject`` says otherwise.
Columns follow kube-apiserver's printers (pkg/printers/internalversion):
priority 1 columns are shown by ``-o wide``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kube.resources import PrinterColumn, type_key

JSON = dict[str, Any]
Column = tuple[str, str, int]  # name, type, priority
Printer = Callable[[JSON], list[Any]]


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """kubectl's HumanDuration of the time since ``timestamp``."""
    if not timestamp:
        return "<unknown>"
    then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    secs = max(int(((now or datetime.now(UTC)) - then).total_seconds()), 0)
    mins, hours, days = secs // 60, secs // 3600, secs // 86400
    if secs < 120:
        return f"{secs}s"
    if mins < 10:
        return f"{mins}m{secs % 60}s" if secs % 60 else f"{mins}m"
    if hours < 3:
        return f"{mins}m"
    if hours < 8:
        return f"{hours}h{mins % 60}m" if mins % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def _meta(obj: JSON) -> JSON:
    return obj.get("metadata") or {}


def _none(value: Any) -> Any:
    return value if value not in (None, "", []) else "<none>"


def _pod_status(obj: JSON) -> str:
    status = obj.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
    if _meta(obj).get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod(obj: JSON) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for cs in statuses if cs.get("ready"))
    restarts = sum(int(cs.get("restartCount", 0)) for cs in statuses)
    gates = spec.get("readinessGates") or []
    return [
        _meta(obj).get("name"),
        f"{ready}/{len(spec.get('containers') or [])}",
        _pod_status(obj),
        str(restarts),
        age(_meta(obj).get("creationTimestamp")),
        _none(status.get("podIP")),
        _none(spec.get("nodeName")),
        _none(status.get("nominatedNodeName")),
        f"0/{len(gates)}" if gates else "<none>",
    ]


def _selector_text(selector: JSON | None) -> str:
    labels = (selector or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in labels.items()) or "<none>"


def _containers(obj: JSON) -> list[JSON]:
    template = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return list(template.get("containers") or [])


def _deployment(obj: JSON) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = _containers(obj)
    return [
        _meta(obj).get("name"),
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        age(_meta(obj).get("creationTimestamp")),
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
        _selector_text(spec.get("selector")),
    ]


def _wide(containers: list[JSON], selector: JSON | None) -> list[Any]:
    return [",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers), _selector_text(selector)]


def _daemonset(obj: JSON) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    template = (spec.get("template") or {}).get("spec") or {}
    node_selector = template.get("nodeSelector") or {}
    return [
        _meta(obj).get("name"),
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        ",".join(f"{k}={v}" for k, v in sorted(node_selector.items())) or "<none>",
        _created(obj),
        *_wide(_containers(obj), spec.get("selector")),
    ]


def _condition(status: JSON, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in status.get("conditions") or [])


def _job_status(obj: JSON) -> str:
    status = obj.get("status") or {}
    if _condition(status, "Complete"):
        return "Complete"
    if _condition(status, "Failed"):
        return "Failed"
    if _meta(obj).get("deletionTimestamp"):
        return "Terminating"
    for kind in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if _condition(status, kind):
            return kind
    return "Running"


def _parse_time(timestamp: str) -> datetime:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _job(obj: JSON) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    succeeded = status.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start, end = status.get("startTime"), status.get("completionTime")
    duration = age(start, _parse_time(end) if end else None) if start else ""
    return [
        _meta(obj).get("name"),
        _job_status(obj),
        completions,
        duration,
        _created(obj),
        *_wide(_containers(obj), spec.get("selector")),
    ]


def _cronjob(obj: JSON) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    suspend = spec.get("suspend")
    last = status.get("lastScheduleTime")
    return [
        _meta(obj).get("name"),
        spec.get("schedule", ""),
        _none(spec.get("timeZone")),
        "<unset>" if suspend is None else str(bool(suspend)),
        len(status.get("active") or []),
        age(last) if last else "<none>",
        _created(obj),
        *_wide(_containers({"spec": job_spec}), job_spec.get("selector")),
    ]


def _node(obj: JSON) -> list[Any]:
    status = obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Ready" if ready and ready.get("status") == "True" else "NotReady"
    if (obj.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = _meta(obj).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    return [
        _meta(obj).get("name"),
        state,
        ",".join(roles) or "<none>",
        age(_meta(obj).get("creationTimestamp")),
        info.get("kubeletVersion", ""),
        _none(addresses.get("InternalIP")),
        _none(addresses.get("ExternalIP")),
        info.get("osImage", "<unknown>"),
        info.get("kernelVersion", "<unknown>"),
        info.get("containerRuntimeVersion", "<unknown>"),
    ]


def _service(obj: JSON) -> list[Any]:
    spec = obj.get("spec") or {}
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    return [
        _meta(obj).get("name"),
        spec.get("type", "ClusterIP"),
        _none(spec.get("clusterIP")),
        _none(",".join(spec.get("externalIPs") or [])),
        ports or "<none>",
        age(_meta(obj).get("creationTimestamp")),
        _none(",".join(f"{k}={v}" for k, v in (spec.get("selector") or {}).items())),
    ]


def _namespace(obj: JSON) -> list[Any]:
    phase = (obj.get("status") or {}).get("phase", "Active")
    return [_meta(obj).get("name"), phase, age(_meta(obj).get("creationTimestamp"))]


def _created(obj: JSON) -> str:
    return age(_meta(obj).get("creationTimestamp"))


def _configmap(obj: JSON) -> list[Any]:
    count = len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
    return [_meta(obj).get("name"), count, _created(obj)]


def _secret(obj: JSON) -> list[Any]:
    return [_meta(obj).get("name"), obj.get("type", "Opaque"), len(obj.get("data") or {}),
            _created(obj)]


def _replicaset(obj: JSON) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = _containers(obj)
    return [_meta(obj).get("name"), spec.get("replicas", 1), status.get("replicas", 0),
            status.get("readyReplicas", 0), _created(obj),
            ",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers), _selector_text(spec.get("selector"))]


def _statefulset(obj: JSON) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ready = f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}"
    return [_meta(obj).get("name"), ready, _created(obj)]


def _event(obj: JSON) -> list[Any]:
    involved = obj.get("involvedObject") or {}
    last = obj.get("lastTimestamp") or obj.get("eventTime") or _meta(obj).get("creationTimestamp")
    return [
        age(last[:19] + "Z" if isinstance(last, str) and len(last) > 20 else last),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        obj.get("message", ""),
    ]


def _crd(obj: JSON) -> list[Any]:
    return [_meta(obj).get("name"), _meta(obj).get("creationTimestamp", "")]


def _default(obj: JSON) -> list[Any]:
    return [_meta(obj).get("name"), age(_meta(obj).get("creationTimestamp"))]


NAME: Column = ("Name", "string", 0)
AGE: Column = ("Age", "string", 0)
# By type_key: kube-apiserver has a printer per group/resource, whatever the version.
PRINTERS: dict[str, tuple[list[Column], Printer]] = {
    "pods": (
        [
            NAME,
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            AGE,
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        _pod,
    ),
    "deployments.apps": (
        [
            NAME,
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            AGE,
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        _deployment,
    ),
    "nodes": (
        [
            NAME,
            ("Status", "string", 0),
            ("Roles", "string", 0),
            AGE,
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        _node,
    ),
    "services": (
        [
            NAME,
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            AGE,
            ("Selector", "string", 1),
        ],
        _service,
    ),
    "namespaces": ([NAME, ("Status", "string", 0), AGE], _namespace),
    "configmaps": ([NAME, ("Data", "integer", 0), AGE], _configmap),
    "secrets": ([NAME, ("Type", "string", 0), ("Data", "integer", 0), AGE], _secret),
    "replicasets.apps": (
        [NAME, ("Desired", "integer", 0), ("Current", "integer", 0), ("Ready", "integer", 0), AGE,
         ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1)],
        _replicaset,
    ),
    "statefulsets.apps": ([NAME, ("Ready", "string", 0), AGE], _statefulset),
    "daemonsets.apps": (
        [NAME, ("Desired", "integer", 0), ("Current", "integer", 0), ("Ready", "integer", 0),
         ("Up-to-date", "integer", 0), ("Available", "integer", 0), ("Node Selector", "string", 0), AGE,
         ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1)],
        _daemonset,
    ),
    "jobs.batch": (
        [NAME, ("Status", "string", 0), ("Completions", "string", 0), ("Duration", "string", 0), AGE,
         ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1)],
        _job,
    ),
    "cronjobs.batch": (
        [NAME, ("Schedule", "string", 0), ("Timezone", "string", 0), ("Suspend", "boolean", 0),
         ("Active", "integer", 0), ("Last Schedule", "string", 0), AGE,
         ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1)],
        _cronjob,
    ),
    "events": (
        [("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0),
         ("Object", "string", 0), ("Message", "string", 0)],
        _event,
    ),
    "customresourcedefinitions.apiextensions.k8s.io": (
        [NAME, ("Created At", "date", 0)], _crd,
    ),
}


def _json_path(obj: JSON, path: str) -> Any:
    """Simple ``.a.b`` JSONPath, which is what printer columns use in practice."""
    cur: Any = obj
    for part in path.strip().lstrip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _custom(extra: Sequence[PrinterColumn]) -> tuple[list[Column], Printer]:
    """A CRD's additionalPrinterColumns after Name."""
    columns: list[Column] = [NAME] + [(n, t, p) for n, t, _, p in extra]

    def printer(obj: JSON) -> list[Any]:
        cells = [_meta(obj).get("name")]
        for _, kind, path, _ in extra:
            value = _json_path(obj, path)
            cells.append(age(value) if kind == "date" and isinstance(value, str) else value)
        return cells

    return columns, printer


@dataclass(frozen=True, slots=True)
class TablePrinter:
    """The columns kubectl shows for one resource type, and how to fill them."""

    columns: list[Column]
    cells: Printer

    def column_definitions(self) -> list[JSON]:
        return [
            {
                "name": name,
                "type": kind,
                "format": "name" if name == "Name" else "",
                "description": name,
                "priority": priority,
            }
            for name, kind, priority in self.columns
        ]

    def row(self, obj: JSON, include: str = "Metadata") -> JSON:
        out: JSON = {"cells": self.cells(obj)}
        if include == "Object":
            out["object"] = obj
        elif include != "None":
            out["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata") or {},
            }
        return out

    def table(self, objs: list[JSON], list_meta: JSON, include: str = "Metadata") -> JSON:
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta,
            "columnDefinitions": self.column_definitions(),
            "rows": [self.row(obj, include) for obj in objs],
        }


def printer_for(*, group: str, resource: str, printer_columns: Sequence[PrinterColumn] = ()) -> TablePrinter:
    """kube-apiserver's printer for a built-in type, a CRD's columns, or Name and Age."""
    if printer_columns:
        return TablePrinter(*_custom(printer_columns))
    return TablePrinter(*PRINTERS.get(type_key(group, resource), ([NAME, AGE], _default)))
