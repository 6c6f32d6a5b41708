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
# \Z, not $: "$" also matches before a final newline, and "Dataset042_X\n" is another folder.
DATASET_RE = re.compile(r"^Dataset(\d{3})_([A-Za-z0-9][A-Za-z0-9_.\-]*)\Z")

# A model folder is nnU-Net's f"{trainer}__{plans}__{configuration}" (get_output_folder), and
# nnU-Net reads it back with name.split("__") into exactly three parts
# (convert_identifier_to_trainer_plans_config). So no part holds "__", and neither the trainer
# nor the plans identifier ends with "_" (split would take that "_" into the next part); a part
# may begin with one "_" (nnU-Net 2.8's _Primus_S_96_BS1 trainers). The trainer is a Python
# class name, the other parts plain ASCII words; none can spell "/", "..", a space or a
# non-ASCII letter. MODEL_RE matches exactly the names that split into three such parts.
_TRAINER = r"(?:_[A-Za-z0-9]|[A-Za-z])(?:_?[A-Za-z0-9])*"
_PLANS = r"_?[A-Za-z0-9](?:_?[A-Za-z0-9.\-])*"
_CONFIGURATION = rf"{_PLANS}_?"
MAX_NAME_CHARS = 255  # one path component on every filesystem nnU-Net runs on
MODEL_RE = re.compile(rf"^(?=.{{1,{MAX_NAME_CHARS}}}\Z)({_TRAINER})__({_PLANS})__({_CONFIGURATION})\Z")
_CONFIGURATION_RE = re.compile(rf"^{_CONFIGURATION}\Z")

# Folds as nnU-Net names them (f"fold_{fold}"): a decimal number without leading zeros, or
# "all". Any number of folds (10-fold CV gives fold_0..fold_9), bounded so a name stays small.
MAX_FOLD = 999
FOLD_PATTERN = r"(?:0|[1-9][0-9]{0,2}|all)"
FOLD_RE = re.compile(rf"^{FOLD_PATTERN}\Z")
# Every checkpoint nnU-Net writes into a fold folder: final at the end of training, best at
# each new best EMA Dice, latest every 50 epochs (deleted when training ends, so it is left
# only by an interrupted run). Export takes DEFAULT_CHECKPOINTS unless told otherwise.
CHECKPOINT_NAMES = ("checkpoint_final", "checkpoint_best", "checkpoint_latest")
DEFAULT_CHECKPOINTS = ("checkpoint_final", "checkpoint_best")
CHECKPOINT_PATTERN = "(?:" + "|".join(CHECKPOINT_NAMES) + ")"
REQUIRED_JSON = ("plans.json", "dataset.json")
MODEL_JSON = ("plans.json", "dataset.json", "dataset_fingerprint.json")
PICKLE_SUFFIXES = (".pth", ".pt", ".pkl", ".pickle", ".ckpt", ".bin", ".npy", ".npz", ".joblib")

_ENTRY_RE = re.compile(
    r"^(?P<dataset>[^/]+)/(?P<model>[^/]+)/(?:"
    rf"(?P<json>{'|'.join(re.escape(name) for name in MODEL_JSON)})"
    rf"|fold_(?P<fold>{FOLD_PATTERN})/(?:(?P<checkpoint>{CHECKPOINT_PATTERN})\.safetensors|(?P<png>progress\.png))"
    r")\Z")


def split_model_name(name: str) -> tuple[str, str, str] | None:
    """(trainer, plans, configuration) of a model folder name, as nnU-Net splits it; None if
    the name is not one nnU-Net builds, or not a safe path component."""
    match = MODEL_RE.match(name)
    return (match[1], match[2], match[3]) if match else None


def is_configuration(text: str) -> bool:
    """Whether ``text`` can be the configuration part of a model folder name."""
    return bool(_CONFIGURATION_RE.match(text))


def is_fold(text: str) -> bool:
    """Whether ``text`` is a fold as nnU-Net names its folder ``fold_<text>``."""
    return bool(FOLD_RE.match(text))


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


def fold_sort_key(fold: str) -> tuple[int, int]:
    """Numeric order (fold_2 before fold_10), then fold_all."""
    return (1, 0) if fold == "all" else (0, int(fold))


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


def legacy_model_entries(names: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """The entries of an nnU-Net export zip that an install keeps, by model folder
    (``DatasetXXX_Name/Trainer__Plans__configuration``: plans, dataset and fingerprint JSON, the
    fold checkpoints), and the names of all others, in the zip's order."""
    keep_re = re.compile(r"^([^/]+)/([^/]+)/(plans\.json|dataset\.json|dataset_fingerprint\.json|"
                         rf"fold_{FOLD_PATTERN}/{CHECKPOINT_PATTERN}\.pth)\Z")
    kept: dict[str, list[str]] = {}
    dropped: list[str] = []
    for name in names:
        match = keep_re.match(name)
        if match and DATASET_RE.match(match[1]) and MODEL_RE.match(match[2]):
            kept.setdefault(f"{match[1]}/{match[2]}", []).append(name)
        else:
            dropped.append(name)
    return kept, dropped
