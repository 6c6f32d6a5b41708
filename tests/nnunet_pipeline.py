"""A real nnU-Net results tree, as `nnUNetv2_find_best_configuration` leaves it, built without training.

Everything except the weights comes from nnU-Net's own code, run here:

- a tiny raw dataset (3D ``.nii.gz``, SimpleITKIO, labels background/organ/lesion);
- nnU-Net's fingerprint extraction and default planner (``2d`` and ``3d_fullres``), its
  splits (``generate_crossval_split``, seed 12345, five folds: what the trainer writes to
  ``splits_final.json``) and its copy of the labels to ``gt_segmentations``. No data is
  preprocessed: nothing here trains;
- per configuration and fold 0 and 1: checkpoints shaped like ``nnUNetTrainer.save_checkpoint``
  around the network nnU-Net builds from the plans (seeded random weights), and
  ``fold_k/validation/`` written by nnU-Net's predictor on the fold's validation cases with
  probabilities (``.npz`` + ``.pkl``), plus the ``summary.json`` the trainer computes there;
- ``find_best_configuration`` (its console script): crossval_results_folds_0_1,
  the ensemble, ``postprocessing.pkl``/``.json`` of the winner, ``inference_information.json``
  and ``inference_instructions.txt``; then ``nnUNetv2_determine_postprocessing`` on
  every crossval or ensemble folder the winner left without one, as a user who wants the
  postprocessing of a runner-up does.

Random weights would give postprocessing nothing to gain. So the ground truth of the
cross-validation cases is made from the predictions: the crossval ensemble (nnU-Net's
``ensemble_crossvalidations``), cleaned with nnU-Net's own "all but the largest component"
for the foreground and then per label. Against it, removing small components only ever
removes false positives: the ensemble's postprocessing selects functions, which the tests
assert. (The fingerprint was taken with provisional labels; with ZScore normalisation
nothing the networks see depends on labels.)

nnU-Net reads its nnUNet_* variables at import, so the tree is built, and nnU-Net's commands
are run (``start_console_scripts``), in child processes with those variables set. A console
script is resolved from nnunetv2's entry points, exactly the function its launcher calls, and
called with its command line; one child runs several in a row. In these children nnU-Net's
spawned workers (``multiprocessing.get_context("spawn")``: process pools and the predictor's
preprocessing process) are threads: the same functions on the same arguments, without the
~3 s of importing torch and nnunetv2 that every spawned worker costs (a predictor run spawns
two). With real processes the pipeline test needs about twice its CPU time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DATASET_ID = 737
DATASET = f"Dataset{DATASET_ID:03d}_Pipeline"
TRAINER = "nnUNetTrainer"
PLANS = "nnUNetPlans"
CONFIGURATIONS = ("2d", "3d_fullres")
FOLDS = (0, 1)
FOLDS_TEXT = "_".join(map(str, FOLDS))
CROSSVAL = f"crossval_results_folds_{FOLDS_TEXT}"
LABELS = {"background": 0, "organ": 1, "lesion": 2}
TRAINING_CASES = 5  # five folds need five cases
TEST_CASES = 2
SHAPE = (4, 24, 24)
FILE_ENDING = ".nii.gz"


def model_folder_name(configuration: str) -> str:
    return f"{TRAINER}__{PLANS}__{configuration}"


ENSEMBLE = "ensemble___" + "___".join(model_folder_name(c) for c in CONFIGURATIONS) + f"___{FOLDS_TEXT}"


@dataclass(frozen=True)
class Pipeline:
    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "nnUNet_raw"

    @property
    def preprocessed(self) -> Path:
        return self.root / "nnUNet_preprocessed"

    @property
    def results(self) -> Path:
        return self.root / "nnUNet_results"

    @property
    def images_ts(self) -> Path:
        return self.raw / DATASET / "imagesTs"

    def model_folder(self, configuration: str) -> Path:
        return model_folder(self.results, configuration)

    def ensemble_folder(self) -> Path:
        return ensemble_folder(self.results)


def model_folder(results: Path, configuration: str) -> Path:
    return results / DATASET / model_folder_name(configuration)


def ensemble_folder(results: Path) -> Path:
    return results / DATASET / "ensembles" / ENSEMBLE


def nnunet_env(raw: Path | None, preprocessed: Path | None, results: Path) -> dict[str, str | None]:
    """The nnUNet_* variables (None: unset). One worker for augmentation (0 breaks the planner)."""
    return {"nnUNet_raw": str(raw) if raw else None,
            "nnUNet_preprocessed": str(preprocessed) if preprocessed else None,
            "nnUNet_results": str(results), "nnUNet_n_proc_DA": "1", "OMP_NUM_THREADS": "1"}


def _child_env(raw: Path | None, preprocessed: Path | None, results: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env.update({k: v for k, v in nnunet_env(raw, preprocessed, results).items() if v is not None})
    return env


def build(root: Path) -> Pipeline:
    """Build the whole tree under ``root`` (a child process; see the module's docstring)."""
    pipeline = Pipeline(root)
    proc = subprocess.run([sys.executable, __file__, "build", str(root)], capture_output=True, text=True,
                          env=_child_env(pipeline.raw, pipeline.preprocessed, pipeline.results), timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"building the nnU-Net pipeline failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return pipeline


def start_console_scripts(commands: list[list[str]], results: Path) -> subprocess.Popen:
    """Start a child that runs nnU-Net's console scripts (``[name, *args]`` each) in a row, with
    nnUNet_results = ``results`` and no nnUNet_raw or nnUNet_preprocessed (an installed model has
    neither); ``finish`` waits for it."""
    return subprocess.Popen([sys.executable, __file__, "run", json.dumps(commands)],
                            env=_child_env(None, None, results), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, what: str) -> None:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"{what}:\n{out[-8000:]}"


# --- below: runs in the child, with the nnUNet_* variables set ------------------------------


def _spawned_workers_as_threads() -> None:
    import multiprocessing
    import multiprocessing.pool
    import threading

    real = multiprocessing.get_context

    class Threads:
        def Pool(self, processes=None, *args, **kwargs):  # noqa: N802 - multiprocessing's names
            return multiprocessing.pool.ThreadPool(processes)

        def Process(self, group=None, target=None, name=None, args=(), kwargs=None, *, daemon=None):  # noqa: N802
            return threading.Thread(group, target, name, args, kwargs, daemon=daemon)

        def __getattr__(self, name):
            return getattr(real("spawn"), name)

    multiprocessing.get_context = lambda method=None: Threads() if method == "spawn" else real(method)  # type: ignore[assignment]


def _console_script(name: str):
    """The function nnunetv2's console script ``name`` calls."""
    from importlib.metadata import entry_points

    (entry_point,) = entry_points(group="console_scripts", name=name)
    return entry_point.load()


def _run_console_script(name: str, *argv: str) -> None:
    saved = sys.argv
    sys.argv = [name, *argv]
    try:
        _console_script(name)()
    finally:
        sys.argv = saved


def _write_image(array, path: Path) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(image, str(path))


def _raw_dataset(pipeline: Pipeline) -> list[str]:
    """Blobs of two brightnesses in noise; the labels are provisional (see the docstring)."""
    import numpy as np

    folder = pipeline.raw / DATASET
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20260101)
    zz, yy, xx = np.indices(SHAPE)
    cases = []
    for i in range(TRAINING_CASES + TEST_CASES):
        image = rng.normal(0.0, 0.6, SHAPE).astype(np.float32)
        label = np.zeros(SHAPE, np.uint8)
        for value in (1, 2, 1, 2):
            cz, cy, cx = rng.integers(1, SHAPE[0] - 1), *rng.integers(4, SHAPE[1] - 4, 2)
            r = rng.uniform(2.0, 4.5)
            blob = (zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            label[blob] = value
            image[blob] += 1.5 * value
        case = f"case_{i:03d}"
        if i < TRAINING_CASES:
            cases.append(case)
            _write_image(image, folder / "imagesTr" / f"{case}_0000{FILE_ENDING}")
            _write_image(label, folder / "labelsTr" / f"{case}{FILE_ENDING}")
        else:
            _write_image(image, folder / "imagesTs" / f"{case}_0000{FILE_ENDING}")
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MRI"}, "labels": LABELS, "numTraining": TRAINING_CASES, "file_ending": FILE_ENDING,
        "name": "Pipeline", "description": "nnseal's test of the whole nnU-Net pipeline", "licence": "CC0-1.0",
    }, indent=4))
    return cases


def _checkpoint(plans: dict, dataset_json: dict, configuration: str, fold: int, seed: int) -> dict:
    """A dict shaped like nnUNetTrainer.save_checkpoint's, around the network nnU-Net builds."""
    import numpy as np
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = plans["configurations"][configuration]["architecture"]
    torch.manual_seed(seed)
    network = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                     len(dataset_json["channel_names"]), len(LABELS), allow_init=True,
                                     deep_supervision=True)
    with torch.no_grad():  # He init leaves norms at 1/0: perturb everything so folds and configurations differ
        for p in network.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5)
    optimizer.zero_grad()
    sum((p * p).sum() for p in network.parameters()).backward()
    optimizer.step()
    optimizer.zero_grad()
    epochs = 2
    rng = np.random.default_rng(seed)
    return {
        "network_weights": network.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "grad_scaler_state": None,
        "logging": {
            "mean_fg_dice": [np.float64(v) for v in rng.random(epochs)],
            "ema_fg_dice": [np.float64(v) for v in rng.random(epochs)],
            "dice_per_class_or_region": [[np.float64(v) for v in rng.random(2)] for _ in range(epochs)],
            "train_losses": [np.float32(v) for v in -rng.random(epochs)],
            "val_losses": [np.float32(v) for v in -rng.random(epochs)],
            "lrs": [0.01, 0.005],
            "epoch_start_timestamps": [1_700_000_000.0, 1_700_000_100.0],
            "epoch_end_timestamps": [1_700_000_090.0, 1_700_000_190.0],
        },
        "_best_ema": np.float64(rng.random()),
        "current_epoch": epochs,
        "init_args": {"plans": plans, "configuration": configuration, "fold": fold, "dataset_json": dataset_json,
                      "device": torch.device("cpu")},
        "trainer_name": TRAINER,
        "inference_allowed_mirroring_axes": tuple(range(len(plans["configurations"][configuration]["patch_size"]))),
    }


def _trained_models(pipeline: Pipeline, splits: list[dict]) -> None:
    """Model folders as training leaves them (checkpoints, plans, dataset.json, fold_k/validation)."""
    import shutil

    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json, save_json
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    plans = load_json(str(pipeline.preprocessed / DATASET / f"{PLANS}.json"))
    dataset_json = load_json(str(pipeline.raw / DATASET / "dataset.json"))
    images = pipeline.raw / DATASET / "imagesTr"
    for c_index, configuration in enumerate(CONFIGURATIONS):
        model = pipeline.model_folder(configuration)
        model.mkdir(parents=True)
        save_json(plans, str(model / "plans.json"), sort_keys=False)
        save_json(dataset_json, str(model / "dataset.json"), sort_keys=False)
        shutil.copy(pipeline.preprocessed / DATASET / "dataset_fingerprint.json", model / "dataset_fingerprint.json")
        for fold in FOLDS:
            fold_dir = model / f"fold_{fold}"
            fold_dir.mkdir()
            for k, name in enumerate(("checkpoint_final.pth", "checkpoint_best.pth")):
                torch.save(_checkpoint(plans, dataset_json, configuration, fold, 100 * c_index + 10 * fold + k),
                           fold_dir / name)
            predictor = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False,
                                        allow_tqdm=False)
            predictor.initialize_from_trained_model_folder(str(model), use_folds=(fold,),
                                                           checkpoint_name="checkpoint_final.pth")
            validation = fold_dir / "validation"
            validation.mkdir()
            predictor.predict_from_files_sequential(
                [[str(images / f"{case}_0000{FILE_ENDING}")] for case in splits[fold]["val"]],
                [str(validation / case) for case in splits[fold]["val"]], save_probabilities=True)
            for extra in ("predict_from_raw_data_args.json", "dataset.json", "plans.json"):
                (validation / extra).unlink()  # the predictor's records of a call, which the trainer does not write


def _ground_truth_from_ensemble(pipeline: Pipeline, splits: list[dict]) -> None:
    """GT of the crossval cases := the crossval ensemble, cleaned by nnU-Net's own component removal."""
    import tempfile

    from nnunetv2.ensembling.ensemble import ensemble_crossvalidations
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.postprocessing.remove_connected_components import remove_all_but_largest_component_from_segmentation

    foreground = [v for v in LABELS.values() if v]
    rw = SimpleITKIO()
    with tempfile.TemporaryDirectory(dir=pipeline.root) as scratch:
        ensemble_crossvalidations([str(pipeline.model_folder(c)) for c in CONFIGURATIONS], scratch, FOLDS, 1)
        for fold in FOLDS:
            for case in splits[fold]["val"]:
                seg, properties = rw.read_seg(os.path.join(scratch, case + FILE_ENDING))
                seg = remove_all_but_largest_component_from_segmentation(seg[0], foreground)
                for label in foreground:
                    seg = remove_all_but_largest_component_from_segmentation(seg, label)
                rw.write_seg(seg, str(pipeline.raw / DATASET / "labelsTr" / f"{case}{FILE_ENDING}"), properties)


def _validation_summaries(pipeline: Pipeline) -> None:
    """fold_k/validation/summary.json, as nnUNetTrainer.perform_actual_validation computes it."""
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    for configuration in CONFIGURATIONS:
        for fold in FOLDS:
            validation = pipeline.model_folder(configuration) / f"fold_{fold}" / "validation"
            compute_metrics_on_folder(str(pipeline.preprocessed / DATASET / "gt_segmentations"), str(validation),
                                      str(validation / "summary.json"), SimpleITKIO(), FILE_ENDING,
                                      [v for v in LABELS.values() if v], None, 1, chill=True)


def _build(root: Path) -> None:
    import contextlib

    from batchgenerators.utilities.file_and_folder_operations import save_json
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    pipeline = Pipeline(root)
    with contextlib.redirect_stdout(sys.stderr):  # nnU-Net talks a lot; stderr is kept for failures
        cases = _raw_dataset(pipeline)
        extract_fingerprints([DATASET_ID], num_processes=1)
        plan_experiments([DATASET_ID])
        splits = generate_crossval_split(sorted(cases), seed=12345, n_splits=5)
        save_json(splits, str(pipeline.preprocessed / DATASET / "splits_final.json"))
        _trained_models(pipeline, splits)
        _ground_truth_from_ensemble(pipeline, splits)
        preprocess([DATASET_ID], configurations=(), num_processes=(1,))  # copies labelsTr to gt_segmentations
        _validation_summaries(pipeline)
        _run_console_script("nnUNetv2_find_best_configuration", str(DATASET_ID), "-c", *CONFIGURATIONS,
                         "-f", *map(str, FOLDS), "-np", "1")
        gt = str(pipeline.preprocessed / DATASET / "gt_segmentations")
        for folder in [pipeline.model_folder(c) / CROSSVAL for c in CONFIGURATIONS] + [pipeline.ensemble_folder()]:
            if not (folder / "postprocessing.json").exists():
                _run_console_script("nnUNetv2_determine_postprocessing", "-i", str(folder), "-ref", gt,
                                 "-plans_json", str(folder / "plans.json"),
                                 "-dataset_json", str(folder / "dataset.json"), "-np", "1")


if __name__ == "__main__":
    _spawned_workers_as_threads()
    if sys.argv[1] == "build":
        _build(Path(sys.argv[2]))
    else:
        for command in json.loads(sys.argv[2]):
            _run_console_script(*command)
