"""Which entry names a package may hold: nnU-Net's layout and nothing else (docs/FORMAT.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from nnseal.errors import TamperedPackage
from nnseal.package.layout import CARD_NAME, DATASET_RE, MODEL_RE

PICKLE_SUFFIXES = (".pth", ".pt", ".pkl", ".pickle", ".ckpt", ".bin", ".npy", ".npz", ".joblib")
_JSON = "plans.json|dataset.json|dataset_fingerprint.json"
_ENTRY_RE = re.compile(
    r"^(?P<dataset>[^/]+)/(?P<model>[^/]+)/(?:"
    rf"(?P<json>{_JSON})"
    r"|fold_(?P<fold>[0-4]|all)/(?:(?P<checkpoint>checkpoint_final|checkpoint_best)\.safetensors|(?P<png>progress\.png))"
    r")$")


@dataclass(frozen=True)
class PackageEntry:
    name: str
    kind: str  # card | json | checkpoint | png
    model: str | None = None  # DatasetXXX_Name/Trainer__Plans__configuration
    filename: str | None = None  # for json: plans.json ...
    fold: str | None = None
    checkpoint: str | None = None


def classify(name: str) -> PackageEntry:
    """Place one entry name in the layout, or refuse it."""
    if name == CARD_NAME:
        return PackageEntry(name, "card")
    if name.lower().endswith(PICKLE_SUFFIXES):
        raise TamperedPackage(f"entry '{name}' is a pickle-format file; nnseal packages never contain pickles")
    match = _ENTRY_RE.match(name)
    if not match or not DATASET_RE.match(match["dataset"]) or not MODEL_RE.match(match["model"]):
        raise TamperedPackage(f"entry '{name}' is outside the nnU-Net package layout")
    model = f"{match['dataset']}/{match['model']}"
    if match["json"]:
        return PackageEntry(name, "json", model, filename=match["json"])
    if match["checkpoint"]:
        return PackageEntry(name, "checkpoint", model, fold=match["fold"], checkpoint=match["checkpoint"])
    return PackageEntry(name, "png", model, fold=match["fold"])


def classify_all(names: list[str]) -> list[PackageEntry]:
    entries = [classify(n) for n in names]
    datasets = {e.model.split("/")[0] for e in entries if e.model}
    if len(datasets) > 1:
        raise TamperedPackage(f"package spans several datasets: {', '.join(sorted(datasets))}")
    models = {e.model for e in entries if e.model}
    for model in sorted(models):
        have = {e.filename for e in entries if e.model == model and e.kind == "json"}
        for required in ("plans.json", "dataset.json"):
            if required not in have:
                raise TamperedPackage(f"model folder '{model}' lacks {required}")
        if not any(e.kind == "checkpoint" for e in entries if e.model == model):
            raise TamperedPackage(f"model folder '{model}' has no checkpoint")
    if not models:
        raise TamperedPackage("package holds no model folder")
    return entries
