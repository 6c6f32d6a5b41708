"""`nnseal scan` on benign models, packages, nnU-Net zips, safetensors and numpy files; exit codes and walking."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import hostile_checkpoints as hostile
import hostile_scan_inputs as inputs
import pytest
from helpers import run_cli, tree_listing
from scan_helpers import levels_for, rules_for, scan_json

# --- benign inputs pass -------------------------------------------------------------------


def test_toy_results_folder_notes_only_the_postprocessing_pickle(toy_results_session):
    """nnU-Net loads postprocessing.pkl with pickle.load: one that names no global outside nnU-Net's
    postprocessing functions and calls nothing is a note (what nnseal install writes); any other
    model-named pickle is refused (test_pipeline.py: the hostile ones)."""
    proc, report = scan_json(toy_results_session, extra=["--fail-on", "any"])
    assert proc.exit_code == 1
    assert [(Path(f["path"]).name, f["rule"], f["level"]) for f in report["findings"]] == [
        ("postprocessing.pkl", "nnunet-postprocessing", "note")]
    assert scan_json(toy_results_session, extra=["--fail-on", "unsafe"])[0].exit_code == 0
    # the checkpoints were really looked at, not skipped as "other"
    assert report["summary"]["kinds"]["torch-zip"] == 4
    assert report["summary"]["kinds"]["pickle"] == 1  # postprocessing.pkl, which holds no globals


def test_toy_checkpoint_with_numpy_logs_passes_every_check(toy_model_folder):
    from nnseal.readers.torch_archive import inspect_checkpoint

    checkpoint = toy_model_folder / "fold_0" / "checkpoint_final.pth"
    assert "numpy._core.multiarray.scalar" in inspect_checkpoint(checkpoint).globals
    proc, report = scan_json(checkpoint, extra=["--fail-on", "any"])
    assert (proc.exit_code, report["findings"]) == (0, [])


def test_signed_package_with_trusted_key_has_no_finding(toy_package_session, session_key):
    proc, report = scan_json(toy_package_session, extra=["--trusted-key", session_key.public_path,
                                                         "--fail-on", "any"])
    assert proc.exit_code == 0, report["findings"]
    assert report["findings"] == []
    assert report["summary"]["kinds"]["nnseal-package"] == 1
    assert report["summary"]["kinds"]["safetensors"] >= 1  # members were checked too


def test_package_signed_by_key_in_trust_folder_is_trusted(toy_package_session, session_key, isolated_trust):
    isolated_trust.mkdir()
    shutil.copy(session_key.public_path, isolated_trust / "signer.pub")
    proc, report = scan_json(toy_package_session, extra=["--fail-on", "unsigned"])
    assert (proc.exit_code, report["findings"]) == (0, [])


# --- packages: unsigned level -------------------------------------------------------------


def test_untrusted_signer_is_unsigned_level(toy_package_session, session_key):
    proc, report = scan_json(toy_package_session)
    assert proc.exit_code == 0
    assert [(f["rule"], f["level"]) for f in report["findings"]] == [("unknown-signer", "unsigned")]
    assert session_key.fingerprint in report["findings"][0]["message"]

    proc, report = scan_json(toy_package_session, extra=["--fail-on", "unsigned"])
    assert proc.exit_code == 1 and report["failed"] is True


def test_unsigned_package(toy_package_session, tmp_path, session_key):
    package = inputs.make_unsigned_package(toy_package_session, tmp_path)
    proc, report = scan_json(package, extra=["--trusted-key", session_key.public_path])
    assert proc.exit_code == 0
    assert rules_for(report) == {"unsigned-package"}
    assert run_cli("scan", package, "--fail-on", "unsigned").exit_code == 1


def test_tampered_package_is_unsafe(toy_package_session, tmp_path, session_key):
    package = inputs.make_tampered_package(toy_package_session, tmp_path)
    proc, report = scan_json(package, extra=["--trusted-key", session_key.public_path])
    assert proc.exit_code == 1
    tampered = [f for f in report["findings"] if f["rule"] == "tampered-package"]
    assert tampered and all(f["level"] == "unsafe" for f in tampered)
    assert any("plans.json" in f["message"] for f in tampered)


def test_pickle_smuggled_into_package_is_found_by_content(toy_package_session, tmp_path, session_key, canary):
    package = inputs.make_package_with_pickle_member(toy_package_session, tmp_path, canary)
    proc, report = scan_json(package, extra=["--trusted-key", session_key.public_path])
    assert proc.exit_code == 1
    smuggled = [f for f in report["findings"] if f["member"] and f["member"].endswith("checkpoint_final.safetensors")]
    assert {"dangerous-global"} <= {f["rule"] for f in smuggled}
    assert "tampered-package" in rules_for(report)
    assert not canary.exists()


# --- nnU-Net zips ----------------------------------------------------------------------------


def test_nnunet_zip_with_hostile_checkpoint_names_the_member(toy_model_folder, tmp_path, canary):
    hostile_checkpoint = hostile.make_reduce_os_system(tmp_path, canary).read_bytes()
    prefix = f"Dataset042_Toy/{toy_model_folder.name}"
    good = (toy_model_folder / "fold_1" / "checkpoint_final.pth").read_bytes()
    archive = inputs.make_nnunet_zip(tmp_path, {
        f"{prefix}/plans.json": (toy_model_folder / "plans.json").read_bytes(),
        f"{prefix}/fold_0/checkpoint_final.pth": hostile_checkpoint,
        f"{prefix}/fold_1/checkpoint_final.pth": good,
    })
    before = tree_listing(tmp_path)

    proc, report = scan_json(archive)

    assert proc.exit_code == 1
    bad_member = f"{prefix}/fold_0/checkpoint_final.pth"
    assert rules_for(report, archive, bad_member) == {"dangerous-global"}
    assert any("posix.system" in f["message"] for f in report["findings"] if f["member"] == bad_member)
    assert rules_for(report, archive, f"{prefix}/fold_1/checkpoint_final.pth") == set()
    assert rules_for(report, archive, None) == {"dangerous-global", "nnunet-export-zip"}
    assert not canary.exists()
    assert tree_listing(tmp_path) == before

    text = run_cli("scan", archive).stdout
    assert f"UNSAFE {archive}:{bad_member}: dangerous-global:" in text


def test_clean_nnunet_zip_passes_the_default_gate_and_fails_fail_on_unsigned(toy_model_folder, tmp_path):
    prefix = f"Dataset042_Toy/{toy_model_folder.name}"
    archive = inputs.make_nnunet_zip(tmp_path, {
        f"{prefix}/fold_0/checkpoint_final.pth": (toy_model_folder / "fold_0" / "checkpoint_final.pth").read_bytes(),
    })
    proc, report = scan_json(archive)
    assert proc.exit_code == 0
    assert [(f["rule"], f["level"]) for f in report["findings"]] == [("nnunet-export-zip", "unsigned")]
    # README: unsigned packages (and nnU-Net's zips, which carry no signature) fail --fail-on unsigned.
    assert run_cli("scan", archive, "--fail-on", "unsigned").exit_code == 1
    assert run_cli("scan", archive, "--fail-on", "any").exit_code == 1


def test_zip_inside_zip_inside_zip_is_scanned(tmp_path, canary):
    hostile_checkpoint = hostile.make_reduce_eval(tmp_path, canary).read_bytes()
    inner = inputs.make_nnunet_zip(tmp_path, {"Dataset001_A/m/fold_0/checkpoint_final.pth": hostile_checkpoint},
                                   name="inner.zip")
    outer = inputs.make_nnunet_zip(tmp_path, {"bundle/inner.zip": inner.read_bytes()}, name="outer.zip")
    _, report = scan_json(outer)
    assert rules_for(report, outer, "bundle/inner.zip!Dataset001_A/m/fold_0/checkpoint_final.pth") == \
        {"dangerous-global"}


# --- safetensors and numpy ------------------------------------------------------------------


@pytest.mark.parametrize("make", [inputs.make_safetensors_huge_header_length,
                                  inputs.make_safetensors_overlapping_offsets,
                                  inputs.make_safetensors_shape_overflow])
def test_hostile_safetensors_header_is_unsafe(make, tmp_path):
    target = make(tmp_path)
    proc, report = scan_json(target)
    assert proc.exit_code == 1
    assert rules_for(report, target) == {"safetensors-header"}
    assert levels_for(report, target) == {"unsafe"}


def test_valid_safetensors_passes(tmp_path):
    target = inputs.make_safetensors_ok(tmp_path)
    proc, report = scan_json(target, extra=["--fail-on", "any"])
    assert (proc.exit_code, report["findings"], report["summary"]["kinds"]) == (0, [], {"safetensors": 1})


@pytest.mark.parametrize("make", [inputs.make_npy_object_array, inputs.make_npy_structured_object_field])
def test_numpy_object_array_is_unsafe(make, tmp_path, canary):
    target = make(tmp_path, canary)
    proc, report = scan_json(target)
    assert proc.exit_code == 1
    assert {"numpy-object-array", "dangerous-global"} <= rules_for(report, target)
    assert not canary.exists()


def test_numpy_numeric_array_passes(tmp_path):
    target = tmp_path / "weights.npy"
    target.write_bytes(inputs.npy_float_bytes())
    proc, report = scan_json(target, extra=["--fail-on", "any"])
    assert (proc.exit_code, report["findings"], report["summary"]["kinds"]) == (0, [], {"npy": 1})


def test_npz_object_member_is_named(tmp_path, canary):
    target = inputs.make_npz_with_object_member(tmp_path, canary)
    proc, report = scan_json(target)
    assert proc.exit_code == 1
    assert "numpy-object-array" in rules_for(report, target, "payload.npy")
    assert rules_for(report, target, "weights.npy") == set()
    assert report["summary"]["kinds"]["npz"] == 1


def test_npy_header_that_is_not_a_literal_is_unsafe(tmp_path):
    target = tmp_path / "bad.npy"
    header = b"{'descr': __import__('os').system('true'), 'fortran_order': False, 'shape': (1,)}"
    target.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)
    _, report = scan_json(target)
    assert rules_for(report, target) == {"numpy-header"}


# --- classification is by content -------------------------------------------------------------


def test_protocol0_pickle_with_innocent_name_is_found(tmp_path, canary):
    target = tmp_path / "notes.txt"
    target.write_bytes(pickle.dumps(hostile.Reduce(os.system, hostile.touch(canary)), protocol=0))
    _, report = scan_json(target)
    assert rules_for(report, target) == {"dangerous-global"}
    assert report["summary"]["kinds"] == {"pickle": 1}


def test_protocol0_payload_behind_padding_is_still_a_pickle(tmp_path, canary):
    """A 100 kB string first pushes the payload past the bytes the sniffer reads."""
    target = tmp_path / "padded.dat"
    target.write_bytes(b"S'" + b"A" * 100_000 + b"'\n0" + f"cos\nsystem\n(S'{hostile.touch(canary)}'\ntR.".encode())
    assert target.stat().st_size > 64 << 10
    _, report = scan_json(target)
    assert rules_for(report, target) == {"dangerous-global"}
    assert "os.system" in report["findings"][0]["message"]


def test_checkpoint_renamed_to_png_is_still_a_checkpoint(tmp_path, canary):
    target = hostile.make_reduce_exec(tmp_path, canary).rename(tmp_path / "progress.png")
    _, report = scan_json(target)
    assert rules_for(report, target) == {"dangerous-global"}


def test_text_files_are_not_mistaken_for_pickles(tmp_path):
    # "cat\nmeow\n" would be GLOBAL at.meow: an import to the C unpickler (test_pickle_readings.py)
    (tmp_path / "README.md").write_text("cat and dog\nmeow\n(this is prose)\n")
    (tmp_path / "Makefile").write_text("(all): build\n")
    (tmp_path / "empty.py").write_bytes(b"")
    proc, report = scan_json(tmp_path, extra=["--fail-on", "any"])
    assert (proc.exit_code, report["findings"]) == (0, [])
    assert report["summary"]["kinds"] == {"empty": 1, "other": 2}


# --- walking ----------------------------------------------------------------------------------


def test_walk_skips_git_and_reports_symlinks_without_following(tmp_path, canary):
    (tmp_path / ".git").mkdir()
    hostile.make_reduce_os_system(tmp_path / ".git", canary)
    outside = tmp_path.parent / f"{tmp_path.name}_outside"
    outside.mkdir()
    target = hostile.make_reduce_os_system(outside, canary)
    (tmp_path / "link.pth").symlink_to(target)
    proc, report = scan_json(tmp_path)
    assert proc.exit_code == 0
    assert [(Path(f["path"]).name, f["rule"], f["level"]) for f in report["findings"]] == \
        [("link.pth", "symlink", "note")]
    assert report["summary"]["files"] == 0


def test_walk_order_is_sorted(tmp_path, canary):
    for name in ("b", "a", "c"):
        (tmp_path / name).mkdir()
        hostile.make_reduce_eval(tmp_path / name, canary)
    _, report = scan_json(tmp_path)
    assert [Path(f["path"]).parent.name for f in report["findings"]] == ["a", "b", "c"]


def test_unreadable_file_is_unsafe_not_skipped(tmp_path, monkeypatch):
    # Tests run as root here, where chmod cannot make a file unreadable: fail the open instead.
    import builtins

    from nnseal.scan import scan_paths

    target = tmp_path / "locked.pth"
    target.write_bytes(b"x")
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if Path(file) == target:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    real_os_open = os.open

    def guarded_os_open(file, *args, **kwargs):
        if Path(file) == target:
            raise PermissionError(13, "Permission denied", str(file))
        return real_os_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)  # the scanner opens files either way
    report = scan_paths([tmp_path])
    assert [(f.rule, f.level) for f in report.findings] == [("unreadable", "unsafe")]
    assert "Permission denied" in report.findings[0].message
    assert report.failed("unsafe")


# --- the command line ---------------------------------------------------------------------------


def test_missing_path_is_exit_3_one_line(tmp_path):
    proc = run_cli("scan", tmp_path / "nope")
    assert proc.exit_code == 3
    assert len(proc.stderr.strip().splitlines()) == 1 and "nope" in proc.stderr
    assert proc.stdout == ""


def test_no_path_is_usage_error():
    assert run_cli("scan").exit_code == 2


def test_text_format_is_one_line_per_finding_then_summary(tmp_path, canary):
    hostile.make_reduce_eval(tmp_path, canary)
    hostile.make_stride0_expansion(tmp_path, canary)
    (tmp_path / "readme.txt").write_text("hello\n")
    proc = run_cli("scan", tmp_path)
    assert proc.exit_code == 1
    lines = proc.stdout.splitlines()
    assert lines[-1] == "3 files scanned, 2 findings (2 unsafe, 0 unsigned)"
    assert lines[0].startswith(f"UNSAFE {tmp_path / 'eval.pth'}: dangerous-global: ")
    assert lines[1].startswith(f"UNSAFE {tmp_path / 'stride0.pth'}: tensor-geometry: ")
    assert len(lines) == 3


def test_output_file_gets_the_report_and_stdout_the_summary(tmp_path, canary):
    models = tmp_path / "models"
    models.mkdir()
    hostile.make_reduce_eval(models, canary)
    out = tmp_path / "report.json"
    out.write_text("stale")
    proc = run_cli("scan", models, "--format", "json", "--output", out)
    assert proc.exit_code == 1
    assert proc.stdout.strip() == "1 files scanned, 1 findings (1 unsafe, 0 unsigned)"
    import json

    assert json.loads(out.read_text())["summary"]["findings"] == 1


def test_bad_trusted_key_is_refused_before_scanning(tmp_path):
    key = tmp_path / "key.pub"
    key.write_text("not a key")
    proc = run_cli("scan", tmp_path, "--trusted-key", key)
    assert proc.exit_code == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "key.pub" in proc.stderr
    assert proc.stdout == ""


def test_nested_zip_over_the_spool_limit_is_reported_unchecked(tmp_path, monkeypatch):
    """A zip inside a zip is copied to disk to be read; a huge one is reported, not copied."""
    import zipfile

    from nnseal.scan import scanner

    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("notes.txt", b"x" * 4096)
    outer = tmp_path / "outer.zip"
    with zipfile.ZipFile(outer, "w") as z:
        z.write(inner, "inner.zip")
    inner.unlink()
    monkeypatch.setattr(scanner, "MAX_NESTED_ZIP_BYTES", 100)
    report = scanner.scan_paths([outer])
    assert [(f.rule, f.level) for f in report.findings] == [("not-checked", "unsafe")]
    assert "nested zip" in report.findings[0].message
