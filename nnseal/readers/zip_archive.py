"""Read zip archives that may have been built to attack the reader.

One reader serves nnseal packages, PyTorch checkpoints (torch's PyTorchStreamWriter
writes zips) and nnU-Net's own export zips. It never extracts anything itself: callers
get validated entries and stream their bytes, each chunk checked as it goes.

We parse the end record and the central directory ourselves instead of trusting
``zipfile``, because zipfile reads many malformed archives "helpfully" and differently
from other readers (torch's miniz, unzip, 7-Zip): it shifts every offset when data is
prepended, decodes unflagged names as cp437, ignores the local header except its name
length, keeps the last of duplicate names, and (in recent versions) takes a second name from an
Info-ZIP Unicode Path extra field. A verifier must see exactly what every extractor
sees, so anything two readers could read differently is refused here.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import threading
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from nnseal.errors import EnvironmentProblem, HostileArchive, from_os_error
from nnseal.format.limits import IO_CHUNK
from nnseal.format.strict_json import show

METHOD_STORED = 0
METHOD_DEFLATED = 8

FLAG_ENCRYPTED = 0x0001
FLAG_DEFLATE_OPTIONS = 0x0006  # deflate speed hints; harmless
FLAG_DATA_DESCRIPTOR = 0x0008
FLAG_PATCHED_DATA = 0x0020
FLAG_STRONG_ENCRYPTION = 0x0040
FLAG_UTF8 = 0x0800
FLAGS_ALLOWED = FLAG_DEFLATE_OPTIONS | FLAG_DATA_DESCRIPTOR | FLAG_UTF8

EXTRA_ZIP64 = 0x0001
EXTRA_UNICODE_PATH = 0x7075  # Info-ZIP: a second name some extractors prefer to the header's

CREATE_SYSTEM_UNIX = 3
DOS_DIRECTORY_ATTR = 0x10

_EOCD = struct.Struct("<IHHHHIIH")  # end of central directory record, 22 bytes
_EOCD64_LOCATOR = struct.Struct("<IIQI")  # 20 bytes
_EOCD64 = struct.Struct("<IQHHIIQQQQ")  # 56 bytes
_CENTRAL = struct.Struct("<IBBHHHHHIIIHHHHHII")  # 46 bytes
_CENTRAL_SIZE = _CENTRAL.size
_LOCAL = struct.Struct("<IHHHHHIIIHH")  # 30 bytes
_SIG_EOCD = 0x06054B50
_SIG_EOCD64_LOCATOR = 0x07064B50
_SIG_EOCD64 = 0x06064B50
_SIG_CENTRAL = 0x02014B50
_SIG_LOCAL = 0x04034B50
_SIG_DESCRIPTOR = 0x08074B50
_SIG_EOCD_BYTES = struct.pack("<I", _SIG_EOCD)
_SIG_DESCRIPTOR_BYTES = struct.pack("<I", _SIG_DESCRIPTOR)
# A data descriptor: (bytes to skip, crc32 + sizes, length), with or without its signature.
_DESCRIPTOR_SHAPES = ((0, struct.Struct("<IQQ"), 20), (0, struct.Struct("<III"), 12))
_DESCRIPTOR_SHAPES_SIGNED = ((4, struct.Struct("<IQQ"), 24), (4, struct.Struct("<III"), 16)) + _DESCRIPTOR_SHAPES
# A file up to this size is read whole at once and parsed from memory: cheaper than the
# reads of its end records and local headers one by one.
_READ_WHOLE_BELOW = 1 << 20
_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFFFFFF
_MAX_COMMENT = 0xFFFF
# Signatures a reader may search for: any of them after the end record's own signature could be
# taken for a record by a reader that scans backwards (miniz, hence torch; zipfile; unzip).
_RECORD_SIGNATURES = {
    struct.pack("<I", _SIG_EOCD): "end-of-central-directory",
    struct.pack("<I", _SIG_EOCD64): "ZIP64 end record",
    struct.pack("<I", _SIG_EOCD64_LOCATOR): "ZIP64 locator",
    struct.pack("<I", _SIG_CENTRAL): "central-directory",
    struct.pack("<I", _SIG_LOCAL): "local-header",
}
_EOCD64_RECORD_SIZE = _EOCD64.size - 12  # the size field counts what follows it
_MAX_VERSION_NEEDED = 45  # 4.5: ZIP64. Info-ZIP unzip 6.0 skips entries that need more; zipfile reads them

_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class Limits:
    """What an archive may hold before we refuse it as a bomb or an attack."""

    max_entries: int = 10_000
    max_entry_size: int = 16 << 30
    max_total_size: int = 64 << 30
    max_ratio: int = 1000  # uncompressed / compressed size of one deflated entry
    max_name_bytes: int = 1024
    max_component_bytes: int = 255  # what ext4, APFS and NTFS accept
    # nnU-Net layouts are at most 6 deep. Checking a name's folders costs (depth x length): with
    # 1024-byte names of 500 folders each, 10,000 entries took minutes before a single byte was read.
    max_components: int = 32
    max_central_directory_size: int = 64 << 20
    # torch.save, nnseal's writer and nnU-Net's zipfile-based export never write an archive or
    # entry comment: refuse one, so no bytes sit outside every entry. A caller reading other
    # people's zips (``git archive`` writes the commit id there) may allow one; a zip signature
    # inside it is refused either way, since readers that search backwards would take it.
    allow_comment: bool = False


@dataclass(frozen=True)
class Entry:
    """One validated central-directory entry; data lies at [data_offset, data_offset + compressed_size)."""

    name: str
    size: int
    compressed_size: int
    method: int
    crc32: int
    header_offset: int
    data_offset: int
    is_dir: bool



class _Where:
    """``entry <name>`` for error messages, spelled out only when one is raised.

    Quoting every name of every archive up front cost more than all the checks it serves.
    """

    __slots__ = ("name", "suffix")

    def __init__(self, name: str | bytes, suffix: str = ""):
        self.name = name
        self.suffix = suffix

    def __str__(self) -> str:
        return f"entry {show(self.name)}{self.suffix}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def check_entry_name(name: str, limits: Limits = Limits()) -> None:
    """Refuse a name that could land outside the destination or mean different files on different systems.

    ``name`` is a file name: POSIX separators, relative, no trailing slash.
    """
    if not name:
        raise HostileArchive(f"entry {show(name)}: empty name")
    # Printable ASCII (nearly every real name) has no control or invisible character and is its
    # own UTF-8 encoding: the per-character Unicode lookups below are for the other names.
    simple = name.isascii() and name.isprintable()
    if simple:
        name_bytes = len(name)
    else:
        try:
            name_bytes = len(name.encode("utf-8"))
        except UnicodeEncodeError:
            raise HostileArchive(f"entry {show(name)}: name is not valid UTF-8") from None
    if name_bytes > limits.max_name_bytes:
        raise HostileArchive(f"entry {show(name)}: name longer than {limits.max_name_bytes} bytes")
    if not simple:
        for char in name:
            # Cc: NUL, newlines, escapes; Cf: invisible and bidi-override characters that spoof names.
            if unicodedata.category(char) in ("Cc", "Cf", "Cs"):
                raise HostileArchive(f"entry {show(name)}: control or invisible character {ascii(char)} in name")
    if "\\" in name:
        raise HostileArchive(f"entry {show(name)}: backslash in name (a path separator on Windows)")
    if name.startswith("/"):
        raise HostileArchive(f"entry {show(name)}: absolute name")
    if ":" in name:  # a drive letter has one too
        if _DRIVE_LETTER.match(name):
            raise HostileArchive(f"entry {show(name)}: drive letter in name")
        raise HostileArchive(f"entry {show(name)}: ':' in name (a drive or NTFS stream separator on Windows)")
    if name.count("/") >= limits.max_components:
        raise HostileArchive(f"entry {show(name)}: more than {limits.max_components} path components")
    max_component = limits.max_component_bytes
    for component in name.split("/"):
        if component == "":
            raise HostileArchive(f"entry {show(name)}: empty path component")
        if component == "..":
            raise HostileArchive(f"entry {show(name)}: '..' component (path traversal)")
        if component == ".":
            raise HostileArchive(f"entry {show(name)}: '.' component")
        if len(component) > max_component or not simple and len(component.encode("utf-8")) > max_component:
            raise HostileArchive(f"entry {show(name)}: path component longer than {limits.max_component_bytes} bytes")


def collision_key(name: str) -> str:
    """The name as case-insensitive, normalizing file systems (APFS, NTFS) see it."""
    if name.isascii():  # NFC leaves ASCII alone, and casefold() is lower() on it
        return name.lower()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


class NameRegistry:
    """Refuses a name that is a duplicate of, or would collide on disk with, an earlier one.

    Shared by the reader and the writer: exact duplicates, case/Unicode-normalization
    twins, and a file whose name is also used as a directory (``a`` and ``a/b``).
    """

    def __init__(self) -> None:
        self._exact: set[str] = set()
        self._files: dict[str, str] = {}  # collision key -> first name
        self._dirs: dict[str, str] = {}  # collision key of every directory, explicit or implied

    def add(self, name: str, *, is_dir: bool = False) -> None:
        if name in self._exact:
            raise HostileArchive(f"entry {show(name)}: duplicate entry name")
        self._exact.add(name)
        path = name[:-1] if is_dir else name
        key = collision_key(path)
        if key in self._files:
            if is_dir and self._files[key] == path:
                raise HostileArchive(f"entry {show(name)}: the same name is also a file entry")
            raise HostileArchive(f"entry {show(name)}: collides with entry {show(self._files[key])} on "
                                 "case-insensitive or Unicode-normalizing file systems")
        if not is_dir and key in self._dirs:
            raise HostileArchive(f"entry {show(name)}: the same name is also used as a folder")
        slash = path.find("/")
        while slash >= 0:
            parent = path[:slash]
            slash = path.find("/", slash + 1)
            parent_key = collision_key(parent)
            if parent_key in self._files:
                raise HostileArchive(f"entry {show(name)}: its folder {show(parent)} is also a file entry")
            self._dirs.setdefault(parent_key, parent)
        if is_dir:
            self._dirs.setdefault(key, path)
        else:
            self._files[key] = name


def _parse_extra(blob: bytes, where: str | _Where, where_suffix: str = "") -> dict[int, bytes]:
    fields: dict[int, bytes] = {}
    pos = 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise HostileArchive(f"{where}{where_suffix}: malformed extra field")
        field_id, length = struct.unpack_from("<HH", blob, pos)
        if pos + 4 + length > len(blob):
            raise HostileArchive(f"{where}{where_suffix}: malformed extra field")
        if field_id in fields:
            raise HostileArchive(f"{where}{where_suffix}: extra field 0x{field_id:04x} appears twice")
        fields[field_id] = blob[pos + 4: pos + 4 + length]
        pos += 4 + length
    if EXTRA_UNICODE_PATH in fields:
        raise HostileArchive(f"{where}{where_suffix}: carries a second name (Info-ZIP Unicode Path extra field)")
    return fields


_NO_EXTRA: dict[int, bytes] = {}


def _decode_name(raw: bytes, flags: int) -> str:
    if flags & FLAG_UTF8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HostileArchive(f"entry {show(raw)}: name is not valid UTF-8") from None
    # Without the UTF-8 flag readers disagree (cp437, the local code page, UTF-8): accept ASCII only.
    if not raw.isascii():
        raise HostileArchive(f"entry {show(raw)}: non-ASCII name not marked as UTF-8 (readers would disagree on it)")
    return raw.decode("ascii")


class _Raw:
    """A central entry until its local header has been checked (then ``entry`` is set)."""

    __slots__ = ("name", "where", "is_dir", "size", "compressed_size", "method", "crc32", "header_offset",
                 "name_bytes", "flags", "entry", "end", "local_fixed", "local_variable")

    def __init__(self, name: str, where: _Where, is_dir: bool, size: int, compressed_size: int, method: int, crc32: int,
                 header_offset: int, name_bytes: bytes, flags: int):
        self.name = name
        self.where = where
        self.is_dir = is_dir
        self.size = size
        self.compressed_size = compressed_size
        self.method = method
        self.crc32 = crc32
        self.header_offset = header_offset
        self.name_bytes = name_bytes
        self.flags = flags
        self.entry: Entry | None = None
        self.end = -1  # one past its data descriptor, or its data
        self.local_fixed: tuple = ()
        self.local_variable = b""


class SafeZip:
    """An open, fully validated archive. Use as a context manager, or call close()."""

    def __init__(self, path: Path, fd: int, entries: list[Entry], limits: Limits, whole: bytes | None = None):
        self.path = path
        self.entries = entries
        self.limits = limits
        self._fd = fd
        # A small archive's bytes as the parser read and checked them: entries are read from
        # them, not from the file again.
        self._whole = whole
        self._by_name = {e.name: e for e in entries}
        self._lock = threading.Lock()  # only for platforms without os.pread

    # --- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- lookup ----------------------------------------------------------------

    def names(self) -> list[str]:
        """File entries only, in central-directory order."""
        return [e.name for e in self.entries if not e.is_dir]

    def get(self, name: str) -> Entry | None:
        return self._by_name.get(name)

    def entry(self, name: str) -> Entry:
        found = self._by_name.get(name)
        if found is None:
            raise HostileArchive(f"no entry {show(name)}", path=self.path)
        return found

    def _resolve(self, entry_or_name: Entry | str) -> Entry:
        if isinstance(entry_or_name, str):
            return self.entry(entry_or_name)
        # Only our own validated entries: a fabricated Entry could point anywhere in the file.
        if self._by_name.get(entry_or_name.name) != entry_or_name:
            raise HostileArchive(f"entry {show(entry_or_name.name)} does not belong to this archive",
                                 path=self.path)
        return entry_or_name

    # --- reading ---------------------------------------------------------------

    def _pread(self, size: int, offset: int) -> bytes:
        if self._whole is not None:
            data = self._whole[offset:offset + size]
        elif hasattr(os, "pread"):
            data = os.pread(self._fd, size, offset)
        else:  # pragma: no cover - Windows
            with self._lock:
                os.lseek(self._fd, offset, os.SEEK_SET)
                data = os.read(self._fd, size)
        if len(data) != size:
            raise HostileArchive("file is shorter than its central directory says (changed while reading?)",
                                 path=self.path)
        return data

    def _raw_chunks(self, entry: Entry, chunk: int) -> Iterator[bytes]:
        offset, left = entry.data_offset, entry.compressed_size
        while left:
            take = min(chunk, left)
            yield self._pread(take, offset)
            offset += take
            left -= take

    def stream(self, entry_or_name: Entry | str, *, chunk: int = IO_CHUNK) -> Iterator[bytes]:
        """Yield the entry's uncompressed bytes; raise HostileArchive as soon as they disagree with the headers.

        The last chunk is only followed by the size and CRC checks: a caller that
        writes chunks as they come must discard what it wrote if this raises.
        """
        entry = self._resolve(entry_or_name)
        where = _Where(entry.name)
        crc = 0
        produced = 0
        if entry.method == METHOD_STORED:
            for block in self._raw_chunks(entry, chunk):
                crc = zlib.crc32(block, crc)
                produced += len(block)
                yield block
        else:
            inflater = zlib.decompressobj(-15)
            for block in self._raw_chunks(entry, chunk):
                pending = block
                while pending:
                    if inflater.eof:
                        raise HostileArchive(f"{where}: data continues after the end of its deflate stream",
                                             path=self.path)
                    # Never more than one byte past the declared size: a bomb cannot grow in memory,
                    # and that one byte proves the size field lied. max_length 0 means "unlimited": never 0.
                    budget = min(chunk, entry.size + 1 - produced)
                    try:
                        out = inflater.decompress(pending, budget)
                    except zlib.error as err:
                        raise HostileArchive(f"{where}: corrupt deflate data ({err})", path=self.path) from None
                    pending = inflater.unconsumed_tail
                    if out:
                        produced += len(out)
                        if produced > entry.size:
                            raise HostileArchive(f"{where}: declared size {entry.size} but holds more data "
                                                 "(lying size field)", path=self.path)
                        crc = zlib.crc32(out, crc)
                        yield out
                    elif pending:  # zlib made no progress on input it did not consume
                        raise HostileArchive(f"{where}: corrupt deflate data", path=self.path)
            if not inflater.eof:
                raise HostileArchive(f"{where}: deflate stream is truncated", path=self.path)
            if inflater.unused_data:
                raise HostileArchive(f"{where}: data continues after the end of its deflate stream",
                                     path=self.path)
        if produced != entry.size:
            raise HostileArchive(f"{where}: declared size {entry.size} but holds {produced} bytes "
                                 "(lying size field)", path=self.path)
        if crc != entry.crc32:
            raise HostileArchive(f"{where}: CRC mismatch (stored {entry.crc32:08x}, data {crc:08x})",
                                 path=self.path)

    def read(self, entry_or_name: Entry | str, *, max_size: int = 64 << 20) -> bytes:
        """A whole small entry (JSON, signature), fully validated."""
        entry = self._resolve(entry_or_name)
        if entry.size > max_size:
            raise HostileArchive(f"entry {show(entry.name)}: {entry.size} bytes, more than the {max_size} "
                                 "expected for this file", path=self.path)
        return b"".join(self.stream(entry))

    def copy_to(self, entry_or_name: Entry | str, fileobj: BinaryIO) -> str:
        """Stream the entry into ``fileobj``; return the sha256 hex of exactly the bytes written."""
        import hashlib  # here, not at the top: `nnseal scan` starts faster without OpenSSL

        digest = hashlib.sha256()
        for block in self.stream(entry_or_name):
            digest.update(block)
            fileobj.write(block)
        return digest.hexdigest()

    def sha256(self, entry_or_name: Entry | str) -> str:
        import hashlib

        digest = hashlib.sha256()
        for block in self.stream(entry_or_name):
            digest.update(block)
        return digest.hexdigest()

    def sha256_all(self, entries: Iterable[Entry | str] | None = None, *,
                   workers: int | None = None) -> dict[str, str]:
        """Name -> sha256 hex of every file entry (or of ``entries``), hashed in parallel threads.

        pread, zlib and hashlib release the GIL on large buffers, so threads scale with cores.
        """
        chosen = [self._resolve(e) for e in entries] if entries is not None else \
            [e for e in self.entries if not e.is_dir]
        if not chosen:
            return {}
        workers = workers or min(8, os.cpu_count() or 1, len(chosen))
        if workers <= 1:
            return {e.name: self.sha256(e) for e in chosen}
        from concurrent.futures import ThreadPoolExecutor  # with logging and queue: only when hashing

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nnseal-hash") as pool:
            futures = [pool.submit(self.sha256, e) for e in chosen]
            try:
                return {e.name: f.result() for e, f in zip(chosen, futures, strict=True)}
            except BaseException:
                for f in futures:
                    f.cancel()
                raise


# --- opening -------------------------------------------------------------------


def open_zip(path: str | os.PathLike, limits: Limits = Limits()) -> SafeZip:
    """Open and validate every header of a zip; raise HostileArchive on anything malformed or hostile."""
    if not isinstance(path, Path):
        path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise from_os_error(err, path) from err
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise EnvironmentProblem("not a regular file", path=path)
        parser = _Parser(fd, info.st_size, limits, path)
        entries = parser.parse()
        return SafeZip(path, fd, entries, limits, parser.window if parser.window_start == 0 else None)
    except HostileArchive as err:
        os.close(fd)
        if err.path is None:  # name the archive in every message
            raise HostileArchive(err.reason, path=path) from None
        raise
    except OSError as err:
        os.close(fd)
        raise from_os_error(err, path) from err
    except BaseException:
        os.close(fd)
        raise


class _Parser:
    def __init__(self, fd: int, file_size: int, limits: Limits, path: Path):
        self.fd = fd
        self.file_size = file_size
        self.limits = limits
        self.path = path
        # The file's last bytes (all of a small file), read once: the end records, usually the
        # central directory, and for a small file every local header are parsed from them
        # instead of with a system call each. A checkpoint of 1,000 is ~30 reads otherwise.
        self.window = b""
        self.window_start = file_size

    def read_at(self, offset: int, size: int, what: str | _Where, what_suffix: str = "") -> bytes:
        if offset < 0 or size < 0 or offset + size > self.file_size:
            raise HostileArchive(f"{what}{what_suffix} lies outside the file (truncated or corrupt)")
        start = offset - self.window_start
        if start >= 0:  # the window runs to the end of the file, which the check above bounds
            return self.window[start:start + size]
        data = os.pread(self.fd, size, offset) if hasattr(os, "pread") else self._seek_read(offset, size)
        if len(data) != size:
            raise HostileArchive(f"{what}{what_suffix} lies outside the file (truncated or corrupt)")
        return data

    def _seek_read(self, offset: int, size: int) -> bytes:  # pragma: no cover - Windows
        os.lseek(self.fd, offset, os.SEEK_SET)
        return os.read(self.fd, size)

    # --- end records -------------------------------------------------------------

    def find_end_record(self) -> int:
        if self.file_size == 0:
            raise HostileArchive("not a zip archive (empty file)")
        if self.file_size < _EOCD.size:
            raise HostileArchive("not a zip archive (truncated or corrupt: too short)")
        search_start = max(0, self.file_size - _EOCD.size - _MAX_COMMENT)
        tail_start = 0 if self.file_size <= _READ_WHOLE_BELOW else search_start
        tail = self.read_at(tail_start, self.file_size - tail_start, "end of archive")
        self.window, self.window_start = tail, tail_start
        signature = _SIG_EOCD_BYTES
        found = []
        trailing = None  # bytes after the last whole end record that its comment does not cover
        # Only where an end record whose comment reaches the end of the file can start.
        pos = tail.rfind(signature, search_start - tail_start)
        while pos >= 0:
            if pos + _EOCD.size <= len(tail):
                comment_len = _EOCD.unpack_from(tail, pos)[7]
                if pos + _EOCD.size + comment_len == len(tail):
                    found.append(tail_start + pos)
                elif trailing is None and pos + _EOCD.size + comment_len < len(tail):
                    trailing = len(tail) - (pos + _EOCD.size + comment_len)
            pos = tail.rfind(signature, search_start - tail_start, pos)
        if not found:
            if trailing is not None:
                # miniz (torch) and zipfile still open such a file, each finding its own end record.
                raise HostileArchive(f"{trailing} bytes after the end-of-central-directory record "
                                     "(data appended to the archive)")
            raise HostileArchive("not a zip archive (truncated or corrupt: no end-of-central-directory record)")
        if len(found) > 1:
            # A comment holding a second end record: readers that search differently see different archives.
            raise HostileArchive("ambiguous archive: more than one end-of-central-directory record")
        eocd_pos = found[0]
        self.check_archive_comment(tail[eocd_pos - tail_start:])
        return eocd_pos

    def check_archive_comment(self, record: bytes) -> None:
        """The end record and its comment: no signature a backwards search could take, no comment unless allowed.

        miniz (torch's reader) takes the last end-record signature with 22 bytes after it, zipfile
        the last one anywhere, unzip the last one: an archive hidden in the comment behind a byte of
        padding is what all three open, while the first end record is the one whose comment reaches
        the end of the file. So the bytes after our end record's signature hold no zip signature.
        """
        comment = record[_EOCD.size:]
        if not comment:
            return
        for sig, what in _RECORD_SIGNATURES.items():
            # From byte 1: a signature may straddle the end record's last fields and the comment.
            if record.find(sig, 1) >= 0:
                raise HostileArchive(f"archive comment holds a zip signature ({what}): a second archive hidden "
                                     "after the end record? readers would disagree on which one to open")
        if not self.limits.allow_comment:
            raise HostileArchive(f"archive comment of {len(comment)} bytes (torch.save and nnseal never "
                                 "write one; bytes outside every entry)")

    def central_directory_bounds(self, eocd_pos: int) -> tuple[int, int, int, int]:
        """(entry count, cd offset, cd size, where the central directory must end)."""
        (_, disk, cd_disk, count_disk, count, cd_size, cd_offset, _) = _EOCD.unpack(
            self.read_at(eocd_pos, _EOCD.size, "end record"))
        if disk != 0 or cd_disk != 0 or count_disk != count:
            raise HostileArchive("multi-disk (split) archives are not supported")
        cd_end = eocd_pos
        locator_pos = eocd_pos - _EOCD64_LOCATOR.size
        if locator_pos >= 0:
            locator = _EOCD64_LOCATOR.unpack(self.read_at(locator_pos, _EOCD64_LOCATOR.size, "ZIP64 locator"))
            if locator[0] == _SIG_EOCD64_LOCATOR:
                _, z_disk, z_offset, z_disks = locator
                if z_disk != 0 or z_disks > 1:
                    raise HostileArchive("multi-disk (split) archives are not supported")
                record = _EOCD64.unpack(self.read_at(z_offset, _EOCD64.size, "ZIP64 end record"))
                (sig, record_size, _, _, z_this_disk, z_cd_disk, z_count_disk, z_count, z_cd_size,
                 z_cd_offset) = record
                if sig != _SIG_EOCD64 or z_offset + 12 + record_size != locator_pos:
                    raise HostileArchive("corrupt ZIP64 end record")
                if record_size != _EOCD64_RECORD_SIZE:
                    # zipfile reads the record 56 bytes before the locator, miniz where the locator
                    # points: an extensible data sector makes them read different bytes.
                    raise HostileArchive("ZIP64 end record carries an extensible data sector "
                                         "(readers would disagree on where it starts)")
                if z_this_disk != 0 or z_cd_disk != 0 or z_count_disk != z_count:
                    raise HostileArchive("multi-disk (split) archives are not supported")
                # The 32-bit fields must be the ZIP64 marker or agree: otherwise readers disagree.
                for small, big, marker in ((count, z_count, _U16_MAX), (cd_size, z_cd_size, _U32_MAX),
                                           (cd_offset, z_cd_offset, _U32_MAX)):
                    if small != marker and small != big:
                        raise HostileArchive("end record and ZIP64 end record disagree")
                count, cd_size, cd_offset, cd_end = z_count, z_cd_size, z_cd_offset, z_offset
        if cd_offset + cd_size != cd_end:
            raise HostileArchive("central directory is not where the end record says "
                                 "(data prepended or appended, or truncated)")
        return count, cd_offset, cd_size, cd_end

    # --- central directory ---------------------------------------------------------

    def parse(self) -> list[Entry]:
        count, cd_offset, cd_size, _ = self.central_directory_bounds(self.find_end_record())
        if count > self.limits.max_entries:
            raise HostileArchive(f"{count} entries, more than the limit of {self.limits.max_entries}")
        if cd_size > self.limits.max_central_directory_size:
            raise HostileArchive(f"central directory of {cd_size} bytes, more than the limit of "
                                 f"{self.limits.max_central_directory_size}")
        directory = self.read_at(cd_offset, cd_size, "central directory")
        register = NameRegistry().add
        max_total_size = self.limits.max_total_size
        raws: list[_Raw] = []
        total = 0
        pos = 0
        for index in range(count):
            raw, pos = self.central_entry(directory, pos, index)
            register(raw.name, is_dir=raw.is_dir)
            total += raw.size
            if total > max_total_size:
                raise HostileArchive(f"entries hold more than {self.limits.max_total_size} bytes in total "
                                     "(zip bomb?)")
            raws.append(raw)
        if pos != len(directory):
            raise HostileArchive("central directory holds more than its entries (corrupt or hidden data)")
        for raw in raws:
            self.locate(raw)
        # Layout before header contents, so that an overlap is reported as one.
        self.check_layout(raws, cd_offset)
        for raw in raws:
            self.compare_local(raw)
        return [raw.entry for raw in raws]  # type: ignore[misc]  # locate() set every one

    def central_entry(self, directory: bytes, pos: int, index: int) -> tuple[_Raw, int]:
        name_start = pos + _CENTRAL_SIZE
        if name_start > len(directory):
            raise HostileArchive("central directory is truncated")
        (sig, _, create_system, version_needed, flags, method, _, _, crc, csize, usize, name_len, extra_len,
         comment_len, disk, _, external_attr, header_offset) = _CENTRAL.unpack_from(directory, pos)
        if sig != _SIG_CENTRAL:
            raise HostileArchive(f"central directory entry {index} has a bad signature")
        extra_start = name_start + name_len
        end = extra_start + extra_len + comment_len
        if end > len(directory):
            raise HostileArchive("central directory is truncated")
        name_bytes = directory[name_start:extra_start]
        name = _decode_name(name_bytes, flags)
        where = _Where(name)
        is_dir = name.endswith("/")
        check_entry_name(name[:-1] if is_dir else name, self.limits)
        # Each check runs only when a cheap test says it could fail: most entries pass them all.
        if flags & ~FLAGS_ALLOWED or method != METHOD_STORED and method != METHOD_DEFLATED:
            self.check_flags_and_method(flags, method, where)
        if version_needed & 0xFF > _MAX_VERSION_NEEDED:
            self.check_version_needed(version_needed, where)
        if comment_len:
            comment = directory[end - comment_len: end]
            if any(sig in comment for sig in _RECORD_SIGNATURES):
                raise HostileArchive(f"{where}: entry comment holds a zip signature (hidden record?)")
            if not self.limits.allow_comment:
                raise HostileArchive(f"{where}: entry comment of {comment_len} bytes (torch.save and nnseal "
                                     "never write one)")

        extra = _parse_extra(directory[extra_start:extra_start + extra_len], where) if extra_len else _NO_EXTRA
        if EXTRA_ZIP64 in extra:
            usize, csize, header_offset, disk = self.central_zip64(extra[EXTRA_ZIP64], usize, csize,
                                                                   header_offset, disk, where)
        if disk != 0:
            raise HostileArchive(f"{where}: on another disk (split archives are not supported)")

        if external_attr:  # zero (torch, DOS writers) means a regular file, which every check accepts
            self.check_file_type(create_system, external_attr, is_dir, where)
        if is_dir and usize != 0:
            raise HostileArchive(f"{where}: directory entry holds data")
        self.check_sizes(method, usize, csize, where)
        return _Raw(name, where, is_dir, usize, csize, method, crc, header_offset, name_bytes, flags), end

    @staticmethod
    def central_zip64(blob: bytes, usize: int, csize: int, offset: int, disk: int,
                      where: str | _Where) -> tuple[int, int, int, int]:
        # Only the fields whose header value is the marker are present, in this order (APPNOTE 4.5.3).
        # Demand exactly those: a field more or less makes readers disagree on which is which.
        wanted = [usize == _U32_MAX, csize == _U32_MAX, offset == _U32_MAX]
        expected_len = 8 * sum(wanted) + (4 if disk == _U16_MAX else 0)
        if len(blob) != expected_len:
            raise HostileArchive(f"{where}: ZIP64 extra field does not match its header")
        values = [usize, csize, offset]
        pos = 0
        for i, needed in enumerate(wanted):
            if needed:
                values[i] = struct.unpack_from("<Q", blob, pos)[0]
                pos += 8
        if disk == _U16_MAX:
            disk = struct.unpack_from("<I", blob, pos)[0]
        return values[0], values[1], values[2], disk

    @staticmethod
    def check_flags_and_method(flags: int, method: int, where: str | _Where) -> None:
        if flags & FLAG_ENCRYPTED:
            raise HostileArchive(f"{where}: encrypted entry")
        if flags & FLAG_PATCHED_DATA:
            raise HostileArchive(f"{where}: flag 0x20 (compressed patched data) is not supported")
        if flags & FLAG_STRONG_ENCRYPTION:
            raise HostileArchive(f"{where}: flag 0x40 (strong encryption) is not supported")
        if flags & ~FLAGS_ALLOWED:
            raise HostileArchive(f"{where}: unsupported flag bits 0x{flags & ~FLAGS_ALLOWED:04x}")
        if method not in (METHOD_STORED, METHOD_DEFLATED):
            raise HostileArchive(f"{where}: compression method {method} is not supported "
                                 "(only stored and deflate)")

    @staticmethod
    def check_version_needed(version_needed: int, where: _Where, where_suffix: str = "") -> None:
        # The low byte is the version; the high byte (a host system) is ignored by every reader.
        if version_needed & 0xFF > _MAX_VERSION_NEEDED:
            raise HostileArchive(f"{where}{where_suffix}: needs zip version {(version_needed & 0xFF) / 10:.1f} "
                                 "to extract (unzip skips such an entry while other readers extract it)")

    @staticmethod
    def check_file_type(create_system: int, external_attr: int, is_dir: bool, where: str | _Where) -> None:
        # The Unix mode sits in the high 16 bits. Checked whatever create_system says, because some
        # extractors honour it regardless; a zero mode (DOS/Windows writers, torch) means "regular".
        mode = external_attr >> 16
        kind = stat.S_IFMT(mode)
        if stat.S_ISLNK(mode):
            raise HostileArchive(f"{where}: symlink entry")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise HostileArchive(f"{where}: not a regular file (mode 0o{mode:o})")
        if kind == stat.S_IFDIR and not is_dir or kind == stat.S_IFREG and is_dir:
            raise HostileArchive(f"{where}: file type disagrees with the name's trailing '/'")
        if external_attr & DOS_DIRECTORY_ATTR and not is_dir:
            raise HostileArchive(f"{where}: marked as a directory but named as a file")

    def check_sizes(self, method: int, usize: int, csize: int, where: str | _Where) -> None:
        limits = self.limits
        if usize > limits.max_entry_size:
            raise HostileArchive(f"{where}: {usize} bytes, more than the limit of {limits.max_entry_size}")
        if method == METHOD_STORED and csize != usize:
            raise HostileArchive(f"{where}: stored entry with compressed size {csize} != size {usize} "
                                 "(lying size field)")
        if method == METHOD_DEFLATED and usize > limits.max_ratio * max(csize, 1):
            raise HostileArchive(f"{where}: compression ratio above {limits.max_ratio} (deflate bomb)")

    # --- local headers ---------------------------------------------------------------

    def locate(self, raw: _Raw) -> None:
        """Read the local header and work out where the entry's data (and descriptor) end."""
        where = raw.where
        header_offset = raw.header_offset
        fixed = _LOCAL.unpack(self.read_at(header_offset, _LOCAL.size, where, ": local header"))
        if fixed[0] != _SIG_LOCAL:
            raise HostileArchive(f"{where}: local header has a bad signature")
        name_len, extra_len = fixed[9], fixed[10]
        raw.local_fixed = fixed
        raw.local_variable = self.read_at(header_offset + _LOCAL.size, name_len + extra_len, where, ": local header")
        data_offset = header_offset + _LOCAL.size + name_len + extra_len
        end = data_offset + raw.compressed_size
        if raw.flags & FLAG_DATA_DESCRIPTOR:
            end += self.data_descriptor_length(end, raw, where)
        raw.entry = Entry(raw.name, raw.size, raw.compressed_size, raw.method, raw.crc32, header_offset,
                          data_offset, raw.is_dir)
        raw.end = end

    def compare_local(self, raw: _Raw) -> None:
        """The local header must say what the central directory says: streaming extractors read only it."""
        where = raw.where
        (_, version_needed, flags, method, _, _, crc, csize, usize, name_len, _) = raw.local_fixed
        self.check_version_needed(version_needed, where, " (local header)")
        local_name = raw.local_variable[:name_len]
        if local_name != raw.name_bytes:
            raise HostileArchive(f"{where}: local header names it {show(local_name)} "
                                 "(local and central names differ)")
        if flags != raw.flags or method != raw.method:
            raise HostileArchive(f"{where}: local header flags or method differ from the central directory")
        extra = _parse_extra(raw.local_variable[name_len:], where, " (local header)") \
            if len(raw.local_variable) > name_len else _NO_EXTRA
        local_sizes = [usize, csize]
        if usize == _U32_MAX or csize == _U32_MAX:
            # The local ZIP64 sizes count only when the header holds the marker (APPNOTE 4.5.3).
            # Otherwise the field may hold anything: miniz, hence torch, puts the header offset
            # there past 4 GiB. It is then ignored, as sentinel-driven readers ignore it.
            if usize != csize:
                # APPNOTE 4.5.3: a local ZIP64 field holds both sizes. With one marker, unzip takes the
                # other size from the header, nnseal (and zipfile's writer) from the field.
                raise HostileArchive(f"{where}: local header marks only one size as ZIP64 "
                                     "(readers would disagree on the other)")
            blob = extra.get(EXTRA_ZIP64, b"")
            if len(blob) < 16:
                raise HostileArchive(f"{where}: local header lacks the ZIP64 sizes it refers to")
            local_sizes = list(struct.unpack_from("<QQ", blob))
        deferred = bool(flags & FLAG_DATA_DESCRIPTOR)
        for local, central in zip(local_sizes, [raw.size, raw.compressed_size], strict=True):
            # With a data descriptor the local header may leave sizes and CRC as zero.
            if local != central and not (deferred and local == 0):
                raise HostileArchive(f"{where}: local header sizes differ from the central directory")
        if crc != raw.crc32 and not (deferred and crc == 0):
            raise HostileArchive(f"{where}: local header CRC differs from the central directory")

    def data_descriptor_length(self, pos: int, entry: _Raw, where: _Where) -> int:
        """Length of the descriptor after the data: with or without signature, 4- or 8-byte sizes."""
        window = self.read_at(pos, min(24, max(0, self.file_size - pos)), where, ": data descriptor")
        shapes = _DESCRIPTOR_SHAPES_SIGNED if window[:4] == _SIG_DESCRIPTOR_BYTES else _DESCRIPTOR_SHAPES
        expected = (entry.crc32, entry.compressed_size, entry.size)
        for skip, layout, length in shapes:
            if len(window) >= length and layout.unpack_from(window, skip) == expected:
                return length
        raise HostileArchive(f"{where}: data descriptor disagrees with the central directory")

    def check_layout(self, raws: list[_Raw], cd_offset: int) -> None:
        """Entries must tile the file from 0 to the central directory: no overlap, no hidden bytes."""
        position, previous = 0, None
        for raw in sorted(raws, key=_layout_order):
            if raw.header_offset < position:
                raise HostileArchive(f"entries {show(previous)} and {show(raw.name)} overlap "
                                     "(zip bomb or ambiguous archive)")
            if raw.header_offset > position:
                after = f"after entry {show(previous)}" if previous is not None else "before the first entry"
                raise HostileArchive(f"{raw.header_offset - position} unaccounted bytes {after} (hidden data)")
            position, previous = raw.end, raw.name
        if position > cd_offset:
            raise HostileArchive(f"entry {show(previous)} overlaps the central directory")
        if position < cd_offset:
            after = f"after entry {show(previous)}" if previous is not None else "before the central directory"
            raise HostileArchive(f"{cd_offset - position} unaccounted bytes {after} (hidden data)")


def _layout_order(raw: _Raw) -> tuple[int, int]:
    return raw.header_offset, raw.end
