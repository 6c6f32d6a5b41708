"""A zip member as a read-only stream: the checks read headers from it without extracting the member."""

from __future__ import annotations

from collections.abc import Iterator


class MemberReader:
    """``read(n)`` over ``SafeZip.stream`` chunks; every chunk is CRC- and size-checked as it comes."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buffer = bytearray()
        self._done = False

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buffer) < size):
            block = next(self._chunks, None)
            if block is None:
                self._done = True
            else:
                self._buffer += block
        if size < 0:
            size = len(self._buffer)
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> MemberReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
