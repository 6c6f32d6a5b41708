"""Progress displays that vanish when nobody is watching.

The library is told whether to draw (``enabled``); whether anyone is watching is the CLI's call.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def item_done(self) -> None:
        pass

    @contextlib.contextmanager
    def item(self, label: str, weight: int, expected: int | None = None) -> Iterator[_NoBar]:
        yield self

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


@contextlib.contextmanager
def overall_bar(enabled: bool, total: int, count: int, verb: str, noun: str = "checkpoints",
                *, item_bars: bool = False):
    """One line for a whole run: ``verb k/N noun``, percent, bytes done/total, rate and ETA.

    ``total`` is the bytes of all ``count`` items, known up front; ``update(n)`` advances it,
    ``item_done()`` counts an item finished (safe from worker threads). With ``item_bars``,
    ``item(label, weight, expected)`` also draws the current item's own bar on the line below.
    Disabled, an object with the same methods doing nothing.
    """
    if not enabled:
        yield _NoBar()
        return
    bar = OverallBar(total, count, verb, noun, item_bars=item_bars)
    try:
        yield bar
    finally:
        bar.close()


class OverallBar:
    """See ``overall_bar``."""

    def __init__(self, total: int, count: int, verb: str, noun: str, *, item_bars: bool = False,
                 mininterval: float = 0.1):
        self._count, self._done, self._verb, self._noun = count, 0, verb, noun
        self._item_bars = item_bars
        self._lock = threading.Lock()
        self._bar = _iec_bar_class()(total=total, desc=self._desc(), unit="B", leave=False,
                                     bar_format=_OVERALL_FORMAT, mininterval=mininterval, position=0,
                                     smoothing=0)  # the run's average rate: items differ, the ETA should not jump

    def _desc(self) -> str:
        return f"{self._verb} {self._done}/{self._count} {self._noun}"

    def update(self, n: int = 1) -> None:
        with self._lock:
            self._bar.update(n)

    def item_done(self) -> None:
        with self._lock:
            self._done += 1
            self._bar.set_description_str(self._desc())  # redraws now: each finished item is a frame

    @contextlib.contextmanager
    def item(self, label: str, weight: int, expected: int | None = None) -> Iterator[_ItemBar]:
        """One item of ``weight`` bytes of the total whose work streams ``expected`` bytes
        (``update`` counts those): the overall bar moves by the item's share of ``weight`` as
        they pass and by the rest when the item ends, which also counts it done."""
        own = None
        if self._item_bars:
            own = _iec_bar_class()(total=expected, desc=label, unit="B", leave=False, bar_format=_BAR_FORMAT,
                                   position=1)
        item = _ItemBar(self, own, weight, expected)
        try:
            yield item
        finally:
            if own is not None:
                own.close()
        self.update(weight - item.moved)
        self.item_done()

    def close(self) -> None:
        self._bar.close()


class _ItemBar:
    def __init__(self, overall: OverallBar, own, weight: int, expected: int | None):
        self._overall, self._own, self._weight, self._expected = overall, own, weight, expected
        self._seen = 0
        self.moved = 0

    def update(self, n: int = 1) -> None:
        if self._own is not None:
            self._own.update(n)
        if not self._expected:
            return
        self._seen += n
        share = min(self._weight, self._weight * self._seen // self._expected)
        if share > self.moved:
            self._overall.update(share - self.moved)
            self.moved = share


# tqdm's own byte scaling writes 1024-based sizes as "MB"; these fields are nnseal.units' IEC text.
# Short fields: the overall line fits an 80-column terminal with room for its bar.
_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {done_iec}/{total_iec} {rate_iec}/s ETA {remaining}"
_OVERALL_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {done_iec}/{total_iec} {rate_iec}/s ETA {remaining}"


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
