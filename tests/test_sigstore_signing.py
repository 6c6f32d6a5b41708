"""`nnseal sign --sigstore` and `nnseal export --sigstore`: the wiring of keyless signing.

Keyless signing needs the network (TUF, Fulcio, Rekor, the OIDC issuer), which these tests do
not have: they check how nnseal drives sigstore-python (which token, which statement, what is
written, how failures read), never Sigstore itself.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import sys
import time
from contextlib import contextmanager

import pytest
from helpers import assert_one_line_error, run_cli, tree_listing
from test_json_contract import failed, one_document

# Every variable an ambient-credential detector of sigstore-python (the `id` package) looks at.
AMBIENT_VARIABLES = ["SIGSTORE_ID_TOKEN", "GITHUB_ACTIONS", "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
                     "ACTIONS_ID_TOKEN_REQUEST_URL", "GOOGLE_SERVICE_ACCOUNT_NAME", "BUILDKITE", "GITLAB_CI",
                     "SIGSTORE_ID_TOKEN", "CIRCLECI", "NNSEAL_SIGNING_KEY"]


@pytest.fixture()
def no_network(monkeypatch, tmp_path):
    """Sockets forbidden, no ambient credential, sigstore-python's TUF cache in tmp_path."""
    def forbidden(*args, **kwargs):
        raise OSError("network forbidden in this test")

    monkeypatch.setattr(socket, "create_connection", forbidden)
    monkeypatch.setattr(socket, "getaddrinfo", forbidden)
    for name in AMBIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


def fake_identity_token(issuer: str = "https://issuer.example.invalid", subject: str = "signer@example.invalid") -> str:
    """A JWT with every claim sigstore-python requires, signed with a throwaway secret: it parses
    locally; no OIDC issuer or Fulcio would accept it."""
    import jwt

    now = int(time.time())
    return jwt.encode({"iss": issuer, "sub": subject, "aud": "sigstore", "iat": now, "exp": now + 600},
                      "not-a-real-secret-" + "x" * 32, algorithm="HS256")


@pytest.fixture()
def model_copy(toy_model_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(toy_model_folder, folder)
    return folder


def test_sigstore_without_any_token_or_terminal_is_refused_before_any_network(no_network, model_copy):
    before = tree_listing(model_copy)
    result = run_cli("sign", model_copy, "--sigstore")
    assert_one_line_error(result, 2, "no Sigstore identity token", "--identity-token", "SIGSTORE_ID_TOKEN")
    assert tree_listing(model_copy) == before
    failed(run_cli("sign", model_copy, "--sigstore", "--json"), "sign", 2, "invalid_argument")
    assert tree_listing(model_copy) == before


def test_sigstore_with_a_fake_token_and_no_network_fails_in_one_line(no_network, model_copy, toy_model_folder,
                                                                     tmp_path):
    before = tree_listing(model_copy)
    result = run_cli("sign", model_copy, "--sigstore", "--identity-token", fake_identity_token())
    assert_one_line_error(result, 3, "needs the network")
    assert tree_listing(model_copy) == before
    # Also through $SIGSTORE_ID_TOKEN, and for export: nothing is written either.
    output = tmp_path / "out.zip"
    sources = tree_listing(toy_model_folder)
    result = run_cli("export", "-i", toy_model_folder, "-o", output, "--sigstore",
                     env={"SIGSTORE_ID_TOKEN": fake_identity_token()})
    assert_one_line_error(result, 3, "needs the network")
    assert not output.exists() and tree_listing(toy_model_folder) == sources
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "xdg-cache", "xdg-data"]


def test_a_malformed_identity_token_is_refused(no_network, model_copy):
    before = tree_listing(model_copy)
    result = run_cli("sign", model_copy, "--sigstore", "--identity-token", "not.a.jwt")
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "identity token is unusable" in result.stderr
    assert tree_listing(model_copy) == before


@pytest.mark.parametrize("args, needle", [
    (["--identity-token", "T"], "--identity-token is for --sigstore"),
    (["--staging"], "--staging is for --sigstore"),
    (["--sigstore", "--key", "k.pem"], "drop --key"),
    (["--sigstore", "--certificate", "c.pem"], "drop --certificate"),
])
def test_sigstore_options_are_checked(no_network, model_copy, args, needle):
    before = tree_listing(model_copy)
    extra = [] if "--sigstore" in args else ["--key", "k.pem"]
    result = run_cli("sign", model_copy, *extra, *args)
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert needle in result.stderr
    assert tree_listing(model_copy) == before


def test_without_the_extra_the_refusal_names_it(no_network, model_copy, monkeypatch):
    monkeypatch.setitem(sys.modules, "sigstore.models", None)  # import fails as if not installed
    before = tree_listing(model_copy)
    result = run_cli("sign", model_copy, "--sigstore", "--identity-token", fake_identity_token())
    assert_one_line_error(result, 3, "pip install 'nnseal[sigstore]'")
    assert tree_listing(model_copy) == before


class CapturingSigner:
    """Stands in for sigstore-python's network-facing Signer: records the in-toto Statement it is
    asked to sign and answers with a bundle-shaped JSON. Sigstore itself is not exercised."""

    def __init__(self, certificate):
        self.certificate = certificate
        self.statements: list = []

    def sign_dsse(self, statement):
        self.statements.append(statement)
        return FakeBundle(self.certificate, statement._contents)


class FakeBundle:
    def __init__(self, certificate, payload: bytes):
        self.signing_certificate = certificate
        self.payload = payload

    def to_json(self) -> str:
        from cryptography.hazmat.primitives import serialization

        der = self.signing_certificate.public_bytes(serialization.Encoding.DER)
        return json.dumps({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {"certificate": {"rawBytes": base64.b64encode(der).decode()}, "tlogEntries": []},
            "dsseEnvelope": {"payload": base64.b64encode(self.payload).decode(),
                             "payloadType": "application/vnd.in-toto+json",
                             "signatures": [{"sig": base64.b64encode(b"not a signature").decode()}]}})


@pytest.fixture()
def capturing_sigstore(monkeypatch, no_network, session_key):
    """sigstore-python with its network-facing parts (TUF trust config, signing context) replaced."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID
    from sigstore import models, sign

    from nnseal.format.keys import load_private_key

    key = load_private_key(session_key.private_path)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake fulcio")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(minutes=10))
                   .sign(key, hashes.SHA256()))
    signer = CapturingSigner(certificate)
    tokens: list = []

    class FakeContext:
        @contextmanager
        def signer(self, token):
            tokens.append(token)
            yield signer

    monkeypatch.setattr(models.ClientTrustConfig, "production", classmethod(lambda cls, offline=False: object()))
    monkeypatch.setattr(sign.SigningContext, "from_trust_config", classmethod(lambda cls, config: FakeContext()))
    signer.tokens = tokens  # type: ignore[attr-defined]
    return signer


def test_sigstore_signs_the_statement_the_key_method_signs(capturing_sigstore, model_copy, session_key):
    """Wiring only: the statement bytes handed to sigstore-python equal the key method's DSSE
    payload, and its bundle is written as model.sig. Does not test Sigstore itself."""
    signed = run_cli("sign", model_copy, "--key", session_key.private_path)
    assert signed.exit_code == 0, signed.stderr
    key_bundle = json.loads((model_copy / "model.sig").read_bytes())
    key_payload = base64.b64decode(key_bundle["dsseEnvelope"]["payload"])
    (model_copy / "model.sig").unlink()

    token = fake_identity_token(subject="keyless@example.invalid")
    result = run_cli("sign", model_copy, "--sigstore", "--json", env={"SIGSTORE_ID_TOKEN": token})
    assert result.exit_code == 0, result.stderr
    [statement] = capturing_sigstore.statements
    assert statement._contents == key_payload
    [used] = capturing_sigstore.tokens
    assert str(used) == token
    written = (model_copy / "model.sig").read_bytes()
    assert written == FakeBundle(capturing_sigstore.certificate, key_payload).to_json().encode()
    summary = one_document(result, "sign")
    assert summary["method"] == "sigstore"
    assert summary["signer"] == "Sigstore identity keyless@example.invalid from https://issuer.example.invalid"


def test_export_sigstore_signs_the_package_statement(capturing_sigstore, toy_model_folder, tmp_path):
    """Wiring only: export's statement names every package entry with its sha256; the bundle
    sigstore-python returns is the package's model.sig. Does not test Sigstore itself."""
    import zipfile

    output = tmp_path / "pkg.zip"
    result = run_cli("export", "-i", toy_model_folder, "-o", output, "--sigstore", "--identity-token",
                     fake_identity_token(), "--json")
    assert result.exit_code == 0, result.stderr
    report = one_document(result, "export")
    assert report["method"] == "sigstore"
    [statement] = capturing_sigstore.statements
    resources = json.loads(statement._contents)["predicate"]["resources"]
    expected = {e["name"]: e["sha256"] for e in report["entries"] if e["name"] != "model.sig"}
    assert {r["name"]: r["digest"] for r in resources} == expected
    with zipfile.ZipFile(output) as archive:
        assert archive.read("model.sig") == FakeBundle(capturing_sigstore.certificate,
                                                       statement._contents).to_json().encode()
