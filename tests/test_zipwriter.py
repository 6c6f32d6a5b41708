"""The deterministic zip writer: same inputs, same bytes; every entry hashed as written; names checked."""

from __future__ import annotations

import hashlib
import io
import json
import random
import zipfile
import zlib

import hostile_zips
import pytest

from nnseal.errors import HostileArchive
from nnseal.package.zipwriter import DeterministicZipWriter
from nnseal.readers.zip_archive import open_zip

MODEL = "Dataset042_Toy/nnUNetTrainer__nnUNetPlans__2d"
WEIGHTS = random.Random(11).randbytes(50_000)
PLANS = json.dumps({"configurations": {"2d": {"patch_size": [32, 32]}}}, indent=4).encode()


def write_package(target, *, chunk: int = 4096) -> DeterministicZipWriter:
    """A package-like zip: JSON deflated, weights stored and streamed in chunks."""
    with DeterministicZipWriter(target) as writer:
        writer.add_bytes(f"{MODEL}/plans.json", PLANS, compress=True)
        with writer.entry(f"{MODEL}/fold_0/checkpoint_final.safetensors", compress=False) as sink:
            for start in range(0, len(WEIGHTS), chunk):
                sink.write(WEIGHTS[start:start + chunk])
        writer.add_bytes(f"{MODEL}/fold_0/empty.json", b"", compress=True)
        writer.add_bytes("nnseal-card.json", b'{"format": "nnseal/1"}', compress=True)
    return writer


def written_bytes(**kwargs) -> bytes:
    buffer = io.BytesIO()
    write_package(buffer, **kwargs)
    return buffer.getvalue()


def test_same_inputs_give_byte_identical_zips(tmp_path):
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    with open(first, "wb") as out:
        write_package(out)
    with open(second, "wb") as out:
        write_package(out, chunk=777)  # how the bytes arrive does not matter
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() == written_bytes()


def test_different_content_gives_different_bytes():
    changed = io.BytesIO()
    with DeterministicZipWriter(changed) as writer:
        writer.add_bytes(f"{MODEL}/plans.json", PLANS + b" ", compress=True)
    same = io.BytesIO()
    with DeterministicZipWriter(same) as writer:
        writer.add_bytes(f"{MODEL}/plans.json", PLANS, compress=True)
    assert changed.getvalue() != same.getvalue()


def test_digests_and_sizes_are_of_the_uncompressed_bytes():
    writer = write_package(io.BytesIO())
    expected = {
        f"{MODEL}/plans.json": PLANS,
        f"{MODEL}/fold_0/checkpoint_final.safetensors": WEIGHTS,
        f"{MODEL}/fold_0/empty.json": b"",
        "nnseal-card.json": b'{"format": "nnseal/1"}',
    }
    assert list(writer.digests) == list(expected)  # insertion order
    assert writer.digests == {name: hashlib.sha256(data).hexdigest() for name, data in expected.items()}
    assert writer.sizes == {name: len(data) for name, data in expected.items()}


def test_add_bytes_returns_the_sha256():
    with DeterministicZipWriter(io.BytesIO()) as writer:
        assert writer.add_bytes("a.json", b"{}", compress=True) == hashlib.sha256(b"{}").hexdigest()


def test_readable_by_zipfile_and_open_zip_with_fixed_metadata(tmp_path):
    path = tmp_path / "p.zip"
    with open(path, "wb") as out:
        writer = write_package(out)
    with zipfile.ZipFile(path) as reference:
        assert reference.testzip() is None
        for info in reference.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr == 0o100644 << 16
            assert info.create_system == 3
            assert info.extra == b""  # central directory: nothing that could vary
            expected_method = zipfile.ZIP_STORED if info.filename.endswith(".safetensors") else zipfile.ZIP_DEFLATED
            assert info.compress_type == expected_method
            assert hashlib.sha256(reference.read(info)).hexdigest() == writer.digests[info.filename]
        weights = reference.getinfo(f"{MODEL}/fold_0/checkpoint_final.safetensors")
        assert weights.compress_size == weights.file_size
        plans = reference.getinfo(f"{MODEL}/plans.json")
        assert plans.compress_size < plans.file_size
    with open_zip(path) as archive:
        assert archive.names() == list(writer.digests)
        assert archive.sha256_all() == writer.digests


def test_deflate_uses_level_6():
    rng = random.Random(3)
    text = json.dumps({f"case_{i:04d}": round(rng.random(), 3) for i in range(3000)}).encode()
    level = {n: zlib.compress(text, n)[2:-4] for n in (1, 6, 9)}  # raw deflate: no zlib header/trailer
    assert len({level[1], level[6], level[9]}) == 3  # the input tells the levels apart
    buffer = io.BytesIO()
    with DeterministicZipWriter(buffer) as writer:
        writer.add_bytes("plans.json", text, compress=True)
    assert level[6] in buffer.getvalue()
    assert level[1] not in buffer.getvalue() and level[9] not in buffer.getvalue()


def test_unseekable_output_is_deterministic_and_readable(tmp_path):
    first, second = hostile_zips.WriteOnlyStream(), hostile_zips.WriteOnlyStream()
    write_package(first)
    writer = write_package(second)
    assert first.buffer.getvalue() == second.buffer.getvalue()
    path = tmp_path / "piped.zip"
    path.write_bytes(first.buffer.getvalue())
    with open_zip(path) as archive:
        assert archive.sha256_all() == writer.digests


def test_zip64_layout_is_read_back(tmp_path, monkeypatch):
    """Archives past 4 GiB get ZIP64 central records; a lowered threshold builds that layout cheaply."""
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)
    path = tmp_path / "z64.zip"
    with open(path, "wb") as out:
        writer = write_package(out)
    assert b"PK\x06\x06" in path.read_bytes()
    with open_zip(path) as archive:
        assert archive.sha256_all() == writer.digests


def test_non_ascii_name_round_trips():
    name = "Dataset007_Caf\u00e9/plans.json"
    buffer = io.BytesIO()
    with DeterministicZipWriter(buffer) as writer:
        writer.add_bytes(name, b"{}", compress=True)
    with zipfile.ZipFile(buffer) as reference:
        assert reference.namelist() == [name]
        assert reference.getinfo(name).flag_bits & 0x800


@pytest.mark.parametrize("name, reason", [
    ("../escape.json", "'..' component"),
    ("/abs.json", "absolute name"),
    ("a\\b.json", "backslash"),
    ("C:/x.json", "drive letter"),
    ("a//b.json", "empty path component"),
])
def test_bad_names_are_refused_and_nothing_is_written(name, reason):
    buffer = io.BytesIO()
    with DeterministicZipWriter(buffer) as writer:
        writer.add_bytes("ok.json", b"{}", compress=True)
        with pytest.raises(HostileArchive) as err:
            writer.add_bytes(name, b"{}", compress=True)
        assert reason in err.value.reason
        assert list(writer.digests) == ["ok.json"]
    with zipfile.ZipFile(buffer) as reference:
        assert reference.namelist() == ["ok.json"]


@pytest.mark.parametrize("second", ["a/plans.json", "A/Plans.json", "a/plans.json/x"])
def test_duplicate_and_colliding_names_are_refused(second):
    with DeterministicZipWriter(io.BytesIO()) as writer:
        writer.add_bytes("a/plans.json", b"{}", compress=True)
        with pytest.raises(HostileArchive):
            writer.add_bytes(second, b"{}", compress=True)


def test_a_failed_entry_is_not_recorded_and_stops_the_writer():
    with DeterministicZipWriter(io.BytesIO()) as writer:
        with pytest.raises(ValueError, match="source broke"):
            with writer.entry("w.safetensors", compress=False) as sink:
                sink.write(b"partial")
                raise ValueError("source broke")
        assert "w.safetensors" not in writer.digests
        with pytest.raises(RuntimeError, match="incomplete"):
            writer.add_bytes("next.json", b"{}", compress=True)


def test_writer_does_not_read_back_what_it_wrote():
    """One pass: the output object only ever receives writes (and seeks to patch local headers)."""

    class WriteOnlyFile(io.BytesIO):
        def read(self, *args):
            raise AssertionError("the writer read its output")

    out = WriteOnlyFile()
    writer = write_package(out)
    assert hashlib.sha256(WEIGHTS).hexdigest() in writer.digests.values()
