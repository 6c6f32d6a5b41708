"""A small X.509 PKI built in code for the certificate signing method's tests.

``build_pki`` returns a root CA, an intermediate CA, a good code-signing leaf and one bad leaf
per way a chain can be wrong (one generator per refusal, named after it): expired, not yet
valid, wrong extended key usage, issued by a certificate that is not a CA, chained to another
root, and (for the missing-intermediate refusal) the good leaf without its intermediate.
Everything is ECDSA P-256, so model_signing accepts the leaf keys too.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
DAY = datetime.timedelta(days=1)
SIGNER_EMAIL = "release@example.org"
SIGNER_CN = "nnseal test signer"


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nnseal tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject: str, issuer: Issued | None, *, ca: bool, start: datetime.datetime = NOW - DAY,
           end: datetime.datetime = NOW + 30 * DAY, eku: list | None = None, ku_sign: bool = True,
           email: str | None = None) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_name = issuer.cert.subject if issuer else _name(subject)
    signing_key = issuer.key if issuer else key
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
                              critical=False))
    if ca:
        builder = (builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=True, crl_sign=True, encipher_only=False,
                                                decipher_only=False), critical=True))
    else:
        builder = (builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=ku_sign, content_commitment=False,
                                                key_encipherment=not ku_sign, data_encipherment=False,
                                                key_agreement=False, key_cert_sign=False, crl_sign=False,
                                                encipher_only=False, decipher_only=False), critical=True))
        if eku is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        if email:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
    return Issued(builder.sign(signing_key, hashes.SHA256()), key)


def _leaf(issuer: Issued, **kwargs) -> Issued:
    kwargs.setdefault("eku", [ExtendedKeyUsageOID.CODE_SIGNING])
    return _issue(SIGNER_CN, issuer, ca=False, email=SIGNER_EMAIL, **kwargs)


def expired_leaf(intermediate: Issued) -> Issued:
    return _leaf(intermediate, start=NOW - 30 * DAY, end=NOW - DAY)


def not_yet_valid_leaf(intermediate: Issued) -> Issued:
    return _leaf(intermediate, start=NOW + DAY, end=NOW + 30 * DAY)


def wrong_eku_leaf(intermediate: Issued) -> Issued:
    """A TLS server certificate: no digitalSignature, EKU serverAuth only."""
    return _leaf(intermediate, eku=[ExtendedKeyUsageOID.SERVER_AUTH], ku_sign=False)


def not_a_ca_intermediate(root: Issued) -> tuple[Issued, Issued]:
    """A leaf issued by a certificate whose BasicConstraints say it is not a CA."""
    fake_ca = _issue("nnseal test not-a-CA", root, ca=False, eku=[ExtendedKeyUsageOID.CODE_SIGNING])
    return fake_ca, _leaf(fake_ca)


def other_root_leaf() -> tuple[Issued, Issued, Issued]:
    other_root = _issue("nnseal other root", None, ca=True)
    other_intermediate = _issue("nnseal other intermediate", other_root, ca=True)
    return other_root, other_intermediate, _leaf(other_intermediate)


@dataclass
class Pki:
    root: Issued
    intermediate: Issued
    leaf: Issued

    def write(self, folder: Path, leaf: Issued | None = None, chain: list[Issued] | None = None) -> dict[str, Path]:
        """root.pem, leaf.pem, leaf.key and chain.pem (the intermediate unless ``chain`` says otherwise)."""
        folder.mkdir(parents=True, exist_ok=True)
        leaf = leaf or self.leaf
        chain = [self.intermediate] if chain is None else chain
        paths = {"root": folder / "root.pem", "leaf": folder / "leaf.pem", "key": folder / "leaf.key",
                 "chain": folder / "chain.pem"}
        paths["root"].write_bytes(self.root.pem())
        paths["leaf"].write_bytes(leaf.pem())
        paths["key"].write_bytes(leaf.key_pem())
        paths["chain"].write_bytes(b"".join(c.pem() for c in chain))
        return paths


def build_pki() -> Pki:
    root = _issue("nnseal test root", None, ca=True, start=NOW - 10 * DAY, end=NOW + 3650 * DAY)
    intermediate = _issue("nnseal test intermediate", root, ca=True, start=NOW - 10 * DAY, end=NOW + 365 * DAY)
    return Pki(root, intermediate, _leaf(intermediate))
