"""Keys: nnseal's own and openssl's, the refusals (wrong algorithm, curve, passphrase), keygen's CLI."""

from __future__ import annotations

import hashlib
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from helpers import assert_one_line_error, assert_one_line_refusal, run_cli, run_cli_process

from nnseal.errors import EXIT_ENVIRONMENT, EXIT_REFUSED, BadKey, EnvironmentProblem, Hint, WouldOverwrite
from nnseal.format import keys
from nnseal.package.signing import sign_manifest
from nnseal.verify.signature import verify_bundle

OPENSSL = "/usr/bin/openssl"
RESOURCES = {"plans.json": hashlib.sha256(b"plans").hexdigest()}


def openssl(*args: str) -> None:
    subprocess.run([OPENSSL, *args], check=True, capture_output=True, timeout=60)


def openssl_ec_key(tmp_path: Path, curve: str = "prime256v1", passout: str | None = None) -> tuple[Path, Path]:
    """The issue's recipe: `ecparam -genkey` then `pkcs8 -topk8`, public key by `ec -pubout`."""
    sec1 = tmp_path / f"{curve}.sec1.pem"
    private = tmp_path / f"{curve}.pem"
    public = tmp_path / f"{curve}.pub"
    openssl("ecparam", "-name", curve, "-genkey", "-noout", "-out", str(sec1))
    crypt = ["-passout", f"pass:{passout}"] if passout else ["-nocrypt"]
    openssl("pkcs8", "-topk8", "-in", str(sec1), "-out", str(private), *crypt)
    openssl("ec", "-in", str(sec1), "-pubout", "-out", str(public))
    return private, public


def openssl_other_key(tmp_path: Path, algorithm: str, *opts: str) -> tuple[Path, Path]:
    private = tmp_path / f"{algorithm}.pem"
    public = tmp_path / f"{algorithm}.pub"
    openssl("genpkey", "-algorithm", algorithm, *opts, "-out", str(private))
    openssl("pkey", "-in", str(private), "-pubout", "-out", str(public))
    return private, public


def signs_and_verifies(private: ec.EllipticCurvePrivateKey, public: ec.EllipticCurvePublicKey) -> bool:
    manifest = verify_bundle(sign_manifest("m", RESOURCES, private), [public])
    return manifest.verified and manifest.signer_fingerprint == keys.fingerprint(public)


# --- nnseal's own keys -----------------------------------------------------------------


def test_generated_pair_is_pkcs8_p256_private_0600_and_spki_public(tmp_path):
    files = keys.generate_key_pair(tmp_path / "signer")
    assert files.private_path == tmp_path / "signer.pem"
    assert files.public_path == tmp_path / "signer.pub"
    assert stat.S_IMODE(files.private_path.stat().st_mode) == 0o600
    assert files.private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert files.public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    private = keys.load_private_key(files.private_path)
    public = keys.load_public_key(files.public_path)
    assert private.curve.name == "secp256r1"
    assert files.fingerprint == hashlib.sha256(files.public_path.read_bytes()).hexdigest()
    assert files.fingerprint == keys.fingerprint(private.public_key())
    assert signs_and_verifies(private, public)


def test_encrypted_key_needs_the_right_passphrase(tmp_path):
    files = keys.generate_key_pair(tmp_path / "enc", passphrase=b"correct horse")
    assert files.private_path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(BadKey, match="is encrypted; give its passphrase") as missing:
        keys.load_private_key(files.private_path)
    with pytest.raises(BadKey, match="wrong passphrase") as wrong:
        keys.load_private_key(files.private_path, b"battery staple")
    for err in (missing.value, wrong.value):
        assert err.exit_code == EXIT_REFUSED
        assert str(files.private_path) in str(err) and "\n" not in str(err)
    key = keys.load_private_key(files.private_path, b"correct horse")
    assert keys.fingerprint(key.public_key()) == files.fingerprint


def test_refuses_to_overwrite_either_key_file(tmp_path):
    (tmp_path / "taken.pub").write_text("someone's key")
    with pytest.raises(WouldOverwrite, match="taken.pub"):
        keys.generate_key_pair(tmp_path / "taken")
    assert not (tmp_path / "taken.pem").exists()
    assert (tmp_path / "taken.pub").read_text() == "someone's key"
    (tmp_path / "other.pem").write_text("secret")
    with pytest.raises(WouldOverwrite):
        keys.generate_key_pair(tmp_path / "other")
    assert (tmp_path / "other.pem").read_text() == "secret" and not (tmp_path / "other.pub").exists()


def test_missing_key_file_is_an_environment_problem(tmp_path):
    with pytest.raises(EnvironmentProblem) as err:
        keys.load_private_key(tmp_path / "nope.pem")
    assert err.value.exit_code == EXIT_ENVIRONMENT and "nope.pem" in str(err.value)
    with pytest.raises(EnvironmentProblem):
        keys.load_public_key(tmp_path / "nope.pub")


def test_garbage_and_swapped_key_files_are_refused(tmp_path):
    files = keys.generate_key_pair(tmp_path / "k")
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a key at all")
    with pytest.raises(BadKey, match="not a PEM private key"):
        keys.load_private_key(junk)
    with pytest.raises(BadKey, match="not a PEM public key"):
        keys.load_public_key(junk)
    with pytest.raises(BadKey, match="is a public key"):
        keys.load_private_key(files.public_path)
    with pytest.raises(BadKey, match="is a private key"):
        keys.load_public_key(files.private_path)
    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"A" * (keys.MAX_KEY_FILE_BYTES + 10))
    with pytest.raises(BadKey, match="larger than"):
        keys.load_private_key(huge)


# --- openssl's keys ----------------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("curve, expected", [("prime256v1", "secp256r1"), ("secp384r1", "secp384r1"),
                                             ("secp521r1", "secp521r1")])
def test_openssl_made_keys_work(tmp_path, curve, expected):
    private_path, public_path = openssl_ec_key(tmp_path, curve)
    private = keys.load_private_key(private_path)
    public = keys.load_public_key(public_path)
    assert private.curve.name == expected
    assert keys.fingerprint(public) == keys.fingerprint(private.public_key())
    # openssl writes the same SPKI PEM bytes, so its .pub file hashes to the fingerprint.
    assert keys.fingerprint(public) == hashlib.sha256(public_path.read_bytes()).hexdigest()
    assert signs_and_verifies(private, public)


@pytest.mark.interop
def test_openssl_sec1_key_with_parameters_block_works(tmp_path):
    sec1 = tmp_path / "sec1.pem"
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-out", str(sec1))  # EC PARAMETERS + EC PRIVATE KEY
    assert b"BEGIN EC PARAMETERS" in sec1.read_bytes()
    key = keys.load_private_key(sec1)
    assert key.curve.name == "secp256r1"


@pytest.mark.interop
def test_openssl_encrypted_pkcs8_key_and_wrong_passphrase(tmp_path):
    private_path, public_path = openssl_ec_key(tmp_path, passout="s3cret")
    with pytest.raises(BadKey, match="wrong passphrase"):
        keys.load_private_key(private_path, b"guess")
    with pytest.raises(BadKey, match="is encrypted"):
        keys.load_private_key(private_path)
    assert signs_and_verifies(keys.load_private_key(private_path, b"s3cret"), keys.load_public_key(public_path))


@pytest.mark.interop
@pytest.mark.parametrize("algorithm, opts, shown", [
    ("ED25519", (), "is an Ed25519 key"),
    ("RSA", ("-pkeyopt", "rsa_keygen_bits:1024"), "is an RSA key"),
])
def test_non_ecdsa_keys_are_refused_by_name(tmp_path, algorithm, opts, shown):
    private_path, public_path = openssl_other_key(tmp_path, algorithm, *opts)
    for load, path in ((keys.load_private_key, private_path), (keys.load_public_key, public_path)):
        with pytest.raises(BadKey) as err:
            load(path)
        message = str(err.value)
        assert shown in message and "ECDSA P-256/384/521" in message and str(path) in message


@pytest.mark.interop
def test_ecdsa_key_on_another_curve_is_refused(tmp_path):
    sec1 = tmp_path / "k1.pem"
    openssl("ecparam", "-name", "secp256k1", "-genkey", "-noout", "-out", str(sec1))
    with pytest.raises(BadKey, match="curve secp256k1"):
        keys.load_private_key(sec1)


# --- keys from the environment (CI) ------------------------------------------------------


def test_signing_key_from_env_and_passphrase_from_env(tmp_path, monkeypatch):
    from nnseal.commands._common import (
        PASSPHRASE_ENV,
        SIGNING_KEY_ENV,
        passphrase_from_environment,
        signing_key_path,
    )

    files = keys.generate_key_pair(tmp_path / "ci", passphrase=b"pw")
    monkeypatch.setenv(SIGNING_KEY_ENV, str(files.private_path))
    monkeypatch.setenv(PASSPHRASE_ENV, "pw")
    assert signing_key_path(None) == str(files.private_path)
    assert passphrase_from_environment() == b"pw"
    loaded = keys.signing_key(signing_key_path(None), passphrase_from_environment())
    assert keys.fingerprint(loaded.public_key()) == files.fingerprint
    # The library takes only what it is given: the environment's passphrase is not used.
    with pytest.raises(BadKey, match="is encrypted"):
        keys.signing_key(files.private_path)
    with pytest.raises(BadKey, match="wrong passphrase"):
        keys.signing_key(files.private_path, b"other")
    assert keys.signing_key(loaded) is loaded  # a loaded key is used as it is
    # An explicit path wins over the environment.
    other = keys.generate_key_pair(tmp_path / "explicit")
    assert signing_key_path(str(other.private_path)) == str(other.private_path)
    monkeypatch.delenv(SIGNING_KEY_ENV)
    monkeypatch.delenv(PASSPHRASE_ENV)
    assert signing_key_path(None) is None and passphrase_from_environment() is None
    with pytest.raises(BadKey, match="no signing key") as missing:
        keys.signing_key(None)
    assert missing.value.hint is Hint.SIGNING_KEY and "NNSEAL_SIGNING_KEY" not in str(missing.value)


# --- nnseal keygen -----------------------------------------------------------------------


def test_keygen_cli_prints_fingerprint_and_never_overwrites(tmp_path):
    proc = run_cli("keygen", "-o", tmp_path / "me")
    assert proc.exit_code == 0, proc.stderr
    public = keys.load_public_key(tmp_path / "me.pub")
    assert keys.fingerprint(public) in proc.stdout
    assert str(tmp_path / "me.pem") in proc.stdout
    assert stat.S_IMODE((tmp_path / "me.pem").stat().st_mode) == 0o600
    before = (tmp_path / "me.pem").read_bytes()
    again = run_cli("keygen", "-o", tmp_path / "me")
    assert_one_line_refusal(again, "me.pem", "exists")
    assert (tmp_path / "me.pem").read_bytes() == before


def test_keygen_cli_passphrase_from_env(tmp_path):
    proc = run_cli("keygen", "-o", tmp_path / "ci", "--passphrase-env", "MY_PW", "--json",
                   env={"MY_PW": "from-env"})
    assert proc.exit_code == 0, proc.stderr
    assert '"encrypted": true' in proc.stdout
    key = keys.load_private_key(tmp_path / "ci.pem", b"from-env")
    assert keys.fingerprint(key.public_key()) in proc.stdout
    unset = run_cli("keygen", "-o", tmp_path / "x", "--passphrase-env", "NNSEAL_TEST_UNSET_VAR")
    assert unset.exit_code == 2 and not (tmp_path / "x.pem").exists()


def test_keygen_cli_passphrase_prompt(tmp_path):
    # A real process in a new session: no controlling terminal, so the hidden prompt (getpass)
    # falls back to stdin. CliRunner would replace the prompt and prove nothing about that.
    proc = run_cli_process("keygen", "-o", tmp_path / "p", "--passphrase", input="typed\ntyped\n", timeout=120,
                           start_new_session=True)
    assert proc.exit_code == 0, proc.stderr
    with pytest.raises(BadKey, match="wrong passphrase"):
        keys.load_private_key(tmp_path / "p.pem", b"typo")
    keys.load_private_key(tmp_path / "p.pem", b"typed")


def test_wrong_passphrase_through_the_cli_is_a_one_line_refusal(tmp_path, toy_model_folder):
    files = keys.generate_key_pair(tmp_path / "enc", passphrase=b"right")
    out = tmp_path / "out.zip"
    proc = run_cli("export", "-i", toy_model_folder, "-o", out, "--key", files.private_path,
                   "--passphrase-env", "PW", env={"PW": "wrong"})
    assert_one_line_refusal(proc, "enc.pem", "wrong passphrase")
    assert not out.exists()
    proc = run_cli("export", "-i", toy_model_folder, "-o", out, "--key", files.private_path,
                   env={"NNSEAL_KEY_PASSPHRASE": ""})
    # No passphrase and no terminal to ask at: a missing argument (exit 2), naming how to give one.
    assert_one_line_error(proc, 2, "enc.pem", "is encrypted", "--passphrase-env")
    assert not out.exists()
