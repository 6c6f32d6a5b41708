"""The Sigstore (keyless) method: verify a bundle with sigstore-python, offline.

Everything Sigstore-specific (the Fulcio chain, the Rekor inclusion proof and signed entry
timestamp, SCTs, the DSSE signature) is sigstore-python's ``Verifier.verify_dsse``, against a
trusted root: the file the caller gives (a ``trusted_root`` or ``ClientTrustConfig`` JSON), or
the production root embedded in sigstore-python (read from the installed package: no TUF refresh,
no network, nothing written; a root rotated after that sigstore-python release needs a newer
sigstore-python or the caller's file). The identity
policy is the trust folder's Sigstore identities: the certificate's subjectAltName and OIDC
issuer must both match one of them. sigstore-python is the optional extra
``nnseal[sigstore]``, imported only here. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from nnseal.errors import EnvironmentProblem, Hint, SignatureError, UntrustedSigner
from nnseal.format.trust import TrustAnchors


@dataclass(frozen=True)
class SigstoreVerified:
    payload: bytes
    identity: str
    issuer: str
    fingerprint: str  # sha256 of the Fulcio certificate's DER

    @property
    def description(self) -> str:
        return f"Sigstore identity {self.identity} from {self.issuer}"


def verify_sigstore_bundle(bundle: bytes, anchors: TrustAnchors, *, source: str) -> SigstoreVerified:
    try:
        from sigstore.errors import Error as SigstoreError
        from sigstore.models import Bundle, ClientTrustConfig, TrustedRoot
        from sigstore.verify import Verifier, policy
    except ImportError:
        raise EnvironmentProblem("verifying a Sigstore signature needs sigstore-python: "
                                 "pip install 'nnseal[sigstore]'", path=source) from None
    from cryptography.hazmat.primitives import hashes

    try:
        parsed = Bundle.from_json(bundle)
    except (SigstoreError, ValueError) as err:
        raise SignatureError("verificationMaterial with a certificate or tlogEntries makes a Sigstore bundle, and "
                             f"sigstore-python refuses it: {_one_line(err)}", path=source) from None
    certificate = parsed.signing_certificate
    identity, issuer = _certificate_identity(certificate)
    fingerprint = certificate.fingerprint(hashes.SHA256()).hex()
    if not anchors.sigstore:
        raise UntrustedSigner(f"signed by Sigstore identity {identity} from {issuer}, and no Sigstore identity is "
                              "trusted", path=source, hint=Hint.TRUST_SIGSTORE, fingerprint=fingerprint)
    rules = policy.AnyOf([policy.Identity(identity=i.identity, issuer=i.issuer) for i in anchors.sigstore])
    try:
        if anchors.sigstore_trust_config is not None:
            root = _trusted_root(anchors.sigstore_trust_config, TrustedRoot, ClientTrustConfig)
        else:
            root = _embedded_production_root(TrustedRoot)
        verifier = Verifier(trusted_root=root)
    except (SigstoreError, ValueError, OSError) as err:
        raise EnvironmentProblem(f"cannot load the Sigstore trusted root: {err}",
                                 path=anchors.sigstore_trust_config) from None
    matching = [i for i in anchors.sigstore if (i.identity, i.issuer) == (identity, issuer)]
    try:
        _, payload = verifier.verify_dsse(parsed, rules)
    except SigstoreError as err:
        if not matching:
            raise UntrustedSigner(f"signed by Sigstore identity {identity} from {issuer}, which is not among the "
                                  f"{len(anchors.sigstore)} trusted Sigstore identities", path=source,
                                  hint=Hint.TRUST_SIGSTORE, fingerprint=fingerprint) from None
        raise SignatureError(f"Sigstore verification failed: {_one_line(err)}", path=source) from None
    return SigstoreVerified(payload, identity, issuer, fingerprint)


# sigstore-python ships the production TUF repository's targets in its package, one folder per
# repository named by the quoted URL. ClientTrustConfig.production(offline=True) would read them
# too, but only after copying them into the user's cache folder and preferring whatever that
# folder holds: verifying writes nothing and trusts nothing outside the installed package.
_PRODUCTION_TUF_URL = "https://tuf-repo-cdn.sigstore.dev"


def _embedded_production_root(trusted_root_type):
    from importlib import resources
    from urllib.parse import quote

    resource = resources.files("sigstore._store") / quote(_PRODUCTION_TUF_URL, safe="") / "trusted_root.json"
    if not resource.is_file():
        raise OSError(f"this sigstore-python embeds no production trusted root ({resource})")
    with resources.as_file(resource) as path:
        return trusted_root_type.from_file(str(path))


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())[:400]


def _trusted_root(path, trusted_root_type, client_config_type):
    text = path.read_text(encoding="utf-8")
    if "trustedRoot" in text and "signingConfig" in text:
        return client_config_type.from_json(text).trusted_root
    return trusted_root_type.from_file(str(path))


def _certificate_identity(certificate) -> tuple[str, str]:
    """The SAN and the OIDC issuer (Fulcio's extension 1.3.6.1.4.1.57264.1.8, else the legacy .1.1)."""
    from cryptography import x509

    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        identity = next(iter([*names.get_values_for_type(x509.RFC822Name),
                              *names.get_values_for_type(x509.UniformResourceIdentifier)]), "?")
    except x509.ExtensionNotFound:
        identity = "?"
    issuer = "?"
    for oid, der in (("1.3.6.1.4.1.57264.1.8", True), ("1.3.6.1.4.1.57264.1.1", False)):
        try:
            value = certificate.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value.value
        except x509.ExtensionNotFound:
            continue
        # .1.8 is a DER UTF8String; the legacy .1.1 is the raw text.
        issuer = value[2:].decode("utf-8", "replace") if der and len(value) > 2 else value.decode("utf-8", "replace")
        break
    return identity, issuer
