"""Fuzz the static pickle walker (nnseal.readers.pickle_stream.scan_pickle).

    python fuzz/fuzz_pickle.py [libFuzzer flags] [corpus folder]     (see fuzz/README.md)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.atheris_harness import main  # noqa: E402

if __name__ == "__main__":
    main("pickle", ["nnseal.readers.pickle_stream"])
