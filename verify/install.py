"""Verified, atomic install of a package into nnUNet_results: the entry point and its report.

Order matters: signature, then the entry set against the signed manifest, then the
layout, then extraction into a staging folder *inside the results folder* (same
filesystem) hashing exactly the bytes written, then content checks and checkpoint
rebuild, and only then the commit: every model folder of the package moves into place,
or none does. A refusal, a failure or a signal leaves the results folder as it was (a
missing one is not created); a crash leaves no model folder half-written and the next
install removes what it left (``nnseal.verify.staging``).

The signed path is ``install_signed``, the legacy (``--unsigned``) path ``install_legacy``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnseal.errors import EnvironmentProblem, InvalidArgument, NnsealError, Refused, TamperedPackage
from nnseal.format.digest import normalise_sha256
from nnseal.fsutil import open_new, package_size, sha256_file
from nnseal.interrupt import interrupts_as_keyboard_interrupt
from nnseal.locks import sweep_stale
from nnseal.progress import CountingWriter
from nnseal.verify.receipt import RECEIPT_NAME, Provenance, same_install, write_receipt
from nnseal.verify.staging import STAGING_PREFIX, Staging  # noqa: F401  (STAGING_PREFIX: tests)

UNSIGNED_WARNING = "provenance NOT checked: this model was installed without a signature"


@dataclass
class InstallReport:
    package: str
    results: str
    provenance: Provenance
    signer_fingerprint: str | None = None
    models: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # zip entries not installed (--unsigned: pickles)
    warnings: list[str] = field(default_factory=list)
    pipeline: list[str] = field(default_factory=list)  # ensemble folders and dataset-level files installed
    method: str | None = None  # "key", "certificate" or "sigstore"
    signer: str | None = None  # who signed, in words
    package_bytes: int = 0  # the zip file's size on disk
    package_sha256: str | None = None  # when it was hashed (a --sha256 pin, a download)
    # Model and ensemble folders that already held exactly this content: nothing was written.
    already_installed: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"package": self.package, "results": self.results, "provenance": self.provenance.value,
                "signer_fingerprint": self.signer_fingerprint, "signer_name": None, "method": self.method,
                "signer": self.signer, "package_bytes": self.package_bytes, "package_sha256": self.package_sha256,
                "models": self.models, "replaced": self.replaced,
                "checkpoints": self.checkpoints, "dropped_entries": self.dropped, "warnings": self.warnings,
                "pipeline": self.pipeline, "already_installed": self.already_installed}


def install_model_from_zip(zip_file: str | os.PathLike, install_location: str | os.PathLike, *,
                           trusted_keys: Sequence[str | os.PathLike] = (),
                           trust_folder: str | os.PathLike | None = None, force: bool = False,
                           unsigned: bool = False, sha256: str | None = None, progress: bool = False,
                           limits=None, source_name: str | None = None,
                           allow_downgrade: bool = False, zip_sha256: str | None = None,
                           external_trainer_folders: Sequence[str | os.PathLike] = ()) -> InstallReport:
    """Verify ``zip_file`` and install its model folder(s) under ``install_location``.

    ``install_location`` is the nnU-Net results folder; a missing one is created only if the
    install succeeds (a refused or failed install leaves no trace). ``trusted_keys``
    are public-key PEM paths; the keys in ``trust_folder`` count too when it is given.
    ``unsigned=True`` installs a zip made by
    nnU-Net's own exporter (every checkpoint sanitized and rebuilt, pickles dropped);
    ``sha256`` pins the zip's digest either way. ``limits`` (``nnseal.readers.zip_archive.Limits``)
    tightens or loosens the zip-bomb limits. ``source_name`` is what reports and the receipt
    call the package (download passes the URL; default: the file's path). ``allow_downgrade``
    lets a signed package replace (with ``force``) a newer release of the same model by the
    same signer (verify/rollback.py). ``zip_sha256`` is the zip's digest when the caller
    already has it (download hashes as it streams): the pin is checked against it instead of
    reading the zip once more. Once installed, each model folder is checked against the
    installed nnunetv2, dynamic_network_architectures and torch (``nnseal.verify.doctor``):
    each problem is a warning in the report, never a failure; ``external_trainer_folders``
    are the folders nnU-Net also searches for trainer classes (its ``nnUNet_extTrainer``).

    SIGTERM and SIGHUP are handled like Ctrl-C while it runs (``nnseal.interrupt``): the
    install is undone and ``Interrupted`` (a KeyboardInterrupt) propagates. Once the model
    folders are swapped in, a signal no longer undoes anything: the install completes, the
    old folders are deleted, and the report says so in a warning.
    """
    with interrupts_as_keyboard_interrupt():
        report = _install(zip_file, install_location, trusted_keys=trusted_keys, trust_folder=trust_folder,
                          force=force, unsigned=unsigned, sha256=sha256, progress=progress, limits=limits,
                          source_name=source_name, allow_downgrade=allow_downgrade, zip_sha256=zip_sha256)
    note_compatibility(report, external_trainer_folders)
    return report


def install_model_from_folder(folder: str | os.PathLike, install_location: str | os.PathLike, *,
                              trusted_keys: Sequence[str | os.PathLike] = (),
                              trust_folder: str | os.PathLike | None = None, force: bool = False,
                              progress: bool = False, limits=None, source_name: str | None = None,
                              allow_downgrade: bool = False,
                              external_trainer_folders: Sequence[str | os.PathLike] = ()) -> InstallReport:
    """Verify a folder package (``nnseal export --folder``, a Hub snapshot) and install it, with the
    rules and the transaction of ``install_model_from_zip``: its files are the package's entries
    (``nnseal.readers.folder_archive``), a file outside the signed manifest is refused, and every
    byte installed is hashed against the manifest as it is read, so a file changed after the
    verdict is refused, never installed. A folder package is always signed: there is no unsigned
    form, and its pin is its signature (or, on a host, the commit)."""
    path = Path(folder)
    if not path.is_dir():
        raise EnvironmentProblem("no such package folder", path=path)
    with interrupts_as_keyboard_interrupt():
        report = _install(path, install_location, trusted_keys=trusted_keys, trust_folder=trust_folder,
                          force=force, unsigned=False, sha256=None, progress=progress, limits=limits,
                          source_name=source_name, allow_downgrade=allow_downgrade, zip_sha256=None)
    note_compatibility(report, external_trainer_folders)
    return report


def note_compatibility(report: InstallReport, external_trainer_folders: Sequence[str | os.PathLike]) -> None:
    """One warning line per thing this environment lacks to run an installed model (never a failure:
    the install is done, and the model may be meant for another machine)."""
    from nnseal.verify.doctor import diagnose

    for folder in report.models:
        path = Path(folder)
        try:
            problems = diagnose(path, external_trainer_folders).warnings
        except (OSError, NnsealError) as err:  # a check that cannot run is a warning too
            problems = [f"compatibility not checked: {err}"]
        except KeyboardInterrupt:  # the install is complete: a signal now only skips the checks
            report.warnings.append("interrupted: compatibility not checked; the install completed")
            return
        report.warnings.extend(f"{path.parent.name}/{path.name}: {problem}" for problem in problems)


def _install(zip_file, install_location, *, trusted_keys, trust_folder, force, unsigned, sha256, progress, limits,
             source_name, allow_downgrade, zip_sha256) -> InstallReport:
    from nnseal.readers.folder_archive import open_package

    zip_path = Path(zip_file)
    if zip_path.is_dir():
        if unsigned:
            raise InvalidArgument("a folder package is always signed: an unsigned install is for nnU-Net's own zips",
                                  path=zip_path)
        if sha256 is not None:
            raise InvalidArgument("a sha256 pin is a zip's digest; a folder package is pinned by its signature",
                                  path=zip_path)
    elif not zip_path.is_file():
        raise EnvironmentProblem("no such package file", path=zip_path)
    results = Path(install_location).resolve()
    if results.is_dir():
        sweep_stale(results)
    package_sha256 = None
    if sha256 is not None:
        expected = normalise_sha256(sha256)  # InvalidArgument for a malformed pin: never "no pin"
        package_sha256 = normalise_sha256(zip_sha256) if zip_sha256 is not None else sha256_file(zip_path)
        if package_sha256 != expected:
            raise TamperedPackage(f"sha256 is {package_sha256}, expected {expected}", path=zip_path)
    if unsigned and package_sha256 is None:
        # Nothing else names an unsigned zip's content: its receipt records the zip's digest, so
        # installing the same zip again is recognised (one more read, small beside the rebuild).
        package_sha256 = normalise_sha256(zip_sha256) if zip_sha256 is not None else sha256_file(zip_path)
    report = InstallReport(package=source_name or str(zip_path), results=str(results),
                           provenance=Provenance.UNSIGNED if unsigned else Provenance.SIGNED,
                           package_bytes=package_size(zip_path),
                           package_sha256=package_sha256 or (normalise_sha256(zip_sha256) if zip_sha256 else None))
    with open_package(zip_path, limits) as archive:
        try:
            if unsigned:
                from nnseal.verify.install_legacy import install_legacy

                install_legacy(archive, results, report, force=force, package_sha256=package_sha256,
                               progress=progress)
            else:
                from nnseal.verify.install_signed import install_signed

                install_signed(archive, results, report, trusted_keys=trusted_keys, trust_folder=trust_folder,
                               force=force, package_sha256=package_sha256, progress=progress,
                               allow_downgrade=allow_downgrade)
        except Refused as err:
            if err.path is None:  # name the package in every refusal (keeping the error's own fields)
                raise err.with_path(str(source_name or zip_path)) from err
            raise
    return report


# --- shared by both paths ----------------------------------------------------


def extract_entry(archive, name: str, target: Path, bar) -> str:
    """Write one entry to a new file (never through an existing path or link); return its sha256."""
    with open_new(target) as handle:
        digest = archive.copy_to(archive.entry(name), CountingWriter(handle, bar))
        handle.flush()
        os.fsync(handle.fileno())
    return digest


def write_model_receipt(stage: Staging, model: str, report: InstallReport, package_sha256: str | None,
                         card_model: dict | None, known_digests: dict[Path, str] | None = None,
                         trained_with: dict[str, dict[str, str]] | None = None,
                         dataset_files: Sequence[str] = (), content_sha256: str | None = None) -> None:
    """``known_digests``: files hashed as they were written, not read back (a second pass over every checkpoint).
    ``model`` may also be an ensemble folder (``DatasetX/ensembles/NAME``). ``dataset_files``: staged
    dataset-level files (``DatasetX/<name>``) this install writes, recorded in the receipt too."""
    model_dir = stage.path(model)
    known = known_digests or {}
    files = {}
    for path in sorted(model_dir.rglob("*")):
        if path.is_file() and path.name != RECEIPT_NAME:
            files[str(path.relative_to(model_dir))] = known.get(path) or sha256_file(path)
    extra = {name.rsplit("/", 1)[1]: sha256_file(stage.path(name)) for name in dataset_files}
    write_receipt(model_dir, files=files, package=report.package, package_sha256=package_sha256,
                  provenance=report.provenance, signer_fingerprint=report.signer_fingerprint, model=card_model,
                  trained_with=trained_with, dataset_files=extra, method=report.method, signer=report.signer,
                  content_sha256=content_sha256)


def commit(stage: Staging, models: list[str], destinations: dict[str, Path], report: InstallReport,
           force: bool, dataset_units: dict[str, Path] | None = None) -> None:
    """All model folders into place, or none (``Staging.commit``); the report lists them.
    ``dataset_units``: ensemble folders and dataset-level files, committed in the same step."""
    units = dict(dataset_units or {})
    report.replaced.extend(stage.commit([*models, *units], {**destinations, **units}, force=force))
    report.models.extend(str(destinations[model]) for model in models)
    report.pipeline.extend(str(dest) for dest in units.values())


def note_already_installed(report: InstallReport, results: Path, models: list[str], units: list[str], *,
                           content_sha256: str | None, package_sha256: str | None) -> bool:
    """Whether the package is already installed: every model and ensemble folder of it from this very
    content and unchanged since (``receipt.same_install``; the dataset-level files are in the model
    folders' receipts). If so the report says so, and nothing is to be written. Idempotent where it
    is safe: a different package, or a folder that drifted, still needs ``force``."""
    from nnseal.format.layout import ENSEMBLES

    destinations = {name: results.joinpath(*name.split("/")) for name in [*models, *units]}
    folders = [destinations[name] for name in [*models, *units]
               if name in models or name.split("/")[1] == ENSEMBLES]
    if not same_install(folders, provenance=report.provenance, signer_fingerprint=report.signer_fingerprint,
                        content_sha256=content_sha256, package_sha256=package_sha256):
        return False
    report.models.extend(str(destinations[name]) for name in models)
    report.pipeline.extend(str(destinations[name]) for name in units)
    report.already_installed.extend(str(folder) for folder in folders)
    return True


def note_late_signals(stage: Staging, report: InstallReport) -> None:
    import signal

    if stage.late_signals:
        names = ", ".join(sorted({signal.Signals(s).name for s in stage.late_signals}))
        report.warnings.append(f"{names} arrived after the model folders were in place: the install completed")
