"""Prometheus counters of the agent's pipelines (exported by whoever serves /metrics)."""

from __future__ import annotations

from prometheus_client import Counter

EVENTS_SHIPPED = Counter("kubepedia_agent_events_shipped", "Changes acknowledged by the sink", ["resource"])
OBJECTS_SNAPSHOTTED = Counter(
    "kubepedia_agent_snapshot_objects", "Snapshot objects acknowledged by the sink", ["resource"]
)
BATCHES_REJECTED = Counter(
    "kubepedia_agent_batches_rejected", "Calls the sink refused as bad data", ["resource"]
)
BUFFER_OVERFLOWS = Counter(
    "kubepedia_agent_buffer_overflows",
    "Buffers dropped because the sink stayed busy or unavailable",
    ["resource"],
)
