"""OpenSSF Model Signing v1.0 (key method): the in-toto statement and its Sigstore bundle,
serialized and parsed. ``nnseal.package.signing`` signs and ``nnseal.verify.signature``
verifies on top of this module; neither holds format knowledge of its own.

Matches model_signing 1.1.1 (sigstore/model-transparency) so that either tool
verifies the other's signatures:
- resources are sorted the way model_signing sorts PurePosixPath keys (component
  by component, so "a/b" comes before "a.txt"), and the subject digest is sha256
  over the concatenated raw resource digests in that order;
- the DSSE signature is DER ECDSA over PAE("application/vnd.in-toto+json", payload),
  with SHA-256/384/512 for P-256/384/521;
- the bundle carries the key's hint (hex sha256 of its SPKI PEM), no tlog entries
  and one signature whose keyid is "".
The certificate method differs only in its verification material: the signing certificate
and the chain the signer gave, each DER in base64, under x509CertificateChain, and no tlog
entries (model_signing's sign_certificate.py). A Sigstore (keyless) bundle carries a Fulcio
certificate and transparency-log entries; it is parsed here for shape and handed whole to
sigstore-python. ``Envelope.method`` says which of the three a bundle is.
Serialization is deterministic (fixed JSON key order). Parsing trusts nothing: every field
is checked for type and shape, and JSON with duplicate keys is refused. Torch-free.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from nnseal.errors import BadKey, HostileArchive, InvalidArgument, SignatureError
from nnseal.format.digest import is_sha256_hex
from nnseal.format.limits import MAX_BUNDLE_BYTES, MAX_RESOURCES, MAX_SHORT_TEXT
from nnseal.format.strict_json import load_strict_json, show
from nnseal.readers.zip_archive import check_entry_name, collision_key

SIGNATURE_NAME = "model.sig"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
# model_signing 0.2's statement: another layout, signed over a DSSE encoding that is not DSSE v1.
PREDICATE_TYPE_V0_2 = "https://model_signing/Digests/v0.1"
SERIALIZATION_METHOD = "files"
HASH_TYPE = "sha256"
# Envelope.method: how the signer is identified (a PKCS#11 token signs key or certificate bundles).
METHOD_KEY = "key"
METHOD_CERTIFICATE = "certificate"
METHOD_SIGSTORE = "sigstore"
MAX_CHAIN_CERTIFICATES = 10
# Only the signature itself is left out: every other entry of the package is signed.
IGNORE_PATHS = (SIGNATURE_NAME,)
# What model_signing (and spec 6.2) leaves out of a folder by default: top-level names only.
DEFAULT_IGNORE_PATHS = (".git", ".gitattributes", ".github", ".gitignore")
# The resource name model_signing 0.3.1-1.0.x gives the one file of a single-file model.
SINGLE_FILE_NAME = "."
# verificationMaterial field -> OMS signing method (spec 4.1).
_METHOD_BY_MATERIAL = {"publicKey": "key", "x509CertificateChain": "certificate", "certificate": "sigstore"}


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

    The same rules as zip entry names (nnseal.readers.zip_archive.check_entry_name, docs/FORMAT.md
    section 1): a signed name must be one the installer could extract.
    """
    if not isinstance(name, str):
        return f"resource name {show(name)} is not a string"
    try:
        check_entry_name(name)
    except HostileArchive as err:
        return f"resource name: {err.reason}"
    # A resource named model.sig is legitimate when the signature was written elsewhere (model_signing
    # --signature); in a package it can never match, since the signature entry is not hashed.
    return None


def ignore_path_problem(entry: str) -> str | None:
    """Why an ignore path is unusable (spec 6.2.1: relative, '/'-separated, no '..'), or None.

    An empty or "." entry would leave the whole model unchecked for added files.
    """
    if entry.startswith("/") or "\\" in entry:
        return "is not a relative '/'-separated path"
    parts = [part for part in entry.split("/") if part not in ("", ".")]
    if not parts:
        return "names the whole model"
    if ".." in parts:
        return "has a '..' component"
    return None


def signing_method(material: dict, source: str | None = None) -> str:
    """The OMS signing method a bundle's verificationMaterial implies (one of its content fields)."""
    found = sorted({_METHOD_BY_MATERIAL[k] for k in material if k in _METHOD_BY_MATERIAL})
    if len(found) != 1:
        wanted = ", ".join(sorted(_METHOD_BY_MATERIAL))
        raise SignatureError(f"verificationMaterial must hold exactly one of {wanted}"
                             + (f"; it holds {len(found)}" if found else ""), path=source)
    return found[0]


def check_resources(resources: Mapping[str, str]) -> None:
    """Refuse (InvalidArgument) names or digests that a verifier would refuse; signing never emits them."""
    for name, digest in resources.items():
        problem = resource_name_problem(name)
        if problem:
            raise InvalidArgument(problem)
        if not is_sha256_hex(digest):
            raise InvalidArgument(f"digest of {name!r} is not 64 lowercase hex characters")


def build_statement(model_name: str, resources: Mapping[str, str],
                    ignore_paths: Iterable[str] = IGNORE_PATHS) -> dict:
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
                "ignore_paths": list(ignore_paths),
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
    by_size: dict[int, type[hashes.HashAlgorithm]] = {256: hashes.SHA256, 384: hashes.SHA384, 521: hashes.SHA512}
    if curve.key_size not in by_size:
        raise BadKey(f"unsupported curve {curve.name}")
    return by_size[curve.key_size]()


def bundle_bytes(payload: bytes, signature: bytes, hint: str) -> bytes:
    """The Sigstore bundle (v0.3 JSON, compact) around one DSSE signature of ``payload``."""
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": hint},
            "tlogEntries": [],
        },
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}],
        },
    }
    return json.dumps(bundle, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def certificate_bundle_bytes(payload: bytes, signature: bytes, chain_der: Iterable[bytes]) -> bytes:
    """The certificate method's bundle: the signing certificate first, then the chain the signer gave."""
    certificates = [{"rawBytes": base64.b64encode(der).decode("ascii")} for der in chain_der]
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"x509CertificateChain": {"certificates": certificates}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}],
        },
    }
    return json.dumps(bundle, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# --- parsing (untrusted bytes) ------------------------------------------------------------


@dataclass(frozen=True)
class SignedManifest:
    model_name: str
    resources: dict[str, str]
    signer_fingerprint: str
    verified: bool
    ignore_paths: list[str] = field(default_factory=list)
    # METHOD_KEY, METHOD_CERTIFICATE or METHOD_SIGSTORE, and who signed, in words (the
    # certificate's subject and issuer, or the Sigstore identity and its OIDC issuer).
    method: str = METHOD_KEY
    signer: str = ""


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str
    signature: bytes
    hint: str
    method: str = METHOD_KEY
    # DER certificates, signing certificate first (certificate method only).
    certificates: tuple[bytes, ...] = ()


# --- bundle and envelope ----------------------------------------------------------------


def parse_envelope(bundle: bytes, source: str) -> Envelope:
    if not isinstance(bundle, (bytes, bytearray, memoryview)):
        raise SignatureError("bundle is not bytes", path=source)
    if len(bundle) > MAX_BUNDLE_BYTES:
        raise SignatureError(f"is larger than {MAX_BUNDLE_BYTES // (1024 * 1024)} MiB: not a signature", path=source)
    doc = load_strict_json(bytes(bundle), what="bundle", error=SignatureError, path=source)
    where = _Where(source)

    where.object(doc, "bundle", required={"mediaType", "verificationMaterial", "dsseEnvelope"})
    where.exact(doc["mediaType"], BUNDLE_MEDIA_TYPE, "mediaType")

    material = doc["verificationMaterial"]
    where.object(material, "verificationMaterial", allow_extra=True)
    signing_method(material, source)  # exactly one of publicKey, x509CertificateChain, certificate
    method, certificates = _material_method(material, source)
    if method != METHOD_KEY:
        return _dsse(doc["dsseEnvelope"], where, source, "", method, certificates)
    # timestampVerificationData is not applicable to the key method: accepted and ignored (spec 4.1).
    where.object(material, "verificationMaterial", required={"publicKey"},
                 optional={"tlogEntries", "timestampVerificationData"})
    tlog = material.get("tlogEntries", [])
    if not isinstance(tlog, list) or tlog:
        raise SignatureError("verificationMaterial.tlogEntries must be absent or empty for the key method",
                             path=source)
    hint = _public_key_hint(material["publicKey"], where)

    return _dsse(doc["dsseEnvelope"], where, source, hint, METHOD_KEY, ())


def _material_method(material: Any, source: str) -> tuple[str, tuple[bytes, ...]]:
    """Which method signed (key, certificate or Sigstore) and, for the certificate method, its chain."""
    if not isinstance(material, dict):
        raise SignatureError("verificationMaterial is not a JSON object", path=source)
    tlog = material.get("tlogEntries")
    if "certificate" in material or (isinstance(tlog, list) and tlog):
        # Fulcio certificate, tlog entries, timestamps: sigstore-python checks all of it.
        return METHOD_SIGSTORE, ()
    if "x509CertificateChain" not in material:
        return METHOD_KEY, ()
    where = _Where(source)
    where.object(material, "verificationMaterial", required={"x509CertificateChain"},
                 optional={"tlogEntries", "timestampVerificationData"})
    if not isinstance(tlog, (list, type(None))):
        raise SignatureError("verificationMaterial.tlogEntries is not a list", path=source)
    chain = material["x509CertificateChain"]
    where.object(chain, "verificationMaterial.x509CertificateChain", required={"certificates"})
    listed = chain["certificates"]
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_CHAIN_CERTIFICATES:
        raise SignatureError(f"verificationMaterial.x509CertificateChain.certificates must hold 1 to "
                             f"{MAX_CHAIN_CERTIFICATES} certificates", path=source)
    certificates = []
    for index, entry in enumerate(listed):
        label = f"verificationMaterial.x509CertificateChain.certificates[{index}]"
        where.object(entry, label, required={"rawBytes"})
        der = _strict_base64(entry["rawBytes"], f"{label}.rawBytes", source)
        if not der:
            raise SignatureError(f"{label}.rawBytes is empty", path=source)
        certificates.append(der)
    return METHOD_CERTIFICATE, tuple(certificates)


def _dsse(envelope: Any, where: _Where, source: str, hint: str, method: str,
          certificates: tuple[bytes, ...]) -> Envelope:
    where.object(envelope, "dsseEnvelope", required={"payload", "payloadType", "signatures"})
    where.exact(envelope["payloadType"], PAYLOAD_TYPE, "dsseEnvelope.payloadType")
    signatures = envelope["signatures"]
    if not isinstance(signatures, list) or len(signatures) != 1:
        raise SignatureError("dsseEnvelope.signatures must hold exactly one signature", path=source)
    entry = signatures[0]
    where.object(entry, "dsseEnvelope.signatures[0]", required={"sig"}, optional={"keyid"})
    # keyid is unsigned and unused (spec 4.1: absent, "" and null are all accepted); only its type is checked.
    keyid = entry.get("keyid")
    if keyid is not None:
        where.text(keyid, "dsseEnvelope.signatures[0].keyid")
    payload = _strict_base64(envelope["payload"], "dsseEnvelope.payload", source)
    signature = _strict_base64(entry["sig"], "dsseEnvelope.signatures[0].sig", source)
    if not signature:
        raise SignatureError("dsseEnvelope.signatures[0].sig is empty", path=source)
    return Envelope(payload, envelope["payloadType"], signature, hint, method, certificates)


# --- statement --------------------------------------------------------------------------


def refuse_pre_1_0(payload: bytes, source: str) -> None:
    """Refuse model_signing 0.2's format by name, before its signature fails as if altered.

    Its signatures cover ``DSSEV1 ... b'<payload repr>'`` hashed with SHA-256 whatever the curve,
    and its statement lists digests in another layout: it is no OMS v1.0 signature."""
    try:
        doc = load_strict_json(payload, what="signed statement", error=SignatureError, path=source)
    except SignatureError:
        return  # parse_statement says what is wrong with it, once the signature is checked
    if isinstance(doc, dict) and doc.get("predicateType") == PREDICATE_TYPE_V0_2:
        raise SignatureError(f"signed in model_signing 0.2's format (predicateType {PREDICATE_TYPE_V0_2}), which "
                             "predates OpenSSF Model Signing v1.0: nnseal verifies v1.0 signatures (model_signing "
                             "0.3.1 and later)", path=source)


def parse_statement(payload: bytes, source: str) -> tuple[str, dict[str, str], list[str]]:
    doc = load_strict_json(payload, what="signed statement", error=SignatureError, path=source)
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
        raise SignatureError(f"serialization method {show(serialization['method'])} is not supported; "
                             f"nnseal verifies method {SERIALIZATION_METHOD!r}", path=source)
    if serialization["hash_type"] != HASH_TYPE:
        raise SignatureError(f"hash type {show(serialization['hash_type'])} is not supported; "
                             f"nnseal verifies {HASH_TYPE!r}", path=source)
    if not isinstance(serialization["allow_symlinks"], bool):
        raise SignatureError("statement predicate.serialization.allow_symlinks is not a boolean", path=source)
    ignore_paths = serialization.get("ignore_paths", [])
    if not isinstance(ignore_paths, list) or len(ignore_paths) > MAX_RESOURCES:
        raise SignatureError("statement predicate.serialization.ignore_paths is not a list", path=source)
    for index, entry in enumerate(ignore_paths):
        where.text(entry, f"predicate.serialization.ignore_paths[{index}]")
        problem = ignore_path_problem(entry)
        if problem:
            raise SignatureError(f"statement predicate.serialization.ignore_paths[{index}] {show(entry)}: {problem}",
                                 path=source)

    resources_list = predicate["resources"]
    if not isinstance(resources_list, list) or len(resources_list) > MAX_RESOURCES:
        raise SignatureError(f"statement predicate.resources is not a list of at most {MAX_RESOURCES}", path=source)
    resources: dict[str, str] = {}
    folded: dict[str, str] = {}
    for index, resource in enumerate(resources_list):
        label = f"predicate.resources[{index}]"
        # Spec 5.2.1: other resource descriptor fields (uri, annotations, ...) are ignored.
        where.object(resource, label, required={"name", "algorithm", "digest"}, allow_extra=True)
        name = resource["name"]
        # model_signing before 1.1 names the one file of a single-file model "." (its path relative to itself).
        problem = None if name == SINGLE_FILE_NAME and len(resources_list) == 1 else resource_name_problem(name)
        if problem:
            raise SignatureError(f"statement {problem}", path=source)
        if resource["algorithm"] != HASH_TYPE:
            raise SignatureError(f"statement resource {show(name)} uses algorithm {show(resource['algorithm'])}, "
                                 f"not {HASH_TYPE!r}", path=source)
        digest = where.hex64(resource["digest"], f"{label}.digest")
        if name in resources:
            raise SignatureError(f"statement lists resource {show(name)} twice", path=source)
        key = collision_key(name)
        if key in folded:
            raise SignatureError(f"statement resources {show(folded[key])} and {show(name)} collide on "
                                 "case-insensitive file systems", path=source)
        folded[key] = name
        resources[name] = digest

    # model_signing hashes the resources in the order listed (its signer lists them sorted).
    computed = root_digest_in_order(resources.values())
    if computed != subject_digest:
        raise SignatureError(f"statement is inconsistent: subject digest {subject_digest} but the resources "
                             f"hash to {computed}", path=source)
    return model_name, resources, list(ignore_paths)


def _public_key_hint(public_key: Any, where: _Where) -> str:
    """The signer's fingerprint as the bundle states it (unsigned: display and "unknown signer" only).

    model_signing 1.1+ writes ``hint``; 0.3.1-1.0.x wrote ``rawBytes`` (the base64 PEM) and
    ``keyDetails`` instead (spec 11.2), from which the same fingerprint is computed.
    """
    where.object(public_key, "verificationMaterial.publicKey", optional={"hint", "rawBytes", "keyDetails"})
    hint = public_key.get("hint")
    if hint:
        if not is_sha256_hex(hint):
            where.fail("verificationMaterial.publicKey.hint is not a 64-hex-digit key fingerprint")
        return hint
    if hint is not None and not isinstance(hint, str):
        where.fail("verificationMaterial.publicKey.hint is not a string")
    raw = public_key.get("rawBytes")
    if raw is None:
        return ""
    pem = _strict_base64(raw, "verificationMaterial.publicKey.rawBytes", where.source)
    from nnseal.format.keys import fingerprint, parse_public_key

    key = parse_public_key(pem)
    return fingerprint(key) if key is not None else ""


# --- strict parsing helpers -------------------------------------------------------------


class _Where:
    """Shape checks that raise SignatureError naming the field."""

    def __init__(self, source: str, prefix: str = ""):
        self.source = source
        self.prefix = prefix

    def fail(self, text: str) -> NoReturn:
        raise SignatureError(f"{self.prefix}{text}", path=self.source)

    def object(self, value: Any, label: str, *, required: frozenset[str] | set[str] = frozenset(),
               optional: frozenset[str] | set[str] = frozenset(), allow_extra: bool = False) -> None:
        shown = label or "top level"
        if not isinstance(value, dict):
            self.fail(f"{shown} is not a JSON object")
        missing = sorted(required - value.keys())
        if missing:
            self.fail(f"{shown} lacks {', '.join(missing)}")
        extra = sorted(value.keys() - required - optional)
        if extra and not allow_extra:
            self.fail(f"{shown} has unexpected field(s) {', '.join(show(k) for k in extra[:5])}")

    def exact(self, value: Any, expected: str, label: str) -> None:
        if value != expected:
            self.fail(f"{label} is {show(value)}, expected {expected!r}")

    def text(self, value: Any, label: str) -> str:
        if not isinstance(value, str) or len(value) > MAX_SHORT_TEXT:
            self.fail(f"{label} is not a string of at most {MAX_SHORT_TEXT} characters")
        return value

    def hex64(self, value: Any, label: str) -> str:
        if not is_sha256_hex(value):
            self.fail(f"{label} is not a sha256 digest (64 lowercase hex characters)")
        return value


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
