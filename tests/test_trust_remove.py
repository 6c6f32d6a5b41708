"""`nnseal trust remove`: by exact name, full fingerprint or unique 8+ hex prefix; never a guess."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_cli

from nnseal.commands._common import TRUST_FOLDER_ENV
from nnseal.errors import EnvironmentProblem, InvalidArgument
from nnseal.format import keys, trust


@pytest.fixture()
def trust_dir(tmp_path) -> Path:
    return tmp_path / "trusted"


def cli(trust_dir: Path, *args):
    return run_cli(*args, env={TRUST_FOLDER_ENV: str(trust_dir)})


def one_line(proc, *needles):
    """Exactly one line on stderr, no traceback, naming each needle (any exit code)."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nnseal: ") and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def names(trust_dir: Path) -> list[str]:
    return [k.name for k in trust.list_trusted_keys(trust_dir)]


def test_a_name_that_is_another_keys_fingerprint_prefix_is_ambiguous(tmp_path, trust_dir):
    """The reported bug: `trust remove c773a0d2` removed the key *named* c773a0d2."""
    target = keys.generate_key_pair(tmp_path / "target")
    decoy = keys.generate_key_pair(tmp_path / "decoy")
    prefix = target.fingerprint[:8]
    trust.add_trusted_key(trust_dir, target.public_path, name="target")
    trust.add_trusted_key(trust_dir, decoy.public_path, name=prefix)

    refused = cli(trust_dir, "trust", "remove", prefix)
    assert refused.exit_code == 2
    one_line(refused, "matches several trusted keys", f"target ({target.fingerprint})",
                                     f"{prefix} ({decoy.fingerprint})")
    assert names(trust_dir) == sorted(["target", prefix])

    # A longer prefix is no longer the decoy's name: it means the fingerprint.
    removed = cli(trust_dir, "trust", "remove", target.fingerprint[:12])
    assert removed.exit_code == 0, removed.stderr
    assert f"removed target: {target.fingerprint}" in removed.stdout
    assert names(trust_dir) == [prefix]
    # With no key left that has this prefix, the exact name decides.
    assert cli(trust_dir, "trust", "remove", prefix).exit_code == 0
    assert names(trust_dir) == []


def test_a_name_equal_to_its_own_fingerprint_prefix_is_that_key(tmp_path, trust_dir):
    files = keys.generate_key_pair(tmp_path / "k")
    own = files.fingerprint[:16]
    trust.add_trusted_key(trust_dir, files.public_path, name=own)
    assert trust.remove_trusted_key(trust_dir, own).fingerprint == files.fingerprint
    assert names(trust_dir) == []


def test_full_fingerprint_and_uppercase_prefix(tmp_path, trust_dir):
    a = keys.generate_key_pair(tmp_path / "a")
    b = keys.generate_key_pair(tmp_path / "b")
    trust.add_trusted_key(trust_dir, a.public_path)
    trust.add_trusted_key(trust_dir, b.public_path)
    assert trust.remove_trusted_key(trust_dir, f"  {a.fingerprint}  ").name == "a"
    assert trust.remove_trusted_key(trust_dir, b.fingerprint[:10].upper()).name == "b"
    assert names(trust_dir) == []


def test_a_short_or_unknown_argument_removes_nothing(tmp_path, trust_dir):
    files = keys.generate_key_pair(tmp_path / "k")
    trust.add_trusted_key(trust_dir, files.public_path, name="k")
    with pytest.raises(EnvironmentProblem, match="at least 8 hex digits"):
        trust.remove_trusted_key(trust_dir, files.fingerprint[:7])
    with pytest.raises(EnvironmentProblem, match="no trusted key"):
        trust.remove_trusted_key(trust_dir, "0" * 8 if not files.fingerprint.startswith("0" * 8) else "f" * 8)
    with pytest.raises(EnvironmentProblem):
        trust.remove_trusted_key(trust_dir, "K")  # names are exact, case included
    missing = cli(trust_dir, "trust", "remove", "nobody")
    one_line(missing, "no trusted key named or fingerprinted 'nobody'", "trust list")
    assert missing.exit_code == 3
    assert names(trust_dir) == ["k"]


def test_a_prefix_several_fingerprints_share_lists_them_all(tmp_path, trust_dir, monkeypatch):
    """Two real keys sharing 8 hex digits would take ~2^32 tries; the choice is made on the listing."""
    real = keys.generate_key_pair(tmp_path / "k")
    fake = [trust.TrustedKey(name, fingerprint, tmp_path / f"{name}.pub", keys.load_public_key(real.public_path))
            for name, fingerprint in (("one", "c773a0d2" + "1" * 56), ("two", "c773a0d2" + "2" * 56),
                                      ("three", "d" * 64))]
    monkeypatch.setattr(trust, "list_trusted_keys", lambda folder: fake)
    with pytest.raises(InvalidArgument) as refused:
        trust.find_trusted_key(trust_dir, "c773a0d2")
    assert "one (c773a0d2" in refused.value.reason and "two (c773a0d2" in refused.value.reason
    assert "three" not in refused.value.reason
    assert trust.find_trusted_key(trust_dir, "c773a0d21").name == "one"
    assert trust.find_trusted_key(trust_dir, "three").name == "three"
    assert trust.find_trusted_key(trust_dir, "dddddddd").name == "three"
