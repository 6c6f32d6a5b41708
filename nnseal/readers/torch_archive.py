"""Look at a checkpoint file before anything loads it: format, zip structure, pickle globals, storages.

Everything here is static: bytes are parsed, never unpickled, and torch is not imported.
A file that passes is a plain ``torch.save`` zip whose ``data.pkl`` references only
allowlisted globals and whose storage records are exactly as large as the pickle says.
Anything else is refused with one line that names the file and every problem found.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from nnseal.errors import EnvironmentProblem, MalformedPickle, UnsafeCheckpoint, from_os_error
from nnseal.format.strict_json import show
from nnseal.readers.allowlist import allowed_global_names
from nnseal.readers.legacy_tar import LEGACY_MAGIC, TAR_BLOCK, is_tar_header
from nnseal.readers.pickle_stream import GlobalRef, scan_pickle
from nnseal.readers.zip_archive import METHOD_STORED, open_zip

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# torch.save(_use_new_zipfile_serialization=False) starts with pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2).

# Opcodes torch's weights-only unpickler implements (torch/_weights_only_unpickler.py, Unpickler.load);
# torch.save writes only these. Anything else would make torch fail half-way, or is a
# scanner-evasion trick (protocol-4 STACK_GLOBAL, FRAME, MEMOIZE, INST/OBJ, ...).
WEIGHTS_ONLY_OPCODES = frozenset(
    "GLOBAL NEWOBJ REDUCE BUILD APPEND APPENDS SETITEM SETITEMS MARK TUPLE TUPLE1 TUPLE2 TUPLE3 "
    "NONE NEWFALSE NEWTRUE EMPTY_TUPLE EMPTY_LIST EMPTY_DICT EMPTY_SET BININT BININT1 BININT2 "
    "BINFLOAT BINUNICODE SHORT_BINSTRING BINPERSID BINGET LONG_BINGET BINPUT LONG_BINPUT LONG1 "
    "PROTO STOP".split()
)

# Records torch.save writes besides data.pkl and data/<key> (torch/serialization.py, _save).
TORCH_SAVE_RECORDS = frozenset({"version", ".format_version", ".storage_alignment", "byteorder",
                                ".data/serialization_id", ".data/version"})
# Only torch.jit.save writes these.
TORCHSCRIPT_MARKERS = ("constants.pkl", "code/", "extra/", "traced_inputs", ".debug_pkl")

# Storage classes a data.pkl may name, with the element size of their dtype.
_STORAGE_ITEMSIZE = {
    "Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1,
    "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16,
    "QInt8": 1, "QUInt8": 1, "QInt32": 4, "QUInt4x2": 1, "QUInt2x4": 1,
}
STORAGE_ITEMSIZE: dict[str, int] = {
    **{f"torch.{kind}Storage": size for kind, size in _STORAGE_ITEMSIZE.items()},
    **{f"torch.cuda.{kind}Storage": size for kind, size in _STORAGE_ITEMSIZE.items() if not kind.startswith("Q")},
    "torch.storage.UntypedStorage": 1,
}
_LOCATION = re.compile(r"^[a-z][a-z0-9_]*(:[0-9]{1,4})?$")
_STORAGE_KEY = re.compile(r"^[0-9]{1,12}$")
MAX_DATA_PKL = 64 << 20


@dataclass(frozen=True)
class StorageRecord:
    """One storage as data.pkl declares it and the zip holds it."""

    key: str
    storage_type: str
    location: str
    numel: int
    nbytes: int


@dataclass
class ArchiveInfo:
    """What a checkpoint file is, known before loading it."""

    path: str
    file_size: int
    prefix: str
    globals: list[str]
    protocol: int
    storages: dict[str, StorageRecord] = field(default_factory=dict)
    entries: list[str] = field(default_factory=list)
    # Entry name -> (data offset, size) as nnseal's reader found them, and the sha256 of the data.pkl
    # it scanned: what torch's own reader must see before torch.load may run (checkpoint.py).
    records: dict[str, tuple[int, int]] = field(default_factory=dict)
    data_pkl_sha256: str = ""


def _refuse(path: Path, reason: str) -> UnsafeCheckpoint:
    return UnsafeCheckpoint(reason, path=path)


def classify_non_zip(head: bytes) -> str:
    """Why a file that is not a zip is not a checkpoint nnseal loads (the refusal's reason)."""
    if head.startswith(LEGACY_MAGIC):
        return ("legacy (pre-1.6, non-zip) torch.save format: nnseal does not load it; "
                "re-save it with torch.save in a trusted environment")
    if is_tar_header(head):
        return ("legacy tar torch.save format: nnseal does not load it; "
                "re-save it with torch.save in a trusted environment")
    if head[:1] == b"\x80" or head[:1] in (b"(", b"c", b"}", b"]"):
        return "a bare pickle, not a torch.save checkpoint (those are zip archives): nnseal never unpickles it"
    return "not a PyTorch checkpoint (neither a torch.save zip nor a known legacy format)"


def _check_layout(path: Path, names: list[str]) -> str:
    """The one archive prefix; refuse TorchScript, foreign and misplaced entries."""
    prefixes = sorted({name.split("/", 1)[0] for name in names if "/" in name})
    if any("/" not in name for name in names):
        raise _refuse(path, "zip entry outside an archive folder: not written by torch.save")
    if len(prefixes) != 1:
        shown = ", ".join(prefixes) if prefixes else "none"
        raise _refuse(path, f"expected exactly one archive folder, found {len(prefixes)} ({shown}): "
                            "readers would disagree on which one is the checkpoint")
    prefix = prefixes[0]
    records = [name[len(prefix) + 1:] for name in names]
    if any(marker in record for record in records for marker in TORCHSCRIPT_MARKERS):
        raise _refuse(path, "TorchScript archive (torch.jit.save), not a torch.save checkpoint: "
                            "loading it would run its code; export a state dict instead")
    if "data.pkl" not in records:
        raise _refuse(path, f"no {prefix}/data.pkl: not a torch.save checkpoint")
    for record in records:
        if record == "data.pkl" or record in TORCH_SAVE_RECORDS:
            continue
        if record.startswith("data/") and _STORAGE_KEY.match(record[5:]):
            continue
        raise _refuse(path, f"unexpected entry {prefix}/{record}: not written by torch.save")
    return prefix


def _storage_records(path: Path, prefix: str, persistent_ids: list, sizes: dict[str, int]) -> dict[str, StorageRecord]:
    """Match every storage data.pkl declares with its zip record, byte for byte."""
    storages: dict[str, StorageRecord] = {}
    for pid in persistent_ids:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], GlobalRef) and isinstance(pid[2], str) and isinstance(pid[3], str)
                and type(pid[4]) is int):
            raise _refuse(path, f"data.pkl references a storage in a form torch.save never writes: {show(pid, 120)}")
        _, storage_type, key, location, numel = pid
        itemsize = STORAGE_ITEMSIZE.get(storage_type.name)
        if itemsize is None:
            raise _refuse(path, f"storage {key!r} has unsupported type {storage_type.name}")
        if not _LOCATION.match(location):
            raise _refuse(path, f"storage {key!r} has a malformed device location {show(location, 40)}")
        if not _STORAGE_KEY.match(key) or numel < 0:
            raise _refuse(path, f"malformed storage reference {show(key, 40)} with {numel} elements")
        record = StorageRecord(key, storage_type.name, location, numel, numel * itemsize)
        earlier = storages.get(key)
        if earlier is not None:
            if (earlier.nbytes, earlier.storage_type) != (record.nbytes, record.storage_type):
                raise _refuse(path, f"storage {key!r} is declared twice with different types or sizes")
            continue
        actual = sizes.get(f"{prefix}/data/{key}")
        if actual is None:
            raise _refuse(path, f"data.pkl references storage {key!r} but {prefix}/data/{key} is missing")
        if actual != record.nbytes:
            raise _refuse(path, f"storage {prefix}/data/{key} holds {actual} bytes but data.pkl declares "
                                f"{record.nbytes} ({numel} x {itemsize}): storage size mismatch")
        storages[key] = record
    data_folder = f"{prefix}/data/"
    unreferenced = sorted(name for name in sizes
                          if name.startswith(data_folder) and name[len(data_folder):] not in storages)
    if unreferenced:
        raise _refuse(path, f"{len(unreferenced)} storage entries that data.pkl never uses "
                            f"(hidden data), first {unreferenced[0]}")
    return storages


def _check_pickle(path: Path, prefix: str, data: bytes):
    try:
        scan = scan_pickle(data, max_bytes=MAX_DATA_PKL, source=f"{prefix}/data.pkl")
    except MalformedPickle as err:
        raise _refuse(path, f"{prefix}/data.pkl: {err.reason}") from None
    allowed = allowed_global_names()
    problems = []
    disallowed = [name for name in scan.globals if name not in allowed]
    if disallowed:
        problems.append(f"imports globals outside the allowlist: {', '.join(disallowed)}")
    foreign_ops = sorted(scan.opcodes - WEIGHTS_ONLY_OPCODES)
    if foreign_ops:
        problems.append(f"uses pickle opcodes torch.save never writes (protocol {scan.protocol}): "
                        f"{', '.join(foreign_ops)}")
    if scan.anomalies:
        problems.append("; ".join(scan.anomalies))
    if problems:
        raise _refuse(path, f"{prefix}/data.pkl " + "; ".join(problems) + " (nothing was loaded or run)")
    return scan


def inspect_checkpoint(path: str | os.PathLike) -> ArchiveInfo:
    """Statically check a checkpoint file; raise UnsafeCheckpoint or HostileArchive on anything unexpected."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            file_size = os.fstat(handle.fileno()).st_size
            head = handle.read(TAR_BLOCK)
    except IsADirectoryError as err:
        raise EnvironmentProblem("is a directory, not a checkpoint file", path=path) from err
    except OSError as err:
        raise from_os_error(err, path) from err
    if file_size == 0:
        raise _refuse(path, "empty file, not a PyTorch checkpoint")
    if not head.startswith(ZIP_MAGIC):
        raise _refuse(path, classify_non_zip(head))

    with open_zip(path) as archive:
        names = [entry.name for entry in archive.entries if not entry.is_dir]
        if any(entry.is_dir for entry in archive.entries):
            raise _refuse(path, "zip holds directory entries: not written by torch.save")
        prefix = _check_layout(path, names)
        pickle_entry = archive.entry(f"{prefix}/data.pkl")
        if pickle_entry.size > MAX_DATA_PKL:
            raise _refuse(path, f"{prefix}/data.pkl is {pickle_entry.size} bytes, over the {MAX_DATA_PKL}-byte limit")
        data = archive.read(pickle_entry, max_size=MAX_DATA_PKL)
        scan = _check_pickle(path, prefix, data)
        sizes = {entry.name: entry.size for entry in archive.entries}
        for entry in archive.entries:
            # torch maps storages straight from the file (mmap): a compressed one would load as garbage.
            if entry.name.startswith(f"{prefix}/data/") and entry.method != METHOD_STORED:
                raise _refuse(path, f"storage {entry.name} is compressed: torch.save stores storages uncompressed")
        storages = _storage_records(path, prefix, scan.persistent_ids, sizes)
        records = {entry.name: (entry.data_offset, entry.size) for entry in archive.entries}
    import hashlib  # here: `nnseal scan` imports this module, and OpenSSL is slow to load

    return ArchiveInfo(path=str(path), file_size=file_size, prefix=prefix, globals=scan.globals,
                       protocol=scan.protocol, storages=storages, entries=names, records=records,
                       data_pkl_sha256=hashlib.sha256(data).hexdigest())


# --- collecting twins of the checks above, for `nnseal scan` (which reports every problem) ---


def layout_problem(path: str | os.PathLike, names: list[str]) -> tuple[str | None, str | None]:
    """``(prefix, None)`` for torch.save's layout, else ``(None, why not)``; raises nothing."""
    try:
        return _check_layout(path if isinstance(path, Path) else Path(path), names), None
    except UnsafeCheckpoint as err:
        return None, err.reason


def storage_problem(archive, prefix: str, persistent_ids: list) -> tuple[dict[str, StorageRecord], str | None]:
    """``(storages, None)`` when every storage data.pkl declares is stored uncompressed and exactly that large,
    else ``({}, why not)``. ``archive`` is an open ``SafeZip``."""
    data_folder = f"{prefix}/data/"
    for entry in archive.entries:
        if entry.method != METHOD_STORED and entry.name.startswith(data_folder):
            return {}, f"storage {entry.name} is compressed: torch.save stores storages uncompressed"
    sizes = {entry.name: entry.size for entry in archive.entries}
    try:
        return _storage_records(archive.path, prefix, persistent_ids, sizes), None  # a Path (open_zip)
    except UnsafeCheckpoint as err:
        return {}, err.reason
