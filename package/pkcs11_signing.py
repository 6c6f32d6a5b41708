"""Sign with an ECDSA key that stays in a PKCS#11 token (HSM, smart card, SoftHSM).

``open_pkcs11_key(uri)`` returns an object that behaves as cryptography's
``EllipticCurvePrivateKey`` for what signing needs (``public_key``, ``curve``, ``sign``), so
the key and certificate methods use it unchanged; the private key is never read out. The
binding is PyKCS11, as model_signing's own PKCS#11 signer uses; it is the optional extra
``nnseal[pkcs11]`` and imported only here, only when asked for.

The URI is RFC 7512's: path attributes ``token``, ``object`` (the key's label), ``id``
(percent-encoded CKA_ID), ``slot-id``; query attributes ``module-path`` (the PKCS#11 library)
and ``pin-value``. A URI that names no module, or a key by neither label nor id, is refused.
PyKCS11 fails (TypeError in C_Login) in a process that loaded another SWIG module of the same
runtime first, such as SimpleITK: sign in a process that has not imported nnU-Net's readers.
Torch-free.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from nnseal.errors import BadKey, EnvironmentProblem, InvalidArgument
from nnseal.format.keys import SUPPORTED_CURVES
from nnseal.format.oms import hash_for_curve

_PATH_ATTRIBUTES = {"token", "object", "id", "slot-id", "type", "manufacturer", "model", "serial",
                    "library-manufacturer", "library-description", "library-version"}
_QUERY_ATTRIBUTES = {"module-path", "module-name", "pin-value", "pin-source"}


@dataclass(frozen=True)
class Pkcs11Uri:
    token: str | None
    label: str | None
    key_id: bytes | None
    slot_id: int | None
    module_path: str
    pin: str | None


def parse_pkcs11_uri(uri: str) -> Pkcs11Uri:
    """The attributes nnseal uses from an RFC 7512 URI; unknown or repeated attributes are refused."""
    if not uri.startswith("pkcs11:"):
        raise InvalidArgument(f"{uri!r} is not a PKCS#11 URI (it must start with 'pkcs11:')")
    path, _, query = uri[len("pkcs11:"):].partition("?")
    values: dict[str, bytes] = {}
    for part, allowed in ((path, _PATH_ATTRIBUTES), (query, _QUERY_ATTRIBUTES)):
        separator = ";" if part is path else "&"
        for item in filter(None, part.split(separator)):
            name, equals, value = item.partition("=")
            if not equals or name not in allowed or name in values:
                raise InvalidArgument(f"PKCS#11 URI attribute {name!r} is unknown, misplaced or repeated")
            values[name] = unquote_to_bytes(value)
    text = {k: v.decode("utf-8", "strict") for k, v in values.items() if k != "id"}
    if "module-path" not in text:
        raise InvalidArgument("the PKCS#11 URI must name its library with module-path=...")
    if "object" not in text and "id" not in values:
        raise InvalidArgument("the PKCS#11 URI must name the key with object=LABEL or id=ID")
    if "pin-source" in text:
        raise InvalidArgument("pin-source is not supported; give pin-value")
    slot = text.get("slot-id")
    if slot is not None and not slot.isdigit():
        raise InvalidArgument(f"slot-id {slot!r} is not a number")
    return Pkcs11Uri(text.get("token"), text.get("object"), values.get("id"), int(slot) if slot else None,
                     text["module-path"], text.get("pin-value"))


def _binding():
    try:
        import PyKCS11  # the optional extra nnseal[pkcs11]
    except ImportError:
        raise EnvironmentProblem("signing with a PKCS#11 token needs PyKCS11: pip install 'nnseal[pkcs11]'") \
            from None
    return PyKCS11


def open_pkcs11_key(uri: str) -> Pkcs11PrivateKey:
    """Log in to the token the URI names and find its EC private key and the matching public key."""
    pkcs = _binding()
    parsed = parse_pkcs11_uri(uri)
    library = pkcs.PyKCS11Lib()
    try:
        library.load(parsed.module_path)
    except pkcs.PyKCS11Error as err:
        raise EnvironmentProblem(f"cannot load the PKCS#11 library: {err}", path=parsed.module_path) from None
    session = None
    try:
        for slot in library.getSlotList(tokenPresent=True):
            if parsed.slot_id is not None and slot != parsed.slot_id:
                continue
            if parsed.token is not None and library.getTokenInfo(slot).label.strip() != parsed.token:
                continue
            session = library.openSession(slot, pkcs.CKF_SERIAL_SESSION)
            break
        if session is None:
            raise EnvironmentProblem(f"no PKCS#11 token {parsed.token or ''!r} found", path=parsed.module_path)
        if parsed.pin is not None:
            session.login(parsed.pin)
        private = _find(pkcs, session, pkcs.CKO_PRIVATE_KEY, parsed)
        public = _find(pkcs, session, pkcs.CKO_PUBLIC_KEY, parsed)
        params, point = session.getAttributeValue(public, [pkcs.CKA_EC_PARAMS, pkcs.CKA_EC_POINT])
    except pkcs.PyKCS11Error as err:
        raise EnvironmentProblem(f"PKCS#11 token: {err}", path=parsed.module_path) from None
    public_key = _public_key(bytes(params), bytes(point))
    return Pkcs11PrivateKey(session, private, public_key, library)


def _find(pkcs, session, object_class: int, parsed: Pkcs11Uri):
    template = [(pkcs.CKA_CLASS, object_class), (pkcs.CKA_KEY_TYPE, pkcs.CKK_EC)]
    if parsed.label is not None:
        template.append((pkcs.CKA_LABEL, parsed.label))
    if parsed.key_id is not None:
        template.append((pkcs.CKA_ID, tuple(parsed.key_id)))
    found = session.findObjects(template)
    kind = "private" if object_class == pkcs.CKO_PRIVATE_KEY else "public"
    if len(found) != 1:
        raise BadKey(f"the PKCS#11 token holds {len(found)} EC {kind} keys matching the URI, not one")
    return found[0]


def _public_key(params: bytes, point: bytes) -> ec.EllipticCurvePublicKey:
    """CKA_EC_PARAMS (a named-curve OID, DER) and CKA_EC_POINT (a DER OCTET STRING) as a key."""
    from cryptography.hazmat.primitives.asymmetric.ec import get_curve_for_oid
    from cryptography.x509 import ObjectIdentifier

    try:
        oid = _der_oid(params)
        curve = get_curve_for_oid(ObjectIdentifier(oid))
        raw = _der_octet_string(point)
        key = ec.EllipticCurvePublicKey.from_encoded_point(curve(), raw)
    except (ValueError, LookupError, IndexError):
        raise BadKey("the PKCS#11 token's public key is not an EC key nnseal can read") from None
    if key.curve.name not in SUPPORTED_CURVES:
        raise BadKey(f"the PKCS#11 key is on curve {key.curve.name}; nnseal signs with P-256/384/521")
    return key


def _der_length(data: bytes, at: int) -> tuple[int, int]:
    first = data[at]
    if first < 0x80:
        return first, at + 1
    count = first & 0x7F
    return int.from_bytes(data[at + 1:at + 1 + count], "big"), at + 1 + count


def _der_oid(data: bytes) -> str:
    if data[0] != 0x06:
        raise ValueError("not a named curve")
    length, start = _der_length(data, 1)
    body = data[start:start + length]
    arcs = [body[0] // 40, body[0] % 40]
    value = 0
    for byte in body[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    return ".".join(map(str, arcs))


def _der_octet_string(data: bytes) -> bytes:
    """The point inside a DER OCTET STRING; some tokens give the bare point instead."""
    if len(data) > 2 and data[0] == 0x04:
        length, start = _der_length(data, 1)
        if start + length == len(data) and data[start:start + 1] == b"\x04":
            return data[start:]
    return data


class Pkcs11PrivateKey(ec.EllipticCurvePrivateKey):
    """A token-held EC key: it signs (CKM_ECDSA over a digest computed here) and does nothing else."""

    def __init__(self, session, handle, public_key: ec.EllipticCurvePublicKey, library):
        self._session, self._handle, self._public_key = session, handle, public_key
        self._library = library  # unloading the library closes the session: keep it alive with the key

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public_key

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public_key.curve

    @property
    def key_size(self) -> int:
        return self._public_key.curve.key_size

    def sign(self, data, signature_algorithm) -> bytes:
        pkcs = _binding()
        algorithm = signature_algorithm.algorithm
        if not isinstance(algorithm, type(hash_for_curve(self.curve))):
            raise BadKey(f"the PKCS#11 key signs with {hash_for_curve(self.curve).name} only")
        hasher = hashes.Hash(algorithm)
        hasher.update(bytes(data))
        try:
            raw = bytes(self._session.sign(self._handle, hasher.finalize(), pkcs.Mechanism(pkcs.CKM_ECDSA, None)))
        except pkcs.PyKCS11Error as err:
            raise EnvironmentProblem(f"the PKCS#11 token refused to sign: {err}") from None
        half = len(raw) // 2
        # PKCS#11 gives r || s; OMS (like X.509) wants DER.
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def exchange(self, algorithm, peer_public_key) -> bytes:
        raise BadKey("a PKCS#11 key in nnseal only signs")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise BadKey("a PKCS#11 private key never leaves its token")

    def private_bytes(self, encoding, format, encryption_algorithm) -> bytes:  # noqa: A002 (cryptography's name)
        raise BadKey("a PKCS#11 private key never leaves its token")

    def __copy__(self) -> Pkcs11PrivateKey:
        return self

    def __deepcopy__(self, memo) -> Pkcs11PrivateKey:
        return self

    def __repr__(self) -> str:
        spki = self._public_key.public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"<Pkcs11PrivateKey {hashlib.sha256(spki).hexdigest()[:16]}>"
