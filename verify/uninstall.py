"""Uninstall a model (or ensemble) folder nnseal installed: all of it, or nothing.

The same protocol as an install (``nnseal.verify.staging``, ``nnseal.locks``): a lock file
``.nnseal-lock-<token>`` in the results folder for the whole run, and the results folder's commit
lock (``staging.commit_lock``) while anything moves, so an install's commit and an uninstall take
turns. Each folder or file that goes is first renamed to ``<results>/.nnseal-trash-<token>-<n>``
(one rename: nnU-Net sees it whole, or not at all), then deleted. A crash leaves the model in
place or in the trash; the next install, download or uninstall in that results folder sweeps the
trash of a dead token (``locks.sweep_stale``).

What goes with a model folder:

- ensemble folders (``DatasetX/ensembles/ensemble___A___B___folds``) that have it as a member:
  an ensemble cannot run without all its members. One nnseal did not install (no receipt) is
  kept, with a note.
- the dataset-level files (``inference_information.json``, ``inference_instructions.txt``) its
  receipt records, once no other model folder's receipt in the dataset records them (they were
  written by one install for all its models, and those models' receipts check them); otherwise
  kept, with a note.
- the ``ensembles`` folder and the dataset folder, when that leaves them empty.

Dependents move first and the model folder last, so a crash in between leaves the model whole
and the same uninstall can simply be run again. Refused (unless ``force``): a folder without a
receipt (nnseal did not install it: its files may be someone's work), and a folder, or a
dependent, whose files differ from the receipt (re-hashed: a changed checkpoint or an added file
may be someone's work too). Torch-free.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from nnseal.errors import EnvironmentProblem, Hint, ModelLayoutError, NnsealError, from_os_error
from nnseal.format.layout import DATASET_RE, ENSEMBLES, ensemble_members, split_model_name
from nnseal.interrupt import deferred_interrupts, mark_done
from nnseal.locks import TRASH_PREFIX, Lock, sweep_stale
from nnseal.verify.receipt import RECEIPT_NAME, check_installed, read_receipt
from nnseal.verify.staging import commit_lock

# A refusal names this many drifted files; the rest are counted.
SHOWN_FILES = 3


@dataclass
class UninstallReport:
    folder: str
    results: str
    removed: list[str] = field(default_factory=list)  # model, ensemble folders and files, as they were named
    kept: list[str] = field(default_factory=list)  # dependents left in place, each with why
    forced: list[str] = field(default_factory=list)  # what --force overrode: no receipt, drift
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"folder": self.folder, "results": self.results, "removed": self.removed, "kept": self.kept,
                "forced": self.forced, "notes": self.notes}


def locate(folder: str | os.PathLike) -> tuple[Path, Path]:
    """(results folder, model or ensemble folder) for a path ``DatasetX/Trainer__Plans__cfg`` or
    ``DatasetX/ensembles/NAME`` under a results folder; ModelLayoutError for anything else."""
    folder = Path(os.path.abspath(folder))
    parent = folder.parent
    if parent.name == ENSEMBLES and DATASET_RE.match(parent.parent.name) and ensemble_members(folder.name):
        return parent.parent.parent, folder
    if DATASET_RE.match(parent.name) and split_model_name(folder.name) is not None:
        return parent.parent, folder
    raise ModelLayoutError("not a model folder (<results>/DatasetXXX_Name/Trainer__Plans__configuration) "
                           "or an ensemble folder (<results>/DatasetXXX_Name/ensembles/ensemble___...)", path=folder)


def uninstall_model(folder: str | os.PathLike, *, force: bool = False) -> UninstallReport:
    """Remove an installed model or ensemble folder and what only it needs (module docstring).

    ``force`` removes a folder nnseal did not install, or whose files drifted from its receipt;
    the report lists what it overrode. A missing folder is an EnvironmentProblem; a refusal
    leaves the results folder as it was."""
    results, folder = locate(folder)
    sweep_stale(results)  # what a crashed install or uninstall left, even when this one is refused
    # A link anywhere between the results folder and the model would make the rename and the
    # deletion act on another place than the one named.
    for part in (folder, *[p for p in folder.parents if p != results and results in p.parents]):
        if part.is_symlink():
            raise ModelLayoutError("is a symbolic link; refusing to remove through it", path=part)
    if not folder.is_dir():
        raise EnvironmentProblem("no such model folder", path=folder)
    report = UninstallReport(folder=str(folder), results=str(results))
    with Lock(results) as lock:
        trash: list[Path] = []
        try:
            with commit_lock(results):
                units = _plan(folder, report, force)
                _move_to_trash(units, lock, results, trash)
                report.removed.extend(str(unit) for unit in units)
                dataset = folder.parent.parent if folder.parent.name == ENSEMBLES else folder.parent
                _remove_if_empty(dataset / ENSEMBLES, report)
                _remove_if_empty(dataset, report)
        finally:
            for path in trash:  # the uninstall has happened: deleting the trash is cleanup
                with contextlib.suppress(OSError):
                    _delete(path)
    return report


def _plan(folder: Path, report: UninstallReport, force: bool) -> list[Path]:
    """What goes, dependents first and ``folder`` last; refuse what needs ``force``."""
    _check_removable(folder, report, force)
    units: list[Path] = []
    if folder.parent.name == ENSEMBLES:
        return [folder]
    dataset = folder.parent
    ensembles = dataset / ENSEMBLES
    for ensemble in sorted(ensembles.iterdir() if ensembles.is_dir() and not ensembles.is_symlink() else []):
        members = ensemble_members(ensemble.name)
        if members is None or folder.name not in members[0] or not ensemble.is_dir() or ensemble.is_symlink():
            continue
        if not (ensemble / RECEIPT_NAME).is_file():
            report.kept.append(f"{ensemble}: not installed by nnseal (no receipt); it cannot run without "
                               f"{folder.name}")
            continue
        _check_removable(ensemble, report, force)
        units.append(ensemble)
    units.extend(_dataset_files(folder, report))
    return [*units, folder]


def _check_removable(folder: Path, report: UninstallReport, force: bool) -> None:
    from nnseal.errors import Refused

    if not (folder / RECEIPT_NAME).exists():
        if not force:
            raise Refused(f"not installed by nnseal (no {RECEIPT_NAME}): its files may be someone's work",
                          path=folder, hint=Hint.FORCE_REMOVE)
        report.forced.append(f"{folder}: no receipt")
        return
    try:
        drift = check_installed(folder)
    except NnsealError as err:
        if not force:
            raise
        report.forced.append(f"{folder}: {err.reason}")
        return
    if drift.ok:
        return
    changed = [*(f"modified {p}" for p in drift.modified), *(f"missing {p}" for p in drift.missing),
               *(f"extra {p}" for p in drift.extra)]
    more = f" and {len(changed) - SHOWN_FILES} more" if len(changed) > SHOWN_FILES else ""
    what = f"files differ from the install receipt ({', '.join(changed[:SHOWN_FILES])}{more})"
    if not force:
        from nnseal.errors import Refused

        raise Refused(what, path=folder, hint=Hint.FORCE_REMOVE)
    report.forced.append(f"{folder}: {what}")


def _dataset_files(folder: Path, report: UninstallReport) -> list[Path]:
    """The dataset-level files this model's receipt records, once no other model's receipt records them."""
    try:
        recorded = read_receipt(folder).get("dataset_files")
    except NnsealError:
        return []
    if not isinstance(recorded, dict):
        return []
    dataset = folder.parent
    others = []
    for sibling in sorted(dataset.iterdir()):
        if sibling != folder and split_model_name(sibling.name) and (sibling / RECEIPT_NAME).is_file():
            with contextlib.suppress(NnsealError):
                others.append((sibling.name, read_receipt(sibling).get("dataset_files")))
    files = []
    for name, digest in sorted(recorded.items()):
        path = dataset / str(name)
        if not isinstance(name, str) or "/" in name or name in ("", ".", "..") or not path.is_file() \
                or path.is_symlink():
            continue
        sharing = [other for other, theirs in others if isinstance(theirs, dict) and name in theirs]
        if sharing:
            report.kept.append(f"{path}: the receipt of {', '.join(sharing)} records it too")
            continue
        from nnseal.fsutil import sha256_file

        if sha256_file(path) != digest:
            report.kept.append(f"{path}: changed since install")
            continue
        files.append(path)
    return files


def _move_to_trash(units: list[Path], lock: Lock, results: Path, trash: list[Path]) -> None:
    """Rename each unit into the trash (signals wait); after a failure, put back what moved."""
    with deferred_interrupts():
        moved: list[tuple[Path, Path]] = []
        try:
            for i, unit in enumerate(units):
                target = lock.owned(TRASH_PREFIX, f"-{i}")
                os.rename(unit, target)
                moved.append((unit, target))
            trash.extend(target for _, target in moved)
        except BaseException as err:
            for unit, target in reversed(moved):
                with contextlib.suppress(OSError):
                    os.rename(target, unit)
            if isinstance(err, OSError) and not isinstance(err, EnvironmentProblem):
                raise from_os_error(err, err.filename or results) from err
            raise
        mark_done()  # the uninstall has happened: a signal from here on only waits for the cleanup


def _remove_if_empty(folder: Path, report: UninstallReport) -> None:
    """rmdir: only an empty folder goes (one another process has just put something in stays)."""
    try:
        folder.rmdir()
    except OSError:
        return
    report.notes.append(f"removed the empty folder {folder}")


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)  # never follows links inside (fd-based where the platform allows)
    else:
        path.unlink()
