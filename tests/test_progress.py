"""Progress bars for a person at a terminal; nothing in CI, with --quiet, or when piped."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios

from helpers import NNSEAL_EXE


def _run_on_terminal(args, env_extra=None) -> str:
    """Run nnseal as a real process with stderr on a pseudo-terminal; return what the terminal received.

    A real process: the bar is drawn only when stderr is a terminal, which CliRunner cannot give."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(env_extra or {})
    main_fd, child_fd = pty.openpty()
    # A fresh pty is 0 columns wide, and tqdm draws nothing in 0 columns: give it a real size.
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen([str(NNSEAL_EXE), *map(str, args)], stdout=subprocess.DEVNULL, stderr=child_fd, env=env)
    os.close(child_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main_fd)
    assert proc.wait(timeout=300) == 0
    return b"".join(chunks).decode("utf-8", "replace")


def test_export_and_install_show_progress_on_a_terminal(toy_model_folder, session_key, tmp_path):
    shown = _run_on_terminal(["export", "-i", toy_model_folder, "-o", tmp_path / "p.zip",
                              "--key", session_key.private_path, "-f", "0"])
    assert "fold_0/checkpoint_final" in shown and "B/s" in shown
    shown = _run_on_terminal(["install", tmp_path / "p.zip", "--results", tmp_path / "r",
                              "--trusted-key", session_key.public_path])
    assert "install" in shown and "B/s" in shown


def test_quiet_and_ci_silence_the_bar(toy_model_folder, session_key, tmp_path):
    # Every fold of the toy, and no crossval pickle without its json: anything left out would get
    # a note on stderr (test_export_selection.py, test_pipeline.py).
    import shutil

    model = tmp_path / toy_model_folder.parent.name / toy_model_folder.name
    shutil.copytree(toy_model_folder, model)
    for pickle in model.glob("crossval_results_folds_*/postprocessing.pkl"):
        pickle.unlink()
    assert _run_on_terminal(["export", "-i", model, "-o", tmp_path / "q.zip",
                             "--key", session_key.private_path, "-f", "0", "1", "--quiet"]) == ""
    assert _run_on_terminal(["export", "-i", model, "-o", tmp_path / "c.zip",
                             "--key", session_key.private_path, "-f", "0", "1"], {"CI": "true"}) == ""
