"""One reading of the bytes: archives that other readers open differently are refused by every command.

The hidden-archive trick (a second complete archive plus a byte of padding in the end record's
comment) and its variants, as a torch checkpoint and as a signed nnseal package: sanitize, scan,
verify and install refuse with one line, the payload never runs, nothing is written. The control
tests prove each trick is real: torch, zipfile and unzip do open the hidden archive.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import hostile_checkpoints as hc
import hostile_zips as hz
import pytest
from helpers import assert_one_line_refusal, run_cli, tree_listing

from nnseal.errors import HostileArchive, UnsafeCheckpoint
from nnseal.readers.zip_archive import Limits, open_zip

UNZIP = "/usr/bin/unzip"  # Debian's Info-ZIP unzip; .ci/run installs it

# checkpoint generator -> words nnseal's one-line refusal must contain
CHECKPOINT_ATTACKS = {
    hc.make_hidden_archive_checkpoint: "archive comment holds a zip signature",
    hc.make_hidden_weights_checkpoint: "archive comment holds a zip signature",
    hc.make_signature_in_checkpoint_comment: "more than one end-of-central-directory record",
    hc.make_checkpoint_comment: "archive comment of 12 bytes",
    hc.make_appended_data_checkpoint: "unaccounted bytes before the first entry",
    hc.make_prepended_data_checkpoint: "central directory is not where the end record says",
}
# package generator -> words of the refusal
PACKAGE_ATTACKS = {
    "hidden_archive_in_comment": "archive comment holds a zip signature",
    "signature_in_comment": "more than one end-of-central-directory record",
    "archive_comment": "archive comment of 12 bytes",
    "appended_data": "1 bytes after the end-of-central-directory record",
    "version_needed_63": "needs zip version 6.3",
    "prepended_data": "central directory is not where the end record says",
}


def test_every_generator_has_an_expectation():
    assert set(CHECKPOINT_ATTACKS) == set(hc.AMBIGUITY_ATTACKS)
    assert set(PACKAGE_ATTACKS) == set(hz.AMBIGUITY_ATTACKS)


# --- controls: the tricks are real ------------------------------------------------------------


def test_torch_load_runs_the_hidden_checkpoint(tmp_path, canary):
    """Control: torch.load (as nnU-Net calls it, weights_only=False) opens the hidden archive and runs its payload,
    although the decoy alone is harmless. Run in a child process: this is the attacker's code running."""
    path = hc.make_hidden_archive_checkpoint(tmp_path, canary)
    code = "import sys, torch; torch.load(sys.argv[1], weights_only=False)"
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert canary.exists(), "the hidden archive was not what torch loaded"


def test_torch_reads_the_hidden_weights(tmp_path, canary):
    """Control: torch.load(weights_only=True), what sanitize calls, loads the hidden 666.0 weights."""
    import torch

    path = hc.make_hidden_weights_checkpoint(tmp_path, canary)
    loaded = torch.load(path, weights_only=True)
    assert loaded["network_weights"]["w"].tolist() == [666.0] * 16


def test_zipfile_and_unzip_read_the_hidden_package(toy_package_session, tmp_path):
    """Control: the signed package with a zip in its comment is, to nnU-Net's installer (zipfile) and to unzip,
    a one-entry archive holding PAYLOAD."""
    entries = _entries(toy_package_session)
    path = hz.make_hidden_archive_in_comment(tmp_path / "hidden.zip", entries,
                                             outer=toy_package_session.read_bytes())
    victim = entries[0][0]
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == [victim]
        assert archive.read(victim) == hz.PAYLOAD
    unzip = subprocess.run([UNZIP, "-p", str(path), victim], capture_output=True, timeout=60)
    assert unzip.stdout == hz.PAYLOAD


def test_unzip_skips_an_entry_that_needs_version_63(tmp_path):
    """Control: the version trick makes unzip and zipfile extract different sets of files."""
    entries = [("a.json", b"{}"), ("b.bin", b"data")]
    path = hz.make_version_needed_63(tmp_path / "v.zip", entries)
    unzip = subprocess.run([UNZIP, "-p", str(path)], capture_output=True, timeout=60)
    assert unzip.returncode != 0 and unzip.stdout == b"data"
    with zipfile.ZipFile(path) as archive:
        assert archive.read("a.json") == b"{}"


# --- checkpoints: sanitize and scan ---------------------------------------------------------------


@pytest.mark.parametrize("make", list(CHECKPOINT_ATTACKS), ids=[f.__name__[5:] for f in CHECKPOINT_ATTACKS])
def test_sanitize_refuses_ambiguous_checkpoint(make, tmp_path, canary):
    source_dir, out_dir = tmp_path / "in", tmp_path / "out"
    source_dir.mkdir()
    out_dir.mkdir()
    checkpoint = make(source_dir, canary)
    before = tree_listing(tmp_path)

    proc = run_cli("sanitize", checkpoint, "-o", out_dir / "weights.safetensors", cwd=tmp_path)

    assert_one_line_refusal(proc, checkpoint.name, CHECKPOINT_ATTACKS[make])
    assert not canary.exists()
    assert tree_listing(tmp_path) == before, "a refusal wrote something"


@pytest.mark.parametrize("make", list(CHECKPOINT_ATTACKS), ids=[f.__name__[5:] for f in CHECKPOINT_ATTACKS])
def test_scan_flags_ambiguous_checkpoint_unsafe(make, tmp_path, canary):
    checkpoint = make(tmp_path, canary)
    before = tree_listing(tmp_path)

    proc = run_cli("scan", checkpoint, cwd=tmp_path)

    assert proc.exit_code == 1, (proc.stdout, proc.stderr)
    findings = [line for line in proc.stdout.splitlines() if line.startswith(("UNSAFE", "UNSIGNED", "WARNING"))]
    assert len(findings) == 1 and findings[0].startswith("UNSAFE"), proc.stdout
    assert CHECKPOINT_ATTACKS[make] in findings[0]
    assert not canary.exists()
    assert tree_listing(tmp_path) == before


# --- packages: verify, install, scan ---------------------------------------------------------------


def _entries(package: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(package) as archive:  # our own package, read to build its hostile twins
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def _package_attack(attack: str, package: Path, path: Path) -> Path:
    make = hz.AMBIGUITY_ATTACKS[attack]
    if attack == "hidden_archive_in_comment":  # the real signed package itself is the decoy
        return make(path, _entries(package), outer=package.read_bytes())
    return make(path, _entries(package))  # rebuilt from the signed entries: the signature still verifies


def test_rebuilt_package_without_the_attack_verifies(toy_package_session, session_key, tmp_path):
    """Guards the tests below: the entries rebuilt by hostile_zips verify, so each refusal is the attack's."""
    honest = hz.write_honest_zip(tmp_path / "honest.zip", _entries(toy_package_session))
    proc = run_cli("verify", honest, "--trusted-key", session_key.public_path)
    assert proc.exit_code == 0, proc.stderr


@pytest.mark.parametrize("attack", sorted(PACKAGE_ATTACKS))
@pytest.mark.parametrize("command", ["verify", "install", "scan"])
def test_package_commands_refuse_ambiguous_package(command, attack, toy_package_session, session_key, tmp_path,
                                                    canary):
    work = tmp_path / "work"
    work.mkdir()
    package = _package_attack(attack, toy_package_session, work / f"{attack}.zip")
    results = tmp_path / "results"
    results.mkdir()
    before = tree_listing(tmp_path)

    if command == "install":
        proc = run_cli("install", package, "--results", results, "--trusted-key", session_key.public_path,
                       "--quiet", cwd=work)
    else:
        proc = run_cli(command, package, "--trusted-key", session_key.public_path, cwd=work)

    if command == "scan":
        assert proc.exit_code == 1, (proc.stdout, proc.stderr)
        findings = [line for line in proc.stdout.splitlines() if line.startswith(("UNSAFE", "UNSIGNED"))]
        assert len(findings) == 1 and findings[0].startswith("UNSAFE"), proc.stdout
        # The prepended blob starts like a pickle, and scan classifies a file by its first bytes.
        assert PACKAGE_ATTACKS[attack] in findings[0] or attack == "prepended_data", findings[0]
    else:
        assert_one_line_refusal(proc, PACKAGE_ATTACKS[attack])
    assert tree_listing(tmp_path) == before, "a refusal wrote something"
    assert not canary.exists()


# --- the reader's rules, one by one ---------------------------------------------------------------


def test_comment_allowed_only_when_asked(tmp_path):
    """Third-party zips (``git archive`` writes the commit id as comment) may be read with allow_comment."""
    path = hz.make_archive_comment(tmp_path / "c.zip", [("a.txt", b"a")])
    with pytest.raises(HostileArchive, match="archive comment of 12 bytes"):
        open_zip(path)
    with open_zip(path, Limits(allow_comment=True)) as archive:
        assert archive.read("a.txt") == b"a"


@pytest.mark.parametrize("signature", [b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07", b"PK\x01\x02", b"PK\x03\x04"])
def test_zip_signature_in_comment_refused_even_when_comments_are_allowed(signature, tmp_path):
    data = hz.write_honest_zip(tmp_path / "a.zip", [("a.txt", b"a")]).read_bytes()
    path = tmp_path / "sig.zip"
    path.write_bytes(hz.with_comment(data, b"note " + signature + b" end"))
    with pytest.raises(HostileArchive, match="archive comment holds a zip signature"):
        open_zip(path, Limits(allow_comment=True))


def test_signature_straddling_the_end_record_and_its_comment_refused(tmp_path):
    """'PK' as the comment length's bytes, '\\x05\\x06' the comment's first bytes: a signature no comment
    search alone would see, which a backwards search finds."""
    data = hz.write_honest_zip(tmp_path / "a.zip", [("a.txt", b"a")]).read_bytes()
    comment = b"\x05\x06" + bytes(0x4B50 - 2)
    path = tmp_path / "straddle.zip"
    assert len(comment) == struct.unpack("<H", b"PK")[0]
    path.write_bytes(data[:-2] + b"PK" + comment)
    with pytest.raises(HostileArchive, match="zip signature"):
        open_zip(path, Limits(allow_comment=True))


def test_entry_comment_refused_unless_allowed(tmp_path):
    path = tmp_path / "entry_comment.zip"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("a.txt", date_time=(1980, 1, 1, 0, 0, 0))
        info.comment = b"hello"
        archive.writestr(info, b"a")
    with pytest.raises(HostileArchive, match="entry comment of 5 bytes"):
        open_zip(path)
    with open_zip(path, Limits(allow_comment=True)) as archive:
        assert archive.read("a.txt") == b"a"
    with zipfile.ZipFile(path, "w") as archive:
        info.comment = b"x PK\x05\x06"
        archive.writestr(info, b"a")
    with pytest.raises(HostileArchive, match="entry comment holds a zip signature"):
        open_zip(path, Limits(allow_comment=True))


def test_zip64_end_record_with_extensible_data_sector_refused(tmp_path):
    """zipfile reads the ZIP64 end record 56 bytes before the locator, miniz where the locator points."""
    data = bytearray(hc.benign_checkpoint_bytes())
    locator = len(data) - 22 - 20
    (z_offset,) = struct.unpack_from("<Q", data, locator + 8)
    sector = b"\x00" * 8
    struct.pack_into("<Q", data, z_offset + 4, 44 + len(sector))
    data[locator:locator] = sector  # the sector sits between the record and the locator
    path = tmp_path / "sector.pth"
    path.write_bytes(bytes(data))
    with pytest.raises(HostileArchive, match="extensible data sector"):
        open_zip(path)


# --- sanitize: torch's reader must agree on its own -------------------------------------------------


def test_torch_agreement_check_refuses_the_hidden_archive_by_itself(tmp_path, canary):
    """Why the torch check exists beside the comment rule: given what nnseal's reader saw in the decoy (the
    outer archive, at the very same offsets), the check alone refuses the file torch would really load.
    No variant here gets past the reader's rules; this shows the second net holds if a rule ever has a gap."""
    from nnseal.readers.torch_archive import inspect_checkpoint
    from nnseal.sanitize.checkpoint import check_torch_reads_the_same

    decoy = tmp_path / "decoy.pth"
    decoy.write_bytes(hc.benign_checkpoint_bytes())
    info = inspect_checkpoint(decoy)
    check_torch_reads_the_same(decoy, info)  # the honest file passes

    for make in (hc.make_hidden_weights_checkpoint, hc.make_hidden_archive_checkpoint):
        hidden = make(tmp_path, canary)
        with pytest.raises(UnsafeCheckpoint, match="torch's zip reader"):
            check_torch_reads_the_same(hidden, info)
    assert not canary.exists()


def test_torch_agreement_check_compares_data_pkl_bytes(tmp_path):
    """Same records at the same offsets, but data.pkl changed after the static check: refused."""
    import dataclasses

    from nnseal.readers.torch_archive import inspect_checkpoint
    from nnseal.sanitize.checkpoint import check_torch_reads_the_same

    path = tmp_path / "ok.pth"
    path.write_bytes(hc.benign_checkpoint_bytes())
    info = dataclasses.replace(inspect_checkpoint(path), data_pkl_sha256="0" * 64)
    with pytest.raises(UnsafeCheckpoint, match="another data.pkl"):
        check_torch_reads_the_same(path, info)
    assert os.path.getsize(path) > 0
