"""Find what to export in nnU-Net's results tree: model folders, folds and checkpoints.

A model folder is ``$nnUNet_results/DatasetXXX_Name/Trainer__Plans__configuration``; the names
it may have, and the entry names it becomes in a package, are the format's
(``nnseal.format.layout``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nnseal.errors import EnvironmentProblem, InvalidArgument, ModelLayoutError, from_os_error
from nnseal.format.layout import (
    CHECKPOINT_NAMES,
    DATASET_RE,
    DEFAULT_CHECKPOINTS,
    MAX_FOLD,
    REQUIRED_JSON,
    checkpoint_entry_name,
    fold_sort_key,
    is_configuration,
    is_fold,
    split_model_name,
)

# The configurations nnU-Net's own exporter tries when none is named (export_pretrained_model).
NNUNET_CONFIGURATIONS = ("2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres")


@dataclass(frozen=True)
class Checkpoint:
    fold: str  # "0", "1", ... or "all"
    name: str  # one of CHECKPOINT_NAMES
    source: Path

    @property
    def fold_dir(self) -> str:
        return f"fold_{self.fold}"


@dataclass(frozen=True)
class Note:
    """Something found in a model folder and not exported, and why: nothing is left out
    silently. ``fold``/``checkpoint`` name the selection that would take it, if any."""

    model: str  # DatasetXXX_Name/Trainer__Plans__configuration
    item: str  # fold_7, fold_3/checkpoint_latest.pth ...
    reason: str
    fold: str | None = None
    checkpoint: str | None = None

    def __str__(self) -> str:
        return f"{self.model}/{self.item} {self.reason}"


@dataclass
class ModelFolder:
    path: Path
    dataset: str
    trainer: str
    plans: str
    configuration: str
    checkpoints: list[Checkpoint] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

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
    parts = split_model_name(path.name)
    if parts is None:
        raise ModelLayoutError("folder name is not Trainer__Plans__configuration as nnU-Net names it (three "
                               "ASCII parts split by '__', the trainer a Python class name)", path=path)
    if not DATASET_RE.match(path.parent.name):
        raise ModelLayoutError("parent folder name is not DatasetXXX_Name", path=path)
    for name in REQUIRED_JSON:
        if not (path / name).is_file():
            raise ModelLayoutError(f"{name} is missing", path=path)
    return ModelFolder(path=path, dataset=path.parent.name, trainer=parts[0], plans=parts[1], configuration=parts[2])


def select_checkpoints(model: ModelFolder, folds: list[str] | None, checkpoint_names: list[str] | None) -> ModelFolder:
    """Fill ``model.checkpoints`` and ``model.notes``.

    What was asked for must exist. By default every fold folder is taken, with
    DEFAULT_CHECKPOINTS; a fold folder holding none of the checkpoints asked for is then
    left out with a note (explicitly asked for, it is refused). Every fold folder and every
    ``.pth`` in one that is not exported gets a note saying why.
    """
    present = _fold_folders(model)
    explicit_folds = bool(folds)
    if explicit_folds:
        wanted_folds = _unique(normalise_fold(f) for f in folds or [])
        for fold in wanted_folds:
            if fold not in present:
                # What the command line names and is not there is a missing file (exit 3), as for -i.
                raise EnvironmentProblem(f"fold_{fold} was asked for but is missing", path=model.path)
    else:
        wanted_folds = [f for f in present if is_fold(f)]
        if not wanted_folds:
            raise ModelLayoutError("no fold_N folders found", path=model.path)
    explicit = bool(checkpoint_names)
    names = _unique(normalise_checkpoint(n) for n in checkpoint_names or []) if explicit else list(DEFAULT_CHECKPOINTS)
    names.sort(key=CHECKPOINT_NAMES.index)  # the package's entry order does not depend on how they were asked for
    found: list[Checkpoint] = []
    notes: list[Note] = []
    for fold in sorted(present, key=_folder_sort_key):
        if not is_fold(fold):
            notes.append(Note(model.relative, f"fold_{fold}", "not exported: not a fold name nnU-Net writes "
                              f"(fold_0 to fold_{MAX_FOLD} without leading zeros, or fold_all)"))
            continue
        if fold not in wanted_folds:
            notes.append(Note(model.relative, f"fold_{fold}", "not exported: not among the folds asked for",
                              fold=fold))
            continue
        in_fold = []
        for name in names:
            source = model.path / f"fold_{fold}" / f"{name}.pth"
            if source.is_file():
                in_fold.append(Checkpoint(fold, name, source))
            elif explicit:
                raise EnvironmentProblem(f"fold_{fold}/{name}.pth was asked for but is missing", path=model.path)
        others = _pth_files(model.path / f"fold_{fold}")
        for other in others:
            if other.removesuffix(".pth") in names:
                continue
            if other.removesuffix(".pth") in CHECKPOINT_NAMES:
                notes.append(Note(model.relative, f"fold_{fold}/{other}",
                                  "not exported: not among the checkpoints asked for",
                                  checkpoint=other.removesuffix(".pth")))
            else:
                notes.append(Note(model.relative, f"fold_{fold}/{other}",
                                  f"not exported: not a checkpoint nnU-Net writes ({', '.join(CHECKPOINT_NAMES)})"))
        if not in_fold:
            wanted = ", ".join(n + ".pth" for n in names)
            if explicit_folds:
                raise ModelLayoutError(f"fold_{fold} has no checkpoint ({wanted})", path=model.path)
            notes.append(Note(model.relative, f"fold_{fold}", f"not exported: it has no checkpoint ({wanted})"))
            continue
        found.extend(in_fold)
    if not found:
        raise ModelLayoutError(f"no fold holds a checkpoint ({', '.join(n + '.pth' for n in names)})",
                               path=model.path)
    model.checkpoints = found
    model.notes = notes
    return model


def _fold_folders(model: ModelFolder) -> list[str]:
    """What follows ``fold_`` in the name of every folder of ``model`` that starts with it."""
    try:
        return [child.name[5:] for child in model.path.iterdir()
                if child.name.startswith("fold_") and child.is_dir()]
    except OSError as err:
        raise from_os_error(err) from err


def _pth_files(fold_dir: Path) -> list[str]:
    try:
        return sorted(child.name for child in fold_dir.iterdir() if child.name.endswith(".pth"))
    except OSError as err:
        raise from_os_error(err) from err


def _folder_sort_key(fold: str) -> tuple[int, int, str]:
    return (*fold_sort_key(fold), "") if is_fold(fold) else (2, 0, fold)


def _unique(items) -> list[str]:
    return list(dict.fromkeys(items))


def normalise_fold(fold: str | int) -> str:
    """``3``, ``"3"``, ``"fold_3"`` -> ``"3"``; refuses what nnU-Net would not name ``fold_N``."""
    text = str(fold).strip()
    text = text[5:] if text.startswith("fold_") else text
    if not is_fold(text):
        raise ModelLayoutError(f"fold {fold!r} is not a number from 0 to {MAX_FOLD} (no leading zeros) or all")
    return text


def normalise_checkpoint(name: str) -> str:
    """``final``, ``checkpoint_final``, ``checkpoint_final.pth`` -> ``checkpoint_final``."""
    text = name.strip()
    text = text[:-4] if text.endswith(".pth") else text
    text = text if text.startswith("checkpoint_") else f"checkpoint_{text}"
    if text not in CHECKPOINT_NAMES:
        raise ModelLayoutError(f"checkpoint {name!r} is not one nnU-Net writes ({', '.join(CHECKPOINT_NAMES)})")
    return text


def resolve_dataset(results: Path, dataset: str) -> str:
    """A dataset id (``42``) or name (``Dataset042_Toy``) -> the folder name under results."""
    if not results.is_dir():
        raise EnvironmentProblem("results folder does not exist", path=results)
    if dataset.isdigit():
        prefix = f"Dataset{int(dataset):03d}_"
        matches = sorted(p.name for p in results.iterdir() if p.is_dir() and p.name.startswith(prefix))
        if not matches:
            raise EnvironmentProblem(f"no dataset folder {prefix}*", path=results)
        if len(matches) > 1:
            raise InvalidArgument(f"{len(matches)} dataset folders match id {dataset}: {', '.join(matches)}; "
                                  "give the dataset's full name", path=results)
        return matches[0]
    if not (results / dataset).is_dir():
        raise EnvironmentProblem(f"no dataset folder {dataset}", path=results)
    return dataset


def model_folders_from_selection(results: Path, dataset: str, configurations: list[str], trainer: str,
                                 plans: str) -> list[Path]:
    """nnU-Net's -d/-c/-tr/-p selection -> model folders under ``results``.

    Each name is built as nnU-Net builds it and must split back into the same three parts,
    so no part can step out of the dataset folder or smuggle in a separator.
    """
    name = resolve_dataset(results, dataset)
    return [results / name / _model_name(trainer, plans, configuration) for configuration in configurations]


def _model_name(trainer: str, plans: str, configuration: str) -> str:
    folder = f"{trainer}__{plans}__{configuration}"
    if split_model_name(folder) != (trainer, plans, configuration):
        raise InvalidArgument(f"trainer {trainer!r}, plans {plans!r} and configuration {configuration!r} do not "
                               "make a model folder name nnU-Net splits back into them")
    return folder


def find_configurations(results: Path, dataset: str, trainer: str, plans: str) -> list[str]:
    """Every configuration trained with ``trainer`` and ``plans`` in ``dataset``: nnU-Net's
    exporter tries NNUNET_CONFIGURATIONS; any other configuration folder counts too. nnU-Net's
    order first, then by name."""
    _model_name(trainer, plans, NNUNET_CONFIGURATIONS[0])
    name = resolve_dataset(results, dataset)
    try:
        children = [child for child in (results / name).iterdir() if child.is_dir()]
    except OSError as err:
        raise from_os_error(err) from err
    found = [parts[2] for parts in (split_model_name(child.name) for child in children)
             if parts is not None and parts[:2] == (trainer, plans)]
    order = {c: i for i, c in enumerate(NNUNET_CONFIGURATIONS)}
    found.sort(key=lambda c: (order.get(c, len(order)), c))
    if not found:
        raise EnvironmentProblem(f"no model folder {trainer}__{plans}__<configuration> in {name}",
                                 path=results / name)
    return found


def check_cascades(models: list[ModelFolder]) -> None:
    """A cascade stage (plans.json: ``configurations[c]["previous_stage"]``) is predicted by
    nnU-Net from the segmentation of its previous stage's model folder (same trainer and
    plans): a package holding the one without the other cannot be used. Refuse it."""
    exported = {(m.dataset, m.trainer, m.plans, m.configuration) for m in models}
    for model in models:
        previous = _previous_stage(model)
        if previous is not None and (model.dataset, model.trainer, model.plans, previous) not in exported:
            raise ModelLayoutError(
                f"configuration {model.configuration!r} is a cascade stage: nnU-Net predicts it from the output of "
                f"{previous!r}, and {model.dataset}/{model.trainer}__{model.plans}__{previous} is not exported with it",
                path=model.path)


def _previous_stage(model: ModelFolder) -> str | None:
    """``previous_stage`` of the folder's configuration, following ``inherits_from`` as nnU-Net's
    PlansManager does."""
    from nnseal.format.strict_json import load_strict_json

    source = model.path / "plans.json"
    try:
        plans = load_strict_json(source.read_bytes(), what="plans.json", error=ModelLayoutError, path=source,
                                 allow_nan=True)
    except OSError as err:
        raise from_os_error(err) from err
    configurations = plans.get("configurations") if isinstance(plans, dict) else None
    if not isinstance(configurations, dict) or model.configuration not in configurations:
        raise ModelLayoutError(f"plans.json has no configuration {model.configuration!r}", path=source)
    name: object = model.configuration
    seen: set[str] = set()
    while isinstance(name, str) and name not in seen:
        seen.add(name)
        configuration = configurations.get(name)
        if not isinstance(configuration, dict):
            raise ModelLayoutError(f"plans.json: configuration {name!r} is missing or not an object", path=source)
        if "previous_stage" in configuration:
            previous = configuration["previous_stage"]
            if not isinstance(previous, str) or not is_configuration(previous):
                raise ModelLayoutError(f"plans.json: previous_stage of {name!r} is not a configuration name",
                                       path=source)
            return previous
        name = configuration.get("inherits_from")
    if name is None:
        return None
    raise ModelLayoutError(f"plans.json: inherits_from {name!r} is not a configuration name, or makes a cycle",
                           path=source)


def checkpoint_entry(model: ModelFolder, checkpoint: Checkpoint) -> str:
    return checkpoint_entry_name(model.relative, checkpoint.fold, checkpoint.name)
