"""Fuzz the static checkpoint inspection (nnseal.readers.torch_archive.inspect_checkpoint).

    python fuzz/fuzz_checkpoint_archive.py [libFuzzer flags] [corpus folder]     (see fuzz/README.md)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.atheris_harness import main  # noqa: E402

if __name__ == "__main__":
    main("checkpoint_archive",
         ["nnseal.readers.torch_archive", "nnseal.readers.zip_archive", "nnseal.readers.pickle_stream"])
