"""The agent's memory: objects kept as their JSON."""

from __future__ import annotations

import tracemalloc

from agent.events import RawObject
from tests.factories import pod


def test_raw_objects_keep_their_json_in_an_allocation_of_its_size() -> None:
    obj = pod("a", 7, data="x" * 100_000)
    tracemalloc.start()
    try:
        raw = RawObject.encode(obj)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # orjson's own buffer for this object is over a megabyte.
    assert len(raw.json) < held < len(raw.json) + 4096
    assert (raw.kind, raw.namespace, raw.name, raw.resource_version) == ("Pod", "default", "a", "7")
    assert raw["metadata"]["uid"] == obj["metadata"]["uid"] == raw.uid and dict(raw) == obj
