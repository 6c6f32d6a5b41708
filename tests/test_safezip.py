"""The hostile-zip-proof reader: every attack refused with a one-line reason, real archives read exactly."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import re
import struct
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path

import hostile_zips as hz
import pytest
from helpers import nnunet_export_zip, tree_listing

from nnseal.errors import EXIT_REFUSED, EnvironmentProblem, HostileArchive
from nnseal.readers.zip_archive import Limits, check_entry_name, open_zip

MODEL = "Dataset042_Toy/nnUNetTrainer__nnUNetPlans__2d"


def package_entries() -> list[tuple[str, bytes]]:
    """Entries shaped like an nnseal package: deflated JSON, stored weights, card at the root."""
    rng = random.Random(7)
    return [
        (f"{MODEL}/plans.json", json.dumps({"configurations": {"2d": {"batch_size": 2}}}).encode()),
        (f"{MODEL}/dataset.json", json.dumps({"labels": {"background": 0, "organ": 1}}).encode()),
        (f"{MODEL}/fold_0/checkpoint_final.safetensors", bytes(rng.getrandbits(8) for _ in range(3000))),
        ("nnseal-card.json", b'{"format": "nnseal/1"}'),
    ]


@contextlib.contextmanager
def refused(pattern: str):
    """Expect a HostileArchive whose reason (not its path, which holds the test's name) matches."""
    with pytest.raises(HostileArchive) as info:
        yield info
    assert re.search(pattern, info.value.reason), info.value.reason
    assert "\n" not in str(info.value)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def consume_everything(path: Path, limits: Limits) -> None:
    """What verify/install do: open, then stream every entry."""
    with open_zip(path, limits) as archive:
        sink = io.BytesIO()
        for entry in archive.entries:
            archive.copy_to(entry, sink)


# attack -> (refused when: "open" or "stream", words the message must hold, limits)
EXPECTED = {
    "dotdot_name": ("open", "'..' component", Limits()),
    "absolute_name": ("open", "absolute name", Limits()),
    "backslash_name": ("open", "backslash", Limits()),
    "drive_letter_name": ("open", "drive letter", Limits()),
    "control_char_name": ("open", "control or invisible character", Limits()),
    "duplicate_name": ("open", "duplicate entry name", Limits()),
    "duplicate_name_last": ("open", "duplicate entry name", Limits()),
    "case_duplicate_name": ("open", "case-insensitive", Limits()),
    "local_central_name_mismatch": ("open", "local and central names differ", Limits()),
    "unicode_path_extra": ("open", "second name", Limits()),
    "symlink_entry": ("open", "symlink entry", Limits()),
    "encrypted_entry": ("open", "encrypted entry", Limits()),
    "flag_0x20": ("open", "flag 0x20", Limits()),
    "flag_0x40": ("open", "flag 0x40", Limits()),
    "unsupported_method": ("open", "compression method 12", Limits()),
    "crc_mismatch": ("stream", "CRC mismatch", Limits()),
    "lying_size_field": ("stream", "lying size field", Limits()),
    "deflate_bomb_ratio": ("open", "deflate bomb", Limits()),
    "deflate_bomb_total": ("open", "in total", Limits(max_total_size=1 << 20)),
    "overlapping_entries": ("open", "overlap", Limits()),
    "prepended_data": ("open", "prepended", Limits()),
    "truncated_zip": ("open", "truncated or corrupt", Limits()),
    "empty_file": ("open", "empty file", Limits()),
    "not_a_zip": ("open", "not a zip archive", Limits()),
}


def test_every_generator_has_an_expectation():
    assert set(EXPECTED) == set(hz.ATTACKS)


def test_honest_twin_of_every_attack_opens(tmp_path):
    """The generators' builder alone makes a valid archive: each refusal below is the attack's doing."""
    entries = package_entries()
    path = hz.write_honest_zip(tmp_path / "honest.zip", entries)
    with open_zip(path, Limits(max_total_size=1 << 20)) as archive:
        assert archive.names() == [name for name, _ in entries]
        assert archive.sha256_all() == {name: hashlib.sha256(data).hexdigest() for name, data in entries}


@pytest.mark.parametrize("attack", sorted(EXPECTED))
def test_hostile_zip_is_refused(attack, tmp_path, canary):
    when, words, limits = EXPECTED[attack]
    work = tmp_path / "work"
    work.mkdir()
    path = hz.ATTACKS[attack](work / "hostile.zip", package_entries())
    before = tree_listing(tmp_path)
    fds = open_fds()

    if when == "stream":
        archive = open_zip(path, limits)  # headers are consistent: only the data gives it away
        with archive, pytest.raises(HostileArchive) as refused:
            archive.sha256_all()
    else:
        with pytest.raises(HostileArchive) as refused:
            open_zip(path, limits)
    # Whatever the entry point, consuming it fully refuses too.
    with pytest.raises(HostileArchive):
        consume_everything(path, limits)

    message = str(refused.value)
    assert words in refused.value.reason
    assert message.startswith(str(path))
    assert "\n" not in message and "\r" not in message
    assert refused.value.exit_code == EXIT_REFUSED
    assert not canary.exists()
    assert tree_listing(tmp_path) == before
    assert open_fds() == fds


def test_symlink_attack_names_the_link(tmp_path):
    path = hz.make_symlink_entry(tmp_path / "s.zip", package_entries())
    with refused("entry 'escape': symlink entry"):
        open_zip(path)


def test_crc_mismatch_names_the_entry(tmp_path):
    entries = package_entries()
    path = hz.make_crc_mismatch(tmp_path / "c.zip", entries)
    with open_zip(path) as archive:
        with refused(f"entry '{entries[0][0]}': CRC mismatch"):
            archive.read(entries[0][0])
        # The other entries are intact and still readable.
        assert archive.read(entries[1][0]) == entries[1][1]


def test_lying_size_never_yields_more_than_declared(tmp_path):
    entries = package_entries()
    path = hz.make_lying_size_field(tmp_path / "l.zip", entries)
    with open_zip(path) as archive:
        entry = archive.entry(entries[0][0])
        assert entry.size == len(entries[0][1]) // 2
        got = 0
        with refused("declared size"):
            for block in archive.stream(entry, chunk=16):
                got += len(block)
        assert got <= entry.size


def test_deflate_bomb_under_a_generous_ratio_never_inflates_in_memory(tmp_path):
    """With the ratio check relaxed, the declared size still bounds what streaming produces and holds."""
    import tracemalloc

    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    stored = b"".join(packer.compress(bytes(1 << 20)) for _ in range(64)) + packer.flush()  # 64 MiB of zeros
    bomb = hz.RawEntry(b"bomb.bin", stored, size=4096, crc=zlib.crc32(bytes(4096)), method=8)
    path = hz.write_raw_zip(tmp_path / "b.zip", [bomb])
    with open_zip(path, Limits(max_ratio=10**9)) as archive:
        produced = []
        tracemalloc.start()
        try:
            with refused("lying size field"):
                for block in archive.stream("bomb.bin"):
                    produced.append(len(block))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert sum(produced) <= 4096
        assert peak < 4 << 20  # chunks of 1 MiB at most, never the 64 MiB


# --- more hostile layouts, built inline -------------------------------------------------


def _one(tmp_path: Path, *raws: hz.RawEntry) -> Path:
    return hz.write_raw_zip(tmp_path / "x.zip", list(raws))


def test_stored_entry_with_sizes_that_disagree_is_refused(tmp_path):
    path = _one(tmp_path, replace(hz.raw_entry("w.bin", b"0123456789"), size=4))
    with refused("'w.bin': stored entry with compressed size 10 != size 4"):
        open_zip(path)


def test_deflate_stream_shorter_than_declared_size_is_refused(tmp_path):
    honest = hz.raw_entry("a.json", b"x" * 1000, compress=True)
    path = _one(tmp_path, replace(honest, size=2000))
    with open_zip(path) as archive, refused("declared size 2000 but holds 1000"):
        archive.read("a.json")


def test_truncated_deflate_stream_is_refused(tmp_path):
    content = random.Random(1).randbytes(5000)
    honest = hz.raw_entry("a.json", content, compress=True)
    path = _one(tmp_path, replace(honest, stored=honest.stored[:-10]))
    with open_zip(path) as archive, refused("deflate stream is truncated"):
        archive.read("a.json")


def test_bytes_after_the_deflate_stream_are_refused(tmp_path):
    honest = hz.raw_entry("a.json", b"x" * 1000, compress=True)
    path = _one(tmp_path, replace(honest, stored=honest.stored + b"hidden"))
    with open_zip(path) as archive, refused("continues after the end of its deflate"):
        archive.read("a.json")


def test_corrupt_deflate_data_is_refused(tmp_path):
    honest = hz.raw_entry("a.json", b"x", compress=False)
    path = _one(tmp_path, replace(honest, method=8, stored=b"\xff\xff\xff\xff", size=1))
    with open_zip(path) as archive, refused("corrupt deflate data"):
        archive.read("a.json")


def test_hidden_bytes_between_entries_are_refused(tmp_path):
    path = _one(tmp_path, hz.raw_entry("a.bin", b"aaaa"), hz.raw_entry("b.bin", b"bbbb"))
    data = bytearray(path.read_bytes())
    # Grow a.bin's data by 3 bytes that no header accounts for, shifting everything after it.
    first_end = 30 + len(b"a.bin") + 4
    shifted = bytes(data[:first_end]) + b"XYZ" + bytes(data[first_end:])
    fixed = bytearray(shifted)
    cd = fixed.find(b"PK\x01\x02")
    second_cd = fixed.find(b"PK\x01\x02", cd + 1)
    struct.pack_into("<I", fixed, second_cd + 42, struct.unpack_from("<I", fixed, second_cd + 42)[0] + 3)
    eocd = fixed.rfind(b"PK\x05\x06")
    struct.pack_into("<I", fixed, eocd + 16, struct.unpack_from("<I", fixed, eocd + 16)[0] + 3)
    path.write_bytes(bytes(fixed))
    with refused("3 unaccounted bytes after entry 'a.bin'"):
        open_zip(path)


def test_second_end_record_in_the_comment_is_refused(tmp_path):
    path = _one(tmp_path, hz.raw_entry("a.bin", b"aaaa"))
    data = path.read_bytes()
    fake = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0, 0, 0, 0, 0)
    comment = fake
    patched = data[:-2] + struct.pack("<H", len(comment)) + comment
    path.write_bytes(patched)
    with refused("more than one end-of-central-directory record"):
        open_zip(path)


def test_unicode_normalization_twins_are_refused(tmp_path):
    composed, decomposed = "model/caf\u00e9.json", "model/cafe\u0301.json"
    path = _one(tmp_path, hz.raw_entry(composed, b"1"), hz.raw_entry(decomposed, b"2"))
    with refused("case-insensitive or Unicode-normalizing"):
        open_zip(path)


@pytest.mark.parametrize("order", [("a", "a/b"), ("a/b", "a"), ("a", "a/"), ("a/", "a")])
def test_a_name_used_as_file_and_folder_is_refused(tmp_path, order):
    def entry(name: str) -> hz.RawEntry:
        if name.endswith("/"):
            return replace(hz.raw_entry(name, b""), external_attr=(0o40755 << 16) | 0x10)
        return hz.raw_entry(name, b"x")

    path = _one(tmp_path, *(entry(name) for name in order))
    with refused("also a file entry|also used as a folder"):
        open_zip(path)


def test_directory_entry_holding_data_is_refused(tmp_path):
    path = _one(tmp_path, replace(hz.raw_entry("d/", b"data"), external_attr=(0o40755 << 16) | 0x10))
    with refused("directory entry holds data"):
        open_zip(path)


def test_device_file_entry_is_refused(tmp_path):
    path = _one(tmp_path, replace(hz.raw_entry("dev", b""), external_attr=0o20644 << 16))
    with refused("not a regular file"):
        open_zip(path)


def test_non_ascii_name_without_utf8_flag_is_refused(tmp_path):
    path = _one(tmp_path, replace(hz.raw_entry("caf\u00e9.json", b"1"), flags=0))
    with refused("not marked as UTF-8"):
        open_zip(path)


def test_too_many_entries_is_refused(tmp_path):
    path = _one(tmp_path, *(hz.raw_entry(f"f{i}", b"") for i in range(5)))
    with refused("5 entries, more than the limit of 4"):
        open_zip(path, Limits(max_entries=4))


def test_entry_over_the_size_limit_is_refused(tmp_path):
    path = _one(tmp_path, hz.raw_entry("big.bin", bytes(2000)))
    with refused("'big.bin': 2000 bytes, more than the limit of 1000"):
        open_zip(path, Limits(max_entry_size=1000))


def test_read_refuses_an_entry_larger_than_asked(tmp_path):
    path = _one(tmp_path, hz.raw_entry("a.json", bytes(100)))
    with open_zip(path) as archive, refused("100 bytes, more than the 10"):
        archive.read("a.json", max_size=10)


def test_missing_and_foreign_entries(tmp_path):
    path = _one(tmp_path, hz.raw_entry("a.json", b"{}"))
    with open_zip(path) as archive:
        assert archive.get("nope") is None
        with refused("no entry 'nope'"):
            archive.entry("nope")
        forged = replace(archive.entry("a.json"), data_offset=0)
        with refused("does not belong to this archive"):
            archive.sha256(forged)


def test_missing_file_is_an_environment_problem(tmp_path):
    with pytest.raises(EnvironmentProblem) as err:
        open_zip(tmp_path / "absent.zip")
    assert err.value.exit_code == 3
    assert "absent.zip" in str(err.value)


def test_directory_path_is_an_environment_problem(tmp_path):
    with pytest.raises(EnvironmentProblem):
        open_zip(tmp_path)


# --- the name rules, as the manifest parser reuses them ----------------------------------


@pytest.mark.parametrize("name", [
    "plans.json", f"{MODEL}/fold_0/checkpoint_final.safetensors", "nnseal-card.json",
    "Dataset001_Caf\u00e9/x.json", ".hidden/file", "a..b/c",
])
def test_good_names_pass(name):
    check_entry_name(name)


@pytest.mark.parametrize("name, reason", [
    ("", "empty name"),
    ("../x", "'..' component"),
    ("a/../../x", "'..' component"),
    ("a/./b", "'.' component"),
    ("/etc/passwd", "absolute name"),
    ("//server/share/x", "absolute name"),
    ("a\\b", "backslash"),
    ("C:/x", "drive letter"),
    ("c:x", "drive letter"),
    ("a/b:stream", "':' in name"),
    ("a//b", "empty path component"),
    ("a/", "empty path component"),
    ("a\x00b", "control"),
    ("a\nb", "control"),
    ("evil\u202egnp.json", "invisible"),
    ("x" * 256, "component longer than 255"),
    ("/".join(["abc"] * 300), "longer than 1024 bytes"),
])
def test_bad_names_are_refused(name, reason):
    with pytest.raises(HostileArchive) as err:
        check_entry_name(name)
    assert reason in str(err.value)
    assert "\n" not in str(err.value)


# --- real archives ------------------------------------------------------------------------


def _assert_matches_zipfile(path: Path) -> None:
    """open_zip sees what zipfile sees, and hashes exactly the bytes zipfile extracts."""
    with zipfile.ZipFile(path) as reference, open_zip(path) as archive:
        infos = reference.infolist()
        assert [e.name for e in archive.entries] == [i.filename for i in infos]
        expected = {i.filename: hashlib.sha256(reference.read(i)).hexdigest() for i in infos if not i.is_dir()}
        assert archive.sha256_all() == expected
        assert archive.sha256_all(workers=1) == expected
        for info in infos:
            entry = archive.entry(info.filename)
            assert (entry.size, entry.crc32, entry.is_dir) == (info.file_size, info.CRC, info.is_dir())


def test_real_torch_checkpoint_opens_and_streams(tmp_path):
    import torch

    from nnseal.toy_model import ToySpec, checkpoint_dict

    path = tmp_path / "checkpoint_final.pth"
    torch.save(checkpoint_dict(ToySpec(), 0, seed=3), path)
    _assert_matches_zipfile(path)
    with open_zip(path) as archive:
        names = archive.names()
        assert "checkpoint_final/data.pkl" in names
        assert any(name.startswith("checkpoint_final/data/") for name in names)
        assert all(e.method == 0 for e in archive.entries)  # torch stores everything
        pickle_bytes = archive.read("checkpoint_final/data.pkl")
        assert pickle_bytes.startswith(b"\x80")  # a pickle protocol marker: read, never unpickled here


def test_torch_checkpoint_with_one_byte_changed_is_refused(tmp_path):
    import torch

    path = tmp_path / "ck.pth"
    torch.save({"w": torch.arange(4096, dtype=torch.float32)}, path)
    with open_zip(path) as archive:
        entry = next(e for e in archive.entries if e.name.endswith("data/0"))
    data = bytearray(path.read_bytes())
    data[entry.data_offset + 100] ^= 0xFF
    path.write_bytes(bytes(data))
    with open_zip(path) as archive, refused("data/0'.*CRC mismatch"):
        archive.sha256_all()


def test_zipfile_deflated_archive_with_directory_entries_opens(tmp_path):
    path = tmp_path / "nnunet_export.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        out.mkdir(MODEL)
        out.mkdir(f"{MODEL}/fold_0")
        out.writestr(f"{MODEL}/plans.json", json.dumps({"a": list(range(500))}))
        out.writestr(f"{MODEL}/fold_0/checkpoint_final.pth", random.Random(2).randbytes(20000))
        out.writestr(f"{MODEL}/fold_0/empty.txt", b"")
    _assert_matches_zipfile(path)
    with open_zip(path) as archive:
        assert [e.name for e in archive.entries if e.is_dir] == [f"{MODEL}/", f"{MODEL}/fold_0/"]
        assert archive.names() == [f"{MODEL}/plans.json", f"{MODEL}/fold_0/checkpoint_final.pth",
                                   f"{MODEL}/fold_0/empty.txt"]
        assert archive.read(f"{MODEL}/fold_0/empty.txt") == b""


@pytest.mark.parametrize("force_zip64", [False, True])
def test_streamed_zipfile_archive_with_data_descriptors_opens(tmp_path, force_zip64):
    pipe = hz.WriteOnlyStream()
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_DEFLATED) as out:
        for i, size in enumerate((0, 10, 70000)):
            with out.open(f"f{i}.bin", "w", force_zip64=force_zip64) as entry:
                entry.write(random.Random(i).randbytes(size))
    path = tmp_path / "streamed.zip"
    path.write_bytes(pipe.buffer.getvalue())
    with open_zip(path) as archive:
        assert all(e.size == len(archive.read(e)) for e in archive.entries)
    _assert_matches_zipfile(path)


def _zip64_archive(path: Path, monkeypatch) -> Path:
    # Lowering zipfile's threshold makes it write ZIP64 extras in the central directory and a
    # ZIP64 end record for tiny entries, the same layout as a > 4 GiB archive.
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 100)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        for i in range(4):
            out.writestr(f"w{i}.bin", random.Random(i).randbytes(300))
        out.writestr("small.json", b"{}")
    return path


def test_zip64_archive_opens(tmp_path, monkeypatch):
    path = _zip64_archive(tmp_path / "z64.zip", monkeypatch)
    data = path.read_bytes()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    _assert_matches_zipfile(path)


def test_zip64_end_record_with_marker_fields_opens(tmp_path, monkeypatch):
    path = _zip64_archive(tmp_path / "z64.zip", monkeypatch)
    data = bytearray(path.read_bytes())
    eocd = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HHII", data, eocd + 8, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    with open_zip(path) as archive:
        assert len(archive.names()) == 5


def test_zip64_end_records_that_disagree_are_refused(tmp_path, monkeypatch):
    path = _zip64_archive(tmp_path / "z64.zip", monkeypatch)
    data = bytearray(path.read_bytes())
    eocd = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, eocd + 8, 4, 4)  # says 4 entries, the ZIP64 record says 5
    path.write_bytes(bytes(data))
    with refused("disagree"):
        open_zip(path)


def _miniz_style(name: str, content: bytes, *, local_zip64: bytes) -> hz.RawEntry:
    """As torch's miniz writes entries: data-descriptor flag, zero sizes and CRC in the local header."""
    honest = hz.raw_entry(name, content)
    descriptor = struct.pack("<IIII", 0x08074B50, honest.crc, len(content), len(content))
    return replace(honest, flags=0x808, local_fields=(0, 0, 0), trailer=descriptor,
                   local_extra=struct.pack("<HH", 1, len(local_zip64)) + local_zip64 if local_zip64 else b"")


def test_miniz_local_zip64_field_holding_the_header_offset_is_accepted(tmp_path):
    """Past 4 GiB torch (miniz) writes the header offset, not the sizes, in the local ZIP64 field of
    small entries, with plain zero sizes in the header: valid, and the field is not read as sizes."""
    path = _one(tmp_path, _miniz_style("ck/data.pkl", b"\x80\x02}q\x00.", local_zip64=b""),
                _miniz_style("ck/data/1", b"x" * 12, local_zip64=struct.pack("<Q", 0x100001358)))
    with open_zip(path) as archive:
        assert archive.read("ck/data/1") == b"x" * 12


@pytest.mark.parametrize("field_offset, value", [(6, 0x0008), (8, 8)])  # local flags, local method
def test_local_flags_or_method_that_differ_from_the_central_directory_are_refused(tmp_path, field_offset, value):
    path = _one(tmp_path, hz.raw_entry("a.bin", b"abc"))
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, field_offset, value)  # the first local header starts at offset 0
    path.write_bytes(bytes(data))
    with refused("local header flags or method differ"):
        open_zip(path)


def test_local_zip64_marker_without_the_field_is_refused(tmp_path):
    raw = replace(hz.raw_entry("a.bin", b"abc"), local_fields=(zlib.crc32(b"abc"), 0xFFFFFFFF, 0xFFFFFFFF))
    with refused("lacks the ZIP64 sizes"):
        open_zip(_one(tmp_path, raw))


def test_local_zip64_sizes_that_disagree_are_refused(tmp_path):
    raw = replace(hz.raw_entry("a.bin", b"abc"), local_fields=(zlib.crc32(b"abc"), 0xFFFFFFFF, 0xFFFFFFFF),
                  local_extra=struct.pack("<HHQQ", 1, 16, 3, 99))
    with refused("local header sizes differ"):
        open_zip(_one(tmp_path, raw))


def test_data_descriptor_that_disagrees_is_refused(tmp_path):
    raw = _miniz_style("a.bin", b"abc", local_zip64=b"")
    raw = replace(raw, trailer=struct.pack("<IIII", 0x08074B50, raw.crc, 3, 4))
    with refused("data descriptor disagrees"):
        open_zip(_one(tmp_path, raw))


def test_central_zip64_field_with_an_unmarked_value_is_refused(tmp_path):
    """A ZIP64 size that the header does not point to: readers would disagree on which value counts."""
    raw = replace(hz.raw_entry("a.bin", b"abc"), central_extra=struct.pack("<HHQ", 1, 8, 1 << 33))
    with refused("ZIP64 extra field does not match"):
        open_zip(_one(tmp_path, raw))


def test_malformed_extra_field_is_refused(tmp_path):
    raw = replace(hz.raw_entry("a.bin", b"abc"), central_extra=struct.pack("<HH", 0x5455, 40) + b"short")
    with refused("malformed extra field"):
        open_zip(_one(tmp_path, raw))


def test_copy_to_returns_the_hash_of_what_it_wrote(tmp_path):
    entries = package_entries()
    path = hz.write_honest_zip(tmp_path / "p.zip", entries)
    with open_zip(path) as archive:
        for name, content in entries:
            sink = io.BytesIO()
            digest = archive.copy_to(name, sink)
            assert sink.getvalue() == content
            assert digest == hashlib.sha256(sink.getvalue()).hexdigest() == archive.sha256(name)


def test_small_chunks_yield_the_same_bytes(tmp_path):
    content = random.Random(5).randbytes(10000) + bytes(10000)
    path = _one(tmp_path, hz.raw_entry("a.json", content, compress=True), hz.raw_entry("b.bin", content))
    with open_zip(path) as archive:
        for name in ("a.json", "b.bin"):
            blocks = list(archive.stream(name, chunk=7))
            assert max(len(b) for b in blocks) <= 7
            assert b"".join(blocks) == content


def test_empty_archive_opens_with_no_entries(tmp_path):
    path = tmp_path / "empty.zip"
    with zipfile.ZipFile(path, "w"):
        pass
    with open_zip(path) as archive:
        assert archive.entries == [] and archive.sha256_all() == {}


def test_safezip_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, nnseal.readers.zip_archive, nnseal.package.zipwriter; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_nnunet_export_zip_opens(tmp_path, toy_results_session, monkeypatch):
    """nnU-Net's own nnUNetv2_export_model_to_zip output (ZIP_DEFLATED, whole .pth files) reads exactly."""
    out = tmp_path / "export.zip"
    nnunet_export_zip(monkeypatch, toy_results_session, out, configurations=("2d",), folds=(0, 1))
    _assert_matches_zipfile(out)
    with open_zip(out) as archive:
        assert f"{MODEL}/fold_1/checkpoint_final.pth" in archive.names()
        assert all(e.method == 8 for e in archive.entries)
