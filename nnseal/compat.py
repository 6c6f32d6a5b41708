"""Which software a model was trained with, and whether this environment can run it.

nnU-Net checkpoints record no versions. A fold folder may hold nnU-Net's ``debug.json``
(``nnUNetTrainer._save_debug_information``), whose ``torch_version`` is the torch the fold
was trained with; everything else is taken from the exporting environment. The card records
each version with its source (docs/FORMAT.md, "Card"), install copies them into the receipt,
and install and ``nnseal doctor`` compare them with what is installed here.

Nothing here imports torch or nnunetv2: versions come from ``importlib.metadata`` and the
trainer lookup is a static scan of nnunetv2's source (and of the external trainer folders
nnU-Net 2.8.1 searches, ``$nnUNet_extTrainer``, which the caller passes in), so install and
doctor stay fast and run no code of the model's.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnseal.errors import Refused

# The distributions a model's weights and network depend on, in the order reports list them.
TRAINING_SOFTWARE = ("nnunetv2", "dynamic_network_architectures", "torch")
DEBUG_JSON = "debug.json"
SOURCE_DEBUG_JSON = "debug.json"
SOURCE_ENVIRONMENT = "environment"
SOURCES = (SOURCE_DEBUG_JSON, SOURCE_ENVIRONMENT)
# debug.json holds str() of every trainer attribute: a few hundred kB at most for real runs.
MAX_DEBUG_JSON_BYTES = 16 * 1024 * 1024
_RELEASE = re.compile(r"^v?(\d+(?:\.\d+)*)")
# Where nnU-Net looks trainers up by name (recursive_find_trainer_class_by_name).
NNUNET_TRAINER_PACKAGE = ("training", "nnUNetTrainer")


def installed_version(distribution: str) -> str | None:
    """The version pip installed of ``distribution`` here, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def release_tuple(version: object) -> tuple[int, ...] | None:
    """The release numbers a version starts with (``2.6.0+cu124`` -> (2, 6, 0)); None if it has none."""
    if not isinstance(version, str):
        return None
    match = _RELEASE.match(version.strip())
    if match is None:
        return None
    numbers = [int(part) for part in match[1].split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:  # 2.6 == 2.6.0
        numbers.pop()
    return tuple(numbers)


def is_older(installed: str, trained: str) -> bool:
    """Whether ``installed`` is an older release than ``trained`` (unreadable versions are not)."""
    a, b = release_tuple(installed), release_tuple(trained)
    return a is not None and b is not None and a < b


def debug_json_torch_version(fold_dir: str | os.PathLike) -> str | None:
    """``torch_version`` from a fold's debug.json, or None (no file, unreadable, or no such field)."""
    path = Path(fold_dir) / DEBUG_JSON
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_DEBUG_JSON_BYTES + 1)
    except OSError:
        return None
    return torch_version_in_debug_json(data)


def torch_version_in_debug_json(data: bytes) -> str | None:
    """``torch_version`` from debug.json's bytes, or None when they hold no readable one."""
    from nnseal.format.strict_json import load_strict_json

    if len(data) > MAX_DEBUG_JSON_BYTES:
        return None
    try:
        document = load_strict_json(data, what=DEBUG_JSON, allow_nan=True)
    except Refused:
        return None
    version = document.get("torch_version") if isinstance(document, dict) else None
    return version if isinstance(version, str) and release_tuple(version) is not None else None


def training_versions(fold_dirs: Iterable[str | os.PathLike]) -> dict[str, dict[str, str]]:
    """The card's ``trained_with``: per distribution ``{"version", "source"}``.

    torch comes from the folds' debug.json where one says (the newest, if folds disagree:
    what the model needs at least), else from this environment like the others. A
    distribution not installed here and named by no debug.json is left out.
    """
    found = debug_json_versions(debug_json_torch_version(d) for d in fold_dirs)
    for distribution in TRAINING_SOFTWARE:
        version = installed_version(distribution)
        if distribution not in found and version is not None:
            found[distribution] = {"version": version, "source": SOURCE_ENVIRONMENT}
    return {name: found[name] for name in TRAINING_SOFTWARE if name in found}


def debug_json_versions(torch_versions: Iterable[str | None]) -> dict[str, dict[str, str]]:
    """``trained_with`` as far as debug.json files tell: torch (the newest of the folds') or nothing."""
    seen = [v for v in torch_versions if v is not None]
    if not seen:
        return {}
    return {"torch": {"version": max(seen, key=lambda v: release_tuple(v) or ()), "source": SOURCE_DEBUG_JSON}}


def read_trained_with(value: object) -> dict[str, dict[str, str]]:
    """The well-formed entries of a card's or receipt's ``trained_with`` (others are ignored:
    the field is informational, and older cards lack it)."""
    if not isinstance(value, dict):
        return {}
    return {name: {"version": entry["version"], "source": entry["source"]}
            for name, entry in value.items()
            if isinstance(name, str) and isinstance(entry, dict) and isinstance(entry.get("version"), str)
            and isinstance(entry.get("source"), str)}


# --- the trainer class, found as nnU-Net finds it, without importing anything ---------------


def nnunet_trainer_folder() -> Path | None:
    """nnunetv2's ``training/nnUNetTrainer`` folder, located without importing nnunetv2."""
    try:
        spec = importlib.util.find_spec("nnunetv2")
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location).joinpath(*NNUNET_TRAINER_PACKAGE)
        if folder.is_dir():
            return folder
    return None


def _module_defines(path: Path, name: str) -> bool:
    """Whether the module at ``path`` defines ``name`` at top level (a class, or a name bound to one)."""
    try:
        source = path.read_bytes()
    except OSError:
        return False
    if name.encode() not in source:  # most modules: no need to parse
        return False
    try:
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError):
        return False  # nnU-Net could not import it either
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names):
                return True
    return False


def find_class_in_folder(folder: str | os.PathLike, name: str) -> Path | None:
    """The module file that defines ``name``, searched in the order nnU-Net's
    ``recursive_find_python_class`` imports them: the folder's modules first, then each
    package (a subfolder with ``__init__.py``) recursively, names sorted as pkgutil lists them."""
    folder = Path(folder)
    try:
        children = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError:
        return None
    for child in children:
        if child.suffix == ".py" and child.name != "__init__.py" and child.is_file() and child.stem.isidentifier():
            if _module_defines(child, name):
                return child
    for child in children:
        if child.is_dir() and (child / "__init__.py").is_file() and child.name.isidentifier():
            found = find_class_in_folder(child, name)
            if found is not None:
                return found
    return None


def find_trainer(name: str, external_folders: Sequence[str | os.PathLike] = ()) -> Path | None:
    """Where nnU-Net would find trainer class ``name``: in nnunetv2's trainers, else in the
    external trainer folders (nnU-Net 2.8.1's ``nnUNet_extTrainer``, in its order)."""
    folders: list[str | os.PathLike] = []
    own = nnunet_trainer_folder()
    if own is not None:
        folders.append(own)
    folders.extend(f for f in external_folders if str(f).strip() and os.path.isdir(f))
    for folder in folders:
        found = find_class_in_folder(folder, name)
        if found is not None:
            return found
    return None


# --- the checks install and doctor report ------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool
    message: str

    def to_json(self) -> dict:
        return {"check": self.name, "ok": self.ok, "message": self.message}


@dataclass
class CompatibilityReport:
    folder: str
    trainers: list[str] = field(default_factory=list)
    trained_with: dict[str, dict[str, str]] = field(default_factory=dict)
    installed: dict[str, str | None] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def warnings(self) -> list[str]:
        return [check.message for check in self.checks if not check.ok]

    def to_json(self) -> dict:
        return {"folder": self.folder, "ok": self.ok, "trainers": self.trainers, "trained_with": self.trained_with,
                "installed": self.installed, "checks": [c.to_json() for c in self.checks]}


def compatibility_checks(trainers: Sequence[str], trained_with: dict[str, dict[str, str]],
                         external_trainer_folders: Sequence[str | os.PathLike] = ()) -> list[Check]:
    """One check per piece of software the model needs and per trainer class; each failed
    check's message is one line saying what would go wrong."""
    checks: list[Check] = []
    for distribution in TRAINING_SOFTWARE:
        installed = installed_version(distribution)
        trained = trained_with.get(distribution, {}).get("version")
        source = trained_with.get(distribution, {}).get("source")
        said = f"trained with {trained} ({source})" if trained else "training version unknown"
        if installed is None:
            checks.append(Check(distribution, False, f"{distribution} is not installed; this model needs it "
                                                     f"({said})"))
        elif trained and is_older(installed, trained):
            checks.append(Check(distribution, False, f"installed {distribution} {installed} is older than "
                                                     f"{trained}, which this model was trained with ({source}); "
                                                     f"upgrade {distribution}"))
        else:
            checks.append(Check(distribution, True, f"{distribution} {installed} installed, {said}"))
    have_nnunet = installed_version("nnunetv2") is not None
    for trainer in trainers:
        name = f"trainer {trainer}"
        if not have_nnunet:
            checks.append(Check(name, False, f"trainer class {trainer} cannot be looked up: nnunetv2 is not "
                                             "installed"))
            continue
        found = find_trainer(trainer, external_trainer_folders)
        if found is None:
            where = " or the external trainer folders" if external_trainer_folders else ""
            checks.append(Check(name, False, f"the installed nnunetv2 does not define trainer class {trainer} "
                                             f"(searched nnunetv2.training.nnUNetTrainer{where}); nnU-Net "
                                             "cannot run this model without it"))
        else:
            checks.append(Check(name, True, f"trainer class {trainer} found in {found}"))
    return checks
