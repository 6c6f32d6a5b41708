"""SIGKILL and SIGTERM at every kind of step of a two-model install over an older install.

SIGKILL runs no cleanup: whatever nnU-Net can see must still be whole models (each the old
or the new one), and the next install must leave exactly the clean result. SIGTERM runs the
cleanup: before the swap the results folder is exactly as it was (exit 143), once the swap
has begun the install completes (exit 0). Every case compares the full listing (paths,
sizes, sha256) of the results folder.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from nnseal import toy_model
from tests.helpers import tree_listing

# The child counts calls of the install's steps (extraction, rebuild, receipt, each step of the
# commit and of the cleanup) and at the Nth one sends itself a signal; then runs the CLI install.
CHILD = textwrap.dedent("""
    import os, signal, sys
    import nnseal.verify.install_signed as signed
    import nnseal.verify.rebuild as rebuild
    import nnseal.verify.staging as staging

    how, nth, package, results, key = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
    calls, commit = [0], []

    def step(function):
        def wrapped(*args, **kwargs):
            calls[0] += 1
            if function.__name__ == "_staged_state" and not commit:
                commit.append(calls[0])
            if calls[0] == nth:
                os.kill(os.getpid(), signal.SIGKILL if how == "kill" else signal.SIGTERM)
            return function(*args, **kwargs)
        return wrapped

    for module, name in [(signed, "extract_entry"), (rebuild, "rebuild_checkpoint_from_entry"),
                         (signed, "write_model_receipt"), (staging, "_staged_state"),
                         (staging, "_make_dataset_folder"), (staging, "_rename_new"), (staging, "_replace_folder"),
                         (staging, "_check_against_receipt"), (staging, "_rmtree")]:
        setattr(module, name, step(getattr(module, name)))
    from nnseal.cli import main
    sys.argv = ["nnseal", "install", package, "-o", results, "--trusted-key", key, "--force", "--quiet"]
    try:
        main()
    finally:
        sys.stderr.write(f"commit={commit[0] if commit else 0} steps={calls[0]}\\n")
""")

CONFIGS = {"2d": toy_model.ToySpec(), "3d_fullres": toy_model.ToySpec(configuration="3d_fullres", features=(4, 8),
                                                                      patch_size=(8, 8, 8))}
CASES = 24


def _package(root, name, folds, keys):
    from nnseal.package.export import export_model_to_zip

    folders = [toy_model.build_results(root / name, spec=spec, folds=folds) for spec in CONFIGS.values()]
    package = root / f"{name}.zip"
    export_model_to_zip(folders, package, key=keys.private_path)
    return package


def _run(how, nth, package, results, key):
    return subprocess.run([sys.executable, "-c", CHILD, how, str(nth), str(package), str(results), str(key)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """An old and a new two-model package (different folds, so every file differs), the results
    folder with the old one installed, the clean result of installing the new one, and the steps
    to interrupt: the last 12 (receipts, commit, cleanup) and 12 spread over the rest."""
    from nnseal.format.keys import generate_key_pair
    from nnseal.verify.install import install_model_from_zip

    root = tmp_path_factory.mktemp("crash")
    keys = generate_key_pair(root / "key")
    old, new = _package(root, "old", (2, 3), keys), _package(root, "new", (0, 1), keys)
    template = root / "template"
    install_model_from_zip(old, template, trusted_keys=[keys.public_path])
    clean = root / "clean"
    shutil.copytree(template, clean)
    install_model_from_zip(new, clean, trusted_keys=[keys.public_path], force=True)
    counted = _run("count", 0, new, shutil.copytree(template, root / "count"), keys.public_path)
    assert counted.returncode == 0, counted.stderr
    total = int(counted.stderr.rsplit("steps=", 1)[1])
    commit = int(counted.stderr.rsplit("commit=", 1)[1].split()[0])
    assert 0 < commit < total
    early = total - 12
    steps = sorted({1 + i * (early - 1) // 11 for i in range(12)} | set(range(early + 1, total + 1)))
    assert len(steps) >= CASES, (total, steps)
    return {"new": new, "key": keys.public_path, "template": template, "before": tree_listing(template),
            "after": tree_listing(clean), "steps": steps, "commit": commit}


def _model_listings(listing):
    by_model: dict[str, dict] = {}
    for path, value in listing.items():
        parts = path.split("/")
        if len(parts) >= 3 and parts[0] == toy_model.DATASET:
            by_model.setdefault(parts[1], {})[path] = value
    return by_model


@pytest.mark.parametrize("case", range(CASES))
def test_sigkill_leaves_whole_models_and_the_next_run_cleans_up(setup, tmp_path, case):
    nth = setup["steps"][case]
    results = shutil.copytree(setup["template"], tmp_path / "results")
    proc = _run("kill", nth, setup["new"], results, setup["key"])
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)

    old, new = _model_listings(setup["before"]), _model_listings(setup["after"])
    for model, listing in _model_listings(tree_listing(results)).items():  # what nnU-Net can see
        assert listing in (old[model], new[model]), f"partial or mixed model after SIGKILL at step {nth}: {model}"
    again = _run("count", 0, setup["new"], results, setup["key"])
    assert again.returncode == 0, again.stderr
    assert tree_listing(results) == setup["after"], "the next run must leave exactly the clean result"


@pytest.mark.parametrize("case", range(CASES))
def test_sigterm_undoes_everything_before_the_swap_and_completes_after(setup, tmp_path, case):
    nth = setup["steps"][case]
    results = shutil.copytree(setup["template"], tmp_path / "results")
    proc = _run("term", nth, setup["new"], results, setup["key"])
    if nth < setup["commit"]:  # before the swap: undone
        assert proc.returncode == 143, (nth, proc.returncode, proc.stderr)
        assert "nnseal: interrupted (SIGTERM)" in proc.stderr
        assert tree_listing(results) == setup["before"], f"SIGTERM at step {nth} changed the results folder"
    else:  # the swap had begun: installed, and no old bytes or staging left
        assert proc.returncode == 0, (nth, proc.returncode, proc.stderr)
        assert tree_listing(results) == setup["after"], f"SIGTERM at step {nth}: old bytes or leftovers"


def test_sigterm_before_the_swap_into_a_missing_results_folder_creates_nothing(setup, tmp_path):
    results = tmp_path / "new" / "results"
    proc = _run("term", setup["commit"] - 1, setup["new"], results, setup["key"])
    assert proc.returncode == 143, proc.stderr
    assert not (tmp_path / "new").exists()
