"""nnseal install / verify / inspect on good packages, and the refusals that are not about zip structure."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest
from helpers import assert_one_line_refusal, run_cli, tree_listing

from nnseal import toy_model

MODEL = f"{toy_model.DATASET}/{toy_model.model_folder_name('2d')}"


def _install(package, results, *extra, key=None):
    args = ["install", package, "--results", results, "--quiet"]
    if key is not None:
        args += ["--trusted-key", key]
    return run_cli(*args, *extra)


def test_install_rebuilds_checkpoints_that_load_without_allowlist(toy_package_session, session_key, tmp_path):
    import torch

    results = tmp_path / "results"
    proc = _install(toy_package_session, results, key=session_key.public_path)
    assert proc.exit_code == 0, proc.stderr
    model = results / MODEL
    files = sorted(str(p.relative_to(model)) for p in model.rglob("*") if p.is_file())
    assert files == ["dataset.json", "dataset_fingerprint.json",
                     "fold_0/checkpoint_best.pth", "fold_0/checkpoint_final.pth",
                     "fold_1/checkpoint_best.pth", "fold_1/checkpoint_final.pth",
                     "nnseal-receipt.json", "plans.json"]
    checkpoint = torch.load(model / "fold_1" / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    assert set(checkpoint) == {"network_weights", "trainer_name", "init_args", "inference_allowed_mirroring_axes",
                               "current_epoch"}
    assert checkpoint["trainer_name"] == "nnUNetTrainer"
    assert checkpoint["inference_allowed_mirroring_axes"] == (0, 1)
    assert checkpoint["init_args"]["configuration"] == "2d" and checkpoint["init_args"]["fold"] == 1
    assert checkpoint["init_args"]["plans"] == json.loads((model / "plans.json").read_text())
    original = toy_model.checkpoint_dict(toy_model.ToySpec(), 1, seed=20)["network_weights"]
    weights = checkpoint["network_weights"]
    assert list(weights) == list(original)
    for name, tensor in original.items():
        assert torch.equal(weights[name], tensor) and weights[name].dtype == tensor.dtype
    # aliases come back as one storage, as nnU-Net saved them
    assert weights["encoder.stages.0.0.convs.0.conv.weight"].data_ptr() == \
        weights["decoder.encoder.stages.0.0.convs.0.all_modules.0.weight"].data_ptr()
    assert not list(results.glob(".nnseal-staging-*"))


def test_no_trusted_key_no_install(toy_package_session, tmp_path):
    results = tmp_path / "results"
    proc = _install(toy_package_session, results)
    assert_one_line_refusal(proc, "trusted key")
    assert tree_listing(results) == {}


def test_untrusted_signer_refused(toy_package_session, tmp_path):
    from nnseal.format.keys import generate_key_pair

    other = generate_key_pair(tmp_path / "other")
    results = tmp_path / "results"
    proc = _install(toy_package_session, results, key=other.public_path)
    assert_one_line_refusal(proc)
    assert "trust" in proc.stderr.lower()
    assert tree_listing(results) == {}


def test_trust_folder_is_used(toy_package_session, session_key, tmp_path):
    assert run_cli("trust", "add", session_key.public_path, "--name", "lab").exit_code == 0
    proc = _install(toy_package_session, tmp_path / "results")
    assert proc.exit_code == 0, proc.stderr


def test_existing_model_refused_then_replaced_with_force(toy_package_session, session_key, tmp_path):
    results = tmp_path / "results"
    assert _install(toy_package_session, results, key=session_key.public_path).exit_code == 0
    marker = results / MODEL / "old-file.txt"
    marker.write_text("from the old install")
    before = tree_listing(results)
    proc = _install(toy_package_session, results, key=session_key.public_path)
    assert_one_line_refusal(proc, "--force")
    assert tree_listing(results) == before
    proc = _install(toy_package_session, results, "--force", key=session_key.public_path)
    assert proc.exit_code == 0, proc.stderr
    assert not marker.exists()  # replaced whole: no mix of old and new files
    assert (results / MODEL / "fold_0" / "checkpoint_final.pth").is_file()
    assert not list(results.glob(".nnseal-staging-*"))


def test_verify_package_ok_and_tampered(toy_package_session, session_key, tmp_path):
    proc = run_cli("verify", toy_package_session, "--trusted-key", session_key.public_path)
    assert proc.exit_code == 0, proc.stderr
    assert "OK" in proc.stdout
    proc = run_cli("verify", toy_package_session, "--trusted-key", session_key.public_path, "--json")
    report = json.loads(proc.stdout)
    assert report["ok"] and report["signature"] == "valid"
    assert len([e for e in report["entries"] if e["name"] != "model.sig"]) == 8

    # Rewrite one entry (valid zip, new CRC): only the signed hash can catch it.
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(toy_package_session) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("fold_0/checkpoint_final.safetensors"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.writestr(info, data)
    proc = run_cli("verify", tampered, "--trusted-key", session_key.public_path)
    assert proc.exit_code == 1
    assert "modified entry" in proc.stderr and "fold_0/checkpoint_final.safetensors" in proc.stderr


def test_verify_reports_every_problem(toy_package_session, tmp_path):
    from nnseal.format.keys import generate_key_pair

    other = generate_key_pair(tmp_path / "other")
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(toy_package_session) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():
            if info.filename.endswith("dataset_fingerprint.json"):
                continue  # missing
            data = src.read(info)
            if info.filename.endswith("plans.json"):
                data = data.replace(b"PlainConvUNet", b"PlainConvUNet ")  # modified
            dst.writestr(info, data)
        dst.writestr(f"{MODEL}/fold_0/checkpoint_epoch_50.safetensors", b"x")  # extra, off-layout
    proc = run_cli("verify", broken, "--trusted-key", other.public_path, "--json")
    assert proc.exit_code == 1
    report = json.loads(proc.stdout)
    text = "\n".join(report["problems"])
    assert report["signature"] == "untrusted"
    for needle in ("unknown signer", "missing entry", "modified entry", "extra entry", "outside the nnU-Net"):
        assert needle in text, (needle, text)


def test_verify_installed_folder_reports_drift(toy_package_session, session_key, tmp_path):
    results = tmp_path / "results"
    assert _install(toy_package_session, results, key=session_key.public_path).exit_code == 0
    model = results / MODEL
    proc = run_cli("verify", model)
    assert proc.exit_code == 0 and "OK" in proc.stdout
    with open(model / "fold_0" / "checkpoint_best.pth", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00")
    (model / "fold_1" / "checkpoint_best.pth").unlink()
    (model / "extra.txt").write_text("x")
    proc = run_cli("verify", model)
    assert proc.exit_code == 1
    for needle in ("modified: fold_0/checkpoint_best.pth", "missing: fold_1/checkpoint_best.pth", "extra: extra.txt"):
        assert needle in proc.stderr


def test_inspect_trusts_nothing(toy_package_session, session_key):
    proc = run_cli("inspect", toy_package_session, "--json")
    assert proc.exit_code == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["verified"] is False and info["signer_trusted"] is False
    assert info["signer_fingerprint"] == session_key.fingerprint
    assert [(m["folder"], m["folds"]) for m in info["models"]] == [(MODEL, ["0", "1"])]
    assert info["card"]["model"]["name"] == "Toy"
    proc = run_cli("inspect", toy_package_session, "--trusted-key", session_key.public_path)
    assert "(trusted;" in proc.stdout and "folds 0, 1" in proc.stdout


@pytest.mark.parametrize("command", ["verify", "inspect"])
def test_verify_and_inspect_do_not_import_torch(command, toy_package_session, session_key):
    import subprocess
    import sys

    code = ("import sys\nfrom nnseal.cli import main\n"
            f"try:\n    main([{command!r}, {str(toy_package_session)!r}, '--trusted-key', "
            f"{str(session_key.public_path)!r}])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nprint('no torch')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and "no torch" in proc.stdout, proc.stderr


def test_python_api_matches_nnunet_doc(toy_package_session, session_key, tmp_path):
    from nnseal.verify import install_model_from_zip, verify_package

    report = verify_package(toy_package_session, trusted_keys=[session_key.public_path])
    assert report.ok and report.problems == []
    installed = install_model_from_zip(zip_file=str(toy_package_session), install_location=str(tmp_path / "r"),
                                       trusted_keys=[session_key.public_path])
    assert installed.models == [str((tmp_path / "r" / MODEL).resolve())]


def test_install_defaults_to_nnunet_results(toy_package_session, session_key, tmp_path):
    results = tmp_path / "env_results"
    proc = run_cli("install", toy_package_session, "--trusted-key", session_key.public_path,
                   env={"nnUNet_results": str(results)})
    assert proc.exit_code == 0, proc.stderr
    assert (results / MODEL / "plans.json").is_file()
    proc = run_cli("install", toy_package_session, "--trusted-key", session_key.public_path,
                   env={"nnUNet_results": ""})
    assert proc.exit_code == 3 and "nnUNet_results" in proc.stderr


def test_symlink_already_in_destination_refused(toy_package_session, session_key, tmp_path):
    results = tmp_path / "results"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    results.mkdir()
    (results / toy_model.DATASET).symlink_to(elsewhere, target_is_directory=True)
    before = tree_listing(results)
    proc = _install(toy_package_session, results, key=session_key.public_path)
    assert_one_line_refusal(proc, "symbolic link")
    assert tree_listing(results) == before and tree_listing(elsewhere) == {}
    assert not list(results.glob(".nnseal-staging-*"))


def test_sha256_pin(toy_package_session, session_key, tmp_path):
    from nnseal.fsutil import sha256_file

    results = tmp_path / "results"
    proc = _install(toy_package_session, results, "--sha256", "0" * 64, key=session_key.public_path)
    assert_one_line_refusal(proc, "sha256")
    assert tree_listing(results) == {}
    proc = _install(toy_package_session, results, "--sha256", sha256_file(toy_package_session),
                    key=session_key.public_path)
    assert proc.exit_code == 0, proc.stderr


def test_missing_package_is_environment_error(tmp_path):
    proc = run_cli("install", tmp_path / "nope.zip", "--results", tmp_path / "r", "--trusted-key", tmp_path / "k")
    assert proc.exit_code == 3


def test_legacy_nnunet_zip_needs_unsigned_and_is_cleaned(toy_results_session, tmp_path):
    """A zip laid out like nnUNetv2_export_model_to_zip's (the real exporter runs in test_nnunet_e2e)."""
    legacy = tmp_path / "legacy.zip"
    with zipfile.ZipFile(legacy, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted((toy_results_session / MODEL).rglob("*")):
            if path.is_file():
                z.write(path, str(path.relative_to(toy_results_session)))
    results = tmp_path / "results"
    proc = _install(legacy, results)
    assert_one_line_refusal(proc, "--unsigned")
    proc = run_cli("install", legacy, "--results", results, "--unsigned", "--json")
    assert proc.exit_code == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["provenance"] == "unsigned"
    assert any("provenance NOT checked" in w for w in report["warnings"])
    assert any("postprocessing.pkl" in w for w in report["warnings"])
    model = results / MODEL
    assert not list(model.rglob("*.pkl")) and not list(model.rglob("debug.json"))
    assert "training" not in json.loads((model / "dataset.json").read_text())
    import torch

    ckpt = torch.load(model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    assert "optimizer_state" not in ckpt and "device" not in ckpt["init_args"]
    receipt = json.loads((model / "nnseal-receipt.json").read_text())
    assert receipt["provenance"] == "unsigned"


def test_signed_package_with_unsigned_flag_refused(toy_package_session, tmp_path):
    proc = _install(toy_package_session, tmp_path / "r", "--unsigned")
    assert_one_line_refusal(proc, "without --unsigned")


def test_results_copy_is_untouched_by_failed_installs(toy_package_session, session_key, tmp_path):
    """A results folder holding another model stays byte-for-byte the same when install refuses."""
    results = tmp_path / "results"
    other = results / "Dataset001_Other" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    other.mkdir(parents=True)
    (other / "plans.json").write_text("{}")
    before = tree_listing(results)
    damaged = tmp_path / "damaged.zip"
    shutil.copy(toy_package_session, damaged)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    proc = _install(damaged, results, key=session_key.public_path)
    assert proc.exit_code == 1, proc.stderr
    assert tree_listing(results) == before
