"""The trust folder: the public keys, CA certificates and Sigstore identities whose
signatures `nnseal install` accepts.

One canonical SPKI PEM per key, named NAME.pub, in a folder every function here is
given (the CLI finds it from the environment). Keys are stored re-encoded (not copied),
so a trusted file holds exactly one key and nothing else. Torch-free.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nnseal.errors import BadKey, EnvironmentProblem, Hint, InvalidArgument, WouldOverwrite, from_os_error
from nnseal.format.digest import is_sha256_hex
from nnseal.format.keys import PUBLIC_SUFFIX, fingerprint, load_public_key, public_key_pem
from nnseal.format.strict_json import load_strict_json
from nnseal.fsutil import atomic_output

# Names become file names: keep them portable and free of path separators.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_FINGERPRINT_PREFIX = 8
_FINGERPRINT_PREFIX = re.compile(rf"[0-9A-Fa-f]{{{MIN_FINGERPRINT_PREFIX},}}")


@dataclass(frozen=True)
class TrustedKey:
    name: str
    fingerprint: str
    path: Path
    key: ec.EllipticCurvePublicKey = field(compare=False, repr=False)
    # Set by add_trusted_key when this key was already trusted under this name (nothing written).
    already_trusted: bool = field(default=False, compare=False)


def signer_label(fingerprint: str | None, name: str | None = None, *, full: bool = False) -> str:
    """How reports name a signer: "liver-lab (key sha256:ab12cd34ef56ab78…)", or the key alone when
    no trusted key names it. The first 16 hex digits (`nnseal trust remove` accepts such a prefix)
    unless ``full``."""
    if not fingerprint:
        return "a key the signature does not name"
    key = f"key sha256:{fingerprint if full else fingerprint[:16] + chr(0x2026)}"
    return f"{name} ({key})" if name else key


def is_valid_key_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name)) and not name.endswith(".")


def add_trusted_key(folder: str | os.PathLike, pub_path: str | os.PathLike, name: str | None = None) -> TrustedKey:
    """Copy a public key into the trust folder ``folder`` under NAME (default: the file's stem).

    The same key already trusted under the same name is no error: the existing entry is returned
    with ``already_trusted`` set. The key under another name, or another key under this name, is
    refused (WouldOverwrite)."""
    key = load_public_key(pub_path)
    key_fingerprint = fingerprint(key)
    if name is None:
        stem = Path(pub_path).name.removesuffix(PUBLIC_SUFFIX).removesuffix(".pem")
        name = stem if is_valid_key_name(stem) else key_fingerprint[:16]
    elif not is_valid_key_name(name):
        raise InvalidArgument(f"invalid key name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    folder = Path(folder)
    for existing in list_trusted_keys(folder):
        if existing.fingerprint == key_fingerprint and existing.name == name:
            # Adding it again changes nothing: succeed, so a setup script can run twice.
            return TrustedKey(existing.name, key_fingerprint, existing.path, key, already_trusted=True)
        if existing.fingerprint == key_fingerprint:
            raise WouldOverwrite(f"key {key_fingerprint} is already trusted as {existing.name!r}", path=pub_path)
    target = folder / f"{name}{PUBLIC_SUFFIX}"
    if target.exists() or target.is_symlink():
        raise WouldOverwrite(f"a different key is already trusted under the name {name!r}", path=target,
                             hint=Hint.OTHER_KEY_NAME)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        raise from_os_error(err, folder) from err
    with atomic_output(target, mode=0o644) as handle:
        handle.write(public_key_pem(key))
    return TrustedKey(name, key_fingerprint, target, key)


def list_trusted_keys(folder: str | os.PathLike) -> list[TrustedKey]:
    """Every key in the trust folder, by name; a file that is not a supported public key is refused."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    try:
        paths = sorted(p for p in folder.iterdir() if p.name.endswith(PUBLIC_SUFFIX))
    except OSError as err:
        raise from_os_error(err, folder) from err
    keys = []
    for path in paths:
        # A link could point a trust decision at a file outside the folder that someone else controls.
        if path.is_symlink() or not path.is_file():
            raise BadKey("is not a regular file; the trust folder holds only .pub files", path=path,
                         hint=Hint.ADD_TRUSTED_KEY)
        key = load_public_key(path)
        keys.append(TrustedKey(path.name.removesuffix(PUBLIC_SUFFIX), fingerprint(key), path, key))
    return keys


def remove_trusted_key(folder: str | os.PathLike, name_or_fingerprint: str) -> TrustedKey:
    """Remove the key named, or fingerprinted, ``name_or_fingerprint`` (see ``find_trusted_key``)."""
    target = find_trusted_key(folder, name_or_fingerprint)
    try:
        target.path.unlink()
    except OSError as err:
        raise from_os_error(err, target.path) from err
    return target


def find_trusted_key(folder: str | os.PathLike, name_or_fingerprint: str) -> TrustedKey:
    """The one trusted key ``name_or_fingerprint`` means: its exact name, its full fingerprint,
    or a prefix of at least 8 hex digits of exactly one key's fingerprint.

    A key is never picked by guessing: an argument that names one key and is also (a prefix
    of) another key's fingerprint is refused (InvalidArgument) with both candidates listed, and
    so is a prefix that several fingerprints share. No match at all is an EnvironmentProblem.
    """
    folder = Path(folder)
    wanted = name_or_fingerprint.strip()
    keys = list_trusted_keys(folder)
    candidates = [k for k in keys if k.name == wanted]
    if _FINGERPRINT_PREFIX.fullmatch(wanted):
        hex_digits = wanted.lower()
        by_fingerprint = [k for k in keys if k.fingerprint == hex_digits]
        by_fingerprint = by_fingerprint or [k for k in keys if k.fingerprint.startswith(hex_digits)]
        candidates += [k for k in by_fingerprint if k not in candidates]
    if not candidates:
        short = "" if len(wanted) >= MIN_FINGERPRINT_PREFIX or not wanted else (
            f" (a fingerprint prefix needs at least {MIN_FINGERPRINT_PREFIX} hex digits)")
        raise EnvironmentProblem(f"no trusted key named or fingerprinted {wanted!r}{short}", path=folder,
                                 hint=Hint.LIST_TRUSTED_KEYS)
    if len(candidates) > 1:
        listed = ", ".join(f"{k.name} ({k.fingerprint})" for k in candidates)
        raise InvalidArgument(f"{wanted!r} matches several trusted keys: {listed}; give a full name or a longer "
                              "fingerprint", path=folder)
    return candidates[0]


def load_trusted_keys(paths: Sequence[str | os.PathLike] = (),
                      folder: str | os.PathLike | None = None) -> list[TrustedKey]:
    """The key files ``paths``, then (only when ``folder`` is given) the trust folder's keys;
    each key once (by fingerprint)."""
    result: list[TrustedKey] = []
    seen: set[str] = set()
    for raw in paths:
        path = Path(raw)
        key = load_public_key(path)
        key_fingerprint = fingerprint(key)
        if key_fingerprint not in seen:
            seen.add(key_fingerprint)
            result.append(TrustedKey(path.name.removesuffix(PUBLIC_SUFFIX).removesuffix(".pem"), key_fingerprint,
                                     path, key))
    for trusted in (list_trusted_keys(folder) if folder is not None else []):
        if trusted.fingerprint not in seen:
            seen.add(trusted.fingerprint)
            result.append(trusted)
    return result


# --- certificate authorities and Sigstore identities --------------------------------------
#
# Beside the keys, the trust folder holds NAME.ca.json (a CA certificate that anchors the
# certificate method, and the identities it may vouch for) and NAME.sigstore.json (a Sigstore
# identity and its OIDC issuer). Both are written only by the functions below; list_trusted_keys
# reads only .pub files, so older nnseal versions ignore them.

CA_SUFFIX = ".ca.json"
SIGSTORE_SUFFIX = ".sigstore.json"
# How a CA-issued signing certificate is pinned: one of these prefixes, a colon, the value.
IDENTITY_KINDS = ("email", "uri", "dns", "subject", "sha256")
IDENTITY_HELP = ("email:ADDRESS, uri:URI or dns:NAME (a subjectAltName of the signing certificate), "
                 "subject:RFC4514-NAME (its subject, e.g. 'CN=Release,O=Lab'), or sha256:HEX (its fingerprint)")
_MAX_TRUST_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class TrustedCA:
    name: str
    fingerprint: str  # sha256 of the CA certificate's DER
    path: Path
    identities: tuple[str, ...]
    certificate: x509.Certificate = field(compare=False, repr=False)

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()


@dataclass(frozen=True)
class SigstoreIdentity:
    name: str
    identity: str  # the Fulcio certificate's subjectAltName (an e-mail or a workflow URI)
    issuer: str  # the OIDC issuer that vouched for it
    path: Path


def check_identity(text: str) -> str:
    """``text`` as a stored identity rule (kind:value, kind lower case), or InvalidArgument."""
    kind, sep, value = text.partition(":")
    kind = kind.strip().lower()
    value = value.strip()
    if not sep or kind not in IDENTITY_KINDS or not value or len(value) > 1024:
        raise InvalidArgument(f"identity {text!r} is not one of {IDENTITY_HELP}")
    if kind == "sha256":
        value = value.replace(":", "").lower()
        if not is_sha256_hex(value):
            raise InvalidArgument(f"identity {text!r}: a sha256 fingerprint is 64 hex digits")
    if kind == "subject":
        try:
            value = x509.Name.from_rfc4514_string(value).rfc4514_string()
        except ValueError:
            raise InvalidArgument(f"identity {text!r}: not an RFC 4514 distinguished name") from None
    return f"{kind}:{value}"


def certificate_fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def add_trusted_ca(folder: str | os.PathLike, ca_path: str | os.PathLike, name: str,
                   identities: Sequence[str]) -> TrustedCA:
    """Trust the CA certificate at ``ca_path`` for signing certificates matching one of ``identities``."""
    if not is_valid_key_name(name):
        raise InvalidArgument(f"invalid name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    if not identities:
        raise InvalidArgument(f"a trusted CA needs at least one identity: {IDENTITY_HELP}")
    rules = tuple(dict.fromkeys(check_identity(text) for text in identities))
    data = _read_small(ca_path)
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise BadKey("is not a PEM X.509 certificate", path=ca_path) from None
    constraints = _basic_constraints(certificate)
    if constraints is None or not constraints.ca:
        raise BadKey("is not a CA certificate (BasicConstraints CA:TRUE missing)", path=ca_path)
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    document = {"kind": "x509-ca", "certificate": pem, "identities": list(rules)}
    target = Path(folder) / f"{name}{CA_SUFFIX}"
    stored = TrustedCA(name, certificate_fingerprint(certificate), target, rules, certificate)
    _write_new(folder, target, document, f"a CA is already trusted under the name {name!r}")
    return stored


def add_sigstore_identity(folder: str | os.PathLike, name: str, identity: str, issuer: str) -> SigstoreIdentity:
    """Trust Sigstore signatures whose certificate names ``identity``, vouched for by ``issuer``."""
    if not is_valid_key_name(name):
        raise InvalidArgument(f"invalid name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    for label, value in (("identity", identity), ("issuer", issuer)):
        if not value.strip() or len(value) > 1024:
            raise InvalidArgument(f"the Sigstore {label} must be a non-empty string of at most 1024 characters")
    target = Path(folder) / f"{name}{SIGSTORE_SUFFIX}"
    document = {"kind": "sigstore-identity", "identity": identity.strip(), "issuer": issuer.strip()}
    _write_new(folder, target, document, f"a Sigstore identity is already trusted under the name {name!r}")
    return SigstoreIdentity(name, identity.strip(), issuer.strip(), target)


def list_trusted_cas(folder: str | os.PathLike) -> list[TrustedCA]:
    result = []
    for path in _trust_files(folder, CA_SUFFIX):
        doc = _load_trust_file(path, "x509-ca", {"certificate", "identities"})
        identities = doc["identities"]
        try:
            certificate = x509.load_pem_x509_certificate(str(doc["certificate"]).encode("ascii"))
            if not isinstance(identities, list) or not identities:
                raise InvalidArgument("no identities")
            rules = tuple(check_identity(str(text)) for text in identities)
        except (ValueError, UnicodeEncodeError, InvalidArgument):
            raise BadKey("is not a trusted CA written by nnseal trust", path=path, hint=Hint.ADD_TRUSTED_KEY) from None
        name = path.name.removesuffix(CA_SUFFIX)
        result.append(TrustedCA(name, certificate_fingerprint(certificate), path, rules, certificate))
    return result


def list_sigstore_identities(folder: str | os.PathLike) -> list[SigstoreIdentity]:
    result = []
    for path in _trust_files(folder, SIGSTORE_SUFFIX):
        doc = _load_trust_file(path, "sigstore-identity", {"identity", "issuer"})
        if not all(isinstance(doc[k], str) and doc[k] for k in ("identity", "issuer")):
            raise BadKey("is not a Sigstore identity written by nnseal trust", path=path, hint=Hint.ADD_TRUSTED_KEY)
        result.append(SigstoreIdentity(path.name.removesuffix(SIGSTORE_SUFFIX), doc["identity"], doc["issuer"], path))
    return result


def remove_trust_entry(folder: str | os.PathLike, name: str) -> Path:
    """Remove the trusted CA or Sigstore identity called ``name``; returns the file removed."""
    for suffix in (CA_SUFFIX, SIGSTORE_SUFFIX):
        target = Path(folder) / f"{name}{suffix}"
        if is_valid_key_name(name) and target.is_file():
            try:
                target.unlink()
            except OSError as err:
                raise from_os_error(err, target) from err
            return target
    raise EnvironmentProblem(f"no trusted CA or Sigstore identity named {name!r}", path=folder,
                             hint=Hint.LIST_TRUSTED_KEYS)


def _basic_constraints(certificate: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _read_small(path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_TRUST_FILE_BYTES + 1)
    except IsADirectoryError:
        raise EnvironmentProblem("is a directory, not a file", path=path) from None
    except OSError as err:
        raise from_os_error(err, path) from err
    if len(data) > _MAX_TRUST_FILE_BYTES:
        raise BadKey(f"is larger than {_MAX_TRUST_FILE_BYTES // 1024} KiB", path=path)
    return data


def _write_new(folder: str | os.PathLike, target: Path, document: dict, taken: str) -> None:
    if target.exists() or target.is_symlink():
        raise WouldOverwrite(taken, path=target, hint=Hint.OTHER_KEY_NAME)
    try:
        Path(folder).mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        raise from_os_error(err, folder) from err
    with atomic_output(target, mode=0o644) as handle:
        handle.write(json.dumps(document, indent=2).encode("utf-8") + b"\n")


def _trust_files(folder: str | os.PathLike, suffix: str) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    try:
        paths = sorted(p for p in folder.iterdir() if p.name.endswith(suffix))
    except OSError as err:
        raise from_os_error(err, folder) from err
    for path in paths:
        if path.is_symlink() or not path.is_file():
            raise BadKey("is not a regular file; the trust folder holds only files nnseal trust writes",
                         path=path, hint=Hint.ADD_TRUSTED_KEY)
    return paths


def _load_trust_file(path: Path, kind: str, required: set[str]) -> dict:
    doc = load_strict_json(_read_small(path), what="trust file", error=BadKey, path=path)
    if not isinstance(doc, dict) or doc.get("kind") != kind or not required <= doc.keys():
        raise BadKey(f"is not a {kind} entry written by nnseal trust", path=path, hint=Hint.ADD_TRUSTED_KEY)
    return doc


@dataclass(frozen=True)
class TrustAnchors:
    """What verifies signatures other than raw keys: CA certificates with their identity rules
    (certificate method), Sigstore identities (keyless method), and the policy knobs.

    ``validation_time`` is when certificate chains must be valid (None: now).
    ``sigstore_trust_config`` is a Sigstore ClientTrustConfig or trusted_root JSON file
    (None: sigstore-python's embedded production root).
    """

    cas: tuple[TrustedCA, ...] = ()
    sigstore: tuple[SigstoreIdentity, ...] = ()
    validation_time: datetime.datetime | None = None
    sigstore_trust_config: Path | None = None

    def __bool__(self) -> bool:
        return bool(self.cas or self.sigstore)


def load_trust_anchors(folder: str | os.PathLike | None, *, cas: Sequence[TrustedCA] = (),
                       sigstore: Sequence[SigstoreIdentity] = (),
                       validation_time: datetime.datetime | None = None,
                       sigstore_trust_config: str | os.PathLike | None = None) -> TrustAnchors:
    """``cas`` and ``sigstore`` given, then (when ``folder`` is given) the trust folder's."""
    all_cas = list(cas) + (list_trusted_cas(folder) if folder is not None else [])
    identities = list(sigstore) + (list_sigstore_identities(folder) if folder is not None else [])
    config = Path(sigstore_trust_config) if sigstore_trust_config is not None else None
    return TrustAnchors(tuple(all_cas), tuple(identities), validation_time, config)
