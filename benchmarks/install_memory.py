"""Install peak RSS for checkpoints that once fell back to torch.save: one over 2 GiB, and U16/U32/U64/F8.

    .venv/bin/python benchmarks/install_memory.py OUT [--big-gb 2.5] [--dtype-mb 384]

Builds (in a child, torch never enters the measuring process) a toy results folder whose
checkpoint carries one large extra tensor, exports it signed, then measures
`nnseal install` as a child process (ru_maxrss from wait4). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import measure  # noqa: E402

BIN = Path(sys.executable).parent
NNSEAL = str(BIN / "nnseal")
CASES = {"big": "float32", "u16": "uint16", "u32": "uint32", "u64": "uint64", "f8": "float8_e4m3fn"}

BUILD = """
import sys, torch
from pathlib import Path
from nnseal import toy_model
from nnseal.package.export import export_model_to_zip
from nnseal.format.keys import generate_key_pair

out, dtype, nbytes = Path(sys.argv[1]), getattr(torch, sys.argv[2]), int(sys.argv[3])
model = toy_model.build_results(out / "results", folds=(0,), checkpoints=("checkpoint_final",))
path = model / "fold_0" / "checkpoint_final.pth"
checkpoint = toy_model.checkpoint_dict(toy_model.ToySpec(), 0, seed=1)
numel = nbytes // torch.empty(0, dtype=dtype).element_size()
extra = torch.full((numel * dtype.itemsize,), 7, dtype=torch.uint8).view(dtype)
checkpoint["network_weights"]["extra.weight"] = extra
torch.save(checkpoint, path)
del checkpoint, extra
keys = generate_key_pair(out / "key")
export_model_to_zip(model, out / "package.zip", key=keys.private_path)
print(keys.public_path)
"""


def build(root: Path, case: str, nbytes: int) -> tuple[Path, Path]:
    folder = root / f"{case}-{nbytes}"
    package, public = folder / "package.zip", folder / "key.pub"
    if not package.exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-c", BUILD, str(folder), CASES[case], str(nbytes)], check=True,
                       stdout=subprocess.DEVNULL)
    return package, public


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--big-gb", type=float, default=2.5, help="size of the one large float32 tensor (GB)")
    parser.add_argument("--dtype-mb", type=float, default=384, help="size of each U16/U32/U64/F8 tensor (MB)")
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args(argv)
    figures = {}
    for case in args.cases.split(","):
        nbytes = int(args.big_gb * 1e9 if case == "big" else args.dtype_mb * 1e6) // 8 * 8
        package, public = build(args.out, case, nbytes)
        results = args.out / "installed"

        def reset(results: Path = results) -> None:
            shutil.rmtree(results, ignore_errors=True)

        m = measure(f"install {case}", [NNSEAL, "install", str(package), "--results", str(results),
                                        "--trusted-key", str(public), "--quiet"], repeats=1, warmup=False,
                    before_each=reset)
        reset()
        figures[case] = {"tensor_bytes": nbytes, "dtype": CASES[case], "seconds": m.seconds,
                         "peak_rss_bytes": m.peak_rss_bytes}
        print(f"  {case:<4} {nbytes / 1e6:8.0f} MB {CASES[case]:<14} {m.seconds:6.2f} s  "
              f"peak RSS {m.peak_rss_bytes / 1e6:6.0f} MB", file=sys.stderr, flush=True)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
