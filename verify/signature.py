"""Read and verify model.sig (OpenSSF Model Signing v1.0, key method) without trusting its bytes.

The bundle comes from whoever made the package, so every field is checked for
type and shape before use, JSON with duplicate keys is refused (two parsers could
read different values), and the signature is checked against each trusted key in
turn rather than the key the bundle names: the hint is unsigned and only tells
"unknown signer" apart from "bad signature". Torch-free.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, NoReturn, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from nnseal.errors import SignatureError, UntrustedSigner
from nnseal.package.keys import SUPPORTED_CURVES, fingerprint
from nnseal.safezip import collision_key
from nnseal.package.oms import (
    BUNDLE_MEDIA_TYPE,
    HASH_TYPE,
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    SERIALIZATION_METHOD,
    SIGNATURE_NAME,
    STATEMENT_TYPE,
    hash_for_curve,
    pae,
    resource_name_problem,
    root_digest_in_order,
)

MAX_BUNDLE_BYTES = 16 * 1024 * 1024
MAX_RESOURCES = 100_000
MAX_SHORT_TEXT = 4096
_HEX64 = re.compile(r"[0-9a-f]{64}")
TRUST_HINT = "if you trust this signer, run `nnseal trust add KEY.pub` or pass --trusted-key KEY.pub"


@dataclass(frozen=True)
class SignedManifest:
    model_name: str
    resources: dict[str, str]
    signer_fingerprint: str
    verified: bool
    ignore_paths: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Envelope:
    payload: bytes
    payload_type: str
    signature: bytes
    hint: str


def read_bundle_unverified(bundle: bytes, *, source: str = SIGNATURE_NAME) -> SignedManifest:
    """Parse and shape-check a bundle for display; the signature is NOT checked (verified=False)."""
    envelope = _parse_envelope(bundle, source)
    model_name, resources, ignore_paths = _parse_statement(envelope.payload, source)
    return SignedManifest(model_name, resources, envelope.hint, False, ignore_paths)


def verify_bundle(bundle: bytes, trusted_keys: Sequence[ec.EllipticCurvePublicKey], *,
                  source: str = SIGNATURE_NAME) -> SignedManifest:
    """Check the bundle's signature against the trusted keys and return what it signs.

    Raises UntrustedSigner when no trusted key verifies and the bundle names a
    signer that is not trusted, SignatureError for everything else that is wrong.
    """
    envelope = _parse_envelope(bundle, source)
    signer = _verifying_key(envelope, trusted_keys, source)
    model_name, resources, ignore_paths = _parse_statement(envelope.payload, source)
    return SignedManifest(model_name, resources, signer, True, ignore_paths)


def resource_differences(signed: Mapping[str, str], actual: Mapping[str, str]) -> list[str]:
    """Every way the actual files differ from the signed resources (empty when they match exactly)."""
    problems = [f"{name}: not covered by the signature" for name in sorted(set(actual) - set(signed))]
    problems += [f"{name}: signed but missing" for name in sorted(set(signed) - set(actual))]
    problems += [f"{name}: sha256 differs from the signed digest"
                 for name in sorted(set(signed) & set(actual)) if signed[name] != actual[name]]
    return problems


# --- signature --------------------------------------------------------------------------


def _verifying_key(envelope: _Envelope, trusted_keys: Sequence[ec.EllipticCurvePublicKey], source: str) -> str:
    if not trusted_keys:
        err = UntrustedSigner(f"no trusted keys to check the signature by {envelope.hint or 'an unnamed key'} "
                              f"against; {TRUST_HINT}", path=source)
        err.fingerprint = envelope.hint
        raise err
    message = pae(envelope.payload_type, envelope.payload)
    trusted_fingerprints = set()
    for key in trusted_keys:
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in SUPPORTED_CURVES:
            raise TypeError(f"trusted keys must be ECDSA P-256/384/521 public keys, got {type(key).__name__}")
        key_fingerprint = fingerprint(key)
        trusted_fingerprints.add(key_fingerprint)
        try:
            key.verify(envelope.signature, message, ec.ECDSA(hash_for_curve(key.curve)))
        except InvalidSignature:
            continue
        if envelope.hint and envelope.hint != key_fingerprint:
            # model_signing refuses a hint that is not the verifying key's: the bundle was edited.
            raise SignatureError(f"bundle names key {envelope.hint} but is signed by trusted key "
                                 f"{key_fingerprint}: the bundle was altered", path=source)
        return key_fingerprint
    if envelope.hint in trusted_fingerprints:
        raise SignatureError(f"signature does not verify with the signer's trusted key {envelope.hint}: "
                             "the signature or the signed statement was altered", path=source)
    signer = envelope.hint or "a key it does not name"
    err = UntrustedSigner(f"signed by {signer}, which is not among the {len(trusted_keys)} trusted key(s); "
                          f"{TRUST_HINT}", path=source)
    err.fingerprint = envelope.hint
    raise err


# --- bundle and envelope ----------------------------------------------------------------


def _parse_envelope(bundle: bytes, source: str) -> _Envelope:
    if not isinstance(bundle, (bytes, bytearray, memoryview)):
        raise TypeError("bundle must be bytes")
    if len(bundle) > MAX_BUNDLE_BYTES:
        raise SignatureError(f"is larger than {MAX_BUNDLE_BYTES // (1024 * 1024)} MiB: not a signature", path=source)
    doc = _strict_json(bytes(bundle), "bundle", source)
    where = _Where(source)

    where.object(doc, "bundle", required={"mediaType", "verificationMaterial", "dsseEnvelope"})
    where.exact(doc["mediaType"], BUNDLE_MEDIA_TYPE, "mediaType")

    material = doc["verificationMaterial"]
    if isinstance(material, dict) and ("certificate" in material or "x509CertificateChain" in material):
        raise SignatureError("is signed with a certificate (Sigstore or PKI); nnseal verifies the key method only",
                             path=source)
    where.object(material, "verificationMaterial", required={"publicKey"}, optional={"tlogEntries"})
    tlog = material.get("tlogEntries", [])
    if not isinstance(tlog, list) or tlog:
        raise SignatureError("verificationMaterial.tlogEntries must be empty for the key method", path=source)
    public_key = material["publicKey"]
    # rawBytes/keyDetails appear in older bundles; model_signing drops them, so do we.
    where.object(public_key, "verificationMaterial.publicKey", optional={"hint", "rawBytes", "keyDetails"})
    hint = public_key.get("hint") or ""
    if not isinstance(hint, str) or (hint and not _HEX64.fullmatch(hint)):
        raise SignatureError("verificationMaterial.publicKey.hint is not a 64-hex-digit key fingerprint",
                             path=source)

    envelope = doc["dsseEnvelope"]
    where.object(envelope, "dsseEnvelope", required={"payload", "payloadType", "signatures"})
    where.exact(envelope["payloadType"], PAYLOAD_TYPE, "dsseEnvelope.payloadType")
    signatures = envelope["signatures"]
    if not isinstance(signatures, list) or len(signatures) != 1:
        raise SignatureError("dsseEnvelope.signatures must hold exactly one signature", path=source)
    entry = signatures[0]
    where.object(entry, "dsseEnvelope.signatures[0]", required={"sig"}, optional={"keyid"})
    # keyid is unsigned and unused by model_signing (it writes ""); only its type is checked.
    where.text(entry.get("keyid", ""), "dsseEnvelope.signatures[0].keyid")
    payload = _strict_base64(envelope["payload"], "dsseEnvelope.payload", source)
    signature = _strict_base64(entry["sig"], "dsseEnvelope.signatures[0].sig", source)
    if not signature:
        raise SignatureError("dsseEnvelope.signatures[0].sig is empty", path=source)
    return _Envelope(payload, envelope["payloadType"], signature, hint)


# --- statement --------------------------------------------------------------------------


def _parse_statement(payload: bytes, source: str) -> tuple[str, dict[str, str], list[str]]:
    doc = _strict_json(payload, "signed statement", source)
    where = _Where(source, prefix="statement ")
    where.object(doc, "", required={"_type", "subject", "predicateType", "predicate"})
    where.exact(doc["_type"], STATEMENT_TYPE, "_type")
    where.exact(doc["predicateType"], PREDICATE_TYPE, "predicateType")

    subjects = doc["subject"]
    if not isinstance(subjects, list) or len(subjects) != 1:
        raise SignatureError("statement subject must hold exactly one model", path=source)
    subject = subjects[0]
    where.object(subject, "subject[0]", required={"name", "digest"})
    model_name = where.text(subject["name"], "subject[0].name")
    where.object(subject["digest"], "subject[0].digest", required={"sha256"})
    subject_digest = where.hex64(subject["digest"]["sha256"], "subject[0].digest.sha256")

    predicate = doc["predicate"]
    # v1.0 verifiers ignore predicate fields they do not know (model_signing's predicate doc says so).
    where.object(predicate, "predicate", required={"resources", "serialization"}, allow_extra=True)
    serialization = predicate["serialization"]
    where.object(serialization, "predicate.serialization", required={"method", "hash_type", "allow_symlinks"},
                 optional={"ignore_paths"})
    if serialization["method"] != SERIALIZATION_METHOD:
        raise SignatureError(f"serialization method {_short(serialization['method'])} is not supported; "
                             f"nnseal verifies method {SERIALIZATION_METHOD!r}", path=source)
    if serialization["hash_type"] != HASH_TYPE:
        raise SignatureError(f"hash type {_short(serialization['hash_type'])} is not supported; "
                             f"nnseal verifies {HASH_TYPE!r}", path=source)
    if not isinstance(serialization["allow_symlinks"], bool):
        raise SignatureError("statement predicate.serialization.allow_symlinks is not a boolean", path=source)
    ignore_paths = serialization.get("ignore_paths", [])
    if not isinstance(ignore_paths, list) or len(ignore_paths) > MAX_RESOURCES:
        raise SignatureError("statement predicate.serialization.ignore_paths is not a list", path=source)
    for index, entry in enumerate(ignore_paths):
        where.text(entry, f"predicate.serialization.ignore_paths[{index}]")

    resources_list = predicate["resources"]
    if not isinstance(resources_list, list) or len(resources_list) > MAX_RESOURCES:
        raise SignatureError(f"statement predicate.resources is not a list of at most {MAX_RESOURCES}", path=source)
    resources: dict[str, str] = {}
    folded: dict[str, str] = {}
    for index, resource in enumerate(resources_list):
        label = f"predicate.resources[{index}]"
        where.object(resource, label, required={"name", "algorithm", "digest"})
        name = resource["name"]
        problem = resource_name_problem(name)
        if problem:
            raise SignatureError(f"statement {problem}", path=source)
        if resource["algorithm"] != HASH_TYPE:
            raise SignatureError(f"statement resource {_short(name)} uses algorithm {_short(resource['algorithm'])}, "
                                 f"not {HASH_TYPE!r}", path=source)
        digest = where.hex64(resource["digest"], f"{label}.digest")
        if name in resources:
            raise SignatureError(f"statement lists resource {_short(name)} twice", path=source)
        key = collision_key(name)
        if key in folded:
            raise SignatureError(f"statement resources {_short(folded[key])} and {_short(name)} collide on "
                                 "case-insensitive file systems", path=source)
        folded[key] = name
        resources[name] = digest

    # model_signing hashes the resources in the order listed (its signer lists them sorted).
    computed = root_digest_in_order(resources.values())
    if computed != subject_digest:
        raise SignatureError(f"statement is inconsistent: subject digest {subject_digest} but the resources "
                             f"hash to {computed}", path=source)
    return model_name, resources, list(ignore_paths)


# --- strict parsing helpers -------------------------------------------------------------


class _Where:
    """Shape checks that raise SignatureError naming the field."""

    def __init__(self, source: str, prefix: str = ""):
        self.source = source
        self.prefix = prefix

    def fail(self, text: str) -> NoReturn:
        raise SignatureError(f"{self.prefix}{text}", path=self.source)

    def object(self, value: Any, label: str, *, required: set[str] = frozenset(),
               optional: set[str] = frozenset(), allow_extra: bool = False) -> None:
        shown = label or "top level"
        if not isinstance(value, dict):
            self.fail(f"{shown} is not a JSON object")
        missing = sorted(required - value.keys())
        if missing:
            self.fail(f"{shown} lacks {', '.join(missing)}")
        extra = sorted(value.keys() - required - optional)
        if extra and not allow_extra:
            self.fail(f"{shown} has unexpected field(s) {', '.join(_short(k) for k in extra[:5])}")

    def exact(self, value: Any, expected: str, label: str) -> None:
        if value != expected:
            self.fail(f"{label} is {_short(value)}, expected {expected!r}")

    def text(self, value: Any, label: str) -> str:
        if not isinstance(value, str) or len(value) > MAX_SHORT_TEXT:
            self.fail(f"{label} is not a string of at most {MAX_SHORT_TEXT} characters")
        return value

    def hex64(self, value: Any, label: str) -> str:
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            self.fail(f"{label} is not a sha256 digest (64 lowercase hex characters)")
        return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {_short(key)}")
        result[key] = value
    return result


def _reject_constant(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def _strict_json(data: bytes, what: str, source: str) -> Any:
    try:
        text = data.decode("utf-8")
        return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise SignatureError(f"{what} is not UTF-8 text", path=source) from None
    except RecursionError:
        raise SignatureError(f"{what} is nested too deeply", path=source) from None
    except ValueError as err:  # JSONDecodeError included
        raise SignatureError(f"{what} is not valid JSON ({' '.join(str(err).split())[:120]})", path=source) from None


def _strict_base64(value: Any, label: str, source: str) -> bytes:
    if not isinstance(value, str):
        raise SignatureError(f"{label} is not a base64 string", path=source)
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{label} is not valid base64", path=source) from None
    # Only the canonical encoding: no second spelling of the same bytes.
    if base64.b64encode(decoded).decode("ascii") != value:
        raise SignatureError(f"{label} is not canonical base64", path=source)
    return decoded
