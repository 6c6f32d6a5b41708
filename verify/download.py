"""Download a package by URL, then install it the verified way.

Replaces nnU-Net's ``download_and_install_from_url``, which wrote into the home folder,
had one 100 s timeout, no retry, no resume, no hash, and crashed (``int(None)``) when a
server sent no Content-Length. The transfer is ``nnseal.transport``; this module checks
the destination, puts the temporary file in the results folder, pins it, installs it
(handing over the digest computed as the bytes streamed: the zip is hashed once) and
cleans up.

What is checked before the package is downloaded (unless ``force``): the --keep file; the
model folders the package would install, read from its central directory in the last bytes
of the file (one Range request, or the local file for file:// URLs), none of which may
exist in the results folder; and, when that look is not possible (a server without Range
support), the URL's file name: ``DatasetNNN_...`` must name no dataset with a model folder
installed. The look is a courtesy, never trusted: the install checks each model folder
again on the verified package.

No torch here, and ``requests`` is imported only when an http(s) URL is fetched.
"""

from __future__ import annotations

import errno
import io
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
    keep, unsigned, force, allow_downgrade, policy, progress, external_trainer_folders).
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
    external_trainer_folders: Sequence[str | os.PathLike] = (),
) -> DownloadAndInstall:
    """As download_and_install_from_url, also returning what was downloaded (for --json).

    A missing results folder (and its missing parents) is created for the temporary file and
    removed again, if still empty, when the download or the install fails or is interrupted:
    a failed download leaves the parent folder as it was. ``allow_downgrade`` and
    ``external_trainer_folders`` are the install's.
    """
    results = Path(destination)
    keep_path = Path(keep) if keep is not None else None
    if keep_path is not None and keep_path.exists() and not force:
        # Checked before a long download, and again when the file is kept.
        raise WouldOverwrite("exists", path=keep_path, hint=Hint.FORCE)
    if not force and _holds_a_dataset(results):  # else nothing can be overwritten; install checks again anyway
        folders = model_folders_in_tail(url)
        if folders is not None:
            refuse_installed_model_folders(folders, results)
        else:
            refuse_named_dataset_installed(url, results)
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
                external_trainer_folders=external_trainer_folders,
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


def model_folders_in_tail(url: str) -> list[str] | None:
    """The ``DatasetXXX_Name/Trainer__Plans__configuration`` folders a zip's central directory
    names, read from the file's last bytes; None when they cannot be read that way."""
    import zipfile

    from nnseal.transport.tail import fetch_tail

    tail = fetch_tail(url)
    if tail is None:
        return None
    size, data = tail
    try:
        # zipfile reads only the end records and the central directory on opening.
        with zipfile.ZipFile(_TailFile(size, data)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return None
    folders = set()
    for name in names:
        parts = name.split("/")
        if len(parts) >= 3 and DATASET_RE.match(parts[0]) and MODEL_RE.match(parts[1]):
            folders.add(f"{parts[0]}/{parts[1]}")
    return sorted(folders)


def _holds_a_dataset(results: Path) -> bool:
    try:
        return results.is_dir() and any(DATASET_RE.match(child.name) for child in results.iterdir())
    except OSError:
        return False


def refuse_installed_model_folders(folders: list[str], results: Path) -> None:
    """Refuse (WouldOverwrite) when the results folder already holds one of ``folders``."""
    for folder in folders:
        target = results / folder
        if target.exists() or target.is_symlink():
            raise WouldOverwrite(f"holds model folder {folder}, which the package at the URL would install; "
                                 "nothing was downloaded", path=results, hint=Hint.FORCE)


class _TailFile(io.RawIOBase):
    """A read-only file of ``size`` bytes of which only the last ``len(data)`` are known; reading
    before them fails, so a central directory outside the tail is simply not read."""

    def __init__(self, size: int, data: bytes):
        self._size, self._data, self._start, self._pos = size, data, size - len(data), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if self._pos < self._start:
            raise OSError("before the bytes fetched")
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        chunk = self._data[self._pos - self._start:end - self._start]
        self._pos += len(chunk)
        return chunk


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
