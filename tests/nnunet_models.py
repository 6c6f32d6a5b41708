"""Every kind of nnU-Net model users train, generated with the real nnunetv2 (tiny, CPU).

* Data: tiny raw datasets written here (``TinyDataset``), fingerprinted by nnU-Net's own
  DatasetFingerprintExtractor and planned by nnU-Net's own planners (ExperimentPlanner,
  nnUNetPlannerResEncM, nnUNetPlannerResEncL): plans.json is exactly what they write.
* Networks: built by the trainer class's ``build_network_architecture``, the path nnU-Net's
  predictor and trainer take (``get_network_from_plans`` for nnU-Net's own trainers).
* Checkpoints: exactly the keys of ``nnUNetTrainer.save_checkpoint`` in the nnunetv2 release
  asked for (``SAVE_CHECKPOINT``), with values of the types nnU-Net puts there.

One function per model kind, named after it (``KINDS``); each writes a model folder under a
results folder and returns a ``Model``. ``build_model`` takes the parameters the kinds differ
in (trainer, plans, folds, checkpoint names, release, dtype, DDP/compile wrapper), so a new
kind is one call. nnU-Net's worker pools are replaced by threads in this process
(``_workers_in_threads``): the same code runs, without spawning interpreters that import torch.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import types
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# --- what nnUNetTrainer.save_checkpoint writes, per release ------------------------------
# Read in MIC-DKFZ/nnUNet, nnunetv2/training/nnUNetTrainer/nnUNetTrainer.py at each release tag
# (save_checkpoint, and __init__'s signature: my_init_kwargs is every __init__ parameter), and
# nnunetv2/training/logging/nnunet_logger.py (logger.get_checkpoint()).
RELEASE_COMMITS = {
    "2.2": "8f92709af2dd8c4cc02d2ec3d70e861b005059da",
    "2.2.1": "84512916ff61ff027245ac175071bf7e0abbc29b",
    "2.3.1": "1b5a17daedb819b6d0be571598a1384a8a9befc5",
    "2.4": "821ded983b80d1791291a08f7549b8ee4eec66f0",
    "2.4.1": "9945333804fc3424afb4b039bec2d7b7fd221d86",
    "2.4.2": "65bad9df96e399efd53805c7739a8e05144be5f4",
    "2.5.1": "834b80ffa8517e6cd2981982eb7edc75b2d131d8",
    "2.5.2": "9e1daf7a0fe24fb4810b1c2a18435bfeee4fe4cd",
    "2.6.0": "f8f5b494b7226b8b0b1bca34ad3e9b68facb52b8",
    "2.6.2": "74ceb6803d10dcee29b2cc481678d3a3d069f281",
    "2.6.3": "737d6f0d8e472bd14b0f9fbca55916096bac60cf",
    "2.6.4": "273d6147f2d71bafc27a5e1c6fcab9f59ceba7d0",
    "2.7.0": "566198c4f3f8190b0d52a10172c84a5cd8f78db2",
    "2.8.0": "c65537bebc5b50356df5dad352474bc3389e5e8b",
    "2.8.1": "468cf803df9b267150ae2b6c0c59b8ac84f16227",
}
# The same nine top-level keys, in this order, in every release above.
CHECKPOINT_KEYS = ("network_weights", "optimizer_state", "grad_scaler_state", "logging", "_best_ema",
                   "current_epoch", "init_args", "trainer_name", "inference_allowed_mirroring_axes")
# nnUNetLogger.my_fantastic_logging, in every release above (2.7.0 wraps it in a MetaLogger,
# commit 58977c0d, whose get_checkpoint returns the same dict).
LOGGING_KEYS = ("mean_fg_dice", "ema_fg_dice", "dice_per_class_or_region", "train_losses", "val_losses", "lrs",
                "epoch_start_timestamps", "epoch_end_timestamps")
# init_args lost ``unpack_dataset`` in 91f348ace82ca5abd6d070e5a2b0e308e65da82e ("modularize
# dataset class"), first released in 2.6.0.
_INIT_ARGS_TO_2_5 = ("plans", "configuration", "fold", "dataset_json", "unpack_dataset", "device")
_INIT_ARGS_FROM_2_6 = ("plans", "configuration", "fold", "dataset_json", "device")


@dataclass(frozen=True)
class SaveCheckpointFormat:
    releases: tuple[str, ...]
    init_args: tuple[str, ...]
    keys: tuple[str, ...] = CHECKPOINT_KEYS
    logging: tuple[str, ...] = LOGGING_KEYS


# The distinct shapes save_checkpoint has had; every release in RELEASE_COMMITS is in one.
SAVE_CHECKPOINT = {
    "2.2-2.5.2": SaveCheckpointFormat(("2.2", "2.2.1", "2.3.1", "2.4", "2.4.1", "2.4.2", "2.5.1", "2.5.2"),
                                      _INIT_ARGS_TO_2_5),
    "2.6.0-2.8.1": SaveCheckpointFormat(("2.6.0", "2.6.2", "2.6.3", "2.6.4", "2.7.0", "2.8.0", "2.8.1"),
                                        _INIT_ARGS_FROM_2_6),
}


def save_checkpoint_format(release: str) -> SaveCheckpointFormat:
    for fmt in SAVE_CHECKPOINT.values():
        if release in fmt.releases:
            return fmt
    raise KeyError(f"no save_checkpoint format recorded for nnunetv2 {release}")


# --- tiny raw datasets ---------------------------------------------------------------------

SHAPE = (8, 8, 8)  # two stages in every planner: the smallest network nnU-Net plans for 3D
N_CASES = 5  # nnU-Net's default split is 5-fold


@dataclass(frozen=True)
class TinyDataset:
    dataset_id: int
    short_name: str
    channel_names: dict[str, str]
    labels: dict[str, int | list[int]]
    regions_class_order: tuple[int, ...] | None = None
    voxel_labels: tuple[int, ...] = (1, 2)  # what the label files hold, outer to inner

    @property
    def name(self) -> str:
        return f"Dataset{self.dataset_id:03d}_{self.short_name}"

    @property
    def channels(self) -> int:
        return len(self.channel_names)

    def dataset_json(self) -> dict:
        out: dict = {"channel_names": dict(self.channel_names), "labels": dict(self.labels),
                     "numTraining": N_CASES, "file_ending": ".nii.gz", "name": self.short_name,
                     "description": "a tiny dataset generated by nnseal's tests"}
        if self.regions_class_order is not None:
            out["regions_class_order"] = list(self.regions_class_order)
        # The case list nnU-Net v2 accepts in dataset.json. Without it nnU-Net lists imagesTr in a
        # fork Pool(12) (utilities/utils.py), which can deadlock in a test process whose earlier
        # tests left threads behind. Export drops it (a case list), which these tests also cover.
        out["dataset"] = {
            case: {"images": [f"imagesTr/{case}_{c:04d}.nii.gz" for c in range(self.channels)],
                   "label": f"labelsTr/{case}.nii.gz"}
            for case in self.cases}
        return out

    @property
    def cases(self) -> list[str]:
        return [f"case_{i:03d}" for i in range(N_CASES)]


TINY = TinyDataset(901, "Tiny", {"0": "MRI"}, {"background": 0, "organ": 1, "tumor": 2})
# BraTS-style: overlapping regions, sigmoid outputs, regions_class_order to paint them back.
REGIONS = TinyDataset(902, "TinyRegions", {"0": "FLAIR"},
                      {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3], "enhancing_tumor": [3]},
                      regions_class_order=(1, 2, 3), voxel_labels=(1, 2, 3))
FOUR_CHANNELS = TinyDataset(903, "TinyFourChannels", {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"},
                            {"background": 0, "edema": 1, "tumor": 2})
# The ignore label is the highest; nnU-Net makes no output for it.
IGNORE = TinyDataset(904, "TinyIgnore", {"0": "CT"}, {"background": 0, "organ": 1, "ignore": 2})
DATASETS = (TINY, REGIONS, FOUR_CHANNELS, IGNORE)


def write_raw_dataset(raw_root: Path, ds: TinyDataset, seed: int = 0) -> Path:
    """nnUNet_raw/DatasetXXX_Name: imagesTr/case_XXX_000C.nii.gz, labelsTr/case_XXX.nii.gz, dataset.json."""
    import numpy as np

    folder = raw_root / ds.name
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    rng = np.random.default_rng(seed)
    for i, case in enumerate(ds.cases):
        seg = np.zeros(SHAPE, np.uint8)
        lo = 1 + i % 2
        for depth, label in enumerate(ds.voxel_labels):  # nested boxes, the innermost last
            a, b = lo + depth, SHAPE[0] - 1 - depth
            if a < b:
                seg[a:b, a:b, a:b] = label
        for channel in range(ds.channels):
            image = (rng.normal(100 + 10 * channel, 20, SHAPE) + 40 * seg).astype(np.float32)
            _write_nifti(image, folder / "imagesTr" / f"{case}_{channel:04d}.nii.gz")
        _write_nifti(seg, folder / "labelsTr" / f"{case}.nii.gz")
    (folder / "dataset.json").write_text(json.dumps(ds.dataset_json(), indent=4))
    return folder


def _write_nifti(array, path: Path) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(image, str(path))


# --- running nnU-Net's planning in this process --------------------------------------------


@contextlib.contextmanager
def nnunet_environment(**values: str | os.PathLike | None) -> Iterator[None]:
    """Set (None: unset) nnU-Net's environment variables for the block; nnunetv2 2.8 reads them
    on each use (nnunetv2.paths._EnvPath), so no module needs reloading."""
    before = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = str(value)
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _workers_in_threads() -> Iterator[None]:
    """nnU-Net's fingerprinting and preprocessing run their cases in a spawn Pool: here a
    ThreadPool (same starmap_async, same ``_pool`` of live workers), so the test process does
    not start interpreters that import torch and nnU-Net again."""
    from multiprocessing.pool import ThreadPool

    from nnunetv2.experiment_planning.dataset_fingerprint import fingerprint_extractor
    from nnunetv2.preprocessing.preprocessors import default_preprocessor

    threads = types.SimpleNamespace(get_context=lambda method=None: types.SimpleNamespace(Pool=ThreadPool))
    modules = (fingerprint_extractor, default_preprocessor)
    saved = [module.multiprocessing for module in modules]
    try:
        for module in modules:
            module.multiprocessing = threads
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.multiprocessing = original


def _tiny_fingerprint_extractor():
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor

    class TinyFingerprintExtractor(DatasetFingerprintExtractor):
        """nnU-Net's extractor sampling 10**8 foreground voxels in all (with replacement) for its
        intensity statistics; a few hundred describe 8**3 images as well, in milliseconds."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.num_foreground_voxels_for_intensitystats = 1000

    return TinyFingerprintExtractor


def planner_classes() -> dict[str, type]:
    """plans identifier -> nnU-Net's planner that writes it."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import (
        nnUNetPlannerResEncL,
        nnUNetPlannerResEncM,
    )

    return {"nnUNetPlans": ExperimentPlanner, "nnUNetResEncUNetMPlans": nnUNetPlannerResEncM,
            "nnUNetResEncUNetLPlans": nnUNetPlannerResEncL}


@dataclass
class Workspace:
    """nnUNet_raw / nnUNet_preprocessed with the tiny datasets planned, and a folder of external trainers."""

    root: Path
    plans: dict[tuple[str, str], dict] = field(default_factory=dict)  # (dataset, plans identifier) -> plans

    @property
    def raw(self) -> Path:
        return self.root / "nnUNet_raw"

    @property
    def preprocessed(self) -> Path:
        return self.root / "nnUNet_preprocessed"

    @property
    def ext_trainers(self) -> Path:
        return self.root / "external_trainers"

    def environment(self, results: Path | None = None, **extra: str | None):
        return nnunet_environment(nnUNet_raw=self.raw, nnUNet_preprocessed=self.preprocessed,
                                  nnUNet_results=results or self.root / "nnUNet_results_unused",
                                  nnUNet_extTrainer=self.ext_trainers, **extra)

    def dataset_json(self, ds: TinyDataset) -> dict:
        return json.loads((self.preprocessed / ds.name / "dataset.json").read_text())

    def fingerprint(self, ds: TinyDataset) -> dict:
        return json.loads((self.preprocessed / ds.name / "dataset_fingerprint.json").read_text())


PLANNED: tuple[tuple[TinyDataset, tuple[str, ...]], ...] = (
    (TINY, ("nnUNetPlans", "nnUNetResEncUNetMPlans", "nnUNetResEncUNetLPlans")),
    (REGIONS, ("nnUNetPlans",)), (FOUR_CHANNELS, ("nnUNetPlans",)), (IGNORE, ("nnUNetPlans",)),
)


def prepare_workspace(root: Path, planned=PLANNED) -> Workspace:
    """Write the tiny raw datasets, fingerprint them and run nnU-Net's planners on them."""
    from nnunetv2.experiment_planning import plan_and_preprocess_api as api

    ws = Workspace(Path(root))
    for folder in (ws.raw, ws.preprocessed, ws.ext_trainers):
        folder.mkdir(parents=True)
    planners = planner_classes()
    # nnUNet_n_proc_DA=1: the planners set torch's thread count from it while sizing networks.
    with ws.environment(nnUNet_n_proc_DA="1"), _workers_in_threads(), _quiet():
        for ds, plans_names in planned:
            write_raw_dataset(ws.raw, ds, seed=ds.dataset_id)
            api.extract_fingerprint_dataset(ds.dataset_id, _tiny_fingerprint_extractor(), num_processes=1,
                                            check_dataset_integrity=False, clean=True, verbose=False,
                                            show_progress_bar=False)
            for plans_name in plans_names:
                plans, identifier = api.plan_experiment_dataset(ds.dataset_id, planners[plans_name])
                assert identifier == plans_name, (identifier, plans_name)
                ws.plans[(ds.name, plans_name)] = json.loads(
                    (ws.preprocessed / ds.name / f"{plans_name}.json").read_text())
    return ws


def preprocess(ws: Workspace, ds: TinyDataset, plans_name: str, configuration: str) -> None:
    """nnUNetv2_preprocess for one configuration, by nnU-Net's own preprocessor."""
    from nnunetv2.experiment_planning import plan_and_preprocess_api as api

    with ws.environment(nnUNet_n_proc_DA="1"), _workers_in_threads(), _quiet():
        api.preprocess_dataset(ds.dataset_id, plans_name, (configuration,), (1,), verbose=False,
                               show_progress_bar=False)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with contextlib.redirect_stdout(io.StringIO()):
        yield


# --- trainers ------------------------------------------------------------------------------

CUSTOM_TRAINER = "nnUNetTrainerCustomX"

_TRAINER_MODULE = '''"""A user's trainer outside nnunetv2, found through $nnUNet_extTrainer."""
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans


class {name}({base}):
    """Trains {extra_decoder_convs} more conv per decoder stage than its plans say: a network only
    this class can build, so a predictor that did not find it could not load the weights."""

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                   num_output_channels, enable_deep_supervision=True):
        kwargs = dict(configuration_manager.network_arch_init_kwargs)
        kwargs["n_conv_per_stage_decoder"] = [n + {extra_decoder_convs}
                                              for n in kwargs["n_conv_per_stage_decoder"]]
        return get_network_from_plans(configuration_manager.network_arch_class_name, kwargs,
                                      configuration_manager.network_arch_init_kwargs_req_import,
                                      num_input_channels, num_output_channels, allow_init=True,
                                      deep_supervision=enable_deep_supervision)
'''


def write_trainer_module(folder: Path, name: str, *, extra_decoder_convs: int = 1, base: str = "nnUNetTrainer") -> Path:
    """``folder/<name>.py`` defining trainer class ``name`` (nnU-Net finds it by class name)."""
    path = folder / f"{name}.py"
    if not path.exists():
        path.write_text(_TRAINER_MODULE.format(name=name, base=base, extra_decoder_convs=extra_decoder_convs))
    return path


def trainer_class(ws: Workspace, name: str):
    """The class nnU-Net's predictor and run_training would use for ``name``."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    with ws.environment(), _quiet():
        return recursive_find_trainer_class_by_name(name)


# --- model folders -------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    kind: str
    folder: Path  # <results>/DatasetXXX_Name/Trainer__Plans__configuration
    folds: tuple[str, ...]
    checkpoints: tuple[str, ...]  # file names: checkpoint_final.pth ...
    channels: int
    # Where nnU-Net's predictor cannot read the folder (wrapper-prefixed weights): the same
    # weights as nnU-Net's save_checkpoint would have written them.
    reference: Path | None = None
    # A cascade stage: the model whose segmentation it takes as input (same results folder).
    previous_stage: Model | None = None

    @property
    def stages(self) -> tuple[Model, ...]:
        """The models nnU-Net runs, in order, to predict with this one (itself last)."""
        return (*(self.previous_stage.stages if self.previous_stage else ()), self)

    @property
    def dataset(self) -> str:
        return self.folder.parent.name

    @property
    def relative(self) -> str:
        return f"{self.dataset}/{self.folder.name}"


WRAPPERS = (None, "ddp", "compile")


def _seed(base: int, fold: str, checkpoint: str) -> int:
    """Other weights for every (seed, fold, checkpoint name)."""
    return base * 1_000_000 + (999 if fold == "all" else int(fold)) * 1000 + zlib.crc32(checkpoint.encode()) % 1000


def build_network(trainer_cls, plans: dict, dataset_json: dict, configuration: str, seed: int):
    """The training-time network (deep supervision on, as nnUNetTrainer.initialize builds it),
    its weights drawn from ``seed`` and spread so that each seed segments differently."""
    import torch
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(plans)
    configuration_manager = plans_manager.get_configuration(configuration)
    torch.manual_seed(seed)
    network = trainer_cls.build_network_architecture(
        plans_manager, configuration_manager,
        determine_num_input_channels(plans_manager, configuration_manager, dataset_json),
        plans_manager.get_label_manager(dataset_json).num_segmentation_heads, True)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    return network


def _optimizer_after_steps(network):
    """nnUNetTrainer.configure_optimizers' SGD, after two steps (so every parameter has momentum)."""
    import torch

    optimizer = torch.optim.SGD(network.parameters(), 1e-2, weight_decay=3e-5, momentum=0.99, nesterov=True)
    for _ in range(2):
        optimizer.zero_grad()
        loss = sum((p * p).sum() for p in network.parameters())
        loss.backward()
        optimizer.step()
    return optimizer


def _logging(epochs: int, n_scored: int, seed: int) -> dict:
    """The logger's dict (logger.get_checkpoint()), filled with what nnUNetTrainer logs: numpy float64 dice, numpy
    float32 losses (np.mean of 0-d float32 arrays), python float learning rates and times."""
    import numpy as np
    from nnunetv2.training.logging import nnunet_logger

    # nnUNetLogger until 2.6.4; from 2.7.0 the MetaLogger's local part, LocalLogger.
    logger_class = getattr(nnunet_logger, "LocalLogger", None) or nnunet_logger.nnUNetLogger
    logger = logger_class()
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        logger.log("epoch_start_timestamps", 1_700_000_000.0 + 100 * epoch, epoch)
        logger.log("lrs", 1e-2 * (1 - epoch / epochs) ** 0.9, epoch)
        logger.log("train_losses", np.mean([np.array(-rng.random(), dtype=np.float32)]), epoch)
        logger.log("val_losses", np.mean([np.array(-rng.random(), dtype=np.float32)]), epoch)
        dice = [np.float64(v) for v in rng.random(n_scored)]
        logger.log("dice_per_class_or_region", dice, epoch)
        mean = np.nanmean(dice)
        logger.log("mean_fg_dice", mean, epoch)
        emas = logger.get_value("ema_fg_dice", step=None)
        if len(emas) == epoch:  # nnUNetLogger logged it itself; LocalLogger leaves it to MetaLogger.log
            logger.log("ema_fg_dice", emas[-1] * 0.9 + 0.1 * mean if emas else mean, epoch)
        logger.log("epoch_end_timestamps", 1_700_000_090.0 + 100 * epoch, epoch)
    return logger.get_checkpoint()


def checkpoint_dict(network, optimizer, *, trainer: str, plans: dict, dataset_json: dict, configuration: str,
                    fold: str, release: str, epochs: int, seed: int, wrapper: str | None = None) -> dict:
    """What nnUNetTrainer.save_checkpoint of ``release`` writes after training on a GPU."""
    import torch
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    fmt = save_checkpoint_format(release)
    label_manager = PlansManager(plans).get_label_manager(dataset_json)
    scored = label_manager.foreground_regions if label_manager.has_regions else label_manager.foreground_labels
    logging = _logging(epochs, len(scored), seed)
    init_values = {"plans": plans, "configuration": configuration, "fold": fold if fold == "all" else int(fold),
                   "dataset_json": dataset_json, "unpack_dataset": True, "device": torch.device("cuda")}
    # Through PlansManager: a cascade stage's configuration only names what it inherits from.
    patch_size = PlansManager(plans).get_configuration(configuration).patch_size
    axes = (0, 1, 2) if len(patch_size) == 3 else (0, 1)
    values = {
        "network_weights": _state_dict(network, wrapper),
        "optimizer_state": optimizer.state_dict(),
        # GradScaler("cuda").state_dict() after training: nnU-Net trains with AMP on CUDA.
        "grad_scaler_state": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                              "growth_interval": 2000, "_growth_tracker": 17},
        "logging": logging,
        "_best_ema": max(logging["ema_fg_dice"]),
        "current_epoch": epochs,
        "init_args": {key: init_values[key] for key in fmt.init_args},
        "trainer_name": trainer,
        "inference_allowed_mirroring_axes": axes,
    }
    return {key: values[key] for key in fmt.keys}


def _state_dict(network, wrapper: str | None):
    """The state dict as a wrapped network gives it: DistributedDataParallel names the network
    ``module``, torch.compile's OptimizedModule ``_orig_mod`` (nnU-Net's save_checkpoint unwraps
    both; a trainer that saves the wrapper itself does not)."""
    if wrapper is None:
        return network.state_dict()
    if wrapper == "compile":
        import torch

        # Wrapping compiles nothing until a forward pass; the eager backend saves importing inductor.
        return torch.compile(network, backend="eager").state_dict()
    if wrapper == "ddp":
        return _ddp_state_dict(network)
    raise ValueError(f"wrapper {wrapper!r} is not one of {WRAPPERS}")


def _ddp_state_dict(network):
    import tempfile

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    # A one-process gloo group on the CPU: the DDP wrapper nnU-Net uses for multi-GPU training.
    with tempfile.TemporaryDirectory() as store:
        dist.init_process_group("gloo", init_method=f"file://{store}/store", rank=0, world_size=1)
        try:
            return OrderedDict(DistributedDataParallel(network).state_dict())
        finally:
            dist.destroy_process_group()


def build_model(ws: Workspace, results: Path, ds: TinyDataset, *, kind: str, plans_name: str = "nnUNetPlans",
                configuration: str = "3d_fullres", trainer: str = "nnUNetTrainer", folds=(0, 1),
                checkpoints=("checkpoint_final",), release: str = "2.8.1", dtype=None,
                wrapper: str | None = None, seed: int = 0, epochs: int = 3) -> Model:
    """Write ``results/<dataset>/<trainer>__<plans>__<configuration>`` as nnU-Net's training leaves it.

    Every parameter is one way real model folders differ; each (fold, checkpoint) gets its own
    weights. ``dtype`` casts the network before saving (a trainer that saves half precision);
    ``wrapper`` saves the DDP or torch.compile wrapper's state dict.
    """
    import torch

    plans = ws.plans[(ds.name, plans_name)]
    dataset_json = ws.dataset_json(ds)
    trainer_cls = trainer_class(ws, trainer)
    folder = Path(results) / ds.name / f"{trainer}__{plans_name}__{configuration}"
    folder.mkdir(parents=True)
    # What nnUNetTrainer.on_train_start copies into the model folder.
    (folder / "plans.json").write_text(json.dumps(plans, indent=4))
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=4))
    (folder / "dataset_fingerprint.json").write_text(json.dumps(ws.fingerprint(ds), indent=4))
    fold_names = tuple(str(f) for f in folds)
    for fold in fold_names:
        (folder / f"fold_{fold}").mkdir()
        (folder / f"fold_{fold}" / "debug.json").write_text(json.dumps({"output_folder": str(folder)}))
        for checkpoint in checkpoints:
            seed_here = _seed(seed, fold, checkpoint)
            network = build_network(trainer_cls, plans, dataset_json, configuration, seed_here)
            optimizer = _optimizer_after_steps(network)
            if dtype is not None:
                network = network.to(dtype)
            torch.save(checkpoint_dict(network, optimizer, trainer=trainer, plans=plans, dataset_json=dataset_json,
                                       configuration=configuration, fold=fold, release=release, epochs=epochs,
                                       seed=seed_here, wrapper=wrapper),
                       folder / f"fold_{fold}" / f"{checkpoint}.pth")
    return Model(kind, folder, fold_names, tuple(f"{c}.pth" for c in checkpoints), ds.channels)


# --- the kinds -----------------------------------------------------------------------------
# Each: (workspace, results folder, seed) -> Model. The seed changes every weight, nothing else.


def plain_unet(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """nnU-Net's default: ExperimentPlanner's PlainConvUNet, folds 0 and 1, final and best.
    (The other kinds hold checkpoint_final only, to keep the tests short.)"""
    return build_model(ws, results, TINY, kind="plain_unet", checkpoints=("checkpoint_final", "checkpoint_best"),
                       seed=seed)


def resenc_m(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """The residual-encoder M preset: plans by nnUNetPlannerResEncM (ResidualEncoderUNet)."""
    return build_model(ws, results, TINY, kind="resenc_m", plans_name="nnUNetResEncUNetMPlans", seed=seed)


def resenc_l(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """The residual-encoder L preset: plans by nnUNetPlannerResEncL."""
    return build_model(ws, results, TINY, kind="resenc_l", plans_name="nnUNetResEncUNetLPlans", seed=seed)


def region_based(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """BraTS-style regions: labels as lists of voxel values, regions_class_order, sigmoid outputs."""
    return build_model(ws, results, REGIONS, kind="region_based", seed=seed)


def four_channels(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """Four input channels (T1, T1ce, T2, FLAIR)."""
    return build_model(ws, results, FOUR_CHANNELS, kind="four_channels", seed=seed)


def ignore_label(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """An ignore label: no output channel for it."""
    return build_model(ws, results, IGNORE, kind="ignore_label", seed=seed)


def fold_all(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """Trained on all cases (-f all): fold_all only."""
    return build_model(ws, results, TINY, kind="fold_all", folds=("all",), seed=seed)


def final_only(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """Only checkpoint_final.pth in each fold (checkpoint_best deleted, or never written)."""
    return build_model(ws, results, TINY, kind="final_only", seed=seed)


def saved_by_nnunetv2_2_2(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """Checkpoints as nnunetv2 2.2 to 2.5.2 saved them (init_args with unpack_dataset)."""
    return build_model(ws, results, TINY, kind="saved_by_nnunetv2_2_2", release="2.2", seed=seed)


def saved_by_nnunetv2_2_6(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """Checkpoints as nnunetv2 2.6.0 to 2.8.1 save them (every other kind is saved so too)."""
    return build_model(ws, results, TINY, kind="saved_by_nnunetv2_2_6", release="2.6.0", seed=seed)


def fp16_weights(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """Weights saved in float16."""
    import torch

    return build_model(ws, results, TINY, kind="fp16_weights", dtype=torch.float16, seed=seed)


def bf16_weights(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """Weights saved in bfloat16."""
    import torch

    return build_model(ws, results, TINY, kind="bf16_weights", dtype=torch.bfloat16, seed=seed)


def custom_trainer(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """A trainer class of the user's own (nnUNetTrainerCustomX, outside nnunetv2, with its own
    architecture), found by nnU-Net through $nnUNet_extTrainer."""
    write_trainer_module(ws.ext_trainers, CUSTOM_TRAINER)
    return build_model(ws, results, TINY, kind="custom_trainer", trainer=CUSTOM_TRAINER, seed=seed)


def _wrapped(ws: Workspace, results: Path, seed: int, wrapper: str, kind: str) -> Model:
    reference = build_model(ws, Path(f"{results}_unwrapped"), TINY, kind=kind, seed=seed)
    model = build_model(ws, results, TINY, kind=kind, wrapper=wrapper, seed=seed)
    return Model(kind, model.folder, model.folds, model.checkpoints, model.channels, reference=reference.folder)


def ddp_prefixed(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """network_weights saved from the DistributedDataParallel wrapper: every name starts ``module.``."""
    return _wrapped(ws, results, seed, "ddp", "ddp_prefixed")


def torch_compile_prefixed(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """network_weights saved from torch.compile's wrapper: every name starts ``_orig_mod.``."""
    return _wrapped(ws, results, seed, "compile", "torch_compile_prefixed")


CASCADE_PLANS = "nnUNetCascadePlans"


def cascade_plans(ws: Workspace, ds: TinyDataset = TINY) -> dict:
    """ExperimentPlanner's plans with the 3d_lowres and 3d_cascade_fullres configurations it writes
    for large images (default_experiment_planner.plan_experiment): the planner makes no 3d_lowres
    for 8**3 images, so 3d_lowres is 3d_fullres under its own data identifier, with ``next_stage``,
    and 3d_cascade_fullres is exactly the planner's entry. Stored in ``ws.plans`` as CASCADE_PLANS."""
    import copy

    key = (ds.name, CASCADE_PLANS)
    if key not in ws.plans:
        plans = copy.deepcopy(ws.plans[(ds.name, "nnUNetPlans")])
        plans["plans_name"] = CASCADE_PLANS
        configurations = plans["configurations"]
        for name, configuration in configurations.items():
            if "data_identifier" in configuration:  # ExperimentPlanner.generate_data_identifier
                configuration["data_identifier"] = f"{CASCADE_PLANS}_{name}"
        lowres = copy.deepcopy(configurations["3d_fullres"])
        lowres["data_identifier"] = f"{CASCADE_PLANS}_3d_lowres"
        lowres["batch_dice"] = False
        lowres["next_stage"] = "3d_cascade_fullres"
        configurations["3d_fullres"]["batch_dice"] = True
        # The planner's insertion order: 2d, 3d_lowres, 3d_fullres, 3d_cascade_fullres.
        plans["configurations"] = {"2d": configurations["2d"], "3d_lowres": lowres,
                                   "3d_fullres": configurations["3d_fullres"],
                                   "3d_cascade_fullres": {"inherits_from": "3d_fullres",
                                                          "previous_stage": "3d_lowres"}}
        ws.plans[key] = plans
    return ws.plans[key]


def cascade(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """nnU-Net's cascade: a 3d_lowres model and the 3d_cascade_fullres model that takes its
    segmentation (one-hot, beside the image channels) as input; both folders, same trainer and plans."""
    cascade_plans(ws)
    lowres = build_model(ws, results, TINY, kind="cascade", plans_name=CASCADE_PLANS, configuration="3d_lowres",
                         seed=seed)
    fullres = build_model(ws, results, TINY, kind="cascade", plans_name=CASCADE_PLANS,
                          configuration="3d_cascade_fullres", seed=seed + 500)
    return Model("cascade", fullres.folder, fullres.folds, fullres.checkpoints, fullres.channels,
                 previous_stage=lowres)


# Kinds nnU-Net trains that this branch's nnseal does not export yet (the layout work adds them):
# move each into KINDS once it does, and the tests above cover it with no other change.


def any_fold_number(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """Folds beyond 0-4 (a custom splits_final.json with more splits): fold_0 and fold_5."""
    return build_model(ws, results, TINY, kind="any_fold_number", folds=(0, 5), seed=seed)


def checkpoint_latest(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """A training still running: checkpoint_latest.pth beside checkpoint_best.pth, no final."""
    return build_model(ws, results, TINY, kind="checkpoint_latest",
                       checkpoints=("checkpoint_latest", "checkpoint_best"), seed=seed)


UNDERSCORE_TRAINER = "_Primus_S_96_BS1"


def underscore_trainer(ws: Workspace, results: Path, seed: int = 0) -> Model:
    """A trainer class whose name starts with an underscore (model folder ``_Primus_S_96_BS1__...``)."""
    write_trainer_module(ws.ext_trainers, UNDERSCORE_TRAINER, extra_decoder_convs=0)
    return build_model(ws, results, TINY, kind="underscore_trainer", trainer=UNDERSCORE_TRAINER, seed=seed)


KindBuilder = Callable[[Workspace, Path, int], Model]
KINDS: dict[str, KindBuilder] = {f.__name__: f for f in (
    plain_unet, resenc_m, resenc_l, region_based, four_channels, ignore_label, fold_all, final_only,
    saved_by_nnunetv2_2_2, saved_by_nnunetv2_2_6, fp16_weights, bf16_weights, custom_trainer,
    ddp_prefixed, torch_compile_prefixed, any_fold_number, checkpoint_latest, underscore_trainer, cascade)}


# --- predicting with nnU-Net -----------------------------------------------------------------


def sample_image(channels: int, seed: int = 7):
    """An image one voxel longer than the 8**3 patch: two overlapping tiles, each predicted with
    all eight mirrorings; spacing 1 mm."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.normal(120, 40, size=(channels, 8, 8, 9)).astype(np.float32), (1.0, 1.0, 1.0)


def predict(ws: Workspace, folder: Path, folds, checkpoint: str, channels: int, segmentation_previous_stage=None):
    """(segmentation, probabilities) of nnUNetPredictor on the CPU for ``sample_image``; a cascade
    stage needs the previous stage's segmentation of that image (nnU-Net's preprocessor
    resamples it with the image and one-hot encodes it as extra input channels)."""
    import numpy as np
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    image, spacing = sample_image(channels)
    with ws.environment(), _quiet():
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                    perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                    verbose_preprocessing=False, allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(folder), use_folds=tuple(folds),
                                                       checkpoint_name=checkpoint)
        # As nnUNetv2_predict's -prev_stage_predictions hands it over: read back by the image
        # reader, float32 with a channel axis (crop_to_nonzero writes -1 into it).
        previous = (None if segmentation_previous_stage is None
                    else segmentation_previous_stage[None].astype(np.float32))
        return predictor.predict_single_npy_array(image, {"spacing": list(spacing)}, previous, None, True)


def predict_stages(ws: Workspace, folders, folds, checkpoint: str, channels: int):
    """(segmentation, probabilities) of each folder in turn, each stage given the segmentation of the
    one before: ``nnUNetv2_predict -c 3d_cascade_fullres -prev_stage_predictions`` for one image."""
    outputs: list = []
    for folder in folders:
        previous = outputs[-1][0] if outputs else None
        outputs.append(predict(ws, folder, folds, checkpoint, channels, previous))
    return outputs


def predict_stages_from_files(ws: Workspace, folders, folds, checkpoint: str, channels: int, out: Path):
    """nnU-Net's file flow, stage after stage: ``sample_image`` written as NIfTI, each folder's
    predictor (predict_from_files_sequential: nnUNetv2_predict's steps without its worker
    processes) writing ``out/stage_<i>/case.nii.gz`` and its probabilities, a cascade stage reading
    the previous stage's output folder as ``-prev_stage_predictions``. Returns (segmentation,
    probabilities) per stage, as nnU-Net's reader and np.load give them back."""
    import numpy as np
    import SimpleITK as sitk
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    image, _ = sample_image(channels)
    inputs = Path(out) / "input"
    inputs.mkdir(parents=True)
    files = [str(inputs / f"case_{c:04d}.nii.gz") for c in range(channels)]
    for channel, file in zip(image, files, strict=True):
        _write_nifti(channel, Path(file))
    outputs: list = []
    previous: Path | None = None
    for i, folder in enumerate(folders):
        stage_out = Path(out) / f"stage_{i}"
        stage_out.mkdir()  # nnUNetv2_predict makes -o itself; the sequential path expects it
        with ws.environment(), _quiet():
            predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                        perform_everything_on_device=False, device=torch.device("cpu"),
                                        verbose=False, verbose_preprocessing=False, allow_tqdm=False)
            predictor.initialize_from_trained_model_folder(str(folder), use_folds=tuple(folds),
                                                           checkpoint_name=checkpoint)
            predictor.predict_from_files_sequential([files], [str(stage_out / "case")], save_probabilities=True,
                                                    overwrite=True,
                                                    folder_with_segs_from_prev_stage=previous and str(previous))
        segmentation = sitk.GetArrayFromImage(sitk.ReadImage(str(stage_out / "case.nii.gz")))
        with np.load(stage_out / "case.npz", allow_pickle=False) as saved:
            outputs.append((segmentation, saved["probabilities"]))
        previous = stage_out
    return outputs


# --- fine-tuning with nnU-Net --------------------------------------------------------------


def fine_tune(ws: Workspace, results: Path, ds: TinyDataset, plans_name: str, configuration: str,
              pretrained: Path, *, fold: int = 0, trainer: str = "nnUNetTrainer"):
    """``nnUNetv2_train <dataset> <configuration> <fold> -p <plans> -pretrained_weights <pretrained>``
    for one epoch of two iterations on the CPU: run_training's own steps (get_trainer_from_args,
    maybe_load_checkpoint, trainer.run_training), without its closing validation of every case.

    Returns the trainer's model folder and the network's weights right after the pretrained ones
    were loaded. Needs ``preprocess`` for the configuration first.
    """
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint

    # nnUNet_n_proc_DA=0: data augmentation in this thread (SingleThreadedAugmenter).
    with ws.environment(results, nnUNet_n_proc_DA="0"), _quiet():
        nnunet_trainer = get_trainer_from_args(ds.name, configuration, fold, trainer, plans_name,
                                               device=torch.device("cpu"))
        nnunet_trainer.num_epochs = 1
        nnunet_trainer.num_iterations_per_epoch = 2
        nnunet_trainer.num_val_iterations_per_epoch = 1
        maybe_load_checkpoint(nnunet_trainer, False, False, str(pretrained))
        loaded = {name: tensor.detach().clone() for name, tensor in nnunet_trainer.network.state_dict().items()}
        nnunet_trainer.run_training()
    return Path(nnunet_trainer.output_folder_base), loaded
