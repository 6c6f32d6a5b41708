"""Fuzz the safetensors header reader (nnseal.sanitize.safetensors_io.read_header).

    python fuzz/fuzz_safetensors.py [libFuzzer flags] [corpus folder]     (see fuzz/README.md)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.atheris_harness import main  # noqa: E402

if __name__ == "__main__":
    main("safetensors", ["nnseal.sanitize.safetensors_io"])
