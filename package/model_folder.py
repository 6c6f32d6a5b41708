"""Find what to export in nnU-Net's results tree: model folders, folds and checkpoints.

A model folder is ``$nnUNet_results/DatasetXXX_Name/Trainer__Plans__configuration``; the names
it may have, and the entry names it becomes in a package, are the format's
(``nnseal.format.layout``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nnseal.errors import EnvironmentProblem, ModelLayoutError
from nnseal.format.layout import (
    ALL_FOLDS,
    CHECKPOINT_NAMES,
    DATASET_RE,
    MODEL_RE,
    REQUIRED_JSON,
    checkpoint_entry_name,
    fold_sort_key,
)


@dataclass(frozen=True)
class Checkpoint:
    fold: str  # "0".."4" or "all"
    name: str  # checkpoint_final / checkpoint_best
    source: Path

    @property
    def fold_dir(self) -> str:
        return f"fold_{self.fold}"


@dataclass
class ModelFolder:
    path: Path
    dataset: str
    trainer: str
    plans: str
    configuration: str
    checkpoints: list[Checkpoint] = field(default_factory=list)

    @property
    def relative(self) -> str:
        """The folder's path inside a package and under nnUNet_results."""
        return f"{self.dataset}/{self.path.name}"

    @property
    def folds(self) -> list[str]:
        return sorted({c.fold for c in self.checkpoints}, key=fold_sort_key)


def parse_model_folder(path: str | os.PathLike) -> ModelFolder:
    """Check that ``path`` looks like ``DatasetXXX_Name/Trainer__Plans__configuration``."""
    path = Path(path)
    if not path.exists():
        raise EnvironmentProblem("no such model folder", path=path)
    if not path.is_dir():
        raise ModelLayoutError("not a folder; give an nnU-Net model folder (Trainer__Plans__configuration)", path=path)
    path = path.resolve()
    model = MODEL_RE.match(path.name)
    if not model:
        raise ModelLayoutError("folder name is not Trainer__Plans__configuration", path=path)
    if not DATASET_RE.match(path.parent.name):
        raise ModelLayoutError("parent folder name is not DatasetXXX_Name", path=path)
    for name in REQUIRED_JSON:
        if not (path / name).is_file():
            raise ModelLayoutError(f"{name} is missing", path=path)
    return ModelFolder(path=path, dataset=path.parent.name, trainer=model.group(1), plans=model.group(2),
                       configuration=model.group(3))


def select_checkpoints(model: ModelFolder, folds: list[str] | None, checkpoint_names: list[str] | None) -> ModelFolder:
    """Fill ``model.checkpoints``: what was asked for must exist; by default take what is there."""
    if folds:
        wanted_folds = [normalise_fold(f) for f in folds]
        for fold in wanted_folds:
            if not (model.path / f"fold_{fold}").is_dir():
                raise ModelLayoutError(f"fold_{fold} was asked for but is missing", path=model.path)
    else:
        wanted_folds = [f for f in ALL_FOLDS if (model.path / f"fold_{f}").is_dir()]
        if not wanted_folds:
            raise ModelLayoutError("no fold_N folders found", path=model.path)
    explicit = bool(checkpoint_names)
    names = [normalise_checkpoint(n) for n in checkpoint_names or []] if explicit else list(CHECKPOINT_NAMES)
    found: list[Checkpoint] = []
    for fold in wanted_folds:
        in_fold = []
        for name in names:
            source = model.path / f"fold_{fold}" / f"{name}.pth"
            if source.is_file():
                in_fold.append(Checkpoint(fold, name, source))
            elif explicit:
                raise ModelLayoutError(f"fold_{fold}/{name}.pth was asked for but is missing", path=model.path)
        if not in_fold:
            raise ModelLayoutError(f"fold_{fold} has no checkpoint ({', '.join(n + '.pth' for n in names)})",
                                   path=model.path)
        found.extend(in_fold)
    model.checkpoints = found
    return model


def normalise_fold(fold: str | int) -> str:
    text = str(fold).strip()
    text = text[5:] if text.startswith("fold_") else text
    if text not in ALL_FOLDS:
        raise ModelLayoutError(f"fold {fold!r} is not one of 0-4 or all")
    return text


def normalise_checkpoint(name: str) -> str:
    text = name.strip()
    text = text[:-4] if text.endswith(".pth") else text
    text = text if text.startswith("checkpoint_") else f"checkpoint_{text}"
    if text not in CHECKPOINT_NAMES:
        raise ModelLayoutError(f"checkpoint {name!r} is not final or best")
    return text


def resolve_dataset(results: Path, dataset: str) -> str:
    """A dataset id (``42``) or name (``Dataset042_Toy``) -> the folder name under results."""
    if not results.is_dir():
        raise EnvironmentProblem("results folder does not exist", path=results)
    if dataset.isdigit():
        prefix = f"Dataset{int(dataset):03d}_"
        matches = sorted(p.name for p in results.iterdir() if p.is_dir() and p.name.startswith(prefix))
        if len(matches) != 1:
            raise ModelLayoutError(f"{len(matches)} dataset folders match id {dataset}: {', '.join(matches) or 'none'}",
                                   path=results)
        return matches[0]
    if not (results / dataset).is_dir():
        raise ModelLayoutError(f"no dataset folder {dataset}", path=results)
    return dataset


def model_folders_from_selection(results: Path, dataset: str, configurations: list[str], trainer: str,
                                 plans: str) -> list[Path]:
    """nnU-Net's -d/-c/-tr/-p selection -> model folders under ``results``."""
    name = resolve_dataset(results, dataset)
    return [results / name / f"{trainer}__{plans}__{c}" for c in configurations]


def checkpoint_entry(model: ModelFolder, checkpoint: Checkpoint) -> str:
    return checkpoint_entry_name(model.relative, checkpoint.fold, checkpoint.name)
