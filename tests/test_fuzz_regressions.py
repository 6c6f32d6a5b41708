"""Inputs the fuzzers (fuzz/*.py with atheris, tests/test_fuzz.py) found, kept so the bugs stay fixed.

Each test names the parser and the symptom it had; inputs are generated in code.
"""

from __future__ import annotations

import io
import json
import struct
import time
from pathlib import Path

import hostile_zips as hz
import pytest
from helpers import tree_listing
from hostile_checkpoints import write_torch_zip

from nnseal.errors import HostileArchive, InvalidSafetensors, ModelLayoutError, UnsafeCheckpoint
from nnseal.readers.pickle_stream import MAX_TUPLE_DEPTH, MAX_TUPLE_NODES, OPAQUE, scan_pickle
from nnseal.readers.safetensors_header import read_header
from nnseal.readers.torch_archive import inspect_checkpoint
from nnseal.readers.zip_archive import open_zip
from nnseal.verify.receipt import RECEIPT_NAME, check_installed

# Each input took seconds to hours, or crashed, before its fix; now they take milliseconds.
FAST_SECONDS = 2.0


def timed(call):
    started = time.perf_counter()
    result = call()
    elapsed = time.perf_counter() - started
    assert elapsed < FAST_SECONDS, f"took {elapsed:.1f} s"
    return result


# --- receipt reader: TypeError / RecursionError instead of a refusal ----------------------------


def installed_folder(tmp_path: Path, receipt: bytes) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "plans.json").write_text("{}")
    (folder / RECEIPT_NAME).write_bytes(receipt)
    return folder


@pytest.mark.parametrize("receipt", [
    b"0",  # found by fuzz_receipt.py: TypeError 'int' object is not subscriptable
    b"[]",  # TypeError: list indices must be integers
    b"[" * 100_000,  # RecursionError from json
    b'{"files": ["plans.json"]}',
    b'{"files": {"plans.json": 5}}',
    b"\xff\xfe{}",  # not UTF-8
], ids=["number", "list", "nested_too_deep", "files_is_a_list", "digest_not_a_string", "not_utf8"])
def test_receipt_of_the_wrong_shape_is_refused(tmp_path, receipt):
    folder = installed_folder(tmp_path, receipt)
    before = tree_listing(folder)
    with pytest.raises(ModelLayoutError, match="not a valid receipt"):
        check_installed(folder)
    assert tree_listing(folder) == before


def test_receipt_with_non_text_provenance_reports_none(tmp_path):
    folder = installed_folder(tmp_path, json.dumps({"files": {"plans.json": "0" * 64}, "provenance": [1],
                                                    "signer_fingerprint": {"a": 1}}).encode())
    report = check_installed(folder)
    assert report.provenance is None and report.signer_fingerprint is None
    assert report.modified == ["plans.json"]


# --- safetensors header: ValueError printing a huge element count; product grows unbounded -----------


def safetensors_with(spec: dict, data: bytes = b"\0" * 4) -> bytes:
    text = json.dumps({"t": spec}).encode()
    return struct.pack("<Q", len(text)) + text + data


def test_safetensors_shape_whose_element_count_cannot_be_printed():
    # Was: ValueError "Exceeds the limit (4300 digits) for integer string conversion" formatting the refusal.
    raw = safetensors_with({"dtype": "F32", "shape": [10 ** 2000] * 3, "data_offsets": [0, 4]})
    with pytest.raises(InvalidSafetensors, match="2\\*\\*64"):
        read_header(io.BytesIO(raw), len(raw))


def test_safetensors_thousands_of_huge_dimensions_are_refused_fast():
    # Was: the product of every dimension computed in full (megadigit integers) before any check.
    raw = safetensors_with({"dtype": "F32", "shape": [10 ** 4000 + 1] * 2000, "data_offsets": [0, 4]})
    with pytest.raises(InvalidSafetensors, match="2\\*\\*64"):
        timed(lambda: read_header(io.BytesIO(raw), len(raw)))


def test_safetensors_element_count_just_under_the_rust_limit_is_still_checked_against_offsets():
    raw = safetensors_with({"dtype": "U8", "shape": [1 << 32, (1 << 32) - 1], "data_offsets": [0, 4]})
    with pytest.raises(InvalidSafetensors, match="spans 4 bytes"):
        read_header(io.BytesIO(raw), len(raw))


def test_safetensors_zero_dimension_beside_a_huge_one_is_an_empty_tensor():
    raw = safetensors_with({"dtype": "F32", "shape": [0, (1 << 64) - 1], "data_offsets": [0, 0]}, data=b"")
    header = read_header(io.BytesIO(raw), len(raw))
    assert header.tensors["t"].shape == (0, (1 << 64) - 1)


# --- pickle walker: RecursionError and exponential time on nested tuples -----------------------------

# NONE, then TUPLE1 n times (a tuple nested n deep), BINPERSID, STOP.
NESTED_TUPLE_PID = b"N" + b"\x85" * 5000 + b"Q."
# NONE, then (DUP, TUPLE2) n times: ((x, x), (x, x)) ... a tree of 2**n leaves from 2n bytes.
SELF_NESTED_TUPLE_PID = b"N" + b"2\x86" * 400 + b"Q."
# The same through the memo, with only opcodes torch.save writes: BINPUT 0, BINGET 0, TUPLE2.
MEMO_NESTED_TUPLE_PID = b"N" + b"q\x00h\x00\x86" * 400 + b"Q."


def nodes_and_depth(value) -> tuple[int, int]:
    """Size and depth of a persistent id as the walker reports it (fine on bounded trees only)."""
    if not isinstance(value, tuple):
        return 1, 0
    counted = [nodes_and_depth(item) for item in value]
    return 1 + sum(n for n, _ in counted), 1 + max((d for _, d in counted), default=0)


def assert_bounded(pid) -> None:
    nodes, depth = nodes_and_depth(pid)
    assert nodes <= MAX_TUPLE_NODES and depth <= MAX_TUPLE_DEPTH, (nodes, depth)


def test_pickle_deeply_nested_tuple_does_not_overflow_the_stack():
    # Was: RecursionError in freeze (and in printing the persistent id).
    scan = timed(lambda: scan_pickle(NESTED_TUPLE_PID))
    [pid] = scan.persistent_ids
    assert_bounded(pid)


@pytest.mark.parametrize("data_pkl", [SELF_NESTED_TUPLE_PID, MEMO_NESTED_TUPLE_PID], ids=["dup", "memo"])
def test_pickle_self_nested_tuple_does_not_take_exponential_time(data_pkl):
    # Was: 2**22 steps took 7 s at 49 bytes; 800 bytes would never finish.
    scan = timed(lambda: scan_pickle(data_pkl))
    [pid] = scan.persistent_ids
    assert_bounded(pid)


def test_pickle_tuples_up_to_the_depth_limit_are_still_modelled():
    inside = scan_pickle(b"N" + b"\x85" * (MAX_TUPLE_DEPTH - 1) + b"Q.").persistent_ids[0]
    depth = 0
    while isinstance(inside, tuple):
        inside, depth = inside[0], depth + 1
    assert (inside, depth) == (None, MAX_TUPLE_DEPTH - 1)
    assert scan_pickle(b"N" + b"\x85" * (MAX_TUPLE_DEPTH + 1) + b"Q.").persistent_ids == [OPAQUE]


@pytest.mark.parametrize("data_pkl", [NESTED_TUPLE_PID, MEMO_NESTED_TUPLE_PID], ids=["nested", "memo_nested"])
def test_checkpoint_with_a_nested_tuple_storage_id_is_refused(tmp_path, canary, data_pkl):
    path = write_torch_zip(tmp_path / "model.pth", data_pkl)
    with pytest.raises(UnsafeCheckpoint, match="form torch.save never writes"):
        timed(lambda: inspect_checkpoint(path))
    assert not canary.exists()


# --- zip reader: quadratic time on names of hundreds of folders ------------------------------------


def test_zip_names_hundreds_of_folders_deep_are_refused_fast(tmp_path):
    # Was: 1,000 entries of 505 folders each took 7 s (10,000 would take minutes) before anything was read.
    raws = [hz.raw_entry(f"{'a/' * 505}{i:05d}", b"") for i in range(1000)]
    path = hz.write_raw_zip(tmp_path / "deep.zip", raws)
    with pytest.raises(HostileArchive, match="more than 32 path components"):
        timed(lambda: open_zip(path))


def test_zip_names_as_deep_as_the_limit_open(tmp_path):
    name = "a/" * 31 + "x"
    path = hz.write_raw_zip(tmp_path / "ok.zip", [hz.raw_entry(name, b"x")])
    with open_zip(path) as archive:
        assert archive.names() == [name]


@pytest.mark.parametrize("dtype", [[1, 3], {"a": 1}, None, 4])
def test_safetensors_dtype_that_is_not_a_string_is_refused(dtype):
    # Found by fuzz_safetensors.py (crash-f2860a5e...): TypeError "unhashable type: 'list'".
    raw = safetensors_with({"dtype": dtype, "shape": [1], "data_offsets": [0, 4]})
    with pytest.raises(InvalidSafetensors, match="unknown dtype"):
        read_header(io.BytesIO(raw), len(raw))
