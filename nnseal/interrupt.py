"""SIGTERM and SIGHUP take the path Ctrl-C takes, so every cleanup runs for all three.

`timeout`, systemd, CI cancellation and a closed terminal send SIGTERM or SIGHUP, whose
default action kills the process without running a single ``finally`` block: staging
folders and temporary files would stay behind. Inside ``interrupts_as_keyboard_interrupt``
the three signals raise ``Interrupted`` (a KeyboardInterrupt), so the cleanup code written
for Ctrl-C is the only cleanup code. Once one has been raised, the next ones are held back
until the outermost block ends, so that a second signal cannot cut that cleanup short (the
exit status stays that of the first). ``deferred_interrupts`` holds them back while a short
step that must not be cut in two runs (the final renames of an install).

Python runs signal handlers only in the main thread; elsewhere both are no-ops.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Interrupted(KeyboardInterrupt):
    """A KeyboardInterrupt that remembers which signal caused it (exit status 128 + signal)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    depth = 0  # nesting of deferred_interrupts
    pending: list[int] = []
    blocks = 0  # nesting of interrupts_as_keyboard_interrupt that installed the handlers
    raised = False  # an Interrupted was raised in the outermost block: the cleanup is running
    done = False  # the operation's effect is in place (mark_done): later signals change nothing


def _handler(signum, frame) -> None:
    if _State.depth or _State.raised or _State.done:
        _State.pending.append(signum)
        return
    _State.raised = True
    raise Interrupted(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _ignore(signum, frame) -> None:
    """Not SIG_IGN: a Python handler is not inherited by child processes, SIG_IGN would be."""


def mark_done() -> None:
    """The operation's effect is in place (an install's folders are swapped in): from now on,
    inside the outermost block, the three signals are recorded and no longer interrupt, so
    what follows (cleanup, the report) finishes and the process exits as a success."""
    if _State.blocks:
        _State.done = True


@contextlib.contextmanager
def interrupts_as_keyboard_interrupt(*, ignore_after_done: bool = False) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise ``Interrupted`` inside the block; the previous handlers
    come back afterwards. A signal that was ignored (SIG_IGN, e.g. under nohup) stays ignored.

    ``ignore_after_done`` (for a process about to exit, the CLI): when the block ends after
    ``mark_done``, the three signals are ignored instead, so that one arriving between the
    report and the exit cannot turn a completed install into an exit status of 143."""
    if not _in_main_thread():
        yield
        return
    previous = {}
    for signum in SIGNALS:
        old = signal.getsignal(signum)
        if old is signal.SIG_IGN:
            continue
        previous[signum] = old
        signal.signal(signum, _handler)
    _State.blocks += 1
    try:
        yield
    finally:
        keep_ignoring = ignore_after_done and _State.done
        for signum, old in previous.items():
            signal.signal(signum, _ignore if keep_ignoring else old if old is not None else signal.SIG_DFL)
        _State.blocks -= 1
        if not _State.blocks:
            _State.raised = False
            _State.done = False
            if not _State.depth:
                _State.pending.clear()


class Deferred:
    """What ``deferred_interrupts`` saw: the signals that arrived while it held them back."""

    def __init__(self) -> None:
        self.signals: list[int] = []


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[Deferred]:
    """Inside the block the three signals are recorded, not raised; the caller decides what they
    mean when it ends (``Deferred.signals``). Handlers are installed for the block if needed."""
    seen = Deferred()
    with interrupts_as_keyboard_interrupt():
        _State.depth += 1
        mark = len(_State.pending)
        try:
            yield seen
        finally:
            _State.depth -= 1
            seen.signals = _State.pending[mark:]
            del _State.pending[mark:]
