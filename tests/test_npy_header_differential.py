"""nnseal's .npy header reader against numpy's own (``numpy.lib.format``), on real headers and
on dtype spellings: whenever numpy would build an array holding Python objects (which numpy.load
unpickles), nnseal must say so or refuse the spelling; whenever nnseal accepts a spelling as
plain, numpy must agree it holds no objects. Only headers are parsed; no array is loaded."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnseal.errors import InvalidNpyHeader
from nnseal.readers.npy_header import descr_verdict, read_npy_header

SPELLINGS = ["<f4", "|u1", "<i8", "|b1", ">f8", "<c16", "|S5", "<U3", "<M8[s]", "<m8[ms]", "f4", "float32", "i",
             "O", "|O", "<O", "O8", "object", "object_", "=O", "V8", "?", "e", "d",
             [("a", "<f4"), ("b", "|O")], [("a", "<f4"), ("b", "<i2", (3,))], ("<f4", (2,))]


def _numpy_has_objects(descr) -> bool | None:
    """What numpy makes of ``descr`` in a header (True: Python objects), or None if it refuses it."""
    try:
        return bool(np.lib.format.descr_to_dtype(descr).hasobject)
    except (TypeError, ValueError, KeyError, SyntaxError):
        return None


@pytest.mark.parametrize("descr", SPELLINGS, ids=[repr(s) for s in SPELLINGS])
def test_dtype_verdict_is_never_laxer_than_numpy(descr):
    numpy_objects = _numpy_has_objects(descr)
    verdict = descr_verdict(descr)
    if numpy_objects:
        assert verdict is not None, f"numpy reads {descr!r} as objects, nnseal as plain"
    if verdict is None:
        assert numpy_objects is False


@pytest.mark.parametrize("array", [np.zeros((2, 3), "<f4"), np.arange(5, dtype=">i8"), np.array(["ab"], "<U2"),
                                   np.zeros(4, dtype=[("a", "<f4"), ("b", "<i2", (2,))]),
                                   np.array([None, 1], dtype=object)], ids=["f4", "i8be", "U2", "struct", "object"])
@pytest.mark.parametrize("version", [1, 2])
def test_headers_numpy_writes_read_the_same(array, version):
    fmt = np.lib.format
    buffer = io.BytesIO()
    write = fmt.write_array_header_1_0 if version == 1 else fmt.write_array_header_2_0
    write(buffer, fmt.header_data_from_array_1_0(array))
    ours = read_npy_header(io.BytesIO(buffer.getvalue()))
    buffer.seek(0)
    fmt.read_magic(buffer)
    read = fmt.read_array_header_1_0 if version == 1 else fmt.read_array_header_2_0
    shape, fortran, dtype = read(buffer)
    assert tuple(ours["shape"]) == shape and ours["fortran_order"] == fortran
    assert (descr_verdict(ours["descr"]) is not None) == dtype.hasobject


_letters = st.sampled_from(list("<>|=!") + [""])
_codes = st.sampled_from(["f4", "f8", "i2", "u8", "O", "O4", "O8", "b1", "S3", "U2", "V4", "object", "object_",
                          "float64", "int8", "q", "Q", "g", "G", "M8", "x", "ob", "Object", "0"])


@settings(max_examples=300, derandomize=True, deadline=None)
@given(order=_letters, code=_codes, nested=st.integers(0, 2))
def test_generated_spellings_are_never_laxer_than_numpy(order, code, nested):
    descr: object = order + code
    for _ in range(nested):
        descr = [("f", descr)]
    numpy_objects = _numpy_has_objects(descr)
    if numpy_objects:
        assert descr_verdict(descr) is not None, descr


def test_truncated_headers_are_refused_not_guessed():
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    for cut in (5, 9, 20):
        with pytest.raises(InvalidNpyHeader):
            read_npy_header(io.BytesIO(buffer.getvalue()[:cut]))
