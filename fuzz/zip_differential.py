"""Differential check of nnseal's zip reader against the readers that open what it passes.

Whatever nnseal accepts, Python's zipfile (hence nnU-Net's installer), torch's own reader
(``torch._C.PyTorchFileReader``, miniz) and Info-ZIP ``unzip`` must read as the same entries
with the same bytes; where any of them reads something else, or fails, nnseal must have
refused. ``disagreements(path)`` returns what differs (empty when nnseal refuses or all
agree). ``mutate`` turns a real archive into a structurally plausible hostile one: it edits
a parsed model of the archive (comments, end records, ZIP64 fields, offsets, extra fields,
names, flags, data descriptors, bytes before, between and after) and writes it back, with
offsets either fixed up (a consistent archive) or left to lie.

Used by tests/test_zip_differential.py (short, derandomized) and fuzz/fuzz_zip_differential.py
(long). torch is imported only when a torch reading is asked for.
"""

from __future__ import annotations

import random
import struct
import subprocess
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

UNZIP = "/usr/bin/unzip"  # Debian's Info-ZIP unzip 6.0

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IBBHHHHHIIIHHHHHII")
SIGNATURES = [b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07", b"PK\x01\x02", b"PK\x03\x04", b"PK\x07\x08"]
BOUNDARY = [0, 1, 2, 0x14, 0x2D, 0x2E, 0x3F, 0x7F, 0x800, 0x808, 0xFFFF, 0xFFFFFFFF]
# (offset, width) of every field after the signature, for each record kind
CENTRAL_FIELDS = [(4, 1), (5, 1), (6, 2), (8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (30, 2), (34, 2), (36, 2),
                  (38, 4), (42, 4)]
LOCAL_FIELDS = [(4, 2), (6, 2), (8, 2), (14, 4), (18, 4), (22, 4)]
EOCD_FIELDS = [(4, 2), (6, 2), (8, 2), (10, 2), (12, 4), (16, 4)]
EOCD64_FIELDS = [(4, 8), (12, 2), (14, 2), (16, 4), (20, 4), (24, 8), (32, 8), (40, 8), (48, 8)]
LOCATOR_FIELDS = [(4, 4), (8, 8), (16, 4)]


# --- reading ---------------------------------------------------------------------------------


def read_nnseal(path: Path) -> dict[str, bytes] | None:
    """Entry name -> bytes as nnseal reads them, or None when nnseal refuses the archive."""
    from nnseal.errors import NnsealError
    from nnseal.readers.zip_archive import open_zip

    try:
        with open_zip(path) as archive:
            return {entry.name: archive.read(entry, max_size=1 << 30) for entry in archive.entries
                    if not entry.is_dir}
    except NnsealError:
        return None


def read_zipfile(path: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.filename in out:
                raise ValueError(f"zipfile: {info.filename!r} twice")
            out[info.filename] = archive.read(info)
    return out


def read_unzip(path: Path) -> tuple[list[str], bytes]:
    """(file names in directory order, every file's bytes concatenated in that order), by Info-ZIP unzip."""
    listing = subprocess.run([UNZIP, "-Z1", str(path)], capture_output=True, timeout=60)
    if listing.returncode != 0:
        raise ValueError(f"unzip -Z1 exit {listing.returncode}: {listing.stderr[-200:]!r}")
    names = [n for n in listing.stdout.decode("utf-8", "replace").splitlines() if not n.endswith("/")]
    extracted = subprocess.run([UNZIP, "-p", str(path)], capture_output=True, timeout=60)
    if extracted.returncode != 0 or extracted.stderr.strip():
        raise ValueError(f"unzip -p exit {extracted.returncode}: {extracted.stderr[-200:]!r}")
    return names, extracted.stdout


def read_torch(path: Path) -> dict[str, bytes]:
    """Record name (with torch's archive prefix) -> bytes, as torch.load's reader sees them."""
    import torch

    reader = torch._C.PyTorchFileReader(str(path))
    records = reader.get_all_records()
    # torch takes the archive prefix from the first entry; recover it from any record's header offset.
    return {name: bytes(reader.get_record(name)) for name in records}


def torch_shaped(entries: dict[str, bytes]) -> str | None:
    """The archive prefix if the entries are laid out as torch.save writes them (so torch must open them)."""
    prefixes = {name.split("/", 1)[0] for name in entries}
    if len(prefixes) != 1 or any("/" not in name for name in entries):
        return None
    prefix = prefixes.pop()
    return prefix if f"{prefix}/data.pkl" in entries and f"{prefix}/version" in entries else None


def disagreements(path: Path, *, with_torch: bool = True) -> list[str]:
    """What the real readers see differently from nnseal; [] when nnseal refuses or all agree."""
    ours = read_nnseal(path)
    if ours is None:
        return []
    problems = []
    try:
        theirs = read_zipfile(path)
        if theirs != ours:
            problems.append(f"zipfile reads {sorted(theirs)[:4]} where nnseal reads {sorted(ours)[:4]}"
                            if set(theirs) != set(ours) else "zipfile reads other bytes")
    except Exception as err:  # any failure of a reader nnseal agreed with is a disagreement
        problems.append(f"zipfile fails: {err!r:.200}")
    try:
        names, data = read_unzip(path)
        if names != list(ours) or data != b"".join(ours.values()):
            problems.append(f"unzip reads {names[:4]} ({len(data)} bytes) where nnseal reads "
                            f"{list(ours)[:4]} ({sum(map(len, ours.values()))} bytes)")
    except Exception as err:
        problems.append(f"unzip fails: {err!r:.200}")
    if with_torch:
        prefix = torch_shaped(ours)
        try:
            records = read_torch(path)
        except Exception as err:
            if prefix is not None:
                problems.append(f"torch fails on a torch-shaped archive: {str(err)[:200]!r}")
        else:
            mapped = {f"{prefix}/{name}": data for name, data in records.items()} if prefix else None
            if mapped != ours:
                problems.append(f"torch reads records {sorted(records)[:4]} where nnseal reads {sorted(ours)[:4]}")
    return problems


# --- a parsed model of an archive, to mutate and write back ----------------------------------------


@dataclass
class LocalPart:
    fixed: bytearray
    name: bytes
    extra: bytes
    body: bytes  # data, then the data descriptor if any
    gap_before: bytes = b""


@dataclass
class CentralPart:
    fixed: bytearray
    name: bytes
    extra: bytes
    comment: bytes
    local: int  # index into locals


@dataclass
class Model:
    locals: list[LocalPart]
    centrals: list[CentralPart]
    zip64: bool
    eocd64: bytearray = field(default_factory=lambda: bytearray(56))
    locator: bytearray = field(default_factory=lambda: bytearray(20))
    eocd: bytearray = field(default_factory=lambda: bytearray(22))
    comment: bytes = b""
    prefix: bytes = b""
    before_cd: bytes = b""
    eocd64_extension: bytes = b""
    suffix: bytes = b""


def parse(data: bytes) -> Model:
    """Parse a well-formed archive (a seed) into its parts."""
    eocd = data.rindex(b"PK\x05\x06")
    count, cd_size, cd_offset = struct.unpack_from("<HII", data, eocd + 10)
    zip64 = data[eocd - 20:eocd - 16] == b"PK\x06\x07"
    model = Model([], [], zip64, eocd=bytearray(data[eocd:eocd + 22]), comment=data[eocd + 22:])
    if zip64:
        (z_offset,) = struct.unpack_from("<Q", data, eocd - 12)
        model.eocd64 = bytearray(data[z_offset:z_offset + 56])
        model.locator = bytearray(data[eocd - 20:eocd])
        count, cd_size, cd_offset = struct.unpack_from("<QQQ", data, z_offset + 32)
    pos, offsets = cd_offset, []
    for _ in range(count):
        fixed = bytearray(data[pos:pos + 46])
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", fixed, 28)
        name = data[pos + 46:pos + 46 + name_len]
        extra = data[pos + 46 + name_len:pos + 46 + name_len + extra_len]
        comment = data[pos + 46 + name_len + extra_len:pos + 46 + name_len + extra_len + comment_len]
        offsets.append(struct.unpack_from("<I", fixed, 42)[0])
        model.centrals.append(CentralPart(fixed, name, extra, comment, -1))
        pos += 46 + name_len + extra_len + comment_len
    starts = sorted(set(offsets))
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else cd_offset
        fixed = bytearray(data[start:start + 30])
        name_len, extra_len = struct.unpack_from("<HH", fixed, 26)
        model.locals.append(LocalPart(fixed, data[start + 30:start + 30 + name_len],
                                      data[start + 30 + name_len:start + 30 + name_len + extra_len],
                                      data[start + 30 + name_len + extra_len:end]))
    for central, offset in zip(model.centrals, offsets, strict=True):
        central.local = starts.index(offset)
    return model


def write(model: Model, fields: list[tuple[int, int]] | None = None) -> bytes:
    """Serialize, fixing every length and offset so they describe the parts as they now are; append the
    (offset, width) of every header field written to ``fields``."""
    fields = [] if fields is None else fields
    out = bytearray(model.prefix)
    positions = []
    for part in model.locals:
        out += part.gap_before
        positions.append(len(out))
        fields += [(len(out) + o, w) for o, w in LOCAL_FIELDS]
        struct.pack_into("<HH", part.fixed, 26, len(part.name), len(part.extra))
        out += part.fixed + part.name + part.extra + part.body
    out += model.before_cd
    cd_offset = len(out)
    for central in model.centrals:
        struct.pack_into("<HHH", central.fixed, 28, len(central.name), len(central.extra), len(central.comment))
        if struct.unpack_from("<I", central.fixed, 42)[0] != 0xFFFFFFFF and central.local >= 0:
            struct.pack_into("<I", central.fixed, 42, positions[central.local])
        fields += [(len(out) + o, w) for o, w in CENTRAL_FIELDS]
        out += central.fixed + central.name + central.extra + central.comment
    cd_size = len(out) - cd_offset
    if model.zip64:
        z_offset = len(out)
        struct.pack_into("<Q", model.eocd64, 4, 44 + len(model.eocd64_extension))
        struct.pack_into("<QQQQ", model.eocd64, 24, len(model.centrals), len(model.centrals), cd_size, cd_offset)
        fields += [(len(out) + o, w) for o, w in EOCD64_FIELDS]
        out += model.eocd64 + model.eocd64_extension
        struct.pack_into("<Q", model.locator, 8, z_offset)
        fields += [(len(out) + o, w) for o, w in LOCATOR_FIELDS]
        out += model.locator
    count = min(len(model.centrals), 0xFFFF)
    struct.pack_into("<HHII", model.eocd, 8, count, count, min(cd_size, 0xFFFFFFFF), min(cd_offset, 0xFFFFFFFF))
    struct.pack_into("<H", model.eocd, 20, len(model.comment))
    fields += [(len(out) + o, w) for o, w in EOCD_FIELDS + [(20, 2)]]
    out += model.eocd + model.comment + model.suffix
    return bytes(out)


def _blob(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
    if kind == 1:
        return rng.choice(SIGNATURES) + bytes(rng.randrange(0, 30))
    if kind == 2:
        return b"made by hand"
    return bytes([rng.randrange(256)])


def _extra_field(rng: random.Random, existing: bytes) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:  # ZIP64 with arbitrary values
        values = b"".join(struct.pack("<Q", rng.choice([0, 1, 41, 1 << 32, (1 << 64) - 1]))
                          for _ in range(rng.randrange(0, 4)))
        return struct.pack("<HH", 1, len(values)) + values
    if kind == 1:  # Info-ZIP Unicode Path: a second name
        body = b"\x01" + bytes(4) + b"other/name.json"
        return struct.pack("<HH", 0x7075, len(body)) + body
    if kind == 2 and len(existing) >= 4:  # the same id again
        (field_id,) = struct.unpack_from("<H", existing)
        return struct.pack("<HH", field_id, 4) + bytes(4)
    if kind == 3:  # extended timestamp: harmless
        return struct.pack("<HHBI", 0x5455, 5, 1, 0)
    return bytes(rng.randrange(1, 4))  # a malformed tail


def mutate(seed: bytes, rng: random.Random, *, hidden: bytes | None = None) -> bytes:
    """1-3 structural edits of ``seed`` (fixed up on writing), then maybe a few lying field edits."""
    model = parse(seed)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(12)
        central = rng.choice(model.centrals) if model.centrals else None
        local = rng.choice(model.locals) if model.locals else None
        if op == 0:
            model.comment = _blob(rng) * rng.randrange(1, 3)
        elif op == 1 and hidden is not None:  # the hidden-archive trick, with or without padding
            model.comment = b""
            return _with_hidden(write(model), hidden, rng)
        elif op == 2:
            model.suffix = _blob(rng)
        elif op == 3:
            model.prefix = _blob(rng)
        elif op == 4 and local is not None:
            local.gap_before = _blob(rng)
        elif op == 5:
            model.before_cd = _blob(rng)
        elif op == 6 and central is not None:  # consistent rename, or central only
            i = rng.randrange(len(central.name)) if central.name else 0
            new = bytearray(central.name)
            if new:
                new[i] = rng.choice(b"A/.\\:\x00\xc3\x80 az")
            central.name = bytes(new)
            if rng.random() < 0.7:
                model.locals[central.local].name = bytes(new)
        elif op == 7 and central is not None:
            central.extra += _extra_field(rng, central.extra)
        elif op == 8 and local is not None:
            local.extra += _extra_field(rng, local.extra)
        elif op == 9 and central is not None:
            central.comment = _blob(rng)
        elif op == 10 and model.zip64:
            model.eocd64_extension = _blob(rng)
        elif op == 11 and central is not None:  # flags: data descriptor, UTF-8, deflate options, others
            bit = rng.choice([0x1, 0x2, 0x8, 0x800, 0x20, 0x40, 0x1000])
            for fixed in (central.fixed, model.locals[central.local].fixed):
                struct.pack_into("<H", fixed, 8 if fixed is central.fixed else 6,
                                 struct.unpack_from("<H", fixed, 8 if fixed is central.fixed else 6)[0] ^ bit)
    positions: list[tuple[int, int]] = []
    data = bytearray(write(model, positions))
    if rng.random() < 0.5:
        for _ in range(rng.randrange(1, 3)):
            offset, width = rng.choice(positions)
            old = int.from_bytes(data[offset:offset + width], "little")
            value = rng.choice(BOUNDARY + [old + 1, old - 1, old + rng.randrange(-64, 64), 0])
            data[offset:offset + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
    return bytes(data)


def _with_hidden(outer: bytes, hidden: bytes, rng: random.Random) -> bytes:
    """``outer`` (no comment) with ``hidden`` in its comment, its offsets made absolute, maybe padded."""
    model = parse(hidden)
    model.prefix = b"\0" * len(outer)  # write() then counts offsets from the start of ``outer``
    comment = write(model)[len(outer):] + rng.choice([b"", b"\0", b"\0" * 3])
    if len(comment) > 0xFFFF:
        return outer
    return outer[:-2] + struct.pack("<H", len(comment)) + comment
