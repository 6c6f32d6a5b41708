"""Sign an OMS statement by the Sigstore (keyless) method, as `model_signing sign sigstore` does.

Everything Sigstore-specific is sigstore-python's (the optional extra ``nnseal[sigstore]``,
imported only here): the trust configuration (production or staging, refreshed over TUF), the
OIDC identity token (given, an ambient CI credential, or the browser sign-in), the ephemeral key
and its Fulcio certificate, the Rekor entry, and the bundle (v0.3, a DSSE envelope carrying the
in-toto statement, the shape model_signing writes). nnseal only hands it the statement, the same
bytes the key method signs (``nnseal.format.oms.statement_bytes``).

It needs the network (the TUF repository, Fulcio, Rekor, for the browser sign-in the OIDC
issuer) and is not tested against the real services here: only its wiring is. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nnseal.errors import BadKey, EnvironmentProblem, Hint, InvalidArgument, NetworkError
from nnseal.format.oms import statement_bytes

__all__ = ["SigstoreSigner", "open_sigstore_signer"]

_INSTALL = "pip install 'nnseal[sigstore]'"


@dataclass
class SigstoreSigner:
    """A signing context and an identity token, both obtained before anything is written."""

    context: Any  # sigstore.sign.SigningContext
    token: Any  # sigstore.oidc.IdentityToken
    identity: str
    issuer: str
    fingerprint: str = field(default="")  # sha256 of the last Fulcio certificate's DER, once signed

    @property
    def description(self) -> str:
        return f"Sigstore identity {self.identity} from {self.issuer}"

    def sign_statement(self, statement: dict) -> bytes:
        """Sigstore bundle JSON bytes signing ``statement`` (the key method's payload bytes)."""
        from cryptography.hazmat.primitives import hashes
        from sigstore.dsse import Statement

        payload = statement_bytes(statement)
        try:
            with self.context.signer(self.token) as signer:
                bundle = signer.sign_dsse(Statement(payload))
        except Exception as err:  # noqa: BLE001 (sigstore-python and requests raise many kinds; each is one line)
            raise _failure("signing with Sigstore", err) from None
        self.fingerprint = bundle.signing_certificate.fingerprint(hashes.SHA256()).hex()
        return bundle.to_json().encode("utf-8")


def open_sigstore_signer(identity_token: str | None = None, *, ambient: bool = True, interactive: bool = False,
                         oidc_issuer: str | None = None, staging: bool = False) -> SigstoreSigner:
    """Get the identity token and the signing context, in that order, before anything is written.

    The token is ``identity_token`` if given, else an ambient CI credential (``ambient``,
    sigstore-python's ``detect_credential``), else the browser sign-in at ``oidc_issuer`` (default:
    the trust configuration's) when ``interactive``; with none of them the call is refused before
    any network use. ``staging`` uses Sigstore's staging instance instead of production.
    """
    try:
        from sigstore.models import ClientTrustConfig
        from sigstore.oidc import IdentityToken, Issuer, detect_credential
        from sigstore.sign import SigningContext
    except ImportError:
        raise EnvironmentProblem(f"signing with Sigstore needs sigstore-python: {_INSTALL}") from None

    raw = identity_token
    if raw is None and ambient:
        try:
            raw = detect_credential()
        except Exception as err:  # noqa: BLE001
            raise _failure("detecting an ambient OIDC credential", err) from None
    if raw is None and not interactive:
        raise InvalidArgument("no Sigstore identity token: none was given, no ambient CI credential was found, "
                              "and there is no terminal for the browser sign-in", hint=Hint.IDENTITY_TOKEN)
    token = _parse_token(raw, IdentityToken) if raw is not None else None
    try:
        config = ClientTrustConfig.staging() if staging else ClientTrustConfig.production()
        if token is None:
            token = Issuer(oidc_issuer or config.signing_config.get_oidc_url()).identity_token()
        context = SigningContext.from_trust_config(config)
    except Exception as err:  # noqa: BLE001
        raise _failure("setting up Sigstore signing", err) from None
    issuer = token.federated_issuer or token.issuer
    return SigstoreSigner(context, token, str(token.identity), str(issuer))


def _parse_token(raw: str, identity_token: Any) -> Any:
    try:
        return identity_token(raw)
    except Exception as err:  # noqa: BLE001
        raise BadKey(f"the Sigstore identity token is unusable: {_one_line(err)}") from None


def _failure(doing: str, err: BaseException) -> EnvironmentProblem | BadKey:
    """Connectivity is exit 3; a service or identity provider that answers and refuses is a refusal."""
    import requests
    from sigstore.errors import NetworkError as SigstoreNetworkError
    from sigstore.errors import TUFError

    if isinstance(err, SigstoreNetworkError | TUFError | requests.ConnectionError | requests.Timeout | OSError):
        return NetworkError(f"{doing} needs the network and it failed: {_one_line(err)}")
    if isinstance(err, ImportError):
        return EnvironmentProblem(f"{doing} needs sigstore-python: {_INSTALL}")
    return BadKey(f"{doing} failed: {_one_line(err)}")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    cause = err.__cause__ or err.__context__
    if cause is not None and str(cause).strip() and str(cause) not in text:
        text += f" ({type(cause).__name__}: {' '.join(str(cause).split())})"
    elif cause is not None and not str(cause).strip():
        text += f" ({type(cause).__name__})"
    return text[:400]
