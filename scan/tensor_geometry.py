"""Tensor shapes as data.pkl declares them, checked against their storages without loading anything.

torch.save pickles every tensor as ``torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, ...)``. The pickle walker of ``nnseal.readers.pickle_stream`` keeps
constants on a symbolic stack; this walker also keeps storage references and records
those calls, so that the arithmetic sanitize runs on loaded tensors
(``nnseal.sanitize.tensors.view_problem``) can run on the pickle alone.
"""

from __future__ import annotations

import pickletools
from dataclasses import dataclass
from typing import Any

from nnseal.errors import MalformedPickle
from nnseal.format.strict_json import show
from nnseal.readers.pickle_stream import OPAQUE, GlobalRef, PickleScan, PickleWalker, freeze
from nnseal.readers.torch_archive import STORAGE_ITEMSIZE, StorageRecord
from nnseal.sanitize.tensors import view_problem

# Rebuild functions whose first four arguments are (storage, offset, size, stride).
REBUILD_TENSOR = frozenset({"torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
                            "torch._utils._rebuild_tensor_v3"})
# _rebuild_tensor_v3 takes an untyped storage and names the dtype separately.
DTYPE_ITEMSIZE = {
    "torch.float64": 8, "torch.float32": 4, "torch.float16": 2, "torch.bfloat16": 2, "torch.int64": 8,
    "torch.int32": 4, "torch.int16": 2, "torch.int8": 1, "torch.uint8": 1, "torch.bool": 1,
    "torch.complex64": 8, "torch.complex128": 16, "torch.uint16": 2, "torch.uint32": 4, "torch.uint64": 8,
    "torch.float8_e4m3fn": 1, "torch.float8_e5m2": 1,
}


@dataclass(frozen=True)
class StorageRef:
    """What BINPERSID pushes for a ``('storage', type, key, location, numel)`` id."""

    key: str


@dataclass(frozen=True)
class TensorCall:
    function: str
    args: tuple


def _storage_ref(pid: Any) -> Any:
    if isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[2], str):
        return StorageRef(pid[2])
    return OPAQUE


class _GeometryWalker(PickleWalker):
    def __init__(self, data: bytes, max_ops: int, source: str | None):
        super().__init__(data, max_ops, source)
        self.tensor_calls: list[TensorCall] = []

    def _op_BINPERSID(self, op: pickletools.OpcodeInfo, arg: Any, pos: int) -> None:
        pid = freeze(self.pop(pos))
        self.persistent_ids.append(pid)
        self.stack.append(_storage_ref(pid))

    def _op_REDUCE(self, op: pickletools.OpcodeInfo, arg: Any, pos: int) -> None:
        args, func = self.pop(pos), self.pop(pos)
        if isinstance(func, GlobalRef) and func.name in REBUILD_TENSOR:
            self.tensor_calls.append(TensorCall(func.name, freeze(args) if isinstance(args, tuple) else ()))
        self.stack.append(OPAQUE)


def scan_with_tensors(data: bytes, *, max_ops: int, source: str | None = None) -> tuple[PickleScan, list[TensorCall]]:
    """The usual static scan of ``data`` plus every tensor rebuild call in it. Raises MalformedPickle."""
    if not data:
        raise MalformedPickle("empty pickle", path=source)
    walker = _GeometryWalker(bytes(data), max_ops, source)
    scan = walker.run()
    return scan, walker.tensor_calls


def _int_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and all(type(v) is int for v in value)


def geometry_problems(calls: list[TensorCall], storages: dict[str, StorageRecord]) -> list[str]:
    """Why each tensor is unsafe to materialise: out of bounds, stride-0/overlapping, or not checkable."""
    problems: list[str] = []
    for index, call in enumerate(calls):
        args = call.args
        if len(args) < 4 or not isinstance(args[0], StorageRef) or type(args[1]) is not int \
                or not _int_tuple(args[2]) or not _int_tuple(args[3]) or len(args[2]) != len(args[3]):
            problems.append(f"tensor #{index} is rebuilt by {call.function} from arguments torch.save never "
                            "writes (not constants)")
            continue
        ref, offset, size, stride = args[:4]
        record = storages.get(ref.key)
        if record is None:
            problems.append(f"tensor #{index} uses storage {ref.key!r}, which is not in the archive")
            continue
        itemsize = STORAGE_ITEMSIZE.get(record.storage_type, 1)
        if call.function.endswith("_v3"):
            dtype = args[6] if len(args) > 6 else None
            itemsize = DTYPE_ITEMSIZE.get(dtype.name, 0) if isinstance(dtype, GlobalRef) else 0
            if not itemsize:
                problems.append(f"tensor #{index} has a dtype nnseal cannot size ({show(dtype, 60)})")
                continue
        problem = view_problem(size, stride, offset, itemsize, record.nbytes)
        if problem:
            problems.append(f"tensor #{index} (storage {ref.key!r}) {problem}")
    return problems
