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
from dataclasses import dataclass

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
    docstring for the one exception).

    Waiters are let in first come, first served, each by the release that makes room for
    it, never by waking every waiter to look again: pull mode shares one budget among the
    pipelines of a hundred clusters, and with every waiter woken at each acknowledgement the
    event loop spent its time on wake-ups that found the budget still full."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._queue: deque[_Waiter] = deque()
        self._by_holder: dict[int, list[_Waiter]] = {}  # id(holder) -> its waiters

    async def acquire(self, amount: int, *, holder: MessageBuffer) -> None:
        if not holder.held or (not self._queue and self.used + amount <= self.limit):
            self.used += amount
            return
        waiter = _Waiter(amount=amount, holder=holder, future=asyncio.get_running_loop().create_future())
        self._queue.append(waiter)
        self._by_holder.setdefault(id(holder), []).append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(amount)  # let in, but the caller will not hold it
            else:
                self._forget(waiter)
                self._grant()
            raise

    def release(self, amount: int, *, holder: MessageBuffer | None = None) -> None:
        """``amount`` bytes are no longer held (by ``holder``, when it is known: a holder
        that now holds nothing lets its waiter in at once, over the limit if need be)."""
        self.used -= amount
        if holder is not None and not holder.held:
            for waiter in list(self._by_holder.get(id(holder), ())):
                self._let_in(waiter)
        self._grant()

    def _grant(self) -> None:
        while self._queue and self.used + self._queue[0].amount <= self.limit:
            self._let_in(self._queue[0])

    def _let_in(self, waiter: _Waiter) -> None:
        self._forget(waiter)
        self.used += waiter.amount
        waiter.future.set_result(None)

    def _forget(self, waiter: _Waiter) -> None:
        if self._queue and self._queue[0] is waiter:
            self._queue.popleft()
        else:
            self._queue.remove(waiter)
        waiters = self._by_holder[id(waiter.holder)]
        waiters.remove(waiter)
        if not waiters:
            del self._by_holder[id(waiter.holder)]


@dataclass(eq=False, kw_only=True, slots=True)
class _Waiter:
    amount: int
    holder: MessageBuffer
    future: asyncio.Future[None]


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
        self.finished = False  # nothing more will be put (the agent is draining)
        self._items: deque[InformerMessage] = deque()
        self._changed = asyncio.Condition()

    def _fits(self, objects: int, amount: int) -> bool:
        if self.max_bytes is not None and self.bytes + amount > self.max_bytes:
            return False
        return self.size + objects <= self.limit

    def _readable(self) -> bool:
        return bool(self._items) or self.overflowed or self.finished

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
        """The next message; None after ``wait`` seconds without one, or at once once the
        buffer is empty and :meth:`finish` was called. It stays held until :meth:`done`."""
        async with self._changed:
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait_for(self._readable)
            except TimeoutError:
                return None
            if self.overflowed:
                raise Overflowed("buffer dropped")
            if not self._items:
                return None
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
            self.budget.release(amount, holder=self)

    def close(self) -> None:
        """The pipeline's generation ended: whatever it held is let go."""
        self._items.clear()
        self.size = self.bytes = 0
        self.done(self.held)

    async def finish(self) -> None:
        """Nothing more will be put: a reader of the empty buffer gets None instead of waiting."""
        async with self._changed:
            self.finished = True
            self._changed.notify_all()

    async def set_sink_failing(self, failing: bool) -> None:
        async with self._changed:
            self.sink_failing = failing
            self._changed.notify_all()

    def _drop(self) -> None:
        self._items.clear()
        self.held -= self.bytes
        if self.budget is not None:
            self.budget.release(self.bytes, holder=self)
        self.size = self.bytes = 0
        self.overflowed = True
        self._changed.notify_all()
