"""Shared fixtures. Hostile inputs are generated in code by the tests/hostile_*.py modules."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]

# CI must be reproducible: the same examples every run (and no example database left
# behind). Locally, hypothesis explores new examples each time.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def toy_results_session(tmp_path_factory) -> Path:
    """A toy nnU-Net results folder (2 folds, final + best), built once; copy before changing it."""
    from nnseal import toy_model

    root = tmp_path_factory.mktemp("toy_results")
    toy_model.build_results(root)
    return root


@pytest.fixture()
def toy_model_folder(toy_results_session) -> Path:
    from nnseal import toy_model

    return toy_results_session / toy_model.DATASET / toy_model.model_folder_name("2d")


@pytest.fixture()
def canary(tmp_path) -> Path:
    """A path a hostile payload would create; tests assert it never appears."""
    path = tmp_path / "CANARY_PAYLOAD_RAN"
    assert not path.exists()
    return path


def tree_listing(root: Path) -> dict[str, tuple[int, str]]:
    """Relative path -> (size, sha256) of every file under root, symlinks included as links."""
    out = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = (-1, "symlink:" + os.readlink(p))
            elif p.is_file():
                out[rel] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            else:
                out[rel + "/"] = (0, "dir")
    return out


def run_cli(*args, env=None, cwd=None, input=None) -> subprocess.CompletedProcess:
    """Run the installed `nnseal` console script as a user would (a real subprocess)."""
    full_env = dict(os.environ)
    full_env.pop("NNSEAL_DEBUG", None)
    if env:
        full_env.update(env)
    exe = Path(sys.executable).with_name("nnseal")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=full_env,
                          cwd=cwd, input=input, timeout=300)


def assert_one_line_refusal(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 1, exactly one line on stderr, no traceback, mentioning each needle."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="session")
def session_key(tmp_path_factory):
    """An ECDSA P-256 key pair (KeyFiles: private_path, public_path, fingerprint)."""
    from nnseal.format.keys import generate_key_pair

    return generate_key_pair(tmp_path_factory.mktemp("keys") / "signer")


@pytest.fixture(scope="session")
def toy_package_session(tmp_path_factory, toy_results_session, session_key) -> Path:
    """The toy model exported and signed once; copy before changing it."""
    from nnseal import toy_model
    from nnseal.package.export import export_model_to_zip

    out = tmp_path_factory.mktemp("package") / "Dataset042_Toy.zip"
    model = toy_results_session / toy_model.DATASET / toy_model.model_folder_name("2d")
    export_model_to_zip(model, out, key=session_key.private_path)
    return out


@pytest.fixture(autouse=True)
def isolated_trust(tmp_path, monkeypatch) -> Path:
    """Every test gets an empty trust folder: no key trusted on this machine leaks in."""
    folder = tmp_path / "trusted_keys"
    monkeypatch.setenv("NNSEAL_TRUSTED_KEYS", str(folder))
    return folder
