"""The trust folder and `nnseal trust add/list/remove`, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_one_line_refusal, run_cli

from nnseal.commands._common import TRUST_FOLDER_ENV, trust_folder_from_environment
from nnseal.errors import BadKey, EnvironmentProblem, InvalidArgument, UntrustedSigner, WouldOverwrite
from nnseal.format import keys, trust
from nnseal.package import signing
from nnseal.verify.signature import verify_bundle


@pytest.fixture()
def trust_dir(tmp_path) -> Path:
    return tmp_path / "trusted"


def cli(trust_dir: Path, *args):
    return run_cli(*args, env={TRUST_FOLDER_ENV: str(trust_dir)})


def test_cli_round_trip_add_list_remove(tmp_path, trust_dir):
    alice = keys.generate_key_pair(tmp_path / "alice")
    bob = keys.generate_key_pair(tmp_path / "bob")

    empty = cli(trust_dir, "trust", "list")
    assert empty.exit_code == 0 and "no trusted keys" in empty.stdout

    added = cli(trust_dir, "trust", "add", alice.public_path, "--name", "alice-lab")
    assert added.exit_code == 0, added.stderr
    assert alice.fingerprint in added.stdout and "alice-lab" in added.stdout
    assert cli(trust_dir, "trust", "add", bob.public_path).exit_code == 0  # named after the file: bob

    listed = cli(trust_dir, "trust", "list")
    assert listed.exit_code == 0
    assert listed.stdout.splitlines() == [f"alice-lab  {alice.fingerprint}", f"bob        {bob.fingerprint}"]

    as_json = json.loads(cli(trust_dir, "trust", "list", "--json").stdout)
    assert as_json["folder"] == str(trust_dir)
    assert {(k["name"], k["fingerprint"]) for k in as_json["keys"]} == {
        ("alice-lab", alice.fingerprint), ("bob", bob.fingerprint)}

    removed = cli(trust_dir, "trust", "remove", bob.fingerprint[:12])
    assert removed.exit_code == 0 and bob.fingerprint in removed.stdout
    assert cli(trust_dir, "trust", "remove", "alice-lab").exit_code == 0
    assert json.loads(cli(trust_dir, "trust", "list", "--json").stdout)["keys"] == []


def test_cli_refusals_are_one_line(tmp_path, trust_dir):
    alice = keys.generate_key_pair(tmp_path / "alice")
    assert cli(trust_dir, "trust", "add", alice.public_path).exit_code == 0
    assert_one_line_refusal(cli(trust_dir, "trust", "add", alice.public_path, "--name", "again"),
                            "already trusted", alice.fingerprint, "'alice'")
    other = keys.generate_key_pair(tmp_path / "other")
    assert_one_line_refusal(cli(trust_dir, "trust", "add", other.public_path, "--name", "alice"),
                            "already trusted under the name 'alice'")
    assert_one_line_refusal(cli(trust_dir, "trust", "add", other.private_path), "is a private key")
    bad_name = cli(trust_dir, "trust", "add", other.public_path, "--name", "../escape")
    assert bad_name.exit_code == 2
    missing = cli(trust_dir, "trust", "remove", "nobody")
    assert missing.exit_code == 3 and "no trusted key" in missing.stderr
    assert sorted(p.name for p in trust_dir.iterdir()) == ["alice.pub"]


@pytest.mark.interop
def test_ed25519_key_is_not_trusted(tmp_path, trust_dir):
    private = tmp_path / "ed.pem"
    public = tmp_path / "ed.pub"
    subprocess.run(["/usr/bin/openssl", "genpkey", "-algorithm", "ED25519", "-out", str(private)], check=True,
                   timeout=60)
    subprocess.run(["/usr/bin/openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True,
                   timeout=60)
    assert_one_line_refusal(cli(trust_dir, "trust", "add", public), "Ed25519", "ECDSA P-256/384/521")
    assert not trust_dir.exists()


def test_stored_key_is_the_canonical_pem_only(tmp_path, trust_dir):
    files = keys.generate_key_pair(tmp_path / "k")
    padded = tmp_path / "padded.pub"
    padded.write_bytes(b"comment before the key\n" + files.public_path.read_bytes() + b"\ntrailing\n")
    added = trust.add_trusted_key(trust_dir, padded)
    assert added.path.read_bytes() == files.public_path.read_bytes()
    assert added.fingerprint == files.fingerprint


def test_load_combines_trusted_key_files_and_folder_once_each(tmp_path, trust_dir):
    a = keys.generate_key_pair(tmp_path / "a")
    b = keys.generate_key_pair(tmp_path / "b")
    trust.add_trusted_key(trust_dir, a.public_path)
    loaded = trust.load_trusted_keys([b.public_path, a.public_path], trust_dir)
    assert [k.fingerprint for k in loaded] == [b.fingerprint, a.fingerprint]
    assert all(keys.fingerprint(k.key) == k.fingerprint for k in loaded)

    bundle = signing.sign_manifest("m", {"x": "0" * 64}, keys.load_private_key(b.private_path))
    assert verify_bundle(bundle, [k.key for k in loaded]).signer_fingerprint == b.fingerprint
    with pytest.raises(UntrustedSigner, match=b.fingerprint):
        verify_bundle(bundle, [k.key for k in trust.load_trusted_keys(folder=trust_dir)])


def test_broken_or_linked_file_in_trust_folder_is_refused(tmp_path, trust_dir):
    trust_dir.mkdir()
    (trust_dir / "broken.pub").write_text("garbage")
    with pytest.raises(BadKey, match="broken.pub"):
        trust.load_trusted_keys(folder=trust_dir)
    (trust_dir / "broken.pub").unlink()
    outside = keys.generate_key_pair(tmp_path / "outside")
    (trust_dir / "linked.pub").symlink_to(outside.public_path)
    with pytest.raises(BadKey, match="not a regular file"):
        trust.list_trusted_keys(trust_dir)


def test_remove_needs_an_unambiguous_match(tmp_path, trust_dir):
    files = keys.generate_key_pair(tmp_path / "k")
    trust.add_trusted_key(trust_dir, files.public_path, name="k")
    with pytest.raises(EnvironmentProblem):
        trust.remove_trusted_key(trust_dir, files.fingerprint[:4])  # too short to count as a fingerprint
    assert trust.remove_trusted_key(trust_dir, files.fingerprint).name == "k"
    assert trust.list_trusted_keys(trust_dir) == []


def test_add_refuses_invalid_names(tmp_path, trust_dir):
    files = keys.generate_key_pair(tmp_path / "k")
    for bad in ("../k", "a/b", ".hidden", "", "x" * 65, "name."):
        with pytest.raises(InvalidArgument):
            trust.add_trusted_key(trust_dir, files.public_path, name=bad)
    assert not trust_dir.exists()


def test_default_folder_follows_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_FOLDER_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert trust_folder_from_environment() == tmp_path / "xdg" / "nnseal" / "trusted_keys"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert trust_folder_from_environment() == tmp_path / "home" / ".config" / "nnseal" / "trusted_keys"
    monkeypatch.setenv(TRUST_FOLDER_ENV, str(tmp_path / "explicit"))
    assert trust_folder_from_environment() == tmp_path / "explicit"


def test_cli_uses_xdg_config_home_when_no_override(tmp_path):
    files = keys.generate_key_pair(tmp_path / "k")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), TRUST_FOLDER_ENV: ""}
    assert run_cli("trust", "add", files.public_path, env=env).exit_code == 0
    assert (tmp_path / "cfg" / "nnseal" / "trusted_keys" / "k.pub").is_file()


def test_key_and_signature_code_does_not_import_torch():
    code = ("import sys; import nnseal.format.keys, nnseal.format.oms, nnseal.package.signing, "
            "nnseal.verify.signature, nnseal.format.trust, nnseal.commands.keygen, nnseal.commands.trust; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_add_refuses_duplicates_by_fingerprint_not_name(tmp_path, trust_dir):
    files = keys.generate_key_pair(tmp_path / "k")
    copy = tmp_path / "copy.pub"
    copy.write_bytes(files.public_path.read_bytes())
    trust.add_trusted_key(trust_dir, files.public_path)
    with pytest.raises(WouldOverwrite, match="already trusted as 'k'"):
        trust.add_trusted_key(trust_dir, copy)
