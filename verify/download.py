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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from nnseal.errors import (
    Hint,
    InvalidArgument,
    NetworkError,
    NnsealError,
    Refused,
    TamperedPackage,
    WouldOverwrite,
    from_os_error,
)
from nnseal.format.digest import normalise_sha256
from nnseal.format.layout import DATASET_RE, MODEL_RE
from nnseal.format.limits import IO_CHUNK
from nnseal.fsutil import atomic_output
from nnseal.locks import Lock, remove_created_folders, sweep_stale
from nnseal.transport.cache import Cache
from nnseal.transport.fetch import (  # noqa: F401  (re-exported: the CLI and callers import them from here)
    DOWNLOAD_PREFIX,
    DownloadPolicy,
    DownloadResult,
    HostDigest,
    fetch_to_temp,
    redact,
    retry_after_seconds,
)
from nnseal.transport.mirrors import MirrorIndex
from nnseal.transport.sources import Endpoints, Remote, Source, parse_source, resolve

if TYPE_CHECKING:
    from nnseal.verify.install import InstallReport

# A file name such as Dataset042_Liver.zip or Dataset042_Liver_v2.zip names dataset 042.
_DATASET_IN_FILE_NAME = re.compile(r"^Dataset(\d{3})_")


@dataclass(frozen=True)
class FailedSource:
    """A source (or mirror) that did not give a package that verifies, and why (one line)."""

    source: str
    error: NnsealError

    def to_json(self) -> dict:
        return {"source": redact(self.source), "error": self.error.to_json(), "exit_code": self.error.exit_code}


@dataclass(frozen=True)
class DownloadAndInstall:
    download: DownloadResult
    install: InstallReport
    remote: Remote | None = None  # what the source that won resolved to
    from_cache: bool = False  # the bytes came from the cache: no body was downloaded
    cached: str | None = None  # where the verified download is cached
    failed: tuple[FailedSource, ...] = ()  # sources and mirrors tried before the one that won
    warnings: tuple[str, ...] = ()  # e.g. the cache could not be written (the install stands)

    def to_json(self, kept: str | os.PathLike | None = None) -> dict:
        """The install report, whose "package" names where the zip came from (``kept`` or the URL,
        not the temporary file it passed through), plus what was downloaded."""
        where = self.remote.source if self.remote is not None else self.download.url
        download = self.download.to_json(kept)
        return {**self.install.to_json(), "package": str(kept) if kept else redact(where),
                # The same size and digest, under the same names, as export, inspect, verify and install give.
                "package_bytes": download.pop("bytes"), "package_sha256": download.pop("sha256"),
                "download": {**download, "source": self.remote.to_json() if self.remote else None,
                             "from_cache": self.from_cache, "cached": self.cached,
                             "failed_sources": [f.to_json() for f in self.failed],
                             "warnings": list(self.warnings)}}


# --- public API -------------------------------------------------------------


def download_and_install_from_url(url: str, destination: str | os.PathLike, **options) -> InstallReport:
    """Download ``url`` (or a source: ``hf://``, ``doi:``, ``zenodo://``, ``gh://``) and install it
    into the results folder ``destination`` with the verified install; return the InstallReport.

    ``options`` are those of ``download_then_install``.
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
    mirrors: Sequence[str] = (),
    mirror_index: MirrorIndex | None = None,
    endpoints: Endpoints | None = None,
    cache: str | os.PathLike | None = None,
    offline: bool = False,
    on_source_failed: Callable[[FailedSource], None] | None = None,
) -> DownloadAndInstall:
    """As download_and_install_from_url, also returning what was downloaded (for --json).

    ``url`` is a URL or a host source (``nnseal.transport.sources``), resolved through the
    host's API at ``endpoints``; the digest the host publishes is checked beside ``sha256`` and
    the signature. ``mirrors`` (and a ``mirror_index``'s URLs) are tried in order after it: the
    first that gives a package that verifies wins; each one that fails is passed to
    ``on_source_failed`` and the next is tried. A refusal that is about the results folder
    (an installed model, a downgrade) or the environment ends the run at once.

    ``cache``, a folder (``nnseal.transport.cache``): a package whose sha256 is known (pinned,
    published by the host or the index, or remembered for this source) and cached is installed
    from there without downloading its body; a verified download is added to it. ``offline``:
    no connection at all; only the cache and file URLs are read, and without a cache hit the
    run ends with NetworkError.

    A missing results folder (and its missing parents) is created for the temporary file and
    removed again, if still empty, when the download or the install fails or is interrupted:
    a failed download leaves the parent folder as it was. ``allow_downgrade`` and
    ``external_trainer_folders`` are the install's.
    """
    results = Path(destination)
    policy = policy or DownloadPolicy()
    endpoints = endpoints or Endpoints()
    pin = normalise_sha256(sha256) if sha256 is not None else None
    keep_path = Path(keep) if keep is not None else None
    if keep_path is not None and keep_path.exists() and not force:
        # Checked before a long download, and again when the file is kept.
        raise WouldOverwrite("exists", path=keep_path, hint=Hint.FORCE)
    index_digest = mirror_index.digest() if mirror_index is not None else None
    index_digests = (index_digest,) if index_digest is not None else ()
    candidates = [parse_source(text) for text in (url, *mirrors, *(mirror_index.urls if mirror_index else ()))]
    store = Cache(cache) if cache is not None else None
    plan = _Plan(candidates, results, store, pin, index_digests, offline, force, endpoints, policy,
                 on_source_failed)
    try:
        lock = Lock(results, create_folder=True)  # guards the temporary file from every sweep
    except OSError as err:
        raise from_os_error(err, results) from err
    installed = False
    try:
        sweep_stale(results)
        for attempt in plan.attempts():
            if attempt.remote is not None and attempt.remote.snapshot is not None:
                outcome = _try_snapshot(attempt, plan, results, lock, keep_path=keep_path, unsigned=unsigned,
                                        policy=policy, trusted_keys=trusted_keys, trust_folder=trust_folder,
                                        force=force, allow_downgrade=allow_downgrade, progress=progress,
                                        external_trainer_folders=external_trainer_folders)
                if outcome is None:
                    continue
                installed = True
                return outcome
            try:
                # In the results folder, not the home folder: same filesystem, and no surprise quota.
                downloaded = fetch_to_temp(attempt.url, results, policy=policy, expected_sha256=attempt.expected,
                                           progress=progress, lock=lock, host_digests=attempt.digests)
            except NnsealError as err:
                plan.failed(attempt, err)
                continue
            try:
                from nnseal.verify.install import install_model_from_zip

                try:
                    report = install_model_from_zip(
                        downloaded.path, install_location=results, trusted_keys=tuple(trusted_keys),
                        trust_folder=trust_folder, force=force, allow_downgrade=allow_downgrade,
                        unsigned=unsigned, sha256=pin, progress=progress, source_name=redact(attempt.source),
                        zip_sha256=downloaded.sha256,  # hashed as it streamed: install does not read it again
                        external_trainer_folders=external_trainer_folders,
                    )
                except Refused as err:
                    if isinstance(err, WouldOverwrite):
                        raise  # about the results folder: another mirror would say the same
                    plan.failed(attempt, err)
                    continue
                installed = True
                if keep_path is not None:
                    keep_file(downloaded.path, keep_path, force=force)
                cached, warnings = plan.remember(attempt, downloaded)
            finally:
                downloaded.path.unlink(missing_ok=True)
            return DownloadAndInstall(downloaded, report, attempt.remote, attempt.from_cache, cached,
                                      tuple(plan.failures), warnings)
        raise plan.give_up()
    finally:
        lock.release()
        if not installed:
            remove_created_folders(lock.created)  # only folders still empty: a failure leaves no trace


def _try_snapshot(attempt: _Attempt, plan: _Plan, results: Path, lock: Lock, *, keep_path: Path | None,
                  unsigned: bool, policy: DownloadPolicy, trusted_keys, trust_folder, force: bool,
                  allow_downgrade: bool, progress: bool, external_trainer_folders) -> DownloadAndInstall | None:
    """A folder package (``nnseal.verify.snapshot``): installed, or None when it failed (recorded in ``plan``).
    It is never cached: the cache holds zips, by their sha256."""
    from nnseal.verify.snapshot import install_snapshot

    remote = attempt.remote
    if remote is None or remote.snapshot is None:
        raise ValueError("not a folder package")
    try:
        if unsigned or plan.pin is not None or keep_path is not None:
            raise InvalidArgument(f"{redact(attempt.source)} is a folder package: it is always signed, it has no "
                                  "zip sha256 to pin (pin its revision) and no zip to keep")
        download, report = install_snapshot(remote, results, lock, policy=policy, trusted_keys=tuple(trusted_keys),
                                            trust_folder=trust_folder, force=force,
                                            allow_downgrade=allow_downgrade, progress=progress,
                                            external_trainer_folders=external_trainer_folders)
    except WouldOverwrite:
        raise  # about the results folder: another mirror would say the same
    except NnsealError as err:
        plan.failed(attempt, err)
        return None
    return DownloadAndInstall(download, report, remote, False, None, tuple(plan.failures), ())


@dataclass(frozen=True)
class _Attempt:
    source: str  # the source as written (what failures and receipts name)
    url: str  # what is fetched: the resolved URL, or the cached file
    expected: str | None  # the sha256 the bytes must have (the pin, or a cache entry's name)
    digests: tuple[HostDigest, ...]  # published by the host or the mirror index: checked too
    remote: Remote | None
    from_cache: bool = False
    cache_key: str | None = None


class _Plan:
    """The order in which sources, mirrors and the cache are tried, and what each failure was."""

    def __init__(self, candidates: list[Source], results: Path, store: Cache | None, pin: str | None,
                 index_digests: tuple[HostDigest, ...], offline: bool, force: bool, endpoints: Endpoints,
                 policy: DownloadPolicy, report: Callable[[FailedSource], None] | None):
        self.candidates, self.results, self.store, self.pin = candidates, results, store, pin
        self.index_digests, self.offline, self.force = index_digests, offline, force
        self.endpoints, self.policy, self.report = endpoints, policy, report
        self.failures: list[FailedSource] = []
        self.pending: list[FailedSource] = []
        self.looked = False  # the early look at the package's model folders is taken once
        self.primary = candidates[0].text

    def attempts(self) -> Iterator[_Attempt]:
        known = self.pin or (self.index_digests[0].value if self.index_digests else None)
        remembered = self.store.recall(self.primary) if self.store is not None else None
        # A digest known without asking anyone: the cache answers before any connection.
        for key in (known, remembered.sha256 if remembered and (self.offline or known is None) else None):
            hit = self._cached(key, self.primary, None)
            if hit is not None:
                yield self._next(hit)
                break
        for source in self.candidates:
            if self.offline and not (source.kind == "url" and urlsplit(source.text).scheme.lower() == "file"):
                continue  # no connection: only the cache and local files
            try:
                remote = resolve(source, endpoints=self.endpoints, policy=self.policy)
            except NnsealError as err:
                self._record(FailedSource(source.text, err))
                continue
            digests = tuple(d for d in (remote.digest,) if d is not None) + self.index_digests
            key = next((d.value for d in digests if d.algorithm == "sha256"), None)
            if key is None and remembered is not None and source.text == self.primary and remote.digest is not None \
                    and remembered.host_digest == remote.digest.text():
                key = remembered.sha256  # the host still publishes what it published when this was cached
            hit = self._cached(key, source.text, remote, digests)
            if hit is not None:
                yield self._next(hit)
                continue
            if remote.snapshot is None:  # a folder package looks at its signed names instead
                self._look_before_download(remote.url)
            yield self._next(_Attempt(source.text, remote.url, self.pin, digests, remote))

    def _cached(self, key: str | None, source: str, remote: Remote | None,
                digests: tuple[HostDigest, ...] = ()) -> _Attempt | None:
        if key is None or self.store is None or (self.pin is not None and key != self.pin):
            return None
        path = self.store.find(key)
        if path is None:
            return None
        self._look_before_download(path.as_uri())
        # The cached file is read through the same hashing fetch: its bytes must match its name.
        return _Attempt(source, path.as_uri(), key, digests or self.index_digests, remote, True, key)

    def _look_before_download(self, url: str) -> None:
        if self.looked or self.force or not _holds_a_dataset(self.results):
            return  # else nothing can be overwritten; install checks again anyway
        self.looked = True
        folders = model_folders_in_tail(url)
        if folders is not None:
            refuse_installed_model_folders(folders, self.results)
        else:
            refuse_named_dataset_installed(url, self.results)

    def failed(self, attempt: _Attempt, err: NnsealError) -> None:
        if attempt.from_cache and self.store is not None and attempt.cache_key is not None \
                and isinstance(err, TamperedPackage):
            self.store.drop(attempt.cache_key)  # bytes that no longer match their name
        self._record(FailedSource("cache" if attempt.from_cache else attempt.source, err))

    def _record(self, failure: FailedSource) -> None:
        self.failures.append(failure)
        self.pending.append(failure)

    def _next(self, attempt: _Attempt) -> _Attempt:
        # A failure is reported once another source is about to be tried; the last one ends the run
        # as its error, so a single source fails with one line, as before mirrors existed.
        while self.pending:
            failure = self.pending.pop(0)
            if self.report is not None:
                self.report(failure)
        return attempt

    def remember(self, attempt: _Attempt, downloaded: DownloadResult) -> tuple[str | None, tuple[str, ...]]:
        """Cache the verified download and what the source gave; a failure here is a warning only."""
        if self.store is None:
            return None, ()
        host = attempt.remote.digest.text() if attempt.remote is not None and attempt.remote.digest else None
        try:
            path = self.store.store(downloaded.path, downloaded.sha256)
            self.store.remember(self.primary, downloaded.sha256, host)
        except (OSError, NnsealError) as err:
            return None, (f"the verified download was not cached: {err}",)
        return str(path), ()

    def give_up(self) -> NnsealError:
        if not self.failures:
            if self.offline:
                return NetworkError(f"offline, and the cache holds no verified download of {redact(self.primary)}",
                                    hint=Hint.OFFLINE)
            return NetworkError(f"no source to try for {redact(self.primary)}")
        if len(self.failures) == 1:
            return self.failures[0].error
        last = self.failures[-1].error
        return type(last)(f"none of the {len(self.failures)} sources tried gave a package that verifies; "
                          f"the last: {last.reason}", path=last.path, hint=last.hint)


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
