"""nnseal export: layout, contents, reproducibility, refusals."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest
from helpers import assert_one_line_error, assert_one_line_refusal, run_cli

from nnseal import toy_model

MODEL = f"{toy_model.DATASET}/{toy_model.model_folder_name('2d')}"


def _names(path):
    with zipfile.ZipFile(path) as z:
        return [i.filename for i in z.infolist()]


def test_package_mirrors_nnunet_layout(toy_package_session):
    names = _names(toy_package_session)
    expected = {f"{MODEL}/{n}" for n in ("plans.json", "dataset.json", "dataset_fingerprint.json")}
    expected |= {f"{MODEL}/fold_{f}/{c}.safetensors" for f in (0, 1) for c in ("checkpoint_final", "checkpoint_best")}
    expected |= {"nnseal-card.json", "model.sig"}
    assert set(names) == expected
    assert names[-1] == "model.sig"
    assert not any(n.endswith((".pth", ".pkl", "debug.json", ".txt", ".png")) for n in names)


def test_weights_stored_json_deflated(toy_package_session):
    with zipfile.ZipFile(toy_package_session) as z:
        for info in z.infolist():
            expected = zipfile.ZIP_STORED if info.filename.endswith(".safetensors") else zipfile.ZIP_DEFLATED
            assert info.compress_type == expected, info.filename
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert (info.external_attr >> 16) == 0o100644


def test_weights_bit_identical_and_every_name_recorded(toy_package_session, toy_model_folder, tmp_path):
    import torch
    from safetensors.torch import load_file

    with zipfile.ZipFile(toy_package_session) as z:
        data = z.read(f"{MODEL}/fold_1/checkpoint_best.safetensors")
    out = tmp_path / "c.safetensors"
    out.write_bytes(data)
    stored = load_file(out)
    from safetensors import safe_open

    with safe_open(str(out), "pt") as handle:
        meta = handle.metadata()
    names = json.loads(meta["nnseal.names"])
    aliases = json.loads(meta["nnseal.aliases"])
    original = toy_model.checkpoint_dict(toy_model.ToySpec(), 1, seed=21)["network_weights"]
    assert names == list(original)
    assert len(stored) == 48 and len(names) == 136
    for name, tensor in original.items():
        got = stored[aliases.get(name, name)]
        assert got.dtype == tensor.dtype and got.shape == tensor.shape and torch.equal(got, tensor), name
    info = json.loads(meta["nnseal.checkpoint"])
    assert info["trainer_name"] == "nnUNetTrainer" and info["configuration"] == "2d" and info["fold"] == 1
    assert info["inference_allowed_mirroring_axes"] == [0, 1]


def test_json_cleaned_and_card_records_sources(toy_package_session, toy_model_folder):
    from nnseal.fsutil import sha256_file

    with zipfile.ZipFile(toy_package_session) as z:
        dataset = json.loads(z.read(f"{MODEL}/dataset.json"))
        card = json.loads(z.read("nnseal-card.json"))
        raw = b"".join(z.read(n) for n in z.namelist())
    assert "training" not in dataset and dataset["labels"] == toy_model.LABELS
    assert b"/home/alice" not in raw and str(toy_model_folder).encode() not in raw
    assert card["format"] == "nnseal-package" and card["format_version"] == 1
    assert card["model"]["name"] == "Toy" and card["model"]["licence"] == "CC-BY-4.0"
    assert set(card["created_by"]) == {"nnseal", "torch"}
    [model] = card["models"]
    assert model["configuration"] == "2d" and model["folds"] == ["0", "1"]
    by_entry = {c["entry"]: c for c in model["checkpoints"]}
    record = by_entry[f"{MODEL}/fold_0/checkpoint_final.safetensors"]
    assert record["source_sha256"] == sha256_file(toy_model_folder / "fold_0" / "checkpoint_final.pth")
    assert "optimizer_state" in record["removed"] and "logging" in record["removed"]
    assert record["bytes"] < record["source_bytes"]


def test_export_is_reproducible(toy_model_folder, session_key, tmp_path):
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    for out in (a, b):
        proc = run_cli("export", "-i", toy_model_folder, "-o", out, "--key", session_key.private_path, "--quiet")
        assert proc.exit_code == 0, proc.stderr
    assert a.read_bytes() == b.read_bytes()


def test_json_summary_and_fold_selection(toy_model_folder, session_key, tmp_path):
    out = tmp_path / "f0.zip"
    proc = run_cli("export", "-i", toy_model_folder, "-o", out, "--key", session_key.private_path, "-f", "0",
                   "--checkpoints", "final", "--json")
    assert proc.exit_code == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["signer_fingerprint"] == session_key.fingerprint
    assert {e["name"] for e in summary["entries"] if e["name"].endswith(".safetensors")} == {
        f"{MODEL}/fold_0/checkpoint_final.safetensors"}
    assert summary["bytes_saved"] > 0
    assert summary["notes"] == [  # what was found and not exported, with the flag that would take it
        f"{MODEL}/fold_0/checkpoint_best.pth not exported: not among the checkpoints asked for "
        "(add -chk checkpoint_best)",
        f"{MODEL}/fold_1 not exported: not among the folds asked for (add -f 1)",
        f"not shipped: {MODEL}/crossval_results_folds_0_1_2_3_4/postprocessing.pkl: a pickle, and no "
        "postprocessing.json beside it to rebuild it from"]
    assert proc.stderr == ""  # no progress bar when not on a terminal; notes are in the JSON


def test_nnunet_selection_flags_and_metadata_override(toy_results_session, session_key, tmp_path):
    out = tmp_path / "sel.zip"
    proc = run_cli("export", "-d", "42", "-c", "2d", "-tr", "nnUNetTrainer", "-p", "nnUNetPlans", "-o", out,
                   "--key", session_key.private_path, "--name", "Renamed", "--quiet",
                   env={"nnUNet_results": str(toy_results_session)})
    assert proc.exit_code == 0, proc.stderr
    with zipfile.ZipFile(out) as z:
        card = json.loads(z.read("nnseal-card.json"))
    assert card["model"]["name"] == "Renamed" and card["model"]["release"] == "1.0"


def test_key_from_environment(toy_model_folder, session_key, tmp_path):
    out = tmp_path / "env.zip"
    proc = run_cli("export", "-i", toy_model_folder, "-o", out, "-f", "0", "--quiet",
                   env={"NNSEAL_SIGNING_KEY": str(session_key.private_path)})
    assert proc.exit_code == 0, proc.stderr and out.is_file()


def test_include_progress(toy_model_folder, session_key, tmp_path):
    out = tmp_path / "png.zip"
    proc = run_cli("export", "-i", toy_model_folder, "-o", out, "--key", session_key.private_path, "-f", "0",
                   "--include-progress", "--quiet")
    assert proc.exit_code == 0, proc.stderr
    assert f"{MODEL}/fold_0/progress.png" in _names(out)


@pytest.mark.parametrize("args, needle", [
    (["-f", "3"], "fold_3"),
    (["-f", "7"], "fold_7 was asked for but is missing"),  # any fold_N may be asked for; this one is not there
    (["--checkpoints", "best", "-f", "0"], None),
    (["-chk", "latest", "-f", "1"], "fold_1/checkpoint_latest.pth was asked for but is missing"),
])
def test_missing_fold_or_checkpoint_refused(toy_results_session, session_key, tmp_path, args, needle):
    model = tmp_path / toy_model.DATASET / toy_model.model_folder_name("2d")
    shutil.copytree(toy_results_session / MODEL, model)
    (model / "fold_0" / "checkpoint_best.pth").unlink()
    out = tmp_path / "x.zip"
    proc = run_cli("export", "-i", model, "-o", out, "--key", session_key.private_path, *args)
    # What the command line names and is not there is a missing file (README's exit codes: 3).
    assert_one_line_error(proc, 3, *([needle] if needle else ["checkpoint_best.pth"]))
    assert not out.exists()
    assert not list(tmp_path.glob(".nnseal-tmp-*"))


def test_existing_output_needs_force(toy_model_folder, session_key, tmp_path):
    out = tmp_path / "exists.zip"
    out.write_bytes(b"keep me")
    proc = run_cli("export", "-i", toy_model_folder, "-o", out, "--key", session_key.private_path)
    assert_one_line_refusal(proc, "exists")
    assert out.read_bytes() == b"keep me"
    proc = run_cli("export", "-i", toy_model_folder, "-o", out, "--key", session_key.private_path, "-f", "0",
                   "--force", "--quiet")
    assert proc.exit_code == 0 and zipfile.is_zipfile(out)


def test_refused_checkpoint_leaves_no_output(toy_results_session, session_key, tmp_path, canary):
    import pickle

    model = tmp_path / toy_model.DATASET / toy_model.model_folder_name("2d")
    shutil.copytree(toy_results_session / MODEL, model)

    class Payload:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {canary}",))

    # A raw pickle in place of fold_1's checkpoint: export must refuse the whole package.
    (model / "fold_1" / "checkpoint_final.pth").write_bytes(pickle.dumps(Payload()))
    out = tmp_path / "x.zip"
    proc = run_cli("export", "-i", model, "-o", out, "--key", session_key.private_path)
    assert_one_line_refusal(proc, "checkpoint_final.pth")
    assert not canary.exists() and not out.exists()
    assert not list(tmp_path.glob(".nnseal-tmp-*"))


def test_plans_with_foreign_class_refused(toy_results_session, session_key, tmp_path):
    model = tmp_path / toy_model.DATASET / toy_model.model_folder_name("2d")
    shutil.copytree(toy_results_session / MODEL, model)
    plans = json.loads((model / "plans.json").read_text())
    plans["configurations"]["2d"]["architecture"]["network_class_name"] = "os.system"
    (model / "plans.json").write_text(json.dumps(plans))
    out = tmp_path / "x.zip"
    proc = run_cli("export", "-i", model, "-o", out, "--key", session_key.private_path)
    assert_one_line_refusal(proc, "os.system")
    assert not out.exists()


def test_wrong_passphrase_refused(toy_model_folder, tmp_path):
    from nnseal.format.keys import generate_key_pair

    keys = generate_key_pair(tmp_path / "enc", passphrase=b"right")
    out = tmp_path / "x.zip"
    proc = run_cli("export", "-i", toy_model_folder, "-o", out, "--key", keys.private_path,
                   "--passphrase-env", "PW", env={"PW": "wrong"})
    assert_one_line_refusal(proc)
    assert "passphrase" in proc.stderr.lower() and not out.exists()
    proc = run_cli("export", "-i", toy_model_folder, "-o", out, "--key", keys.private_path, "-f", "0", "--quiet",
                   env={"NNSEAL_KEY_PASSPHRASE": "right"})
    assert proc.exit_code == 0, proc.stderr


def test_non_ecdsa_key_refused(toy_model_folder, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = tmp_path / "ed.pem"
    key.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    out = tmp_path / "x.zip"
    proc = run_cli("export", "-i", toy_model_folder, "-o", out, "--key", key)
    assert_one_line_refusal(proc, "ECDSA")
    assert not out.exists()


def test_usage_errors_exit_2(tmp_path):
    assert run_cli("export", "-o", tmp_path / "x.zip").exit_code == 2
    assert run_cli("export", "-d", "42", "-o", tmp_path / "x.zip").exit_code == 2  # no key
    assert run_cli("export", "-d", "42", "-i", tmp_path, "-o", tmp_path / "x.zip", "--key", tmp_path / "k.pem",
                   ).exit_code == 2


def test_missing_model_folder_is_environment_error(tmp_path, session_key):
    proc = run_cli("export", "-i", tmp_path / "nope", "-o", tmp_path / "x.zip", "--key", session_key.private_path)
    assert proc.exit_code == 3 and len(proc.stderr.strip().splitlines()) == 1


def test_python_api_matches_nnunet_doc(toy_model_folder, session_key, tmp_path):
    from nnseal.package import export_model_to_zip

    report = export_model_to_zip(input_folder=str(toy_model_folder), output_file=str(tmp_path / "m.zip"),
                                 key=session_key.private_path, folds=["0"])
    assert report.package_bytes == (tmp_path / "m.zip").stat().st_size


def test_no_signing_key_is_a_usage_error(toy_model_folder, tmp_path):
    proc = run_cli("export", "-i", toy_model_folder, "-o", tmp_path / "x.zip", env={"NNSEAL_SIGNING_KEY": ""})
    assert proc.exit_code == 2 and "--key" in proc.stderr
    assert not (tmp_path / "x.zip").exists()


@pytest.mark.parametrize("args", [["-f", "07"], ["-f", "1000"], ["--checkpoints", "epoch_50"],
                                  ["-chk", "checkpoint_final.pt"]])
def test_impossible_fold_or_checkpoint_name_is_a_usage_error(args, toy_model_folder, session_key, tmp_path):
    proc = run_cli("export", "-i", toy_model_folder, "-o", tmp_path / "x.zip", "--key", session_key.private_path,
                   *args)
    assert proc.exit_code == 2, proc.stderr
    assert not (tmp_path / "x.zip").exists()
