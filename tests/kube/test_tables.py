"""Table printers for DaemonSets, Jobs and CronJobs: kube-apiserver's columns and cells."""

from __future__ import annotations

from typing import Any

from kube.tables import age, printer_for

CREATED = "2026-01-01T00:00:00Z"
POD_TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "x"}},
    "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/x:1.0"},
                            {"name": "sidecar", "image": "busybox:1.36"}]},
}
WIDE = ["main,sidecar", "registry.k8s.io/x:1.0,busybox:1.36"]


def _columns(group: str, resource: str) -> list[tuple[str, int]]:
    table = printer_for(group=group, resource=resource).table([], {})
    return [(c["name"], c["priority"]) for c in table["columnDefinitions"]]


def _cells(group: str, resource: str, obj: dict[str, Any]) -> list[Any]:
    return list(printer_for(group=group, resource=resource).row(obj)["cells"])


def test_daemonset_columns_and_cells() -> None:
    assert _columns("apps", "daemonsets") == [
        ("Name", 0), ("Desired", 0), ("Current", 0), ("Ready", 0), ("Up-to-date", 0), ("Available", 0),
        ("Node Selector", 0), ("Age", 0), ("Containers", 1), ("Images", 1), ("Selector", 1)]
    ds = {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system", "creationTimestamp": CREATED},
        "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                 "template": {**POD_TEMPLATE, "spec": {**POD_TEMPLATE["spec"],
                                                       "nodeSelector": {"kubernetes.io/os": "linux",
                                                                        "disk": "ssd"}}}},
        "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                   "updatedNumberScheduled": 1, "numberAvailable": 2, "numberMisscheduled": 0},
    }
    assert _cells("apps", "daemonsets", ds) == [
        "kube-proxy", 3, 3, 2, 1, 2, "disk=ssd,kubernetes.io/os=linux", age(CREATED), *WIDE,
        "k8s-app=kube-proxy"]


def test_daemonset_without_status_or_node_selector() -> None:
    ds = {"metadata": {"name": "fresh", "creationTimestamp": CREATED},
          "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": POD_TEMPLATE}}
    assert _cells("apps", "daemonsets", ds)[1:7] == [0, 0, 0, 0, 0, "<none>"]


def _job(status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "creationTimestamp": CREATED},
        "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "7f3c"}},
                 "template": POD_TEMPLATE, **spec},
        "status": status,
    }


def test_job_columns_and_complete_cells() -> None:
    assert _columns("batch", "jobs") == [
        ("Name", 0), ("Status", 0), ("Completions", 0), ("Duration", 0), ("Age", 0),
        ("Containers", 1), ("Images", 1), ("Selector", 1)]
    job = _job({"startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:42Z",
                "succeeded": 1, "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                               {"type": "Complete", "status": "True"}]},
               completions=1, parallelism=1)
    assert _cells("batch", "jobs", job) == [
        "pi", "Complete", "1/1", "42s", age(CREATED), *WIDE, "batch.kubernetes.io/controller-uid=7f3c"]


def test_job_status_words() -> None:
    failed = _job({"startTime": "2026-01-01T00:00:00Z", "failed": 6,
                   "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]},
                  completions=3)
    assert _cells("batch", "jobs", failed)[1:4] == ["Failed", "0/3", age("2026-01-01T00:00:00Z")]
    suspended = _job({"conditions": [{"type": "Suspended", "status": "True"}]}, suspend=True)
    assert _cells("batch", "jobs", suspended)[1:4] == ["Suspended", "0/1", ""]
    running = _job({"startTime": "2026-01-01T00:00:00Z", "active": 2, "succeeded": 3,
                    "conditions": [{"type": "Suspended", "status": "False"}]}, parallelism=4)
    assert _cells("batch", "jobs", running)[1:3] == ["Running", "3/1 of 4"]
    deleting = _job({"active": 1})
    deleting["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z"
    assert _cells("batch", "jobs", deleting)[1] == "Terminating"


def test_job_duration_spans_start_to_completion() -> None:
    job = _job({"startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T01:05:00Z",
                "succeeded": 5, "conditions": [{"type": "Complete", "status": "True"}]}, completions=5)
    assert _cells("batch", "jobs", job)[2:4] == ["5/5", "65m"]


def test_cronjob_columns_and_cells() -> None:
    assert _columns("batch", "cronjobs") == [
        ("Name", 0), ("Schedule", 0), ("Timezone", 0), ("Suspend", 0), ("Active", 0),
        ("Last Schedule", 0), ("Age", 0), ("Containers", 1), ("Images", 1), ("Selector", 1)]
    cron = {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "backup", "namespace": "ops", "creationTimestamp": CREATED},
        "spec": {"schedule": "*/5 * * * *", "timeZone": "Etc/UTC", "suspend": False,
                 "concurrencyPolicy": "Forbid",
                 "jobTemplate": {"spec": {"template": POD_TEMPLATE}}},
        "status": {"active": [{"kind": "Job", "name": "backup-29000000", "namespace": "ops"}],
                   "lastScheduleTime": "2026-01-01T00:05:00Z"},
    }
    assert _cells("batch", "cronjobs", cron) == [
        "backup", "*/5 * * * *", "Etc/UTC", "False", 1, age("2026-01-01T00:05:00Z"), age(CREATED),
        *WIDE, "<none>"]


def test_cronjob_never_scheduled() -> None:
    cron: dict[str, Any] = {"metadata": {"name": "nightly", "creationTimestamp": CREATED},
            "spec": {"schedule": "0 3 * * *", "suspend": True,
                     "jobTemplate": {"spec": {"selector": {"matchLabels": {"a": "b"}},
                                              "template": POD_TEMPLATE}}},
            "status": {}}
    assert _cells("batch", "cronjobs", cron) == [
        "nightly", "0 3 * * *", "<none>", "True", 0, "<none>", age(CREATED), *WIDE, "a=b"]
    del cron["spec"]["suspend"]
    assert _cells("batch", "cronjobs", cron)[3] == "<unset>"
