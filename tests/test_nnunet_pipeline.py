"""The whole recommended nnU-Net pipeline travels: find_best_configuration -> export -> install ->
nnUNetv2_predict, nnUNetv2_ensemble, nnUNetv2_apply_postprocessing, from the installed folder
exactly as from the original one.

The results tree is nnU-Net's own (tests/nnunet_pipeline.py). Every nnU-Net step here is its
console script's function with its command line, in one child process per side whose
nnUNet_results is the original or the installed folder (and no nnUNet_raw or
nnUNet_preprocessed: a user who installs a model has neither).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import nnunet_pipeline as nn
import pytest
from helpers import run_cli, tree_listing
from hostile_checkpoints import Reduce, run_unpickler_on, touch

pytestmark = pytest.mark.nnunet

POSTPROCESSING_FILES = ("postprocessing.json", "postprocessing.pkl", "summary.json")


def _run_both(commands: dict[str, list[list[str]]], results: dict[str, Path]) -> None:
    """Run each side's nnU-Net commands, the two sides at once (a CI runner has two cores)."""
    procs = {side: nn.start_console_scripts(commands[side], results[side]) for side in commands}
    for side, proc in procs.items():
        nn.finish(proc, f"{side}: {commands[side]}")


def _sides(pipeline: nn.Pipeline, installed: Path) -> dict[str, Path]:
    return {"original": pipeline.results, "installed": installed}


def _postprocessing_folders(results: Path) -> list[Path]:
    return [nn.model_folder(results, c) / nn.CROSSVAL for c in nn.CONFIGURATIONS] + [nn.ensemble_folder(results)]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> nn.Pipeline:
    return nn.build(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="module")
def pickle_canary(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("canary") / "ORIGINAL_PICKLE_WAS_LOADED"


@pytest.fixture(scope="module")
def package(pipeline, session_key, pickle_canary, tmp_path_factory) -> Path:
    """Export both model folders while every pickle of the original tree is a canary; restore them after."""
    import pickle

    payload = pickle.dumps(Reduce(os.system, touch(pickle_canary)), protocol=2)
    before = tree_listing(pipeline.results)
    originals = {path: path.read_bytes() for path in pipeline.results.rglob("*.pkl")}
    # three postprocessing.pkl (two crossvals, the ensemble), one per validation case and configuration
    assert len(originals) == 3 + len(nn.CONFIGURATIONS) * len(nn.FOLDS)
    out = tmp_path_factory.mktemp("package") / f"{nn.DATASET}.zip"
    try:
        for path in originals:
            path.write_bytes(payload)
        proc = run_cli("export", *(arg for c in nn.CONFIGURATIONS for arg in ("-i", pipeline.model_folder(c))),
                       "-o", out, "--key", session_key.private_path, "--quiet")
    finally:
        for path, data in originals.items():
            path.write_bytes(data)
    assert proc.exit_code == 0, proc.stderr
    assert tree_listing(pipeline.results) == before  # export wrote nothing into the results it read
    return out


@pytest.fixture(scope="module")
def installed(package, session_key, tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("installed") / "nnUNet_results"
    proc = run_cli("install", package, "--results", results, "--trusted-key", session_key.public_path, "--quiet")
    assert proc.exit_code == 0, proc.stderr
    return results


@pytest.fixture(scope="module")
def outputs(pipeline, installed, tmp_path_factory) -> dict[str, Path]:
    """side -> a folder holding nnUNetv2_predict's output per configuration (segmentations and
    probabilities) and nnUNetv2_ensemble's of the two."""
    out = tmp_path_factory.mktemp("outputs")
    commands = {side: [["nnUNetv2_predict", "-d", str(nn.DATASET_ID), "-c", c, "-f", *map(str, nn.FOLDS),
                        "-i", str(pipeline.images_ts), "-o", str(out / side / c), "--save_probabilities",
                        "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_progress_bar"]
                       for c in nn.CONFIGURATIONS]
                + [["nnUNetv2_ensemble", "-i", *(str(out / side / c) for c in nn.CONFIGURATIONS),
                    "-o", str(out / side / "ensemble"), "-np", "1"]]
                for side in ("original", "installed")}
    _run_both(commands, _sides(pipeline, installed))
    return {side: out / side for side in commands}


SINGLE = nn.CONFIGURATIONS[-1]  # the single configuration whose postprocessing is applied


@pytest.fixture(scope="module")
def postprocessed(pipeline, installed, outputs) -> dict[str, Path]:
    """side -> nnUNetv2_apply_postprocessing's outputs: SINGLE's prediction with its crossval
    postprocessing.pkl, the ensemble's with the ensemble's (and a member's plans.json, as nnU-Net
    asks for an ensemble)."""
    sides = _sides(pipeline, installed)
    commands = {}
    for side, results in sides.items():
        single = nn.model_folder(results, SINGLE)
        commands[side] = [
            ["nnUNetv2_apply_postprocessing", "-i", str(outputs[side] / SINGLE), "-o", str(outputs[side] / "pp_single"),
             "-pp_pkl_file", _postprocessing_pkl(side, single / nn.CROSSVAL), "-np", "1",
             "-plans_json", str(single / "plans.json")],
            ["nnUNetv2_apply_postprocessing", "-i", str(outputs[side] / "ensemble"),
             "-o", str(outputs[side] / "pp_ensemble"), "-pp_pkl_file",
             _postprocessing_pkl(side, nn.ensemble_folder(results)), "-np", "1",
             "-plans_json", str(nn.model_folder(results, nn.CONFIGURATIONS[0]) / "plans.json")],
        ]
    _run_both(commands, sides)
    return outputs


def _assert_identical_outputs(a: Path, b: Path) -> int:
    """Same files, same bytes, and the same decoded segmentations and probabilities; returns the count."""
    import numpy as np
    import SimpleITK as sitk

    names = sorted(p.name for p in a.iterdir() if p.name.endswith((nn.FILE_ENDING, ".npz")))
    assert names and names == sorted(p.name for p in b.iterdir() if p.name.endswith((nn.FILE_ENDING, ".npz")))
    for name in names:
        if name.endswith(".npz"):
            with np.load(a / name) as x, np.load(b / name) as y:
                assert sorted(x.files) == sorted(y.files), name
                for key in x.files:
                    assert np.array_equal(x[key], y[key]), (name, key)
        else:
            x, y = sitk.ReadImage(str(a / name)), sitk.ReadImage(str(b / name))
            assert np.array_equal(sitk.GetArrayFromImage(x), sitk.GetArrayFromImage(y)), name
            geometry = (x.GetSpacing(), x.GetOrigin(), x.GetDirection())
            assert geometry == (y.GetSpacing(), y.GetOrigin(), y.GetDirection()), name
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for properties in a.glob("*.pkl"):  # nnU-Net's per-case properties, beside the probabilities: bytes only
        assert properties.read_bytes() == (b / properties.name).read_bytes(), properties.name
    return len(names)


def _postprocessing_pkl(side: str, folder: Path) -> str:
    pkl = folder / "postprocessing.pkl"
    assert pkl.is_file(), f"postprocessing.pkl missing in the {side} folder: {pkl}"
    return str(pkl)


def _segmentations_differ(a: Path, b: Path) -> bool:
    return any((a / p.name).read_bytes() != p.read_bytes() for p in b.glob(f"*{nn.FILE_ENDING}"))


# --- the fixture means something ---------------------------------------------------------------


def test_find_best_configuration_chose_the_ensemble_and_postprocessing(pipeline):
    import json

    info = json.loads((pipeline.results / nn.DATASET / "inference_information.json").read_text())
    chosen = info["best_model_or_ensemble"]["selected_model_or_models"]
    assert [m["configuration"] for m in chosen] == list(nn.CONFIGURATIONS)
    assert info["best_model_or_ensemble"]["postprocessing_file"] == str(pipeline.ensemble_folder() /
                                                                         "postprocessing.pkl")
    # the ground truth is the cleaned ensemble: removing components must win, for the foreground and each label
    pp = json.loads((pipeline.ensemble_folder() / "postprocessing.json").read_text())
    assert pp["postprocessing_fns"] == ["remove_all_but_largest_component_from_segmentation"] * 3
    assert [k["labels_or_regions"] for k in pp["postprocessing_kwargs"]] == [[1, 2], 1, 2]
    assert (pipeline.results / nn.DATASET / "inference_instructions.txt").is_file()
    for configuration in nn.CONFIGURATIONS:
        for name in POSTPROCESSING_FILES:
            assert (pipeline.model_folder(configuration) / nn.CROSSVAL / name).is_file()


def test_the_canary_pickle_fires_when_loaded(tmp_path, canary):
    """Control experiment for the export fixture: plain pickle.load of its payload creates the canary."""
    import pickle

    path = tmp_path / "postprocessing.pkl"
    path.write_bytes(pickle.dumps(Reduce(os.system, touch(canary)), protocol=2))
    run_unpickler_on(path)
    assert canary.exists()


# --- export and install ------------------------------------------------------------------------


def test_export_never_reads_nnunets_pickles(package, pickle_canary):
    import zipfile

    assert not pickle_canary.exists()
    with zipfile.ZipFile(package) as z:
        names = z.namelist()
    assert not [n for n in names if n.endswith((".pkl", ".npz"))], names


def test_installed_tree_has_the_pipelines_files_and_no_other_pickle(pipeline, installed):
    dataset = installed / nn.DATASET
    expected = [dataset / "inference_information.json", dataset / "inference_instructions.txt"]
    for folder in _postprocessing_folders(installed):
        expected += [folder / name for name in POSTPROCESSING_FILES]
    missing = [str(p.relative_to(installed)) for p in expected if not p.is_file()]
    assert not missing, f"missing in the installed folder: {missing}"
    pickles = sorted(p for p in installed.rglob("*") if p.suffix in (".pkl", ".npz", ".pickle"))
    assert all(p.name == "postprocessing.pkl" and p.with_name("postprocessing.json").is_file()
               for p in pickles), pickles
    assert len(pickles) == len(nn.CONFIGURATIONS) + 1
    # the instructions name files of the installed tree, never the original's
    instructions = (dataset / "inference_instructions.txt").read_text()
    named = [Path(t) for t in shlex.split(instructions) if t.startswith("/")]
    assert named
    for path in named:
        assert path.is_file() and path.is_relative_to(installed), path
    # nor does anything installed name the original machine's folders
    leaks = [str(p) for p in installed.rglob("*") if p.is_file() and str(pipeline.root).encode() in p.read_bytes()]
    assert not leaks, leaks


def test_rebuilt_postprocessing_pickles_hold_what_nnunet_wrote(pipeline, installed):
    """nnU-Net's load_pickle reads from each rebuilt file the (functions, kwargs) it reads from the
    original: whatever nnU-Net chose, empty lists where removing components gained nothing."""
    import json
    import subprocess
    import sys

    folders = zip(_postprocessing_folders(pipeline.results), _postprocessing_folders(installed), strict=True)
    pairs = [(str(a / "postprocessing.pkl"), _postprocessing_pkl("installed", b)) for a, b in folders]
    code = ("import json, sys\n"
            "from batchgenerators.utilities.file_and_folder_operations import load_pickle\n"
            "for a, b in json.loads(sys.argv[1]):\n"
            "    assert load_pickle(a) == load_pickle(b), (a, b)\n")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(pairs)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


# --- nnU-Net from the installed folder ---------------------------------------------------------


def test_predictions_and_ensemble_are_identical(outputs):
    for configuration in nn.CONFIGURATIONS:
        assert _assert_identical_outputs(outputs["original"] / configuration,
                                         outputs["installed"] / configuration) == 2 * nn.TEST_CASES
    assert _segmentations_differ(outputs["original"] / "2d", outputs["original"] / "3d_fullres")
    assert _assert_identical_outputs(outputs["original"] / "ensemble", outputs["installed"] / "ensemble") == \
        nn.TEST_CASES


def test_single_configuration_postprocessing_is_identical(postprocessed):
    assert _assert_identical_outputs(postprocessed["original"] / "pp_single",
                                     postprocessed["installed"] / "pp_single") == nn.TEST_CASES


def test_ensemble_postprocessing_is_identical(postprocessed):
    assert _assert_identical_outputs(postprocessed["original"] / "pp_ensemble",
                                     postprocessed["installed"] / "pp_ensemble") == nn.TEST_CASES
    # postprocessing changed something, so the comparison covers it
    assert _segmentations_differ(postprocessed["original"] / "ensemble", postprocessed["original"] / "pp_ensemble")
