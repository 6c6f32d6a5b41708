"""Whole-package atomicity, locks instead of (pid, host) guesses, and concurrent installs."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from nnseal import locks, toy_model
from nnseal.errors import EnvironmentProblem, WouldOverwrite
from nnseal.verify import staging
from nnseal.verify.install import install_model_from_zip
from tests.helpers import tree_listing

CONFIGS = (toy_model.ToySpec(), toy_model.ToySpec(configuration="3d_fullres", features=(4, 8), patch_size=(8, 8, 8)))


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """Two two-model packages of the same models with different folds (every file differs)."""
    from nnseal.format.keys import generate_key_pair
    from nnseal.package.export import export_model_to_zip

    root = tmp_path_factory.mktemp("atomic")
    keys = generate_key_pair(root / "key")
    out = {}
    for name, folds in (("old", (2, 3)), ("new", (0, 1))):
        folders = [toy_model.build_results(root / name, spec=spec, folds=folds) for spec in CONFIGS]
        out[name] = root / f"{name}.zip"
        export_model_to_zip(folders, out[name], key=keys.private_path)
    out["key"] = keys.public_path
    return out


def _install(packages, name, results, **options):
    return install_model_from_zip(packages[name], results, trusted_keys=[packages["key"]], **options)


def test_a_failure_at_the_second_swap_rolls_the_first_back(packages, tmp_path, monkeypatch):
    results = tmp_path / "results"
    _install(packages, "old", results)
    before = tree_listing(results)
    real = staging._replace_folder
    calls = []

    def fail_second(*args):
        calls.append(args)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        return real(*args)

    monkeypatch.setattr(staging, "_replace_folder", fail_second)
    with pytest.raises(EnvironmentProblem):
        _install(packages, "new", results, force=True)
    assert len(calls) == 2
    assert tree_listing(results) == before


def test_a_model_that_appears_during_staging_refuses_the_whole_package(packages, tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    real = staging._staged_state
    intruder = results / toy_model.DATASET / toy_model.model_folder_name("3d_fullres")

    def appear(staged):
        if not intruder.exists():
            intruder.mkdir(parents=True)
            (intruder / "theirs.txt").write_text("someone else's")
        return real(staged)

    monkeypatch.setattr(staging, "_staged_state", appear)
    with pytest.raises(WouldOverwrite):
        _install(packages, "new", results)
    assert tree_listing(results) == {f"{toy_model.DATASET}/": (0, "dir"),
                                     f"{toy_model.DATASET}/{intruder.name}/": (0, "dir"),
                                     f"{toy_model.DATASET}/{intruder.name}/theirs.txt": (14, tree_listing(
                                         results)[f"{toy_model.DATASET}/{intruder.name}/theirs.txt"][1])}


def test_an_installed_folder_changed_under_the_rename_is_rolled_back(packages, tmp_path, monkeypatch):
    results = tmp_path / "results"
    _install(packages, "old", results)
    before = tree_listing(results)
    real = staging._rename_exchange
    tampered = []

    def exchange_then_tamper(a, b):
        done = real(a, b)
        if done and not tampered:
            (b / "plans.json").unlink()  # another process changes the new folder under us
            tampered.append(b)
        return done

    monkeypatch.setattr(staging, "_rename_exchange", exchange_then_tamper)
    with pytest.raises(EnvironmentProblem, match="does not match its receipt"):
        _install(packages, "new", results, force=True)
    assert tampered
    assert tree_listing(results) == before  # the old folders are back; the damaged new one went with staging


@pytest.mark.parametrize("nested", [False, True])
def test_a_refused_install_creates_no_results_folder(packages, tmp_path, nested):
    from nnseal.errors import SignatureError

    results = tmp_path / "a" / "b" / "results" if nested else tmp_path / "results"
    with pytest.raises(SignatureError):
        install_model_from_zip(packages["new"], results, trusted_keys=[])
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_failed_install_removes_the_results_folder_it_created(packages, tmp_path, monkeypatch):
    results = tmp_path / "x" / "results"
    monkeypatch.setattr(staging, "_rename_new", lambda a, b: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(EnvironmentProblem):
        _install(packages, "new", results)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    _install(packages, "new", results)  # and succeeds once it can
    assert len(list((results / toy_model.DATASET).iterdir())) == 2


# --- the sweep ---------------------------------------------------------------------------------

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from nnseal.verify.staging import Staging
    with Staging(Path(sys.argv[1])) as stage:
        stage.path("Dataset042_Toy/model/big.bin").write_bytes(b"x" * 1000)
        print(stage.root.name, flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _holder(results, seconds):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(results), str(seconds)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    return proc, proc.stdout.readline().strip()


def test_sweep_removes_only_what_it_can_lock(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    live, live_name = _holder(results, 60)
    dead, dead_name = _holder(results, 60)
    try:
        dead.kill()
        dead.wait()
        stray = results / f"{staging.STAGING_PREFIX}{'0' * 32}"  # no lock file: nobody's to judge
        stray.mkdir()
        swept = locks.sweep_stale(results)
        assert swept == [dead_name[len(staging.STAGING_PREFIX):]]
        names = sorted(p.name for p in results.iterdir())
        token = live_name[len(staging.STAGING_PREFIX):]
        assert names == sorted([live_name, f"{locks.LOCK_PREFIX}{token}", stray.name])
        assert (results / live_name / "tree" / "Dataset042_Toy" / "model" / "big.bin").stat().st_size == 1000
    finally:
        live.kill()
        live.wait()


def test_sweep_skips_a_lock_file_replaced_after_it_was_opened(tmp_path):
    """The identity check: a lock taken on a file that no longer has its name proves nothing."""
    results = tmp_path / "results"
    results.mkdir()
    with staging.Staging(results) as stage:
        token = stage.root.name[len(staging.STAGING_PREFIX):]
        lock = results / f"{locks.LOCK_PREFIX}{token}"
        fd = os.open(lock, os.O_RDONLY)
        assert locks.same_file(fd, lock)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by the stage, in this very process
        os.close(fd)
        assert locks.sweep_stale(results) == []
        assert stage.root.is_dir()
    assert list(results.iterdir()) == []


# --- two installs from different PID namespaces, plus sweeps -----------------------------------

# The two packages take turns in either order, so the later one may be the older release: the
# race is about concurrency, not rollback, hence --allow-downgrade.
RACE = textwrap.dedent("""
    set -u
    cd "$1"; shift
    for i in 1 2 3 4 5 6; do
      unshare --pid --fork --mount-proc bash -c '"$PY" -c "$CLI" install "$NEW" -o "$RES" --trusted-key "$KEY" \\
          --force --allow-downgrade --quiet >/dev/null 2>>"$LOG" & wait $!' &
      a=$!
      unshare --pid --fork --mount-proc bash -c '"$PY" -c "$CLI" install "$OLD" -o "$RES" --trusted-key "$KEY" \\
          --force --allow-downgrade --quiet >/dev/null 2>>"$LOG" & wait $!' &
      b=$!
      unshare --pid --fork --mount-proc "$PY" -c "
    import time; from pathlib import Path; from nnseal.locks import sweep_stale
    end = time.time() + 1.5
    while time.time() < end: sweep_stale(Path('$RES'))" &
      c=$!
      wait $a; echo "a=$?"; wait $b; echo "b=$?"; wait $c; echo "c=$?"
    done
""")


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare(1) for PID namespaces (CI runs as root)")
def test_installs_from_different_pid_namespaces_never_lose_a_model(packages, tmp_path):
    """Each install runs as PID 1 of its own namespace on the same host: the (pid, host) guess
    judged the other's live staging dead and deleted it."""
    from nnseal.verify.receipt import check_installed

    results = tmp_path / "results"
    log = tmp_path / "stderr.txt"
    env = {**os.environ, "PY": sys.executable, "NEW": str(packages["new"]), "OLD": str(packages["old"]),
           "RES": str(results), "KEY": str(packages["key"]), "LOG": str(log),
           "PYTHONPATH": os.getcwd(),
           # the install runs as PID 2 of its namespace: a PID the other namespaces do not have
           "CLI": "import sys; from nnseal.cli import main; sys.argv[0] = 'nnseal'; main()"}
    proc = subprocess.run(["bash", "-c", RACE, "race", os.getcwd()], env=env, capture_output=True, text=True,
                          timeout=600)
    codes = proc.stdout.split()
    assert len(codes) == 18 and all(c.endswith("=0") for c in codes), (proc.stdout, proc.stderr,
                                                                       log.read_text() if log.exists() else "")
    dataset = results / toy_model.DATASET
    models = sorted(dataset.iterdir())
    assert [m.name for m in models] == sorted(toy_model.model_folder_name(s.configuration) for s in CONFIGS)
    for model in models:
        assert check_installed(model).ok
        assert len(list(model.glob("fold_*/checkpoint_*.pth"))) == 4
    assert sorted(p.name for p in results.iterdir()) == [toy_model.DATASET]  # no staging, no lock left


# --- a signal after the swap ----------------------------------------------------------------

AFTER_SWAP = textwrap.dedent("""
    import os, signal, sys
    import click
    sig = getattr(signal, sys.argv[1])
    echo = click.echo
    def echo_after_a_signal(*args, **kwargs):  # the report is printed only once the swap is done
        os.kill(os.getpid(), sig)
        return echo(*args, **kwargs)
    click.echo = echo_after_a_signal
    from nnseal.cli import main
    sys.argv = ["nnseal", "install", *sys.argv[2:]]
    main()
""")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_signal_after_the_swap_still_reports_the_install_as_done(packages, tmp_path, sig):
    """Found by review: a signal while the report was printed gave 143/130/129 ("undone")
    although the new model was in place. From the swap on, the install is done: exit 0."""
    from nnseal.verify.receipt import check_installed

    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-c", AFTER_SWAP, sig, str(packages["new"]), "-o", str(results),
                           "--trusted-key", str(packages["key"])], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert "installed" in proc.stdout and "interrupted" not in proc.stderr
    models = sorted((results / toy_model.DATASET).iterdir())
    assert len(models) == 2 and all(check_installed(model).ok for model in models)
    assert sorted(p.name for p in results.iterdir()) == [toy_model.DATASET]  # no staging, lock or trash left
