"""Sign a model folder (or one model file) in place, as `model_signing sign key` (or `sign certificate`) does.

The signature is a detached Sigstore bundle, by default ``FOLDER/model.sig``; the folder's files
stay browsable as they are. What is signed is ``nnseal.format.model_files``'s enumeration: every
regular file except the default ignore paths (.git, .gitattributes, .github, .gitignore at the
top), the signature file itself and the caller's ignore paths, all recorded in the statement's
``serialization.ignore_paths`` so that a verifier (nnseal or model_signing) ignores the same.
Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from nnseal.errors import EnvironmentProblem, Hint, InvalidArgument, WouldOverwrite
from nnseal.format.keys import fingerprint, signing_key
from nnseal.format.model_files import check_ignore_paths, hash_files, list_model_files
from nnseal.format.oms import DEFAULT_IGNORE_PATHS, SIGNATURE_NAME, build_statement
from nnseal.fsutil import atomic_output
from nnseal.package.signing import check_certificate_matches, load_signing_certificates, sign_manifest

if TYPE_CHECKING:
    from nnseal.package.sigstore_signing import SigstoreSigner

__all__ = ["FolderSignature", "sign_folder"]


@dataclass(frozen=True)
class FolderSignature:
    signature: Path
    signer_fingerprint: str  # the key's, or with the certificate method the signing certificate's
    files: int
    bytes: int
    method: str = "key"  # the OMS method: "key", "certificate" or "sigstore"
    signer: str = ""  # the signing certificate or Sigstore identity, in words


def sign_folder(folder: str | os.PathLike, key: str | os.PathLike | ec.EllipticCurvePrivateKey | None, *,
                signature: str | os.PathLike | None = None, ignore_paths: Iterable[str] = (),
                passphrase: bytes | None = None, force: bool = False, workers: int | None = None,
                certificate: str | os.PathLike | x509.Certificate | None = None,
                certificate_chain: Iterable[str | os.PathLike | x509.Certificate] = (),
                sigstore: SigstoreSigner | None = None) -> FolderSignature:
    """Write the OMS signature of ``folder`` (default ``folder/model.sig``; never replaced unless ``force``).

    ``key`` is a PEM path or a loaded key (a PKCS#11 one included). With ``certificate`` the
    signature is the OMS certificate method's, as export's: the bundle carries that certificate
    (which must be for ``key``) and ``certificate_chain``'s (PEM files, intermediates first).
    With ``sigstore`` (``nnseal.package.sigstore_signing.open_sigstore_signer``) it is the Sigstore
    method's and ``key`` is unused.
    """
    root = Path(folder)
    if not root.exists():
        raise EnvironmentProblem("no such folder or file", path=root)
    private_key = signing_key(key, passphrase) if sigstore is None else None
    certificates: list[x509.Certificate] = []
    if certificate is not None and private_key is not None:
        certificates = load_signing_certificates(certificate, list(certificate_chain))
        check_certificate_matches(certificates[0], private_key)
    target = Path(signature) if signature is not None else (root / SIGNATURE_NAME if root.is_dir()
                                                             else root.with_name(SIGNATURE_NAME))
    ignored = list(DEFAULT_IGNORE_PATHS) + check_ignore_paths(ignore_paths)
    if root.is_dir():
        inside = _relative_inside(target, root)
        if inside is not None:
            ignored.append(inside)
        files = list_model_files(root, ignored)
    else:
        # A single-file model: its resource is its file name (spec 6.1.2 rule 5).
        files = {root.name: root}
    if not files:
        raise InvalidArgument("holds no file to sign (after the ignore paths)", path=root)
    digests, total = hash_files(files, workers)
    if sigstore is not None:
        if target.exists() and not force:  # checked before Fulcio and Rekor are asked: a log entry is forever
            raise WouldOverwrite("exists", path=target, hint=Hint.FORCE)
        bundle = sigstore.sign_statement(build_statement(root.resolve().name, digests, sorted(set(ignored))))
        with atomic_output(target, force=force) as handle:
            handle.write(bundle)
        return FolderSignature(target, sigstore.fingerprint, len(digests), total, "sigstore", sigstore.description)
    private_key = cast(ec.EllipticCurvePrivateKey, private_key)  # loaded above: no sigstore, so a key
    bundle = sign_manifest(root.resolve().name, digests, private_key, ignore_paths=sorted(set(ignored)),
                           certificates=certificates)
    with atomic_output(target, force=force) as handle:
        handle.write(bundle)
    if certificates:
        leaf = certificates[0]
        return FolderSignature(target, leaf.fingerprint(hashes.SHA256()).hex(), len(digests), total, "certificate",
                               f"certificate {leaf.subject.rfc4514_string()} issued by {leaf.issuer.rfc4514_string()}")
    return FolderSignature(target, fingerprint(private_key.public_key()), len(digests), total)


def _relative_inside(path: Path, root: Path) -> str | None:
    """``path`` relative to ``root`` as a POSIX name if it lies inside, else None."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None
