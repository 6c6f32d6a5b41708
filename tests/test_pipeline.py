"""find_best_configuration's results travel: postprocessing rebuilt without pickles, ensembles, the recommendation.

Interop runs nnU-Net's own code: determine_postprocessing writes the results (tests/pipeline_results.py),
the unmodified ``nnUNetv2_apply_postprocessing`` console script reads the postprocessing.pkl install
rebuilt, and ``print_inference_instructions`` writes the instructions nnseal's must equal.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import assert_one_line_refusal, nnunet_export_zip, run_cli, signed_package, tree_listing
from hostile_pipeline import ATTACKS, postprocessing_names_os_system
from pipeline_results import build_pipeline_results, write_segmentations

from nnseal import toy_model

APPLY_POSTPROCESSING = Path(sys.executable).with_name("nnUNetv2_apply_postprocessing")
ENSEMBLE = "ensemble___nnUNetTrainer__nnUNetPlans__2d___nnUNetTrainer__nnUNetPlans__3d_fullres___0_1"
MODEL_2D = toy_model.model_folder_name("2d")
MODEL_3D = toy_model.model_folder_name("3d_fullres")


@pytest.fixture(scope="session")
def pipeline_results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipeline") / "results"
    root.mkdir()
    return build_pipeline_results(root)


@pytest.fixture(scope="session")
def pipeline_package(tmp_path_factory, pipeline_results, session_key):
    from nnseal.package.export import export_model_to_zip

    out = tmp_path_factory.mktemp("pipeline_package") / "Dataset042_Toy.zip"
    report = export_model_to_zip([pipeline_results / MODEL_2D, pipeline_results / MODEL_3D], out,
                                 key=session_key.private_path)
    return out, report


def _install(package: Path, results: Path, key) -> object:
    return run_cli("install", package, "-o", results, "--trusted-key", key.public_path)


def _read_segmentations(folder: Path) -> dict[str, object]:
    import SimpleITK as sitk

    return {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted(folder.glob("*.nii.gz"))}


def _apply(pkl: Path, model: Path, source: Path, output: Path) -> dict[str, object]:
    proc = subprocess.run([str(APPLY_POSTPROCESSING), "-i", str(source), "-o", str(output), "-pp_pkl_file", str(pkl),
                           "-np", "1", "-plans_json", str(model / "plans.json"),
                           "-dataset_json", str(model / "dataset.json")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return _read_segmentations(output)


# --- export ------------------------------------------------------------------------


def test_export_ships_pipeline_files_cleaned(pipeline_package):
    package, report = pipeline_package
    with zipfile.ZipFile(package) as z:
        names = set(z.namelist())
        summary = json.loads(z.read(f"Dataset042_Toy/{MODEL_2D}/crossval_results_folds_0_1/summary.json"))
        info = json.loads(z.read("Dataset042_Toy/inference_information.json"))
    assert f"Dataset042_Toy/{MODEL_2D}/crossval_results_folds_0_1/postprocessing.json" in names
    assert f"Dataset042_Toy/ensembles/{ENSEMBLE}/postprocessing.json" in names
    assert f"Dataset042_Toy/ensembles/{ENSEMBLE}/summary.json" in names
    assert not [n for n in names if n.endswith(".pkl")]
    assert set(summary) == {"foreground_mean", "mean"}  # metric_per_case (paths, case ids) dropped
    best = info["best_model_or_ensemble"]
    assert best["postprocessing_file"] == f"Dataset042_Toy/ensembles/{ENSEMBLE}/postprocessing.pkl"
    assert best["some_plans_file"] == f"Dataset042_Toy/{MODEL_2D}/plans.json"  # the ensemble's copy is not shipped
    assert "/tmp" not in json.dumps(info)
    # The toy's placeholder crossval_results_folds_0_1_2_3_4/postprocessing.pkl has no JSON: said, not shipped.
    assert any("postprocessing.pkl" in note for note in report.skipped)


def test_export_skips_ensemble_and_recommendation_without_all_members(pipeline_results, session_key, tmp_path):
    from nnseal.package.export import export_model_to_zip

    report = export_model_to_zip(pipeline_results / MODEL_2D, tmp_path / "p.zip", key=session_key.private_path)
    assert not [n for n in report.pipeline if "/ensembles/" in n or n.endswith("inference_information.json")]
    assert any(ENSEMBLE in note and "not exported" in note for note in report.skipped)
    assert any("inference_information.json" in note for note in report.skipped)


# --- install ---------------------------------------------------------------------


def test_install_writes_nnunet_layout_and_instructions(pipeline_package, session_key, tmp_path, monkeypatch):
    from nnunetv2.evaluation import find_best_configuration

    package, _ = pipeline_package
    results = tmp_path / "results"
    result = _install(package, results, session_key)
    assert result.exit_code == 0, result.stderr
    dataset = results / "Dataset042_Toy"
    for folder in (dataset / MODEL_2D / "crossval_results_folds_0_1", dataset / "ensembles" / ENSEMBLE):
        assert (folder / "postprocessing.pkl").is_file() and (folder / "summary.json").is_file()
    info = json.loads((dataset / "inference_information.json").read_text())
    best = info["best_model_or_ensemble"]
    assert best["postprocessing_file"] == str(dataset / "ensembles" / ENSEMBLE / "postprocessing.pkl")
    assert Path(best["some_plans_file"]).is_file() and Path(best["postprocessing_file"]).is_file()
    # nnU-Net's own print_inference_instructions on the installed information writes the same text.
    monkeypatch.setenv("nnUNet_results", str(results))  # nnunetv2.paths reads these when used
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    monkeypatch.setattr(find_best_configuration, "default_num_processes", 8)
    expected = tmp_path / "expected.txt"
    find_best_configuration.print_inference_instructions(info, instructions_file=str(expected))
    assert (dataset / "inference_instructions.txt").read_text() == expected.read_text()
    for folder in (dataset / MODEL_2D, dataset / MODEL_3D, dataset / "ensembles" / ENSEMBLE):
        assert run_cli("verify", folder).exit_code == 0
    # The dataset-level files are in the model receipts: changing one is drift.
    (dataset / "inference_information.json").write_text("{}")
    drift = run_cli("verify", dataset / MODEL_2D)
    assert drift.exit_code == 1 and "../inference_information.json" in drift.stdout + drift.stderr


def test_install_refuses_existing_recommendation_without_force(pipeline_package, session_key, tmp_path):
    package, _ = pipeline_package
    results = tmp_path / "results"
    (results / "Dataset042_Toy").mkdir(parents=True)
    (results / "Dataset042_Toy" / "inference_information.json").write_text("{}")
    before = tree_listing(results)
    result = _install(package, results, session_key)
    assert_one_line_refusal(result, "inference_information.json")
    assert tree_listing(results) == before
    assert run_cli("install", package, "-o", results, "--trusted-key", session_key.public_path,
                   "--force").exit_code == 0
    assert json.loads((results / "Dataset042_Toy" / "inference_information.json").read_text())


def test_inspect_shows_cross_validation_dice(pipeline_package):
    package, _ = pipeline_package
    result = run_cli("inspect", package, "--json")
    metrics = {m.pop("folder"): m for m in json.loads(result.stdout)["metrics"]}
    with zipfile.ZipFile(package) as z:
        pp = json.loads(z.read(f"Dataset042_Toy/ensembles/{ENSEMBLE}/postprocessing.json"))
    assert metrics[f"ensembles/{ENSEMBLE}"] == {"dice": pp["input_folder"]["foreground_mean"]["Dice"],
                                                "dice_postprocessed": pp["postprocessed"]["foreground_mean"]["Dice"]}
    assert "cv dice:" in run_cli("inspect", package).stdout


# --- the rebuilt pickle ----------------------------------------------------------------


def test_rebuilt_pickle_names_only_allowlisted_globals(pipeline_results):
    from nnseal.readers.pickle_stream import scan_pickle
    from nnseal.sanitize.pipeline_json import POSTPROCESSING_FUNCTIONS
    from nnseal.verify.postprocessing_pickle import postprocessing_pickle_bytes

    data = json.loads((pipeline_results / MODEL_2D / "crossval_results_folds_0_1" / "postprocessing.json").read_text())
    assert data["postprocessing_fns"]  # determine_postprocessing chose steps: the pickle names functions
    scan = scan_pickle(postprocessing_pickle_bytes(data))
    allowed = {f"{module}.{name}" for name, module in POSTPROCESSING_FUNCTIONS.items()}
    assert set(scan.globals) == allowed
    assert not scan.anomalies
    assert scan.opcodes <= {"PROTO", "EMPTY_LIST", "MARK", "GLOBAL", "APPENDS", "EMPTY_DICT", "BINUNICODE",
                            "BININT", "SETITEMS", "TUPLE", "TUPLE2", "STOP"}


def test_rebuilt_pickle_postprocesses_like_nnunets_own(pipeline_results, tmp_path):
    """determine_postprocessing's pickle and the one rebuilt from its JSON, through the real console script."""
    from nnseal.verify.postprocessing_pickle import write_postprocessing_pickle

    crossval = pipeline_results / MODEL_2D / "crossval_results_folds_0_1"
    noisy = tmp_path / "noisy"
    write_segmentations(noisy, noisy=True)
    rebuilt = tmp_path / "postprocessing.pkl"
    write_postprocessing_pickle(rebuilt, json.loads((crossval / "postprocessing.json").read_text()))
    ours = _apply(rebuilt, pipeline_results / MODEL_2D, noisy, tmp_path / "ours")
    theirs = _apply(crossval / "postprocessing.pkl", pipeline_results / MODEL_2D, noisy, tmp_path / "theirs")
    before = _read_segmentations(noisy)
    assert set(ours) == set(theirs) == set(before)
    assert any((before[n] != theirs[n]).any() for n in before)  # postprocessing changed something
    assert all((ours[n] == theirs[n]).all() for n in theirs)


def test_rebuilt_pickle_with_lists_regions_and_background(pipeline_results, tmp_path):
    """Every argument type nnU-Net writes: a list of labels, a region (tuple), a label, background_label."""
    from batchgenerators.utilities.file_and_folder_operations import save_pickle
    from nnunetv2.postprocessing.remove_connected_components import remove_all_but_largest_component_from_segmentation
    from nnunetv2.utilities.json_export import recursive_fix_for_json_export

    from nnseal.verify.postprocessing_pickle import write_postprocessing_pickle

    fn = remove_all_but_largest_component_from_segmentation
    kwargs = [{"labels_or_regions": [1, 2]}, {"labels_or_regions": [(1, 2)], "background_label": 0},
              {"labels_or_regions": 2, "background_label": 1}]
    theirs_pkl = tmp_path / "theirs.pkl"
    save_pickle(([fn] * len(kwargs), kwargs), str(theirs_pkl))
    record = {"postprocessing_fns": [fn.__name__] * len(kwargs), "postprocessing_kwargs": kwargs}
    recursive_fix_for_json_export(record)  # as determine_postprocessing does before save_json
    ours_pkl = tmp_path / "ours.pkl"
    write_postprocessing_pickle(ours_pkl, json.loads(json.dumps(record)))
    noisy = tmp_path / "noisy"
    write_segmentations(noisy, noisy=True)
    ours = _apply(ours_pkl, pipeline_results / MODEL_2D, noisy, tmp_path / "ours")
    theirs = _apply(theirs_pkl, pipeline_results / MODEL_2D, noisy, tmp_path / "theirs")
    assert all((ours[n] == theirs[n]).all() for n in theirs)
    assert any((_read_segmentations(noisy)[n] != theirs[n]).any() for n in theirs)


# --- hostile ----------------------------------------------------------------------------


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_hostile_pipeline_package_refused(attack, pipeline_package, session_key, tmp_path, canary):
    package, _ = pipeline_package
    generator, needle = ATTACKS[attack]
    with zipfile.ZipFile(package) as z:
        entries = [(i.filename, z.read(i)) for i in z.infolist()]
    hostile = signed_package(tmp_path / "hostile.zip", generator(entries), session_key.private_path)
    results = tmp_path / "results"
    results.mkdir()
    before = tree_listing(tmp_path)
    result = run_cli("install", hostile, "-o", results, "--trusted-key", session_key.public_path, cwd=tmp_path)
    assert_one_line_refusal(result, needle)
    verify = run_cli("verify", hostile, "--trusted-key", session_key.public_path, cwd=tmp_path)
    assert verify.exit_code == 1
    assert tree_listing(tmp_path) == before
    assert not canary.exists()


@pytest.mark.parametrize("attack", ["postprocessing_names_os_system", "postprocessing_names_save_pickle",
                                    "postprocessing_kwarg_wrong_type", "postprocessing_unknown_kwarg"])
def test_export_refuses_hostile_postprocessing_json(attack, pipeline_results, session_key, tmp_path, canary):
    results = tmp_path / "results"
    shutil.copytree(pipeline_results, results / "Dataset042_Toy")
    pp = results / "Dataset042_Toy" / MODEL_2D / "crossval_results_folds_0_1" / "postprocessing.json"
    generator, needle = ATTACKS[attack]
    [(_, data)] = generator([(str(pp), pp.read_bytes())])
    pp.write_bytes(data)
    before = tree_listing(tmp_path)
    result = run_cli("export", "-i", results / "Dataset042_Toy" / MODEL_2D, "-o", tmp_path / "out.zip",
                     "--key", session_key.private_path, cwd=tmp_path)
    assert_one_line_refusal(result, needle)
    assert tree_listing(tmp_path) == before
    assert not canary.exists()


# --- nnU-Net's own export zip (install --unsigned) ----------------------------------------


@pytest.fixture(scope="session")
def nnunet_pipeline_zip(tmp_path_factory, pipeline_results) -> Path:
    from pipeline_results import CONFIGURATIONS, FOLDS

    out = tmp_path_factory.mktemp("nnunet_zip") / "nnunet_export.zip"
    with pytest.MonkeyPatch.context() as monkeypatch:
        nnunet_export_zip(monkeypatch, pipeline_results.parent, out, configurations=CONFIGURATIONS, folds=FOLDS)
    return out


def test_unsigned_install_rebuilds_postprocessing_from_json(nnunet_pipeline_zip, tmp_path):
    from nnseal.verify.postprocessing_pickle import postprocessing_pickle_bytes

    with zipfile.ZipFile(nnunet_pipeline_zip) as z:
        names = z.namelist()
        shipped_pkl = z.read(f"Dataset042_Toy/ensembles/{ENSEMBLE}/postprocessing.pkl")
        pp_json = json.loads(z.read(f"Dataset042_Toy/ensembles/{ENSEMBLE}/postprocessing.json"))
    assert "Dataset042_Toy/inference_information.json" in names
    results = tmp_path / "results"
    result = run_cli("install", nnunet_pipeline_zip, "-o", results, "--unsigned")
    assert result.exit_code == 0, result.stderr
    dataset = results / "Dataset042_Toy"
    installed_pkl = (dataset / "ensembles" / ENSEMBLE / "postprocessing.pkl").read_bytes()
    assert installed_pkl == postprocessing_pickle_bytes(pp_json) != shipped_pkl  # rebuilt, not copied
    assert (dataset / MODEL_3D / "crossval_results_folds_0_1" / "postprocessing.pkl").is_file()
    summary = json.loads((dataset / MODEL_2D / "crossval_results_folds_0_1" / "summary.json").read_text())
    assert "metric_per_case" not in summary
    info = json.loads((dataset / "inference_information.json").read_text())
    assert info["best_model_or_ensemble"]["postprocessing_file"] == str(dataset / "ensembles" / ENSEMBLE /
                                                                        "postprocessing.pkl")
    assert (dataset / "inference_instructions.txt").is_file()
    assert run_cli("verify", dataset / "ensembles" / ENSEMBLE).exit_code == 0


def test_unsigned_install_refuses_hostile_postprocessing_json(nnunet_pipeline_zip, tmp_path, canary):
    hostile = tmp_path / "hostile.zip"
    with zipfile.ZipFile(nnunet_pipeline_zip) as source, zipfile.ZipFile(hostile, "w") as out:
        entries = postprocessing_names_os_system([(i.filename, source.read(i)) for i in source.infolist()])
        for name, data in entries:
            out.writestr(name, data)
    results = tmp_path / "results"
    results.mkdir()
    before = tree_listing(tmp_path)
    result = run_cli("install", hostile, "-o", results, "--unsigned", cwd=tmp_path)
    assert_one_line_refusal(result, "os.system")
    assert tree_listing(tmp_path) == before
    assert not canary.exists()


def test_scan_passes_an_installed_results_folder(pipeline_package, session_key, tmp_path):
    """The rebuilt postprocessing.pkl files are a note, not a failure: the CI gate passes the install."""
    package, _ = pipeline_package
    results = tmp_path / "results"
    assert _install(package, results, session_key).exit_code == 0
    pickles = sorted(results.rglob("postprocessing.pkl"))
    assert len(pickles) >= 2
    result = run_cli("scan", results, "--format", "json", "--fail-on", "unsafe")
    assert result.exit_code == 0, result.stdout
    findings = json.loads(result.stdout)["findings"]
    noted = {f["path"] for f in findings if f["rule"] == "nnunet-postprocessing"}
    assert noted == {str(p) for p in pickles}
    assert {f["rule"] for f in findings} <= {"nnunet-postprocessing"}


@pytest.mark.parametrize("attack", ["postprocessing_pickle_calls_os_system",
                                    "postprocessing_pickle_calls_allowed_function",
                                    "postprocessing_pickle_stack_global_through_memo",
                                    "postprocessing_pickle_followed_by_another"])
def test_scan_flags_a_postprocessing_pickle_that_calls(attack, tmp_path, canary):
    import hostile_pipeline

    folder = tmp_path / "Dataset042_Toy" / "nnUNetTrainer__nnUNetPlans__2d" / "crossval_results_folds_0_1"
    folder.mkdir(parents=True)
    (folder / "postprocessing.pkl").write_bytes(getattr(hostile_pipeline, attack)(str(canary)))
    before = tree_listing(tmp_path)
    result = run_cli("scan", tmp_path, "--format", "json", "--fail-on", "unsafe")
    assert result.exit_code == 1, result.stdout
    rules = {f["rule"] for f in json.loads(result.stdout)["findings"]}
    assert "nnunet-postprocessing" not in rules and rules & {"dangerous-global", "model-format"}
    assert tree_listing(tmp_path) == before and not canary.exists()


def test_list_and_uninstall_with_ensembles_and_dataset_files(pipeline_package, session_key, tmp_path):
    """An ensemble goes with any of its members; the dataset-level files go with the last model whose
    receipt records them, so every model left still verifies."""
    package, _ = pipeline_package
    results = tmp_path / "results"
    assert _install(package, results, session_key).exit_code == 0
    dataset = results / "Dataset042_Toy"
    before = tree_listing(results)
    again = _install(package, results, session_key)  # the same package: nothing to do
    assert again.exit_code == 0 and f"already installed {dataset / 'ensembles' / ENSEMBLE}" in again.stdout
    assert tree_listing(results) == before
    listed = json.loads(run_cli("list", "--results", results, "--json").stdout)["models"]
    assert [(i["name"].split("/", 1)[1], i["kind"], i["status"]) for i in listed] == [
        (f"ensembles/{ENSEMBLE}", "ensemble", "ok"), ("inference_information.json", "file", "ok"),
        ("inference_instructions.txt", "file", "ok"), (MODEL_2D, "model", "ok"), (MODEL_3D, "model", "ok")]
    assert listed[0]["members"] == [MODEL_2D, MODEL_3D] and listed[1]["recorded_by"] == [
        f"Dataset042_Toy/{MODEL_2D}", f"Dataset042_Toy/{MODEL_3D}"]

    first = run_cli("uninstall", dataset / MODEL_2D, "--json")
    assert first.exit_code == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["removed"] == [str(dataset / "ensembles" / ENSEMBLE), str(dataset / MODEL_2D)]
    assert sorted(report["kept"]) == [f"{dataset / name}: the receipt of {MODEL_3D} records it too"
                                      for name in ("inference_information.json", "inference_instructions.txt")]
    assert sorted(p.name for p in dataset.iterdir()) == ["inference_information.json", "inference_instructions.txt",
                                                         MODEL_3D]
    assert run_cli("verify", "--all", "--results", results).exit_code == 0

    last = run_cli("uninstall", "Dataset042_Toy/" + MODEL_3D, "--results", results)
    assert last.exit_code == 0, last.stderr
    assert f"removed {dataset / 'inference_information.json'}" in last.stdout
    assert tree_listing(results) == {}
