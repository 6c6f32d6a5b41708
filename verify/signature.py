"""Verify model.sig (OpenSSF Model Signing v1.0, key method) against trusted keys.

The bundle is parsed by ``nnseal.format.oms`` (every field checked for type and shape, JSON
with duplicate keys refused). The signature is checked against each trusted key in turn
rather than the key the bundle names: the hint is unsigned and only tells "unknown signer"
apart from "bad signature". Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from nnseal.errors import BadKey, Hint, SignatureError, UntrustedSigner
from nnseal.format.keys import SUPPORTED_CURVES, fingerprint
from nnseal.format.oms import (
    SIGNATURE_NAME,
    Envelope,
    SignedManifest,
    hash_for_curve,
    pae,
    parse_envelope,
    parse_statement,
)


def read_bundle_unverified(bundle: bytes, *, source: str = SIGNATURE_NAME) -> SignedManifest:
    """Parse and shape-check a bundle for display; the signature is NOT checked (verified=False)."""
    envelope = parse_envelope(bundle, source)
    model_name, resources, ignore_paths = parse_statement(envelope.payload, source)
    return SignedManifest(model_name, resources, envelope.hint, False, ignore_paths)


def verify_bundle(bundle: bytes, trusted_keys: Sequence[ec.EllipticCurvePublicKey], *,
                  source: str = SIGNATURE_NAME) -> SignedManifest:
    """Check the bundle's signature against the trusted keys and return what it signs.

    Raises UntrustedSigner when no trusted key verifies and the bundle names a
    signer that is not trusted, SignatureError for everything else that is wrong.
    """
    envelope = parse_envelope(bundle, source)
    signer = _verifying_key(envelope, trusted_keys, source)
    model_name, resources, ignore_paths = parse_statement(envelope.payload, source)
    return SignedManifest(model_name, resources, signer, True, ignore_paths)


# --- signature --------------------------------------------------------------------------


def _verifying_key(envelope: Envelope, trusted_keys: Sequence[ec.EllipticCurvePublicKey], source: str) -> str:
    if not trusted_keys:
        raise UntrustedSigner(f"no trusted keys to check the signature by {envelope.hint or 'an unnamed key'} "
                              "against", path=source, hint=Hint.TRUST_SIGNER, fingerprint=envelope.hint)
    message = pae(envelope.payload_type, envelope.payload)
    trusted_fingerprints = set()
    for key in trusted_keys:
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in SUPPORTED_CURVES:
            raise BadKey(f"trusted keys must be ECDSA P-256/384/521 public keys, got {type(key).__name__}")
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
    raise UntrustedSigner(f"signed by {signer}, which is not among the {len(trusted_keys)} trusted key(s)",
                          path=source, hint=Hint.TRUST_SIGNER, fingerprint=envelope.hint)


