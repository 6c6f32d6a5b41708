"""Can this environment run a model folder? (``nnseal doctor``, and install's warnings.)

The trainer class comes from the folder's name (``Trainer__Plans__configuration``: what
``nnUNetv2_predict -tr`` names and install checks every checkpoint against); the training
versions from the install receipt (copied from the card) or, for a folder nnseal did not
install, from the folds' debug.json. Nothing is loaded: no torch, no nnunetv2 import.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from nnseal.compat import (
    CompatibilityReport,
    compatibility_checks,
    debug_json_torch_version,
    debug_json_versions,
    installed_version,
    read_trained_with,
)
from nnseal.errors import EnvironmentProblem, ModelLayoutError
from nnseal.format.layout import MODEL_RE
from nnseal.verify.receipt import RECEIPT_NAME, read_receipt


def diagnose(model_folder: str | os.PathLike,
             external_trainer_folders: Sequence[str | os.PathLike] = ()) -> CompatibilityReport:
    """Check ``model_folder`` (an nnU-Net ``Trainer__Plans__configuration`` folder) against the
    installed nnunetv2, dynamic_network_architectures and torch. ``external_trainer_folders``
    are the folders nnU-Net also searches for trainers (its ``nnUNet_extTrainer``)."""
    folder = Path(model_folder)
    if not folder.is_dir():
        raise EnvironmentProblem("no such model folder", path=folder)
    match = MODEL_RE.match(folder.resolve().name)
    if match is None:
        raise ModelLayoutError("not an nnU-Net model folder (expected a Trainer__Plans__configuration folder)",
                               path=folder)
    trained_with = {}
    if (folder / RECEIPT_NAME).is_file():
        trained_with = read_trained_with(read_receipt(folder).get("trained_with"))
    if not trained_with:
        folds = sorted(p for p in folder.glob("fold_*") if p.is_dir())
        trained_with = debug_json_versions(debug_json_torch_version(p) for p in folds)
    report = CompatibilityReport(folder=str(folder), trainers=[match[1]], trained_with=trained_with)
    report.installed = {name: installed_version(name) for name in ("nnunetv2", "dynamic_network_architectures",
                                                                   "torch")}
    report.checks = compatibility_checks(report.trainers, trained_with, external_trainer_folders)
    return report
