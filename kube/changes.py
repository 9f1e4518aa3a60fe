"""The three ways an object changes, as a Kubernetes watch reports them and our change log
records them.

https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes:
a watch sends ADDED, MODIFIED and DELETED events for objects, and BOOKMARK (and ERROR)
events that change no object. The informers, the ingest protocol, the change log, the read
API's watches and kubesim's watch history all use these three names, spelled once here.
"""

from __future__ import annotations

from typing import Literal, get_args

ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]
CHANGE_TYPES: frozenset[ChangeType] = frozenset(get_args(ChangeType))

# The events a stream of changes carries: the changes, and BOOKMARKs that only advance its
# resourceVersion. (An ERROR event ends a watch; it is never passed on.)
WatchEventType = Literal[ChangeType, "BOOKMARK"]
WATCH_EVENT_TYPES: frozenset[WatchEventType] = frozenset((*CHANGE_TYPES, "BOOKMARK"))
