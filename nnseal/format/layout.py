"""Which entry names a package may hold: nnU-Net's results layout and nothing else (docs/FORMAT.md).

A model folder is ``DatasetXXX_Name/Trainer__Plans__configuration``; a package mirrors that
tree so it can be installed back into any results folder. The writer names entries with
these functions and every reader classifies them with ``classify``/``classify_all``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from nnseal.errors import TamperedPackage

CARD_NAME = "nnseal-card.json"
DATASET_RE = re.compile(r"^Dataset(\d{3})_([A-Za-z0-9][A-Za-z0-9_.\-]*)$")
# Trainer, plans and configuration are Python-ish identifiers in nnU-Net; "__" separates them.
_PART = r"[A-Za-z0-9][A-Za-z0-9_.\-]*?"
MODEL_RE = re.compile(rf"^({_PART})__({_PART})__([A-Za-z0-9][A-Za-z0-9_.\-]*)$")
ALL_FOLDS = ("0", "1", "2", "3", "4", "all")
CHECKPOINT_NAMES = ("checkpoint_final", "checkpoint_best")
REQUIRED_JSON = ("plans.json", "dataset.json")
MODEL_JSON = ("plans.json", "dataset.json", "dataset_fingerprint.json")
PICKLE_SUFFIXES = (".pth", ".pt", ".pkl", ".pickle", ".ckpt", ".bin", ".npy", ".npz", ".joblib")

_ENTRY_RE = re.compile(
    r"^(?P<dataset>[^/]+)/(?P<model>[^/]+)/(?:"
    rf"(?P<json>{'|'.join(re.escape(name) for name in MODEL_JSON)})"
    r"|fold_(?P<fold>[0-4]|all)/(?:(?P<checkpoint>checkpoint_final|checkpoint_best)\.safetensors|(?P<png>progress\.png))"
    r")$")


class EntryKind(str, Enum):
    CARD = "card"
    JSON = "json"
    CHECKPOINT = "checkpoint"
    PNG = "png"
    # What nnUNetv2_find_best_configuration writes (docs/FORMAT.md, "The nnU-Net pipeline"):
    POSTPROCESSING = "postprocessing"  # .../postprocessing.json; install rebuilds postprocessing.pkl beside it
    SUMMARY = "summary"  # .../summary.json: cross-validation metrics
    INFERENCE = "inference"  # DatasetXXX_Name/inference_information.json


@dataclass(frozen=True)
class PackageEntry:
    name: str
    kind: EntryKind
    model: str | None = None  # DatasetXXX_Name/Trainer__Plans__configuration
    filename: str | None = None  # for json: plans.json ...
    fold: str | None = None
    checkpoint: str | None = None
    # postprocessing/summary: the folder holding it (DatasetXXX_Name/Model/crossval_results_folds_F or
    # DatasetXXX_Name/ensembles/NAME); ensemble: DatasetXXX_Name/ensembles/NAME for an ensemble's entry.
    folder: str | None = None
    ensemble: str | None = None


def fold_sort_key(fold: str) -> tuple[int, str]:
    return (1, fold) if fold == "all" else (0, fold)


def checkpoint_entry_name(model_relative: str, fold: str, checkpoint: str) -> str:
    """``DatasetXXX_Name/Trainer__Plans__cfg/fold_F/checkpoint_X.safetensors``."""
    return f"{model_relative}/fold_{fold}/{checkpoint}.safetensors"


def classify(name: str) -> PackageEntry:
    """Place one entry name in the layout, or refuse it."""
    if name == CARD_NAME:
        return PackageEntry(name, EntryKind.CARD)
    if name.lower().endswith(PICKLE_SUFFIXES):
        raise TamperedPackage(f"entry '{name}' is a pickle-format file; nnseal packages never contain pickles")
    pipeline = _classify_pipeline(name)
    if pipeline is not None:
        return pipeline
    match = _ENTRY_RE.match(name)
    if not match or not DATASET_RE.match(match["dataset"]) or not MODEL_RE.match(match["model"]):
        raise TamperedPackage(f"entry '{name}' is outside the nnU-Net package layout")
    model = f"{match['dataset']}/{match['model']}"
    if match["json"]:
        return PackageEntry(name, EntryKind.JSON, model, filename=match["json"])
    if match["checkpoint"]:
        return PackageEntry(name, EntryKind.CHECKPOINT, model, fold=match["fold"], checkpoint=match["checkpoint"])
    return PackageEntry(name, EntryKind.PNG, model, fold=match["fold"])


# --- what nnUNetv2_find_best_configuration writes ---------------------------

PIPELINE_FILES = {"postprocessing.json": EntryKind.POSTPROCESSING, "summary.json": EntryKind.SUMMARY}
INFERENCE_INFORMATION = "inference_information.json"
INFERENCE_INSTRUCTIONS = "inference_instructions.txt"  # written by install, never shipped
ENSEMBLES = "ensembles"
CROSSVAL_PREFIX = "crossval_results_folds_"
_FOLDS_RE = re.compile(r"^(?:\d{1,4}|all)(?:_(?:\d{1,4}|all)){0,63}$")
_PIPELINE_RE = re.compile(r"^(?P<dataset>[^/]+)/(?:"
                          r"(?P<model>[^/]+)/crossval_results_folds_(?P<folds>[^/]+)"
                          r"|ensembles/(?P<ensemble>[^/]+))/(?P<file>postprocessing\.json|summary\.json)$")


def folds_string_ok(text: str) -> bool:
    """``crossval_results_folds_<F>``: F as nnU-Net's folds_tuple_to_string writes it (``0_1_2_3_4``)."""
    return _FOLDS_RE.match(text) is not None


def ensemble_members(folder_name: str) -> tuple[list[str], str] | None:
    """``ensemble___<model>___<model>[___...]___<folds>`` (nnU-Net's get_ensemble_name) -> (member
    model folder names, folds string); None for any other name."""
    prefix, *members, folds = folder_name.split("___")
    if prefix != "ensemble" or len(members) < 2 or not folds_string_ok(folds):
        return None
    if not all(MODEL_RE.match(m) and len(m.split("__")) == 3 for m in members):
        return None
    return members, folds


def _classify_pipeline(name: str) -> PackageEntry | None:
    """The entries find_best_configuration's results add, or None for any other name."""
    dataset, _, rest = name.partition("/")
    if rest == INFERENCE_INFORMATION:
        if not DATASET_RE.match(dataset):
            raise TamperedPackage(f"entry '{name}' is outside the nnU-Net package layout")
        return PackageEntry(name, EntryKind.INFERENCE, filename=INFERENCE_INFORMATION)
    match = _PIPELINE_RE.match(name)
    if match is None:
        return None
    kind = PIPELINE_FILES[match["file"]]
    if not DATASET_RE.match(match["dataset"]):
        raise TamperedPackage(f"entry '{name}' is outside the nnU-Net package layout")
    if match["ensemble"] is not None:
        if ensemble_members(match["ensemble"]) is None:
            raise TamperedPackage(f"entry '{name}': '{match['ensemble']}' is not an nnU-Net ensemble folder name "
                                  "(ensemble___<Trainer__Plans__cfg>___<Trainer__Plans__cfg>___<folds>)")
        folder = f"{match['dataset']}/{ENSEMBLES}/{match['ensemble']}"
        return PackageEntry(name, kind, filename=match["file"], folder=folder, ensemble=folder)
    if not MODEL_RE.match(match["model"]) or not folds_string_ok(match["folds"]):
        raise TamperedPackage(f"entry '{name}' is outside the nnU-Net package layout")
    model = f"{match['dataset']}/{match['model']}"
    return PackageEntry(name, kind, model, filename=match["file"],
                        folder=f"{model}/{CROSSVAL_PREFIX}{match['folds']}")


def entry_dataset(entry: PackageEntry) -> str | None:
    """The dataset folder an entry belongs to (None for the card)."""
    return None if entry.kind is EntryKind.CARD else entry.name.split("/")[0]


def _check_pipeline_entries(entries: list[PackageEntry], models: set[str]) -> None:
    """Dataset-level entries belong to the package's dataset; an ensemble's members are all in the package
    (as nnU-Net's exporter ships only such ensembles)."""
    datasets = {entry_dataset(e) for e in entries if e.kind is not EntryKind.CARD}
    if len(datasets) > 1:
        raise TamperedPackage(f"package spans several datasets: {', '.join(sorted(d for d in datasets if d))}")
    for entry in entries:
        if entry.ensemble is None:
            continue
        dataset, _, folder = entry.ensemble.split("/")
        members, _ = ensemble_members(folder) or ([], "")
        missing = [m for m in members if f"{dataset}/{m}" not in models]
        if missing:
            raise TamperedPackage(f"ensemble '{folder}' names model folder '{missing[0]}', which the package lacks")


def classify_all(names: list[str]) -> list[PackageEntry]:
    """Classify every entry and check the whole: one dataset, and per model folder plans.json,
    dataset.json and at least one checkpoint."""
    entries = [classify(n) for n in names]
    datasets = {e.model.split("/")[0] for e in entries if e.model}
    if len(datasets) > 1:
        raise TamperedPackage(f"package spans several datasets: {', '.join(sorted(datasets))}")
    models = {e.model for e in entries if e.model}
    for model in sorted(models):
        have = {e.filename for e in entries if e.model == model and e.kind is EntryKind.JSON}
        for required in REQUIRED_JSON:
            if required not in have:
                raise TamperedPackage(f"model folder '{model}' lacks {required}")
        if not any(e.kind is EntryKind.CHECKPOINT for e in entries if e.model == model):
            raise TamperedPackage(f"model folder '{model}' has no checkpoint")
    if not models:
        raise TamperedPackage("package holds no model folder")
    _check_pipeline_entries(entries, models)
    return entries
