"""Write a checkpoint in torch.save's zip format without importing torch.

Install turns each package safetensors file back into the ``.pth`` nnU-Net loads. That
checkpoint holds only dicts, lists, tuples, strings, numbers and tensors, so its
``data.pkl`` is emitted here opcode by opcode (pickle protocol 2, the opcodes torch.save
itself produces) and each tensor's bytes are copied straight from the safetensors file
into its storage record. Importing torch costs seconds and about 650 MB of resident
memory for a CUDA build; this costs neither, and nothing is loaded into memory.

The archive mirrors torch's writer: stored entries under ``<stem>/``, data aligned to 64
bytes with an ``FB`` padding extra field, a data descriptor after each entry (so it is
written in one pass), ``version``, ``byteorder`` and ``.format_version`` records, and
ZIP64 fields where sizes or offsets pass 4 GiB. Every dtype safetensors and torch share
is written the way torch.save pickles it (see ``DTYPES``); integers of any size too.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from nnseal.errors import InvalidArgument
from nnseal.format.limits import IO_CHUNK

ALIGNMENT = 64
ZIP64_LIMIT = 0xFFFFFFFF  # a size or offset at or past this needs a ZIP64 field (the 32-bit field holds it)
U16_MAX = 0xFFFF
FLAGS = 0x0808  # data descriptor follows, names are UTF-8: what torch's writer sets
VERSION = 20
VERSION_ZIP64 = 45
DOS_DATE_1980_01_01 = 0x21
PADDING_EXTRA_ID = 0x4246  # "FB", the id torch uses for alignment padding
ZIP64_EXTRA_ID = 0x0001


@dataclass(frozen=True)
class DType:
    torch_name: str  # torch.<name>
    size: int  # bytes per element
    storage_class: str | None  # legacy torch.<X>Storage; None: torch pickles an UntypedStorage plus the dtype


# Every safetensors dtype torch can hold whole bytes of. torch.save pickles the dtypes that
# had a legacy storage class with _rebuild_tensor_v2 and that class; every later dtype with
# _rebuild_tensor_v3, a byte-sized torch.storage.UntypedStorage and the dtype as a global
# (torch/storage.py: "new dtypes ... should be serialized as an UntypedStorage paired with a
# torch.dtype"). Both are what torch.load(weights_only=True) accepts. Sub-byte F4/F6 have no
# whole-byte torch counterpart and are not listed.
DTYPES: dict[str, DType] = {
    "F64": DType("float64", 8, "DoubleStorage"), "F32": DType("float32", 4, "FloatStorage"),
    "F16": DType("float16", 2, "HalfStorage"), "BF16": DType("bfloat16", 2, "BFloat16Storage"),
    "I64": DType("int64", 8, "LongStorage"), "I32": DType("int32", 4, "IntStorage"),
    "I16": DType("int16", 2, "ShortStorage"), "I8": DType("int8", 1, "CharStorage"),
    "U8": DType("uint8", 1, "ByteStorage"), "BOOL": DType("bool", 1, "BoolStorage"),
    "C64": DType("complex64", 8, "ComplexFloatStorage"),
    "U16": DType("uint16", 2, None), "U32": DType("uint32", 4, None), "U64": DType("uint64", 8, None),
    "F8_E4M3": DType("float8_e4m3fn", 1, None), "F8_E5M2": DType("float8_e5m2", 1, None),
    "F8_E8M0": DType("float8_e8m0fnu", 1, None),
}
SAFETENSORS_BY_TORCH = {d.torch_name: name for name, d in DTYPES.items()}


@dataclass(frozen=True, eq=False)
class StoredTensor:
    """A contiguous tensor's bytes; one object per storage (aliases are the same object).

    ``source`` is a file path (bytes at ``offset``), a bytes-like buffer (likewise), or None
    when the caller of ``write_pth`` streams the bytes itself (``read_storage``).
    """

    source: Any
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
    """True if every tensor in ``obj`` is a StoredTensor of a dtype this writer knows (any size)."""
    return all(isinstance(t, StoredTensor) and t.dtype in DTYPES for t in _tensors(obj))


def _tensors(obj: Any) -> list:
    """The distinct non-plain objects in ``obj``, in the order the pickler meets them."""
    found, seen, stack = [], set(), [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif not isinstance(item, (str, int, float, type(None))) and id(item) not in seen:
            seen.add(id(item))
            found.append(item)
    return found


def storage_order(obj: Any) -> list[StoredTensor]:
    """The storages in the order their ``data/N`` records are written: by source, then by offset.

    A safetensors file keeps its tensors in offset order, so its bytes can be streamed
    front to back straight into the records. Keys follow the same order (``data/0`` first),
    as torch's own loader expects of format version 1.
    """
    tensors = [t for t in _tensors(obj) if isinstance(t, StoredTensor)]
    sources: dict[Any, int] = {}
    rank = {}
    for i, tensor in enumerate(tensors):
        sources.setdefault(_source_key(tensor), len(sources))
        rank[id(tensor)] = i
    return sorted(tensors, key=lambda t: (sources[_source_key(t)], t.offset, t.nbytes, rank[id(t)]))


def _source_key(tensor: StoredTensor) -> Any:
    return tensor.source if isinstance(tensor.source, str) else ("buffer", id(tensor.source))


# --- pickle ----------------------------------------------------------------------------


class _Pickle:
    """Protocol-2 pickle of plain containers and StoredTensors; tensors become persistent storages.

    Opcode for opcode what torch.save's pickler writes for the same objects (memo numbering
    and batching included), so a data.pkl can be compared byte for byte with torch's.
    """

    def __init__(self, keys: dict[int, str]) -> None:
        self.out = bytearray(b"\x80\x02")  # PROTO 2
        self.memo: dict[int, int] = {}
        self.keep: list = []  # objects memoized by id must outlive the pickling
        self.globals: dict[str, int] = {}
        self.count = 0  # memo slots used
        self.keys = keys  # id(StoredTensor) -> its data/<key> record

    def dump(self, obj: Any) -> bytes:
        self.save(obj)
        self.out += b"."  # STOP
        return bytes(self.out)

    def _put(self, key: int) -> None:
        self.memo[key] = self._binput()

    def _binput(self) -> int:
        """Memoize the object on top of the stack (pickle memoizes every object it builds)."""
        index, self.count = self.count, self.count + 1
        self.out += b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index)
        return index

    def _get(self, index: int) -> None:
        self.out += b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)

    def _global(self, module: str, name: str) -> None:
        key = f"{module}\n{name}"
        if key in self.globals:
            self._get(self.globals[key])
            return
        self.out += b"c" + f"{module}\n{name}\n".encode("ascii")
        self.globals[key] = self._binput()

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
            data = obj.encode("utf-8", "surrogatepass")
            self.out += b"X" + struct.pack("<I", len(data)) + data
            self._remember(obj)
        elif isinstance(obj, tuple):
            self._tuple(obj)
        elif isinstance(obj, list):
            self.out += b"]"
            self._remember(obj)
            self._batched([(item,) for item in obj], b"a", b"e")
        elif isinstance(obj, OrderedDict):
            self._global("collections", "OrderedDict")
            self.out += b")R"  # OrderedDict()
            self._remember(obj)
            self._batched(list(obj.items()), b"s", b"u")
        elif isinstance(obj, dict):
            self.out += b"}"
            self._remember(obj)
            self._batched(list(obj.items()), b"s", b"u")
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
            data = encode_long(value)
            if len(data) < 256:
                self.out += b"\x8a" + bytes([len(data)]) + data  # LONG1
            else:  # what pickle writes too (torch.load(weights_only=True) refuses it, plain torch.load reads it)
                self.out += b"\x8b" + struct.pack("<i", len(data)) + data  # LONG4

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

    def _batched(self, items: list[tuple], one: bytes, many: bytes, batch: int = 1000) -> None:
        # pickle's _batch_appends/_batch_setitems: runs of 1000 between MARK and APPENDS/SETITEMS,
        # a lone item with APPEND/SETITEM.
        for start in range(0, len(items), batch):
            run = items[start:start + batch]
            if len(run) > 1:
                self.out += b"("
            for item in run:
                for part in item:
                    self.save(part)
            self.out += many if len(run) > 1 else one

    def _tensor(self, tensor: StoredTensor) -> None:
        # Tensor.__reduce_ex__: (_rebuild_tensor_v2, (storage, 0, shape, stride, False, OrderedDict())),
        # or _v3 with the dtype last; the storage is a persistent id torch.save's persistent_id returns.
        dtype = DTYPES[tensor.dtype]
        strides, step = [], 1
        for dim in reversed(tensor.shape):
            strides.append(step)
            step *= dim
        self._global("torch._utils", "_rebuild_tensor_v2" if dtype.storage_class else "_rebuild_tensor_v3")
        self.out += b"("  # args of _rebuild_tensor_v2/_v3
        self.out += b"("  # the persistent id of the storage
        self.save("storage")
        if dtype.storage_class:  # a typed storage counts elements
            self._global("torch", dtype.storage_class)
            self.save(self.keys[id(tensor)])
            self.save("cpu")
            self._int(tensor.numel)
        else:  # an untyped storage counts bytes
            self._global("torch.storage", "UntypedStorage")
            self.save(self.keys[id(tensor)])
            self.save("cpu")
            self._int(tensor.nbytes)
        self.out += b"t"  # TUPLE
        self._binput()
        self.out += b"Q"  # BINPERSID
        self._int(0)  # storage offset
        self._tuple(tuple(tensor.shape))
        self._tuple(tuple(reversed(strides)))
        self.out += b"\x89"  # requires_grad=False
        self._global("collections", "OrderedDict")
        self.out += b")R"  # backward hooks: OrderedDict()
        self._binput()
        if not dtype.storage_class:
            self._global("torch", dtype.torch_name)
        self.out += b"t"  # TUPLE
        self._binput()
        self.out += b"R"  # REDUCE
        self._remember(tensor)


def encode_long(value: int) -> bytes:
    """Two's complement, little-endian, as few bytes as pickle's own encode_long uses."""
    if value == 0:
        return b""
    nbytes = (value.bit_length() >> 3) + 1
    data = value.to_bytes(nbytes, "little", signed=True)
    if value < 0 and nbytes > 1 and data[-1] == 0xFF and data[-2] & 0x80:
        data = data[:-1]
    return data


# --- zip ---------------------------------------------------------------------------------


class _ZipStream:
    """Stored entries written front to back, each followed by a data descriptor.

    An entry of ``zip64_limit`` bytes or more, an offset past it, or a central directory
    past it gets ZIP64 fields, as APPNOTE 4.5.3 has them (the 32-bit field holds 0xFFFFFFFF):
    what torch's miniz writer and reader, zipfile and nnseal's own reader agree on.
    The limit is a parameter so that tests can reach that code without writing 4 GiB.
    """

    def __init__(self, handle: BinaryIO, prefix: str, zip64_limit: int = ZIP64_LIMIT):
        self.handle, self.prefix, self.limit = handle, prefix, zip64_limit
        self.position = 0
        self.sha256 = hashlib.sha256()
        self.central: list[bytes] = []
        self.zip64 = False

    def _write(self, data) -> None:
        self.sha256.update(data)
        self.handle.write(data)
        self.position += len(data)

    def _marker(self, value: int, fields: list[int]) -> int:
        """``value`` for a 32-bit field, or the ZIP64 marker (with the value queued for the extra field)."""
        if value < self.limit:
            return value
        fields.append(value)
        return ZIP64_LIMIT

    def entry(self, name: str, chunks, size: int) -> None:
        """Write one entry of exactly ``size`` bytes (known up front: it decides the ZIP64 fields)."""
        raw_name = f"{self.prefix}/{name}".encode()
        offset = self.position
        large = size >= self.limit
        local_extra = struct.pack("<HHQQ", ZIP64_EXTRA_ID, 16, 0, 0) if large else b""  # sizes follow the data
        header_end = offset + 30 + len(raw_name) + len(local_extra) + 4
        padding = -header_end % ALIGNMENT
        local_extra += struct.pack("<HH", PADDING_EXTRA_ID, padding) + b"Z" * padding
        local_size = ZIP64_LIMIT if large else 0
        self._write(struct.pack("<IHHHHHIIIHH", 0x04034B50, VERSION_ZIP64 if large else VERSION, FLAGS, 0, 0,
                                DOS_DATE_1980_01_01, 0, local_size, local_size, len(raw_name), len(local_extra))
                    + raw_name + local_extra)
        crc, written = 0, 0
        for chunk in chunks:
            crc = zlib.crc32(chunk, crc)
            written += len(chunk)
            self._write(chunk)
        if written != size:
            raise InvalidArgument(f"record '{name}' holds {written} bytes, expected {size}")
        self._write(struct.pack("<IIQQ" if large else "<IIII", 0x08074B50, crc, size, size))
        fields: list[int] = []
        usize = self._marker(size, fields)
        csize = self._marker(size, fields)
        header_offset = self._marker(offset, fields)
        extra = struct.pack(f"<HH{len(fields)}Q", ZIP64_EXTRA_ID, 8 * len(fields), *fields) if fields else b""
        version = VERSION_ZIP64 if fields else VERSION
        self.zip64 |= bool(fields)
        self.central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | version, version, FLAGS, 0, 0,
                                        DOS_DATE_1980_01_01, crc, csize, usize, len(raw_name), len(extra), 0, 0, 0,
                                        0o100644 << 16, header_offset) + raw_name + extra)

    def finish(self) -> None:
        start = self.position
        for record in self.central:
            self._write(record)
        count, size = len(self.central), self.position - start
        if self.zip64 or count >= U16_MAX or size >= self.limit or start >= self.limit:
            end64 = self.position
            self._write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, (3 << 8) | VERSION_ZIP64, VERSION_ZIP64, 0, 0,
                                    count, count, size, start))
            self._write(struct.pack("<IIQI", 0x07064B50, 0, end64, 1))
            count32 = min(count, U16_MAX)
            size32 = ZIP64_LIMIT if size >= self.limit else size
            start32 = ZIP64_LIMIT if start >= self.limit else start
        else:
            count32, size32, start32 = count, size, start
        self._write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count32, count32, size32, start32, 0))


def _buffer_chunks(tensor: StoredTensor):
    view = memoryview(tensor.source).cast("B")[tensor.offset:tensor.offset + tensor.nbytes]
    for start in range(0, len(view), IO_CHUNK):
        yield view[start:start + IO_CHUNK]


def _file_chunks(source: BinaryIO, offset: int, nbytes: int):
    end = offset + nbytes
    while offset < end:
        block = os.pread(source.fileno(), min(IO_CHUNK, end - offset), offset)
        if not block:
            raise OSError(f"{source.name}: ended before byte {end}")
        offset += len(block)
        yield block


def write_pth(obj: Any, handle: BinaryIO, *, stem: str,
              read_storage: Callable[[StoredTensor], Iterable] | None = None,
              zip64_limit: int = ZIP64_LIMIT) -> str:
    """Write ``obj`` (StoredTensors inside) to ``handle`` as torch.save would; return the sha256 of the bytes.

    Storages are written in ``storage_order``. ``read_storage(tensor)`` yields each one's
    bytes, called once per storage in that order; by default they are read from the
    tensor's file or buffer. Any size is fine: past 4 GiB the zip gets ZIP64 fields.
    """
    unknown = [t for t in _tensors(obj) if not isinstance(t, StoredTensor) or t.dtype not in DTYPES]
    if unknown:
        what = unknown[0].dtype if isinstance(unknown[0], StoredTensor) else type(unknown[0]).__name__
        raise InvalidArgument(f"cannot write a {what} tensor into a checkpoint")
    order = storage_order(obj)
    pickler = _Pickle({id(tensor): str(key) for key, tensor in enumerate(order)})
    data_pkl = pickler.dump(obj)
    stream = _ZipStream(handle, stem, zip64_limit)

    def small(name: str, data: bytes) -> None:
        stream.entry(name, [data], len(data))

    small("data.pkl", data_pkl)
    small(".format_version", b"1")
    small(".storage_alignment", str(ALIGNMENT).encode())
    small("byteorder", b"little")
    sources: dict[str, BinaryIO] = {}
    try:
        for key, tensor in enumerate(order):
            if read_storage is not None:
                chunks = read_storage(tensor)
            elif isinstance(tensor.source, str):
                if tensor.source not in sources:
                    sources[tensor.source] = open(tensor.source, "rb")
                chunks = _file_chunks(sources[tensor.source], tensor.offset, tensor.nbytes)
            else:
                chunks = _buffer_chunks(tensor)
            stream.entry(f"data/{key}", chunks, tensor.nbytes)
    finally:
        for source in sources.values():
            source.close()
    small("version", b"3\n")
    # torch writes a random id here; a digest of the pickle keeps the file a function of its contents.
    small(".data/serialization_id", hashlib.sha256(data_pkl).hexdigest()[:40].encode())
    stream.finish()
    return stream.sha256.hexdigest()


def stem_of(path: str | os.PathLike) -> str:
    """The archive folder torch.save names after the file (``checkpoint_final`` for checkpoint_final.pth)."""
    return Path(path).stem or "archive"
