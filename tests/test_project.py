"""The project as a user meets it: the wheel, the console script, exit codes, start-up cost."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from helpers import REPO, process_env, run_cli, run_cli_process


def test_wheel_installs_only_nnseal_into_a_fresh_venv(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
                   check=True, capture_output=True, timeout=600)
    [wheel] = wheels.glob("nnseal-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    tops = {name.split("/")[0] for name in names}
    assert tops == {"nnseal", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    # Every module of the source tree is in the wheel, under nnseal/.
    mapping = {"nnseal": "nnseal", "sanitize": "nnseal/sanitize", "package": "nnseal/package",
               "verify": "nnseal/verify", "scan": "nnseal/scan"}
    for folder, installed in mapping.items():
        for source in (REPO / folder).rglob("*.py"):
            relative = source.relative_to(REPO / folder).as_posix()
            assert f"{installed}/{relative}" in names, f"{source} is missing from the wheel"

    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.check_output([str(python), "-c", purelib], text=True).strip())
    before = {p.name for p in site.iterdir()}
    # pip from this environment installs into the fresh one; --no-deps: the stages import without torch.
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    added = {p.name for p in site.iterdir()} - before
    assert {a for a in added if not a.endswith(".dist-info") and a != "bin"} == {"nnseal"}
    code = ("import nnseal, nnseal.sanitize, nnseal.package, nnseal.verify, nnseal.scan, sys; "
            "print(nnseal.sanitize.__file__); assert 'torch' not in sys.modules")
    proc = subprocess.run([str(python), "-c", code],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env=process_env({"PYTHONPATH": None}))  # the fresh venv alone, not a checkout
    assert proc.returncode == 0, proc.stderr
    assert str(site / "nnseal" / "sanitize" / "__init__.py") in proc.stdout
    for name in ("package", "verify", "sanitize", "scan"):
        assert not (site / name).exists()


def test_help_lists_every_command():
    # The installed console script itself, as a real process: it exists and reaches nnseal.cli.
    proc = run_cli_process("--help")
    assert proc.exit_code == 0
    for name in ("demo", "sanitize", "keygen", "export", "verify", "inspect", "install", "trust", "download", "scan"):
        assert f"  {name}" in proc.stdout


def test_usage_error_is_exit_2():
    assert run_cli("no-such-command").exit_code == 2
    assert run_cli("sanitize").exit_code == 2
    assert run_cli("install").exit_code == 2


def test_missing_input_is_exit_3_one_line(tmp_path):
    for args in (("sanitize", tmp_path / "nope.pth", "-o", tmp_path / "o.safetensors"),
                 ("verify", tmp_path / "nope.zip"),
                 ("inspect", tmp_path / "nope.zip")):
        proc = run_cli(*args)
        assert proc.exit_code == 3, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_verify_help_does_not_import_torch():
    code = ("import sys\nfrom nnseal.cli import main\n"
            "try:\n    main(['verify', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
