"""Fetch a folder package published file by file (a Hub snapshot) into a private folder, then install it.

The signature decides what is downloaded: model.sig first (at most ``MAX_BUNDLE_BYTES``), its
signature checked against the trusted keys and anchors before anything else is fetched (an
unknown signer costs one small file); then exactly the files its manifest lists, each from
the snapshot's commit, each at most its listed size and all together at most the download
policy's ``max_bytes`` and the zip reader's total limit, each checked against the host's
digest (the Hub's LFS sha256) and then against the signed digest as it arrives. Files the
host holds that the manifest does not list (a README, ``.gitattributes``) are never
downloaded. The files land in ``.nnseal-tmp-dl-<token>-snapshot-*/`` inside the results
folder, owned by the download's lock (the sweep removes it if the process dies), and the
folder is installed by ``install_model_from_folder``: the same verdict and transaction as
a zip, reading the bytes again and hashing them against the manifest as they are installed.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from nnseal.errors import Hint, NetworkError, SignatureError, TamperedPackage, from_os_error
from nnseal.format.layout import DATASET_RE, MODEL_RE
from nnseal.format.limits import MAX_BUNDLE_BYTES
from nnseal.format.oms import SIGNATURE_NAME
from nnseal.locks import Lock
from nnseal.transport.fetch import DOWNLOAD_PREFIX, DownloadPolicy, DownloadResult, fetch_to_temp, redact
from nnseal.transport.sources import Remote

if TYPE_CHECKING:
    from nnseal.format.oms import SignedManifest
    from nnseal.verify.install import InstallReport


@dataclass(frozen=True)
class SnapshotDownload:
    """A folder package fetched: where its files are, and what was downloaded (``download.sha256``
    is model.sig's, which signs every other file's digest; ``download.size`` counts every file)."""

    folder: Path
    download: DownloadResult
    manifest: SignedManifest


def fetch_snapshot(remote: Remote, results: Path, lock: Lock, *, policy: DownloadPolicy,
                   trusted_keys: Sequence[str | os.PathLike], trust_folder: str | os.PathLike | None,
                   force: bool, progress: bool = False) -> SnapshotDownload:
    """Download the signed files of ``remote.snapshot`` into a new folder in ``results`` guarded by ``lock``.

    The caller removes the folder (``shutil.rmtree``) when done with it. A signature that does not
    verify, a signed file the snapshot lacks or one over the limits, and bytes that differ from
    the host's or the signed digest are refusals; nothing is left behind.
    """
    from nnseal.format.trust import load_trust_anchors, load_trusted_keys
    from nnseal.readers.zip_archive import Limits
    from nnseal.verify.download import refuse_installed_model_folders
    from nnseal.verify.signature import verify_bundle

    snapshot = remote.snapshot
    if snapshot is None:
        raise ValueError("not a folder package")
    signature = snapshot.files.get(SIGNATURE_NAME)
    if signature is None:
        raise SignatureError(f"no {SIGNATURE_NAME}: not a signed nnseal package", hint=Hint.UNSIGNED)
    keys = load_trusted_keys(list(trusted_keys), trust_folder)
    anchors = load_trust_anchors(trust_folder)
    if not keys and not anchors:
        raise SignatureError("no trusted key", hint=Hint.TRUSTED_KEY)
    folder = lock.owned(DOWNLOAD_PREFIX, f"-snapshot-{secrets.token_hex(4)}")
    try:
        folder.mkdir(mode=0o700)
    except OSError as err:
        raise from_os_error(err, folder) from err
    try:
        bundle_result = _fetch_into(signature, folder, SIGNATURE_NAME, results, lock,
                                    replace(policy, max_bytes=MAX_BUNDLE_BYTES + 1), None, progress)
        bundle = (folder / SIGNATURE_NAME).read_bytes()
        manifest = verify_bundle(bundle, [k.key for k in keys], anchors=anchors,
                                 source=f"{remote.resolved or remote.source}/{SIGNATURE_NAME}")
        wanted = _check_listed(manifest, snapshot.files, policy, Limits(), remote)
        if not force:  # the model folders are signed names: look before the weights are downloaded
            refuse_installed_model_folders(_model_folders(wanted), results)
        total = bundle_result.size
        for name in wanted:
            budget = policy.max_bytes - total
            listed = snapshot.files[name].size
            file_policy = replace(policy, max_bytes=max(0, min(budget, listed) if listed is not None else budget))
            fetched = _fetch_into(snapshot.files[name], folder, name, results, lock, file_policy,
                                  manifest.resources[name], progress)
            total += fetched.size
        download = DownloadResult(folder, total, bundle_result.sha256, signature.url, bundle_result.final_url,
                                  0, 0)
        return SnapshotDownload(folder, download, manifest)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def install_snapshot(remote: Remote, results: Path, lock: Lock, *, policy: DownloadPolicy,
                     trusted_keys: Sequence[str | os.PathLike], trust_folder: str | os.PathLike | None,
                     force: bool, allow_downgrade: bool, progress: bool,
                     external_trainer_folders: Sequence[str | os.PathLike]) -> tuple[DownloadResult, InstallReport]:
    """``fetch_snapshot``, then ``install_model_from_folder`` on what it fetched; the folder goes either way."""
    from nnseal.verify.install import install_model_from_folder

    fetched = fetch_snapshot(remote, results, lock, policy=policy, trusted_keys=trusted_keys,
                             trust_folder=trust_folder, force=force, progress=progress)
    try:
        report = install_model_from_folder(
            fetched.folder, results, trusted_keys=trusted_keys, trust_folder=trust_folder, force=force,
            progress=progress, source_name=redact(remote.source), allow_downgrade=allow_downgrade,
            external_trainer_folders=external_trainer_folders)
    finally:
        shutil.rmtree(fetched.folder, ignore_errors=True)
    return fetched.download, report


def _check_listed(manifest: SignedManifest, files: dict[str, Remote], policy: DownloadPolicy, limits,
                  remote: Remote) -> list[str]:
    """The manifest's files, in order; refused when the snapshot lacks one or they exceed the limits."""
    names = sorted(manifest.resources)
    missing = [name for name in names if name not in files]
    if missing:
        raise TamperedPackage(f"missing entry: {missing[0]} (signed, but not in {remote.resolved or remote.source})"
                              + (f"; and {len(missing) - 1} more" if len(missing) > 1 else ""))
    if len(names) > limits.max_entries:
        raise TamperedPackage(f"{len(names)} signed files, more than the limit of {limits.max_entries}")
    total = 0
    for name in names:
        size = files[name].size or 0
        if size > limits.max_entry_size:
            raise TamperedPackage(f"{name}: listed at {size} bytes, more than the limit of {limits.max_entry_size}")
        total += size
    if total > min(policy.max_bytes, limits.max_total_size):
        raise NetworkError(f"the package's files are listed at {total} bytes, more than the download limit of "
                           f"{min(policy.max_bytes, limits.max_total_size)}")
    return names


def _fetch_into(remote: Remote, folder: Path, name: str, results: Path, lock: Lock, policy: DownloadPolicy,
                signed_sha256: str | None, progress: bool) -> DownloadResult:
    """Fetch one file (host digest checked) and move it to ``folder/name``; its sha256 must be ``signed_sha256``."""
    digests = (remote.digest,) if remote.digest is not None else ()
    result = fetch_to_temp(remote.url, results, policy=policy, progress=progress, lock=lock, host_digests=digests)
    try:
        if signed_sha256 is not None and result.sha256 != signed_sha256:
            raise TamperedPackage(f"{name}: sha256 of the download from {redact(remote.url)} is {result.sha256}, "
                                  f"but the signature says {signed_sha256}; nothing was installed")
        target = folder.joinpath(*name.split("/"))
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.replace(result.path, target)
    except OSError as err:
        raise from_os_error(err, folder) from err
    finally:
        result.path.unlink(missing_ok=True)
    return result


def _model_folders(names: list[str]) -> list[str]:
    folders = set()
    for name in names:
        parts = name.split("/")
        if len(parts) >= 3 and DATASET_RE.match(parts[0]) and MODEL_RE.match(parts[1]):
            folders.add(f"{parts[0]}/{parts[1]}")
    return sorted(folders)
