"""The store's schema as SQLAlchemy Core metadata: the description of every table as the
latest migration (``syncer.migrations``, literal SQL) leaves it; a test checks they agree.

Every table that holds per-cluster data leads with ``cluster``, and every unique key of
such a table includes it, so that a cluster's rows can be dropped in one statement and the
tables can be distributed by that column (Citus requires unique keys to contain it).
The ``change_log`` sequence is the aggregated resourceVersion served by the read API.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Sequence,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from syncer import migrations_inspections as inspect

metadata = MetaData()

# What every room may rely on besides the tables: writers NOTIFY this channel with the
# newest change-log sequence at commit (readers LISTEN), and the advisory-lock keys.
NOTIFY_CHANNEL = "kubepedia_changes"
MIGRATION_LOCK = 0x6B75_6265_0001
# 0x6B75_6265_0002 was the change-log lock every writer held until commit (until migration 18).
ANALYZE_LOCK = 0x6B75_6265_0003
# Writes in flight in the change log hold shared advisory locks in the two-int4 key form
# (objsubid = 2 in pg_locks; every other key above is a bigint, objsubid = 1) whose first key
# has this top byte (migration 18, ``change_log_mark``).
IN_FLIGHT_MARKER = 0x6B

# Drawn freely by writers marked in flight; readers stop at ``change_log_horizon()``.
change_seq = Sequence("change_seq", metadata=metadata, start=1)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

clusters = Table(
    "clusters",
    metadata,
    Column("name", Text, primary_key=True),
    Column("mode", Text, nullable=False),  # 'push' | 'pull'
    Column("labels", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("token_hash", Text),  # push: sha256 of the agent token
    Column("kubeconfig", Text),  # pull: the kubeconfig document itself
    Column("settings", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("healthy", Boolean),
    Column("health_message", Text),
    Column("last_seen_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("removing_at", DateTime(timezone=True)),  # set while its rows are being deleted
    Column("last_error", Text),  # an error of no single type, e.g. a type refused by quota
    Column("previous_token_hash", Text),  # push: sha256 of the token before the last rotation
    Column("previous_token_expires_at", DateTime(timezone=True)),  # ... which works until then
)

resources = Table(
    "resources",
    metadata,
    Column("cluster", Text, nullable=False),
    Column("grp", Text, nullable=False),  # "" for the core group
    Column("version", Text, nullable=False),
    Column("resource", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("namespace", Text, nullable=False),  # "" for cluster-scoped objects
    Column("name", Text, nullable=False),
    Column("uid", Text, nullable=False),
    Column("resource_version", Text, nullable=False),
    Column("owner_uid", Text),
    Column("labels", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True)),
    Column("deleted_at", DateTime(timezone=True)),
    Column("seq", BigInteger, nullable=False),  # change_log.seq of the last change
    Column("object", JSONB, nullable=False),
    PrimaryKeyConstraint("cluster", "grp", "resource", "namespace", "name", name="resources_pkey"),
)
# Every list's keyset order, all clusters merged (the primary key serves one cluster).
# The version is included so that counting the rest of a list reads the index alone.
Index("resources_list_order", resources.c.grp, resources.c.resource, resources.c.namespace,
      resources.c.name, resources.c.cluster, postgresql_include=["version"])
# Field selectors kubectl users send across every cluster (spec.nodeName, status.phase),
# followed by the list order so that a page of many matches is read in order, unsorted.
# Partial: the many objects without the field cost nothing; "field = value" implies NOT NULL.
for _name, _path in (("node_name", "{spec,nodeName}"), ("phase", "{status,phase}")):
    _field = text(f"(object #>> '{_path}')")
    Index(f"resources_field_{_name}", resources.c.grp, resources.c.resource, _field, resources.c.namespace,
          resources.c.name, resources.c.cluster, postgresql_where=text(f"(object #>> '{_path}') IS NOT NULL"))
# The label keys most lists select by, in list order too (apiserver.query.ORDERED_LABEL_KEYS).
for _name, _key in (("app", "app"), ("app_name", "app.kubernetes.io/name")):
    _label = text(f"(labels ->> '{_key}')")
    Index(f"resources_label_{_name}", resources.c.grp, resources.c.resource, _label, resources.c.namespace,
          resources.c.name, resources.c.cluster, postgresql_where=text(f"(labels ->> '{_key}') IS NOT NULL"))
Index("resources_uid", resources.c.uid)
Index("resources_owner_uid", resources.c.owner_uid, postgresql_where=resources.c.owner_uid.isnot(None))
Index("resources_created_at", resources.c.grp, resources.c.resource, resources.c.created_at)
# ``orderby=created_at`` (migration 7): apiserver.query.order_keys' expression, in list order;
# with the version, so that counting what follows a page reads the index alone (migration 10).
Index("resources_order_created", resources.c.grp, resources.c.resource,
      func.coalesce(resources.c.created_at, text("'-infinity'::timestamptz")), resources.c.namespace,
      resources.c.name, resources.c.cluster, postgresql_include=["version"])
Index("resources_labels", resources.c.labels, postgresql_using="gin",
      postgresql_ops={"labels": "jsonb_path_ops"})
Index("resources_name_trgm", resources.c.name, postgresql_using="gin",
      postgresql_ops={"name": "gin_trgm_ops"})

# -- reports (migration 6): what the pod reports need of a pod, kept by PostgreSQL beside the
# object (STORED generated columns, NULL for every other type) and read from one partial
# index; events are found by their time. The functions are defined by the migration.
_POD = "grp = '' AND resource = 'pods'"
for _column in (
    Column("pod_phase", Text(collation="C"),
           Computed(f"CASE WHEN {_POD} THEN kube_pod_phase(object) END", persisted=True)),
    Column("pod_restarts", Integer,
           Computed(f"CASE WHEN {_POD} THEN kube_pod_restarts(object) END", persisted=True)),
    # One image per container, sorted; NULL when they take over 2000 bytes (read the object).
    Column("pod_images", ARRAY(Text(collation="C")),
           Computed(f"CASE WHEN {_POD} THEN kube_pod_images(object, 2000) END", persisted=True)),
):
    resources.append_column(_column)
Index("resources_pod_report", resources.c.cluster, resources.c.namespace, resources.c.pod_images,
      resources.c.pod_phase, resources.c.pod_restarts, postgresql_where=text(_POD))
Index("resources_pod_images_unbounded", resources.c.cluster,
      postgresql_where=text(f"{_POD} AND pod_images IS NULL"))
Index("resources_event_time", func.kube_event_time(resources.c.object),
      postgresql_where=text("grp = '' AND resource = 'events'"))
# -- end reports

# -- field selectors on JSON paths (migration 8): a container's image among a pod's images.
# Partial on what an image condition implies (migration 10), not on "a pod": see there.
Index("resources_pod_images", resources.c.pod_images, postgresql_using="gin",
      postgresql_where=resources.c.pod_images.isnot(None))
# -- end field selectors on JSON paths

# What name and image searches read of each object, narrow, kept by triggers on
# ``resources`` (migration 11): identity, version, and a pod's spec.containers images.
resource_keys = Table(
    "resource_keys",
    metadata,
    Column("cluster", Text, nullable=False),
    Column("grp", Text, nullable=False),
    Column("resource", Text, nullable=False),
    Column("namespace", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("container_images", ARRAY(Text(collation="C"))),
    PrimaryKeyConstraint("grp", "resource", "namespace", "name", "cluster", name="resource_keys_pkey",
                         postgresql_include=["version", "container_images"]),
)
Index("resource_keys_name_trgm", resource_keys.c.name, postgresql_using="gin",
      postgresql_ops={"name": "gin_trgm_ops"})
Index("resource_keys_container_images", resource_keys.c.container_images, postgresql_using="gin",
      postgresql_where=resource_keys.c.container_images.isnot(None))

# Objects per cluster, type and namespace, kept by triggers on ``resources`` (migration 12):
# the counts report reads it.
object_counts = Table(
    "object_counts",
    metadata,
    Column("cluster", Text, nullable=False),
    Column("grp", Text, nullable=False),
    Column("resource", Text, nullable=False),
    Column("namespace", Text, nullable=False),
    Column("objects", BigInteger, nullable=False),
    PrimaryKeyConstraint("cluster", "grp", "resource", "namespace", name="object_counts_pkey"),
)

# -- the images report's summary (migration 13): per cluster, namespace and image, the pods
# that declare it and their containers with it; kept exact by statement-level triggers on
# ``resources`` (functions defined by the migration). Pods whose ``pod_images`` is NULL are
# not in it (the report reads those objects).
pod_image_use = Table(
    "pod_image_use",
    metadata,
    Column("cluster", Text, nullable=False),
    Column("namespace", Text, nullable=False),
    Column("image", Text(collation="C"), nullable=False),
    Column("pods", BigInteger, nullable=False),
    Column("containers", BigInteger, nullable=False),
    PrimaryKeyConstraint("cluster", "namespace", "image", name="pod_image_use_pkey"),
)
Index("pod_image_use_report_order", pod_image_use.c.image, pod_image_use.c.cluster, pod_image_use.c.namespace,
      postgresql_include=["pods", "containers"])
# -- end the images report's summary

change_log = Table(
    "change_log",
    metadata,
    Column("seq", BigInteger, nullable=False),
    Column("cluster", Text, nullable=False),
    Column("grp", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("resource", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("namespace", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("uid", Text, nullable=False),
    Column("resource_version", Text, nullable=False),
    Column("type", Text, nullable=False),  # ADDED | MODIFIED | DELETED
    # The clock when the change's number was drawn (migration 18; when its row was written
    # from migration 5; before that, when its transaction began): times follow numbers.
    Column("at", DateTime(timezone=True), nullable=False, server_default=text("clock_timestamp()")),
    # The state the object left (MODIFIED, DELETED); NULL for ADDED. The state after a
    # change is the next change's before-image, or the current row.
    Column("object", JSONB),
    PrimaryKeyConstraint("cluster", "seq", name="change_log_pkey"),
)
Index("change_log_seq", change_log.c.seq)  # the aggregated view reads across clusters by seq
Index("change_log_at", change_log.c.at)
Index("change_log_type_seq", change_log.c.grp, change_log.c.resource, change_log.c.seq)  # watches
# An object's changes in order, and each object's first change after a point in list order
# (lists as of a time; migration 10).
Index("change_log_list_order", change_log.c.grp, change_log.c.resource, change_log.c.namespace,
      change_log.c.name, change_log.c.cluster, change_log.c.seq)
Index("change_log_namespace", change_log.c.namespace, change_log.c.seq)  # a namespace's changes (history)

# Secrets the read API keeps in the database so that every API process shares them
# (the key continue tokens are signed with).
api_secrets = Table(
    "api_secrets",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

# The primary's horizon, for readers on hot standbys (migration 20, ``syncer.published``).
change_log_published = Table(
    "change_log_published",
    metadata,
    Column("only_row", Boolean, primary_key=True, server_default=text("true")),
    Column("horizon", BigInteger, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

sync_state = Table(
    "sync_state",
    metadata,
    Column("cluster", Text, nullable=False),
    Column("grp", Text, nullable=False),
    Column("resource", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("namespaced", Boolean, nullable=False),
    # How the member cluster's discovery describes the type, served by the read API.
    Column("singular", Text, nullable=False, server_default=text("''")),
    Column("short_names", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("categories", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("phase", Text, nullable=False),  # listing | watching | error
    Column("checkpoint", Text),  # source resourceVersion committed with the last batch
    Column("object_count", BigInteger, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Column("last_event_at", DateTime(timezone=True)),
    Column("skipped", BigInteger, nullable=False, server_default=text("0")),  # since the last snapshot
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("cluster", "grp", "resource", name="sync_state_pkey"),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("cluster", Text, nullable=False),
    Column("id", BigInteger, Identity(), nullable=False),
    Column("grp", Text, nullable=False),
    Column("resource", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("cluster", "id", name="snapshots_pkey"),
)
Index("snapshots_type", snapshots.c.cluster, snapshots.c.grp, snapshots.c.resource)

# Keys seen by an open snapshot. UNLOGGED: after a crash it is empty, and the item count
# checked when the snapshot ends turns that into "snapshot lost, list again", never into
# deleting rows that were seen.
snapshot_seen = Table(
    "snapshot_seen",
    metadata,
    Column("cluster", Text, nullable=False),
    Column("snapshot_id", BigInteger, nullable=False),
    Column("namespace", Text, nullable=False),
    Column("name", Text, nullable=False),
    PrimaryKeyConstraint("cluster", "snapshot_id", "namespace", "name", name="snapshot_seen_pkey"),
    prefixes=["UNLOGGED"],
)

# -- inspections (migration 19): stored runs, their findings (bounded per check) and their
# counts (every finding, per place and type), and partial indexes holding only what a check
# flags (the predicates are ``syncer.migrations_inspections``'; the checks repeat them).
inspection_runs = Table(
    "inspection_runs",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("trigger", Text, nullable=False),  # schedule | request
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("finished_at", DateTime(timezone=True)),
    Column("findings_kept", Boolean, nullable=False, server_default=text("true")),
)
Index("inspection_runs_started", inspection_runs.c.started_at)


def _inspection_table(name: str, *columns: Column[Any] | PrimaryKeyConstraint) -> Table:
    return Table(
        name,
        metadata,
        Column("run_id", BigInteger, ForeignKey("inspection_runs.id", ondelete="CASCADE"), nullable=False),
        Column("check_name", Text, nullable=False),
        Column("severity", Text, nullable=False),
        Column("cluster", Text, nullable=False),
        Column("grp", Text, nullable=False),
        *columns,
    )


inspection_findings = _inspection_table(
    "inspection_findings",
    Column("version", Text, nullable=False),
    Column("resource", Text, nullable=False),
    Column("namespace", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("message", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "check_name", "cluster", "grp", "resource", "namespace", "name",
                         name="inspection_findings_pkey"),
)
inspection_counts = _inspection_table(
    "inspection_counts",
    Column("resource", Text, nullable=False),
    Column("namespace", Text, nullable=False),
    Column("findings", BigInteger, nullable=False),
    PrimaryKeyConstraint("run_id", "check_name", "cluster", "grp", "resource", "namespace",
                         name="inspection_counts_pkey"),
)
_c = resources.c
for _index, _columns, _where in (
    ("crash_looping", (_c.cluster, _c.namespace, _c.name), inspect.CRASH_LOOPING),
    ("unavailable", (_c.cluster, _c.namespace, _c.name), inspect.UNAVAILABLE),
    ("not_ready", (_c.cluster, _c.name), inspect.NOT_READY),
    ("pressure", (_c.cluster, _c.name), inspect.UNDER_PRESSURE),
    ("no_resources", (_c.cluster, _c.namespace, _c.name), inspect.NO_RESOURCES),
    ("latest", (_c.cluster, _c.namespace, _c.name), inspect.ON_LATEST),
    ("no_addresses", (_c.cluster, _c.namespace, _c.name), inspect.NO_ADDRESSES),
    ("terminating", (_c.deleted_at,), inspect.TERMINATING),
):
    Index(f"resources_inspect_{_index}", *_columns, postgresql_where=text(_where))
# -- end inspections
