"""Run nnU-Net's own predictor on two model folders and compare (demo and tests).

Only imported where nnunetv2 is installed; nnseal itself never needs it.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path


def predict(model_dir: Path, image, spacing, folds=(0, 1), checkpoint_name: str = "checkpoint_final.pth"):
    """Segmentation of ``image`` (channels, z, y, x) by nnUNetPredictor on the CPU."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints notes about CUDA
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                    perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                    verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_dir), use_folds=tuple(folds),
                                                   checkpoint_name=checkpoint_name)
    return predictor.predict_single_npy_array(image, {"spacing": list(spacing)}, None, None, False)


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
