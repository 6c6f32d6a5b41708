"""CycloneDX 1.6 ML-BOM: `scan --format cyclonedx` and `export --bom`, validated against the library's schema."""

from __future__ import annotations

import builtins
import json
import shutil
import zipfile

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from helpers import run_cli

from nnseal import toy_model
from nnseal.format.layout import CARD_NAME
from nnseal.format.oms import SIGNATURE_NAME
from nnseal.verify.signature import read_bundle_unverified


def valid_bom(text: str) -> dict:
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, error
    bom = json.loads(text)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    return bom


def models(bom: dict) -> list[dict]:
    return [c for c in bom["components"] if c["type"] == "machine-learning-model"]


def props(component: dict) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


def file_hashes(component: dict) -> dict[str, str]:
    out = {}
    for child in component.get("components", []):
        assert child["type"] == "file"
        (digest,) = [h["content"] for h in child["hashes"] if h["alg"] == "SHA-256"]
        out[child["name"]] = digest
    return out


def manifest_and_card(package) -> tuple[dict[str, str], str, dict]:
    with zipfile.ZipFile(package) as archive:
        manifest = read_bundle_unverified(archive.read(SIGNATURE_NAME))
        card = json.loads(archive.read(CARD_NAME))
    return manifest.resources, manifest.signer_fingerprint, card


@pytest.fixture()
def exported(tmp_path, toy_model_folder, session_key):
    """The toy model exported with --bom: (package, BOM text)."""
    package, bom_file = tmp_path / "toy.zip", tmp_path / "toy.cdx.json"
    proc = run_cli("export", "-i", toy_model_folder, "-o", package, "--key", session_key.private_path,
                   "--bom", bom_file, "--release", "1.2.0", "--licence", "CC-BY-4.0")
    assert proc.exit_code == 0, proc.stderr
    return package, bom_file.read_text()


def test_export_bom_is_valid_and_records_manifest_signer_and_card(exported, session_key):
    package, text = exported
    bom = valid_bom(text)
    (model,) = models(bom)
    resources, fingerprint, card = manifest_and_card(package)
    assert resources and file_hashes(model) == resources
    import hashlib

    assert model["hashes"] == [{"alg": "SHA-256", "content": hashlib.sha256(package.read_bytes()).hexdigest()}]
    found = props(model)
    assert fingerprint == session_key.fingerprint
    assert found["nnseal:signer:fingerprint"] == fingerprint and found["nnseal:provenance"] == "signed"
    assert found["nnseal:signer:method"] == "key"
    assert model["name"] == card["model"]["name"] and model["version"] == "1.2.0"
    assert model["licenses"] == [{"license": {"name": "CC-BY-4.0"}}]
    assert found["nnseal:card:dataset"] == card["dataset"]
    assert found["nnseal:model:0:configuration"] == card["models"][0]["configuration"]
    # The versions the model was trained with: properties, and framework components it depends on.
    trained = card["trained_with"]
    assert {"nnunetv2", "torch"} <= set(trained)
    by_ref = {c["bom-ref"]: c for c in bom["components"]}
    (edges,) = [d["dependsOn"] for d in bom["dependencies"] if d["ref"] == model["bom-ref"]]
    depended = {by_ref[ref]["name"]: by_ref[ref] for ref in edges}
    for name, entry in trained.items():
        assert found[f"nnseal:trained_with:{name}"] == entry["version"]
        assert depended[name]["version"] == entry["version"]
        assert depended[name]["purl"].startswith("pkg:pypi/")
    assert depended["torch"]["type"] == "framework"


def test_scan_and_export_boms_of_one_package_agree(exported, tmp_path):
    package, text = exported
    out = tmp_path / "scan.cdx.json"
    proc = run_cli("scan", package, "--format", "cyclonedx", "--output", out)
    assert proc.exit_code == 0, proc.stderr  # signed by an untrusted key: "unsigned", below the default gate
    (from_scan,) = models(valid_bom(out.read_text()))
    (from_export,) = models(json.loads(text))
    assert file_hashes(from_scan) == file_hashes(from_export) and from_scan["hashes"] == from_export["hashes"]
    assert props(from_scan)["nnseal:scan:verdict"] == "unsigned"


def test_scan_bom_of_a_results_tree_and_an_installed_model(tmp_path, toy_results_session, exported, session_key):
    from nnseal.fsutil import sha256_file
    from nnseal.verify.install import install_model_from_zip

    package, _ = exported
    tree = tmp_path / "tree"
    shutil.copytree(toy_results_session, tree / "results")
    install_model_from_zip(package, tree / "installed", trusted_keys=[session_key.public_path])
    loose = tree / "loose" / "model.pth"
    loose.parent.mkdir()
    shutil.copy(toy_results_session / toy_model.DATASET / toy_model.model_folder_name("2d") / "fold_0"
                / "checkpoint_final.pth", loose)
    proc = run_cli("scan", tree, "--format", "cyclonedx")
    assert proc.exit_code == 0, proc.stderr
    found = {props(m)["nnseal:kind"]: m for m in models(valid_bom(proc.stdout))}
    assert set(found) == {"installed-model", "model-folder", "checkpoint"}

    installed = found["installed-model"]
    receipt = json.loads(next((tree / "installed").rglob("nnseal-receipt.json")).read_text())
    assert file_hashes(installed) == receipt["files"]
    assert props(installed)["nnseal:signer:fingerprint"] == session_key.fingerprint
    assert props(installed)["nnseal:provenance"] == "signed"

    folder = found["model-folder"]
    source = tree / "results" / toy_model.DATASET / toy_model.model_folder_name("2d")
    assert folder["name"] == source.name
    hashes = file_hashes(folder)
    assert hashes["fold_0/checkpoint_final.pth"] == sha256_file(source / "fold_0" / "checkpoint_final.pth")
    assert "plans.json" in hashes
    assert file_hashes(found["checkpoint"]) == {"model.pth": sha256_file(loose)}
    assert props(found["checkpoint"])["nnseal:scan:verdict"] == "clean"


def test_scan_bom_reports_an_unsafe_checkpoint_verdict(tmp_path, canary):
    import hostile_checkpoints as hostile

    path = hostile.make_reduce_os_system(tmp_path, canary)
    proc = run_cli("scan", path, "--format", "cyclonedx")
    assert proc.exit_code == 1
    (model,) = models(valid_bom(proc.stdout))
    assert props(model)["nnseal:scan:verdict"] == "unsafe" and int(props(model)["nnseal:scan:findings"]) >= 1
    assert not canary.exists()


def test_json_with_cyclonedx_needs_output(toy_model_folder):
    proc = run_cli("scan", toy_model_folder, "--json", "--format", "cyclonedx")
    assert proc.exit_code == 2 and "--output" in proc.stderr


def test_without_the_extra_one_line_refusal_before_any_work(tmp_path, toy_model_folder, session_key, monkeypatch):
    real_import = builtins.__import__

    def no_cyclonedx(name, *args, **kwargs):
        if name == "cyclonedx" or name.startswith("cyclonedx."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cyclonedx)
    proc = run_cli("scan", toy_model_folder, "--format", "cyclonedx")
    assert proc.exit_code == 3 and "nnseal[bom]" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    package = tmp_path / "p.zip"
    proc = run_cli("export", "-i", toy_model_folder, "-o", package, "--key", session_key.private_path,
                   "--bom", tmp_path / "b.json")
    assert proc.exit_code == 3 and "nnseal[bom]" in proc.stderr
    assert not package.exists()
