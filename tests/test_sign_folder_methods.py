"""`nnseal sign FOLDER` by the certificate method and with a PKCS#11 key, as export signs packages;
`nnseal verify FOLDER` takes certificate bundles through the trust folder's CAs. The real
model_signing agrees both ways: it verifies what nnseal signs, and nnseal verifies what it signs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import assert_one_line_refusal, run_cli, run_cli_process, run_model_signing, tree_listing
from pki import SIGNER_EMAIL, build_pki
from softhsm import make_token, token_public_pem

from nnseal.format import oms
from nnseal.format.trust import certificate_fingerprint


@pytest.fixture(scope="module")
def pki():
    return build_pki()


@pytest.fixture(scope="module")
def pki_files(pki, tmp_path_factory):
    return pki.write(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def trust(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "trust"
    monkeypatch.setenv("NNSEAL_TRUSTED_KEYS", str(folder))
    return folder


def model_folder(root: Path) -> Path:
    for name, data in {"config.json": b"{}", "fold_0/model.safetensors": bytes(range(256)), "README.md": b"x"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


model_signing = run_model_signing


def trust_root(pki_files, identity: str = f"email:{SIGNER_EMAIL}") -> None:
    result = run_cli("trust", "add-ca", pki_files["root"], "--name", "lab-root", "--identity", identity)
    assert result.exit_code == 0, result.stderr


@pytest.mark.interop
def test_certificate_signed_folder_verifies_with_nnseal_and_model_signing(pki, pki_files, trust, tmp_path):
    root = model_folder(tmp_path / "model")
    result = run_cli("sign", root, "--key", pki_files["key"], "--certificate", pki_files["leaf"],
                     "--certificate-chain", pki_files["chain"], "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["method"] == "certificate" and summary["files"] == 3
    assert summary["signer_fingerprint"] == certificate_fingerprint(pki.leaf.cert)
    signature = root / oms.SIGNATURE_NAME
    proc = model_signing("verify", "certificate", root, "--signature", signature,
                         "--certificate_chain", pki_files["root"])
    assert proc.returncode == 0, proc.stderr
    trust_root(pki_files)
    verified = run_cli("verify", root)
    assert verified.exit_code == 0, verified.stderr
    assert "(trusted CA 'lab-root') (OMS certificate method), 3 files match" in verified.stdout
    (root / "config.json").write_bytes(b"[]")
    assert_one_line_refusal(run_cli("verify", root), "modified file config.json")
    assert model_signing("verify", "certificate", root, "--signature", signature,
                         "--certificate_chain", pki_files["root"]).returncode != 0


@pytest.mark.interop
def test_model_signing_certificate_signed_folder_verifies_with_nnseal(pki_files, trust, tmp_path):
    root = model_folder(tmp_path / "model")
    signature = root / oms.SIGNATURE_NAME
    proc = model_signing("sign", "certificate", root, "--signature", signature, "--private_key", pki_files["key"],
                         "--signing_certificate", pki_files["leaf"], "--certificate_chain", pki_files["chain"])
    assert proc.returncode == 0, proc.stderr
    unanchored = run_cli("verify", root)
    assert_one_line_refusal(unanchored, "no CA is trusted", "nnseal trust add-ca")
    trust_root(pki_files)
    verified = run_cli("verify", root, "--json")
    assert verified.exit_code == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["method"] == "certificate" and report["signer"].startswith("certificate ")


def test_certificate_signed_folder_refused_under_another_pin(pki_files, trust, tmp_path):
    root = model_folder(tmp_path / "model")
    assert run_cli("sign", root, "--key", pki_files["key"], "--certificate", pki_files["leaf"],
                   "--certificate-chain", pki_files["chain"]).exit_code == 0
    trust_root(pki_files, identity="email:someone.else@example.org")
    before = tree_listing(tmp_path)
    result = run_cli("verify", root)
    assert_one_line_refusal(result, "matches no identity of the 1 trusted CA", "nnseal trust add-ca")
    assert tree_listing(tmp_path) == before


def test_certificate_for_another_key_writes_no_signature(pki, pki_files, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = tmp_path / "other.pem"
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    root = model_folder(tmp_path / "model")
    before = tree_listing(root)
    result = run_cli("sign", root, "--key", other, "--certificate", pki_files["leaf"])
    assert result.exit_code != 0 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "is not for the signing key" in result.stderr
    assert tree_listing(root) == before


def test_chain_without_certificate_is_a_usage_error(pki_files, tmp_path):
    root = model_folder(tmp_path / "model")
    result = run_cli("sign", root, "--key", pki_files["key"], "--certificate-chain", pki_files["chain"])
    assert result.exit_code == 2 and "--certificate-chain needs --certificate" in result.stderr
    assert not (root / oms.SIGNATURE_NAME).exists()


@pytest.mark.interop
def test_pkcs11_key_signs_a_folder(tmp_path, monkeypatch):
    token = make_token(tmp_path / "hsm", monkeypatch)
    public = tmp_path / "token.pub"
    public.write_bytes(token_public_pem(token.uri))
    root = model_folder(tmp_path / "model")
    result = run_cli_process("sign", root, "--pkcs11-uri", token.uri)
    assert result.exit_code == 0, result.stderr
    assert "(OMS key method)" in result.stdout
    verified = run_cli("verify", root, "--trusted-key", public, env={"NNSEAL_TRUSTED_KEYS": str(tmp_path / "none")})
    assert verified.exit_code == 0, verified.stderr
    proc = model_signing("verify", "key", root, "--signature", root / oms.SIGNATURE_NAME, "--public_key", public)
    assert proc.returncode == 0, proc.stderr
