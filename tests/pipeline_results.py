"""A toy results folder as nnUNetv2_find_best_configuration leaves it, made by nnU-Net's own code.

Two model folders (2d, 3d_fullres), each with ``crossval_results_folds_0_1/`` whose
postprocessing.json, postprocessing.pkl and summary.json nnU-Net's ``determine_postprocessing``
writes from tiny .nii.gz predictions and references; an ensemble folder named by nnU-Net's
``get_ensemble_name``; ``inference_information.json`` (absolute paths) in nnU-Net's shape.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

FOLDS = (0, 1)
CONFIGURATIONS = ("2d", "3d_fullres")


def write_segmentations(folder: Path, *, noisy: bool) -> None:
    """Three 1x12x12 label maps; ``noisy`` adds stray islands of labels 1 and 2 (keep-largest removes them)."""
    import numpy as np
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    for case in range(3):
        seg = np.zeros((1, 12, 12), dtype=np.uint8)
        seg[0, 2:6, 2:6] = 1
        seg[0, 7:11, 6 + case % 2:10] = 2
        if noisy:
            seg[0, 0, 11] = 1
            seg[0, 11, 0] = 2
            seg[0, 9, 1] = 1
        sitk.WriteImage(sitk.GetImageFromArray(seg), str(folder / f"toy_{case:03d}.nii.gz"))


def determine_postprocessing(crossval: Path, reference: Path, model: Path) -> None:
    """nnU-Net's own determine_postprocessing on ``crossval`` (writes postprocessing.pkl/.json, summary.json)."""
    from nnunetv2.postprocessing.remove_connected_components import determine_postprocessing as nnunet_determine

    plans = json.loads((model / "plans.json").read_text())
    dataset = json.loads((model / "dataset.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        nnunet_determine(str(crossval), str(reference), plans, dataset, num_processes=1, keep_postprocessed_files=False)


def build_pipeline_results(root: Path) -> Path:
    """The results folder ``root`` with everything above; returns the dataset folder."""
    from nnunetv2.utilities.file_path_utilities import folds_tuple_to_string, get_ensemble_name

    from nnseal import toy_model

    reference = root.parent / f"{root.name}_gt"
    write_segmentations(reference, noisy=False)
    models = []
    for configuration in CONFIGURATIONS:
        spec = toy_model.ToySpec(configuration=configuration,
                                 patch_size=(16, 16) if configuration == "2d" else (8, 16, 16))
        model = toy_model.build_results(root, folds=FOLDS, spec=spec, checkpoints=("checkpoint_final",))
        crossval = model / f"crossval_results_folds_{folds_tuple_to_string(FOLDS)}"
        shutil.rmtree(crossval, ignore_errors=True)  # the toy's placeholder pickle
        write_segmentations(crossval, noisy=True)
        models.append(model)
    determine_postprocessing(models[0] / f"crossval_results_folds_{folds_tuple_to_string(FOLDS)}", reference,
                             models[0])
    second = models[1] / f"crossval_results_folds_{folds_tuple_to_string(FOLDS)}"
    for name in ("postprocessing.json", "postprocessing.pkl", "summary.json"):
        shutil.copy(models[0] / f"crossval_results_folds_{folds_tuple_to_string(FOLDS)}" / name, second / name)
    dataset_dir = models[0].parent
    ensemble = dataset_dir / "ensembles" / get_ensemble_name(str(models[0]), str(models[1]), FOLDS)
    ensemble.mkdir(parents=True)
    for name in ("postprocessing.json", "postprocessing.pkl", "summary.json"):
        shutil.copy(second / name, ensemble / name)
    info = inference_information(dataset_dir, ensemble)
    (dataset_dir / "inference_information.json").write_text(json.dumps(info, sort_keys=True, indent=4))
    return dataset_dir


def inference_information(dataset_dir: Path, ensemble: Path) -> dict:
    """What find_best_configuration saves when the ensemble wins (absolute paths, as it writes them)."""
    from nnseal import toy_model

    members = [{"configuration": c, "trainer": toy_model.TRAINER, "plans_identifier": toy_model.PLANS}
               for c in CONFIGURATIONS]
    return {
        "folds": list(FOLDS),
        "dataset_name_or_id": "42",
        "considered_models": [{"plans": toy_model.PLANS, "configuration": c, "trainer": toy_model.TRAINER}
                              for c in CONFIGURATIONS],
        "ensembling_allowed": True,
        "all_results": {toy_model.model_folder_name(c): 0.9 for c in CONFIGURATIONS} | {ensemble.name: 0.95},
        "best_model_or_ensemble": {
            "result_on_crossval_pre_pp": 0.95, "result_on_crossval_post_pp": 0.97,
            "postprocessing_file": str(ensemble / "postprocessing.pkl"),
            "some_plans_file": str(ensemble / "plans.json"),
            "selected_model_or_models": members,
        },
    }
