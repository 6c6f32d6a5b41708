"""nnseal.nnunet.load_predictor against nnU-Net's own initialize_from_trained_model_folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import hostile_checkpoints
import pytest
from helpers import run_cli, tree_listing

from nnseal import toy_model

pytestmark = pytest.mark.nnunet
MODEL = f"{toy_model.DATASET}/{toy_model.model_folder_name('2d')}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory, toy_package_session, session_key):
    results = tmp_path_factory.mktemp("predictor") / "nnUNet_results"
    proc = run_cli("install", toy_package_session, "--results", results, "--trusted-key", session_key.public_path,
                   "--quiet")
    assert proc.exit_code == 0, proc.stderr
    return results / MODEL


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, toy_package_session):
    """The package's files as they are signed: safetensors checkpoints, no .pth."""
    folder = tmp_path_factory.mktemp("extracted")
    with zipfile.ZipFile(toy_package_session) as archive:
        for name in archive.namelist():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(name))
    assert not list((folder / MODEL).rglob("*.pth"))
    return folder / MODEL


def _ours(folder, folds=(0, 1), checkpoint_name="checkpoint_final.pth"):
    from nnseal.nnunet import load_predictor
    from nnseal.nnunet_check import PREDICTOR_KWARGS

    return load_predictor(folder, folds=folds, checkpoint_name=checkpoint_name, device="cpu", **PREDICTOR_KWARGS)


def assert_same_predictor(ours, theirs) -> None:
    """Every field initialize_from_trained_model_folder sets, bit for bit."""
    import torch

    assert type(ours.network) is type(theirs.network)
    assert len(ours.list_of_parameters) == len(theirs.list_of_parameters)
    for mine, expected in zip(ours.list_of_parameters, theirs.list_of_parameters, strict=True):
        assert list(mine) == list(expected)
        for name in expected:
            assert mine[name].dtype == expected[name].dtype and mine[name].shape == expected[name].shape, name
            assert torch.equal(mine[name], expected[name]), name
    network_state, expected_state = ours.network.state_dict(), theirs.network.state_dict()
    assert list(network_state) == list(expected_state)
    assert all(torch.equal(network_state[k], expected_state[k]) for k in expected_state)
    assert ours.trainer_name == theirs.trainer_name
    assert ours.allowed_mirroring_axes == theirs.allowed_mirroring_axes
    assert type(ours.allowed_mirroring_axes) is type(theirs.allowed_mirroring_axes)
    assert ours.configuration_manager.configuration == theirs.configuration_manager.configuration
    assert ours.plans_manager.plans == theirs.plans_manager.plans
    assert ours.dataset_json == theirs.dataset_json
    assert type(ours.label_manager) is type(theirs.label_manager)
    assert ours.label_manager.all_labels == theirs.label_manager.all_labels
    assert ours.network.training == theirs.network.training


def _same_prediction(ours, theirs) -> bool:
    import numpy as np

    from nnseal.nnunet_check import predict_with, toy_image

    image, spacing = toy_image()
    a, b = predict_with(ours, image, spacing), predict_with(theirs, image, spacing)
    return bool(a.shape == b.shape and np.array_equal(a, b))


@pytest.mark.parametrize("checkpoint", ["checkpoint_final.pth", "checkpoint_best.pth"])
@pytest.mark.parametrize("folds", [(0,), (0, 1)])
def test_installed_folder_is_initialized_exactly_as_nnunet_does(installed, folds, checkpoint):
    from nnseal.nnunet_check import nnunet_predictor

    ours, theirs = _ours(installed, folds, checkpoint), nnunet_predictor(installed, folds, checkpoint)
    assert_same_predictor(ours, theirs)
    assert _same_prediction(ours, theirs)


@pytest.mark.parametrize("checkpoint", ["checkpoint_final.pth", "checkpoint_best.pth"])
def test_original_folder_is_initialized_exactly_as_nnunet_does(toy_model_folder, checkpoint):
    """nnU-Net's original checkpoints (optimizer state, numpy scalars in the logs), restricted load."""
    from nnseal.nnunet_check import nnunet_predictor

    ours, theirs = _ours(toy_model_folder, (0, 1), checkpoint), nnunet_predictor(toy_model_folder, (0, 1), checkpoint)
    assert_same_predictor(ours, theirs)
    assert _same_prediction(ours, theirs)


def test_folds_default_to_nnunets_auto_detection(tmp_path, toy_model_folder):
    from nnseal.nnunet import load_predictor
    from nnseal.nnunet_check import PREDICTOR_KWARGS, nnunet_predictor

    folder = tmp_path / toy_model_folder.name
    shutil.copytree(toy_model_folder, folder)
    shutil.copytree(folder / "fold_0", folder / "fold_all")  # only used when asked for
    (folder / "fold_1" / "checkpoint_final.pth").unlink()  # a fold without the checkpoint is skipped
    ours = load_predictor(folder, device="cpu", **PREDICTOR_KWARGS)
    theirs = nnunet_predictor(folder, None)
    assert len(ours.list_of_parameters) == 1
    assert_same_predictor(ours, theirs)


def test_extracted_package_loads_from_safetensors(extracted, installed):
    """The package's own files give what nnU-Net gives on the installed folder (same cleaned JSON)."""
    from nnseal.nnunet_check import nnunet_predictor

    ours, theirs = _ours(extracted, (0, 1)), nnunet_predictor(installed, (0, 1))
    assert_same_predictor(ours, theirs)
    assert _same_prediction(ours, theirs)


def test_predictions_differ_between_folds(installed):
    """Guards the comparisons above: equal outputs would prove nothing if every fold predicted the same."""
    assert not _same_prediction(_ours(installed, (0,)), _ours(installed, (1,)))


@pytest.mark.parametrize("attack", [hostile_checkpoints.make_reduce_os_system, hostile_checkpoints.make_reduce_eval,
                                    hostile_checkpoints.make_raw_pickle_named_pth])
def test_hostile_checkpoint_is_refused_and_never_runs(tmp_path, toy_model_folder, canary, attack):
    from nnseal.errors import UnsafeCheckpoint

    folder = tmp_path / toy_model_folder.name
    shutil.copytree(toy_model_folder, folder)
    hostile = attack(tmp_path, canary)
    shutil.move(hostile, folder / "fold_1" / "checkpoint_final.pth")
    before = tree_listing(tmp_path)
    with pytest.raises(UnsafeCheckpoint) as caught:
        _ours(folder, (0, 1))
    assert "\n" not in str(caught.value)
    assert str(folder / "fold_1" / "checkpoint_final.pth") in str(caught.value.path)
    assert not canary.exists()
    assert tree_listing(tmp_path) == before
    # the same file does run code in nnU-Net's own loader: the attack is live
    from nnseal.nnunet_check import nnunet_predictor

    try:
        nnunet_predictor(folder, (0, 1))
    except Exception:  # noqa: S110 (whatever nnU-Net makes of the payload's result: the canary is the point)
        pass
    assert canary.exists()


def test_importing_nnseal_nnunet_imports_neither_torch_nor_nnunetv2():
    code = "import sys, nnseal.nnunet; print(sorted(m for m in ('torch', 'nnunetv2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
