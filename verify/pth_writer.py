"""Write a checkpoint in torch.save's zip format without importing torch.

Install turns each package safetensors file back into the ``.pth`` nnU-Net loads. That
checkpoint holds only dicts, lists, tuples, strings, numbers and tensors, so its
``data.pkl`` is emitted here opcode by opcode (pickle protocol 2, the opcodes torch.save
itself produces) and each tensor's bytes are copied straight from the safetensors file
into its storage record. Importing torch costs seconds and about 650 MB of resident
memory for a CUDA build; this costs neither, and nothing is loaded into memory.

The archive mirrors torch's writer: stored entries under ``<stem>/``, data aligned to 64
bytes with an ``FB`` padding extra field, a data descriptor after each entry (so it is
written in one pass), ``version``, ``byteorder`` and ``.format_version`` records.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from nnseal.errors import InvalidArgument
from nnseal.format.limits import IO_CHUNK

ALIGNMENT = 64
MAX_ZIP32 = 0xFFFFFFFF
FLAGS = 0x0808  # data descriptor follows, names are UTF-8: what torch's writer sets
VERSION = 20
DOS_DATE_1980_01_01 = 0x21
PADDING_EXTRA_ID = 0x4246  # "FB", the id torch uses for alignment padding

# safetensors dtype -> the legacy storage class torch pickles for it.
STORAGE_CLASSES = {
    "F64": "DoubleStorage", "F32": "FloatStorage", "F16": "HalfStorage", "BF16": "BFloat16Storage",
    "I64": "LongStorage", "I32": "IntStorage", "I16": "ShortStorage", "I8": "CharStorage",
    "U8": "ByteStorage", "BOOL": "BoolStorage",
}


@dataclass(frozen=True, eq=False)
class StoredTensor:
    """A contiguous tensor whose bytes lie in ``source`` at ``offset``; one object per storage."""

    source: str
    offset: int
    nbytes: int
    dtype: str  # safetensors dtype name
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


def can_write(obj: Any) -> bool:
    """True if every tensor in ``obj`` is a StoredTensor of a dtype this writer knows and it stays below 4 GiB."""
    tensors = _tensors(obj)
    return (all(isinstance(t, StoredTensor) and t.dtype in STORAGE_CLASSES for t in tensors)
            and sum(t.nbytes + ALIGNMENT + 200 for t in tensors) < MAX_ZIP32 // 2)


def _tensors(obj: Any) -> list:
    found, seen, stack = [], set(), [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif not isinstance(item, (str, int, float, type(None))) and id(item) not in seen:
            seen.add(id(item))
            found.append(item)
    return found


# --- pickle ----------------------------------------------------------------------------


class _Pickle:
    """Protocol-2 pickle of plain containers and StoredTensors; tensors become persistent storages."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")  # PROTO 2
        self.memo: dict[int, int] = {}
        self.keep: list = []  # objects memoized by id must outlive the pickling
        self.globals: dict[str, int] = {}
        self.storages: list[StoredTensor] = []

    def dump(self, obj: Any) -> bytes:
        self.save(obj)
        self.out += b"."  # STOP
        return bytes(self.out)

    def _put(self, key: int) -> None:
        index = len(self.memo) + len(self.globals)
        self.memo[key] = index
        self._binput(index)

    def _binput(self, index: int) -> None:
        self.out += b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index)

    def _get(self, index: int) -> None:
        self.out += b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)

    def _global(self, module: str, name: str) -> None:
        key = f"{module}\n{name}"
        if key in self.globals:
            self._get(self.globals[key])
            return
        self.out += b"c" + f"{module}\n{name}\n".encode("ascii")
        index = len(self.memo) + len(self.globals)
        self.globals[key] = index
        self._binput(index)

    def save(self, obj: Any) -> None:
        if obj is None:
            self.out += b"N"
        elif obj is True or obj is False:
            self.out += b"\x88" if obj else b"\x89"
        elif isinstance(obj, int):
            self._int(obj)
        elif isinstance(obj, float):
            self.out += b"G" + struct.pack(">d", obj)
        elif id(obj) in self.memo:
            self._get(self.memo[id(obj)])
        elif isinstance(obj, str):
            data = obj.encode("utf-8")
            self.out += b"X" + struct.pack("<I", len(data)) + data
            self._remember(obj)
        elif isinstance(obj, tuple):
            self._tuple(obj)
        elif isinstance(obj, list):
            self.out += b"]"
            self._remember(obj)
            self._batched(obj, b"e")
        elif isinstance(obj, OrderedDict):
            self._global("collections", "OrderedDict")
            self.out += b")R"  # OrderedDict()
            self._remember(obj)
            self._batched([part for item in obj.items() for part in item], b"u")
        elif isinstance(obj, dict):
            self.out += b"}"
            self._remember(obj)
            self._batched([part for item in obj.items() for part in item], b"u")
        elif isinstance(obj, StoredTensor):
            self._tensor(obj)
        else:
            raise InvalidArgument(f"cannot write a {type(obj).__name__} into a checkpoint")

    def _remember(self, obj: Any) -> None:
        self.keep.append(obj)
        self._put(id(obj))

    def _int(self, value: int) -> None:
        if 0 <= value < 256:
            self.out += b"K" + bytes([value])
        elif 0 <= value < 65536:
            self.out += b"M" + struct.pack("<H", value)
        elif -(1 << 31) <= value < (1 << 31):
            self.out += b"J" + struct.pack("<i", value)
        else:
            data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            self.out += b"\x8a" + bytes([len(data)]) + data  # LONG1

    def _tuple(self, items: tuple) -> None:
        if not items:
            self.out += b")"
            return
        if len(items) <= 3:
            for item in items:
                self.save(item)
            self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(items)]
        else:
            self.out += b"("
            for item in items:
                self.save(item)
            self.out += b"t"
        self._remember(items)

    def _batched(self, items: list, opcode: bytes, batch: int = 2000) -> None:
        # APPENDS / SETITEMS take MARK-delimited runs; pickle batches them the same way.
        for start in range(0, len(items), batch):
            self.out += b"("
            for item in items[start:start + batch]:
                self.save(item)
            self.out += opcode

    def _tensor(self, tensor: StoredTensor) -> None:
        key = str(len(self.storages))
        self.storages.append(tensor)
        strides, step = [], 1
        for dim in reversed(tensor.shape):
            strides.append(step)
            step *= dim
        self._global("torch._utils", "_rebuild_tensor_v2")
        self.out += b"("  # args of _rebuild_tensor_v2
        self.out += b"("  # the persistent id of the storage
        self.save("storage")
        self._global("torch", STORAGE_CLASSES[tensor.dtype])
        self.save(key)
        self.save("cpu")
        self._int(tensor.numel)
        self.out += b"tQ"  # TUPLE, BINPERSID
        self._int(0)  # storage offset
        self._tuple(tuple(tensor.shape))
        self._tuple(tuple(reversed(strides)))
        self.out += b"\x89"  # requires_grad=False
        self._global("collections", "OrderedDict")
        self.out += b")R"  # backward hooks: OrderedDict()
        self.out += b"tR"
        self._remember(tensor)


# --- zip ---------------------------------------------------------------------------------


class _ZipStream:
    """Stored entries written front to back, each followed by a data descriptor."""

    def __init__(self, handle: BinaryIO, prefix: str):
        self.handle, self.prefix = handle, prefix
        self.position = 0
        self.sha256 = hashlib.sha256()
        self.central: list[bytes] = []

    def _write(self, data) -> None:
        self.sha256.update(data)
        self.handle.write(data)
        self.position += len(data)

    def entry(self, name: str, chunks) -> None:
        raw_name = f"{self.prefix}/{name}".encode()
        offset = self.position
        header_end = offset + 30 + len(raw_name) + 4
        padding = -header_end % ALIGNMENT
        extra = struct.pack("<HH", PADDING_EXTRA_ID, padding) + b"Z" * padding
        self._write(struct.pack("<IHHHHHIIIHH", 0x04034B50, VERSION, FLAGS, 0, 0, DOS_DATE_1980_01_01, 0, 0, 0,
                                len(raw_name), len(extra)) + raw_name + extra)
        crc, size = 0, 0
        for chunk in chunks:
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
            self._write(chunk)
        self._write(struct.pack("<IIII", 0x08074B50, crc, size, size))
        self.central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | VERSION, VERSION, FLAGS, 0, 0,
                                        DOS_DATE_1980_01_01, crc, size, size, len(raw_name), 0, 0, 0, 0,
                                        0o100644 << 16, offset) + raw_name)

    def finish(self) -> None:
        start = self.position
        for record in self.central:
            self._write(record)
        self._write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(self.central), len(self.central),
                                self.position - start, start, 0))


def _file_chunks(source: BinaryIO, offset: int, nbytes: int):
    end = offset + nbytes
    while offset < end:
        block = os.pread(source.fileno(), min(IO_CHUNK, end - offset), offset)
        if not block:
            raise OSError(f"{source.name}: ended before byte {end}")
        offset += len(block)
        yield block


def write_pth(obj: Any, handle: BinaryIO, *, stem: str) -> str:
    """Write ``obj`` (StoredTensors inside) to ``handle`` as torch.save would; return the sha256 of the bytes."""
    pickler = _Pickle()
    data_pkl = pickler.dump(obj)
    stream = _ZipStream(handle, stem)
    stream.entry("data.pkl", [data_pkl])
    stream.entry(".format_version", [b"1"])
    stream.entry(".storage_alignment", [str(ALIGNMENT).encode()])
    stream.entry("byteorder", [b"little"])
    sources: dict[str, BinaryIO] = {}
    try:
        for key, tensor in enumerate(pickler.storages):
            if tensor.source not in sources:
                sources[tensor.source] = open(tensor.source, "rb")
            stream.entry(f"data/{key}", _file_chunks(sources[tensor.source], tensor.offset, tensor.nbytes))
    finally:
        for source in sources.values():
            source.close()
    stream.entry("version", [b"3\n"])
    # torch writes a random id here; a digest of the pickle keeps the file a function of its contents.
    stream.entry(".data/serialization_id", [hashlib.sha256(data_pkl).hexdigest()[:40].encode()])
    stream.finish()
    return stream.sha256.hexdigest()


def stem_of(path: str | os.PathLike) -> str:
    """The archive folder torch.save names after the file (``checkpoint_final`` for checkpoint_final.pth)."""
    return Path(path).stem or "archive"
