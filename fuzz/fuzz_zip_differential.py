"""Long differential run of nnseal's zip reader against zipfile, torch's reader and unzip.

    python fuzz/fuzz_zip_differential.py [--seconds 3600] [--seed N]

Mutates real archives (a torch.save checkpoint shaped like nnU-Net's, a signed nnseal package, a
zip as nnUNetv2_export_model_to_zip writes it) with fuzz/zip_differential.py's structural
mutations and checks that whatever nnseal accepts, every other reader reads alike. Each input
where they disagree is written to fuzz/crashes/zip_differential/ and the run exits 1. Not
atheris: the structure-aware mutations are what reach the interesting corners, and each input
costs two unzip processes. The short, derandomized version is tests/test_zip_differential.py.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import sys
import tempfile
import time
import zipfile
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(FUZZ_DIR.parent))

from fuzz import zip_differential as zd  # noqa: E402
from fuzz.seeds import build_sources  # noqa: E402


def seeds(workdir: Path) -> tuple[dict[str, bytes], bytes]:
    sources = build_sources(workdir)
    export = io.BytesIO()
    root = sources.model_folder.parent.parent
    with zipfile.ZipFile(export, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(sources.model_folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(root).as_posix())
    small = io.BytesIO()
    with zipfile.ZipFile(small, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Dataset042_Toy/plans.json", b'{"hidden": true}')
    return ({"checkpoint": sources.checkpoint.read_bytes(), "package": sources.package_zip.read_bytes(),
             "nnunet_export": export.getvalue()}, small.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=None, help="default: a fresh one, printed")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    crashes = FUZZ_DIR / "crashes" / "zip_differential"
    found = runs = accepted = 0
    with tempfile.TemporaryDirectory(prefix="nnseal-zipdiff-") as tmp:
        work = Path(tmp)
        originals, hidden = seeds(work / "seeds")
        deadline = time.monotonic() + args.seconds
        path = work / "input.zip"
        while time.monotonic() < deadline:
            name = rng.choice(sorted(originals))
            data = zd.mutate(originals[name], rng, hidden=hidden)
            path.write_bytes(data)
            runs += 1
            accepted += zd.read_nnseal(path) is not None
            problems = zd.disagreements(path)
            if problems:
                found += 1
                crashes.mkdir(parents=True, exist_ok=True)
                out = crashes / f"disagree-{hashlib.sha256(data).hexdigest()}.zip"
                out.write_bytes(data)
                print(f"{out}: {'; '.join(problems)}", flush=True)
    print(f"seed {seed}: {runs} inputs, {accepted} accepted by nnseal, {found} disagreements")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
