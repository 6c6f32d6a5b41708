"""`nnseal sign FOLDER` and `nnseal verify FOLDER` against the real model_signing 1.1.1 CLI, both ways,
and one generator per attack on a signed folder or its bundle (each refused in one line, nothing
written)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from helpers import assert_one_line_refusal, run_cli, run_model_signing, tree_listing, write_files

from nnseal.format import keys, oms
from nnseal.fsutil import sha256_file
from nnseal.package import signing

FILES = {
    "config.json": b'{"model_type": "unet"}',
    "fold_0/checkpoint_final.safetensors": bytes(range(256)) * 64,
    "fold_0.json": b"{}",
    "README.md": b"# a model\n",
    ".gitattributes": b"*.safetensors filter=lfs\n",
    ".git/HEAD": b"ref: refs/heads/main\n",
}
SIGNED = sorted(n for n in FILES if not n.startswith(".git"))


model_signing = run_model_signing


def make_folder(root: Path) -> Path:
    return write_files(root, FILES)


@pytest.fixture
def env(tmp_path) -> dict[str, str | None]:
    return {"NNSEAL_TRUSTED_KEYS": str(tmp_path / "no-trusted-keys"), "NNSEAL_SIGNING_KEY": None}


def nnseal_verify(folder: Path, public: Path, env, *extra) -> object:
    return run_cli("verify", folder, "--trusted-key", public, *extra, env=env)


# --- interop, both ways ---------------------------------------------------------------------


@pytest.mark.interop
def test_folder_signed_by_nnseal_verifies_with_model_signing_and_nnseal(tmp_path, session_key, env):
    model = make_folder(tmp_path / "model")
    signed = run_cli("sign", model, "--key", session_key.private_path, env=env)
    assert signed.exit_code == 0, signed.stderr
    assert f"{len(SIGNED)} file(s)" in signed.stdout
    bundle = json.loads((model / oms.SIGNATURE_NAME).read_bytes())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert [r["name"] for r in statement["predicate"]["resources"]] == oms.canonical_order(SIGNED)
    assert set(statement["predicate"]["serialization"]["ignore_paths"]) == {*oms.DEFAULT_IGNORE_PATHS, "model.sig"}

    proc = model_signing("verify", "key", model, "--signature", model / oms.SIGNATURE_NAME,
                         "--public_key", session_key.public_path)
    assert proc.returncode == 0, proc.stderr
    result = nnseal_verify(model, session_key.public_path, env)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == (f"{model}: OK, signed by signer (key sha256:{session_key.fingerprint[:16]}…) "
                                     f"(OMS key method), {len(SIGNED)} files match")


@pytest.mark.interop
@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()], ids=["P-256", "P-384"])
def test_folder_signed_by_model_signing_verifies_with_nnseal(tmp_path, curve, env):
    from test_oms_interop import write_key_pair

    private, public = write_key_pair(tmp_path, curve, "ref")
    model = make_folder(tmp_path / "model")
    proc = model_signing("sign", "key", model, "--private_key", private, "--signature", model / oms.SIGNATURE_NAME)
    assert proc.returncode == 0, proc.stderr
    result = nnseal_verify(model, public, env)
    assert result.exit_code == 0, result.stderr
    assert f"{len(SIGNED)} files match" in result.stdout


@pytest.mark.interop
@pytest.mark.parametrize("signer", ["nnseal", "model_signing"])
def test_tampered_file_is_refused_by_both(tmp_path, session_key, env, signer):
    model = make_folder(tmp_path / "model")
    if signer == "nnseal":
        assert run_cli("sign", model, "--key", session_key.private_path, env=env).exit_code == 0
    else:
        assert model_signing("sign", "key", model, "--private_key", session_key.private_path,
                             "--signature", model / oms.SIGNATURE_NAME).returncode == 0
    victim = model / "fold_0/checkpoint_final.safetensors"
    data = bytearray(victim.read_bytes())
    data[100] ^= 1
    victim.write_bytes(bytes(data))
    assert_one_line_refusal(nnseal_verify(model, session_key.public_path, env),
                            "modified file fold_0/checkpoint_final.safetensors")
    proc = model_signing("verify", "key", model, "--signature", model / oms.SIGNATURE_NAME,
                         "--public_key", session_key.public_path)
    assert proc.returncode != 0 and "checkpoint_final.safetensors" in proc.stderr


def test_signature_outside_the_folder_and_ignore_paths(tmp_path, session_key, env):
    model = make_folder(tmp_path / "model")
    (model / "cache").mkdir()
    (model / "cache" / "tmp.bin").write_bytes(b"scratch")
    signature = tmp_path / "model.sig"
    assert run_cli("sign", model, "--key", session_key.private_path, "-o", signature, "--ignore-path", "cache",
                   env=env).exit_code == 0
    (model / "cache" / "later.bin").write_bytes(b"ignored, as recorded in the statement")
    result = nnseal_verify(model, session_key.public_path, env, "--signature", signature)
    assert result.exit_code == 0, result.stderr
    # An existing signature is never replaced without --force.
    again = run_cli("sign", model, "--key", session_key.private_path, "-o", signature, env=env)
    assert again.exit_code == 1 and "exists" in again.stderr


def test_untrusted_signer_is_refused_in_one_line(tmp_path, session_key, env):
    model = make_folder(tmp_path / "model")
    assert run_cli("sign", model, "--key", session_key.private_path, env=env).exit_code == 0
    other = keys.generate_key_pair(tmp_path / "other")
    assert_one_line_refusal(nnseal_verify(model, other.public_path, env), session_key.fingerprint,
                            "not among the 1 trusted key")


# --- hostile: one generator per attack -----------------------------------------------------


def _signed(tmp_path: Path, session_key) -> Path:
    model = make_folder(tmp_path / "model")
    resources = {name: sha256_file(model / name) for name in SIGNED}
    bundle = signing.sign_manifest("model", resources, keys.load_private_key(session_key.private_path),
                                   ignore_paths=[*oms.DEFAULT_IGNORE_PATHS, oms.SIGNATURE_NAME])
    (model / oms.SIGNATURE_NAME).write_bytes(bundle)
    return model


def _bundle(model: Path) -> dict:
    return json.loads((model / oms.SIGNATURE_NAME).read_bytes())


def _write_bundle(model: Path, bundle: dict) -> None:
    (model / oms.SIGNATURE_NAME).write_bytes(json.dumps(bundle).encode())


def _sign_raw(session_key, payload: bytes, payload_type: str) -> str:
    private = keys.load_private_key(session_key.private_path)
    return base64.b64encode(private.sign(oms.pae(payload_type, payload),
                                         ec.ECDSA(oms.hash_for_curve(private.curve)))).decode()


def _statement(model: Path) -> dict:
    return json.loads(base64.b64decode(_bundle(model)["dsseEnvelope"]["payload"]))


def _resign(model: Path, session_key, statement: dict) -> None:
    (model / oms.SIGNATURE_NAME).write_bytes(
        signing.sign_statement(statement, keys.load_private_key(session_key.private_path)))


def bundle_with_two_signatures(model: Path, session_key) -> None:
    bundle = _bundle(model)
    signature = bundle["dsseEnvelope"]["signatures"][0]
    bundle["dsseEnvelope"]["signatures"] = [signature, dict(signature)]
    _write_bundle(model, bundle)


def bundle_with_wrong_payload_type(model: Path, session_key) -> None:
    bundle = _bundle(model)
    payload = base64.b64decode(bundle["dsseEnvelope"]["payload"])
    bundle["dsseEnvelope"]["payloadType"] = "application/json"
    # Validly signed under the other type: only the type check can refuse it.
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = _sign_raw(session_key, payload, "application/json")
    _write_bundle(model, bundle)


def statement_subject_digest_mismatch(model: Path, session_key) -> None:
    statement = _statement(model)
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    _resign(model, session_key, statement)


def extra_file_in_folder(model: Path, session_key) -> None:
    (model / "fold_0" / "payload.pkl").write_bytes(b"cos\nsystem\n(S'echo CANARY'\ntR.")


def symlink_in_folder_pointing_outside(model: Path, session_key) -> None:
    outside = model.parent / "outside-secret"
    outside.write_bytes(b"CANARY")
    os.symlink(outside, model / "fold_0" / "extra.safetensors")


def path_traversal_in_resource_name(model: Path, session_key) -> None:
    statement = _statement(model)
    statement["predicate"]["resources"].append(
        {"name": "../outside-secret", "algorithm": "sha256", "digest": "1" * 64})
    statement["subject"][0]["digest"]["sha256"] = oms.root_digest_in_order(
        r["digest"] for r in statement["predicate"]["resources"])
    _resign(model, session_key, statement)


def ignore_path_covering_the_whole_model(model: Path, session_key) -> None:
    statement = _statement(model)
    statement["predicate"]["serialization"]["ignore_paths"].append("./")
    _resign(model, session_key, statement)


ATTACKS = {
    bundle_with_two_signatures: "exactly one signature",
    bundle_with_wrong_payload_type: "payloadType",
    statement_subject_digest_mismatch: "subject digest",
    extra_file_in_folder: "extra file fold_0/payload.pkl",
    symlink_in_folder_pointing_outside: "symbolic link",
    path_traversal_in_resource_name: "path traversal",
    ignore_path_covering_the_whole_model: "names the whole model",
}


@pytest.mark.parametrize("attack", list(ATTACKS), ids=lambda f: f.__name__)
def test_hostile_folder_or_bundle_is_refused_in_one_line(attack, tmp_path, session_key, env):
    model = _signed(tmp_path, session_key)
    assert nnseal_verify(model, session_key.public_path, env).exit_code == 0
    attack(model, session_key)
    before = tree_listing(tmp_path)
    result = nnseal_verify(model, session_key.public_path, env)
    assert_one_line_refusal(result, ATTACKS[attack])
    assert "CANARY" not in result.stdout + result.stderr
    assert tree_listing(tmp_path) == before


# --- reporting: the signer as a person knows it ------------------------------------------------


def test_verify_inspect_and_scan_name_the_method_and_signer(tmp_path, toy_package_session, session_key):
    trust = tmp_path / "trust"
    env = {"NNSEAL_TRUSTED_KEYS": str(trust)}
    short = f"key sha256:{session_key.fingerprint[:16]}…"
    scanned = run_cli("scan", toy_package_session, env=env)
    assert f"key sha256:{session_key.fingerprint} (OMS key method)" in scanned.stdout + scanned.stderr
    assert run_cli("trust", "add", session_key.public_path, "--name", "liver-lab", env=env).exit_code == 0
    verified = run_cli("verify", toy_package_session, env=env)
    assert verified.exit_code == 0, verified.stderr
    assert f"signed by liver-lab ({short}) (OMS key method)" in verified.stdout
    inspected = run_cli("inspect", toy_package_session, env=env)
    assert f"signer:    liver-lab (key sha256:{session_key.fingerprint}), OMS key method (trusted;" in inspected.stdout
    model = make_folder(tmp_path / "model")
    assert run_cli("sign", model, "--key", session_key.private_path, env=env).exit_code == 0
    folder = run_cli("verify", model, "--json", env=env)
    assert folder.exit_code == 0, folder.stderr
    assert {k: json.loads(folder.stdout)[k] for k in ("method", "signer_name", "signer_fingerprint")} == {
        "method": "key", "signer_name": "liver-lab", "signer_fingerprint": session_key.fingerprint}


@pytest.mark.parametrize("bad", ["/etc", "../up", ".", "a/../.."])
def test_an_ignore_path_that_leaves_the_folder_or_names_all_of_it_is_a_usage_error(tmp_path, session_key, env, bad):
    model = make_folder(tmp_path / "model")
    result = run_cli("sign", model, "--key", session_key.private_path, "--ignore-path", bad, env=env)
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert not (model / oms.SIGNATURE_NAME).exists()
