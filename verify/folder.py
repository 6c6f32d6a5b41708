"""Verify any OMS-signed model folder (or single model file) in place, as `model_signing verify` does.

The bundle is checked first (``nnseal.verify.signature``: the key method against the trusted
keys, the certificate and Sigstore methods against the trusted CAs and Sigstore identities);
then the folder is enumerated as the signer did (``nnseal.format.model_files``: the default
ignore paths, the signature file itself, the statement's ``ignore_paths`` and the caller's),
every file hashed once, and the two sets compared: an extra, missing or changed file is a
problem. A symbolic link or special file anywhere not ignored is refused outright.
Nothing is written. Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnseal.errors import EnvironmentProblem, HostileArchive, from_os_error
from nnseal.format.limits import MAX_BUNDLE_BYTES
from nnseal.format.model_files import check_ignore_paths, hash_files, list_model_files
from nnseal.format.oms import DEFAULT_IGNORE_PATHS, SIGNATURE_NAME, SINGLE_FILE_NAME
from nnseal.format.trust import TrustAnchors, load_trust_anchors, load_trusted_keys
from nnseal.verify.problems import Problem, ProblemKind
from nnseal.verify.signature import verify_bundle

__all__ = ["FolderReport", "default_signature_path", "verify_folder"]


@dataclass
class FolderReport:
    folder: str
    signature: str
    signer_fingerprint: str = ""
    signer_name: str | None = None  # the trusted key's name, when the trust folder or a key file names it
    method: str = "key"  # the OMS method: key, certificate or sigstore
    signer: str = ""  # who signed, as the method names it (a key, a certificate, a Sigstore identity)
    files: int = 0
    files_bytes: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        from nnseal.format.trust import signer_label

        if self.method in (None, "key"):
            signer = signer_label(self.signer_fingerprint, self.signer_name) if self.signer_fingerprint else None
        else:
            signer = self.signer
        return {"folder": self.folder, "signature_file": self.signature, "ok": self.ok, "method": self.method,
                "signer_fingerprint": self.signer_fingerprint, "signer_name": self.signer_name,
                "signer": signer, "files": self.files, "files_bytes": self.files_bytes,
                "problems": [p.message for p in self.problems]}


def default_signature_path(target: str | os.PathLike) -> Path:
    """Where `model_signing` and ``nnseal sign`` put the signature of ``target`` by default."""
    path = Path(target)
    return path / SIGNATURE_NAME if path.is_dir() else path.with_name(SIGNATURE_NAME)


def verify_folder(target: str | os.PathLike, signature: str | os.PathLike | None = None,
                  trusted_keys: Sequence[str | os.PathLike] = (), *, trust_folder: str | os.PathLike | None = None,
                  ignore_paths: Iterable[str] = (), workers: int | None = None,
                  anchors: TrustAnchors | None = None) -> FolderReport:
    """Check ``target``'s files against the OMS signature ``signature`` (default: ``model.sig`` in it).

    The signature is checked as a package's is: the key method against ``trusted_keys`` and
    ``trust_folder``'s keys, the certificate and Sigstore methods against ``anchors`` (CAs,
    Sigstore identities, validation time, Sigstore trusted root) plus ``trust_folder``'s.

    A broken, altered or untrusted signature raises (SignatureError, UntrustedSigner); extra,
    missing and modified files are the report's problems.
    """
    root = Path(target)
    if not root.exists():
        raise EnvironmentProblem("no such folder or file", path=root)
    sig_path = Path(signature) if signature is not None else default_signature_path(root)
    if not sig_path.is_file():
        raise EnvironmentProblem("no such signature file", path=sig_path)
    try:
        with open(sig_path, "rb") as handle:
            bundle = handle.read(MAX_BUNDLE_BYTES + 1)  # parse_envelope refuses anything longer
    except OSError as err:
        raise from_os_error(err, sig_path) from err
    keys = load_trusted_keys(list(trusted_keys), trust_folder)
    anchors = anchors or TrustAnchors()
    anchors = load_trust_anchors(trust_folder, cas=anchors.cas, sigstore=anchors.sigstore,
                                 validation_time=anchors.validation_time,
                                 sigstore_trust_config=anchors.sigstore_trust_config)
    manifest = verify_bundle(bundle, [k.key for k in keys], anchors=anchors, source=str(sig_path))
    report = FolderReport(folder=str(root), signature=str(sig_path), signer_fingerprint=manifest.signer_fingerprint,
                          signer_name=next((k.name for k in keys if k.fingerprint == manifest.signer_fingerprint),
                                           None), method=manifest.method, signer=manifest.signer)
    expected = manifest.resources
    if root.is_dir():
        ignored = [*DEFAULT_IGNORE_PATHS, *check_ignore_paths(manifest.ignore_paths, HostileArchive),
                   *check_ignore_paths(ignore_paths)]
        inside = _relative_inside(sig_path, root)
        if inside is not None:
            ignored.append(inside)
        files = list_model_files(root, ignored)
    else:
        # A single-file model: model_signing 0.3.1-1.1.x name its resource ".", the spec its file name.
        files = {SINGLE_FILE_NAME if SINGLE_FILE_NAME in expected else root.name: root}
    present = {name: path for name, path in files.items() if name in expected}
    digests, report.files_bytes = hash_files(present, workers)
    report.files = len(files)
    for name in sorted(set(files) - set(expected)):
        report.problems.append(Problem(ProblemKind.EXTRA_FILE, f"extra file {name}: not covered by the signature",
                                       name))
    for name in sorted(set(expected) - set(files)):
        report.problems.append(Problem(ProblemKind.MISSING_FILE, f"missing file {name}: signed but not present",
                                       name))
    for name in sorted(digests):
        if digests[name] != expected[name]:
            report.problems.append(Problem(ProblemKind.MODIFIED_FILE, f"modified file {name}: its sha256 differs "
                                           "from the signed one", name))
    return report


def _relative_inside(path: Path, root: Path) -> str | None:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None
