"""Progress displays for a person at a terminal; nothing in CI, with -q/--quiet, or when piped.

Real processes on pseudo-terminals: the display is drawn only when stderr is a terminal, which
CliRunner cannot give."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import termios
import time
import zipfile
from pathlib import Path

import pytest
from helpers import NNSEAL_EXE
from http_server import Route, running_server

from nnseal import toy_model
from nnseal.units import format_bytes


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


def test_quiet_and_ci_silence_the_bar(toy_model_folder, session_key, tmp_path):
    # Every fold of the toy, and no crossval pickle without its json: anything left out would get
    # a note on stderr (test_export_selection.py, test_pipeline.py).
    model = tmp_path / toy_model_folder.parent.name / toy_model_folder.name
    shutil.copytree(toy_model_folder, model)
    for pickle in model.glob("crossval_results_folds_*/postprocessing.pkl"):
        pickle.unlink()
    assert _run_on_terminal(["export", "-i", model, "-o", tmp_path / "q.zip",
                             "--key", session_key.private_path, "-f", "0", "1", "--quiet"]) == ""
    assert _run_on_terminal(["export", "-i", model, "-o", tmp_path / "c.zip",
                             "--key", session_key.private_path, "-f", "0", "1"], {"CI": "true"}) == ""


# --- the overall display, as a person at an 80-column terminal sees it ----------------------------


COLUMNS = 80
IEC = r"\d+(?:\.\d+)? (?:B|KiB|MiB|GiB)"
# "export 2/4 checkpoints  50%|█████     | 21.7 MiB/43.5 MiB 20.9 MiB/s ETA 00:01"
OVERALL = re.compile(rf"^(export|install) (\d+)/(\d+) checkpoints +(\d+)%\|.*\| ({IEC})/({IEC}) "
                     rf"({IEC}/s|\? B/s) ETA (\d\d:\d\d|\?)$")
DOWNLOAD = re.compile(rf"^download: +(\d+)%\|.*\| ({IEC})/({IEC}) ({IEC}/s|\? B/s) ETA (\d\d:\d\d|\?)$")
BAR_MARKS = ("\r", "\x1b", "█", "%|")


@pytest.fixture(scope="module")
def four_checkpoints(tmp_path_factory) -> Path:
    """Two folds of final + best, a few MiB each: big enough that the display redraws mid-way."""
    root = tmp_path_factory.mktemp("progress_model")
    model = toy_model.build_results(root, spec=toy_model.ToySpec(features=(16, 32, 64, 128)))
    for pickle in model.glob("crossval_results_folds_*/postprocessing.pkl"):
        pickle.unlink()  # left out, it would earn a note on stderr
    return model


def _terminal_session(args, env_extra=None) -> tuple[int, str]:
    """Run nnseal with stdin, stdout and stderr on one 24 x 80 pseudo-terminal (a person's
    terminal); return the exit code and every byte the terminal received."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NNSEAL_DEBUG")}
    env.update(env_extra or {})
    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    proc = subprocess.Popen([str(NNSEAL_EXE), *map(str, args)], stdin=child_fd, stdout=child_fd, stderr=child_fd,
                            env=env)
    os.close(child_fd)
    seen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main_fd], [], [], 0.2)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(main_fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        seen += data
    os.close(main_fd)
    if proc.poll() is None:
        proc.kill()
    return proc.wait(timeout=30), seen.decode("utf-8", "replace")


def _frames(shown: str) -> list[str]:
    """Every line state the terminal showed, escape codes removed, in order."""
    return [f.rstrip() for f in re.split(r"[\r\n]+", re.sub(r"\x1b\[\d*A", "\n", shown)) if f.strip()]


def _screen(shown: str) -> list[str]:
    """The terminal's final screen: carriage return, newline and cursor-up (all tqdm sends)
    applied; any other escape sequence fails the test."""
    rows: list[list[str]] = [[]]
    row = col = 0
    i = 0
    while i < len(shown):
        if shown[i] == "\x1b":
            match = re.match(r"\x1b\[(\d*)A", shown[i:])
            assert match, f"unexpected escape sequence {shown[i:i + 8]!r}"
            row = max(row - int(match.group(1) or 1), 0)
            i += match.end()
            continue
        char = shown[i]
        i += 1
        if char == "\r":
            col = 0
        elif char == "\n":
            row += 1
            while len(rows) <= row:
                rows.append([])
        else:
            line = rows[row]
            line.extend(" " * (col + 1 - len(line)))
            line[col] = char
            col += 1
    return [text for text in ("".join(r).rstrip() for r in rows) if text]


def _overall(frames: list[str], verb: str) -> list[tuple[int, int, str, str]]:
    """(k, N, done, total) of each frame of the overall line of ``verb``."""
    found = []
    for frame in frames:
        assert "%|" not in frame or len(frame) <= COLUMNS, frame
        match = OVERALL.match(frame)
        if match and match.group(1) == verb:
            found.append((int(match.group(2)), int(match.group(3)), match.group(5), match.group(6)))
    return found


def _assert_counts_up(found, total_text: str) -> None:
    counts = [k for k, _, _, _ in found]
    assert {n for _, n, _, _ in found} == {4}
    assert counts == sorted(counts), counts  # k of N only goes up
    assert {1, 2, 3} & set(counts), counts  # seen mid-way, not only the first and last frame
    assert counts[-1] == 4 and found[-1][2] == total_text  # ends at N of N, every byte
    assert {t for _, _, _, t in found} == {total_text}
    assert len({done for _, _, done, _ in found}) >= 3  # the byte count moved between frames


def test_export_install_download_show_overall_progress(four_checkpoints, session_key, tmp_path):
    package = tmp_path / "p.zip"
    code, shown = _terminal_session(["export", "-i", four_checkpoints, "-o", package,
                                     "--key", session_key.private_path])
    assert code == 0, shown
    sources = sum(p.stat().st_size for p in four_checkpoints.glob("fold_*/checkpoint_*.pth"))
    frames = _frames(shown)
    _assert_counts_up(_overall(frames, "export"), format_bytes(sources))
    assert any(f.startswith("fold_1/checkpoint_best:") for f in frames)  # the checkpoint's own bar, below
    assert any(re.search(rf"{IEC}/s ETA \d\d:\d\d$", f) for f in frames)  # a rate and an ETA, not only "?"
    screen = _screen(shown)
    assert screen[0].startswith(f"wrote {package}: 1 model folder(s), 4 checkpoint(s)"), screen
    assert not any(mark in line for line in screen for mark in ("█", "%|", "checkpoints ")), screen

    code, shown = _terminal_session(["install", package, "--results", tmp_path / "r",
                                     "--trusted-key", session_key.public_path])
    assert code == 0, shown
    with zipfile.ZipFile(package) as archive:
        entries = sum(info.file_size for info in archive.infolist()
                      if not info.filename.endswith(("model.sig", "nnseal-card.json")))
    _assert_counts_up(_overall(_frames(shown), "install"), format_bytes(entries))
    screen = _screen(shown)
    assert screen[0].startswith("installed ") and not any("%|" in line for line in screen), screen

    data = package.read_bytes()
    with running_server() as server:
        url = server.route("/p.zip", Route(body=data, chunk=256 << 10, delay=0.02))
        code, shown = _terminal_session(["download", url, "--results", tmp_path / "d",
                                         "--trusted-key", session_key.public_path])
    assert code == 0, shown
    frames = _frames(shown)
    received = [m for m in map(DOWNLOAD.match, frames) if m]
    assert {m.group(3) for m in received} == {format_bytes(len(data))}  # of the Content-Length
    assert len({m.group(2) for m in received}) >= 3 and 0 < int(received[1].group(1)) < 100
    # Then the install's display, after the download's.
    install = _overall(frames, "install")
    assert install and frames.index(received[-1].group(0)) < frames.index(next(f for f in frames
                                                                               if OVERALL.match(f)))
    assert install[-1][0] == 4
    screen = _screen(shown)
    assert screen[0].startswith("downloaded ") and screen[1].startswith("installed "), screen
    assert not any("%|" in line for line in screen), screen


def test_piped_quiet_and_ci_show_no_display(four_checkpoints, session_key, tmp_path):
    # stderr a pipe, stdin and stdout too: a script's run, no display at all.
    piped = subprocess.run([str(NNSEAL_EXE), "export", "-i", four_checkpoints, "-o", tmp_path / "p.zip",
                            "--key", session_key.private_path], capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items() if k != "CI"}, check=True, timeout=120)
    assert piped.stderr == "" and not any(mark in piped.stdout for mark in BAR_MARKS), piped.stdout
    assert piped.stdout.startswith("wrote ")

    # On a terminal, the global -q: nothing at all on success, and a refusal is its one line.
    assert _terminal_session(["-q", "install", tmp_path / "p.zip", "--results", tmp_path / "r",
                              "--trusted-key", session_key.public_path]) == (0, "")
    stranger = tmp_path / "stranger"
    subprocess.run([str(NNSEAL_EXE), "keygen", "-o", stranger], capture_output=True, check=True, timeout=60)
    code, shown = _terminal_session(["-q", "install", tmp_path / "p.zip", "--results", tmp_path / "r2",
                                     "--trusted-key", f"{stranger}.pub"])
    assert code == 1 and len(shown.strip().splitlines()) == 1 and not any(m in shown.strip() for m in BAR_MARKS)

    # CI=true at a terminal: the summary, never a bar.
    with running_server() as server:
        url = server.route("/p.zip", Route(body=(tmp_path / "p.zip").read_bytes(), chunk=256 << 10, delay=0.01))
        code, shown = _terminal_session(["download", url, "--results", tmp_path / "d",
                                         "--trusted-key", session_key.public_path], {"CI": "true"})
    assert code == 0 and "installed " in shown and not any(m in shown for m in ("█", "%|", "\x1b")), shown
    shutil.rmtree(tmp_path / "d")
