"""A small nnU-Net results folder, built from nothing, for `nnseal demo`, tests and benchmarks.

The checkpoints have exactly the shape of nnU-Net's ``nnUNetTrainer.save_checkpoint``:
every key, numpy scalars in ``logging``, a ``torch.device`` in ``init_args``, a tuple of
mirroring axes and real SGD momentum buffers. The network mirrors the module tree of
``dynamic_network_architectures``' PlainConvUNet, so its state dict has the same names,
the same aliasing (``all_modules.N`` repeats ``conv``/``norm``; ``decoder.encoder.*``
repeats ``encoder.*``) and loads strictly into the real class (tests check that).
The folder also holds what nnU-Net leaves behind and nnseal must not ship: debug.json
with absolute paths, training logs, validation summaries, postprocessing.pkl.
"""

from __future__ import annotations

import json
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

DATASET = "Dataset042_Toy"
TRAINER = "nnUNetTrainer"
PLANS = "nnUNetPlans"
LABELS = {"background": 0, "organ": 1, "tumor": 2}
# nnU-Net's cascade: 3d_cascade_fullres is 3d_fullres fed with 3d_lowres's segmentation.
CASCADE = ("3d_lowres", "3d_cascade_fullres")


@dataclass(frozen=True)
class ToySpec:
    """Size of the toy network; the defaults give a ~40 kB checkpoint that predicts in milliseconds."""

    configuration: str = "2d"
    features: tuple[int, ...] = (4, 8, 16)
    patch_size: tuple[int, ...] = (32, 32)
    n_conv_per_stage: int = 2
    input_channels: int = 1
    trainer: str = TRAINER  # any trainer class name, e.g. nnU-Net 2.8's _Primus_S_96_BS1

    @property
    def dims(self) -> int:
        return len(self.patch_size)

    @property
    def network_input_channels(self) -> int:
        """A cascade stage also sees the previous stage's segmentation, one-hot per foreground
        label (nnU-Net's determine_num_input_channels)."""
        cascade = self.configuration == "3d_cascade_fullres"
        return self.input_channels + (len(LABELS) - 1 if cascade else 0)


def model_folder_name(configuration: str, trainer: str = TRAINER) -> str:
    return f"{trainer}__{PLANS}__{configuration}"


def architecture(spec: ToySpec) -> dict:
    """plans.json's ``architecture`` entry for a PlainConvUNet of this size."""
    nd = spec.dims
    conv = "torch.nn.modules.conv.Conv3d" if nd == 3 else "torch.nn.modules.conv.Conv2d"
    norm = "torch.nn.modules.instancenorm.InstanceNorm3d" if nd == 3 else "torch.nn.modules.instancenorm.InstanceNorm2d"
    n = len(spec.features)
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": n,
            "features_per_stage": list(spec.features),
            "conv_op": conv,
            "kernel_sizes": [[3] * nd for _ in range(n)],
            "strides": [[1] * nd] + [[2] * nd for _ in range(n - 1)],
            "n_conv_per_stage": [spec.n_conv_per_stage] * n,
            "n_conv_per_stage_decoder": [spec.n_conv_per_stage] * (n - 1),
            "conv_bias": True,
            "norm_op": norm,
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def plans_json(spec: ToySpec) -> dict:
    # Plans describe the 3D data (2D images are 1-slice volumes); a 2d configuration's
    # own sizes and spacing have two entries.
    nd = spec.dims
    spacing = [1.0] * nd
    data_shape = ([1] if nd == 2 else []) + [s * 2 for s in spec.patch_size]
    data_spacing = ([999.0] if nd == 2 else []) + spacing
    configuration = {
        "data_identifier": f"{PLANS}_{spec.configuration}",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": list(spec.patch_size),
        "median_image_size_in_voxels": [s * 2 for s in spec.patch_size],
        "spacing": spacing,
        "normalization_schemes": ["ZScoreNormalization"] * spec.input_channels,
        "use_mask_for_norm": [False] * spec.input_channels,
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": architecture(spec),
        "batch_dice": True,
    }
    configurations: dict = {spec.configuration: configuration}
    if spec.configuration in CASCADE:  # as nnU-Net's planner writes a cascade
        lowres = dict(configuration, data_identifier=f"{PLANS}_3d_lowres", next_stage="3d_cascade_fullres")
        configurations = {
            "3d_lowres": lowres,
            "3d_fullres": dict(configuration, data_identifier=f"{PLANS}_3d_fullres"),
            "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"},
        }
    return {
        "dataset_name": DATASET,
        "plans_name": PLANS,
        "original_median_spacing_after_transp": data_spacing,
        "original_median_shape_after_transp": data_shape,
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": configurations,
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            str(c): {"max": 3071.0, "mean": 96.5, "median": 88.0, "min": -1024.0,
                     "percentile_00_5": -57.0, "percentile_99_5": 290.0, "std": 60.2}
            for c in range(spec.input_channels)
        },
    }


def dataset_json(spec: ToySpec) -> dict:
    # The v1-style case list and absolute paths are here on purpose: export must drop them.
    return {
        "name": "Toy",
        "description": "A tiny synthetic model built by nnseal for demos and tests",
        "reference": "https://example.org/nnseal-toy",
        "licence": "CC-BY-4.0",
        "release": "1.0",
        "channel_names": {str(c): "CT" for c in range(spec.input_channels)},
        "labels": dict(LABELS),
        "numTraining": 4,
        "file_ending": ".nii.gz",
        "training": [
            {"image": f"/home/alice/nnUNet_raw/{DATASET}/imagesTr/toy_{i:03d}.nii.gz",
             "label": f"/home/alice/nnUNet_raw/{DATASET}/labelsTr/toy_{i:03d}.nii.gz"}
            for i in range(4)
        ],
    }


def fingerprint_json(spec: ToySpec) -> dict:
    return {
        "foreground_intensity_properties_per_channel": plans_json(spec)["foreground_intensity_properties_per_channel"],
        "median_relative_size_after_cropping": 1.0,
        "shapes_after_crop": [([1] if spec.dims == 2 else []) + [s * 2 for s in spec.patch_size] for _ in range(4)],
        "spacings": [([999.0] if spec.dims == 2 else []) + [1.0] * spec.dims for _ in range(4)],
    }


def build_network(spec: ToySpec, seed: int):
    """A torch module whose state dict matches PlainConvUNet's names, shapes and aliasing."""
    import torch
    from torch import nn

    conv_cls = nn.Conv3d if spec.dims == 3 else nn.Conv2d
    tconv_cls = nn.ConvTranspose3d if spec.dims == 3 else nn.ConvTranspose2d
    norm_cls = nn.InstanceNorm3d if spec.dims == 3 else nn.InstanceNorm2d

    class ConvDropoutNormReLU(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv = conv_cls(cin, cout, 3, padding=1)
            self.norm = norm_cls(cout, eps=1e-5, affine=True)
            self.nonlin = nn.LeakyReLU(inplace=True)
            self.all_modules = nn.Sequential(self.conv, self.norm, self.nonlin)

    class StackedConvBlocks(nn.Module):
        def __init__(self, cin, cout, n):
            super().__init__()
            self.convs = nn.Sequential(*[ConvDropoutNormReLU(cin if i == 0 else cout, cout) for i in range(n)])

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            stages, cin = [], spec.network_input_channels
            for f in spec.features:
                stages.append(nn.Sequential(StackedConvBlocks(cin, f, spec.n_conv_per_stage)))
                cin = f
            self.stages = nn.Sequential(*stages)

    class Decoder(nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder
            f = spec.features
            self.stages = nn.ModuleList(
                StackedConvBlocks(2 * f[-(s + 2)], f[-(s + 2)], spec.n_conv_per_stage) for s in range(len(f) - 1))
            self.transpconvs = nn.ModuleList(
                tconv_cls(f[-(s + 1)], f[-(s + 2)], 2, stride=2) for s in range(len(f) - 1))
            self.seg_layers = nn.ModuleList(
                conv_cls(f[-(s + 2)], len(LABELS), 1) for s in range(len(f) - 1))

    class PlainConvUNetNames(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Encoder()
            self.decoder = Decoder(self.encoder)

    torch.manual_seed(seed)
    net = PlainConvUNetNames()
    with torch.no_grad():
        for p in net.parameters():  # give norms non-trivial values too, so predictions differ per fold
            p.add_(torch.randn_like(p) * 0.1)
    return net


def checkpoint_dict(spec: ToySpec, fold, seed: int, epochs: int = 3) -> dict:
    """A dict shaped exactly like nnUNetTrainer.save_checkpoint's."""
    import numpy as np
    import torch

    net = build_network(spec, seed)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5)
    for _ in range(2):  # real steps, so every parameter has a momentum buffer
        optimizer.zero_grad()
        loss = sum((p * p).sum() for p in net.parameters())
        loss.backward()
        optimizer.step()
    rng = np.random.default_rng(seed)
    logging = {
        "mean_fg_dice": [np.float64(v) for v in rng.random(epochs)],
        "ema_fg_dice": [np.float64(v) for v in rng.random(epochs)],
        "dice_per_class_or_region": [[np.float64(v) for v in rng.random(2)] for _ in range(epochs)],
        "train_losses": [np.float32(v) for v in -rng.random(epochs)],
        "val_losses": [np.float32(v) for v in -rng.random(epochs)],
        "lrs": [0.01 * (1 - e / epochs) ** 0.9 for e in range(epochs)],
        "epoch_start_timestamps": [1_700_000_000.0 + 100 * e for e in range(epochs)],
        "epoch_end_timestamps": [1_700_000_090.0 + 100 * e for e in range(epochs)],
    }
    mirror = tuple(range(spec.dims))
    return {
        "network_weights": net.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "grad_scaler_state": None,
        "logging": logging,
        "_best_ema": np.float64(rng.random()),
        "current_epoch": epochs,
        "init_args": {
            "plans": plans_json(spec),
            "configuration": spec.configuration,
            "fold": fold,
            "dataset_json": dataset_json(spec),
            "device": torch.device("cuda"),
        },
        "trainer_name": spec.trainer,
        "inference_allowed_mirroring_axes": mirror,
    }


def tiny_png() -> bytes:
    """A valid 1x1 grey PNG: nnU-Net's own exporter insists on fold_N/progress.png."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
            + chunk(b"IEND", b""))


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=4))


def build_results(results_dir: str | Path, *, folds=(0, 1), spec: ToySpec = ToySpec(),
                  checkpoints=("checkpoint_final", "checkpoint_best")) -> Path:
    """Write a toy nnU-Net results tree under ``results_dir``; return the model folder."""
    import torch

    model = Path(results_dir) / DATASET / model_folder_name(spec.configuration, spec.trainer)
    model.mkdir(parents=True, exist_ok=True)
    write_json(model / "plans.json", plans_json(spec))
    write_json(model / "dataset.json", dataset_json(spec))
    write_json(model / "dataset_fingerprint.json", fingerprint_json(spec))
    for fold in folds:
        fold_dir = model / f"fold_{fold}"
        fold_dir.mkdir(exist_ok=True)
        for i, name in enumerate(checkpoints):
            seed = (0 if fold == "all" else int(fold) + 1) * 10 + i
            torch.save(checkpoint_dict(spec, fold, seed), fold_dir / f"{name}.pth")
        write_json(fold_dir / "debug.json", {"output_folder": str(fold_dir.resolve()), "hostname": "gpu-node-17"})
        (fold_dir / "training_log_2026_1_1_00_00_00.txt").write_text("epoch 0\ntrain_loss -0.1\n")
        (fold_dir / "progress.png").write_bytes(tiny_png())
        (fold_dir / "validation").mkdir(exist_ok=True)
        write_json(fold_dir / "validation" / "summary.json",
                   {"metric_per_case": [{"prediction_file": "/home/alice/pred/toy_000.nii.gz"}]})
    cv = model / "crossval_results_folds_0_1_2_3_4"
    cv.mkdir(exist_ok=True)
    # A plain pickle, as nnU-Net writes it. nnseal never ships or loads it.
    (cv / "postprocessing.pkl").write_bytes(pickle.dumps([[], []]))
    return model
