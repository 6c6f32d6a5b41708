"""Write safetensors files deterministically and stream by stream; read and validate their headers.

Format (FACTS.md section 3): 8-byte little-endian header length N, N bytes of UTF-8 JSON
``{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}``
padded with spaces, then the tensors' bytes back to back.

``read_header`` is torch-free: the verify stage runs it on untrusted packages. It is as
strict as the Rust loader and stricter where readers could disagree (duplicate JSON keys).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from nnseal.errors import InvalidSafetensors
from nnseal.format.limits import IO_CHUNK
from nnseal.format.strict_json import load_strict_json, show
from nnseal.fsutil import ByteSink

if TYPE_CHECKING:
    import torch

# The Rust loader's own limit on the header.
MAX_HEADER_BYTES = 100_000_000
ALIGNMENT = 8
METADATA_KEY = "__metadata__"

# safetensors dtype -> bytes per element (the whole-byte types safetensors and torch share).
DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}

# torch dtype name (str(dtype) without "torch.") -> safetensors dtype; the names keep torch out of imports.
TORCH_TO_SAFETENSORS: dict[str, str] = {
    "bool": "BOOL", "uint8": "U8", "int8": "I8", "float8_e5m2": "F8_E5M2", "float8_e4m3fn": "F8_E4M3",
    "int16": "I16", "uint16": "U16", "float16": "F16", "bfloat16": "BF16",
    "int32": "I32", "uint32": "U32", "float32": "F32",
    "int64": "I64", "uint64": "U64", "float64": "F64",
}

# Shapes and offsets are u64/usize in the Rust loader: larger values cannot describe a file.
_USIZE_LIMIT = 1 << 64


def safetensors_dtype(dtype: torch.dtype) -> str | None:
    """The safetensors name of a torch dtype, or None if safetensors cannot hold it."""
    return TORCH_TO_SAFETENSORS.get(str(dtype).removeprefix("torch."))


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    begin: int  # offsets relative to data_start
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_start: int

    @property
    def data_size(self) -> int:
        return max((info.end for info in self.tensors.values()), default=0)


# --- writing -------------------------------------------------------------------


def _layout(tensors: dict[str, torch.Tensor]) -> list[str]:
    # Widest elements first, then by name (as the Rust writer does): every tensor stays
    # aligned to its element size because the data area starts 8-aligned.
    return sorted(tensors, key=lambda name: (-tensors[name].element_size(), name))


def build_header(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> tuple[bytes, list[str]]:
    """The padded header bytes (length prefix included) and the order the data follows in."""
    order = _layout(tensors)
    entries: dict[str, object] = {}
    offset = 0
    for name in order:
        tensor = tensors[name]
        dtype = safetensors_dtype(tensor.dtype)
        if dtype is None:
            raise InvalidSafetensors(f"tensor {name!r}: dtype {tensor.dtype} cannot be stored in safetensors")
        size = tensor.numel() * tensor.element_size()
        entries[name] = {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise InvalidSafetensors("safetensors metadata must map strings to strings")
        entries[METADATA_KEY] = dict(metadata)
    text = json.dumps(entries, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-(len(text) + 8) % ALIGNMENT)
    return struct.pack("<Q", len(text)) + text, order


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw little-endian bytes of a contiguous CPU tensor, without a copy."""
    import torch

    flat = tensor.detach().reshape(-1)
    if not flat.is_contiguous():  # reshape of a contiguous tensor is a view; keep the guard for callers
        flat = flat.contiguous()
    return memoryview(flat.view(torch.uint8).numpy()).cast("B")  # type: ignore[arg-type]


def write_safetensors(fileobj: ByteSink, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> int:
    """Write ``tensors`` as safetensors to ``fileobj``, one tensor at a time; return the bytes written.

    Tensors must be contiguous CPU tensors (names must not be ``__metadata__``). Same
    input, same bytes: keys sorted, compact JSON, spaces up to 8-byte alignment.
    """
    if METADATA_KEY in tensors:
        raise InvalidSafetensors(f"a tensor may not be named {METADATA_KEY!r}")
    for name, tensor in tensors.items():
        if tensor.device.type != "cpu" or not tensor.is_contiguous():
            raise InvalidSafetensors(f"tensor {name!r} must be a contiguous CPU tensor")
    header, order = build_header(tensors, metadata)
    fileobj.write(header)
    written = len(header)
    for name in order:
        data = tensor_bytes(tensors[name])
        for start in range(0, len(data), IO_CHUNK):
            fileobj.write(data[start:start + IO_CHUNK])
        written += len(data)
    return written


# --- reading (torch-free) --------------------------------------------------------


def _is_index(value: object) -> bool:
    return type(value) is int and value >= 0


def _parse_tensor(name: str, spec: object) -> TensorInfo:
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
        raise InvalidSafetensors(f"tensor {show(name)} must have exactly dtype, shape and data_offsets")
    dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:  # a list or object is unhashable
        raise InvalidSafetensors(f"tensor {show(name)} has unknown dtype {show(dtype, 20)}")
    if not isinstance(shape, list) or not all(_is_index(d) for d in shape):
        raise InvalidSafetensors(f"tensor {show(name)} shape must be a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_index(o) for o in offsets)):
        raise InvalidSafetensors(f"tensor {show(name)} data_offsets must be two non-negative integers")
    begin, end = offsets
    if any(dim >= _USIZE_LIMIT for dim in shape) or end >= _USIZE_LIMIT:
        raise InvalidSafetensors(f"tensor {show(name)} has a dimension or offset of 2**64 or more")
    numel = 0 if 0 in shape else 1
    for dim in shape if numel else ():
        numel *= dim
        if numel >= _USIZE_LIMIT:
            # The Rust loader's checked multiplication overflows here; stopping also keeps the
            # product (and printing it) from growing with every dimension a hostile header adds.
            raise InvalidSafetensors(f"tensor {show(name)} has 2**64 or more elements")
    if end < begin or end - begin != numel * DTYPE_SIZES[dtype]:
        raise InvalidSafetensors(f"tensor {show(name)} spans {end - begin} bytes but its shape and dtype "
                                 f"need {numel * DTYPE_SIZES[dtype]}")
    return TensorInfo(dtype=dtype, shape=tuple(shape), begin=begin, end=end)


def read_header(fileobj: BinaryIO, file_size: int, *, source: str | None = None) -> SafetensorsHeader:
    """Read and validate a safetensors header at the current position of ``fileobj``.

    ``file_size`` is the whole file's size; the data must fill it exactly. Raises
    InvalidSafetensors naming ``source`` on anything the Rust loader would refuse, and on
    duplicate keys.
    """
    def fail(reason: str) -> InvalidSafetensors:
        return InvalidSafetensors(reason, path=source)

    if file_size < 8:
        raise fail(f"{file_size} bytes: too short for a safetensors header")
    prefix = fileobj.read(8)
    if len(prefix) != 8:
        raise fail("truncated before the header length")
    (length,) = struct.unpack("<Q", prefix)
    if length > MAX_HEADER_BYTES:
        raise fail(f"header length {length} is over the {MAX_HEADER_BYTES}-byte limit")
    if length > file_size - 8:
        raise fail(f"header length {length} is larger than the file")
    raw = fileobj.read(length)
    if len(raw) != length:
        raise fail("truncated inside the header")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise fail("header is not valid UTF-8") from None
    if not text.startswith("{"):
        raise fail("header is not a JSON object")
    # Strict: duplicate keys refused (JSON readers keep the first or the last: never let them disagree).
    document = load_strict_json(text, what="header", error=InvalidSafetensors, path=source)
    if not isinstance(document, dict):
        raise fail("header is not a JSON object")

    metadata = document.pop(METADATA_KEY, {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise fail("__metadata__ must map strings to strings")

    tensors = {}
    for name, spec in document.items():
        try:
            tensors[name] = _parse_tensor(name, spec)
        except InvalidSafetensors as err:
            raise fail(err.reason) from None

    data_start = 8 + length
    data_size = file_size - data_start
    position = 0
    # In offset order the tensors must tile the data area exactly (the Rust loader's rule).
    for name, info in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if info.begin != position:
            kind = "gap" if info.begin > position else "overlap"
            raise fail(f"tensor {show(name)} starts at {info.begin}, expected {position} ({kind} in the data)")
        position = info.end
    if position != data_size:
        raise fail(f"tensors cover {position} bytes but the data area holds {data_size} "
                   f"({'trailing bytes' if data_size > position else 'truncated file'})")
    return SafetensorsHeader(tensors=tensors, metadata=metadata, data_start=data_start)
