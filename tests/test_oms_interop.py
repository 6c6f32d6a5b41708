"""Both directions against the reference implementation: the real `model_signing` CLI (PyPI model-signing).

nnseal signs a folder -> `model_signing verify key` accepts it, and refuses it after one
changed byte; `model_signing sign key` signs a folder -> nnseal's verifier accepts it and
its resources are the files' sha256.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from helpers import run_model_signing, write_files
from manifest_helpers import resource_differences

from nnseal.format import keys, oms
from nnseal.fsutil import sha256_file
from nnseal.package import signing
from nnseal.verify.signature import verify_bundle

pytestmark = pytest.mark.interop

# Names chosen so that sorting by string and by path component disagree ("fold_0.json" vs "fold_0/...").
FILES = {
    "plans.json": b'{"configurations": {}}',
    "dataset.json": b'{"labels": {"background": 0}}',
    "fold_0/checkpoint_final.safetensors": bytes(range(256)) * 4,
    "fold_0.json": b"{}",
    "fold_0-notes.txt": b"notes",
    "deep/er/still/file.bin": b"\x00" * 10,
}


model_signing = run_model_signing


def make_folder(root: Path) -> Path:
    return write_files(root, FILES)


def folder_resources(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p)
            for p in root.rglob("*") if p.is_file() and p.name != oms.SIGNATURE_NAME}


def write_key_pair(tmp_path: Path, curve: ec.EllipticCurve, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(curve)
    private = tmp_path / f"{name}.pem"
    public = tmp_path / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(keys.public_key_pem(key.public_key()))
    return private, public


@pytest.fixture(scope="module")
def key_files(tmp_path_factory) -> tuple[Path, Path]:
    return write_key_pair(tmp_path_factory.mktemp("keys"), ec.SECP256R1(), "signer")


def nnseal_signed_folder(root: Path, private: Path) -> Path:
    make_folder(root)
    bundle = signing.sign_manifest(root.name, folder_resources(root), keys.load_private_key(private))
    (root / oms.SIGNATURE_NAME).write_bytes(bundle)
    return root


def test_nnseal_signature_verifies_with_model_signing(tmp_path, key_files):
    private, public = key_files
    model = nnseal_signed_folder(tmp_path / "model", private)
    proc = model_signing("verify", "key", model, "--signature", model / oms.SIGNATURE_NAME, "--public_key", public)
    assert proc.returncode == 0, proc.stderr
    assert "Verification succeeded" in proc.stdout


@pytest.mark.parametrize("victim", ["fold_0/checkpoint_final.safetensors", "fold_0.json", "deep/er/still/file.bin"])
def test_one_changed_byte_fails_model_signing(tmp_path, key_files, victim):
    private, public = key_files
    model = nnseal_signed_folder(tmp_path / "model", private)
    data = bytearray((model / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (model / victim).write_bytes(bytes(data))
    proc = model_signing("verify", "key", model, "--signature", model / oms.SIGNATURE_NAME, "--public_key", public)
    assert proc.returncode != 0
    assert victim in proc.stderr


def test_model_signing_refuses_nnseal_signature_under_another_key(tmp_path, key_files):
    private, _ = key_files
    _, other_public = write_key_pair(tmp_path, ec.SECP256R1(), "other")
    model = nnseal_signed_folder(tmp_path / "model", private)
    proc = model_signing("verify", "key", model, "--signature", model / oms.SIGNATURE_NAME,
                         "--public_key", other_public)
    assert proc.returncode != 0


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()], ids=["P-256", "P-384"])
def test_model_signing_signature_verifies_with_nnseal(tmp_path, curve):
    private, public = write_key_pair(tmp_path, curve, "ref")
    model = make_folder(tmp_path / "model")
    proc = model_signing("sign", "key", model, "--private_key", private, "--signature", model / oms.SIGNATURE_NAME)
    assert proc.returncode == 0, proc.stderr

    bundle = (model / oms.SIGNATURE_NAME).read_bytes()
    manifest = verify_bundle(bundle, [keys.load_public_key(public)])
    assert manifest.verified
    assert manifest.model_name == "model"
    assert manifest.signer_fingerprint == keys.fingerprint(keys.load_public_key(public))
    assert manifest.resources == folder_resources(model)
    assert set(manifest.resources) == set(FILES)
    assert oms.SIGNATURE_NAME in manifest.ignore_paths
    # Same files, same order rule: nnseal's subject digest equals the reference's.
    payload = json.loads(base64.b64decode(json.loads(bundle)["dsseEnvelope"]["payload"]))
    assert payload["subject"][0]["digest"]["sha256"] == oms.root_digest(folder_resources(model))
    assert [r["name"] for r in payload["predicate"]["resources"]] == oms.canonical_order(FILES)


def test_file_added_after_model_signing_signed_is_caught(tmp_path, key_files):
    private, public = key_files
    model = make_folder(tmp_path / "model")
    proc = model_signing("sign", "key", model, "--private_key", private, "--signature", model / oms.SIGNATURE_NAME)
    assert proc.returncode == 0, proc.stderr
    (model / "fold_0" / "payload.pkl").write_bytes(b"added later")

    manifest = verify_bundle((model / oms.SIGNATURE_NAME).read_bytes(), [keys.load_public_key(public)])
    assert resource_differences(manifest.resources, folder_resources(model)) == [
        "fold_0/payload.pkl: not covered by the signature"]
    # The reference agrees that the folder no longer matches.
    check = model_signing("verify", "key", model, "--signature", model / oms.SIGNATURE_NAME, "--public_key", public)
    assert check.returncode != 0 and "payload.pkl" in check.stderr


def test_model_signing_signature_moved_to_another_folder_is_caught(tmp_path, key_files):
    private, public = key_files
    model = make_folder(tmp_path / "model")
    assert model_signing("sign", "key", model, "--private_key", private,
                         "--signature", model / oms.SIGNATURE_NAME).returncode == 0
    other = make_folder(tmp_path / "other")
    (other / "plans.json").write_bytes(b'{"configurations": {"evil": 1}}')
    shutil.copy(model / oms.SIGNATURE_NAME, other / oms.SIGNATURE_NAME)
    manifest = verify_bundle((other / oms.SIGNATURE_NAME).read_bytes(), [keys.load_public_key(public)])
    assert resource_differences(manifest.resources, folder_resources(other)) == [
        "plans.json: sha256 differs from the signed digest"]


def extract_own_package(zip_path: Path, target: Path) -> Path:
    """Unpack a zip nnseal just wrote, entry by entry (names checked; never extractall)."""
    import zipfile

    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            assert info.filename == oms.SIGNATURE_NAME or oms.resource_name_problem(info.filename) is None
            path = target / info.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(archive.read(info))
    return target


def test_exported_package_extracted_verifies_with_model_signing(tmp_path, toy_model_folder, key_files):
    """The issue's check: model.sig at the root signs every other entry, as if the zip were a folder."""
    from nnseal.package.export import export_model_to_zip

    private, public = key_files
    export_model_to_zip(toy_model_folder, tmp_path / "toy.zip", key=private)
    folder = extract_own_package(tmp_path / "toy.zip", tmp_path / "toy")
    signature = folder / oms.SIGNATURE_NAME
    proc = model_signing("verify", "key", folder, "--signature", signature, "--public_key", public)
    assert proc.returncode == 0, proc.stderr
    manifest = verify_bundle(signature.read_bytes(), [keys.load_public_key(public)])
    assert manifest.resources == folder_resources(folder)

    weights = next(folder.rglob("checkpoint_final.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    proc = model_signing("verify", "key", folder, "--signature", signature, "--public_key", public)
    assert proc.returncode != 0 and weights.name in proc.stderr
