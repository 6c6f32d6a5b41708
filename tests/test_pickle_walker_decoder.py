"""The walker's opcode decoder (nnseal.readers.pickle_ops) reads real pickles of every protocol like
pickletools.genops, and random mutations of them like the C unpickler that pickle.load runs."""

from __future__ import annotations

import pickle
import pickletools

import pytest
from c_unpickler import c_reading
from hypothesis import given, settings
from hypothesis import strategies as st

from nnseal.errors import MalformedPickle
from nnseal.readers.pickle_stream import normalize_global, scan_pickle

VALUES = (None, True, [1, -2, 3.5, 2**70, -(2**40), 70000], {"k": b"bytes", "u": "\u00fc\u00f1"}, (1, (2, (3,))),
          {"s": set(range(3)), "f": frozenset({1}), "ba": bytearray(b"x" * 300)}, "x" * 70000,
          {"a": [None] * 300, "b": b"y" * 300})
SAMPLES = [pickle.dumps(value, protocol=protocol) for protocol in range(6) for value in VALUES]


def _reference(data: bytes) -> tuple[set[str], bool]:
    """Opcode names up to STOP and whether genops reads a complete pickle."""
    names: set[str] = set()
    try:
        for op, _, _ in pickletools.genops(data):
            names.add(op.name)
            if op.name == "STOP":
                return names, True
    except (ValueError, UnicodeDecodeError):
        return names, False
    return names, False


def _agree(data: bytes) -> None:
    """Where the C unpickler reads to STOP or to an import, the walker reads that far too."""
    reference = c_reading(data)
    try:
        scan = scan_pickle(data)
    except MalformedPickle as err:
        if err.reason.startswith("not a well-formed pickle ("):
            assert reference.outcome != "stop", f"the decoder refused what the C unpickler reads: {err.reason}"
        return  # otherwise the stack model refused it, whatever the loader makes of it
    if reference.outcome == "import":
        assert normalize_global(*reference.imported) in scan.globals


@pytest.mark.parametrize("data", SAMPLES)
def test_decoder_reads_real_pickles_like_genops(data):
    names, complete = _reference(data)
    scan = scan_pickle(data)
    assert complete and scan.opcodes == names


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.sampled_from(SAMPLES), st.data())
def test_decoder_agrees_with_the_c_unpickler_on_mutations(sample, data):
    raw = bytearray(sample)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        choice = data.draw(st.integers(0, 2))
        if choice == 0:
            raw[at] = data.draw(st.integers(0, 255))
        elif choice == 1:
            del raw[at:at + data.draw(st.integers(1, 8))]
        else:
            raw[at:at] = bytes(data.draw(st.lists(st.integers(0, 255), min_size=1, max_size=8)))
        if not raw:
            return
    _agree(bytes(raw))
