"""The OMS certificate method: verify a bundle's X.509 chain against trusted CA certificates.

Chain building and validity are cryptography's verifier (``cryptography.x509.verification``),
not code of ours: the chain must lead from the signing certificate through the intermediates
the bundle carries to one trusted CA, every certificate valid at the validation time (now,
unless the caller says otherwise), CAs checked under the Web PKI CA profile. On top of that,
the signing certificate must be usable for signing (KeyUsage digitalSignature if present,
ExtendedKeyUsage codeSigning if present, and at least one of them present), and it must match
one identity rule of the CA that anchors it: any certificate a CA issues is not enough.
Torch-free.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from nnseal.errors import Hint, SignatureError, UntrustedSigner
from nnseal.format.keys import SUPPORTED_CURVES
from nnseal.format.trust import TrustedCA, certificate_fingerprint


@dataclass(frozen=True)
class CertifiedSigner:
    public_key: ec.EllipticCurvePublicKey
    certificate: x509.Certificate
    ca: TrustedCA

    @property
    def fingerprint(self) -> str:
        return certificate_fingerprint(self.certificate)

    @property
    def description(self) -> str:
        return describe_certificate(self.certificate) + f" (trusted CA {self.ca.name!r})"


def describe_certificate(certificate: x509.Certificate) -> str:
    return (f"certificate {certificate.subject.rfc4514_string() or '(empty subject)'} "
            f"issued by {certificate.issuer.rfc4514_string() or '(empty issuer)'}")


def load_chain(certificates: Sequence[bytes], source: str) -> list[x509.Certificate]:
    chain = []
    for index, der in enumerate(certificates):
        try:
            chain.append(x509.load_der_x509_certificate(der))
        except ValueError:
            raise SignatureError(f"certificate {index} of the bundle's chain is not DER X.509", path=source) from None
    return chain


def identity_matches(rule: str, certificate: x509.Certificate) -> bool:
    kind, _, value = rule.partition(":")
    if kind == "sha256":
        return certificate_fingerprint(certificate) == value
    if kind == "subject":
        return certificate.subject.rfc4514_string() == value
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    by_kind: dict[str, type[x509.GeneralName]] = {"email": x509.RFC822Name, "uri": x509.UniformResourceIdentifier,
                                                  "dns": x509.DNSName}
    wanted = value.lower() if kind in ("email", "dns") else value
    return any((name.lower() if kind in ("email", "dns") else name) == wanted
               for name in names.get_values_for_type(by_kind[kind]))  # type: ignore[arg-type]


def _signing_use(policy, certificate: x509.Certificate, _value) -> None:
    """The leaf's KeyUsage and ExtendedKeyUsage must allow signing (a verifier callback: raise to refuse)."""
    extensions = certificate.extensions
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    try:
        extended = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        extended = None
    if usage is None and extended is None:
        raise ValueError("the signing certificate has neither KeyUsage nor ExtendedKeyUsage")
    if usage is not None and not usage.digital_signature:
        raise ValueError("the signing certificate's KeyUsage lacks digitalSignature")
    if extended is not None and ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        raise ValueError("the signing certificate's ExtendedKeyUsage lacks codeSigning")


def _leaf_policy() -> ExtensionPolicy:
    return (ExtensionPolicy.permit_all()
            .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _signing_use)
            .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _signing_use)
            # Neither present: the KeyUsage callback is still called (with None) and refuses.
            .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, _not_a_ca))


def _not_a_ca(policy, certificate: x509.Certificate, value: x509.BasicConstraints | None) -> None:
    """A CA certificate signs certificates, not models: refused, unless its KeyUsage withholds
    keyCertSign, so that it can issue nothing and is an end entity in all but name (model_signing's
    own test certificates are made so, and OpenSSL, which model_signing uses, accepts them)."""
    if value is None or not value.ca:
        return
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or usage.key_cert_sign:
        raise ValueError("the signing certificate is a CA certificate that may sign certificates (keyCertSign)")


def verify_certificate_chain(certificates: Sequence[bytes], cas: Sequence[TrustedCA], *,
                             validation_time: datetime.datetime | None = None,
                             source: str) -> CertifiedSigner:
    """The signing certificate's key, once its chain leads to a trusted CA whose identity rules it matches."""
    chain = load_chain(certificates, source)
    leaf, intermediates = chain[0], chain[1:]
    who = describe_certificate(leaf)
    if not cas:
        raise UntrustedSigner(f"signed with {who}, and no CA is trusted", path=source, hint=Hint.TRUST_CA,
                              fingerprint=certificate_fingerprint(leaf))
    when = validation_time or datetime.datetime.now(datetime.timezone.utc)
    pinned = [ca for ca in cas if any(identity_matches(rule, leaf) for rule in ca.identities)]
    if not pinned:
        raise UntrustedSigner(f"signed with {who}, which matches no identity of the {len(cas)} trusted CA(s)",
                              path=source, hint=Hint.TRUST_CA, fingerprint=certificate_fingerprint(leaf))
    reasons = []
    for ca in pinned:
        verifier = (PolicyBuilder().store(Store([ca.certificate])).time(when)
                    .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_leaf_policy())
                    .build_client_verifier())
        try:
            verified = verifier.verify(leaf, intermediates)
        except VerificationError as err:
            # cryptography appends "(encountered processing <Certificate(...)>)": the subject is said already.
            reasons.append(f"{ca.name}: {str(err).split(' (encountered processing')[0]}")
            continue
        public_key = verified.chain[0].public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name not in SUPPORTED_CURVES:
            raise SignatureError(f"{who} holds a key that is not ECDSA P-256/384/521", path=source)
        return CertifiedSigner(public_key, leaf, ca)
    raise SignatureError(f"{who} does not chain to a trusted CA at {when.strftime('%Y-%m-%dT%H:%M:%SZ')}: "
                         f"{'; '.join(reasons)}",
                         path=source)
