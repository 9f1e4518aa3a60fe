"""Split a watch stream into JSON lines without aiohttp's line-length limit.

aiohttp's ``StreamReader.readline`` (and ``async for line in content``) raises once a line
exceeds its buffer limit (``2**16`` bytes, doubled as the high-water mark: ~128 KB). A
watch event carries a whole object, and objects up to etcd's ~1.5 MiB request limit exist
(large ConfigMaps, Secrets, CRDs with big schemas). So the agent reads raw chunks and
splits them itself, as kopf does (https://github.com/nolar/kopf/issues/275).

The splitter keeps the unfinished line as a list of pieces and joins them once, when the
newline arrives, so a 1.5 MiB line read in 64 KiB chunks costs one copy, not a quadratic
number of re-concatenations.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator


class LineSplitter:
    """Feed bytes in, get complete non-empty lines (without the ``\\n``) out."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self.pending = 0  # bytes held for an unfinished line

    def feed(self, chunk: bytes) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        index = chunk.find(b"\n")
        while index >= 0:
            self._pieces.append(chunk[start:index])
            line = b"".join(self._pieces)
            self._pieces.clear()
            if line.strip():
                lines.append(line)
            start = index + 1
            index = chunk.find(b"\n", start)
        if start < len(chunk):
            self._pieces.append(chunk[start:])
        self.pending = sum(len(piece) for piece in self._pieces)
        return lines

    def finish(self) -> bytes | None:
        """The last line if the stream ended without a trailing newline."""
        line = b"".join(self._pieces)
        self._pieces.clear()
        self.pending = 0
        return line if line.strip() else None


async def iter_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Yield the complete lines of a byte stream, however long they are."""
    splitter = LineSplitter()
    async for chunk in chunks:
        for line in splitter.feed(chunk):
            yield line
    last = splitter.finish()
    if last is not None:
        yield last
