"""End to end with the real nnU-Net: its network builder, its predictor, its exporter, its fine-tuning loader."""

from __future__ import annotations

import zipfile

import pytest
from helpers import nnunet_export_zip, run_cli

from nnseal import toy_model

pytestmark = pytest.mark.nnunet
MODEL = f"{toy_model.DATASET}/{toy_model.model_folder_name('2d')}"


def _nnunet_network(spec: toy_model.ToySpec | None = None):
    """The network exactly as nnU-Net builds it from plans.json."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    spec = spec or toy_model.ToySpec()
    arch = toy_model.plans_json(spec)["configurations"][spec.configuration]["architecture"]
    return get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                  spec.input_channels, len(toy_model.LABELS), allow_init=True,
                                  deep_supervision=False)


def test_toy_checkpoints_have_nnunets_exact_state_dict():
    network = _nnunet_network()
    weights = toy_model.checkpoint_dict(toy_model.ToySpec(), 0, seed=10)["network_weights"]
    assert list(weights) == list(network.state_dict())
    network.load_state_dict(weights, strict=True)
    # the aliasing FACTS.md describes: many names, fewer storages
    assert len({t.untyped_storage().data_ptr() for t in weights.values()}) < len(weights)


@pytest.fixture(scope="module")
def installed(tmp_path_factory, toy_package_session, session_key):
    results = tmp_path_factory.mktemp("e2e") / "nnUNet_results"
    proc = run_cli("install", toy_package_session, "--results", results, "--trusted-key", session_key.public_path,
                   "--quiet")
    assert proc.exit_code == 0, proc.stderr
    return results / MODEL


@pytest.mark.parametrize("checkpoint", ["checkpoint_final.pth", "checkpoint_best.pth"])
@pytest.mark.parametrize("folds", [(0,), (1,), (0, 1)])
def test_installed_model_predicts_exactly_like_the_original(installed, toy_model_folder, checkpoint, folds):
    from nnseal.nnunet_check import predict_both

    identical, _ = predict_both(toy_model_folder, installed, folds=folds, checkpoint_name=checkpoint)
    assert identical


def test_prediction_differs_between_folds(toy_model_folder):
    """Guards the test above: identical outputs would mean nothing if every fold predicted the same."""
    import numpy as np

    from nnseal.nnunet_check import predict, toy_image

    image, spacing = toy_image()
    a = predict(toy_model_folder, image, spacing, folds=(0,))
    b = predict(toy_model_folder, image, spacing, folds=(1,))
    assert not np.array_equal(a, b)


def test_installed_checkpoint_works_for_pretrained_weights_fine_tuning(installed):
    import torch
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

    network = _nnunet_network()
    load_pretrained_weights(network, str(installed / "fold_0" / "checkpoint_final.pth"))
    expected = torch.load(installed / "fold_0" / "checkpoint_final.pth", weights_only=True)["network_weights"]
    for name, tensor in network.state_dict().items():
        if ".seg_layers." not in name:
            assert torch.equal(tensor, expected[name]), name


def test_legacy_zip_from_nnunets_own_exporter(tmp_path, toy_results_session, toy_model_folder, monkeypatch):
    legacy = tmp_path / "nnunet_export.zip"
    nnunet_export_zip(monkeypatch, toy_results_session, legacy, configurations=("2d",), folds=(0, 1),
                      save_checkpoints=("checkpoint_final.pth", "checkpoint_best.pth"))
    with zipfile.ZipFile(legacy) as z:
        names = z.namelist()
    assert f"{MODEL}/fold_0/checkpoint_final.pth" in names and f"{MODEL}/fold_0/debug.json" in names

    results = tmp_path / "results"
    proc = run_cli("install", legacy, "--results", results, "--unsigned", "--quiet")
    assert proc.exit_code == 0, proc.stderr
    assert "provenance NOT checked" in proc.stderr

    from nnseal.nnunet_check import predict_both

    for checkpoint in ("checkpoint_final.pth", "checkpoint_best.pth"):
        identical, _ = predict_both(toy_model_folder, results / MODEL, folds=(0, 1), checkpoint_name=checkpoint)
        assert identical
    assert not list((results / MODEL).rglob("debug.json"))


def test_demo_runs_every_stage():
    proc = run_cli("demo")
    assert proc.exit_code == 0, proc.stdout + proc.stderr
    for needle in ("sanitize", "keygen", "export", "verify", "refused as expected", "fails the gate", "install",
                   "identical segmentations", "demo finished"):
        assert needle in proc.stdout, needle
