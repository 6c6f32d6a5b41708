"""Run one command as a child process and measure it: wall time and that child's own peak RSS.

The peak RSS comes from ``os.wait4`` on the child's pid, so it covers that process (and
any children it waited for), never the benchmark driver itself.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

READ_CHUNK = 8 << 20
STDERR_TAIL_CHARS = 2000


class ChildFailed(RuntimeError):
    """A measured command exited non-zero: its figures would be meaningless."""


@dataclass
class ChildRun:
    argv: list[str]
    seconds: float
    peak_rss_bytes: int
    returncode: int
    stderr_tail: str


@dataclass
class Measurement:
    """Repeated runs of one command; figures are the median run's (peak RSS: the largest)."""

    label: str
    argv: list[str]
    runs: list[ChildRun]

    @property
    def seconds(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def peak_rss_bytes(self) -> int:
        return max(r.peak_rss_bytes for r in self.runs)

    def to_json(self) -> dict:
        return {"label": self.label, "argv": self.argv, "seconds": self.seconds,
                "peak_rss_bytes": self.peak_rss_bytes,
                "runs": [{k: v for k, v in asdict(r).items() if k != "argv"} for r in self.runs]}


def run_child(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
              timeout: float = 1800.0) -> ChildRun:
    """Run ``argv`` to completion; time it with perf_counter and read its rusage from wait4."""
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = _wait4_with_timeout(proc, timeout)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not by Popen
        stderr.seek(0)
        tail = stderr.read().decode("utf-8", "replace")[-STDERR_TAIL_CHARS:]
    # Linux reports ru_maxrss in KiB.
    return ChildRun(argv=list(argv), seconds=seconds, peak_rss_bytes=usage.ru_maxrss * 1024,
                    returncode=proc.returncode, stderr_tail=tail)


def _wait4_with_timeout(proc: subprocess.Popen, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            return pid, status, usage
        if time.monotonic() > deadline:
            proc.kill()
            return os.wait4(proc.pid, 0)
        time.sleep(0.002)


def measure(label: str, argv: Sequence[str], *, repeats: int, warmup: bool, env: dict[str, str] | None = None,
            before_each: Callable[[], None] | None = None, check: Callable[[], None] | None = None) -> Measurement:
    """Run ``argv`` ``repeats`` times (after one unmeasured warm-up run if asked).

    ``before_each`` resets the world (removes outputs, warms inputs, flushes dirty pages)
    outside the timed region; ``check`` asserts each run did what it claims.
    """
    runs = []
    for index in range(repeats + (1 if warmup else 0)):
        if before_each:
            before_each()
        run = run_child(argv, env=env)
        if run.returncode != 0:
            raise ChildFailed(f"{label}: {' '.join(argv)} exited {run.returncode}: {run.stderr_tail.strip()}")
        if check:
            check()
        if warmup and index == 0:
            continue
        runs.append(run)
    return Measurement(label=label, argv=list(argv), runs=runs)


def warm_files(paths: Sequence[Path]) -> int:
    """Read files (or every file under folders) once, so they sit in the page cache; return bytes read."""
    total = 0
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            with open(file, "rb", buffering=0) as handle:
                while block := handle.read(READ_CHUNK):
                    total += len(block)
    return total


def flush_dirty_pages() -> None:
    """Write back what earlier runs left dirty, so it is not charged to the next command."""
    os.sync()
