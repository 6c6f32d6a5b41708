"""The upstream certificate and Sigstore vectors (tests/vectors/oms/README.md) with their anchors.

Sigstore: model-transparency's v*-sigstore folders and model-signing-spec's valid/sigstore bundle
are production Sigstore signatures by stefanb@us.ibm.com (issuer https://sigstore.verify.ibm.com/oauth2,
the identity upstream's scripts/tests/test-verify-v*-sigstore.sh pass to `model_signing verify
sigstore`). nnseal verifies them against sigstore-python's embedded production trusted root with
every socket refused and HOME emptied: no TUF refresh, nothing written. model_signing 1.1.1 is
given the same root (as a ClientTrustConfig file built from sigstore-python's embedded targets)
and must agree on every case.

Certificate: upstream's scripts/tests/test-verify-v*-certificate.sh verify with
`--certificate_chain keys/certificate/ca-cert.pem`; nnseal trusts that root with `trust add-ca`
and an identity pin (the leaf has no subjectAltName: its subject). v0.2.0 predates OMS v1.0 and
is refused by name where model_signing accepts it (see the README's table of disagreements).
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import pytest
from helpers import assert_one_line_refusal, run_cli, tree_listing

from nnseal.errors import SignatureError
from nnseal.format.trust import TrustAnchors, list_trusted_cas
from nnseal.verify.folder import verify_folder

VECTORS = Path(__file__).parent / "vectors" / "oms"
TRANSPARENCY = VECTORS / "model-transparency"
SPEC_SIGSTORE = VECTORS / "model-signing-spec" / "v1.0" / "valid" / "sigstore.bundle.json"
CA_CERT = TRANSPARENCY / "keys" / "certificate" / "ca-cert.pem"
INTERMEDIATE_CERT = TRANSPARENCY / "keys" / "certificate" / "int-ca-cert.pem"
IDENTITY = "stefanb@us.ibm.com"
ISSUER = "https://sigstore.verify.ibm.com/oauth2"
LEAF_PIN = "subject:CN=intermediate-ca"  # the vectors' signing certificate (CA:TRUE, no keyCertSign, no SAN)
IGNORE = "ignore-me"

sigstore_dirs = sorted(p.name for p in TRANSPARENCY.iterdir() if p.name.endswith("-sigstore"))
certificate_dirs = sorted(p.name for p in TRANSPARENCY.iterdir() if p.name.endswith("-certificate"))
v1_certificate_dirs = [d for d in certificate_dirs if not d.startswith("v0.2")]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No socket may connect and no name resolve; HOME and the XDG folders are empty and must stay so."""
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    home = tmp_path / "home"
    home.mkdir()
    for name in ("HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(name, str(home))
    yield attempts
    assert attempts == [], "something reached for the network"
    assert tree_listing(home) == {}, "something wrote under HOME"


@pytest.fixture
def trust(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "trust"
    monkeypatch.setenv("NNSEAL_TRUSTED_KEYS", str(folder))
    return folder


def add_sigstore(identity: str = IDENTITY, issuer: str = ISSUER) -> None:
    result = run_cli("trust", "add-sigstore", "--name", "signer", "--identity", identity, "--issuer", issuer)
    assert result.exit_code == 0, result.stderr


def add_ca(pin: str = LEAF_PIN, ca: Path = CA_CERT) -> None:
    result = run_cli("trust", "add-ca", ca, "--name", "upstream-root", "--identity", pin)
    assert result.exit_code == 0, result.stderr


def embedded_trust_config(folder: Path) -> Path:
    """sigstore-python's embedded production targets as a ClientTrustConfig file, for model_signing."""
    store = resources.files("sigstore._store").joinpath(quote("https://tuf-repo-cdn.sigstore.dev", safe=""))
    document = {"mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
                "trustedRoot": json.loads(store.joinpath("trusted_root.json").read_text()),
                "signingConfig": json.loads(store.joinpath("signing_config.v0.2.json").read_text())}
    path = folder / "client-trust-config.json"
    path.write_text(json.dumps(document))
    return path


def model_signing_verdict(model: Path, signature: Path, configure) -> bool:
    """model_signing 1.1.1's answer through its Python API, ignoring what upstream's scripts ignore."""
    import model_signing

    ignored = [model / IGNORE] + ([signature] if signature.is_relative_to(model) else [])
    hashing = model_signing.hashing.Config().set_ignored_paths(paths=ignored)
    try:
        configure(model_signing.verifying.Config()).set_hashing_config(hashing).verify(model, signature)
    except Exception:  # noqa: BLE001 - the reference raises ValueError, sigstore errors, ... for a refusal
        return False
    return True


def sigstore_verdict(model: Path, signature: Path, config: Path, identity: str = IDENTITY,
                     issuer: str = ISSUER) -> bool:
    return model_signing_verdict(model, signature, lambda c: c.use_sigstore_verifier(
        identity=identity, oidc_issuer=issuer, trust_config=config))


def certificate_verdict(model: Path, signature: Path) -> bool:
    return model_signing_verdict(model, signature, lambda c: c.use_certificate_verifier(certificate_chain=[CA_CERT]))


def verify_args(folder: Path, signature: Path | None = None) -> list:
    return ["verify", folder, "--signature", signature or folder / "model.sig", "--ignore-path", IGNORE]


# --- Sigstore ---------------------------------------------------------------------------------


def test_the_offline_guard_catches_a_tuf_refresh(tmp_path, monkeypatch):
    """What the offline fixture forbids is what an online production root would do."""
    from sigstore.models import ClientTrustConfig

    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    with pytest.raises(Exception):  # noqa: B017 - sigstore's TUFError; the point is the attempt
        ClientTrustConfig.production()
    assert attempts


@pytest.mark.interop
@pytest.mark.parametrize("vector", sigstore_dirs)
def test_sigstore_vector_verifies_offline_with_the_trusted_identity(vector, trust, offline, tmp_path):
    add_sigstore()
    folder = TRANSPARENCY / vector
    before = tree_listing(folder)
    result = run_cli(*verify_args(folder))
    assert result.exit_code == 0, result.stderr
    assert f"signed by Sigstore identity {IDENTITY} from {ISSUER} (OMS sigstore method)" in result.stdout
    report = verify_folder(folder, folder / "model.sig", trust_folder=trust, ignore_paths=[IGNORE])
    assert report.ok and report.method == "sigstore", report.problems
    assert tree_listing(folder) == before
    assert sigstore_verdict(folder, folder / "model.sig", embedded_trust_config(tmp_path))


@pytest.mark.interop
def test_spec_sigstore_bundle_verifies_offline(trust, offline, tmp_path):
    """model-signing-spec's valid/sigstore.bundle.json signs the v1.1.0 files (tests/vectors/oms/README.md)."""
    add_sigstore()
    model = tmp_path / "model"
    model.mkdir()
    for name in ("signme-1", "signme-2", IGNORE):
        shutil.copy(TRANSPARENCY / "v1.1.0-sigstore" / name, model / name)
    result = run_cli("verify", model, "--signature", SPEC_SIGSTORE)
    assert result.exit_code == 0, result.stderr
    assert f"Sigstore identity {IDENTITY}" in result.stdout
    assert sigstore_verdict(model, SPEC_SIGSTORE, embedded_trust_config(tmp_path))


def test_sigstore_verifies_with_a_given_trust_config(trust, offline, tmp_path):
    """--trust-config takes a ClientTrustConfig (here the same production root, written out)."""
    add_sigstore()
    config = embedded_trust_config(tmp_path)
    folder = TRANSPARENCY / "v1.1.0-sigstore"
    result = run_cli(*verify_args(folder), "--trust-config", config)
    assert result.exit_code == 0, result.stderr
    report = verify_folder(folder, trust_folder=trust, ignore_paths=[IGNORE],
                           anchors=TrustAnchors(sigstore_trust_config=config))
    assert report.ok


def wrong_identity(copy: Path) -> tuple[str, str]:
    add_sigstore(identity="someone.else@us.ibm.com")
    return "someone.else@us.ibm.com", ISSUER


def wrong_issuer(copy: Path) -> tuple[str, str]:
    add_sigstore(issuer="https://accounts.google.com")
    return IDENTITY, "https://accounts.google.com"


def tampered_file(copy: Path) -> tuple[str, str]:
    add_sigstore()
    victim = copy / "signme-1"
    victim.write_bytes(victim.read_bytes() + b"\n")
    return IDENTITY, ISSUER


def dropped_tlog_entry(copy: Path) -> tuple[str, str]:
    add_sigstore()
    bundle = json.loads((copy / "model.sig").read_text())
    assert bundle["verificationMaterial"]["tlogEntries"]
    bundle["verificationMaterial"]["tlogEntries"] = []
    (copy / "model.sig").write_text(json.dumps(bundle))
    return IDENTITY, ISSUER


def swapped_payload(copy: Path) -> tuple[str, str]:
    """A statement naming other digests under the same signature and log entry."""
    add_sigstore()
    bundle = json.loads((copy / "model.sig").read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "00" * 32
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (copy / "model.sig").write_text(json.dumps(bundle))
    return IDENTITY, ISSUER


SIGSTORE_ATTACKS = {
    wrong_identity: "not among the 1 trusted Sigstore identities",
    wrong_issuer: "not among the 1 trusted Sigstore identities",
    tampered_file: "modified file signme-1",
    dropped_tlog_entry: "sigstore-python refuses it: expected exactly one log entry",
    swapped_payload: "Sigstore verification failed",
}


@pytest.mark.interop
@pytest.mark.parametrize("attack", list(SIGSTORE_ATTACKS), ids=lambda a: a.__name__)
def test_sigstore_vector_refused(attack, trust, offline, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(TRANSPARENCY / "v1.1.0-sigstore", copy)
    identity, issuer = attack(copy)
    config = embedded_trust_config(tmp_path)
    before = tree_listing(tmp_path)
    result = run_cli(*verify_args(copy))
    assert_one_line_refusal(result, SIGSTORE_ATTACKS[attack])
    if attack in (wrong_identity, wrong_issuer):
        assert "nnseal trust add-sigstore" in result.stderr and "trust add KEY.pub" not in result.stderr
    assert tree_listing(tmp_path) == before
    assert not sigstore_verdict(copy, copy / "model.sig", config, identity, issuer)


# --- certificate ------------------------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("vector", v1_certificate_dirs)
def test_certificate_vector_verifies_with_the_upstream_root_and_a_pin(vector, trust):
    add_ca()
    folder = TRANSPARENCY / vector
    before = tree_listing(folder)
    result = run_cli(*verify_args(folder))
    assert result.exit_code == 0, result.stderr
    assert "certificate CN=intermediate-ca issued by CN=intermediate-ca (trusted CA 'upstream-root') " \
           "(OMS certificate method)" in result.stdout
    assert tree_listing(folder) == before
    assert certificate_verdict(folder, folder / "model.sig")


@pytest.mark.parametrize("vector", v1_certificate_dirs)
def test_certificate_vector_refused_with_a_wrong_pin(vector, trust):
    add_ca(pin="subject:CN=release-signer")
    result = run_cli(*verify_args(TRANSPARENCY / vector))
    assert_one_line_refusal(result, "matches no identity of the 1 trusted CA", "nnseal trust add-ca")
    assert "trust add KEY.pub" not in result.stderr


def test_certificate_vector_chains_through_the_intermediate_too(trust):
    """Trusting the intermediate (the bundle's second certificate) instead of the root also verifies."""
    add_ca(ca=INTERMEDIATE_CERT)
    result = run_cli(*verify_args(TRANSPARENCY / "v1.1.0-certificate"))
    assert result.exit_code == 0, result.stderr


def test_certificate_vector_after_its_certificates_expire_is_refused(trust):
    """Chains are valid NOW by default; the library takes another validation time (here after 2035-04-30)."""
    import datetime

    add_ca()
    later = datetime.datetime(2036, 1, 1, tzinfo=datetime.timezone.utc)
    with pytest.raises(SignatureError, match="does not chain to a trusted CA at 2036-01-01"):
        verify_folder(TRANSPARENCY / "v1.1.0-certificate", ignore_paths=[IGNORE],
                      anchors=TrustAnchors(cas=tuple(list_trusted_cas(trust)), validation_time=later))


@pytest.mark.interop
def test_v0_2_certificate_vector_is_refused_by_name_where_model_signing_accepts_it(trust):
    """model_signing 0.2 signed over a non-DSSE encoding with another statement layout: not OMS v1.0."""
    add_ca()
    folder = TRANSPARENCY / "v0.2.0-certificate"
    result = run_cli("verify", folder, "--signature", folder / "model.sig")
    assert_one_line_refusal(result, "model_signing 0.2's format", "https://model_signing/Digests/v0.1")
    assert certificate_verdict(folder, folder / "model.sig")
