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
    bar = _iec_bar_class()(total=total, desc=desc, unit="B", leave=False, bar_format=_BAR_FORMAT)
    try:
        yield bar
    finally:
        bar.close()


# tqdm's own byte scaling writes 1024-based sizes as "MB"; these fields are nnseal.units' IEC text.
_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {done_iec}/{total_iec} [{elapsed}<{remaining}, {rate_iec}/s]"


def _iec_bar_class():
    from tqdm import tqdm

    from nnseal.units import format_bytes

    class IecBar(tqdm):
        @property
        def format_dict(self):
            fields = super().format_dict
            rate = fields.get("rate")
            if rate is None and fields.get("elapsed"):
                rate = fields["n"] / fields["elapsed"]
            total = fields.get("total")
            return {**fields, "done_iec": format_bytes(fields["n"]),
                    "total_iec": format_bytes(total) if total is not None else "?",
                    "rate_iec": format_bytes(rate) if rate else "? B"}

    return IecBar


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
