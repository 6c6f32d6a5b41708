"""Read and validate a safetensors header, torch-free and as strictly as the Rust loader.

Format (FACTS.md section 3): 8-byte little-endian header length N, N bytes of UTF-8 JSON
``{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}``
padded with spaces, then the tensors' bytes back to back. Stricter than the Rust loader
where readers could disagree (duplicate JSON keys). Sanitize's writer, scan and install
all read headers here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol

from nnseal.errors import InvalidSafetensors
from nnseal.format.strict_json import load_strict_json, show


class ByteSource(Protocol):
    """Where a header is read from: a file, or a zip entry's stream."""

    def read(self, size: int = -1, /) -> bytes: ...


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

# Shapes and offsets are u64/usize in the Rust loader: larger values cannot describe a file.
_USIZE_LIMIT = 1 << 64


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


def read_header(fileobj: ByteSource, file_size: int, *, source: str | None = None) -> SafetensorsHeader:
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
