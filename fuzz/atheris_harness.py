"""What every fuzz/fuzz_<target>.py script shares: seeds, libFuzzer defaults, instrumentation.

Each script is ``main("<target>", [modules to instrument])``. Command-line arguments go
to libFuzzer; ours are only defaults, used when the command line does not set them:

* the corpus folder ``fuzz/corpus/<target>``, filled with seeds on first use (built by
  ``fuzz/seeds.py`` in a subprocess, so torch never loads in the fuzzing process and
  the RSS limit measures the parser alone);
* ``-timeout=10``: an input that takes longer is a hang;
* ``-rss_limit_mb=1024``: a process that grows past it allocated out of proportion to
  its input (inputs are at most a few hundred kB);
* ``-artifact_prefix=fuzz/crashes/<target>/``: where crashing inputs are kept.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
REPO = FUZZ_DIR.parent
DEFAULT_FLAGS = {"-timeout": "10", "-rss_limit_mb": "1024", "-print_final_stats": "1"}


def ensure_seeds(target: str, corpus: Path) -> None:
    """Write the seeds into ``corpus`` (a folder named after the target) unless they are there."""
    if corpus.is_dir() and any(corpus.glob("seed_*")):
        return
    subprocess.run([sys.executable, str(FUZZ_DIR / "seeds.py"), str(corpus.parent), "--target", target],
                   check=True, cwd=REPO)


def libfuzzer_argv(target: str, argv: list[str]) -> list[str]:
    """argv with our defaults added where the caller set nothing; the target's corpus if none is named."""
    flags = [arg for arg in argv[1:] if arg.startswith("-")]
    folders = [arg for arg in argv[1:] if not arg.startswith("-")]
    given = {flag.split("=", 1)[0] for flag in flags}
    crashes = FUZZ_DIR / "crashes" / target
    defaults = {**DEFAULT_FLAGS, "-artifact_prefix": f"{crashes}{os.sep}"}
    flags += [f"{name}={value}" for name, value in defaults.items() if name not in given]
    if "-artifact_prefix" not in given:
        crashes.mkdir(parents=True, exist_ok=True)
    if not folders:
        folders = [str(FUZZ_DIR / "corpus" / target)]
    first = Path(folders[0])
    # Seed a corpus folder named after the target; files given instead of folders are crash reproductions.
    if first.name == target and not first.is_file():
        ensure_seeds(target, first)
    return [argv[0], *flags, *folders]


def main(target: str, instrument: list[str]) -> None:
    import atheris

    sys.path.insert(0, str(REPO))
    with atheris.instrument_imports(include=["nnseal", "pickletools", "fuzz"]):
        import importlib

        for module in ["fuzz.targets", *instrument]:
            importlib.import_module(module)
    from fuzz.targets import run_target

    def test_one_input(data: bytes) -> None:
        run_target(target, data)  # NnsealError is an expected refusal; anything else is a finding

    atheris.Setup(libfuzzer_argv(target, sys.argv), test_one_input)
    atheris.Fuzz()
