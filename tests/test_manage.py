"""Model management: `nnseal list`, `nnseal uninstall`, `nnseal verify --all`, and the idempotent
re-runs (`trust add` of a key already trusted under that name, `install` of the package already
installed). Through the CLI (run_cli); where locks and crashes matter, real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import assert_one_line_refusal, nnunet_export_zip, run_cli, tree_listing

from nnseal import toy_model

MODEL = f"{toy_model.DATASET}/{toy_model.model_folder_name('2d')}"
OTHER = f"{toy_model.DATASET}/{toy_model.model_folder_name('3d_fullres')}"


@pytest.fixture(scope="module")
def installed_template(tmp_path_factory, toy_package_session, session_key) -> Path:
    """A results folder holding the toy package, installed once; copy before changing it."""
    results = tmp_path_factory.mktemp("installed") / "results"
    proc = run_cli("install", toy_package_session, "--results", results, "--trusted-key", session_key.public_path)
    assert proc.exit_code == 0, proc.stderr
    return results


@pytest.fixture()
def results(installed_template, tmp_path) -> Path:
    return Path(shutil.copytree(installed_template, tmp_path / "results"))


def _list(results: Path, *args) -> list[dict]:
    proc = run_cli("list", "--results", results, "--json", *args)
    assert proc.exit_code == 0, proc.stderr
    return json.loads(proc.stdout)["models"]


def _foreign_model(results: Path) -> Path:
    """A model folder nnseal did not install (trained here, or copied by hand): no receipt."""
    folder = results / OTHER
    (folder / "fold_0").mkdir(parents=True)
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"someone's training run")
    (folder / "plans.json").write_text("{}")
    return folder


# --- list ----------------------------------------------------------------------------------------


def test_list_of_a_missing_or_empty_results_folder_lists_nothing(tmp_path):
    missing = run_cli("list", "--results", tmp_path / "missing")
    assert missing.exit_code == 0 and "no models" in missing.stdout and "no such folder" in missing.stdout
    assert not (tmp_path / "missing").exists()  # a listing creates nothing
    (tmp_path / "empty").mkdir()
    assert _list(tmp_path / "empty") == []
    unset = run_cli("list", env={"nnUNet_results": None})
    assert unset.exit_code == 3 and "nnUNet_results" in unset.stderr


def test_list_shows_signer_by_trust_name_provenance_folds_and_foreign_folders(results, session_key):
    assert run_cli("trust", "add", session_key.public_path, "--name", "lab").exit_code == 0
    _foreign_model(results)
    items = {item["name"]: item for item in _list(results)}
    assert sorted(items) == [MODEL, OTHER]
    ours, foreign = items[MODEL], items[OTHER]
    assert (ours["kind"], ours["configuration"], ours["trainer"], ours["plans"]) == ("model", "2d", "nnUNetTrainer",
                                                                                    "nnUNetPlans")
    assert ours["folds"] == ["0", "1"] and ours["checkpoints"] == ["checkpoint_final.pth", "checkpoint_best.pth"]
    assert (ours["provenance"], ours["signer_fingerprint"], ours["signer_name"]) == ("signed", session_key.fingerprint,
                                                                                    "lab")
    assert (ours["status"], ours["check"], ours["installed_by_nnseal"]) == ("ok", "quick", True)
    assert ours["release"] == "1.0" and ours["created"]
    assert (foreign["status"], foreign["installed_by_nnseal"], foreign["provenance"]) == ("no receipt", False, None)
    assert foreign["folds"] == ["0"] and foreign["checkpoints"] == ["checkpoint_final.pth"]
    table = run_cli("list", "--results", results)
    lines = table.stdout.splitlines()
    assert table.exit_code == 0 and lines[0].split()[0] == "MODEL"
    ours_line = next(line for line in lines if line.startswith(MODEL + " "))
    assert "lab (key sha256:" in ours_line and "signed" in ours_line and ours_line.endswith("ok")
    assert next(line for line in lines if line.startswith(OTHER)).endswith("no receipt (not installed by nnseal)")


def test_list_sees_drift_quickly_and_check_rehashes_what_mtimes_hide(results):
    model = results / MODEL
    plans = model / "plans.json"
    stat = plans.stat()
    plans.write_text(plans.read_text().replace("PlainConvUNet", "PlainConvUNeT"))
    os.utime(plans, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # a change that keeps the old mtime
    (model / "fold_0" / "checkpoint_latest.pth").write_bytes(b"added later")
    (model / "dataset.json").unlink()
    quick = _list(results)[0]
    assert quick["status"] == "drifted" and quick["check"] == "quick"
    assert (quick["modified"], quick["missing"], quick["extra"]) == ([], ["dataset.json"],
                                                                     ["fold_0/checkpoint_latest.pth"])
    exact = _list(results, "--check")[0]
    assert exact["check"] == "hash" and exact["modified"] == ["plans.json"]
    assert "drifted: 1 modified, 1 missing, 1 extra" in run_cli("list", "--results", results, "--check").stdout
    # A newer mtime is enough for the quick check.
    os.utime(model / "dataset_fingerprint.json")
    time.sleep(0.01)
    with open(model / "dataset_fingerprint.json", "a") as handle:
        handle.write(" ")
    assert _list(results)[0]["modified"] == ["dataset_fingerprint.json"]


def test_list_shows_an_unsigned_install(monkeypatch, toy_results_session, tmp_path):
    legacy = tmp_path / "legacy.zip"
    nnunet_export_zip(monkeypatch, toy_results_session, legacy, configurations=("2d",), folds=(0, 1))
    results = tmp_path / "results"
    assert run_cli("install", legacy, "--unsigned", "--results", results).exit_code == 0
    [item] = _list(results)
    assert (item["provenance"], item["signer_fingerprint"], item["status"]) == ("unsigned", None, "ok")
    row = run_cli("list", "--results", results).stdout.splitlines()[1]
    assert " unsigned " in row and row.endswith("ok")
    # The same zip again: already installed, nothing written (its receipt records the zip's sha256).
    before = tree_listing(results)
    again = run_cli("install", legacy, "--unsigned", "--results", results)
    assert again.exit_code == 0 and "already installed" in again.stdout
    assert tree_listing(results) == before


# --- verify --all ----------------------------------------------------------------------------------


def test_verify_all_checks_every_installed_model(results):
    _foreign_model(results)
    ok = run_cli("verify", "--all", "--results", results)
    assert ok.exit_code == 0, ok.stderr
    assert ok.stdout.splitlines() == [f"{MODEL}: OK (signed, {ok.stdout.split('(signed, ')[1].split(')')[0]})",
                                      f"{OTHER}: not installed by nnseal (no receipt), not checked"]
    with open(results / MODEL / "fold_1" / "checkpoint_best.pth", "r+b") as handle:
        handle.seek(64)
        handle.write(b"\x00")
    os.utime(results / MODEL / "fold_1" / "checkpoint_best.pth", ns=(0, 0))  # --all re-hashes: mtimes do not hide it
    drifted = run_cli("verify", "--all", "--results", results)
    assert drifted.exit_code == 1
    assert f"{MODEL}: DRIFTED: modified: fold_1/checkpoint_best.pth" in drifted.stdout.splitlines()
    assert_one_line_refusal(drifted, "1 of 2 installed folders differ")
    as_json = run_cli("verify", "--all", "--results", results, "--json")
    assert as_json.exit_code == 1
    reports = json.loads(as_json.stdout)["models"]
    assert [(r["name"], r["status"], r["modified"]) for r in reports] == [
        (MODEL, "drifted", ["fold_1/checkpoint_best.pth"]), (OTHER, "no receipt", [])]


def test_verify_all_usage(results, toy_package_session):
    assert run_cli("verify").exit_code == 2
    assert run_cli("verify", "--all", toy_package_session, "--results", results).exit_code == 2
    assert run_cli("verify", toy_package_session, "--results", results).exit_code == 2
    empty = run_cli("verify", "--all", "--results", results.parent / "none")
    assert empty.exit_code == 0 and "no models" in empty.stdout


# --- uninstall -------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["path", "relative", "nnunet"])
def test_uninstall_leaves_the_results_folder_as_before_the_install(results, how):
    target = {"path": [results / MODEL], "relative": [MODEL], "nnunet": ["-d", "42", "-c", "2d"]}[how]
    proc = run_cli("uninstall", *target, "--results", results)
    assert proc.exit_code == 0, proc.stderr
    assert f"removed {results / MODEL}" in proc.stdout.splitlines()
    assert tree_listing(results) == {}  # the dataset folder went too, and no lock or trash is left


def test_uninstall_refuses_a_folder_nnseal_did_not_install_unless_forced(results):
    foreign = _foreign_model(results)
    before = tree_listing(results)
    proc = run_cli("uninstall", foreign)
    assert_one_line_refusal(proc, "not installed by nnseal", "--force")
    assert tree_listing(results) == before
    forced = run_cli("uninstall", foreign, "--force", "--json")
    assert forced.exit_code == 0, forced.stderr
    report = json.loads(forced.stdout)
    assert report["removed"] == [str(foreign)] and report["forced"] == [f"{foreign}: no receipt"]
    assert tree_listing(results) == {k: v for k, v in before.items() if not k.startswith(OTHER)}


def test_uninstall_refuses_a_drifted_model_unless_forced(results):
    (results / MODEL / "fold_0" / "my_predictions.txt").write_text("work done on the installed model")
    before = tree_listing(results)
    proc = run_cli("uninstall", MODEL, "--results", results)
    assert_one_line_refusal(proc, "differ from the install receipt", "extra fold_0/my_predictions.txt", "--force")
    assert tree_listing(results) == before
    forced = run_cli("uninstall", MODEL, "--results", results, "--force")
    assert forced.exit_code == 0 and "removed with --force" in forced.stderr
    assert tree_listing(results) == {}


def test_uninstall_of_a_missing_model_or_a_non_model_folder(results, tmp_path):
    before = tree_listing(results)
    missing = run_cli("uninstall", "-d", "42", "-c", "3d_fullres", "--results", results)
    assert missing.exit_code == 3 and "no such model folder" in missing.stderr
    assert run_cli("uninstall", "-d", "7", "-c", "2d", "--results", results).exit_code == 3
    assert_one_line_refusal(run_cli("uninstall", results / toy_model.DATASET), "not a model folder")
    assert run_cli("uninstall", MODEL, "-d", "42", "-c", "2d", "--results", results).exit_code == 2
    assert tree_listing(results) == before


def test_reinstall_after_uninstall(results, toy_package_session, session_key, installed_template):
    assert run_cli("uninstall", MODEL, "--results", results).exit_code == 0
    proc = run_cli("install", toy_package_session, "--results", results, "--trusted-key", session_key.public_path)
    assert proc.exit_code == 0 and "already installed" not in proc.stdout
    assert tree_listing(results) == tree_listing(installed_template)


# --- idempotent re-runs ----------------------------------------------------------------------------


def test_trust_add_of_a_trusted_key_under_its_name_is_a_no_op(tmp_path, isolated_trust):
    from nnseal.format.keys import generate_key_pair

    key = generate_key_pair(tmp_path / "lab")
    assert run_cli("trust", "add", key.public_path, "--name", "lab").exit_code == 0
    before = tree_listing(isolated_trust)
    again = run_cli("trust", "add", key.public_path, "--name", "lab")
    assert again.exit_code == 0 and "already trusted lab" in again.stdout
    assert run_cli("trust", "add", key.public_path).exit_code == 0  # default name: the file's stem, "lab"
    assert tree_listing(isolated_trust) == before
    assert_one_line_refusal(run_cli("trust", "add", key.public_path, "--name", "other"), "already trusted as 'lab'")
    other = generate_key_pair(tmp_path / "other")
    assert_one_line_refusal(run_cli("trust", "add", other.public_path, "--name", "lab"),
                            "a different key is already trusted under the name 'lab'")
    assert tree_listing(isolated_trust) == before


def test_install_of_the_installed_package_is_a_no_op(results, toy_package_session, session_key):
    checkpoint = results / MODEL / "fold_0" / "checkpoint_final.pth"
    before, inode = tree_listing(results), checkpoint.stat().st_ino
    proc = run_cli("install", toy_package_session, "--results", results, "--trusted-key", session_key.public_path,
                   "--json")
    assert proc.exit_code == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["already_installed"] == [str(results / MODEL)] and report["replaced"] == []
    assert tree_listing(results) == before and checkpoint.stat().st_ino == inode  # nothing rewritten
    text = run_cli("install", toy_package_session, "--results", results, "--trusted-key", session_key.public_path)
    assert text.exit_code == 0 and f"already installed {results / MODEL}" in text.stdout


def test_install_of_another_package_for_the_installed_folder_still_needs_force(results, toy_results_session,
                                                                               session_key, tmp_path):
    from nnseal.package.export import export_model_to_zip

    newer = tmp_path / "newer.zip"
    export_model_to_zip(toy_results_session / MODEL, newer, key=session_key.private_path,
                        metadata={"release": "2.0"})
    before = tree_listing(results)
    assert_one_line_refusal(run_cli("install", newer, "--results", results, "--trusted-key",
                                    session_key.public_path), "exists", "--force")
    assert tree_listing(results) == before
    proc = run_cli("install", newer, "--results", results, "--trusted-key", session_key.public_path, "--force")
    assert proc.exit_code == 0 and "replaced" in proc.stdout


# --- real processes: the lock, and SIGKILL -----------------------------------------------------

# The uninstall pauses while it holds the results folder's commit lock (its moves are about to
# happen) until the test creates GO; or SIGKILLs itself at the Nth step of its moves and cleanup.
CHILD = textwrap.dedent("""
    import os, signal, sys, time
    import nnseal.verify.uninstall as uninstall
    from nnseal.locks import Lock

    how, arg, results, model = sys.argv[1:5]
    calls = [0]

    def step(function):
        def wrapped(*args, **kwargs):
            calls[0] += 1
            if how == "kill" and calls[0] == int(arg):
                os.kill(os.getpid(), signal.SIGKILL)
            return function(*args, **kwargs)
        return wrapped

    if how == "pause":
        real = uninstall._move_to_trash
        def paused(*args, **kwargs):
            open(arg + ".ready", "w").close()
            while not os.path.exists(arg + ".go"):
                time.sleep(0.05)
            return real(*args, **kwargs)
        uninstall._move_to_trash = paused
    else:
        os.rename = step(os.rename)
        for name in ("_remove_if_empty", "_delete"):
            setattr(uninstall, name, step(getattr(uninstall, name)))
        Lock.release = step(Lock.release)
    from nnseal.cli import main
    sys.argv = ["nnseal", "uninstall", model, "--results", results]
    try:
        main()
    finally:
        sys.stderr.write(f"steps={calls[0]}\\n")
""")


def _child(how: str, arg: str, results: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, how, arg, str(results), MODEL], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _wait_for(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_an_install_waits_for_an_uninstall_holding_the_lock(results, toy_package_session, session_key, tmp_path):
    signal_file = str(tmp_path / "uninstall")
    uninstaller = _child("pause", signal_file, results)
    try:
        _wait_for(lambda: os.path.exists(signal_file + ".ready"))
        installer = subprocess.Popen([sys.executable, "-c", "from nnseal.cli import main; main()", "install",
                                      str(toy_package_session), "--results", str(results), "--trusted-key",
                                      str(session_key.public_path), "--force", "--quiet"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # The install stages everything (its receipt is written last), then waits for the lock.
        _wait_for(lambda: any(results.glob(f".nnseal-staging-*/tree/{MODEL}/nnseal-receipt.json")))
        time.sleep(2)
        assert installer.poll() is None, installer.communicate()
        assert (results / MODEL / "nnseal-receipt.json").is_file()  # the paused uninstall has not moved it yet
    finally:
        Path(signal_file + ".go").touch()
    out, err = uninstaller.communicate(timeout=120)
    assert uninstaller.returncode == 0, err
    assert f"removed {results / MODEL}" in out
    out, err = installer.communicate(timeout=300)
    assert installer.returncode == 0, err  # committed after the uninstall: into a dataset folder made anew
    assert run_cli("verify", "--all", "--results", results).exit_code == 0
    assert not [p.name for p in results.iterdir() if p.name.startswith(".")]


def test_sigkill_during_uninstall_leaves_the_model_or_nothing_and_the_next_run_sweeps(results, tmp_path):
    counted = _child("count", "0", shutil.copytree(results, tmp_path / "count"))
    _, err = counted.communicate(timeout=120)
    assert counted.returncode == 0, err
    total = int(err.rsplit("steps=", 1)[1])
    assert total >= 4  # the rename, two rmdirs, the delete, the lock's release
    model_before = {k: v for k, v in tree_listing(results).items() if k.startswith(MODEL + "/")}
    for nth in range(1, total + 1):
        copy = Path(shutil.copytree(results, tmp_path / f"kill{nth}"))
        proc = _child("kill", str(nth), copy)
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL
        listing = tree_listing(copy)
        model_now = {k: v for k, v in listing.items() if k.startswith(MODEL + "/")}
        assert model_now in (model_before, {}), f"partial model after SIGKILL at step {nth}"
        assert [k for k in listing if k.startswith(".nnseal-lock-")], "the dead uninstall's lock file is left"
        # The next uninstall (or install) sweeps what the dead one left, then does its own work.
        again = run_cli("uninstall", MODEL, "--results", copy)
        assert again.exit_code == (0 if model_now else 3), again.stderr
        left = tree_listing(copy)
        assert set(left) <= {f"{toy_model.DATASET}/"}, (nth, left)  # at most the emptied dataset folder


def test_uninstall_refuses_a_dataset_folder_that_is_a_link(results, tmp_path):
    """A dataset folder linked elsewhere: removing through the link would delete the files of the
    place it points to; refused in one line, nothing moved."""
    dataset = results / MODEL.split("/")[0]
    elsewhere = tmp_path / "elsewhere"
    dataset.rename(elsewhere)
    dataset.symlink_to(elsewhere)
    before = tree_listing(elsewhere)
    result = run_cli("uninstall", results / MODEL)
    assert_one_line_refusal(result, "symbolic link")
    assert tree_listing(elsewhere) == before and dataset.is_symlink()
