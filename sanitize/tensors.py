"""Checks on loaded tensors before their data is touched, alias grouping and wrapper-prefix stripping.

Loading with mmap only maps storages; a tensor's bytes are read when something
copies them. A hostile data.pkl can still describe a stride-0 or overlapping view that
turns four bytes into gigabytes once made contiguous, or (refused by torch >= 2.10 itself,
whose zip storages cannot grow) a tensor reaching past its storage. So every tensor is
checked from its metadata alone (sizes, strides, offset, storage size) and only then copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nnseal.errors import UnsafeCheckpoint
from nnseal.format.strict_json import show
from nnseal.sanitize.safetensors_io import safetensors_dtype

if TYPE_CHECKING:
    import torch

# What DistributedDataParallel (module.) and torch.compile (_orig_mod.) put in front of every name.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Names safetensors reserves in its header.
RESERVED_NAMES = frozenset({"__metadata__"})


def _layout_problem(tensor: torch.Tensor) -> str | None:
    import torch

    if type(tensor) not in (torch.Tensor, torch.nn.Parameter):
        return f"is a {type(tensor).__name__}, not a plain tensor"
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_nested:
        return f"has layout {tensor.layout}{' (quantized)' if tensor.is_quantized else ''}, not a dense tensor"
    if tensor.device.type != "cpu":
        return f"is on {tensor.device} after loading to the CPU"
    if safetensors_dtype(tensor.dtype) is None:
        return f"has dtype {tensor.dtype}, which safetensors cannot hold"
    return None


def view_problem(shape: tuple[int, ...], stride: tuple[int, ...], offset: int, itemsize: int,
                 storage_nbytes: int) -> str | None:
    """Why a view of this geometry is unsafe to copy, or None. Pure arithmetic on metadata.

    Refused: a view that overlaps itself (stride 0 included), so that its copy is larger
    than the bytes it reads, and a view that reaches outside its storage.
    """
    numel = 1
    for size in shape:
        numel *= size
    if numel == 0:
        return None
    # Sorted by stride, each dimension must step over everything the smaller ones span:
    # a sufficient condition for no two indices sharing an element (stride 0 fails it first).
    span = 1
    for step, size in sorted((st, sz) for sz, st in zip(shape, stride, strict=False) if sz > 1):
        if step < span:
            return (f"is an overlapping or stride-0 view ({tuple(shape)}, strides {tuple(stride)}) that would "
                    f"expand {storage_nbytes} stored bytes to {numel * itemsize}")
        span += step * (size - 1)
    storage_elements = storage_nbytes // itemsize
    if offset < 0 or offset + span > storage_elements:
        return f"reaches element {offset + span} of a storage holding {storage_elements} (out of bounds)"
    return None


def check_tensor(name: str, tensor: torch.Tensor, path: str | Path) -> int:
    """Refuse a tensor that reads outside its storage or overlaps itself; return its byte size.

    Uses only sizes, strides, offset and the storage's size: no data is read.
    """
    problem = _layout_problem(tensor) or view_problem(
        tuple(tensor.shape), tuple(tensor.stride()), int(tensor.storage_offset()), tensor.element_size(),
        tensor.untyped_storage().nbytes())
    if problem:
        raise UnsafeCheckpoint(f"tensor {name!r} {problem}", path=path)
    return tensor.numel() * tensor.element_size()


def alias_key(tensor: torch.Tensor) -> tuple:
    """Two names with equal keys are the same bytes: one storage, one view."""
    return (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes(), tensor.storage_offset(),
            tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)


@dataclass
class AliasGroups:
    """Names grouped by the bytes they point to."""

    stored: dict[str, torch.Tensor]  # first name of each group -> its tensor, in first-occurrence order
    aliases: dict[str, str]  # every other name -> the stored name it repeats


def group_aliases(weights: dict[str, torch.Tensor]) -> AliasGroups:
    first_by_key: dict[tuple, str] = {}
    stored: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for name, tensor in weights.items():
        key = alias_key(tensor)
        if key in first_by_key:
            aliases[name] = first_by_key[key]
        else:
            first_by_key[key] = name
            stored[name] = tensor
    return AliasGroups(stored=stored, aliases=aliases)


def strip_wrapper_prefixes(names: list[str]) -> tuple[dict[str, str], str | None]:
    """Map each name to itself without DDP/torch.compile prefixes; return the mapping and what was stripped.

    A prefix is stripped only when every name carries it, so the mapping is one-to-one;
    a network with a submodule that happens to be called ``module`` keeps its names.
    """
    stripped = ""
    current = list(names)
    while current:
        prefix = next((p for p in WRAPPER_PREFIXES if all(n.startswith(p) for n in current)), None)
        if prefix is None or any(n == prefix for n in current):
            break
        stripped += prefix
        current = [n[len(prefix):] for n in current]
    return dict(zip(names, current, strict=True)), (stripped or None)


def check_names(names: list, path: str | Path) -> None:
    for name in names:
        if not isinstance(name, str) or not name:
            raise UnsafeCheckpoint(f"network_weights has a key {show(name, 60)} that is not a parameter name",
                                   path=path)
        if name in RESERVED_NAMES:
            raise UnsafeCheckpoint(f"network_weights has a tensor named {name!r}, reserved by safetensors", path=path)


def check_total(stored: dict[str, torch.Tensor], file_size: int, path: str | Path) -> int:
    """The copies nnseal will make must not outgrow the file they come from."""
    total = sum(t.numel() * t.element_size() for t in stored.values())
    if total > file_size:
        raise UnsafeCheckpoint(f"its distinct tensors hold {total} bytes, more than the file's own {file_size}: "
                               "views expand the stored data", path=path)
    return total


def materialize(tensor: torch.Tensor) -> torch.Tensor:
    """A plain, contiguous CPU tensor with the same dtype, shape and bits (copies only if it must)."""
    return tensor.detach().contiguous()
