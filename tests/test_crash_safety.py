"""SIGKILL during install: no partial model is ever visible, and the next install cleans up."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from nnseal import toy_model

# The child wraps one internal step so that its Nth call kills the process outright
# (SIGKILL: no finally blocks, no cleanup), then runs a normal install.
CHILD = textwrap.dedent("""
    import os, signal, sys
    import nnseal.verify.install as install
    import nnseal.verify.rebuild as rebuild

    point, nth, package, results, key = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
    calls = [0]

    def kill_on_nth(function):
        def wrapped(*args, **kwargs):
            calls[0] += 1
            if calls[0] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
            return function(*args, **kwargs)
        return wrapped

    if point == "extract":
        install._extract = kill_on_nth(install._extract)
    elif point == "rebuild":
        rebuild.rebuild_checkpoint_from_entry = kill_on_nth(rebuild.rebuild_checkpoint_from_entry)
    elif point == "receipt":
        install._write_model_receipt = kill_on_nth(install._write_model_receipt)
    elif point == "move":
        install.os.rename = kill_on_nth(install.os.rename)
    install.install_model_from_zip(package, results, trusted_keys=[key])
    print("finished without being killed")
""")

CONFIGS = {"2d": toy_model.ToySpec(), "3d_fullres": toy_model.ToySpec(configuration="3d_fullres", features=(4, 8),
                                                                      patch_size=(8, 8, 8))}


@pytest.fixture(scope="module")
def two_model_package(tmp_path_factory):
    """One dataset, two configurations, 2 folds x 2 checkpoints each: 8 checkpoints."""
    from nnseal.format.keys import generate_key_pair
    from nnseal.package.export import export_model_to_zip

    root = tmp_path_factory.mktemp("crash")
    folders = [toy_model.build_results(root / "results", spec=spec) for spec in CONFIGS.values()]
    keys = generate_key_pair(root / "key")
    package = root / "two.zip"
    export_model_to_zip(folders, package, key=keys.private_path)
    return package, keys.public_path


def _complete(model_dir) -> bool:
    from nnseal.verify.receipt import check_installed

    return check_installed(model_dir).ok and len(list(model_dir.glob("fold_*/checkpoint_*.pth"))) == 4


@pytest.mark.parametrize("point, nth", [
    ("extract", 1), ("extract", 7), ("rebuild", 2), ("rebuild", 6), ("receipt", 2), ("move", 1), ("move", 2),
])
def test_sigkill_leaves_no_partial_model(two_model_package, tmp_path, point, nth):
    package, public_key = two_model_package
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-c", CHILD, point, str(nth), str(package), str(results),
                           str(public_key)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr)

    dataset = results / toy_model.DATASET
    visible = sorted(p for p in dataset.iterdir()) if dataset.exists() else []
    for model_dir in visible:  # whatever nnU-Net can see is a whole, verified model
        assert _complete(model_dir), f"partial model visible after SIGKILL at {point} #{nth}: {model_dir}"
    assert list(results.glob(".nnseal-staging-*")), "the killed install should have left its staging folder"

    from nnseal.verify.install import install_model_from_zip

    report = install_model_from_zip(package, results, trusted_keys=[public_key], force=bool(visible))
    assert len(report.models) == 2
    assert all(_complete(dataset / toy_model.model_folder_name(c)) for c in CONFIGS)
    assert not list(results.glob(".nnseal-staging-*")), "stale staging folder not removed"
