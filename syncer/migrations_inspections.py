"""Statements of the migration that serves inspections (``apiserver.query_inspections``): the
stored runs, and partial indexes that hold only the objects a check would flag.

Kept apart from ``syncer.migrations``, which lists every migration in order.

Each index's predicate is one of the constants below, written into the check's statement as
the same SQL text, so that the planner proves the predicate and reads only the index: a
check then costs what it finds, not what is stored. The predicates are jsonpath tests
(``@?``, immutable and error-free on any JSON: a malformed object is not flagged, never
an error on ingest) behind the type's equality, which PostgreSQL tests first, so a write of
any other type pays two text comparisons per index.
"""

from __future__ import annotations

POD = "grp = '' AND resource = 'pods'"
# A container (init and ephemeral ones too) waiting in CrashLoopBackOff, or restarted this
# many times (a container between back-offs runs for a moment and is not waiting).
CRASH_RESTARTS = 10
CRASH_LOOP_PATH = '$.status.*[*].state.waiting.reason ? (@ == "CrashLoopBackOff")'
CRASH_LOOPING = f"{POD} AND (object @? '{CRASH_LOOP_PATH}' OR pod_restarts >= {CRASH_RESTARTS})"
# Deployments with fewer available replicas than they ask for (the deployment controller's
# unavailableReplicas, or its available count below spec.replicas).
DEPLOYMENT = "grp = 'apps' AND resource = 'deployments'"
UNAVAILABLE_PATH = (
    "$ ? (@.status.unavailableReplicas > 0 || @.spec.replicas > @.status.availableReplicas"
    " || (@.spec.replicas > 0 && !exists(@.status.availableReplicas)))"
)
UNAVAILABLE = f"{DEPLOYMENT} AND object @? '{UNAVAILABLE_PATH}'"
NODE = "grp = '' AND resource = 'nodes'"
NOT_READY_PATH = '$.status.conditions[*] ? (@.type == "Ready" && @.status != "True")'
NOT_READY = f"{NODE} AND object @? '{NOT_READY_PATH}'"
PRESSURE_PATH = (
    '$.status.conditions[*] ? ((@.type == "MemoryPressure" || @.type == "DiskPressure"'
    ' || @.type == "PIDPressure" || @.type == "NetworkUnavailable") && @.status == "True")'
)
UNDER_PRESSURE = f"{NODE} AND object @? '{PRESSURE_PATH}'"
# Containers: the pod templates of workloads, and pods no controller owns (a Deployment's
# hundred pods are one finding, on the Deployment). Per type: where its pod spec is, and
# whether only objects without a controller count (a ReplicaSet's Deployment, a Job's
# CronJob is checked instead). One index per check, whose predicate is an OR of one arm per
# type; each type's query names its arm, which implies the predicate.
POD_SPECS: tuple[tuple[str, str, str, bool], ...] = (
    ("apps", "deployments", "$.spec.template.spec", False),
    ("apps", "statefulsets", "$.spec.template.spec", False),
    ("apps", "daemonsets", "$.spec.template.spec", False),
    ("apps", "replicasets", "$.spec.template.spec", True),
    ("batch", "cronjobs", "$.spec.jobTemplate.spec.template.spec", False),
    ("batch", "jobs", "$.spec.template.spec", True),
    ("", "pods", "$.spec", True),
)
# A container lacking requests or limits (init containers may go without).
NO_RESOURCES_PATH = (
    "{spec}.containers[*] ? (!exists(@.resources.limits.*) || !exists(@.resources.requests.*))"
)
# Any container (init, ephemeral) on :latest or on no tag; pinned by digest is fine.
LATEST_PATH = '{spec}.*[*].image ? (@ like_regex ":latest$" || @ like_regex "^([^/@]*/)*[^/:@]+$")'


def container_arm(path: str, group: str, resource: str, spec: str, unowned: bool) -> str:
    """One type's condition of a container check (``path`` with its ``{spec}``)."""
    owner = " AND owner_uid IS NULL" if unowned else ""
    return f"grp = '{group}' AND resource = '{resource}'{owner} AND object @? '{path.format(spec=spec)}'"


def _containers(path: str) -> str:
    return " OR ".join(f"({container_arm(path, *entry)})" for entry in POD_SPECS)


NO_RESOURCES = _containers(NO_RESOURCES_PATH)
ON_LATEST = _containers(LATEST_PATH)
# Endpoints with no ready address: the endpoints controller keeps one per Service with a selector.
ENDPOINTS = "grp = '' AND resource = 'endpoints'"
NO_ADDRESSES = f"{ENDPOINTS} AND NOT (object @? '$.subsets[*].addresses[*]')"
TERMINATING = "deleted_at IS NOT NULL"

INSPECTIONS: tuple[str, ...] = (
    """CREATE TABLE inspection_runs (
        id BIGINT GENERATED ALWAYS AS IDENTITY NOT NULL,
        trigger TEXT NOT NULL,
        started_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        finished_at TIMESTAMP WITH TIME ZONE,
        findings_kept BOOLEAN DEFAULT true NOT NULL,
        CONSTRAINT inspection_runs_pkey PRIMARY KEY (id))""",
    "CREATE INDEX inspection_runs_started ON inspection_runs (started_at)",
    # At most a bounded number per check and run (apiserver.inspection_runs); each with the
    # identity a reader's scope is checked against when it is served.
    """CREATE TABLE inspection_findings (
        run_id BIGINT NOT NULL REFERENCES inspection_runs (id) ON DELETE CASCADE,
        check_name TEXT NOT NULL, severity TEXT NOT NULL, cluster TEXT NOT NULL, grp TEXT NOT NULL,
        version TEXT NOT NULL, resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
        message TEXT NOT NULL,
        CONSTRAINT inspection_findings_pkey
            PRIMARY KEY (run_id, check_name, cluster, grp, resource, namespace, name))""",
    # Every finding counted, kept or not, per place and type: the history, and "how many more".
    """CREATE TABLE inspection_counts (
        run_id BIGINT NOT NULL REFERENCES inspection_runs (id) ON DELETE CASCADE,
        check_name TEXT NOT NULL, severity TEXT NOT NULL, cluster TEXT NOT NULL, grp TEXT NOT NULL,
        resource TEXT NOT NULL, namespace TEXT NOT NULL, findings BIGINT NOT NULL,
        CONSTRAINT inspection_counts_pkey
            PRIMARY KEY (run_id, check_name, cluster, grp, resource, namespace))""",
    f"CREATE INDEX resources_inspect_crash_looping ON resources (cluster, namespace, name)"
    f" WHERE {CRASH_LOOPING}",
    f"CREATE INDEX resources_inspect_unavailable ON resources (cluster, namespace, name) WHERE {UNAVAILABLE}",
    f"CREATE INDEX resources_inspect_not_ready ON resources (cluster, name) WHERE {NOT_READY}",
    f"CREATE INDEX resources_inspect_pressure ON resources (cluster, name) WHERE {UNDER_PRESSURE}",
    f"CREATE INDEX resources_inspect_no_resources ON resources (cluster, namespace, name)"
    f" WHERE {NO_RESOURCES}",
    f"CREATE INDEX resources_inspect_latest ON resources (cluster, namespace, name) WHERE {ON_LATEST}",
    f"CREATE INDEX resources_inspect_no_addresses ON resources (cluster, namespace, name)"
    f" WHERE {NO_ADDRESSES}",
    f"CREATE INDEX resources_inspect_terminating ON resources (deleted_at) WHERE {TERMINATING}",
)
