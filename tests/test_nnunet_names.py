"""Model folder names, folds and checkpoint names exactly as nnU-Net builds and reads them, and
the names nnU-Net never writes, refused by the layout and by export."""

from __future__ import annotations

import functools
import json
import warnings
import zipfile

import pytest
from helpers import assert_one_line_error, assert_one_line_refusal, nnunet_export_zip, run_cli, tree_listing
from hypothesis import given
from hypothesis import strategies as st

from nnseal import toy_model
from nnseal.errors import TamperedPackage
from nnseal.format.layout import (
    CHECKPOINT_NAMES,
    classify,
    classify_all,
    fold_sort_key,
    is_fold,
    split_model_name,
)

DATASET = toy_model.DATASET
PRIMUS = "_Primus_S_96_BS1"  # nnU-Net 2.8: a trainer class name that begins with "_"


@functools.cache
def nnunet_trainer_names() -> list[str]:
    """Every nnUNetTrainer subclass the installed nnunetv2 defines, found as nnU-Net finds trainers."""
    import importlib
    import inspect
    import pkgutil

    import nnunetv2.training.nnUNetTrainer as package
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    names = set()
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        with warnings.catch_warnings():  # some trainer modules use torch APIs torch now deprecates
            warnings.simplefilter("ignore", FutureWarning)
            imported = importlib.import_module(module.name)
        for _, cls in inspect.getmembers(imported, inspect.isclass):
            if issubclass(cls, nnUNetTrainer):
                names.add(cls.__name__)
    return sorted(names)


def test_the_trainer_walk_sees_nnunets_trainers():
    names = nnunet_trainer_names()
    assert "nnUNetTrainer" in names and PRIMUS in names
    assert len(names) > 50


@pytest.mark.parametrize("plans", ["nnUNetPlans", "nnUNetResEncUNetLPlans", "nnUNetPlans_torchres"])
@pytest.mark.parametrize("configuration", ["2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres", "3d_fullres_bs80"])
def test_every_nnunet_trainer_name_round_trips(plans, configuration):
    from nnunetv2.utilities.file_path_utilities import (
        convert_identifier_to_trainer_plans_config,
        convert_trainer_plans_config_to_identifier,
        parse_dataset_trainer_plans_configuration_from_path,
    )

    for trainer in nnunet_trainer_names():
        folder = convert_trainer_plans_config_to_identifier(trainer, plans, configuration)
        assert split_model_name(folder) == tuple(convert_identifier_to_trainer_plans_config(folder)) \
            == (trainer, plans, configuration), folder
        assert parse_dataset_trainer_plans_configuration_from_path(f"/r/{DATASET}/{folder}/fold_0") \
            == (DATASET, trainer, plans, configuration)
        entry = classify(f"{DATASET}/{folder}/fold_0/checkpoint_final.safetensors")
        assert entry.model == f"{DATASET}/{folder}"


def test_every_nnunet_trainer_name_passes_checkpoint_metadata():
    from nnseal.format.checkpoint_meta import build_metadata, read_metadata

    for trainer in nnunet_trainer_names():
        meta = {"trainer_name": trainer, "configuration": "3d_fullres", "fold": 7,
                "inference_allowed_mirroring_axes": [0, 1, 2], "current_epoch": 1000}
        _, _, read = read_metadata(build_metadata(["w"], {}, meta), path="x", stored={"w"})
        assert read["trainer_name"] == trainer


@given(st.text(alphabet="_aZ09.-/ é\n", max_size=24).map(lambda s: f"{s}__nnUNetPlans__2d")
       | st.text(alphabet="_aZ09.-/ é\n", max_size=40))
def test_every_accepted_model_name_is_one_nnunet_splits_back_and_a_safe_path_component(name):
    parts = split_model_name(name)
    if parts is None:
        return
    trainer, plans, configuration = parts
    assert name.split("__") == [trainer, plans, configuration]
    assert f"{trainer}__{plans}__{configuration}" == name
    assert name.isascii() and name.isprintable() and " " not in name and "/" not in name
    assert not name.startswith((".", "-")) and trainer.isidentifier()


@pytest.mark.parametrize("name", [
    "nnUNetTrainer__nnUNetPlans__2d",
    f"{PRIMUS}__nnUNetPlans__3d_fullres",
    "nnUNetTrainer_5epochs__nnUNetResEncUNetLPlans__3d_cascade_fullres",
    "nnUNetTrainer__nnUNetPlans___2d",  # nnU-Net splits it: plans "nnUNetPlans", configuration "_2d"
    "nnUNetTrainer___nnUNetPlans__2d",  # and this: trainer "nnUNetTrainer", plans "_nnUNetPlans"
    "nnUNetTrainer__nnUNetPlans__3d_fullres_",
])
def test_model_names_nnunet_writes_are_accepted(name):
    assert split_model_name(name) == tuple(name.split("__"))


# Names nnU-Net never writes, or that are not a safe path component: one generator of each kind.
HOSTILE_MODEL_NAMES = [
    "nnUNetTrainer__nnUNetPlans",  # two parts
    "nnUNetTrainer__nnUNetPlans__2d__x",  # four parts: nnU-Net's split fails
    "__nnUNetPlans__2d",  # empty trainer
    "nnUNetTrainer____2d",  # empty plans
    "nnUNetTrainer__nnUNetPlans__",  # empty configuration
    "nnUNetTrainér__nnUNetPlans__2d",  # non-ASCII
    "nnUNetTrainer__nnUNetPlans__2d\n",  # "$" would match before this newline
    "nnUNetTrainer__nnUNetPlans__2d ",
    "nnUNet Trainer__nnUNetPlans__2d",
    "nnUNetTrainer__..__2d",
    "nnUNetTrainer__nnUNetPlans__..",
    "..__nnUNetPlans__2d",
    ".hidden__nnUNetPlans__2d",
    "-rf__nnUNetPlans__2d",
    "1Trainer__nnUNetPlans__2d",  # not a Python class name
    "nnUNet.Trainer__nnUNetPlans__2d",
    "nnUNetTrainer__nnUNetPlans__2d;rm",
    "T" * 250 + "__P__2d",  # longer than a path component
]


@pytest.mark.parametrize("name", HOSTILE_MODEL_NAMES)
def test_hostile_model_names_are_refused_by_the_layout(name):
    assert split_model_name(name) is None
    with pytest.raises(TamperedPackage, match="outside the nnU-Net"):
        classify(f"{DATASET}/{name}/plans.json")


@pytest.mark.parametrize("entry", [
    f"{DATASET}/nnUNetTrainer__nnUNetPlans__2d/fold_01/checkpoint_final.safetensors",
    f"{DATASET}/nnUNetTrainer__nnUNetPlans__2d/fold_-1/checkpoint_final.safetensors",
    f"{DATASET}/nnUNetTrainer__nnUNetPlans__2d/fold_1000/checkpoint_final.safetensors",
    f"{DATASET}/nnUNetTrainer__nnUNetPlans__2d/fold_99999/checkpoint_final.safetensors",
    f"{DATASET}/nnUNetTrainer__nnUNetPlans__2d/fold_/checkpoint_final.safetensors",
    f"{DATASET}/nnUNetTrainer__nnUNetPlans__2d/fold_１/checkpoint_final.safetensors",  # a full-width digit
    f"{DATASET}/nnUNetTrainer__nnUNetPlans__2d/fold_ALL/checkpoint_final.safetensors",
    f"{DATASET}/nnUNetTrainer__nnUNetPlans__2d/fold_0/checkpoint_epoch_50.safetensors",
    f"{DATASET}/nnUNetTrainer__nnUNetPlans__2d/fold_0/../fold_1/checkpoint_final.safetensors",
    f"{DATASET}/nnUNetTrainer__nnUNetPlans__2d/fold_0/checkpoint_final.safetensors\n",
    f"{DATASET}\n/nnUNetTrainer__nnUNetPlans__2d/plans.json",
    f"{DATASET}/nnUNetTrainer__nnUNetPlans__2d\n/plans.json",
    f"../{DATASET}/nnUNetTrainer__nnUNetPlans__2d/plans.json",
])
def test_hostile_fold_and_checkpoint_entries_are_refused(entry):
    with pytest.raises(TamperedPackage, match="outside the nnU-Net"):
        classify(entry)


@pytest.mark.parametrize("fold", ["0", "5", "9", "10", "42", "999", "all"])
@pytest.mark.parametrize("checkpoint", CHECKPOINT_NAMES)
def test_any_fold_and_every_checkpoint_nnunet_writes_is_in_the_layout(fold, checkpoint):
    model = f"{DATASET}/nnUNetTrainer__nnUNetPlans__2d"
    entries = classify_all([f"{model}/plans.json", f"{model}/dataset.json",
                            f"{model}/fold_{fold}/{checkpoint}.safetensors", f"{model}/fold_{fold}/progress.png"])
    assert (entries[2].fold, entries[2].checkpoint) == (fold, checkpoint)
    assert entries[3].fold == fold


def test_folds_sort_as_numbers_then_all():
    folds = ["all", "10", "2", "0", "9", "1"]
    assert sorted(folds, key=fold_sort_key) == ["0", "1", "2", "9", "10", "all"]
    assert [f for f in ("0", "7", "07", "999", "1000", "-1", "all", "al") if is_fold(f)] == ["0", "7", "999", "all"]


# --- export and install with names nnU-Net writes, refusals of the ones it does not --------------


@pytest.fixture(scope="module")
def primus_results(tmp_path_factory):
    """A toy results folder whose trainer is nnU-Net 2.8's _Primus_S_96_BS1."""
    root = tmp_path_factory.mktemp("primus")
    toy_model.build_results(root, folds=(0, 1), spec=toy_model.ToySpec(trainer=PRIMUS, features=(2, 4)))
    return root


def test_export_and_install_a_leading_underscore_trainer(primus_results, session_key, tmp_path):
    folder = primus_results / DATASET / toy_model.model_folder_name("2d", PRIMUS)
    out = tmp_path / "primus.zip"
    proc = run_cli("export", "-i", folder, "-o", out, "--key", session_key.private_path, "--quiet")
    assert proc.exit_code == 0, proc.stderr
    with zipfile.ZipFile(out) as z:
        card = json.loads(z.read("nnseal-card.json"))
    assert card["models"][0]["trainer"] == PRIMUS
    results = tmp_path / "results"
    proc = run_cli("install", out, "--results", results, "--trusted-key", session_key.public_path, "--quiet")
    assert proc.exit_code == 0, proc.stderr
    installed = results / DATASET / folder.name
    assert (installed / "fold_1" / "checkpoint_best.pth").is_file()
    assert run_cli("verify", installed).exit_code == 0
    # nnU-Net's -d/-tr selection finds the same folder
    proc = run_cli("export", "-d", "42", "-tr", PRIMUS, "-o", tmp_path / "sel.zip", "--key",
                   session_key.private_path, "--quiet", env={"nnUNet_results": str(primus_results)})
    assert proc.exit_code == 0, proc.stderr


def test_install_unsigned_nnunet_export_zip_of_a_leading_underscore_trainer(primus_results, tmp_path, monkeypatch):
    legacy = tmp_path / "nnunet_export.zip"
    nnunet_export_zip(monkeypatch, primus_results, legacy, configurations=("2d",), folds=(0, 1), trainer=PRIMUS)
    results = tmp_path / "results"
    proc = run_cli("install", legacy, "--results", results, "--unsigned", "--quiet")
    assert proc.exit_code == 0, proc.stderr
    import torch

    checkpoint = torch.load(results / DATASET / toy_model.model_folder_name("2d", PRIMUS) / "fold_1"
                            / "checkpoint_final.pth", weights_only=True)
    assert checkpoint["trainer_name"] == PRIMUS and checkpoint["init_args"]["fold"] == 1


@pytest.mark.parametrize("name", [n for n in HOSTILE_MODEL_NAMES if "\n" not in n and "/" not in n and n != ".."])
def test_export_refuses_a_model_folder_nnunet_would_not_name(name, toy_model_folder, session_key, tmp_path):
    import shutil

    folder = tmp_path / DATASET / name
    try:
        shutil.copytree(toy_model_folder, folder)
    except OSError:  # a name the filesystem itself refuses needs no export test
        assert len(name) > 255
        return
    before = tree_listing(tmp_path)
    proc = run_cli("export", "-i", folder, "-o", tmp_path / "x.zip", "--key", session_key.private_path)
    assert_one_line_refusal(proc, "not Trainer__Plans__configuration")
    assert tree_listing(tmp_path) == before


@pytest.mark.parametrize("flags", [
    ["-tr", "../../x"], ["-tr", "nnUNetTrainer/x"], ["-tr", "nnUNetTrainér"], ["-tr", "nnUNetTrainer_"],
    ["-p", ".."], ["-p", "a__b"], ["-c", "2d/../../x"], ["-c", ".."], ["-c", "2d__x"],
])
def test_export_selection_refuses_parts_that_do_not_make_a_model_folder(flags, toy_results_session, session_key,
                                                                        tmp_path):
    proc = run_cli("export", "-d", "42", *flags, "-o", tmp_path / "x.zip", "--key", session_key.private_path,
                   env={"nnUNet_results": str(toy_results_session)})
    # A name that cannot exist is a bad argument (exit 2), as a fold that cannot exist is.
    assert_one_line_error(proc, 2, "nnU-Net splits back")
    assert not (tmp_path / "x.zip").exists()
