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


@dataclass(frozen=True)
class PackageEntry:
    name: str
    kind: EntryKind
    model: str | None = None  # DatasetXXX_Name/Trainer__Plans__configuration
    filename: str | None = None  # for json: plans.json ...
    fold: str | None = None
    checkpoint: str | None = None


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
    match = _ENTRY_RE.match(name)
    if not match or not DATASET_RE.match(match["dataset"]) or not MODEL_RE.match(match["model"]):
        raise TamperedPackage(f"entry '{name}' is outside the nnU-Net package layout")
    model = f"{match['dataset']}/{match['model']}"
    if match["json"]:
        return PackageEntry(name, EntryKind.JSON, model, filename=match["json"])
    if match["checkpoint"]:
        return PackageEntry(name, EntryKind.CHECKPOINT, model, fold=match["fold"], checkpoint=match["checkpoint"])
    return PackageEntry(name, EntryKind.PNG, model, fold=match["fold"])


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
    return entries
