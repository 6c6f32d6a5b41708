"""Fuzz the zip reader (nnseal.readers.zip_archive) and the package entry-name classifier.

    python fuzz/fuzz_safezip.py [libFuzzer flags] [corpus folder]     (see fuzz/README.md)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.atheris_harness import main  # noqa: E402

if __name__ == "__main__":
    main("safezip", ["nnseal.readers.zip_archive", "nnseal.format.layout"])
