"""Fuzz the model.sig bundle and signed-statement parser (nnseal.verify.signature).

    python fuzz/fuzz_signature.py [libFuzzer flags] [corpus folder]     (see fuzz/README.md)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.atheris_harness import main  # noqa: E402

if __name__ == "__main__":
    main("signature", ["nnseal.verify.signature", "nnseal.format.oms"])
