"""Decide what a batch changes, before any of it is written (pure: no I/O).

Resource versions are opaque: we never compare them by size, only by equality with what
is stored (Kubernetes API Concepts, "Resource versions"). An object's events in a batch
are applied after the last one that carries the stored resourceVersion, so a batch that
overlaps what is already committed is applied only from where it is new.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kube.changes import ChangeType
from syncer.validate import Event, Row

Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredState:
    uid: str
    resource_version: str
    version: str = ""
    kind: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class LogEntry:
    """One change-log entry to write (a row of ``change_log``)."""

    type: ChangeType
    namespace: str
    name: str
    uid: str
    resource_version: str
    version: str = ""  # "" = the batch's version
    kind: str = ""
    # The state the object leaves (docs/design.md, "The change log keeps before-images"):
    # known here when an earlier event of the same batch put it there (or a deletion
    # carries it); None on MODIFIED/DELETED means "the stored row", which the store reads.
    before: bytes | None = None

    @property
    def before_from_store(self) -> bool:
        return self.type != "ADDED" and self.before is None


@dataclass(kw_only=True, slots=True)
class Plan:
    log: list[LogEntry] = field(default_factory=list)
    upserts: list[tuple[int, Row]] = field(default_factory=list)  # (log index, final row)
    deletes: list[LogEntry] = field(default_factory=list)
    count_delta: int = 0
    inserts: int = 0  # upserts of keys with no stored row


def _skip_counts(events: Sequence[Event], stored: Mapping[Key, StoredState]) -> dict[Key, int]:
    """Per key, how many of its events are already reflected in the stored row."""
    seen: dict[Key, int] = {}
    skip: dict[Key, int] = {}
    for event in events:
        if event.row is None:
            continue
        key = event.row.key
        seen[key] = seen.get(key, 0) + 1
        state = stored.get(key)
        if state is not None and event.type != "DELETED" and \
                state.resource_version == event.row.resource_version and state.uid == event.row.uid:
            skip[key] = seen[key]
    return skip


class _Applier:
    """Replays events against the stored state, collecting log entries and final rows."""

    def __init__(self, stored: Mapping[Key, StoredState]) -> None:
        self.current: dict[Key, Row | StoredState | None] = dict(stored)
        self.plan = Plan()
        self.final: dict[Key, int | None] = {}  # key -> log index of final upsert, None = deleted
        self.rows: dict[Key, Row] = {}
        self.original = stored

    def put(self, row: Row) -> None:
        current = self.current.get(row.key)
        if current is None:
            self._log("ADDED", row.key, row.uid, row.resource_version)
        elif current.uid != row.uid:
            # Same name, new object: the old one was deleted while we were not looking.
            self._log("DELETED", row.key, current.uid, current.resource_version, of=current,
                      before=_object(current))
            self._log("ADDED", row.key, row.uid, row.resource_version)
        elif current.resource_version == row.resource_version:
            return
        else:
            self._log("MODIFIED", row.key, row.uid, row.resource_version, before=_object(current))
        self.current[row.key] = row
        self.rows[row.key] = row
        self.final[row.key] = len(self.plan.log) - 1

    def delete(self, row: Row) -> None:
        current = self.current.get(row.key)
        if current is None or current.uid != row.uid:
            return  # already gone, or a newer object of the same name lives there
        # A deletion carries only the object's identity (its object may be empty): the state
        # it leaves is the last one this batch put there, or the stored row.
        self._log("DELETED", row.key, row.uid, row.resource_version, of=current,
                  before=row.object or _object(current))
        self.current[row.key] = None
        self.final[row.key] = None

    def _log(self, type_: ChangeType, key: Key, uid: str, rv: str,
             of: Row | StoredState | None = None, before: bytes | None = None) -> None:
        version = of.version if isinstance(of, StoredState) else ""
        kind = of.kind if isinstance(of, StoredState) else ""
        self.plan.log.append(LogEntry(type=type_, namespace=key[0], name=key[1], uid=uid,
                                    resource_version=rv, version=version, kind=kind, before=before))

    def finish(self) -> Plan:
        for key, index in self.final.items():
            was = self.original.get(key)
            if index is None:
                if was is not None:
                    self.plan.deletes.append(LogEntry(
                        type="DELETED", namespace=key[0], name=key[1], uid=was.uid,
                        resource_version=was.resource_version))
                    self.plan.count_delta -= 1
            else:
                self.plan.upserts.append((index, self.rows[key]))
                self.plan.inserts += 0 if was is not None else 1
                self.plan.count_delta += 0 if was is not None else 1
        return self.plan


def _object(state: Row | StoredState) -> bytes | None:
    """A state's object when this batch holds it; None when it is the stored row."""
    return state.object if isinstance(state, Row) else None


def plan_batch(events: Sequence[Event], stored: Mapping[Key, StoredState]) -> Plan:
    skip = _skip_counts(events, stored)
    applier = _Applier(stored)
    seen: dict[Key, int] = {}
    for event in events:
        if event.row is None:
            continue
        key = event.row.key
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= skip.get(key, 0):
            continue
        if event.type == "DELETED":
            applier.delete(event.row)
        else:
            applier.put(event.row)
    return applier.finish()


def plan_snapshot_page(rows: Sequence[Row], stored: Mapping[Key, StoredState]) -> Plan:
    applier = _Applier(stored)
    for row in rows:
        applier.put(row)
    return applier.finish()
