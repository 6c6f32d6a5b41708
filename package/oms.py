"""OpenSSF Model Signing v1.0 (key method): the in-toto statement and its Sigstore bundle.

Matches model_signing 1.1.1 (sigstore/model-transparency) so that either tool
verifies the other's signatures:
- resources are sorted the way model_signing sorts PurePosixPath keys (component
  by component, so "a/b" comes before "a.txt"), and the subject digest is sha256
  over the concatenated raw resource digests in that order;
- the DSSE signature is DER ECDSA over PAE("application/vnd.in-toto+json", payload),
  with SHA-256/384/512 for P-256/384/521;
- the bundle carries the key's hint (hex sha256 of its SPKI PEM), no tlog entries
  and one signature whose keyid is "".
Output is deterministic (RFC 6979 signatures, fixed JSON key order), so the same
inputs and key give the same bytes. Torch-free.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Iterable, Mapping

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from nnseal.package.keys import fingerprint

SIGNATURE_NAME = "model.sig"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
SERIALIZATION_METHOD = "files"
HASH_TYPE = "sha256"
# Only the signature itself is left out: every other entry of the package is signed.
IGNORE_PATHS = (SIGNATURE_NAME,)

_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_NAME_LENGTH = 4096


def canonical_order(names: Iterable[str]) -> list[str]:
    """Names in model_signing's order: by path components, not by raw string."""
    return sorted(names, key=lambda name: name.split("/"))


def root_digest_in_order(digests: Iterable[str]) -> str:
    """sha256 over the concatenated raw (not hex) digests, in the order given."""
    hasher = hashlib.sha256()
    for digest in digests:
        hasher.update(bytes.fromhex(digest))
    return hasher.hexdigest()


def root_digest(resources: Mapping[str, str]) -> str:
    """The in-toto subject digest of a set of resources (POSIX relative name -> sha256 hex)."""
    return root_digest_in_order(resources[name] for name in canonical_order(resources))


def resource_name_problem(name: object) -> str | None:
    """Why `name` is not a safe relative POSIX file name inside a model, or None if it is.

    The same rules as zip entry names (nnseal.safezip.check_entry_name, docs/FORMAT.md
    section 1): a signed name must be one the installer could extract.
    """
    from nnseal.errors import HostileArchive
    from nnseal.safezip import check_entry_name

    if not isinstance(name, str):
        return f"resource name {name!r:.80} is not a string"
    try:
        check_entry_name(name)
    except HostileArchive as err:
        return f"resource name: {err.reason}"
    if name == SIGNATURE_NAME:
        return f"resource name {name!r} is the signature file itself"
    return None


def check_resources(resources: Mapping[str, str]) -> None:
    """Refuse (ValueError) names or digests that a verifier would refuse; signing never emits them."""
    for name, digest in resources.items():
        problem = resource_name_problem(name)
        if problem:
            raise ValueError(problem)
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise ValueError(f"digest of {name!r} is not 64 lowercase hex characters")


def build_statement(model_name: str, resources: Mapping[str, str]) -> dict:
    """The in-toto Statement v1 with the model_signing v1.0 predicate."""
    check_resources(resources)
    ordered = canonical_order(resources)
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model_name, "digest": {"sha256": root_digest(resources)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "resources": [{"name": name, "algorithm": HASH_TYPE, "digest": resources[name]} for name in ordered],
            "serialization": {
                "method": SERIALIZATION_METHOD,
                "hash_type": HASH_TYPE,
                "allow_symlinks": False,
                "ignore_paths": list(IGNORE_PATHS),
            },
        },
    }


def statement_bytes(statement: dict) -> bytes:
    """Stable JSON for the DSSE payload (insertion order, two-space indent, like model_signing)."""
    return json.dumps(statement, indent=2, ensure_ascii=True, allow_nan=False).encode("ascii")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the bytes the signature covers."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def hash_for_curve(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    """model_signing pairs each curve with the hash of matching strength."""
    by_size = {256: hashes.SHA256, 384: hashes.SHA384, 521: hashes.SHA512}
    if curve.key_size not in by_size:
        raise ValueError(f"unsupported curve {curve.name}")
    return by_size[curve.key_size]()


def sign_statement(statement: dict, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """Sign any statement into Sigstore bundle JSON bytes (tests use it to build altered statements)."""
    payload = statement_bytes(statement)
    signature = _ecdsa_sign(private_key, pae(PAYLOAD_TYPE, payload))
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": fingerprint(private_key.public_key())},
            "tlogEntries": [],
        },
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}],
        },
    }
    return json.dumps(bundle, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign_manifest(model_name: str, resources: Mapping[str, str], private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """model.sig for `resources`: Sigstore bundle JSON bytes, identical for identical inputs and key."""
    return sign_statement(build_statement(model_name, resources), private_key)


def deterministic_signing_supported() -> bool:
    """Whether this cryptography/OpenSSL pair signs with RFC 6979 nonces (cryptography >= 43, OpenSSL >= 3.2)."""
    probe = ec.derive_private_key(1, ec.SECP256R1())
    try:
        probe.sign(b"probe", ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    except (TypeError, UnsupportedAlgorithm):
        return False
    return True


def _ecdsa_sign(private_key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    algorithm = hash_for_curve(private_key.curve)
    try:
        return private_key.sign(message, ec.ECDSA(algorithm, deterministic_signing=True))
    except (TypeError, UnsupportedAlgorithm):
        # Older stacks: still a valid signature, only the package bytes stop being reproducible.
        return private_key.sign(message, ec.ECDSA(algorithm))
