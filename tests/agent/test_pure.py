"""Pure parts: line splitting, backoff, errors, checkpoints, protocol bodies."""

from __future__ import annotations

import random

import orjson
import pytest

from agent import errors, protocol
from agent.backoff import Backoff
from agent.events import WatchEvent
from agent.informer import _decode_checkpoint
from agent.jsonlines import LineSplitter, iter_lines
from kube.resources import ResourceType


def test_lines_split_across_chunks() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b'{"a":') == []
    assert splitter.feed(b'1}\n{"b":2}\n{"c"') == [b'{"a":1}', b'{"b":2}']
    assert splitter.pending == 4
    assert splitter.feed(b":3}\n\n") == [b'{"c":3}']
    assert splitter.finish() is None


def test_line_without_trailing_newline_is_kept() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"abc") == []
    assert splitter.finish() == b"abc"


async def test_huge_line_in_small_chunks() -> None:
    line = b'{"data":"' + b"x" * (3 * 1024 * 1024) + b'"}'
    data = line + b"\n" + b'{"n":1}\n'

    async def chunks() -> object:
        for start in range(0, len(data), 65536):
            yield data[start : start + 65536]

    lines = [item async for item in iter_lines(chunks())]  # type: ignore[arg-type]
    assert lines == [line, b'{"n":1}']


def test_backoff_grows_capped_with_jitter() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(20)]
    assert all(0.05 <= delay <= 8.0 for delay in delays)
    assert len(set(delays)) > 10  # jittered
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_error_mapping() -> None:
    status = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
    gone = errors.error_from_status(status)
    assert isinstance(gone, errors.Gone) and gone.status == 410 and gone.reason == "Expired"
    busy = errors.error_from_status({"message": "slow"}, http_status=429, retry_after=3)
    assert isinstance(busy, errors.TooManyRequests) and busy.retry_after == 3
    assert isinstance(errors.error_from_status({}, http_status=503), errors.ServerError)
    assert isinstance(errors.error_from_status({}, http_status=403), errors.Forbidden)


def test_checkpoints_fit_scopes() -> None:
    assert _decode_checkpoint("42", (None,)) == {None: "42"}
    assert _decode_checkpoint(None, (None,)) is None
    composite = orjson.dumps({"namespaces": {"a": "1", "b": "2"}}).decode()
    assert _decode_checkpoint(composite, ("a", "b")) == {"a": "1", "b": "2"}
    assert _decode_checkpoint(composite, ("a",)) is None  # namespaces changed: relist
    assert _decode_checkpoint(composite, (None,)) is None
    assert _decode_checkpoint("42", ("a",)) is None


def test_protocol_round_trip() -> None:
    rtype = ResourceType(
        group="apps", version="v1", resource="deployments", kind="Deployment", namespaced=True
    )
    obj = {"metadata": {"name": "x", "resourceVersion": "5"}}
    body = protocol.changes_body(rtype, [WatchEvent(type="ADDED", object=obj)], resource_version="5")
    decoded = orjson.loads(orjson.dumps(body))
    assert protocol.type_from_dict(decoded["type"]) == rtype
    assert protocol.change_from_dict(decoded["events"][0]) == WatchEvent(type="ADDED", object=obj)
    assert protocol.snapshot_pages_path("c/1", "s") == "/ingest/v1/clusters/c%2F1/snapshots/s/pages"
    with pytest.raises(protocol.ProtocolError):
        protocol.type_from_dict({"group": "", "version": "v1"})
    with pytest.raises(protocol.ProtocolError):
        protocol.change_from_dict({"type": "BOOKMARK", "object": obj})
