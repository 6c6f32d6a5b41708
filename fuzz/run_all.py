"""Run every atheris fuzz target in turn for N seconds each; exit 1 if any found a crash, hang or leak.

    python fuzz/run_all.py --seconds 300 [--target safezip ...] [-- extra libFuzzer flags]

One target at a time (libFuzzer's -fork/-jobs would share the machine's cores with
nothing else running). Each log goes to fuzz/logs/<target>.log; crashing inputs land in
fuzz/crashes/<target>/ (crash-*, timeout-*, oom-*, leak-*).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(FUZZ_DIR.parent))

from fuzz.targets import TARGET_NAMES  # noqa: E402

_EXECUTED = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_PEAK_RSS = re.compile(r"stat::peak_rss_mb:\s*(\d+)")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


@dataclass
class RunResult:
    target: str
    seconds: float
    executions: int
    peak_rss_mb: int
    returncode: int
    artifacts: list[str]

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.artifacts


def run_one(target: str, seconds: int, extra: list[str]) -> RunResult:
    logs = FUZZ_DIR / "logs"
    logs.mkdir(exist_ok=True)
    command = [sys.executable, str(FUZZ_DIR / f"fuzz_{target}.py"), f"-max_total_time={seconds}", *extra]
    started = time.monotonic()
    with open(logs / f"{target}.log", "w") as log:
        proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=FUZZ_DIR.parent)
    text = (logs / f"{target}.log").read_text(errors="replace")
    executed = _EXECUTED.findall(text)
    rss = _PEAK_RSS.findall(text)
    return RunResult(target, time.monotonic() - started, int(executed[-1]) if executed else 0,
                     int(rss[-1]) if rss else 0, proc.returncode, _ARTIFACT.findall(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60, help="fuzzing time per target (default 60)")
    parser.add_argument("--target", action="append", choices=TARGET_NAMES, help="only these targets")
    parser.add_argument("extra", nargs="*", help="passed to libFuzzer (after --)")
    args = parser.parse_args(argv)
    results = []
    for target in args.target or TARGET_NAMES:
        result = run_one(target, args.seconds, args.extra)
        results.append(result)
        status = "ok" if result.ok else f"FAILED (exit {result.returncode}) {' '.join(result.artifacts)}"
        print(f"{target:20} {result.seconds:7.0f} s {result.executions:10d} runs "
              f"{result.peak_rss_mb:6d} MB peak  {status}", flush=True)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
