"""A ready ``nnUNetPredictor`` for tools built on nnU-Net, without unpickling anything unrestricted.

``nnUNetPredictor.initialize_from_trained_model_folder`` loads every checkpoint with an
unrestricted ``torch.load`` (weights-only mode switched off): a checkpoint can run any code. Tools built on nnU-Net
(TotalSegmentator and others) patch it to keep working since torch 2.6 made
``weights_only=True`` the default. ``load_predictor`` builds the same predictor, step by
step as nnU-Net 2.8.1 does (plans and dataset.json, the trainer class's
``build_network_architecture``, the label manager, ``manual_initialization``), and loads the
weights as nnseal's export does: a ``.pth`` passes nnseal's static checks and then
``torch.load(weights_only=True)`` with the three numpy entries nnU-Net's logs need; nnseal's
safetensors (an extracted package) are read as safetensors. Anything else is refused with
``UnsafeCheckpoint``; there is no fallback.

torch and nnunetv2 are imported when ``load_predictor`` runs, never when this module is.
"""

from __future__ import annotations

import inspect
import io
import os
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnseal.errors import (
    EnvironmentProblem,
    InvalidArgument,
    ModelLayoutError,
    Refused,
    UnsafeCheckpoint,
    from_os_error,
)

if TYPE_CHECKING:
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

CHECKPOINT_SUFFIXES = (".pth", ".safetensors")
MAX_MODEL_JSON_BYTES = 32 * 1024 * 1024


def load_predictor(model_folder: str | os.PathLike, folds: Sequence[int | str] | int | str | None = None,
                   checkpoint_name: str = "checkpoint_final.pth", device: torch.device | str | None = None,
                   **predictor_kwargs: Any) -> nnUNetPredictor:
    """An ``nnUNetPredictor`` for ``model_folder`` (``Trainer__Plans__configuration``), ready to predict.

    Arguments as ``initialize_from_trained_model_folder``'s: ``folds`` default to every
    ``fold_N`` folder holding ``checkpoint_name`` (nnU-Net's auto-detection: ``fold_all`` only
    when asked for); ``checkpoint_name`` is ``checkpoint_final.pth``, ``checkpoint_best.pth``...
    and a fold with ``checkpoint_final.safetensors`` instead (an extracted nnseal package) is
    read from that. ``device`` defaults to CUDA when available, else the CPU;
    ``predictor_kwargs`` go to ``nnUNetPredictor`` (``tile_step_size``, ``use_mirroring``...).

    plans.json must pass the checks install applies (no architecture class or nnU-Net name
    outside the allowlists), since nnU-Net imports what it names. A checkpoint that
    ``torch.load(weights_only=True)`` or nnseal's static checks refuse raises
    ``UnsafeCheckpoint``.
    """
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = Path(model_folder)
    if not folder.is_dir():
        raise EnvironmentProblem("no such model folder", path=folder)
    dataset_json = _read_json(folder / "dataset.json")
    plans = _read_json(folder / "plans.json")
    from nnseal.sanitize.jsonclean import check_plans_architecture

    check_plans_architecture(plans, name=str(folder / "plans.json"))
    stem = _checkpoint_stem(checkpoint_name)
    if folds is None:
        folds = auto_detect_available_folds(folder, stem)
    elif isinstance(folds, (str, int)):
        folds = [folds]
    if not folds:
        raise ModelLayoutError(f"no fold_N folder holds {stem}.pth or {stem}.safetensors", path=folder)

    parameters = []
    for i, fold in enumerate(folds):
        fold_name = str(fold)
        if fold_name != "all" and not (fold_name.isascii() and fold_name.isdigit()):
            raise InvalidArgument(f"fold {fold!r} is neither a number nor 'all'")
        weights, meta = load_weights(_checkpoint_file(folder / f"fold_{fold_name}", stem))
        if i == 0:
            trainer_name = meta["trainer_name"]
            configuration_name = meta["configuration"]
            axes = meta.get("inference_allowed_mirroring_axes")
            inference_allowed_mirroring_axes = tuple(axes) if axes is not None else None
        parameters.append(weights)

    # From here on exactly initialize_from_trained_model_folder (nnU-Net 2.8.1).
    plans_manager = PlansManager(plans)
    configuration_manager = plans_manager.get_configuration(configuration_name)
    num_input_channels = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    trainer_class = recursive_find_trainer_class_by_name(trainer_name)
    num_output_channels = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    if "plans_manager" in inspect.signature(trainer_class.build_network_architecture).parameters:
        network = trainer_class.build_network_architecture(
            plans_manager, configuration_manager, num_input_channels, num_output_channels,
            enable_deep_supervision=False)
    else:  # trainers written for nnU-Net before 2.6
        warnings.warn(f"Trainer {trainer_name} uses the old build_network_architecture signature.",
                      DeprecationWarning, stacklevel=2)
        network = trainer_class.build_network_architecture(
            configuration_manager.network_arch_class_name, configuration_manager.network_arch_init_kwargs,
            configuration_manager.network_arch_init_kwargs_req_import, num_input_channels, num_output_channels,
            enable_deep_supervision=False)
    network.load_state_dict(parameters[0])  # as nnU-Net: the network holds the first fold's weights

    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    predictor = nnUNetPredictor(device=torch.device(device), **predictor_kwargs)
    predictor.manual_initialization(network, plans_manager, configuration_manager, parameters, dataset_json,
                                    trainer_name, inference_allowed_mirroring_axes)
    return predictor


def auto_detect_available_folds(model_folder: str | os.PathLike, stem: str = "checkpoint_final") -> list[int]:
    """nnU-Net's auto-detection: each ``fold_N`` (not ``fold_all``) holding the checkpoint, in name order."""
    folder = Path(model_folder)
    try:
        names = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.startswith("fold_"))
    except OSError as err:
        raise from_os_error(err, folder) from err
    return [int(name[5:]) for name in names
            if name[5:].isdigit() and name[5:].isascii() and _find_checkpoint(folder / name, stem) is not None]


def load_weights(path: str | os.PathLike) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any]]:
    """One checkpoint's ``network_weights`` (names in their original order, shared tensors shared)
    and its nnU-Net fields (trainer_name, configuration, fold, inference_allowed_mirroring_axes,
    current_epoch), from a ``.pth`` (restricted load) or nnseal's ``.safetensors``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        tensors, names, aliases, meta = _read_safetensors(path)
    else:
        from nnseal.sanitize.checkpoint import load_sanitized

        try:
            sanitized = load_sanitized(path)
        except Refused as err:  # one type for every refusal of a checkpoint's content
            if isinstance(err, UnsafeCheckpoint):
                raise
            raise UnsafeCheckpoint(err.reason, path=err.path or path) from None
        tensors, names, aliases, meta = sanitized.tensors, sanitized.names, sanitized.aliases, sanitized.meta
    return OrderedDict((name, tensors[aliases.get(name, name)]) for name in names), meta


def _read_safetensors(path: Path) -> tuple[dict, list[str], dict[str, str], dict]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    from nnseal.format.checkpoint_meta import read_metadata
    from nnseal.readers.safetensors_header import read_header

    try:
        data = path.read_bytes()
    except OSError as err:
        raise from_os_error(err, path) from err
    try:
        header = read_header(io.BytesIO(data), len(data), source=str(path))  # as strict as install
        names, aliases, meta = read_metadata(header.metadata, path=str(path), stored=header.tensors)
        tensors = load(data)
    except Refused as err:
        raise UnsafeCheckpoint(err.reason, path=err.path or path) from None
    except SafetensorError as err:
        raise UnsafeCheckpoint(f"safetensors refused it: {err}", path=path) from None
    if set(tensors) != set(header.tensors):
        raise UnsafeCheckpoint("safetensors reads other tensors than its header lists", path=path)
    return tensors, names, aliases, meta


def _read_json(path: Path) -> Any:
    from nnseal.format.strict_json import load_strict_json

    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_MODEL_JSON_BYTES + 1)
    except FileNotFoundError:
        raise ModelLayoutError(f"no {path.name}", path=path.parent) from None
    except OSError as err:
        raise from_os_error(err, path) from err
    if len(data) > MAX_MODEL_JSON_BYTES:
        raise ModelLayoutError(f"larger than {MAX_MODEL_JSON_BYTES} bytes", path=path)
    return load_strict_json(data, what=path.name, path=path)


def _checkpoint_stem(checkpoint_name: str) -> str:
    for suffix in CHECKPOINT_SUFFIXES:
        if checkpoint_name.endswith(suffix):
            return checkpoint_name[: -len(suffix)]
    return checkpoint_name


def _find_checkpoint(fold_dir: Path, stem: str) -> Path | None:
    for suffix in CHECKPOINT_SUFFIXES:  # nnU-Net's own .pth first
        candidate = fold_dir / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _checkpoint_file(fold_dir: Path, stem: str) -> Path:
    found = _find_checkpoint(fold_dir, stem)
    if found is None:
        raise ModelLayoutError(f"no {stem}.pth or {stem}.safetensors", path=fold_dir)
    return found
