"""PKCS#11: a key generated inside a SoftHSM2 token signs a package (key method, and certificate
method with a certificate for the token's key); nnseal and the real model_signing verify it.

Every PyKCS11 call runs in a child process (`nnseal export` as a real process): see
tests/softhsm.py for why."""

from __future__ import annotations

import datetime
import json
import zipfile

import pytest
from helpers import run_cli, run_cli_process, run_model_signing
from pki import NOW, SIGNER_EMAIL, build_pki
from softhsm import make_token, token_public_pem

from nnseal.format import oms


@pytest.fixture()
def token(tmp_path, monkeypatch):
    return make_token(tmp_path / "hsm", monkeypatch)


def unpack(package, folder):
    with zipfile.ZipFile(package) as archive:
        for info in archive.infolist():
            assert info.filename == oms.SIGNATURE_NAME or oms.resource_name_problem(info.filename) is None
            (folder / info.filename).parent.mkdir(parents=True, exist_ok=True)
            (folder / info.filename).write_bytes(archive.read(info))
    return folder


model_signing = run_model_signing


def test_pkcs11_key_signs_and_nnseal_and_model_signing_verify(token, toy_model_folder, tmp_path):
    public = tmp_path / "token.pub"
    public.write_bytes(token_public_pem(token.uri))
    package = tmp_path / "toy.zip"
    result = run_cli_process("export", "-i", toy_model_folder, "-o", package, "--pkcs11-uri", token.uri, "--quiet")
    assert result.exit_code == 0, result.stderr
    verified = run_cli("verify", package, "--trusted-key", public, "--json",
                       env={"NNSEAL_TRUSTED_KEYS": str(tmp_path / "none")})
    assert verified.exit_code == 0, verified.stdout
    assert json.loads(verified.stdout)["method"] == "key"
    folder = unpack(package, tmp_path / "unpacked")
    proc = model_signing("verify", "key", folder, "--signature", folder / oms.SIGNATURE_NAME, "--public_key", public)
    assert proc.returncode == 0, proc.stderr


def test_pkcs11_key_with_certificate(token, toy_model_folder, tmp_path):
    """The certificate method with the key in the token: a CA certifies the token's public key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki = build_pki()
    files = pki.write(tmp_path / "pki")
    token_key = serialization.load_pem_public_key(token_public_pem(token.uri))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hsm")]))
            .issuer_name(pki.intermediate.cert.subject).public_key(token_key)
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=9))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(SIGNER_EMAIL)]), critical=False)
            .sign(pki.intermediate.key, hashes.SHA256()))
    leaf_pem = tmp_path / "hsm.pem"
    leaf_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    package = tmp_path / "toy.zip"
    result = run_cli_process("export", "-i", toy_model_folder, "-o", package, "--pkcs11-uri", token.uri,
                             "--certificate", leaf_pem, "--certificate-chain", files["chain"], "--quiet")
    assert result.exit_code == 0, result.stderr
    env = {"NNSEAL_TRUSTED_KEYS": str(tmp_path / "trust")}
    run_cli("trust", "add-ca", files["root"], "--name", "root", "--identity", f"email:{SIGNER_EMAIL}", env=env)
    verified = run_cli("verify", package, "--json", env=env)
    assert verified.exit_code == 0, verified.stdout
    assert json.loads(verified.stdout)["signer"].startswith("certificate CN=hsm")
    folder = unpack(package, tmp_path / "unpacked")
    proc = model_signing("verify", "certificate", folder, "--signature", folder / oms.SIGNATURE_NAME,
                         "--certificate_chain", files["root"])
    assert proc.returncode == 0, proc.stderr


def test_wrong_pin_is_one_line(token, toy_model_folder, tmp_path):
    uri = token.uri.replace("pin-value=1234", "pin-value=9999")
    result = run_cli_process("export", "-i", toy_model_folder, "-o", tmp_path / "x.zip", "--pkcs11-uri", uri)
    assert result.exit_code == 3 and "PIN_INCORRECT" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "x.zip").exists()


def test_uri_without_module_is_refused(toy_model_folder, tmp_path):
    result = run_cli("export", "-i", toy_model_folder, "-o", tmp_path / "x.zip", "--pkcs11-uri",
                     "pkcs11:token=t;object=k")
    assert result.exit_code == 2 and "module-path" in result.stderr
