"""A model must be what its folder says it is, and land where nnU-Net will find it alone.

nnU-Net never reads a checkpoint's own trainer, configuration or fold to decide how to
run it: it builds the network and preprocessing from the folder name and plans.json. A
checkpoint whose metadata names another configuration (``2d_alt`` inside a ``…__2d``
folder) or another fold is therefore run silently with the wrong preprocessing. And
nnU-Net finds a dataset by its id alone (``-d 42`` -> ``Dataset042_*``): a second folder
with the same id and another name makes both unusable.

``check_plans_match_model`` and ``check_checkpoint_matches_model`` are part of the shared
verdict (verify, scan and install refuse alike) and of the legacy install path;
``check_dataset_id_free`` needs the results folder, so only install runs it. Torch-free.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nnseal.errors import ModelLayoutError, from_os_error
from nnseal.format.layout import DATASET_RE, MODEL_RE
from nnseal.format.strict_json import show

# Any folder nnU-Net could take for dataset NNN, whatever the case of its letters (a
# case-insensitive filesystem, or nnU-Net on one, sees Dataset042_toy and Dataset042_Toy as one).
_ANY_DATASET_RE = re.compile(r"^dataset(\d{3})_", re.IGNORECASE)


def _model_parts(model: str) -> tuple[str, str, str]:
    """(trainer, plans, configuration) of ``DatasetXXX_Name/Trainer__Plans__configuration``."""
    match = MODEL_RE.match(model.rsplit("/", 1)[-1])
    if match is None:  # the layout check refuses such names first; never compare against a guess
        raise ModelLayoutError(f"'{model}' is not a Trainer__Plans__configuration model folder")
    return match[1], match[2], match[3]


def check_plans_match_model(plans: Any, model: str, *, name: str) -> None:
    """plans.json (``name``, already parsed) of ``model`` must name the folder's plans identifier
    and hold the folder's configuration: nnU-Net looks the configuration up there by name."""
    _, plans_id, configuration = _model_parts(model)
    if not isinstance(plans, Mapping):
        raise ModelLayoutError(f"entry '{name}': plans.json is not a JSON object")
    plans_name = plans.get("plans_name")
    if plans_name != plans_id:
        raise ModelLayoutError(f"entry '{name}': plans_name is {show(plans_name)} but the model folder's plans "
                               f"identifier is {plans_id!r}")
    configurations = plans.get("configurations")
    if not isinstance(configurations, Mapping) or configuration not in configurations:
        known = ", ".join(sorted(map(str, configurations))) if isinstance(configurations, Mapping) else "none"
        raise ModelLayoutError(f"entry '{name}': the model folder's configuration {configuration!r} is not in "
                               f"plans.json (it has: {known})")


def check_checkpoint_matches_model(meta: Mapping[str, Any], model: str, fold: str, *, name: str) -> None:
    """A checkpoint's trainer, configuration and fold (nnseal metadata, or what sanitizing kept
    of a .pth) must be those of the folder it is installed in: ``model`` and ``fold_<fold>``."""
    trainer, _, configuration = _model_parts(model)
    mismatches = []
    if meta.get("trainer_name") != trainer:
        mismatches.append(f"trainer {show(meta.get('trainer_name'))} (folder: {trainer!r})")
    if meta.get("configuration") != configuration:
        mismatches.append(f"configuration {show(meta.get('configuration'))} (folder: {configuration!r})")
    if str(meta.get("fold")) != fold:
        mismatches.append(f"fold {show(meta.get('fold'))} (folder: fold_{fold})")
    if mismatches:
        raise ModelLayoutError(f"entry '{name}': checkpoint says {'; '.join(mismatches)}: it does not belong "
                               "in this model folder")


def check_dataset_id_free(results: Path, datasets: Iterable[str]) -> None:
    """Refuse to install ``DatasetNNN_Name`` beside another folder with the same id and another
    name (compared without regard to case): nnU-Net's ``-d NNN`` would then fail for both."""
    wanted = {}
    for dataset in datasets:
        match = DATASET_RE.match(dataset)
        if match is not None:
            wanted[match[1]] = dataset
    if not wanted or not results.is_dir():
        return
    try:
        existing = sorted(child.name for child in results.iterdir())
    except OSError as err:
        raise from_os_error(err, results) from err
    for name in existing:
        match = _ANY_DATASET_RE.match(name)
        if match is None or match[1] not in wanted or name == wanted[match[1]]:
            continue
        raise ModelLayoutError(f"dataset id {match[1]} is already used by {name!r} in this results folder; "
                               f"installing {wanted[match[1]]!r} beside it would make nnU-Net's -d {int(match[1])} "
                               "ambiguous", path=results / name)
