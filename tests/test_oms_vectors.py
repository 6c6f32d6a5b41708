"""The upstream OMS test vectors (tests/vectors/oms/README.md), each with the answer upstream gives.

model-transparency's scripts/tests/v*-{elliptic-key,certificate,sigstore}/ are signed folders (or
one signed file) that model_signing must verify; model-signing-spec's test-vectors/v1.0/ are
bundles, valid or invalid as their folder says, over the same two files. Key-method vectors are
verified by nnseal (library and CLI) and cross-checked with model_signing 1.1.1's own verifier;
certificate and sigstore vectors, without a trusted CA or Sigstore identity, a one-line refusal
(with them: tests/test_oms_method_vectors.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import assert_one_line_refusal, run_cli, tree_listing

from nnseal.errors import SignatureError
from nnseal.verify.folder import verify_folder

VECTORS = Path(__file__).parent / "vectors" / "oms"
TRANSPARENCY = VECTORS / "model-transparency"
SPEC = VECTORS / "model-signing-spec" / "v1.0"
PUBLIC_KEY = TRANSPARENCY / "keys" / "signing-key-pub.pem"
# Upstream's scripts verify these two as the single file signme-1, the others as the folder.
SINGLE_FILE = {"v0.3.1-elliptic-key", "v1.0.0-elliptic-key"}
# Upstream's scripts pass --ignore-paths ignore-me where the vector holds that file.
IGNORE = ["ignore-me"]

transparency_dirs = sorted(p.name for p in TRANSPARENCY.iterdir() if p.name.startswith("v"))
key_dirs = [d for d in transparency_dirs if d.endswith("elliptic-key")]
other_dirs = [d for d in transparency_dirs if not d.endswith("elliptic-key")]
spec_bundles = sorted(str(p.relative_to(SPEC)) for p in SPEC.rglob("*.json"))


def target_of(vector: str) -> Path:
    return TRANSPARENCY / vector / "signme-1" if vector in SINGLE_FILE else TRANSPARENCY / vector


def model_signing_verifies(model: Path, signature: Path) -> bool:
    """model_signing 1.1.1's verdict through its Python API, as its own `verify key` CLI calls it."""
    import model_signing

    hashing = model_signing.hashing.Config().set_ignored_paths(
        paths=[] if model.is_file() else [Path(p) for p in IGNORE] + [signature.relative_to(model)]
        if signature.is_relative_to(model) else [Path(p) for p in IGNORE])
    try:
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=PUBLIC_KEY) \
            .set_hashing_config(hashing).verify(model, signature)
    except Exception:  # noqa: BLE001 - the reference raises ValueError, KeyError, ... for a refusal
        return False
    return True


@pytest.fixture
def no_trust_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("NNSEAL_TRUSTED_KEYS", str(tmp_path / "no-trusted-keys"))


@pytest.mark.interop
@pytest.mark.parametrize("vector", key_dirs)
def test_key_vector_verifies_with_nnseal_and_model_signing(vector, no_trust_folder):
    target, signature = target_of(vector), TRANSPARENCY / vector / "model.sig"
    before = tree_listing(TRANSPARENCY / vector)
    report = verify_folder(target, signature, [PUBLIC_KEY], ignore_paths=IGNORE)
    assert report.ok, report.problems
    assert report.signer_fingerprint == "e8450dec4eb99dae995da9af1bc2cc9f76ed669ee2e744f57abba763df3e3f8e"
    result = run_cli("verify", target, "--signature", signature, "--trusted-key", PUBLIC_KEY,
                     *[a for p in IGNORE for a in ("--ignore-path", p)])
    assert result.exit_code == 0, result.stderr
    assert "signed by signing-key-pub (key sha256:e8450dec4eb99dae" in result.stdout
    assert model_signing_verifies(target, signature)
    assert tree_listing(TRANSPARENCY / vector) == before


@pytest.mark.parametrize("vector", key_dirs)
def test_key_vector_with_a_changed_file_is_refused(vector, tmp_path, no_trust_folder):
    copy = tmp_path / vector
    shutil.copytree(TRANSPARENCY / vector, copy)
    victim = copy / "signme-1"
    victim.write_bytes(victim.read_bytes() + b"!")
    target = victim if vector in SINGLE_FILE else copy
    result = run_cli("verify", target, "--signature", copy / "model.sig", "--trusted-key", PUBLIC_KEY,
                     "--ignore-path", "ignore-me")
    assert_one_line_refusal(result, "modified file", "signme-1" if vector not in SINGLE_FILE else ".")


@pytest.mark.parametrize("vector", other_dirs)
def test_certificate_and_sigstore_vectors_are_refused_without_a_trusted_ca_or_identity(vector, no_trust_folder):
    """A trusted key is no anchor for a certificate or a Sigstore identity: refused in one line."""
    result = run_cli("verify", TRANSPARENCY / vector, "--signature", TRANSPARENCY / vector / "model.sig",
                     "--trusted-key", PUBLIC_KEY, "--ignore-path", "ignore-me")
    if vector.startswith("v0.2"):  # refused by name before any anchor is looked at (test_oms_method_vectors.py)
        assert_one_line_refusal(result, "model_signing 0.2's format")
    elif vector.endswith("sigstore"):
        assert_one_line_refusal(result, "no Sigstore identity is trusted", "nnseal trust add-sigstore")
    else:
        assert_one_line_refusal(result, "no CA is trusted", "nnseal trust add-ca")
    assert "trust add KEY.pub" not in result.stderr


@pytest.mark.interop
@pytest.mark.parametrize("bundle", spec_bundles)
def test_spec_vector(bundle, tmp_path, no_trust_folder):
    """valid/: key verifies (over the v1.1.0 files they sign), certificate and sigstore need an anchor;
    invalid/ and invalid-payload/: refused by nnseal and by model_signing alike."""
    model = tmp_path / "model"
    model.mkdir()
    for name in ("signme-1", "signme-2", "ignore-me"):
        shutil.copy(TRANSPARENCY / "v1.1.0-elliptic-key" / name, model / name)
    path = SPEC / bundle
    verdict, kind = Path(bundle).parts[0], Path(bundle).name.split(".")[0]
    result = run_cli("verify", model, "--signature", path, "--trusted-key", PUBLIC_KEY)
    if verdict == "valid" and kind == "key":
        assert result.exit_code == 0, result.stderr
        assert verify_folder(model, path, [PUBLIC_KEY]).ok
        assert model_signing_verifies(model, path)
    elif verdict == "valid":
        assert_one_line_refusal(result, "no Sigstore identity is trusted" if kind == "sigstore" else "no CA is trusted")
    else:
        assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1, result.stderr
        with pytest.raises(SignatureError):
            verify_folder(model, path, [PUBLIC_KEY])
        assert not model_signing_verifies(model, path)
