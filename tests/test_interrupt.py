"""SIGINT, SIGTERM and SIGHUP as one mechanism (nnseal.interrupt), for every command."""

from __future__ import annotations

import os
import signal

import pytest

from nnseal.interrupt import Interrupted, deferred_interrupts, interrupts_as_keyboard_interrupt


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_each_signal_raises_interrupted_with_its_exit_code(sig):
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with pytest.raises(Interrupted) as caught, interrupts_as_keyboard_interrupt():
        os.kill(os.getpid(), sig)
    assert caught.value.exit_code == 128 + sig and isinstance(caught.value, KeyboardInterrupt)
    assert {s: signal.getsignal(s) for s in previous} == previous  # the previous handlers are back


def test_a_second_signal_cannot_cut_the_cleanup_short():
    cleaned = []
    with pytest.raises(Interrupted) as caught, interrupts_as_keyboard_interrupt():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            os.kill(os.getpid(), signal.SIGHUP)  # held back: the cleanup below still runs
            os.kill(os.getpid(), signal.SIGINT)
            cleaned.append(True)
    assert cleaned == [True] and caught.value.signum == signal.SIGTERM  # the exit status is the first's
    # The next block starts afresh.
    with pytest.raises(Interrupted) as again, interrupts_as_keyboard_interrupt():
        os.kill(os.getpid(), signal.SIGHUP)
    assert again.value.signum == signal.SIGHUP


def test_deferred_signals_are_recorded_not_raised():
    with interrupts_as_keyboard_interrupt():
        with deferred_interrupts() as seen:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGHUP)
        assert seen.signals == [signal.SIGTERM, signal.SIGHUP]
