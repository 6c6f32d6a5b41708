"""Write safetensors files deterministically and stream by stream.

The format and its reader are ``nnseal.readers.safetensors_header``'s.
"""

from __future__ import annotations

import json
import struct
from typing import TYPE_CHECKING

from nnseal.errors import InvalidSafetensors
from nnseal.format.limits import IO_CHUNK
from nnseal.fsutil import ByteSink
from nnseal.readers.safetensors_header import ALIGNMENT, METADATA_KEY

if TYPE_CHECKING:
    import torch

# torch dtype name (str(dtype) without "torch.") -> safetensors dtype; the names keep torch out of imports.
TORCH_TO_SAFETENSORS: dict[str, str] = {
    "bool": "BOOL", "uint8": "U8", "int8": "I8", "float8_e5m2": "F8_E5M2", "float8_e4m3fn": "F8_E4M3",
    "int16": "I16", "uint16": "U16", "float16": "F16", "bfloat16": "BF16",
    "int32": "I32", "uint32": "U32", "float32": "F32",
    "int64": "I64", "uint64": "U64", "float64": "F64",
}


def safetensors_dtype(dtype: torch.dtype) -> str | None:
    """The safetensors name of a torch dtype, or None if safetensors cannot hold it."""
    return TORCH_TO_SAFETENSORS.get(str(dtype).removeprefix("torch."))


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
