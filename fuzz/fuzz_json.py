"""Fuzz the JSON parser and sanitizer (nnseal.sanitize.jsonclean),
as used on plans, dataset, fingerprint and card files.

    python fuzz/fuzz_json.py [libFuzzer flags] [corpus folder]     (see fuzz/README.md)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.atheris_harness import main  # noqa: E402

if __name__ == "__main__":
    main("json", ["nnseal.sanitize.jsonclean"])
