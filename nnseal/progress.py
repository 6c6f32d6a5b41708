"""Byte progress bars that vanish when nobody is watching."""

from __future__ import annotations

import contextlib


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


@contextlib.contextmanager
def byte_bar(enabled: bool, total: int | None, desc: str):
    """A tqdm bar counting bytes when enabled, else an object with the same methods doing nothing."""
    if not enabled:
        yield _NoBar()
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False)
    try:
        yield bar
    finally:
        bar.close()


class CountingWriter:
    """Passes writes through to ``target`` and advances ``bar`` by the bytes written."""

    def __init__(self, target, bar):
        self._target, self._bar = target, bar

    def write(self, data) -> int:
        written = self._target.write(data)
        self._bar.update(memoryview(data).nbytes)
        return written

    def flush(self) -> None:
        self._target.flush()
