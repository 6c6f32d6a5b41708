"""Sign an OpenSSF Model Signing statement with an ECDSA key: the OMS key method, or the
certificate method when a signing certificate (and its chain) is given.

The private key may live in a PKCS#11 token (``package/pkcs11_signing.py`` gives a key object
that signs there); nothing here tells the two apart.

Signatures are deterministic (RFC 6979) where cryptography and OpenSSL allow it, so the same
inputs and key give the same package bytes. The statement and bundle format is
``nnseal.format.oms``'s. Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nnseal.errors import BadKey, EnvironmentProblem, from_os_error
from nnseal.format.keys import fingerprint
from nnseal.format.limits import MAX_KEY_FILE_BYTES
from nnseal.format.oms import (
    IGNORE_PATHS,
    MAX_CHAIN_CERTIFICATES,
    PAYLOAD_TYPE,
    build_statement,
    bundle_bytes,
    certificate_bundle_bytes,
    hash_for_curve,
    pae,
    statement_bytes,
)


def sign_statement(statement: dict, private_key: ec.EllipticCurvePrivateKey,
                   certificates: Sequence[x509.Certificate] = ()) -> bytes:
    """Sign any statement into Sigstore bundle JSON bytes (tests use it to build altered statements).

    With ``certificates`` (the signing certificate first, then its chain) the bundle is the
    certificate method's; the signing certificate must certify ``private_key``'s public key.
    """
    payload = statement_bytes(statement)
    if certificates:
        check_certificate_matches(certificates[0], private_key)
    signature = _ecdsa_sign(private_key, pae(PAYLOAD_TYPE, payload))
    if certificates:
        return certificate_bundle_bytes(payload, signature,
                                        [c.public_bytes(serialization.Encoding.DER) for c in certificates])
    return bundle_bytes(payload, signature, fingerprint(private_key.public_key()))


def sign_manifest(model_name: str, resources: Mapping[str, str], private_key: ec.EllipticCurvePrivateKey,
                  ignore_paths: Iterable[str] = IGNORE_PATHS,
                  certificates: Sequence[x509.Certificate] = ()) -> bytes:
    """model.sig for `resources`: Sigstore bundle JSON bytes, identical for identical inputs and key."""
    return sign_statement(build_statement(model_name, resources, ignore_paths), private_key, certificates)


def load_signing_certificates(certificate: str | os.PathLike | x509.Certificate,
                              chain: Sequence[str | os.PathLike | x509.Certificate] = ()) -> list[x509.Certificate]:
    """The signing certificate, then every certificate of the chain files (PEM), in order."""
    result = [certificate if isinstance(certificate, x509.Certificate) else _read_certificates(certificate)[0]]
    for item in chain:
        result.extend([item] if isinstance(item, x509.Certificate) else _read_certificates(item))
    if len(result) > MAX_CHAIN_CERTIFICATES:
        raise BadKey(f"a signing certificate chain holds at most {MAX_CHAIN_CERTIFICATES} certificates")
    return result


def check_certificate_matches(certificate: x509.Certificate, private_key: ec.EllipticCurvePrivateKey) -> None:
    if certificate.public_key() != private_key.public_key():
        raise BadKey(f"the signing certificate ({certificate.subject.rfc4514_string()}) is not for the signing key "
                     f"{fingerprint(private_key.public_key())}")


def _read_certificates(path: str | os.PathLike) -> list[x509.Certificate]:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEY_FILE_BYTES * 4 + 1)
    except IsADirectoryError:
        raise EnvironmentProblem("is a directory, not a certificate file", path=path) from None
    except OSError as err:
        raise from_os_error(err, path) from err
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise BadKey("is not a PEM X.509 certificate file", path=path) from None
    return certificates


def _ecdsa_sign(private_key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    algorithm = hash_for_curve(private_key.curve)
    try:
        return private_key.sign(message, ec.ECDSA(algorithm, deterministic_signing=True))
    except (TypeError, UnsupportedAlgorithm):
        # Older stacks: still a valid signature, only the package bytes stop being reproducible.
        return private_key.sign(message, ec.ECDSA(algorithm))
