"""What a pipeline holds between its informer and its sink, and what all of them hold.

A :class:`MessageBuffer` is one type's FIFO from informer to shipper, bounded by a count of
objects and by bytes. A :class:`Budget` bounds the bytes that every pipeline of an agent
holds at once, from the moment a message enters its buffer until the sink acknowledged it
(or it is dropped): per-type bounds alone add up, and a cluster lists all its types at once
when an agent starts, each filling its own buffer while the syncer takes them one by one.

A message's bytes are its objects' JSON plus :data:`OBJECT_OVERHEAD` each (the message and
each object's identity, as Python objects). A buffer that holds nothing is always let one
message in, however big, so every type progresses: an object over every bound must still
pass, and a busy type cannot starve a quiet one for longer than its own messages take.
"""

from __future__ import annotations

import asyncio
from collections import deque

from agent.events import InformerMessage, RawObject, SnapshotPage, WatchEvent

OBJECT_OVERHEAD = 512


class Overflowed(Exception):
    """The buffer was dropped while the sink could not keep up."""


def weight(message: InformerMessage) -> int:
    """Objects: a page counts its items, anything else one."""
    return max(1, len(message.items)) if isinstance(message, SnapshotPage) else 1


def size(message: InformerMessage) -> int:
    """Bytes (see the module docstring)."""
    if isinstance(message, SnapshotPage):
        return message.size + OBJECT_OVERHEAD * max(1, len(message.items))
    if isinstance(message, WatchEvent) and isinstance(message.object, RawObject):
        return len(message.object.json) + OBJECT_OVERHEAD
    return OBJECT_OVERHEAD


class Budget:
    """Bytes the pipelines of one agent hold at once, at most ``limit`` (see the module
    docstring for the one exception)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: list[asyncio.Future[None]] = []

    async def acquire(self, amount: int, *, holder: MessageBuffer) -> None:
        while holder.held and self.used + amount > self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
        self.used += amount

    def release(self, amount: int) -> None:
        self.used -= amount
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


class MessageBuffer:
    """A bounded FIFO between an informer and a shipper; see :mod:`agent.pipeline`.

    ``held`` counts the bytes of every message put and not yet :meth:`done` (acknowledged by
    the sink, or dropped): those in the buffer and those the shipper took.
    """

    def __init__(self, limit: int, max_bytes: int | None = None, budget: Budget | None = None) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.budget = budget
        self.size = 0  # objects in the buffer
        self.bytes = 0  # their bytes
        self.held = 0
        self.sink_failing = False
        self.overflowed = False
        self._items: deque[InformerMessage] = deque()
        self._changed = asyncio.Condition()

    def _fits(self, objects: int, amount: int) -> bool:
        if self.max_bytes is not None and self.bytes + amount > self.max_bytes:
            return False
        return self.size + objects <= self.limit

    async def put(self, message: InformerMessage) -> None:
        objects, amount = weight(message), size(message)
        async with self._changed:
            await self._changed.wait_for(
                lambda: not self._items or self._fits(objects, amount) or self.sink_failing
            )
            if self._items and not self._fits(objects, amount):
                self._drop()
                raise Overflowed(
                    f"more than {self.limit} objects or {self.max_bytes} bytes waiting for the sink")
        # Only the shipper changes the buffer meanwhile, and it only takes from it.
        if self.budget is not None:
            await self.budget.acquire(amount, holder=self)
        self.held += amount  # at once: a cancellation cannot come between
        async with self._changed:
            self._items.append(message)
            self.size += objects
            self.bytes += amount
            self._changed.notify_all()

    async def get(self, *, wait: float | None = None) -> InformerMessage | None:
        """The next message; None after ``wait`` seconds without one. It stays held until
        :meth:`done`."""
        async with self._changed:
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait_for(lambda: bool(self._items) or self.overflowed)
            except TimeoutError:
                return None
            if self.overflowed:
                raise Overflowed("buffer dropped")
            message = self._items.popleft()
            self.size -= weight(message)
            self.bytes -= size(message)
            self._changed.notify_all()
            return message

    def done(self, amount: int) -> None:
        """Messages taken with :meth:`get`, of ``amount`` bytes, are acknowledged."""
        amount = min(amount, self.held)  # after close(), nothing is held any more
        self.held -= amount
        if self.budget is not None:
            self.budget.release(amount)

    def close(self) -> None:
        """The pipeline's generation ended: whatever it held is let go."""
        self._items.clear()
        self.size = self.bytes = 0
        self.done(self.held)

    async def set_sink_failing(self, failing: bool) -> None:
        async with self._changed:
            self.sink_failing = failing
            self._changed.notify_all()

    def _drop(self) -> None:
        self._items.clear()
        self.held -= self.bytes
        if self.budget is not None:
            self.budget.release(self.bytes)
        self.size = self.bytes = 0
        self.overflowed = True
        self._changed.notify_all()
