"""Comparing a signed manifest with files on disk, for the signature tests."""

from __future__ import annotations

from collections.abc import Mapping


def resource_differences(signed: Mapping[str, str], actual: Mapping[str, str]) -> list[str]:
    """Every way the actual files differ from the signed resources (empty when they match exactly)."""
    problems = [f"{name}: not covered by the signature" for name in sorted(set(actual) - set(signed))]
    problems += [f"{name}: signed but missing" for name in sorted(set(signed) - set(actual))]
    problems += [f"{name}: sha256 differs from the signed digest"
                 for name in sorted(set(signed) & set(actual)) if signed[name] != actual[name]]
    return problems


def deterministic_signing_supported() -> bool:
    """Whether this cryptography/OpenSSL pair signs with RFC 6979 nonces (cryptography >= 43, OpenSSL >= 3.2)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    probe = ec.derive_private_key(1, ec.SECP256R1())
    try:
        probe.sign(b"probe", ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    except (TypeError, UnsupportedAlgorithm):
        return False
    return True
