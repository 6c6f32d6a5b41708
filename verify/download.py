"""Download a package by URL, then install it the verified way.

Replaces nnU-Net's ``download_and_install_from_url``, which wrote into the home folder,
had one 100 s timeout, no retry, no resume, no hash, and crashed (``int(None)``) when a
server sent no Content-Length. The transfer is ``nnseal.transport``; this module checks
the destination, puts the temporary file in the results folder, pins it, installs it
(handing over the digest computed as the bytes streamed: the zip is hashed once) and
cleans up.

What is checked before a byte is downloaded: the --keep file, and, when the URL's file
name starts with a dataset folder name (``DatasetNNN_...``), that the results folder
holds no model folder of dataset NNN (unless ``force``). Which model folders a package
holds is only known from its signed contents, so the install checks each one again,
after the download.

No torch here, and ``requests`` is imported only when an http(s) URL is fetched.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from nnseal.errors import Hint, WouldOverwrite, from_os_error
from nnseal.format.digest import normalise_sha256  # noqa: F401  (re-exported for callers)
from nnseal.format.layout import DATASET_RE, MODEL_RE
from nnseal.format.limits import IO_CHUNK
from nnseal.fsutil import atomic_output
from nnseal.locks import Lock, remove_created_folders, sweep_stale
from nnseal.transport.fetch import (  # noqa: F401  (re-exported: the CLI and callers import them from here)
    DOWNLOAD_PREFIX,
    DownloadPolicy,
    DownloadResult,
    fetch_to_temp,
    redact,
    retry_after_seconds,
)

if TYPE_CHECKING:
    from nnseal.verify.install import InstallReport

# A file name such as Dataset042_Liver.zip or Dataset042_Liver_v2.zip names dataset 042.
_DATASET_IN_FILE_NAME = re.compile(r"^Dataset(\d{3})_")


@dataclass(frozen=True)
class DownloadAndInstall:
    download: DownloadResult
    install: InstallReport

    def to_json(self, kept: str | os.PathLike | None = None) -> dict:
        """The install report, whose "package" names where the zip came from (``kept`` or the URL,
        not the temporary file it passed through), plus what was downloaded."""
        return {**self.install.to_json(), "package": str(kept) if kept else redact(self.download.url),
                "download": self.download.to_json(kept)}


# --- public API -------------------------------------------------------------


def download_and_install_from_url(url: str, destination: str | os.PathLike, **options) -> InstallReport:
    """Download ``url`` and install it into the results folder ``destination`` with the verified
    install; return the InstallReport.

    ``options`` are those of ``download_then_install`` (trusted_keys, trust_folder, sha256,
    keep, unsigned, force, allow_downgrade, policy, progress).
    """
    return download_then_install(url, destination, **options).install


def download_then_install(
    url: str,
    destination: str | os.PathLike,
    *,
    trusted_keys: Sequence[str | os.PathLike] = (),
    trust_folder: str | os.PathLike | None = None,
    sha256: str | None = None,
    keep: str | os.PathLike | None = None,
    unsigned: bool = False,
    force: bool = False,
    allow_downgrade: bool = False,
    policy: DownloadPolicy | None = None,
    progress: bool = False,
) -> DownloadAndInstall:
    """As download_and_install_from_url, also returning what was downloaded (for --json).

    A missing results folder (and its missing parents) is created for the temporary file and
    removed again, if still empty, when the download or the install fails or is interrupted:
    a failed download leaves the parent folder as it was. ``allow_downgrade`` is the install's.
    """
    results = Path(destination)
    keep_path = Path(keep) if keep is not None else None
    if keep_path is not None and keep_path.exists() and not force:
        # Checked before a long download, and again when the file is kept.
        raise WouldOverwrite("exists", path=keep_path, hint=Hint.FORCE)
    if not force:
        refuse_named_dataset_installed(url, results)  # before a long download; install checks each model again
    try:
        lock = Lock(results, create_folder=True)  # guards the temporary file from every sweep
    except OSError as err:
        raise from_os_error(err, results) from err
    installed = False
    try:
        sweep_stale(results)
        # In the results folder, not the home folder: same filesystem, and no surprise quota.
        downloaded = fetch_to_temp(url, results, policy=policy or DownloadPolicy(), expected_sha256=sha256,
                                   progress=progress, lock=lock)
        try:
            from nnseal.verify.install import install_model_from_zip

            report = install_model_from_zip(
                downloaded.path, install_location=results, trusted_keys=tuple(trusted_keys),
                trust_folder=trust_folder, force=force, allow_downgrade=allow_downgrade,
                unsigned=unsigned, sha256=sha256, progress=progress, source_name=redact(url),
                zip_sha256=downloaded.sha256,  # hashed as it streamed: install does not read the zip again for it
            )
            installed = True
            if keep_path is not None:
                keep_file(downloaded.path, keep_path, force=force)
        finally:
            downloaded.path.unlink(missing_ok=True)
    finally:
        lock.release()
        if not installed:
            remove_created_folders(lock.created)  # only folders still empty: a failure leaves no trace
    return DownloadAndInstall(downloaded, report)


# --- helpers -----------------------------------------------------------------


def refuse_named_dataset_installed(url: str, results: Path) -> None:
    """Refuse (WouldOverwrite) when the URL's file name names a dataset (``DatasetNNN_...``) of which
    ``results`` already holds a model folder. A file name that names no dataset is not checked here."""
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    match = _DATASET_IN_FILE_NAME.match(name)
    if match is None or not results.is_dir():
        return
    for dataset in sorted(results.glob(f"Dataset{match[1]}_*")):
        if not DATASET_RE.match(dataset.name) or dataset.is_symlink() or not dataset.is_dir():
            continue
        models = sorted(child.name for child in dataset.iterdir() if MODEL_RE.match(child.name) and child.is_dir())
        if models:
            raise WouldOverwrite(
                f"holds model folder(s) {', '.join(models)} of dataset {match[1]}, which the download's file "
                f"name {name!r} names; nothing was downloaded", path=dataset, hint=Hint.FORCE)


def keep_file(source: Path, keep: Path, *, force: bool) -> None:
    """Put the verified download at ``keep``: a hard link where possible, else an atomic copy."""
    try:
        if force:
            os.replace(source, keep)  # source is a temporary file that goes anyway
        else:
            os.link(source, keep)  # fails if keep appeared meanwhile: never clobber
        return
    except FileExistsError:
        raise WouldOverwrite("exists", path=keep, hint=Hint.FORCE) from None
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
            raise from_os_error(err, keep) from err
    with open(source, "rb") as src, atomic_output(keep, force=force) as out:
        shutil.copyfileobj(src, out, IO_CHUNK)
