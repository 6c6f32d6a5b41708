"""Time `nnseal scan` against picklescan over folders of 1,000 small checkpoints.

    .venv/bin/python benchmarks/scan_bench.py [--count 1000] [--repeats 3]

Two folders, built once and cached under benchmarks/out/:
  tiny: torch.save of a dict with one 4-element tensor (per-file overhead);
  toy:  nnU-Net-shaped checkpoints of the toy model, optimizer state and numpy logs
        included (benchmarks/fixtures.py; about 8,000 pickle opcodes each).
Every command runs as a child process, warm cache, one unmeasured warm-up run each, the
commands taking turns round by round (so that they share the machine's load):
`nnseal scan` with its default processes, `nnseal scan --jobs 1`, and picklescan.
Prints files per second and nnseal's speed as a multiple of picklescan's.

Bytecode: both tools run with Python's bytecode cache on, written by the warm-up run into
benchmarks/out/pycache (``PYTHONPYCACHEPREFIX``), as an installed package has it (pip
compiles at install time). With ``PYTHONDONTWRITEBYTECODE`` set, a source checkout would
compile every module of nnseal on every run (about 20 ms, more than the scan of 1,000 tiny
files spends on their zip headers) while picklescan, installed, loads its bytecode.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import Measurement, flush_dirty_pages, measure, warm_files  # noqa: E402

BIN = Path(sys.executable).parent


TINY_BUILDER = """
import sys, torch
from pathlib import Path
folder = Path(sys.argv[1]); folder.mkdir(parents=True, exist_ok=True)
for i in range(int(sys.argv[2])):
    torch.save({"network_weights": {"w": torch.full((4,), float(i))}, "trainer_name": "nnUNetTrainer"},
               folder / f"tiny_{i:04d}.pth")
(folder.parent / (folder.name + ".built")).write_text(sys.argv[2])
"""


def build_tiny_folder(root: Path, count: int, rebuild: bool) -> Path:
    folder = root / f"scan_tiny_{count}"
    if rebuild or not (root / f"scan_tiny_{count}.built").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([sys.executable, "-c", TINY_BUILDER, str(folder), str(count)], check=True)
    return folder


def build_folder(root: Path, count: int, rebuild: bool) -> Path:
    # In a child: building imports torch, which must not inflate the measured children's baseline.
    argv = [sys.executable, str(HERE / "fixtures.py"), "scan", str(root), "--count", str(count)]
    if rebuild:
        argv.append("--rebuild")
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return Path(json.loads(out.strip().splitlines()[-1])["folder"])


def child_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return env


def bench_folder(label: str, folder: Path, repeats: int, env: dict[str, str]) -> None:
    files = sorted(folder.iterdir())

    def reset() -> None:
        warm_files(files)
        flush_dirty_pages()

    commands = {"nnseal scan": [str(BIN / "nnseal"), "scan", str(folder)],
                "nnseal scan --jobs 1": [str(BIN / "nnseal"), "scan", "--jobs", "1", str(folder)]}
    picklescan_exe = shutil.which("picklescan", path=str(BIN)) or shutil.which("picklescan")
    if picklescan_exe:
        commands["picklescan"] = [picklescan_exe, "--path", str(folder)]
    # Round robin, one run of each command per round: on a shared machine the load drifts, and
    # commands measured in the same round see the same load (the per-round ratio is printed too).
    rounds = [{name: measure(name, argv, repeats=1, warmup=index == 0, env=env, before_each=reset)
               for name, argv in commands.items()} for index in range(repeats)]
    results = {name: Measurement(name, argv, [run for one in rounds for run in one[name].runs])
               for name, argv in commands.items()}

    size = sum(p.stat().st_size for p in files)
    print(f"{label}: {len(files)} checkpoints, {size / 2**20:.1f} MiB, median of {repeats} warm runs, "
          f"{os.cpu_count()} CPUs")
    for name, m in results.items():
        print(f"  {name:<22} {m.seconds:7.2f} s  {len(files) / m.seconds:8.0f} files/s  "
              f"peak RSS {m.peak_rss_bytes / 2**20:6.1f} MiB")
    if "picklescan" in results:
        for name in ("nnseal scan", "nnseal scan --jobs 1"):
            per_round = statistics.median(one["picklescan"].seconds / one[name].seconds for one in rounds)
            print(f"  {name} is {results['picklescan'].seconds / results[name].seconds:.2f}x picklescan's speed "
                  f"(>1: faster; median of per-round ratios {per_round:.2f}x)")
    else:
        print("  picklescan not installed: no comparison")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--root", type=Path, default=HERE / "out")
    args = parser.parse_args(argv)
    env = child_env(args.root)
    bench_folder("tiny", build_tiny_folder(args.root, args.count, args.rebuild), args.repeats, env)
    bench_folder("toy", build_folder(args.root, args.count, args.rebuild), args.repeats, env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
