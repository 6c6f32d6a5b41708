"""Verify model.sig (OpenSSF Model Signing v1.0) against trusted keys, CAs or Sigstore identities.

The bundle's verification material picks the method: a key hint (key method, here), an
X.509 chain (certificate method, ``verify/certificate.py``) or a Fulcio certificate with
transparency-log entries (Sigstore, ``verify/sigstore_bundle.py``, via sigstore-python).

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
    METHOD_CERTIFICATE,
    METHOD_KEY,
    METHOD_SIGSTORE,
    SIGNATURE_NAME,
    Envelope,
    SignedManifest,
    hash_for_curve,
    pae,
    parse_envelope,
    parse_statement,
    refuse_pre_1_0,
)
from nnseal.format.trust import TrustAnchors


def read_bundle_unverified(bundle: bytes, *, source: str = SIGNATURE_NAME) -> SignedManifest:
    """Parse and shape-check a bundle for display; the signature is NOT checked (verified=False)."""
    envelope = parse_envelope(bundle, source)
    model_name, resources, ignore_paths = parse_statement(envelope.payload, source)
    signer_fingerprint, signer = envelope.hint, ""
    if envelope.method == METHOD_CERTIFICATE:
        from nnseal.format.trust import certificate_fingerprint
        from nnseal.verify.certificate import describe_certificate, load_chain

        leaf = load_chain(envelope.certificates[:1], source)[0]
        signer_fingerprint, signer = certificate_fingerprint(leaf), describe_certificate(leaf)
    elif envelope.method == METHOD_SIGSTORE:
        signer = "a Sigstore (keyless) certificate, identity not checked"
    return SignedManifest(model_name, resources, signer_fingerprint, False, ignore_paths, envelope.method, signer)


def verify_bundle(bundle: bytes, trusted_keys: Sequence[ec.EllipticCurvePublicKey], *,
                  anchors: TrustAnchors | None = None, source: str = SIGNATURE_NAME) -> SignedManifest:
    """Check the bundle's signature against the trusted keys (key method), the trusted CAs
    (certificate method) or the trusted Sigstore identities, and return what it signs.

    Raises UntrustedSigner when the signer is not trusted, SignatureError for everything else
    that is wrong.
    """
    anchors = anchors or TrustAnchors()
    envelope = parse_envelope(bundle, source)
    refuse_pre_1_0(envelope.payload, source)
    if envelope.method == METHOD_CERTIFICATE:
        from nnseal.verify.certificate import verify_certificate_chain

        certified = verify_certificate_chain(envelope.certificates, anchors.cas,
                                             validation_time=anchors.validation_time, source=source)
        _check_signature(envelope, certified.public_key, source, who=certified.description)
        fingerprint_, signer = certified.fingerprint, certified.description
        payload = envelope.payload
    elif envelope.method == METHOD_SIGSTORE:
        from nnseal.verify.sigstore_bundle import verify_sigstore_bundle

        verified = verify_sigstore_bundle(bytes(bundle), anchors, source=source)
        fingerprint_, signer, payload = verified.fingerprint, verified.description, verified.payload
    else:
        fingerprint_ = _verifying_key(envelope, trusted_keys, source)
        signer, payload = f"key {fingerprint_}", envelope.payload
    model_name, resources, ignore_paths = parse_statement(payload, source)
    return SignedManifest(model_name, resources, fingerprint_, True, ignore_paths, envelope.method or METHOD_KEY,
                          signer)


def _check_signature(envelope: Envelope, key: ec.EllipticCurvePublicKey, source: str, *, who: str) -> None:
    try:
        key.verify(envelope.signature, pae(envelope.payload_type, envelope.payload),
                   ec.ECDSA(hash_for_curve(key.curve)))
    except InvalidSignature:
        raise SignatureError(f"signature does not verify with the key of {who}: the signature or the signed "
                             "statement was altered", path=source) from None


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


