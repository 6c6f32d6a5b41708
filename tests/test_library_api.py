"""The library's boundary: it names no CLI flag, reads no environment variable, trusts exactly the
keys it is given, and raises only the nnseal error family (the CLI words the hints)."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from helpers import assert_one_line_refusal, run_cli

from nnseal.commands._common import HINT_TEXT, error_line
from nnseal.errors import (
    EXIT_USAGE,
    BadKey,
    Hint,
    InvalidArgument,
    NnsealError,
    UntrustedSigner,
    WouldOverwrite,
)
from nnseal.format import keys, oms, trust
from nnseal.format.digest import normalise_sha256
from nnseal.fsutil import atomic_output
from nnseal.toy_model import DATASET, model_folder_name
from nnseal.verify.install import install_model_from_zip
from nnseal.verify.report import inspect_package, verify_package
from nnseal.verify.signature import verify_bundle

MODEL = f"{DATASET}/{model_folder_name('2d')}"
# What the CLI reads from the environment; the library must read none of it.
CLI_VARIABLES = ("nnUNet_results", "NNSEAL_TRUSTED_KEYS", "XDG_CONFIG_HOME", "NNSEAL_SIGNING_KEY",
                 "NNSEAL_KEY_PASSPHRASE")


@pytest.fixture()
def stranger(tmp_path):
    """A key that did not sign the toy package."""
    return keys.generate_key_pair(tmp_path / "stranger")


@pytest.fixture()
def folder_trusting_the_signer(tmp_path, session_key) -> Path:
    folder = tmp_path / "trust-folder"
    trust.add_trusted_key(folder, session_key.public_path)
    return folder


# --- errors: reason, path, hint; the CLI words the hint -----------------------------------------


def test_library_error_names_no_flag_while_the_cli_line_does(tmp_path):
    taken = tmp_path / "taken"
    taken.write_bytes(b"x")
    with pytest.raises(WouldOverwrite) as err:
        with atomic_output(taken):
            pass
    assert (err.value.reason, err.value.path, err.value.hint) == ("exists", str(taken), Hint.FORCE)
    assert str(err.value) == f"{taken}: exists" and "--" not in str(err.value)
    assert error_line(err.value) == f"{taken}: exists; pass --force to replace it"


def test_cli_words_the_hint_as_its_flag(tmp_path):
    files = keys.generate_key_pair(tmp_path / "k")
    proc = run_cli("keygen", "-o", tmp_path / "k")
    assert_one_line_refusal(proc, "k.pem: exists; nnseal never overwrites key files (choose another -o)")
    folder = tmp_path / "trusted"
    other = keys.generate_key_pair(tmp_path / "other")
    env = {"NNSEAL_TRUSTED_KEYS": str(folder)}
    assert run_cli("trust", "add", files.public_path, "--name", "lab", env=env).exit_code == 0
    proc = run_cli("trust", "add", other.public_path, "--name", "lab", env=env)
    assert_one_line_refusal(proc, "already trusted under the name 'lab'; choose another --name")


def test_every_hint_is_worded_by_the_cli_and_no_hint_names_a_flag():
    assert set(HINT_TEXT) == set(Hint)
    for hint in Hint:
        assert "--" not in hint.value and "nnseal " not in hint.value and "$" not in hint.value


def test_with_path_keeps_type_reason_hint_and_fields():
    err = UntrustedSigner("signed by abc", hint=Hint.TRUST_SIGNER, fingerprint="abc")
    named = err.with_path("pkg.zip")
    assert type(named) is UntrustedSigner and named is not err
    assert (named.reason, named.hint, named.fingerprint, named.path) == ("signed by abc", Hint.TRUST_SIGNER, "abc",
                                                                         "pkg.zip")
    assert str(named) == "pkg.zip: signed by abc" and err.path is None
    copy = pickle.loads(pickle.dumps(named))  # errors cross process boundaries in the scanner
    assert (type(copy), str(copy), copy.hint, copy.fingerprint) == (UntrustedSigner, str(named), named.hint, "abc")


def test_refusal_names_the_package_and_keeps_its_hint(toy_package_session, session_key, tmp_path):
    results = tmp_path / "r"
    report = install_model_from_zip(toy_package_session, results, trusted_keys=[session_key.public_path])
    (Path(report.models[0]) / "notes.txt").write_text("added after install")  # no longer what the package holds
    with pytest.raises(WouldOverwrite) as err:
        install_model_from_zip(toy_package_session, results, trusted_keys=[session_key.public_path])
    assert err.value.path == str(toy_package_session) and err.value.hint is Hint.FORCE
    assert "--" not in str(err.value)


# --- bad arguments: family errors, never ValueError or TypeError ---------------------------------


def test_bad_arguments_raise_family_errors(tmp_path, session_key, toy_package_session):
    with pytest.raises(InvalidArgument) as bad_pin:
        normalise_sha256("not-hex")
    assert bad_pin.value.exit_code == EXIT_USAGE
    with pytest.raises(InvalidArgument):
        install_model_from_zip(toy_package_session, tmp_path / "r", trusted_keys=[session_key.public_path],
                               sha256="")
    with pytest.raises(InvalidArgument):
        trust.add_trusted_key(tmp_path / "t", session_key.public_path, name="../escape")
    with pytest.raises(InvalidArgument):
        oms.check_resources({"../escape": "0" * 64})
    with pytest.raises(BadKey):
        oms.hash_for_curve(ec.SECP192R1())
    signer = keys.load_private_key(session_key.private_path)
    from nnseal.package.signing import sign_manifest

    bundle = sign_manifest("m", {"x": "0" * 64}, signer)
    with pytest.raises(BadKey):
        verify_bundle(bundle, [rsa.generate_private_key(65537, 2048).public_key()])
    with pytest.raises(BadKey, match="no signing key"):
        keys.signing_key(None)
    assert not (tmp_path / "r" / DATASET).exists()


def test_cli_still_treats_a_malformed_pin_as_a_usage_error(toy_package_session, tmp_path):
    proc = run_cli("install", toy_package_session, "--results", tmp_path / "r", "--sha256", "xyz")
    assert proc.exit_code == 2 and "64 hex digits" in proc.stderr


# --- trusted_keys are exactly those keys; the trust folder only when given ----------------------


def test_trusted_keys_are_exactly_those_keys(toy_package_session, stranger, folder_trusting_the_signer, tmp_path):
    only_stranger = verify_package(toy_package_session, [stranger.public_path])
    assert only_stranger.signature == "untrusted"
    with_folder = verify_package(toy_package_session, [stranger.public_path], trust_folder=folder_trusting_the_signer)
    assert with_folder.ok, with_folder.problems

    assert not inspect_package(toy_package_session, [stranger.public_path]).signer_trusted
    assert inspect_package(toy_package_session, [stranger.public_path],
                           trust_folder=folder_trusting_the_signer).signer_trusted

    with pytest.raises(UntrustedSigner):
        install_model_from_zip(toy_package_session, tmp_path / "r", trusted_keys=[stranger.public_path])
    assert not (tmp_path / "r" / MODEL).exists()
    report = install_model_from_zip(toy_package_session, tmp_path / "r", trusted_keys=[stranger.public_path],
                                    trust_folder=folder_trusting_the_signer)
    assert report.models == [str((tmp_path / "r" / MODEL).resolve())]


def test_scan_trusts_the_folder_only_when_given(toy_package_session, folder_trusting_the_signer):
    from nnseal.scan import scan_paths

    rules = [f.rule for f in scan_paths([toy_package_session]).findings]
    assert rules == ["unknown-signer"]
    assert scan_paths([toy_package_session], trust_folder=folder_trusting_the_signer).findings == []


def test_load_trusted_keys_merges_the_folder_only_when_given(stranger, session_key, folder_trusting_the_signer):
    assert [k.fingerprint for k in trust.load_trusted_keys([stranger.public_path])] == [stranger.fingerprint]
    both = trust.load_trusted_keys([stranger.public_path], folder_trusting_the_signer)
    assert [k.fingerprint for k in both] == [stranger.fingerprint, session_key.fingerprint]


# --- the library reads no environment variable ------------------------------------------------


class _RecordingEnviron(dict):
    """os.environ that records reads of the CLI's variables."""

    def __init__(self, values):
        super().__init__(values)
        self.read: list[str] = []

    def _note(self, key):
        if key in CLI_VARIABLES:
            self.read.append(key)

    def __getitem__(self, key):
        self._note(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._note(key)
        return super().get(key, default)

    def __contains__(self, key):
        self._note(key)
        return super().__contains__(key)


def test_library_reads_no_environment_variable(toy_package_session, toy_model_folder, session_key, stranger,
                                               folder_trusting_the_signer, tmp_path, monkeypatch):
    from nnseal.package.export import export_model_to_zip
    from nnseal.scan import scan_paths
    from nnseal.verify.download import download_and_install_from_url

    bogus_results = tmp_path / "bogus_results"
    environ = _RecordingEnviron(os.environ)
    environ.update({"nnUNet_results": str(bogus_results), "NNSEAL_TRUSTED_KEYS": str(folder_trusting_the_signer),
                    "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "NNSEAL_SIGNING_KEY": str(stranger.private_path),
                    "NNSEAL_KEY_PASSPHRASE": "bogus"})
    monkeypatch.setattr(os, "environ", environ)

    # The trust folder named by the environment trusts the signer, but only the stranger was given.
    assert verify_package(toy_package_session, [stranger.public_path]).signature == "untrusted"
    assert not inspect_package(toy_package_session, [stranger.public_path]).signer_trusted
    assert [f.rule for f in scan_paths([toy_package_session], [stranger.public_path]).findings] == ["unknown-signer"]
    with pytest.raises(UntrustedSigner):
        install_model_from_zip(toy_package_session, tmp_path / "r", trusted_keys=[stranger.public_path])
    # The results folder is the one given, never $nnUNet_results.
    install_model_from_zip(toy_package_session, tmp_path / "r", trusted_keys=[session_key.public_path])
    copy = tmp_path / "copy.zip"
    shutil.copy(toy_package_session, copy)
    download_and_install_from_url(copy.as_uri(), tmp_path / "d", trusted_keys=[session_key.public_path])
    assert (tmp_path / "r" / MODEL).is_dir() and (tmp_path / "d" / MODEL).is_dir()
    assert not bogus_results.exists()
    # The signing key is the one given, never $NNSEAL_SIGNING_KEY.
    with pytest.raises(NnsealError, match="no signing key"):
        export_model_to_zip(toy_model_folder, tmp_path / "none.zip", key=None)
    loaded = keys.load_private_key(session_key.private_path)
    report = export_model_to_zip(toy_model_folder, tmp_path / "m.zip", key=loaded, folds=["0"], checkpoints=["final"])
    assert report.signer_fingerprint == session_key.fingerprint
    assert environ.read == []
