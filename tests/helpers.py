"""What the tests share that is not a fixture: running the CLI, listing a tree, the one-line refusal check.

Two ways to run the CLI:

* ``run_cli`` runs ``nnseal.cli.main`` in this interpreter through click's CliRunner. It is
  the default: fast, and it goes through the same argument parsing, error reporting and exit
  codes as the console script.
* ``run_cli_process`` starts the installed ``nnseal`` console script as a real process. Use it
  only where the test needs one: the console script itself, signals (Ctrl-C, SIGTERM, SIGKILL),
  a real terminal, a fresh interpreter (proving torch is not imported), start-up time.

Both return a ``CliResult`` (exit_code, stdout, stderr).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NNSEAL_EXE = Path(sys.executable).with_name("nnseal")


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args, env: dict[str, str | None] | None = None, cwd: Path | str | None = None,
            input: str | None = None) -> CliResult:
    """Run `nnseal ARGS` in this interpreter, as the console script would (exit code, stdout, stderr).

    ``env`` adds to (a value of None removes from) os.environ for the duration of the call;
    ``cwd`` is the working folder during the call.
    """
    from click.testing import CliRunner

    from nnseal.cli import main

    # Like run_cli_process: a developer's NNSEAL_DEBUG must not turn one-line errors into tracebacks.
    runner = CliRunner(env={"NNSEAL_DEBUG": None, **(env or {})})
    with _working_folder(cwd), warnings.catch_warnings(record=True) as caught:
        # A real process prints the warnings its default filters let through to stderr; do the same.
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        # catch_exceptions=False: an exception that escapes the command (a bug) fails the test
        # with its traceback, as it would have printed one in a real process.
        result = runner.invoke(main, [str(a) for a in args], input=input, prog_name="nnseal",
                               catch_exceptions=False)
    stderr = result.stderr + "".join(
        warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line) for w in caught)
    return CliResult(result.exit_code, result.stdout, stderr)


@contextlib.contextmanager
def _working_folder(cwd: Path | str | None):
    """contextlib.chdir, which Python 3.10 lacks; None stays where we are."""
    if cwd is None:
        yield
        return
    before = os.getcwd()
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)


def run_cli_process(*args, env: dict[str, str | None] | None = None, cwd: Path | str | None = None,
                    input: str | None = None, timeout: float = 300, **popen_kwargs) -> CliResult:
    """Run the installed `nnseal` console script as a real process (for what needs one; see above)."""
    proc = subprocess.run([str(NNSEAL_EXE), *map(str, args)], capture_output=True, text=True, env=process_env(env),
                          cwd=cwd, input=input, timeout=timeout, **popen_kwargs)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def process_env(extra: dict[str, str | None] | None = None) -> dict[str, str]:
    """This environment without NNSEAL_DEBUG, with ``extra`` applied (None removes a variable)."""
    env = {k: v for k, v in os.environ.items() if k != "NNSEAL_DEBUG"}
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def assert_one_line_refusal(result: CliResult, *needles: str) -> None:
    """Exit 1, exactly one line on stderr, no traceback, mentioning each needle."""
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def assert_one_line_error(result: CliResult, code: int, *needles: str) -> None:
    """Exit ``code`` (2 or 3), exactly one ``nnseal: error:`` line on stderr, no traceback, mentioning each needle."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nnseal: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


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


def nnunet_export_zip(monkeypatch, results: Path, output: Path, **kwargs) -> None:
    """Write ``output`` with nnU-Net's own exporter (nnUNetv2_export_model_to_zip), reading ``results``.

    nnunetv2.paths reads the nnUNet_* variables once, at import, and its users copy the values into
    their own globals, so every copy the exporter reads is set (a missed one fails the export, it
    never passes). In this interpreter: no child process importing torch and nnU-Net again.
    """
    from nnunetv2.model_sharing import model_export
    from nnunetv2.utilities import dataset_name_id_conversion, file_path_utilities

    from nnseal import toy_model

    for module in (model_export, file_path_utilities, dataset_name_id_conversion):
        monkeypatch.setattr(module, "nnUNet_results", str(results))
    monkeypatch.setattr(dataset_name_id_conversion, "nnUNet_raw", str(output.parent))
    monkeypatch.setattr(dataset_name_id_conversion, "nnUNet_preprocessed", str(output.parent))
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
        model_export.export_pretrained_model(toy_model.DATASET, str(output), **kwargs)


def signed_package(path: Path, entries: list[tuple[str, bytes]], key_path: Path) -> Path:
    """A correctly signed package holding exactly ``entries`` (any model.sig among them is
    replaced): only content checks can refuse it."""
    from nnseal import toy_model
    from nnseal.format.keys import load_private_key
    from nnseal.format.oms import SIGNATURE_NAME
    from nnseal.package.signing import sign_manifest
    from nnseal.package.zipwriter import DeterministicZipWriter

    with open(path, "wb") as handle, DeterministicZipWriter(handle) as writer:
        for name, data in entries:
            if name != SIGNATURE_NAME:
                writer.add_bytes(name, data, compress=name.endswith(".json"))
        writer.add_bytes(SIGNATURE_NAME, sign_manifest(toy_model.DATASET, dict(writer.digests),
                                                       load_private_key(key_path)), compress=True)
    return path


def run_on_terminal(*args, answer: bytes | None = None, signal_at_prompt: int | None = None,
                    env: dict[str, str | None] | None = None, prompt: bytes = b"Passphrase",
                    timeout: float = 120) -> CliResult:
    """Run the console script with a pseudo-terminal as its controlling terminal and its stdin,
    stdout and stderr (what a person at a terminal has); at ``prompt``, type ``answer`` or send
    ``signal_at_prompt`` (signal.SIGINT is what Ctrl-C sends). stdout is everything the terminal
    received; stderr is empty (the terminal merges them)."""
    import fcntl
    import pty
    import select
    import termios
    import time

    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, b"\x18\x00\x78\x00\x00\x00\x00\x00")  # 24 x 120

    def become_terminal_owner():  # a new session whose controlling terminal is the pty (getpass opens /dev/tty)
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([str(NNSEAL_EXE), *map(str, args)], stdin=child_fd, stdout=child_fd, stderr=child_fd,
                            env=process_env(env), preexec_fn=become_terminal_owner)
    os.close(child_fd)
    seen = b""
    acted = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main_fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(main_fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            seen += data
        if not acted and prompt in seen:
            acted = True
            time.sleep(0.2)  # the prompt is written before the terminal's echo is turned off
            if answer is not None:
                os.write(main_fd, answer)
            if signal_at_prompt is not None:
                proc.send_signal(signal_at_prompt)
        if proc.poll() is not None and not ready:
            break
    os.close(main_fd)
    if proc.poll() is None:
        proc.kill()
    code = proc.wait(timeout=30)
    return CliResult(code, seen.decode("utf-8", "replace"), "")


def run_model_signing(*args) -> subprocess.CompletedProcess:
    """The reference implementation's CLI (PyPI model-signing), as a user runs it."""
    return subprocess.run([sys.executable, "-m", "model_signing", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    """``root`` holding ``files`` (relative name -> bytes), folders made as needed."""
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root
