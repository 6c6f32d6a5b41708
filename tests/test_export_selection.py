"""Export selects as nnU-Net does: any fold_N, every checkpoint name nnU-Net writes, -d without -c,
nnU-Net's multi-value flags (-f 0 1 2, -c 2d 3d_fullres, -chk ...), cascades; and nothing found is
left out without a note."""

from __future__ import annotations

import json
import shutil
import zipfile

import click
import pytest
from click.testing import CliRunner
from helpers import assert_one_line_error, assert_one_line_refusal, nnunet_export_zip, run_cli, tree_listing

from nnseal import toy_model

DATASET = toy_model.DATASET
TEN_FOLDS = (*range(10), "all")
ALL_CHECKPOINTS = ("checkpoint_final", "checkpoint_best", "checkpoint_latest")
SMALL_2D = toy_model.ToySpec(features=(2, 4), patch_size=(16, 16))
SMALL_3D = toy_model.ToySpec(configuration="3d_fullres", features=(2, 4), patch_size=(8, 8, 8))
M2D = f"{DATASET}/{toy_model.model_folder_name('2d')}"
M3D = f"{DATASET}/{toy_model.model_folder_name('3d_fullres')}"


@pytest.fixture(scope="module")
def ten_fold_results(tmp_path_factory):
    """10-fold cross-validation plus fold_all, with all three checkpoints nnU-Net writes (2d), and a 3d_fullres."""
    root = tmp_path_factory.mktemp("ten_fold")
    toy_model.build_results(root, folds=TEN_FOLDS, spec=SMALL_2D, checkpoints=ALL_CHECKPOINTS)
    toy_model.build_results(root, folds=(0,), spec=SMALL_3D)
    return root


@pytest.fixture(scope="module")
def cascade_results(tmp_path_factory):
    """nnU-Net's cascade: 3d_lowres, and 3d_cascade_fullres whose plans name it as previous_stage."""
    root = tmp_path_factory.mktemp("cascade")
    for configuration in toy_model.CASCADE:
        toy_model.build_results(root, folds=(0,), spec=toy_model.ToySpec(
            configuration=configuration, features=(2, 4), patch_size=(8, 8, 8)))
    return root


def _checkpoints(package) -> set[tuple[str, str, str]]:
    """(model folder name, fold, checkpoint) of every checkpoint entry."""
    with zipfile.ZipFile(package) as z:
        names = [n for n in z.namelist() if n.endswith(".safetensors")]
    return {(n.split("/")[1], n.split("/")[2].removeprefix("fold_"), n.split("/")[3].removesuffix(".safetensors"))
            for n in names}


def _expected(folds, checkpoints, configuration="2d"):
    return {(toy_model.model_folder_name(configuration), str(f), c) for f in folds for c in checkpoints}


def _export(*args, results, key, out, **kwargs):
    return run_cli("export", *args, "-o", out, "--key", key.private_path,
                   env={"nnUNet_results": str(results)}, **kwargs)


# --- any fold, any checkpoint ----------------------------------------------------------------


def test_ten_folds_travel_and_checkpoint_latest_is_noted(ten_fold_results, session_key, tmp_path):
    out = tmp_path / "ten.zip"
    proc = _export("-i", ten_fold_results / M2D, results=ten_fold_results, key=session_key, out=out)
    assert proc.exit_code == 0, proc.stderr
    assert _checkpoints(out) == _expected(TEN_FOLDS, ("checkpoint_final", "checkpoint_best"))
    # the toy's crossval postprocessing.pkl (no json beside it) has its own note: test_pipeline.py
    notes = [line for line in proc.stderr.splitlines()
             if line.startswith("nnseal: note: ") and "not shipped: " not in line]
    assert sorted(notes) == sorted(
        f"nnseal: note: {M2D}/fold_{f}/checkpoint_latest.pth not exported: not among the checkpoints asked for "
        "(add -chk checkpoint_latest)" for f in TEN_FOLDS)
    with zipfile.ZipFile(out) as z:
        card = json.loads(z.read("nnseal-card.json"))
    assert card["models"][0]["folds"] == [str(f) for f in TEN_FOLDS]  # numeric order: fold_9 before fold_10

    results = tmp_path / "results"
    proc = run_cli("install", out, "--results", results, "--trusted-key", session_key.public_path, "--quiet")
    assert proc.exit_code == 0, proc.stderr
    assert {p.parent.name for p in (results / M2D).glob("fold_*/checkpoint_final.pth")} == {
        f"fold_{f}" for f in TEN_FOLDS}
    assert run_cli("verify", results / M2D).exit_code == 0  # the receipt names fold_5..fold_9 too
    scan = run_cli("scan", out, "--trusted-key", session_key.public_path)
    assert scan.exit_code == 0, scan.stdout


def test_install_unsigned_nnunet_export_zip_of_ten_folds_with_checkpoint_latest(ten_fold_results, tmp_path,
                                                                                 monkeypatch):
    legacy = tmp_path / "nnunet_export.zip"
    nnunet_export_zip(monkeypatch, ten_fold_results, legacy, configurations=("2d",), folds=TEN_FOLDS,
                      save_checkpoints=("checkpoint_final.pth", "checkpoint_latest.pth"))
    results = tmp_path / "results"
    proc = run_cli("install", legacy, "--results", results, "--unsigned", "--json")
    assert proc.exit_code == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert sorted(report["checkpoints"]) == sorted(f"{M2D}/fold_{f}/{c}.pth" for f in TEN_FOLDS
                                                   for c in ("checkpoint_final", "checkpoint_latest"))
    assert run_cli("verify", results / M2D).exit_code == 0


@pytest.mark.nnunet
def test_fold_9_and_checkpoint_latest_predict_like_the_original(ten_fold_results, session_key, tmp_path):
    from nnseal.nnunet_check import predict_both

    out = tmp_path / "latest.zip"
    proc = _export("-i", ten_fold_results / M2D, "-f", "9", "all", "-chk", "latest", "final", "--quiet",
                   results=ten_fold_results, key=session_key, out=out)
    assert proc.exit_code == 0, proc.stderr
    assert _checkpoints(out) == _expected((9, "all"), ("checkpoint_latest", "checkpoint_final"))
    results = tmp_path / "results"
    proc = run_cli("install", out, "--results", results, "--trusted-key", session_key.public_path, "--quiet")
    assert proc.exit_code == 0, proc.stderr
    assert run_cli("verify", results / M2D).exit_code == 0
    for checkpoint in ("checkpoint_latest.pth", "checkpoint_final.pth"):
        identical, _ = predict_both(ten_fold_results / M2D, results / M2D, folds=(9,), checkpoint_name=checkpoint)
        assert identical, checkpoint


# --- nnU-Net's flag spellings ----------------------------------------------------------------


@pytest.mark.parametrize("args, folds, checkpoints", [
    (["-f", "0", "1"], (0, 1), ("checkpoint_final", "checkpoint_best")),
    (["-f", "0", "-f", "1"], (0, 1), ("checkpoint_final", "checkpoint_best")),
    (["-f", "0,1"], (0, 1), ("checkpoint_final", "checkpoint_best")),
    (["-f", "fold_1", "fold_0"], (0, 1), ("checkpoint_final", "checkpoint_best")),
    (["-f", "5", "7", "-chk", "checkpoint_final.pth", "checkpoint_best.pth"], (5, 7),
     ("checkpoint_final", "checkpoint_best")),
    (["-chk", "checkpoint_final.pth", "checkpoint_latest.pth", "-f", "all", "9"], ("all", 9),
     ("checkpoint_final", "checkpoint_latest")),
    (["--checkpoints", "final", "best", "-f", "3"], (3,), ("checkpoint_final", "checkpoint_best")),
    (["--checkpoints=latest", "-f", "3"], (3,), ("checkpoint_latest",)),
    (["-chk", "final,latest", "-f", "1"], (1,), ("checkpoint_final", "checkpoint_latest")),
    (["-chk", "best", "-chk", "checkpoint_latest", "-f", "2"], (2,), ("checkpoint_best", "checkpoint_latest")),
    (["-chk", "best", "-f", "2", "2"], (2,), ("checkpoint_best",)),
])
def test_fold_and_checkpoint_spellings(args, folds, checkpoints, ten_fold_results, session_key, tmp_path):
    out = tmp_path / "x.zip"
    proc = _export("-i", ten_fold_results / M2D, *args, "--quiet", results=ten_fold_results, key=session_key, out=out)
    assert proc.exit_code == 0, proc.stderr
    assert _checkpoints(out) == _expected(folds, checkpoints)


@pytest.mark.parametrize("args", [["-c", "2d", "3d_fullres"], ["-c", "2d", "-c", "3d_fullres"],
                                  ["-c", "2d,3d_fullres"], ["-c", "3d_fullres", "2d", "-tr", "nnUNetTrainer"], []])
def test_configuration_spellings_and_d_without_c(args, ten_fold_results, session_key, tmp_path):
    out = tmp_path / "x.zip"
    proc = _export("-d", "42", *args, "-f", "0", "-chk", "final", results=ten_fold_results, key=session_key,
                   out=out)
    assert proc.exit_code == 0, proc.stderr
    assert _checkpoints(out) == _expected((0,), ("checkpoint_final",)) | _expected((0,), ("checkpoint_final",),
                                                                                    "3d_fullres")
    found = "exporting every configuration found for nnUNetTrainer__nnUNetPlans: 2d, 3d_fullres"
    assert (found in proc.stderr) == (not args)


def test_d_without_c_and_nothing_trained(ten_fold_results, session_key, tmp_path):
    proc = _export("-d", "42", "-tr", "nnUNetTrainerNoSuch", results=ten_fold_results, key=session_key,
                   out=tmp_path / "x.zip")
    assert_one_line_error(proc, 3, "no model folder nnUNetTrainerNoSuch__nnUNetPlans__<configuration>")


def test_a_value_of_another_option_is_never_taken_for_a_flag(ten_fold_results, session_key, tmp_path):
    proc = run_cli("export", "-i", ten_fold_results / M2D, "-f", "0", "-o", "-f.zip", "-chk", "final", "--key",
                   session_key.private_path, "--quiet", cwd=tmp_path)
    assert proc.exit_code == 0, proc.stderr
    assert _checkpoints(tmp_path / "-f.zip") == _expected((0,), ("checkpoint_final",))


@pytest.mark.parametrize("args", [
    ["-f", "01"], ["-f", "fold_01"], ["-f", "-1"], ["-f", "1000"], ["-f", "99999"], ["-f", "x"], ["-f", "１"],
    ["-f", "0", "-1"], ["-chk", "epoch_50"], ["-chk", "checkpoint_final.pt"], ["--checkpoints", "../final"],
    ["-chk"], ["-f"], ["-c", "2d"],  # -c selects with -d, not with -i
])
def test_impossible_selections_are_usage_errors(args, ten_fold_results, session_key, tmp_path):
    before = tree_listing(tmp_path)
    proc = _export("-i", ten_fold_results / M2D, *args, results=ten_fold_results, key=session_key,
                   out=tmp_path / "x.zip")
    assert proc.exit_code == 2, (proc.exit_code, proc.stderr)
    assert tree_listing(tmp_path) == before


def test_multi_value_option_on_any_command():
    """The option class is generic: values end at the next -word; '--' ends options."""
    from nnseal.commands.multivalue import MultiValueCommand, MultiValueOption

    @click.command(cls=MultiValueCommand)
    @click.option("-f", "folds", cls=MultiValueOption)
    @click.option("-o", "out")
    @click.option("-q", is_flag=True)
    @click.argument("rest", nargs=-1)
    def show(folds, out, q, rest):
        click.echo(json.dumps([list(folds), out, q, list(rest)]))

    def run(*args):
        result = CliRunner().invoke(show, list(args))
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    assert run("-f", "0", "1", "2") == [["0", "1", "2"], None, False, []]
    assert run("-f", "0", "-q", "1") == [["0"], None, True, ["1"]]
    assert run("-o", "-f", "-f", "3,4", "5") == [["3", "4", "5"], "-f", False, []]
    assert run("-f", "1", "--", "-f", "2") == [["1"], None, False, ["-f", "2"]]
    assert run("-q") == [[], None, True, []]


# --- nothing found is dropped without a note --------------------------------------------------


@pytest.fixture()
def untidy_model(ten_fold_results, tmp_path):
    """A model folder with what a real results folder accumulates: an interrupted fold holding only
    checkpoint_latest.pth, a folder named like a fold nnU-Net never writes, a hand-saved checkpoint."""
    model = tmp_path / DATASET / toy_model.model_folder_name("2d")
    shutil.copytree(ten_fold_results / M2D, model, ignore=shutil.ignore_patterns("fold_[4-9]", "fold_all"))
    for name in ("checkpoint_final.pth", "checkpoint_best.pth"):
        (model / "fold_3" / name).unlink()
    (model / "fold_01").mkdir()
    shutil.copy(model / "fold_1" / "checkpoint_final.pth", model / "fold_01" / "checkpoint_final.pth")
    shutil.copy(model / "fold_0" / "checkpoint_final.pth", model / "fold_0" / "model_ep100.pth")
    return model


def test_every_left_out_item_has_a_note(untidy_model, session_key, tmp_path, capsys):
    from nnseal.package.export import export_model_to_zip

    report = export_model_to_zip(untidy_model, tmp_path / "lib.zip", key=session_key.private_path)
    assert capsys.readouterr() == ("", "")  # the library returns notes; it prints nothing
    model = f"{DATASET}/{untidy_model.name}"
    expected = [
        f"{model}/fold_0/checkpoint_latest.pth not exported: not among the checkpoints asked for",
        f"{model}/fold_0/model_ep100.pth not exported: not a checkpoint nnU-Net writes "
        "(checkpoint_final, checkpoint_best, checkpoint_latest)",
        f"{model}/fold_1/checkpoint_latest.pth not exported: not among the checkpoints asked for",
        f"{model}/fold_2/checkpoint_latest.pth not exported: not among the checkpoints asked for",
        f"{model}/fold_3/checkpoint_latest.pth not exported: not among the checkpoints asked for",
        f"{model}/fold_3 not exported: it has no checkpoint (checkpoint_final.pth, checkpoint_best.pth)",
        f"{model}/fold_01 not exported: not a fold name nnU-Net writes (fold_0 to fold_999 without leading "
        "zeros, or fold_all)",
    ]
    assert [str(note) for note in report.notes] == expected
    assert _checkpoints(tmp_path / "lib.zip") == _expected((0, 1, 2), ("checkpoint_final", "checkpoint_best"))

    proc = run_cli("export", "-i", untidy_model, "-o", tmp_path / "cli.zip", "--key", session_key.private_path,
                   "--json")
    assert proc.exit_code == 0 and proc.stderr == ""
    notes = json.loads(proc.stdout)["notes"]
    assert notes[0] == expected[0] + " (add -chk checkpoint_latest)" and notes[1:2] == expected[1:2]
    proc = run_cli("export", "-i", untidy_model, "-o", tmp_path / "q.zip", "--key", session_key.private_path,
                   "-f", "0", "--quiet")
    assert proc.exit_code == 0
    assert [line for line in proc.stderr.splitlines() if "not shipped: " not in line] == [
        f"nnseal: note: {expected[0]} (add -chk checkpoint_latest)",
        f"nnseal: note: {expected[1]}",
        f"nnseal: note: {model}/fold_1 not exported: not among the folds asked for (add -f 1)",
        f"nnseal: note: {model}/fold_2 not exported: not among the folds asked for (add -f 2)",
        f"nnseal: note: {model}/fold_3 not exported: not among the folds asked for (add -f 3)",
        f"nnseal: note: {expected[-1]}",
    ]


def test_a_fold_asked_for_must_hold_what_was_asked_for(untidy_model, session_key, tmp_path):
    proc = run_cli("export", "-i", untidy_model, "-o", tmp_path / "x.zip", "--key", session_key.private_path,
                   "-f", "3")
    assert_one_line_refusal(proc, "fold_3 has no checkpoint")
    proc = run_cli("export", "-i", untidy_model, "-o", tmp_path / "x.zip", "--key", session_key.private_path,
                   "-f", "7")
    assert_one_line_error(proc, 3, "fold_7 was asked for but is missing")
    proc = run_cli("export", "-i", untidy_model, "-o", tmp_path / "x.zip", "--key", session_key.private_path,
                   "-f", "2", "3", "-chk", "latest")
    assert proc.exit_code == 0, proc.stderr
    assert _checkpoints(tmp_path / "x.zip") == _expected((2, 3), ("checkpoint_latest",))


def test_no_fold_with_a_checkpoint_is_refused(untidy_model, session_key, tmp_path):
    for pth in untidy_model.glob("fold_*/checkpoint_[fb]*.pth"):
        pth.unlink()
    shutil.rmtree(untidy_model / "fold_01")
    proc = run_cli("export", "-i", untidy_model, "-o", tmp_path / "x.zip", "--key", session_key.private_path)
    assert_one_line_refusal(proc, "no fold holds a checkpoint")
    assert not (tmp_path / "x.zip").exists()


# --- the cascade ------------------------------------------------------------------------------


def test_cascade_travels_with_its_previous_stage(cascade_results, session_key, tmp_path):
    out = tmp_path / "cascade.zip"
    proc = _export("-d", "42", "--quiet", results=cascade_results, key=session_key, out=out)
    assert proc.exit_code == 0, proc.stderr
    assert {m for m, _, _ in _checkpoints(out)} == {toy_model.model_folder_name(c) for c in toy_model.CASCADE}
    results = tmp_path / "results"
    proc = run_cli("install", out, "--results", results, "--trusted-key", session_key.public_path, "--quiet")
    assert proc.exit_code == 0, proc.stderr
    for configuration in toy_model.CASCADE:
        folder = results / DATASET / toy_model.model_folder_name(configuration)
        assert (folder / "fold_0" / "checkpoint_best.pth").is_file()
    # the previous stage alone is a model nnU-Net can use
    proc = _export("-d", "42", "-c", "3d_lowres", "--quiet", results=cascade_results, key=session_key,
                   out=tmp_path / "lowres.zip")
    assert proc.exit_code == 0, proc.stderr


def test_cascade_without_its_previous_stage_is_refused(cascade_results, session_key, tmp_path):
    before = tree_listing(tmp_path)
    proc = _export("-d", "42", "-c", "3d_cascade_fullres", results=cascade_results, key=session_key,
                   out=tmp_path / "x.zip")
    assert_one_line_refusal(proc, "'3d_cascade_fullres' is a cascade stage", "'3d_lowres'",
                            "nnUNetTrainer__nnUNetPlans__3d_lowres is not exported with it")
    assert tree_listing(tmp_path) == before


def test_cascade_previous_stage_of_another_trainer_does_not_count(cascade_results, session_key, tmp_path):
    dataset = tmp_path / DATASET
    shutil.copytree(cascade_results / DATASET / toy_model.model_folder_name("3d_cascade_fullres"),
                    dataset / toy_model.model_folder_name("3d_cascade_fullres"))
    shutil.copytree(cascade_results / DATASET / toy_model.model_folder_name("3d_lowres"),
                    dataset / "nnUNetTrainerOther__nnUNetPlans__3d_lowres")
    proc = run_cli("export", "-i", dataset / toy_model.model_folder_name("3d_cascade_fullres"),
                   "-i", dataset / "nnUNetTrainerOther__nnUNetPlans__3d_lowres", "-o", tmp_path / "x.zip",
                   "--key", session_key.private_path)
    assert_one_line_refusal(proc, "cascade stage")


@pytest.mark.nnunet
def test_toy_cascade_is_what_nnunet_builds(cascade_results):
    """nnU-Net reads the toy cascade's plans as a cascade, and its network takes the toy checkpoint."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = cascade_results / DATASET / toy_model.model_folder_name("3d_cascade_fullres")
    plans = PlansManager(str(folder / "plans.json"))
    configuration = plans.get_configuration("3d_cascade_fullres")
    assert configuration.previous_stage_name == "3d_lowres"
    dataset_json = json.loads((folder / "dataset.json").read_text())
    channels = determine_num_input_channels(plans, configuration, dataset_json)
    spec = toy_model.ToySpec(configuration="3d_cascade_fullres", features=(2, 4), patch_size=(8, 8, 8))
    assert channels == spec.network_input_channels == 3
    network = get_network_from_plans(configuration.network_arch_class_name, configuration.network_arch_init_kwargs,
                                     configuration.network_arch_init_kwargs_req_import, channels,
                                     len(toy_model.LABELS), allow_init=True, deep_supervision=False)
    network.load_state_dict(toy_model.checkpoint_dict(spec, 0, seed=10)["network_weights"], strict=True)
