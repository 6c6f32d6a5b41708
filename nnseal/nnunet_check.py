"""Run nnU-Net's own predictor on two model folders and compare (demo and tests).

Only imported where nnunetv2 is installed; nnseal itself never needs it.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

# The predictor settings every comparison uses: CPU, deterministic, quiet.
PREDICTOR_KWARGS = {"tile_step_size": 0.5, "use_gaussian": True, "use_mirroring": True,
                    "perform_everything_on_device": False, "verbose": False, "verbose_preprocessing": False,
                    "allow_tqdm": False}


def nnunet_predictor(model_dir: Path, folds=(0, 1), checkpoint_name: str = "checkpoint_final.pth"):
    """nnUNetPredictor on the CPU, initialized by nnU-Net's own initialize_from_trained_model_folder
    (``folds=None``: its auto-detection)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints notes about CUDA
        predictor = nnUNetPredictor(device=torch.device("cpu"), **PREDICTOR_KWARGS)
        predictor.initialize_from_trained_model_folder(str(model_dir), use_folds=None if folds is None else
                                                       tuple(folds), checkpoint_name=checkpoint_name)
    return predictor


def predict_with(predictor, image, spacing):
    """Segmentation of ``image`` (channels, z, y, x) by an initialized nnUNetPredictor."""
    return predictor.predict_single_npy_array(image, {"spacing": list(spacing)}, None, None, False)


def predict(model_dir: Path, image, spacing, folds=(0, 1), checkpoint_name: str = "checkpoint_final.pth"):
    """Segmentation of ``image`` (channels, z, y, x) by nnUNetPredictor on the CPU."""
    return predict_with(nnunet_predictor(model_dir, folds, checkpoint_name), image, spacing)


def toy_image(seed: int = 0, shape=(1, 1, 48, 40)):
    """A 2D image as nnU-Net reads it: one channel, one slice; spacing (999, 1, 1)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.normal(100, 50, size=shape).astype(np.float32), (999.0, 1.0, 1.0)


def predict_both(original: Path, installed: Path, folds=(0, 1), checkpoint_name: str = "checkpoint_final.pth"):
    """(identical?, image shape) for the same image predicted from both folders."""
    import numpy as np

    image, spacing = toy_image()
    a = predict(original, image, spacing, folds, checkpoint_name)
    b = predict(installed, image, spacing, folds, checkpoint_name)
    return bool(a.shape == b.shape and np.array_equal(a, b)), tuple(image.shape)
