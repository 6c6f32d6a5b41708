"""A checkpoint is installed only where nnU-Net will run it as what it is, and a dataset id
has one name in a results folder. Verify, scan and install refuse alike; the legacy
(--unsigned) path refuses the same on what sanitizing kept; the results folder stays as it was.
"""

from __future__ import annotations

import json
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
from helpers import assert_one_line_refusal, run_cli, signed_package, tree_listing

from nnseal import toy_model

MODEL = f"{toy_model.DATASET}/{toy_model.model_folder_name('2d')}"
CHECKPOINT = f"{MODEL}/fold_0/checkpoint_final.safetensors"


@pytest.fixture()
def results(tmp_path) -> Path:
    folder = tmp_path / "results"
    other = folder / "Dataset001_Other" / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "fold_0"
    other.mkdir(parents=True)
    (other / "checkpoint_final.pth").write_bytes(b"someone else's model")
    return folder




def _replace(entries, name, data):
    assert name in dict(entries)
    return [(n, data if n == name else d) for n, d in entries]


def _with_checkpoint_meta(blob: bytes, **changes) -> bytes:
    """The safetensors ``blob`` with its nnseal.checkpoint metadata changed (tensor bytes kept)."""
    from nnseal.format.checkpoint_meta import CHECKPOINT_KEY

    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + length])
    meta = json.loads(header["__metadata__"][CHECKPOINT_KEY])
    assert set(changes) <= set(meta)
    meta.update(changes)
    header["__metadata__"][CHECKPOINT_KEY] = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + blob[8 + length:]


def _assert_refused_everywhere(package, results, key, *needles):
    from nnseal.scan import scan_paths
    from nnseal.verify.problems import ProblemKind
    from nnseal.verify.report import verify_package

    before = tree_listing(results)
    assert_one_line_refusal(run_cli("install", package, "--results", results, "--trusted-key", key, "--force",
                                    "--quiet"), *needles)
    assert tree_listing(results) == before
    assert not list(results.glob(".nnseal-staging-*"))
    report = verify_package(package, [key])
    assert report.signature == "valid" and not report.ok
    assert [p.kind for p in report.problems] == [ProblemKind.CONTENT]
    assert all(needle in report.problems[0].message for needle in needles)
    assert scan_paths([package], [key]).failed("unsigned")


def test_the_unchanged_entries_install(package_entries, session_key, tmp_path):
    """Guards the tests below: the refusals come from the change, not from the builder."""
    package = signed_package(tmp_path / "ok.zip", package_entries, session_key.private_path)
    proc = run_cli("install", package, "--results", tmp_path / "r", "--trusted-key", session_key.public_path)
    assert proc.exit_code == 0, proc.stderr
    from nnseal.verify.report import verify_package

    assert verify_package(package, [session_key.public_path]).ok


@pytest.mark.parametrize(("changes", "needles"), [
    ({"configuration": "2d_alt", "fold": 3}, ("configuration '2d_alt' (folder: '2d')", "fold 3 (folder: fold_0)")),
    ({"configuration": "3d_fullres"}, ("configuration '3d_fullres'",)),
    ({"fold": 1}, ("fold 1 (folder: fold_0)",)),
    ({"fold": "all"}, ("fold 'all' (folder: fold_0)",)),
    ({"trainer_name": "nnUNetTrainerNoMirroring"}, ("trainer 'nnUNetTrainerNoMirroring'",)),
])
def test_checkpoint_metadata_must_match_its_folder(changes, needles, package_entries, results, session_key,
                                                   tmp_path):
    blob = _with_checkpoint_meta(dict(package_entries)[CHECKPOINT], **changes)
    package = signed_package(tmp_path / "moved.zip", _replace(package_entries, CHECKPOINT, blob),
                             session_key.private_path)
    # Installed before, so that --force would replace it: the refusal must leave it as it is.
    first = signed_package(tmp_path / "ok.zip", package_entries, session_key.private_path)
    assert run_cli("install", first, "--results", results, "--trusted-key", session_key.public_path).exit_code == 0
    _assert_refused_everywhere(package, results, session_key.public_path, "checkpoint_final.safetensors",
                               "does not belong in this model folder", *needles)


@pytest.mark.parametrize(("change", "needle"), [
    (lambda plans: plans.update(plans_name="nnUNetResEncUNetMPlans"),
     "plans_name is 'nnUNetResEncUNetMPlans' but the model folder's plans identifier is 'nnUNetPlans'"),
    (lambda plans: plans.pop("plans_name"), "plans_name is None"),
    (lambda plans: plans.update(configurations={"2d_alt": plans["configurations"]["2d"]}),
     "configuration '2d' is not in plans.json (it has: 2d_alt)"),
])
def test_plans_json_must_name_the_folders_plans_and_configuration(change, needle, package_entries, results,
                                                                  session_key, tmp_path):
    name = f"{MODEL}/plans.json"
    plans = json.loads(dict(package_entries)[name])
    change(plans)
    data = (json.dumps(plans, indent=2) + "\n").encode()
    package = signed_package(tmp_path / "plans.zip", _replace(package_entries, name, data), session_key.private_path)
    _assert_refused_everywhere(package, results, session_key.public_path, "plans.json", needle)


def _legacy_zip(path: Path, model_dir: Path, results_root: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for file in sorted(model_dir.rglob("*")):
            if file.is_file():
                z.write(file, str(file.relative_to(results_root)))
    return path


@pytest.mark.parametrize(("edit", "needles"), [
    ("configuration", ("configuration '2d_alt' (folder: '2d')", "fold 3 (folder: fold_0)")),
    ("swap_folds", ("fold 1 (folder: fold_0)",)),
    ("plans_name", ("plans_name is 'otherPlans'",)),
])
def test_legacy_install_checks_what_sanitizing_kept(edit, needles, toy_results_session, results, tmp_path):
    import torch

    root = tmp_path / "src"
    shutil.copytree(toy_results_session / MODEL, root / MODEL)
    model = root / MODEL
    if edit == "configuration":
        checkpoint = toy_model.checkpoint_dict(toy_model.ToySpec(), 3, seed=1)
        checkpoint["init_args"]["configuration"] = "2d_alt"
        torch.save(checkpoint, model / "fold_0" / "checkpoint_final.pth")
    elif edit == "swap_folds":
        shutil.copy(model / "fold_1" / "checkpoint_final.pth", model / "fold_0" / "checkpoint_final.pth")
    else:
        plans = json.loads((model / "plans.json").read_text())
        plans["plans_name"] = "otherPlans"
        (model / "plans.json").write_text(json.dumps(plans))
    legacy = _legacy_zip(tmp_path / "legacy.zip", model, root)
    before = tree_listing(results)
    proc = run_cli("install", legacy, "--results", results, "--unsigned", "--quiet")
    assert_one_line_refusal(proc, *needles)
    assert tree_listing(results) == before
    assert not list(results.glob(".nnseal-staging-*"))


@pytest.mark.parametrize("existing", ["Dataset042_toy", "Dataset042_Other", "dataset042_Toy", "DATASET042_TOY"])
def test_a_dataset_id_has_one_name(existing, toy_package_session, toy_results_session, results, session_key,
                                   tmp_path):
    (results / existing / "nnUNetTrainer__nnUNetPlans__3d_fullres").mkdir(parents=True)
    (results / existing / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "plans.json").write_text("{}")
    before = tree_listing(results)
    proc = run_cli("install", toy_package_session, "--results", results, "--trusted-key", session_key.public_path,
                   "--quiet")
    assert_one_line_refusal(proc, f"dataset id 042 is already used by '{existing}'", "'Dataset042_Toy'",
                            str(results / existing))
    assert tree_listing(results) == before
    legacy = _legacy_zip(tmp_path / "legacy.zip", toy_results_session / MODEL, toy_results_session)
    assert_one_line_refusal(run_cli("install", legacy, "--results", results, "--unsigned", "--quiet"),
                            f"already used by '{existing}'")
    assert tree_listing(results) == before
    assert not list(results.glob(".nnseal-staging-*"))


def test_the_same_dataset_name_and_other_ids_are_fine(toy_package_session, results, session_key):
    """A second model of the same dataset, and datasets with other ids, do not block an install."""
    (results / toy_model.DATASET / "nnUNetTrainer__nnUNetPlans__3d_fullres").mkdir(parents=True)
    (results / "Dataset420_Toy").mkdir()
    (results / "Dataset42_Toy").mkdir()  # not an nnU-Net dataset folder (two digits)
    proc = run_cli("install", toy_package_session, "--results", results, "--trusted-key", session_key.public_path,
                   "--quiet")
    assert proc.exit_code == 0, proc.stderr
    assert (results / MODEL / "nnseal-receipt.json").is_file()


def test_export_refuses_a_checkpoint_of_another_fold(toy_results_session, session_key, tmp_path):
    """Export and install agree: what install would refuse is never packaged."""
    model = tmp_path / MODEL
    shutil.copytree(toy_results_session / MODEL, model)
    shutil.copy(model / "fold_1" / "checkpoint_best.pth", model / "fold_0" / "checkpoint_best.pth")
    proc = run_cli("export", "-i", model, "-o", tmp_path / "out.zip", "--key", session_key.private_path, "--quiet")
    assert_one_line_refusal(proc, "checkpoint says fold 1 but lies in fold_0")
    assert not (tmp_path / "out.zip").exists()
