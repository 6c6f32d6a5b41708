"""The OMS certificate method: export signs with a leaf certificate and its chain; verify and
install accept it only through a trusted CA whose identity rule the leaf matches; every way a
chain can be wrong is one refusal line and nothing installed; and the real model_signing
(`sign certificate` / `verify certificate`) agrees both ways."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from helpers import assert_one_line_refusal, run_cli, run_model_signing, tree_listing
from pki import (
    SIGNER_EMAIL,
    build_pki,
    expired_leaf,
    not_a_ca_intermediate,
    not_yet_valid_leaf,
    other_root_leaf,
    wrong_eku_leaf,
)

from nnseal.format import oms
from nnseal.fsutil import sha256_file
from nnseal.package.signing import sign_manifest
from nnseal.verify.signature import read_bundle_unverified


@pytest.fixture(scope="module")
def pki():
    return build_pki()


@pytest.fixture(scope="module")
def pki_files(pki, tmp_path_factory):
    return pki.write(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def cert_package(toy_results_session, pki_files, tmp_path_factory) -> Path:
    from nnseal import toy_model

    toy_model_folder = toy_results_session / toy_model.DATASET / toy_model.model_folder_name("2d")
    out = tmp_path_factory.mktemp("pkg") / "toy.zip"
    result = run_cli("export", "-i", toy_model_folder, "-o", out, "--key", pki_files["key"], "--certificate",
                     pki_files["leaf"], "--certificate-chain", pki_files["chain"], "--quiet")
    assert result.exit_code == 0, result.stderr
    return out


def trust_env(folder: Path) -> dict[str, str | None]:
    return {"NNSEAL_TRUSTED_KEYS": str(folder)}


def trusting_root(tmp_path: Path, pki_files, identity: str = f"email:{SIGNER_EMAIL}") -> dict[str, str | None]:
    env = trust_env(tmp_path / "trust")
    result = run_cli("trust", "add-ca", pki_files["root"], "--name", "lab-root", "--identity", identity, env=env)
    assert result.exit_code == 0, result.stderr
    return env


def test_export_writes_model_signings_certificate_bundle(cert_package, pki):
    with zipfile.ZipFile(cert_package) as archive:
        bundle = json.loads(archive.read(oms.SIGNATURE_NAME))
    material = bundle["verificationMaterial"]
    assert list(material) == ["x509CertificateChain", "tlogEntries"] and material["tlogEntries"] == []
    chain = [c["rawBytes"] for c in material["x509CertificateChain"]["certificates"]]
    import base64

    from cryptography.hazmat.primitives import serialization

    assert [base64.b64decode(c) for c in chain] == [pki.leaf.cert.public_bytes(serialization.Encoding.DER),
                                                     pki.intermediate.cert.public_bytes(serialization.Encoding.DER)]


def test_verify_and_install_accept_through_trusted_ca_and_name_the_signer(cert_package, pki_files, tmp_path):
    env = trusting_root(tmp_path, pki_files)
    listed = run_cli("trust", "list", "--json", env=env)
    assert json.loads(listed.stdout)["cas"][0]["identities"] == [f"email:{SIGNER_EMAIL}"]
    verified = run_cli("verify", cert_package, "--json", env=env)
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["method"] == "certificate"
    assert "CN=nnseal test signer" in report["signer"] and "issued by CN=nnseal test intermediate" in report["signer"]
    inspected = run_cli("inspect", cert_package, env=env)
    assert "certificate method, certificate CN=nnseal test signer" in inspected.stdout
    installed = run_cli("install", cert_package, "-o", tmp_path / "results", "--json", env=env)
    assert installed.exit_code == 0, installed.stderr
    assert json.loads(installed.stdout)["method"] == "certificate"
    receipt = next((tmp_path / "results").rglob("nnseal-receipt.json"))
    assert json.loads(receipt.read_text())["signer"].startswith("certificate CN=nnseal test signer")


def test_a_trusted_intermediate_is_an_anchor_too(cert_package, pki_files, tmp_path):
    env = trust_env(tmp_path / "trust")
    chain_only = tmp_path / "intermediate.pem"
    chain_only.write_bytes(Path(pki_files["chain"]).read_bytes())
    run_cli("trust", "add-ca", chain_only, "--name", "inter", "--identity",
            "subject:CN=nnseal test signer,O=nnseal tests", env=env)
    assert run_cli("verify", cert_package, env=env).exit_code == 0


def test_leaf_fingerprint_pin(cert_package, pki, pki_files, tmp_path):
    from nnseal.format.trust import certificate_fingerprint

    env = trusting_root(tmp_path, pki_files, identity=f"sha256:{certificate_fingerprint(pki.leaf.cert)}")
    assert run_cli("verify", cert_package, env=env).exit_code == 0


def resigned(package: Path, target: Path, leaf, chain) -> Path:
    """``package`` with model.sig re-signed over the same entries by ``leaf`` and ``chain``."""
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(target, "w") as out:
        resources = read_bundle_unverified(source.read(oms.SIGNATURE_NAME)).resources
        for info in source.infolist():
            if info.filename != oms.SIGNATURE_NAME:
                out.writestr(info, source.read(info))
        out.writestr(oms.SIGNATURE_NAME, sign_manifest("toy", resources, leaf.key, certificates=[leaf.cert, *chain]))
    return target


def _expired(pki):
    return expired_leaf(pki.intermediate), [pki.intermediate.cert]


def _not_yet_valid(pki):
    return not_yet_valid_leaf(pki.intermediate), [pki.intermediate.cert]


def _wrong_eku(pki):
    return wrong_eku_leaf(pki.intermediate), [pki.intermediate.cert]


def _not_a_ca(pki):
    fake_ca, leaf = not_a_ca_intermediate(pki.root)
    return leaf, [fake_ca.cert]


def _other_root(pki):
    _, intermediate, leaf = other_root_leaf()
    return leaf, [intermediate.cert]


def _missing_intermediate(pki):
    return pki.leaf, []


@pytest.mark.parametrize(("make", "needle"), [
    (_expired, "not valid at validation time"),
    (_not_yet_valid, "not valid at validation time"),
    (_wrong_eku, "lacks digitalSignature"),
    (_not_a_ca, "basicConstraints.cA"),
    (_other_root, "does not chain to a trusted CA"),
    (_missing_intermediate, "does not chain to a trusted CA"),
])
def test_bad_chain_is_one_line_and_installs_nothing(make, needle, pki, pki_files, cert_package, tmp_path):
    env = trusting_root(tmp_path, pki_files)
    leaf, chain = make(pki)
    package = resigned(cert_package, tmp_path / "bad.zip", leaf, chain)
    results = tmp_path / "results"
    results.mkdir()
    before = tree_listing(results)
    result = run_cli("install", package, "-o", results, env=env)
    assert_one_line_refusal(result, needle)
    assert tree_listing(results) == before


def test_identity_not_pinned_is_refused(cert_package, pki_files, tmp_path):
    env = trusting_root(tmp_path, pki_files, identity="email:someone-else@example.org")
    result = run_cli("install", cert_package, "-o", tmp_path / "results", env=env)
    assert_one_line_refusal(result, "matches no identity of the 1 trusted CA")
    assert not (tmp_path / "results").exists()


def test_trusted_key_alone_does_not_accept_a_certificate_bundle(cert_package, pki_files, tmp_path):
    from cryptography.hazmat.primitives import serialization

    from nnseal.format.keys import load_private_key

    public = tmp_path / "leaf.pub"
    public.write_bytes(load_private_key(pki_files["key"]).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    result = run_cli("verify", cert_package, "--trusted-key", public, env=trust_env(tmp_path / "empty"))
    assert_one_line_refusal(result, "no CA is trusted")


def test_certificate_for_another_key_is_refused_at_export(toy_model_folder, pki, pki_files, tmp_path):
    other = tmp_path / "other.pem"
    other.write_bytes(expired_leaf(pki.intermediate).pem())
    result = run_cli("export", "-i", toy_model_folder, "-o", tmp_path / "x.zip", "--key", pki_files["key"],
                     "--certificate", other)
    assert_one_line_refusal(result, "is not for the signing key")
    assert not (tmp_path / "x.zip").exists()


def test_add_ca_refuses_a_leaf_certificate(pki_files, tmp_path):
    result = run_cli("trust", "add-ca", pki_files["leaf"], "--name", "x", "--identity", "email:a@b",
                     env=trust_env(tmp_path / "trust"))
    assert_one_line_refusal(result, "not a CA certificate")


# --- interop with the reference implementation -------------------------------------------


model_signing = run_model_signing


def folder(root: Path) -> Path:
    for name, data in {"a.json": b"{}", "fold_0/w.safetensors": bytes(range(256)), "fold_0.txt": b"x"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def resources_of(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in root.rglob("*")
            if p.is_file() and p.name != oms.SIGNATURE_NAME}


@pytest.mark.interop
def test_nnseal_certificate_signature_verifies_with_model_signing(pki, pki_files, tmp_path):
    root = folder(tmp_path / "model")
    (root / oms.SIGNATURE_NAME).write_bytes(
        sign_manifest("model", resources_of(root), pki.leaf.key, certificates=[pki.leaf.cert, pki.intermediate.cert]))
    proc = model_signing("verify", "certificate", root, "--signature", root / oms.SIGNATURE_NAME,
                         "--certificate_chain", pki_files["root"])
    assert proc.returncode == 0, proc.stderr
    (root / "a.json").write_bytes(b"[]")
    proc = model_signing("verify", "certificate", root, "--signature", root / oms.SIGNATURE_NAME,
                         "--certificate_chain", pki_files["root"])
    assert proc.returncode != 0


@pytest.mark.interop
def test_model_signing_certificate_signature_verifies_with_nnseal(pki, pki_files, tmp_path):
    from nnseal.format.trust import TrustAnchors, TrustedCA, certificate_fingerprint
    from nnseal.verify.signature import verify_bundle

    root = folder(tmp_path / "model")
    signature = tmp_path / "model.sig"
    proc = model_signing("sign", "certificate", root, "--signature", signature, "--private_key", pki_files["key"],
                         "--signing_certificate", pki_files["leaf"], "--certificate_chain", pki_files["chain"])
    assert proc.returncode == 0, proc.stderr
    anchor = TrustedCA("root", certificate_fingerprint(pki.root.cert), pki_files["root"], (f"email:{SIGNER_EMAIL}",),
                       pki.root.cert)
    manifest = verify_bundle(signature.read_bytes(), [], anchors=TrustAnchors((anchor,)))
    assert manifest.method == "certificate" and manifest.resources == resources_of(root)
