"""Hostile zip archives, built byte by byte in code: one generator per attack.

Every generator is ``make_<attack>(path, entries) -> path``: it writes a zip holding
``entries`` (name, content) plus the attack, so a test can take the entries of a real
signed package and produce its hostile twin. Attacks on an existing entry hit the
"victim", the first of ``entries`` (a placeholder when there are none). The honest
part is written by ``write_honest_zip`` with the same builder, so a test can show the
builder alone yields an archive that opens and that the refusal is the attack's doing.

Names that try to escape point at ``CANARY_NAME`` one level above the destination, which
is where the ``canary`` fixture (tmp_path / CANARY_NAME) sits when a test extracts into
tmp_path / "something".
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

CANARY_NAME = "CANARY_PAYLOAD_RAN"
PAYLOAD = b"payload: this file must never be written\n"
DOS_DATE_1980_01_01 = (0 << 9) | (1 << 5) | 1
S_IFREG_0644 = 0o100644
S_IFLNK_0777 = 0o120777
_PLACEHOLDER = ("model/plans.json", b'{"placeholder": true}\n')


@dataclass(frozen=True)
class RawEntry:
    """Every field of one entry, free to be made inconsistent."""

    name: bytes  # as the central directory names it
    stored: bytes  # the bytes after the local header (compressed when method is 8)
    size: int  # declared uncompressed size (central and local)
    crc: int
    method: int = 0
    flags: int = 0
    create_system: int = 3
    external_attr: int = S_IFREG_0644 << 16
    local_name: bytes | None = None  # None: the central name
    alias_of: int | None = None  # central entry pointing at another entry's local header; no local data
    local_fields: tuple[int, int, int] | None = None  # (crc, compressed size, size) in the local header
    local_extra: bytes = b""
    central_extra: bytes = b""
    trailer: bytes = b""  # after the data: a data descriptor, or hidden bytes


def raw_entry(name: str | bytes, content: bytes, *, compress: bool = False, level: int = 6) -> RawEntry:
    """An honest entry: the sizes and CRC match the content."""
    name_bytes = name.encode("utf-8") if isinstance(name, str) else name
    flags = 0x800 if not name_bytes.isascii() else 0
    if compress:
        packer = zlib.compressobj(level, zlib.DEFLATED, -15)
        stored = packer.compress(content) + packer.flush()
        return RawEntry(name_bytes, stored, len(content), zlib.crc32(content), method=8, flags=flags)
    return RawEntry(name_bytes, content, len(content), zlib.crc32(content), flags=flags)


def default_compress(name: str) -> bool:
    """Like nnseal packages: JSON deflated, everything else stored."""
    return name.endswith(".json")


def honest_entries(entries: list[tuple[str, bytes]]) -> list[RawEntry]:
    return [raw_entry(name, content, compress=default_compress(name)) for name, content in entries]


def write_raw_zip(path: Path, raws: list[RawEntry]) -> Path:
    """Write local headers + data, the central directory and the end record exactly as ``raws`` say."""
    out = bytearray()
    offsets: list[int] = []
    for raw in raws:
        if raw.alias_of is not None:
            offsets.append(-1)
            continue
        offsets.append(len(out))
        local_name = raw.name if raw.local_name is None else raw.local_name
        crc, csize, size = raw.local_fields or (raw.crc, len(raw.stored), raw.size)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, raw.flags, raw.method, 0, DOS_DATE_1980_01_01,
                           crc, csize, size, len(local_name), len(raw.local_extra))
        out += local_name + raw.local_extra + raw.stored + raw.trailer
    cd_offset = len(out)
    for index, raw in enumerate(raws):
        root = index
        while raws[root].alias_of is not None and raws[root].alias_of != root:  # an alias of an alias
            root = raws[root].alias_of
        target, offset = raws[root], offsets[root]
        out += struct.pack("<IBBHHHHHIIIHHHHHII", 0x02014B50, 20, raw.create_system, 20, raw.flags, raw.method,
                           0, DOS_DATE_1980_01_01, target.crc, len(target.stored), target.size, len(raw.name),
                           len(raw.central_extra), 0, 0, 0, raw.external_attr, offset)
        out += raw.name + raw.central_extra
    cd_size = len(out) - cd_offset
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(raws), len(raws), cd_size, cd_offset, 0)
    path.write_bytes(bytes(out))
    return path


def write_honest_zip(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """The same archive as every generator, minus the attack."""
    return write_raw_zip(path, honest_entries(entries))


def _victim(entries: list[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], tuple[str, bytes]]:
    entries = list(entries) or [_PLACEHOLDER]
    return entries, entries[0]


def _with_extra(path: Path, entries: list[tuple[str, bytes]], *extra: RawEntry) -> Path:
    return write_raw_zip(path, honest_entries(entries) + list(extra))


def _with_victim_changed(path: Path, entries: list[tuple[str, bytes]], **changes) -> Path:
    entries, _ = _victim(entries)
    raws = honest_entries(entries)
    raws[0] = replace(raws[0], **changes)
    return write_raw_zip(path, raws)


# --- names ---------------------------------------------------------------------------


def make_dotdot_name(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """Adds '../CANARY_PAYLOAD_RAN': extracted naively it lands beside the destination folder."""
    return _with_extra(path, entries, raw_entry(f"../{CANARY_NAME}", PAYLOAD))


def make_absolute_name(path: Path, entries: list[tuple[str, bytes]], *, target: str = f"/tmp/{CANARY_NAME}") -> Path:
    """Adds an entry with an absolute name (default /tmp/CANARY_PAYLOAD_RAN; pass the canary's path)."""
    return _with_extra(path, entries, raw_entry(target, PAYLOAD))


def make_backslash_name(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """Adds '..\\CANARY_PAYLOAD_RAN': a traversal on Windows, an odd file name on POSIX."""
    return _with_extra(path, entries, raw_entry(f"..\\{CANARY_NAME}", PAYLOAD))


def make_drive_letter_name(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """Adds 'C:/CANARY_PAYLOAD_RAN': an absolute path on Windows."""
    return _with_extra(path, entries, raw_entry(f"C:/{CANARY_NAME}", PAYLOAD))


def make_control_char_name(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """Adds a name holding a newline and a NUL: forges log lines, truncates C strings."""
    return _with_extra(path, entries, raw_entry("model/evil\n\x00.json", PAYLOAD))


def make_duplicate_name(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """The victim's name twice, the hostile copy FIRST (readers keeping the first entry take it)."""
    entries, (name, _) = _victim(entries)
    return write_raw_zip(path, [raw_entry(name, PAYLOAD)] + honest_entries(entries))


def make_duplicate_name_last(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """The victim's name twice, the hostile copy LAST (zipfile and most extractors take it)."""
    entries, (name, _) = _victim(entries)
    return write_raw_zip(path, honest_entries(entries) + [raw_entry(name, PAYLOAD)])


def make_case_duplicate_name(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """The victim's name again with its case swapped: a different file on Linux, the same on macOS/Windows."""
    entries, (name, _) = _victim(entries)
    twin = name.swapcase()
    assert twin != name, "the victim's name needs a letter"
    return _with_extra(path, entries, raw_entry(twin, PAYLOAD))


def make_local_central_name_mismatch(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """The victim's local header names '../CANARY_PAYLOAD_RAN' while the central directory keeps its name:
    a streaming extractor (reading local headers) writes elsewhere than a verifier (reading the directory) checks."""
    return _with_victim_changed(path, entries, local_name=f"../{CANARY_NAME}".encode())


def make_unicode_path_extra(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """Adds an entry whose Info-ZIP Unicode Path extra field gives a second name, '../CANARY_PAYLOAD_RAN'.

    Built with zipfile (which writes ZipInfo.extra as given) because the raw builder writes no extras.
    """
    import zipfile

    write_honest_zip(path, entries)
    second = f"../{CANARY_NAME}".encode()
    benign = b"model/notes.txt"
    field = struct.pack("<BI", 1, zlib.crc32(benign)) + second
    info = zipfile.ZipInfo(benign.decode(), date_time=(1980, 1, 1, 0, 0, 0))
    info.extra = struct.pack("<HH", 0x7075, len(field)) + field
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(info, PAYLOAD)
    return path


# --- file types ------------------------------------------------------------------------


def make_symlink_entry(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """Adds 'escape' -> '..' as a Unix symlink entry, then 'escape/CANARY_PAYLOAD_RAN' written through it."""
    link = replace(raw_entry("escape", b".."), external_attr=S_IFLNK_0777 << 16)
    return _with_extra(path, entries, link, raw_entry(f"escape/{CANARY_NAME}", PAYLOAD))


# --- flags and methods -------------------------------------------------------------------


def make_encrypted_entry(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """Sets flag bit 0x1 (traditional encryption) on the victim; its bytes stay as they were."""
    return _with_victim_changed(path, entries, flags=0x1)


def make_flag_0x20(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """Sets flag bit 0x20 (compressed patched data) on the victim: the bytes mean something else to PKZIP."""
    return _with_victim_changed(path, entries, flags=0x20)


def make_flag_0x40(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """Sets flag bit 0x40 (strong encryption) on the victim."""
    return _with_victim_changed(path, entries, flags=0x40)


def make_unsupported_method(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """Marks the victim as bzip2 (method 12) while its bytes stay stored: readers disagree on its content."""
    entries, (name, content) = _victim(entries)
    raws = honest_entries(entries)
    raws[0] = replace(raw_entry(name, content), method=12)
    return write_raw_zip(path, raws)


# --- sizes and checksums --------------------------------------------------------------------


def make_crc_mismatch(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """Flips the victim's CRC-32 in both headers, as if one byte of its data had changed in transit."""
    entries, (name, content) = _victim(entries)
    return _with_victim_changed(path, entries, crc=zlib.crc32(content) ^ 0x1)


def make_lying_size_field(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """The victim, deflated, declares half its real size in both headers: a reader trusting the
    field stops early (and hashes less than it extracts), one trusting the stream writes more."""
    entries, (name, content) = _victim(entries)
    if len(content) < 2:
        content = PAYLOAD
        entries = [(name, content)] + entries[1:]
    raws = honest_entries(entries)
    honest = raw_entry(name, content, compress=True)
    raws[0] = replace(honest, size=len(content) // 2)
    return write_raw_zip(path, raws)


def make_deflate_bomb_ratio(path: Path, entries: list[tuple[str, bytes]], *, size: int = 8 << 20) -> Path:
    """Adds 'bomb.bin': ``size`` zero bytes deflated at level 9, about 1030:1, with honest headers."""
    return _with_extra(path, entries, raw_entry("bomb.bin", bytes(size), compress=True, level=9))


def make_deflate_bomb_total(path: Path, entries: list[tuple[str, bytes]], *, count: int = 64,
                            size: int = 64 << 10) -> Path:
    """Adds ``count`` honest deflated entries of ``size`` zero bytes: each harmless, together over a
    small ``Limits.max_total_size`` (4 MiB by default here)."""
    bombs = [raw_entry(f"bomb/{i:04d}.bin", bytes(size), compress=True) for i in range(count)]
    return _with_extra(path, entries, *bombs)


# --- layout ----------------------------------------------------------------------------------


def make_overlapping_entries(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """Adds a second central entry, 'alias.bin', pointing at the victim's local header and data: the
    same bytes counted twice (the trick behind non-recursive zip bombs)."""
    entries, _ = _victim(entries)
    raws = honest_entries(entries)
    alias = replace(raws[0], name=b"alias.bin", alias_of=0)
    return write_raw_zip(path, raws + [alias])


def make_prepended_data(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """Puts a pickle-like blob before the first entry, offsets unchanged: zipfile shifts every offset
    and reads it anyway; a polyglot file that is also something else."""
    write_honest_zip(path, entries)
    path.write_bytes(b"\x80\x04hidden prefix\x2e" + path.read_bytes())
    return path


def make_truncated_zip(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """The honest archive cut in half, as an interrupted download leaves it: no end record."""
    write_honest_zip(path, entries)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_empty_file(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """Zero bytes."""
    path.write_bytes(b"")
    return path


def make_not_a_zip(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """The entries' contents concatenated with a text header: a file that merely has a .zip name."""
    path.write_bytes(b"this is not a zip archive\n" + b"".join(content for _, content in entries))
    return path


# --- more than one reading: what a reader that searches backwards finds -------------------
#
# miniz (torch's reader), zipfile and unzip all look for the end record from the end of the file
# and take the last signature they find; nnseal took the record whose comment reaches the end of
# the file. An archive hidden in the comment, behind a byte of padding, is what the others open.


def relocate_zip(data: bytes, base: int) -> bytes:
    """The archive ``data`` (no comment) with every offset shifted by ``base``: as it reads when it
    starts ``base`` bytes into a file. Handles torch.save's ZIP64 end records; entries below 4 GiB."""
    out = bytearray(data)
    eocd = len(out) - 22
    assert out[eocd:eocd + 4] == b"PK\x05\x06" and out[-2:] == b"\0\0", "needs an archive without comment"
    count, cd_size, cd_offset = struct.unpack_from("<HII", out, eocd + 10)
    locator = eocd - 20
    if locator >= 0 and out[locator:locator + 4] == b"PK\x06\x07":
        (z_offset,) = struct.unpack_from("<Q", out, locator + 8)
        struct.pack_into("<Q", out, locator + 8, z_offset + base)
        count, cd_size, cd_offset = struct.unpack_from("<QQQ", out, z_offset + 32)
        struct.pack_into("<Q", out, z_offset + 48, cd_offset + base)
    if struct.unpack_from("<I", out, eocd + 16)[0] != 0xFFFFFFFF:
        struct.pack_into("<I", out, eocd + 16, cd_offset + base)
    pos = cd_offset
    for _ in range(count):
        assert out[pos:pos + 4] == b"PK\x01\x02"
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", out, pos + 28)
        (offset,) = struct.unpack_from("<I", out, pos + 42)
        assert offset != 0xFFFFFFFF, "ZIP64 header offsets are not relocated"
        struct.pack_into("<I", out, pos + 42, offset + base)
        pos += 46 + name_len + extra_len + comment_len
    return bytes(out)


def with_comment(archive: bytes, comment: bytes) -> bytes:
    """``archive`` (which has no comment) with ``comment`` as its end record's comment."""
    assert archive[-22:-18] == b"PK\x05\x06" and archive[-2:] == b"\0\0"
    return archive[:-2] + struct.pack("<H", len(comment)) + comment


def hide_archive_in_comment(outer: bytes, hidden: bytes, padding: bytes = b"\0") -> bytes:
    """``outer`` whose comment holds ``hidden`` (offsets made absolute) plus ``padding``: the padding keeps
    the hidden end record's comment (empty) from reaching the end of the file, so a reader that wants the
    end record whose comment ends the file finds the outer one, and a backwards search finds the hidden one."""
    return with_comment(outer, relocate_zip(hidden, len(outer)) + padding)


def hidden_entries(entries: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """What the hidden archive holds (a comment holds at most 64 KiB): the victim's name, holding PAYLOAD."""
    _, (name, _) = _victim(entries)
    return [(name, PAYLOAD)]


def make_hidden_archive_in_comment(path: Path, entries: list[tuple[str, bytes]], *,
                                   outer: bytes | None = None) -> Path:
    """The entries (or the archive ``outer``, e.g. a signed package), with a second complete archive plus one
    byte of padding in the end record's comment; zipfile, torch and unzip read the second one, whose only
    entry is the victim's name holding PAYLOAD."""
    if outer is None:
        outer = write_honest_zip(path, entries).read_bytes()
    hidden = write_honest_zip(path, hidden_entries(entries)).read_bytes()
    path.write_bytes(hide_archive_in_comment(outer, hidden))
    return path


def make_signature_in_comment(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """The honest archive whose comment is only an end-record signature plus 18 zero bytes: readers that take
    the last signature see a second, empty archive; nnseal's old rule (comment reaches the end) saw one."""
    data = write_honest_zip(path, entries).read_bytes()
    path.write_bytes(with_comment(data, b"PK\x05\x06" + bytes(18)))
    return path


def make_archive_comment(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """The honest archive with a harmless text comment: no second reading, but bytes outside every entry
    that neither torch.save nor nnseal writes."""
    data = write_honest_zip(path, entries).read_bytes()
    path.write_bytes(with_comment(data, b"made by hand"))
    return path


def make_appended_data(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """One byte after the end record: miniz and zipfile open it anyway, each by its own search."""
    data = write_honest_zip(path, entries).read_bytes()
    path.write_bytes(data + b"\0")
    return path


def make_version_needed_63(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """The victim 'needs' zip 6.3 in both headers: unzip skips it (exit 81) while zipfile extracts it."""
    entries, _ = _victim(entries)
    data = bytearray(write_honest_zip(path, entries).read_bytes())
    struct.pack_into("<H", data, 4, 63)  # the victim's local header is first
    (central,) = struct.unpack_from("<I", data, len(data) - 6)  # the end record's directory offset
    struct.pack_into("<H", data, central + 6, 63)
    path.write_bytes(bytes(data))
    return path


# Attacks on the archive's single reading (issue 11); name -> generator, like ATTACKS.
AMBIGUITY_ATTACKS = {fn.__name__[len("make_"):]: fn for fn in (
    make_hidden_archive_in_comment, make_signature_in_comment, make_archive_comment, make_appended_data,
    make_version_needed_63, make_prepended_data,
)}


class WriteOnlyStream:
    """Write-only output (a pipe, a socket): zipfile then writes data descriptors after each entry."""

    def __init__(self):
        self.buffer = io.BytesIO()

    def write(self, data):
        return self.buffer.write(data)

    def flush(self):
        pass


# name -> generator, for parametrized tests.
ATTACKS = {fn.__name__[len("make_"):]: fn for fn in (
    make_dotdot_name, make_absolute_name, make_backslash_name, make_drive_letter_name, make_control_char_name,
    make_duplicate_name, make_duplicate_name_last, make_case_duplicate_name, make_local_central_name_mismatch,
    make_unicode_path_extra, make_symlink_entry, make_encrypted_entry, make_flag_0x20, make_flag_0x40,
    make_unsupported_method, make_crc_mismatch, make_lying_size_field, make_deflate_bomb_ratio,
    make_deflate_bomb_total, make_overlapping_entries, make_prepended_data, make_truncated_zip,
    make_empty_file, make_not_a_zip,
)}
