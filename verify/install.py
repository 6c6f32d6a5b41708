"""Verified, atomic install of a package into nnUNet_results.

Order matters: signature, then the entry set against the signed manifest, then the
layout, then extraction into a staging folder *inside the results folder* (same
filesystem) hashing exactly the bytes written, then content checks and checkpoint
rebuild, and only then one rename per model folder. A refusal or a crash at any point
leaves no model folder half-written; the next install removes stale staging folders.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnseal.errors import (
    EnvironmentProblem,
    Hint,
    HostileArchive,
    ModelLayoutError,
    Refused,
    SignatureError,
    TamperedPackage,
    WouldOverwrite,
    from_os_error,
)
from nnseal.format.layout import EntryKind, PackageEntry
from nnseal.fsutil import host_tag, left_by_dead_process, open_new, sha256_file
from nnseal.progress import CountingWriter, byte_bar
from nnseal.verify.consistency import check_checkpoint_matches_model, check_dataset_id_free, check_plans_match_model
from nnseal.verify.receipt import RECEIPT_NAME, Provenance, write_receipt
from nnseal.verify.rollback import check_not_downgrade

STAGING_PREFIX = ".nnseal-staging-"
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
    dropped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"package": self.package, "results": self.results, "provenance": self.provenance.value,
                "signer_fingerprint": self.signer_fingerprint, "models": self.models, "replaced": self.replaced,
                "checkpoints": self.checkpoints, "dropped": self.dropped, "warnings": self.warnings}


def install_model_from_zip(zip_file: str | os.PathLike, install_location: str | os.PathLike, *,
                           trusted_keys: Sequence[str | os.PathLike] = (),
                           trust_folder: str | os.PathLike | None = None, force: bool = False,
                           unsigned: bool = False, sha256: str | None = None, progress: bool = False,
                           limits=None, source_name: str | None = None,
                           allow_downgrade: bool = False, zip_sha256: str | None = None) -> InstallReport:
    """Verify ``zip_file`` and install its model folder(s) under ``install_location``.

    ``install_location`` is the nnU-Net results folder (created if missing). ``trusted_keys``
    are public-key PEM paths; the keys in ``trust_folder`` count too when it is given.
    ``unsigned=True`` installs a zip made by
    nnU-Net's own exporter (every checkpoint sanitized and rebuilt, pickles dropped);
    ``sha256`` pins the zip's digest either way. ``limits`` (``nnseal.readers.zip_archive.Limits``)
    tightens or loosens the zip-bomb limits. ``source_name`` is what reports and the receipt
    call the package (download passes the URL; default: the file's path). ``allow_downgrade``
    lets a signed package replace (with ``force``) a newer release of the same model by the
    same signer (verify/rollback.py). ``zip_sha256`` is the zip's digest when the caller
    already has it (download hashes as it streams): the pin is checked against it instead of
    reading the zip once more.
    """
    from nnseal.readers.zip_archive import Limits, open_zip

    zip_path = Path(zip_file)
    if not zip_path.is_file():
        raise EnvironmentProblem("no such package file", path=zip_path)
    results = Path(install_location)
    try:
        results.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise from_os_error(err, results) from err
    results = results.resolve()
    remove_stale_staging(results)
    package_sha256 = None
    if sha256 is not None:
        from nnseal.format.digest import normalise_sha256

        expected = normalise_sha256(sha256)  # InvalidArgument for a malformed pin: never "no pin"
        package_sha256 = normalise_sha256(zip_sha256) if zip_sha256 is not None else sha256_file(zip_path)
        if package_sha256 != expected:
            raise TamperedPackage(f"sha256 is {package_sha256}, expected {expected}", path=zip_path)
    report = InstallReport(package=source_name or str(zip_path), results=str(results),
                           provenance=Provenance.UNSIGNED if unsigned else Provenance.SIGNED)
    with open_zip(zip_path, limits or Limits()) as archive:
        try:
            if unsigned:
                _install_legacy(archive, results, report, force=force, package_sha256=package_sha256,
                                progress=progress)
            else:
                _install_signed(archive, results, report, trusted_keys=trusted_keys, trust_folder=trust_folder,
                                force=force, package_sha256=package_sha256, progress=progress,
                                allow_downgrade=allow_downgrade)
        except Refused as err:
            if err.path is None:  # name the package in every refusal (keeping the error's own fields)
                raise err.with_path(str(source_name or zip_path)) from err
            raise
    return report


# --- signed packages ---------------------------------------------------------


def _install_signed(archive, results: Path, report: InstallReport, *, trusted_keys, trust_folder, force: bool,
                    package_sha256: str | None, progress: bool, allow_downgrade: bool = False) -> None:
    from nnseal.format.oms import SIGNATURE_NAME
    from nnseal.format.trust import load_trusted_keys
    from nnseal.verify.verdict import judge_package

    signature = archive.get(SIGNATURE_NAME)
    if signature is None:
        raise SignatureError(f"no {SIGNATURE_NAME}: not a signed nnseal package", hint=Hint.UNSIGNED)
    keys = load_trusted_keys(list(trusted_keys), trust_folder)
    if not keys:
        raise SignatureError("no trusted key", hint=Hint.TRUSTED_KEY)
    # The same decision verify and scan make; install refuses on its first problem, unextracted.
    verdict = judge_package(archive, [k.key for k in keys])
    manifest = verdict.manifest
    if verdict.problems or manifest is None:
        first = verdict.problems[0] if verdict.problems else None
        raise first.error if first and first.error else TamperedPackage("the signed manifest could not be read")
    report.signer_fingerprint = manifest.signer_fingerprint
    entries = verdict.entries
    card_model = verdict.card["model"] if verdict.card and isinstance(verdict.card.get("model"), dict) else None
    models = sorted({e.model for e in entries if e.model})
    destinations = _check_destinations(results, models, force)
    # Before staging: one name per dataset id (verify/consistency.py), no rollback (verify/rollback.py).
    check_dataset_id_free(results, {model.split("/")[0] for model in models})
    check_not_downgrade(destinations, card=verdict.card, signer_fingerprint=manifest.signer_fingerprint,
                        allow_downgrade=allow_downgrade)
    total = sum(archive.entry(e.name).size for e in entries)
    with Staging(results) as stage, byte_bar(progress, total, "install") as bar:
        for entry in entries:
            if entry.kind == "checkpoint":
                continue  # streamed straight into its .pth by _finish_model: one write, one hash
            target = stage.path(entry.name)
            digest = _extract(archive, entry.name, target, bar)
            if digest != manifest.resources[entry.name]:
                raise TamperedPackage(f"entry '{entry.name}' does not match the signed manifest")
        for model in models:
            written = _finish_model(stage, model, [e for e in entries if e.model == model], verdict.json, report,
                                    archive, manifest.resources, bar)
            _write_model_receipt(stage, model, report, package_sha256, card_model, known_digests=written)
        _move_into_place(stage, models, destinations, report, force)


def _finish_model(stage: Staging, model: str, entries: list[PackageEntry], json_entries: dict[str, Any],
                  report: InstallReport, archive, digests: dict[str, str], bar) -> dict[Path, str]:
    """Rebuild nnU-Net checkpoints straight from the package's safetensors entries (headers checked
    as they are read, bytes hashed against ``digests``, the signed manifest, as they pass).
    ``json_entries`` is the verdict's parsed JSON, by entry name.

    Returns the sha256 of each checkpoint written, hashed as it was written (the receipt needs it).
    """
    from nnseal.verify.rebuild import rebuild_checkpoint_from_entry

    model_dir = stage.path(model)
    parsed = {entry.filename: json_entries[entry.name] for entry in entries if entry.kind is EntryKind.JSON}
    written: dict[Path, str] = {}
    for entry in entries:
        if entry.kind != "checkpoint":
            continue
        pth = stage.path(entry.name).with_suffix(".pth")
        written[pth] = rebuild_checkpoint_from_entry(archive, entry.name, digests[entry.name], parsed["plans.json"],
                                                     parsed["dataset.json"], pth, bar=bar)
        report.checkpoints.append(f"{model}/{pth.relative_to(model_dir)}")
    return written


# --- legacy nnU-Net zips -----------------------------------------------------


def _install_legacy(archive, results: Path, report: InstallReport, *, force: bool, package_sha256: str | None,
                    progress: bool) -> None:
    """A zip from nnUNetv2_export_model_to_zip: keep only what inference needs, rebuilt clean."""
    import re

    from nnseal.format.layout import DATASET_RE, MODEL_RE
    from nnseal.format.oms import SIGNATURE_NAME
    from nnseal.sanitize.checkpoint import load_sanitized
    from nnseal.sanitize.jsonclean import KIND_BY_FILE_NAME, clean_json_file
    from nnseal.verify.rebuild import assemble, write_checkpoint

    if archive.get(SIGNATURE_NAME) is not None:
        raise Refused("this is a signed nnseal package", hint=Hint.SIGNED)
    report.warnings.append(UNSIGNED_WARNING)
    keep_re = re.compile(r"^([^/]+)/([^/]+)/(plans\.json|dataset\.json|dataset_fingerprint\.json|"
                         r"fold_([0-4]|all)/(checkpoint_final|checkpoint_best)\.pth)$")
    kept: dict[str, list[str]] = {}
    for name in archive.names():
        match = keep_re.match(name)
        if match and DATASET_RE.match(match[1]) and MODEL_RE.match(match[2]):
            kept.setdefault(f"{match[1]}/{match[2]}", []).append(name)
        else:
            report.dropped.append(name)
            if name.lower().endswith((".pkl", ".pickle")):
                report.warnings.append(f"dropped pickle '{name}' without loading it")
    if not kept:
        raise ModelLayoutError("no nnU-Net model folder (DatasetXXX_Name/Trainer__Plans__configuration) in this zip")
    datasets = {m.split("/")[0] for m in kept}
    if len(datasets) > 1:
        raise ModelLayoutError(f"zip spans several datasets: {', '.join(sorted(datasets))}")
    models = sorted(kept)
    for model in models:
        for required in ("plans.json", "dataset.json"):
            if f"{model}/{required}" not in kept[model]:
                raise ModelLayoutError(f"model folder '{model}' lacks {required}")
        if not any(n.endswith(".pth") for n in kept[model]):
            raise ModelLayoutError(f"model folder '{model}' has no checkpoint")
    destinations = _check_destinations(results, models, force)
    check_dataset_id_free(results, datasets)  # before staging (verify/consistency.py)
    with Staging(results) as stage:
        for model in models:
            parsed: dict[str, Any] = {}
            for name in sorted(n for n in kept[model] if n.endswith(".json")):
                cleaned = clean_json_file(KIND_BY_FILE_NAME[name.rsplit("/", 1)[1]], archive.read(name), name=name)
                target = stage.path(name)
                target.write_bytes(cleaned.to_bytes())
                parsed[name.rsplit("/", 1)[1]] = cleaned.data
                report.warnings.extend(f"{name}: {f.action} {f.path} ({f.detail})" for f in cleaned.findings)
            check_plans_match_model(parsed["plans.json"], model, name=f"{model}/plans.json")  # verify/consistency.py
            for name in sorted(n for n in kept[model] if n.endswith(".pth")):
                scratch = stage.scratch(name)
                with byte_bar(progress, archive.entry(name).size, name.rsplit("/", 2)[-2]) as bar:
                    _extract(archive, name, scratch, bar)
                sanitized = load_sanitized(scratch)
                scratch.unlink()
                # The same check the signed path's verdict makes, on what sanitizing kept (verify/consistency.py).
                check_checkpoint_matches_model(sanitized.meta, model, name.split("/")[2].removeprefix("fold_"),
                                               name=name)
                checkpoint = assemble(sanitized.tensors, sanitized.names, sanitized.aliases, sanitized.meta,
                                      parsed["plans.json"], parsed["dataset.json"])
                write_checkpoint(checkpoint, stage.path(name))
                del sanitized, checkpoint
                report.checkpoints.append(name)
            _write_model_receipt(stage, model, report, package_sha256, None)
        _move_into_place(stage, models, destinations, report, force)


# --- staging and the final move ---------------------------------------------


class Staging:
    """A private folder inside the results folder; removed on exit, whatever happened."""

    def __init__(self, results: Path):
        self.results = results
        self.root = results / f"{STAGING_PREFIX}{os.getpid()}-{host_tag()}-{secrets.token_hex(4)}"

    def __enter__(self) -> Staging:
        try:
            self.root.mkdir(mode=0o700)
            (self.root / "tree").mkdir()
        except OSError as err:
            raise from_os_error(err, self.results) from err
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def path(self, name: str) -> Path:
        """Where entry ``name`` goes; names were checked by the zip reader (no '..', no absolute)."""
        path = self.root / "tree" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def scratch(self, name: str) -> Path:
        return self.root / f"scratch-{secrets.token_hex(4)}-{os.path.basename(name)}"


def remove_stale_staging(results: Path) -> None:
    """Staging folders of installs that died (SIGKILL, power loss) are removed by the next install."""
    for child in results.glob(f"{STAGING_PREFIX}*"):
        fields = child.name[len(STAGING_PREFIX):].split("-", 2)
        if len(fields) == 3 and left_by_dead_process(fields[0], fields[1]) and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)


def _extract(archive, name: str, target: Path, bar) -> str:
    """Write one entry to a new file (never through an existing path or link); return its sha256."""
    with open_new(target) as handle:
        digest = archive.copy_to(archive.entry(name), CountingWriter(handle, bar))
        handle.flush()
        os.fsync(handle.fileno())
    return digest


def _check_destinations(results: Path, models: list[str], force: bool) -> dict[str, Path]:
    """Refuse before any work if a model exists (unless ``force``) or a path on the way is a link."""
    destinations = {}
    for model in models:
        dataset, folder = model.split("/")
        dataset_dir, dest = results / dataset, results / dataset / folder
        for path in (dataset_dir, dest):
            if path.is_symlink():
                raise HostileArchive(f"{path} is a symbolic link; refusing to install through it")
        if dataset_dir.exists() and not dataset_dir.is_dir():
            raise ModelLayoutError(f"{dataset_dir} exists and is not a folder")
        if dest.exists() and not force:
            raise WouldOverwrite(f"model folder {dest} exists", hint=Hint.FORCE)
        destinations[model] = dest
    return destinations


def _write_model_receipt(stage: Staging, model: str, report: InstallReport, package_sha256: str | None,
                         card_model: dict | None, known_digests: dict[Path, str] | None = None) -> None:
    """``known_digests``: files hashed as they were written, not read back (a second pass over every checkpoint)."""
    model_dir = stage.path(model)
    known = known_digests or {}
    files = {}
    for path in sorted(model_dir.rglob("*")):
        if path.is_file() and path.name != RECEIPT_NAME:
            files[str(path.relative_to(model_dir))] = known.get(path) or sha256_file(path)
    write_receipt(model_dir, files=files, package=report.package, package_sha256=package_sha256,
                  provenance=report.provenance, signer_fingerprint=report.signer_fingerprint, model=card_model)


def _move_into_place(stage: Staging, models: list[str], destinations: dict[str, Path],
                     report: InstallReport, force: bool) -> None:
    """One rename per model folder: it appears whole. With ``force`` the old and new folders are
    swapped (the old one ends in staging and is deleted with it): never a mix of their files."""
    for i, model in enumerate(models):
        dest = destinations[model]
        staged = stage.path(model)
        try:
            dest.parent.mkdir(exist_ok=True)
            if dest.parent.is_symlink():
                raise HostileArchive(f"{dest.parent} is a symbolic link; refusing to install through it")
            if dest.is_symlink():  # appeared while we were staging: never replace through a link
                raise HostileArchive(f"{dest} is a symbolic link; refusing to install through it")
            if dest.exists():
                if not force:  # appeared while we were staging
                    raise WouldOverwrite(f"model folder {dest} exists", hint=Hint.FORCE)
                _replace_folder(staged, dest, stage.root / f"old-{i}")
                report.replaced.append(str(dest))
            else:
                os.rename(staged, dest)
        except OSError as err:
            raise from_os_error(err, dest) from err
        report.models.append(str(dest))


def _replace_folder(new: Path, dest: Path, old_parking: Path) -> None:
    """Swap ``new`` into ``dest``: with renameat2(RENAME_EXCHANGE) ``dest`` always holds the old
    or the new folder, never neither; elsewhere, two renames (a moment with no folder)."""
    if _rename_exchange(new, dest):
        return  # the old folder now sits at ``new``, inside staging, and goes with it
    os.rename(dest, old_parking)
    os.rename(new, dest)


def _rename_exchange(a: Path, b: Path) -> bool:
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    return False  # EINVAL/ENOSYS (filesystem or kernel without it): fall back
