"""What a results folder holds: every model and ensemble folder, whether nnseal installed it, from
whom, and whether it still matches its receipt (``nnseal list``, ``nnseal verify --all``).

Two depths of drift check. The quick one (default) compares the folder's listing with the
receipt (missing and extra files exactly) and each file's mtime with the receipt's: install writes
the receipt after every file, so a file changed since has a later mtime. It reads no file, so it
misses a change that kept or restored the mtime (``touch -r``, ``cp -p``, a change within the
filesystem's timestamp granularity of the install). ``check=True`` re-hashes every file against
the receipt (``receipt.check_installed``), as ``nnseal verify MODEL_FOLDER`` does. Read-only:
nothing is swept or written. Torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from nnseal.errors import ModelLayoutError, NnsealError
from nnseal.format.layout import (
    CHECKPOINT_NAMES,
    DATASET_RE,
    ENSEMBLES,
    INFERENCE_INFORMATION,
    INFERENCE_INSTRUCTIONS,
    ensemble_members,
    is_fold,
    split_model_name,
)
from nnseal.verify.receipt import RECEIPT_NAME, DriftReport, check_installed, read_receipt


class FolderKind(str, Enum):
    MODEL = "model"  # DatasetX/Trainer__Plans__configuration
    ENSEMBLE = "ensemble"  # DatasetX/ensembles/ensemble___A___B___folds
    FILE = "file"  # DatasetX/inference_information.json, inference_instructions.txt

    def __str__(self) -> str:
        return self.value


class Status(str, Enum):
    OK = "ok"  # every file matches the receipt (as far as the check looked)
    DRIFTED = "drifted"  # modified, missing or extra files
    NO_RECEIPT = "no receipt"  # not installed by nnseal (or its receipt was removed)
    BAD_RECEIPT = "bad receipt"  # a receipt nnseal cannot read

    def __str__(self) -> str:
        return self.value


@dataclass
class InstalledModel:
    folder: str
    name: str  # relative to the results folder
    dataset: str
    kind: FolderKind
    trainer: str | None = None
    plans: str | None = None
    configuration: str | None = None
    members: list[str] = field(default_factory=list)  # an ensemble's model folders
    folds: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)  # file names found in any fold
    status: Status = Status.NO_RECEIPT
    check: str | None = None  # "quick" or "hash"; None without a receipt
    provenance: str | None = None  # as the receipt says: "signed" or "unsigned" (anyone could edit it)
    signer_fingerprint: str | None = None
    signer_name: str | None = None  # the trust folder's name for that key, if it holds it
    method: str | None = None
    signer: str | None = None
    package: str | None = None
    release: str | None = None
    created: str | None = None
    dataset_files: list[str] = field(default_factory=list)  # dataset-level files its receipt records
    recorded_by: list[str] = field(default_factory=list)  # a dataset-level file: receipts recording it
    modified: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    problem: str | None = None  # why a receipt could not be read

    @property
    def ok(self) -> bool:
        return self.status is not Status.DRIFTED and self.status is not Status.BAD_RECEIPT

    def to_json(self) -> dict:
        return {"folder": self.folder, "name": self.name, "dataset": self.dataset, "kind": self.kind.value,
                "trainer": self.trainer, "plans": self.plans, "configuration": self.configuration,
                "members": self.members, "folds": self.folds, "checkpoints": self.checkpoints,
                "status": self.status.value, "check": self.check, "installed_by_nnseal": self.check is not None,
                "provenance": self.provenance, "signer_fingerprint": self.signer_fingerprint,
                "signer_name": self.signer_name, "method": self.method, "signer": self.signer,
                "package": self.package, "release": self.release, "created": self.created,
                "dataset_files": self.dataset_files, "recorded_by": self.recorded_by,
                "modified": self.modified, "missing": self.missing, "extra": self.extra, "problem": self.problem}


def list_installed(results: str | os.PathLike, *, check: bool = False,
                   signer_names: dict[str, str] | None = None) -> list[InstalledModel]:
    """Every model folder, ensemble folder and dataset-level file under ``results``, sorted by name.

    ``check`` re-hashes every file (else the quick check of the module docstring).
    ``signer_names``: fingerprint -> name (the trust folder's), to name each signer. A missing
    ``results`` holds nothing. Names starting with '.' (nnseal's staging, trash and lock files)
    and anything outside nnU-Net's layout are not listed.
    """
    results = Path(results)
    found: list[InstalledModel] = []
    for dataset in _children(results):
        if not DATASET_RE.match(dataset.name) or not dataset.is_dir():
            continue
        for child in _children(dataset):
            if child.name == ENSEMBLES and child.is_dir() and not child.is_symlink():
                for ensemble in _children(child):
                    if ensemble.is_dir() and ensemble_members(ensemble.name) is not None:
                        found.append(_describe(results, ensemble, FolderKind.ENSEMBLE, check))
            elif child.is_dir() and split_model_name(child.name) is not None:
                found.append(_describe(results, child, FolderKind.MODEL, check))
        for name in (INFERENCE_INFORMATION, INFERENCE_INSTRUCTIONS):
            if (dataset / name).is_file() or (dataset / name).is_symlink():
                found.append(InstalledModel(folder=str(dataset / name), name=f"{dataset.name}/{name}",
                                            dataset=dataset.name, kind=FolderKind.FILE))
    _note_dataset_files(found)
    for item in found:
        item.signer_name = (signer_names or {}).get(item.signer_fingerprint or "")
    return sorted(found, key=lambda item: item.name)


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as err:
        from nnseal.errors import from_os_error

        raise from_os_error(err, folder) from err


def _describe(results: Path, folder: Path, kind: FolderKind, check: bool) -> InstalledModel:
    item = InstalledModel(folder=str(folder), name=folder.relative_to(results).as_posix(),
                          dataset=folder.relative_to(results).parts[0], kind=kind)
    if kind is FolderKind.MODEL:
        item.trainer, item.plans, item.configuration = split_model_name(folder.name) or (None, None, None)
    else:
        item.members = (ensemble_members(folder.name) or ([], ""))[0]
    folds = sorted((p for p in _children(folder) if p.name.startswith("fold_") and p.is_dir()
                    and is_fold(p.name.removeprefix("fold_"))), key=lambda p: _fold_key(p.name))
    item.folds = [p.name.removeprefix("fold_") for p in folds]
    names = {f"{c}.pth" for c in CHECKPOINT_NAMES}
    item.checkpoints = sorted({p.name for fold in folds for p in _children(fold) if p.name in names},
                              key=lambda n: CHECKPOINT_NAMES.index(n.removesuffix(".pth")))
    if not (folder / RECEIPT_NAME).exists():
        return item
    try:
        receipt = read_receipt(folder)
        drift = check_installed(folder) if check else quick_check(folder, receipt)
    except (NnsealError, OSError) as err:
        item.status, item.check = Status.BAD_RECEIPT, "hash" if check else "quick"
        item.problem = err.reason if isinstance(err, NnsealError) else str(err)
        return item
    item.check = "hash" if check else "quick"
    item.provenance, item.signer_fingerprint = drift.provenance, drift.signer_fingerprint
    item.method, item.signer = drift.method, drift.signer
    item.package, item.release, item.created = (_text(receipt.get(key)) for key in ("package", "release", "created"))
    dataset_files = receipt.get("dataset_files")
    if isinstance(dataset_files, dict):
        item.dataset_files = sorted(k for k in dataset_files if isinstance(k, str))
    item.modified, item.missing, item.extra = drift.modified, drift.missing, drift.extra
    item.status = Status.OK if drift.ok else Status.DRIFTED
    return item


def quick_check(model_dir: Path, receipt: dict) -> DriftReport:
    """Missing and extra files exactly; "modified" for a file whose mtime is later than the receipt's
    (or that became a link). See the module docstring for what it cannot see."""
    report = DriftReport(folder=str(model_dir), provenance=_text(receipt.get("provenance")),
                         signer_fingerprint=_text(receipt.get("signer_fingerprint")),
                         method=_text(receipt.get("method")), signer=_text(receipt.get("signer")))
    written = (model_dir / RECEIPT_NAME).stat().st_mtime_ns
    files = receipt["files"]
    present = {p.relative_to(model_dir).as_posix(): p for p in model_dir.rglob("*") if p.is_file() or p.is_symlink()}
    present.pop(RECEIPT_NAME, None)
    for rel in sorted(files):
        path = present.get(rel)
        if path is None:
            report.missing.append(rel)
        elif path.is_symlink() or path.stat().st_mtime_ns > written:
            report.modified.append(rel)
    report.extra = sorted(set(present) - set(files))
    dataset_files = receipt.get("dataset_files")
    for rel in sorted(dataset_files if isinstance(dataset_files, dict) else []):
        path = model_dir.parent / str(rel)
        if not isinstance(rel, str) or "/" in rel or rel in ("", ".", ".."):
            report.modified.append(f"../{rel}")
        elif not path.is_file() and not path.is_symlink():
            report.missing.append(f"../{rel}")
        elif path.is_symlink() or path.stat().st_mtime_ns > written:
            report.modified.append(f"../{rel}")
    return report


def _note_dataset_files(found: list[InstalledModel]) -> None:
    """A dataset-level file counts as installed by nnseal when a model folder's receipt records it
    (that receipt's drift check covers its bytes)."""
    for item in found:
        if item.kind is not FolderKind.FILE:
            continue
        name = Path(item.folder).name
        item.recorded_by = [m.name for m in found if m.kind is FolderKind.MODEL and m.dataset == item.dataset
                            and name in m.dataset_files]
        if item.recorded_by:
            drifted = any(f"../{name}" in m.modified + m.missing for m in found if m.name in item.recorded_by)
            item.status = Status.DRIFTED if drifted else Status.OK
            item.check = next(m.check for m in found if m.name in item.recorded_by)
            if drifted:
                item.modified = [name]


def _fold_key(name: str) -> tuple[int, int]:
    fold = name.removeprefix("fold_")
    return (1, 0) if fold == "all" else (0, int(fold))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def find_model_folder(results: str | os.PathLike, dataset: str, configuration: str, *,
                      trainer: str = "nnUNetTrainer", plans: str = "nnUNetPlans") -> Path:
    """The model folder nnU-Net's ``-d DATASET -c CONFIGURATION -tr TRAINER -p PLANS`` names under
    ``results`` (DATASET an id, ``42`` or ``042``, or a full ``DatasetXXX_Name``); nnU-Net's default
    trainer and plans. The folder need not exist (the caller decides what a missing one means)."""
    results = Path(results)
    text = dataset.strip()
    if DATASET_RE.match(text):
        name = text
    elif text.isdigit() and int(text) <= 999:
        candidates = [p.name for p in _children(results)
                      if (m := DATASET_RE.match(p.name)) and int(m[1]) == int(text) and p.is_dir()]
        if not candidates:
            from nnseal.errors import EnvironmentProblem

            raise EnvironmentProblem(f"no dataset {int(text):03d} (Dataset{int(text):03d}_...) here", path=results)
        if len(candidates) > 1:
            raise ModelLayoutError(f"dataset {int(text):03d} is here under several names: {', '.join(candidates)}",
                                   path=results)
        name = candidates[0]
    else:
        from nnseal.errors import InvalidArgument

        raise InvalidArgument(f"dataset {dataset!r} is neither an id (42, 042) nor a DatasetXXX_Name")
    folder = f"{trainer}__{plans}__{configuration}"
    if split_model_name(folder) is None:
        from nnseal.errors import InvalidArgument

        raise InvalidArgument(f"{folder!r} is not a model folder name nnU-Net builds")
    return results / name / folder
