"""safetensors writing (streamed, deterministic, official-loader compatible) and strict header reading."""

from __future__ import annotations

import io
import json
import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load, save

from nnseal.errors import InvalidSafetensors
from nnseal.readers.safetensors_header import DTYPE_SIZES, MAX_HEADER_BYTES, read_header
from nnseal.sanitize.safetensors_io import write_safetensors

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int16,
          torch.int8, torch.uint8, torch.bool]


def written(tensors: dict, metadata: dict | None = None) -> bytes:
    buf = io.BytesIO()
    n = write_safetensors(buf, tensors, metadata or {})
    assert n == len(buf.getvalue())
    return buf.getvalue()


def header_of(data: bytes):
    return read_header(io.BytesIO(data), len(data), source="t.safetensors")


def sample(dtype: torch.dtype, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    raw = torch.randint(0, 256, (int(torch.tensor(shape).prod()) * torch.empty(0, dtype=dtype).element_size(),),
                        dtype=torch.uint8, generator=gen)
    if dtype == torch.bool:
        return (raw % 2).bool().reshape(shape)
    return raw.view(dtype).reshape(shape)  # arbitrary bit patterns, NaN payloads included


def test_official_loader_reads_it_bit_identically():
    tensors = {f"t_{d}".replace("torch.", ""): sample(d, (3, 5), i) for i, d in enumerate(DTYPES)}
    tensors["scalar"] = torch.tensor(1.5)
    tensors["empty"] = torch.zeros(0, 4)
    data = written(tensors, {"k": "v"})
    back = load(data)
    assert set(back) == set(tensors)
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype and back[name].shape == tensor.shape
        assert torch.equal(back[name].reshape(-1).view(torch.uint8), tensor.reshape(-1).view(torch.uint8)), name


def test_header_format_is_deterministic_and_aligned():
    tensors = {"b": torch.ones(3, dtype=torch.float16), "a": torch.ones(2), "c": torch.ones(1, dtype=torch.int64)}
    first = written(tensors, {"z": "1", "a": "2"})
    assert first == written(dict(reversed(tensors.items())), {"a": "2", "z": "1"})
    (n,) = struct.unpack("<Q", first[:8])
    assert (8 + n) % 8 == 0
    text = first[8:8 + n].decode()
    assert text == text.rstrip() + " " * (len(text) - len(text.rstrip()))  # padded with spaces only
    document = json.loads(text)
    assert text.rstrip() == json.dumps(document, sort_keys=True, separators=(",", ":"))
    # widest elements first so every tensor is aligned to its element size
    header = header_of(first)
    for info in header.tensors.values():
        assert info.begin % DTYPE_SIZES[info.dtype] == 0
    assert header.tensors["c"].begin == 0


def test_refuses_non_contiguous_and_reserved_names():
    with pytest.raises(InvalidSafetensors, match="contiguous"):
        written({"t": torch.ones(2, 3).t()})
    with pytest.raises(InvalidSafetensors, match="__metadata__"):
        written({"__metadata__": torch.ones(1)})
    with pytest.raises(InvalidSafetensors, match="complex"):
        written({"c": torch.ones(2, dtype=torch.complex64)})


def test_writes_in_chunks_not_one_copy(monkeypatch):
    import nnseal.sanitize.safetensors_io as io_mod

    monkeypatch.setattr(io_mod, "IO_CHUNK", 1024)
    sizes = []

    class Sink(io.BytesIO):
        def write(self, data):
            sizes.append(len(data))
            return super().write(data)

    sink = Sink()
    tensor = torch.arange(10_000, dtype=torch.float32)
    write_safetensors(sink, {"t": tensor}, {})
    assert max(sizes[1:]) == 1024
    assert torch.equal(load(sink.getvalue())["t"], tensor)


def test_reads_official_output():
    tensors = {"w": torch.randn(4, 4), "b": torch.zeros(4, dtype=torch.float16)}
    data = save(tensors, metadata={"format": "pt"})
    header = header_of(data)
    assert header.metadata == {"format": "pt"}
    assert {k: (v.dtype, v.shape) for k, v in header.tensors.items()} == {"w": ("F32", (4, 4)), "b": ("F16", (4,))}
    assert header.data_start + header.data_size == len(data)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(0, 4), max_size=3)), min_size=1,
                max_size=5))
def test_any_tensors_round_trip(specs):
    tensors = {f"t{i}": sample(dtype, tuple(shape), i) for i, (dtype, shape) in enumerate(specs)}
    data = written(tensors, {"m": "x"})
    header_of(data)
    back = load(data)
    for name, tensor in tensors.items():
        assert torch.equal(back[name].reshape(-1).view(torch.uint8), tensor.reshape(-1).view(torch.uint8))


# --- hostile headers ---------------------------------------------------------------------


def raw_file(header: bytes | str, data: bytes = b"", *, length: int | None = None) -> bytes:
    body = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(body) if length is None else length) + body + data


def one_tensor(**override) -> str:
    spec = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    spec.update(override)
    return json.dumps({"t": spec})


@pytest.mark.parametrize("data, needle", [
    (b"\x01\x00", "too short"),
    (raw_file(b"{}", length=MAX_HEADER_BYTES + 1), "over the"),
    (raw_file(b"{}", length=50), "larger than the file"),
    (raw_file(b"\xff\xfe{}"), "UTF-8"),
    (raw_file("[1, 2]"), "JSON object"),
    (raw_file("{\"t\": "), "not valid JSON"),
    (raw_file('{"t": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, '
              '"t": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}'), "duplicate key 't'"),
    (raw_file(one_tensor(dtype="F33"), b"\0" * 8), "unknown dtype"),
    (raw_file(one_tensor(shape=[-2]), b"\0" * 8), "non-negative"),
    (raw_file(one_tensor(shape=[True, 2]), b"\0" * 8), "non-negative"),
    (raw_file(one_tensor(shape=[3]), b"\0" * 8), "need 12"),
    (raw_file(one_tensor(data_offsets=[0]), b"\0" * 8), "two non-negative"),
    (raw_file(one_tensor(extra=1), b"\0" * 8), "exactly dtype"),
    (raw_file(one_tensor(data_offsets=[4, 12]), b"\0" * 12), "gap"),
    (raw_file(json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                          "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}), b"\0" * 8), "overlap"),
    (raw_file(one_tensor(), b"\0" * 9), "trailing bytes"),
    (raw_file(one_tensor(), b"\0" * 4), "truncated file"),
    (raw_file(json.dumps({"__metadata__": {"a": 1}})), "strings to strings"),
    (raw_file(json.dumps({"__metadata__": ["a"]})), "strings to strings"),
])
def test_refuses_invalid_headers(data, needle):
    with pytest.raises(InvalidSafetensors, match=needle) as info:
        header_of(data)
    assert "t.safetensors" in str(info.value)


def test_accepts_empty_tensor_list_and_zero_sized_tensors():
    assert header_of(raw_file("{}")).tensors == {}
    zero = json.dumps({"z": {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]},
                       "t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    header = header_of(raw_file(zero, b"\0" * 4))
    assert header.tensors["z"].shape == (0, 3)


def test_read_header_is_torch_free():
    import subprocess
    import sys

    code = ("import io, sys\nfrom nnseal.readers.safetensors_header import read_header\n"
            "data = b'\\x02\\x00\\x00\\x00\\x00\\x00\\x00\\x00{}'\n"
            "read_header(io.BytesIO(data), len(data))\nprint('torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr
