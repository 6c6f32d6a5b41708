"""Training versions in the card and receipt; install's warnings and `nnseal doctor`, through the CLI."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys

import pytest
from helpers import nnunet_export_zip, run_cli, signed_package

from nnseal import toy_model

MODEL = f"{toy_model.DATASET}/{toy_model.model_folder_name('2d')}"
SOFTWARE = ("nnunetv2", "dynamic_network_architectures", "torch")


def _card(package) -> dict:
    import zipfile

    with zipfile.ZipFile(package) as archive:
        return json.loads(archive.read("nnseal-card.json"))


def _install(package, results, key) -> object:
    return run_cli("install", package, "--results", results, "--trusted-key", key.public_path, "--quiet")


def _results_copy(tmp_path, toy_results_session):
    root = tmp_path / "results"
    shutil.copytree(toy_results_session, root)
    return root, root / MODEL


def _export(model_folder, out, key, monkeypatch=None, fake=None):
    from nnseal.package.export import export_model_to_zip

    if fake is None:
        export_model_to_zip(model_folder, out, key=key.private_path)
        return out
    real = importlib.metadata.version
    with monkeypatch.context() as patch:  # what the exporting environment reports
        patch.setattr("nnseal.compat.installed_version", lambda name: fake[name] if name in fake else real(name))
        export_model_to_zip(model_folder, out, key=key.private_path)
    return out


def _doctor(folder, *args):
    return run_cli("doctor", folder, *args)


def _warn_lines(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("warn: ")]


# --- the card ---------------------------------------------------------------------------


def test_card_records_environment_versions_when_no_debug_json_says(toy_package_session):
    trained = _card(toy_package_session)["trained_with"]
    assert trained == {name: {"version": importlib.metadata.version(name), "source": "environment"}
                       for name in SOFTWARE}


def test_card_takes_torch_version_from_debug_json(tmp_path, toy_results_session, session_key):
    _, model = _results_copy(tmp_path, toy_results_session)
    for fold, version in (("fold_0", "2.6.0+cu124"), ("fold_1", "2.5.1+cu121")):
        debug = json.loads((model / fold / "debug.json").read_text())
        (model / fold / "debug.json").write_text(json.dumps({**debug, "torch_version": version,
                                                             "cudnn_version": 90100}))
    trained = _card(_export(model, tmp_path / "p.zip", session_key))["trained_with"]
    assert trained["torch"] == {"version": "2.6.0+cu124", "source": "debug.json"}  # the newer fold's
    assert trained["nnunetv2"] == {"version": importlib.metadata.version("nnunetv2"), "source": "environment"}


def test_old_card_without_versions_parses_and_installs_without_warnings(tmp_path, package_entries, session_key):
    from nnseal.format.card import parse_card

    entries = []
    for name, data in package_entries:
        if name == "nnseal-card.json":
            card = json.loads(data)
            del card["trained_with"]
            data = json.dumps(card).encode()
            assert parse_card(data)["format_version"] == 1
        entries.append((name, data))
    package = signed_package(tmp_path / "old.zip", entries, session_key.private_path)
    result = _install(package, tmp_path / "results", session_key)
    assert result.exit_code == 0, result.stderr
    assert "warning" not in result.stderr
    receipt = json.loads((tmp_path / "results" / MODEL / "nnseal-receipt.json").read_text())
    assert "trained_with" not in receipt
    assert _doctor(tmp_path / "results" / MODEL).exit_code == 0


# --- install --------------------------------------------------------------------------------


def test_install_records_versions_and_warns_nothing_when_all_is_installed(tmp_path, toy_package_session,
                                                                         session_key):
    result = _install(toy_package_session, tmp_path / "results", session_key)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    receipt = json.loads((tmp_path / "results" / MODEL / "nnseal-receipt.json").read_text())
    assert receipt["trained_with"] == _card(toy_package_session)["trained_with"]


def test_install_warns_in_one_line_when_nnunetv2_is_older_than_training(tmp_path, toy_model_folder, session_key,
                                                                        monkeypatch):
    package = _export(toy_model_folder, tmp_path / "p.zip", session_key, monkeypatch, {"nnunetv2": "99.0.1"})
    result = _install(package, tmp_path / "results", session_key)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    installed = importlib.metadata.version("nnunetv2")
    assert lines == [f"nnseal: warning: {MODEL}: installed nnunetv2 {installed} is older than 99.0.1, which this "
                     "model was trained with (environment); upgrade nnunetv2"]
    json_result = run_cli("install", package, "--results", tmp_path / "r2", "--trusted-key",
                          session_key.public_path, "--json")
    assert json_result.exit_code == 0
    assert any("older than 99.0.1" in w for w in json.loads(json_result.stdout)["warnings"])


def test_unsigned_install_takes_torch_version_from_nnunets_zip(tmp_path, toy_results_session, monkeypatch):
    results, model = _results_copy(tmp_path, toy_results_session)
    for fold in ("fold_0", "fold_1"):
        (model / fold / "debug.json").write_text(json.dumps({"torch_version": "99.2.0+cu130"}))
    legacy = tmp_path / "legacy.zip"
    nnunet_export_zip(monkeypatch, results, legacy, configurations=("2d",), folds=(0, 1),
                      save_checkpoints=("checkpoint_final.pth",))
    result = run_cli("install", legacy, "--results", tmp_path / "installed", "--unsigned", "--quiet")
    assert result.exit_code == 0, result.stderr
    receipt = json.loads((tmp_path / "installed" / MODEL / "nnseal-receipt.json").read_text())
    assert receipt["trained_with"] == {"torch": {"version": "99.2.0+cu130", "source": "debug.json"}}
    assert "torch" in result.stderr and "older than 99.2.0+cu130" in result.stderr


# --- doctor ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory, toy_package_session, session_key):
    results = tmp_path_factory.mktemp("doctor") / "nnUNet_results"
    assert _install(toy_package_session, results, session_key).exit_code == 0
    return results / MODEL


def test_doctor_all_ok(installed):
    result = _doctor(installed)
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("ok: ") for line in lines)
    assert "trainer class nnUNetTrainer found" in result.stdout
    document = json.loads(_doctor(installed, "--json").stdout)
    assert document["ok"] is True and document["trainers"] == ["nnUNetTrainer"]
    assert document["installed"] == {name: importlib.metadata.version(name) for name in SOFTWARE}


def test_doctor_warns_when_receipt_says_newer_nnunetv2(tmp_path, installed):
    folder = tmp_path / installed.name
    shutil.copytree(installed, folder)
    receipt = json.loads((folder / "nnseal-receipt.json").read_text())
    receipt["trained_with"]["nnunetv2"] = {"version": "99.0", "source": "environment"}
    (folder / "nnseal-receipt.json").write_text(json.dumps(receipt))
    result = _doctor(folder)
    assert result.exit_code == 1
    warns = _warn_lines(result)
    assert len(warns) == 1 and "nnunetv2" in warns[0] and "older than 99.0" in warns[0]
    document = json.loads(_doctor(folder, "--json").stdout)
    assert document["ok"] is False
    assert [c["check"] for c in document["checks"] if not c["ok"]] == ["nnunetv2"]


def test_doctor_reads_debug_json_in_a_trained_folder(tmp_path, toy_results_session):
    _, model = _results_copy(tmp_path, toy_results_session)
    (model / "fold_0" / "debug.json").write_text(json.dumps({"torch_version": "99.1.0", "device": "cuda:0"}))
    result = _doctor(model)
    assert result.exit_code == 1
    assert _warn_lines(result) == [f"warn: installed torch {importlib.metadata.version('torch')} is older than "
                                   "99.1.0, which this model was trained with (debug.json); upgrade torch"]


def test_doctor_warns_when_nnunetv2_lacks_the_trainer_class(tmp_path, toy_model_folder, canary, monkeypatch):
    folder = tmp_path / "nnUNetTrainerNnsealNoSuch__nnUNetPlans__2d"
    shutil.copytree(toy_model_folder, folder)
    result = _doctor(folder)
    assert result.exit_code == 1
    warns = _warn_lines(result)
    assert len(warns) == 1 and "does not define trainer class nnUNetTrainerNnsealNoSuch" in warns[0]

    # nnU-Net's documented place for custom trainers: found there, by reading, never importing
    external = tmp_path / "my_trainers"
    (external / "variants").mkdir(parents=True)
    (external / "variants" / "__init__.py").write_text("")
    (external / "variants" / "mine.py").write_text(
        f"open({str(canary)!r}, 'w').close()\n"
        "from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer\n\n\n"
        "class nnUNetTrainerNnsealNoSuch(nnUNetTrainer):\n    pass\n")
    monkeypatch.setenv("nnUNet_extTrainer", str(external))
    result = _doctor(folder)
    assert result.exit_code == 0, result.stdout
    assert f"found in {external / 'variants' / 'mine.py'}" in result.stdout
    assert not canary.exists()


def test_doctor_warns_when_nnunetv2_is_not_installed(installed, monkeypatch):
    real = importlib.metadata.version
    monkeypatch.setattr("nnseal.compat.installed_version",
                        lambda name: None if name == "nnunetv2" else real(name))
    result = _doctor(installed)
    assert result.exit_code == 1
    warns = _warn_lines(result)
    assert len(warns) == 2
    assert "nnunetv2 is not installed" in warns[0] and "cannot be looked up" in warns[1]


def test_doctor_refuses_what_is_not_a_model_folder(tmp_path):
    assert _doctor(tmp_path / "missing").exit_code == 3
    (tmp_path / "not_a_model").mkdir()
    result = _doctor(tmp_path / "not_a_model")
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1


def test_doctor_imports_neither_torch_nor_nnunetv2(installed):
    code = ("import sys\nfrom nnseal.cli import main\ntry:\n    main(['doctor', sys.argv[1]])\n"
            "except SystemExit:\n    pass\nprint([m for m in ('torch', 'nnunetv2') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code, str(installed)], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines()[-1] == "[]"
