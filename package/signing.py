"""Sign an OpenSSF Model Signing statement with an ECDSA key (the OMS key method).

Signatures are deterministic (RFC 6979) where cryptography and OpenSSL allow it, so the same
inputs and key give the same package bytes. The statement and bundle format is
``nnseal.format.oms``'s. Torch-free.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec

from nnseal.format.keys import fingerprint
from nnseal.format.oms import (
    IGNORE_PATHS,
    PAYLOAD_TYPE,
    build_statement,
    bundle_bytes,
    hash_for_curve,
    pae,
    statement_bytes,
)


def sign_statement(statement: dict, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """Sign any statement into Sigstore bundle JSON bytes (tests use it to build altered statements)."""
    payload = statement_bytes(statement)
    signature = _ecdsa_sign(private_key, pae(PAYLOAD_TYPE, payload))
    return bundle_bytes(payload, signature, fingerprint(private_key.public_key()))


def sign_manifest(model_name: str, resources: Mapping[str, str], private_key: ec.EllipticCurvePrivateKey,
                  ignore_paths: Iterable[str] = IGNORE_PATHS) -> bytes:
    """model.sig for `resources`: Sigstore bundle JSON bytes, identical for identical inputs and key."""
    return sign_statement(build_statement(model_name, resources, ignore_paths), private_key)


def _ecdsa_sign(private_key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    algorithm = hash_for_curve(private_key.curve)
    try:
        return private_key.sign(message, ec.ECDSA(algorithm, deterministic_signing=True))
    except (TypeError, UnsupportedAlgorithm):
        # Older stacks: still a valid signature, only the package bytes stop being reproducible.
        return private_key.sign(message, ec.ECDSA(algorithm))
