"""Write zips that are byte-identical for identical inputs, hashing each entry as it is written.

Built on zipfile's streaming writer (``ZipFile.open(info, "w")``), with everything that
could vary pinned: timestamp 1980-01-01 00:00:00, mode 0o644 regular file, Unix as
creating system, no extra fields but the ZIP64 one. Every entry carries a ZIP64 local
header (``force_zip64``) because a streamed entry's size is unknown when its header is
written and a weights file may pass 4 GiB; always using it keeps the bytes a function
of the inputs alone, at 20 bytes per entry. Byte identity holds for the same Python
and zlib (deflate output may differ between zlib builds); weights are stored, so they
never depend on zlib.
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator
from typing import BinaryIO

from nnseal.fsutil import HashingWriter
from nnseal.readers.zip_archive import NameRegistry, check_entry_name

FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
REGULAR_FILE_0644 = 0o100644 << 16
CREATE_SYSTEM_UNIX = 3
DEFLATE_LEVEL = 6

# The sink an entry() block writes into: .write(bytes), then .size and .hexdigest().
HashingSink = HashingWriter


class DeterministicZipWriter:
    """A zip being written to ``fileobj``; use as a context manager, entries one at a time."""

    def __init__(self, fileobj: BinaryIO):
        self._zip = zipfile.ZipFile(fileobj, "w", allowZip64=True)
        self._names = NameRegistry()
        self._failed = False
        self.digests: dict[str, str] = {}
        self.sizes: dict[str, int] = {}

    def __enter__(self) -> DeterministicZipWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def close(self) -> None:
        """Write the central directory (once); the file object stays open for the caller."""
        self._zip.close()

    @contextlib.contextmanager
    def entry(self, name: str, *, compress: bool) -> Iterator[HashingSink]:
        """Yield a sink for the entry's bytes; after the block, digests[name] and sizes[name] are set."""
        if self._failed:
            raise RuntimeError("an earlier entry failed while being written; this archive is incomplete")
        check_entry_name(name)
        self._names.add(name)
        info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
        info.create_system = CREATE_SYSTEM_UNIX
        info.external_attr = REGULAR_FILE_0644
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        # zipfile reads the level from the ZipInfo when given one (3.13 keeps this name as an alias).
        info._compresslevel = DEFLATE_LEVEL if compress else None  # type: ignore[attr-defined]
        try:
            with self._zip.open(info, "w", force_zip64=True) as target:
                sink = HashingSink(target)
                yield sink
        except BaseException:
            self._failed = True
            raise
        self.digests[name] = sink.hexdigest()
        self.sizes[name] = sink.size

    def add_bytes(self, name: str, data: bytes, *, compress: bool) -> str:
        """Write a whole entry; return the sha256 hex of ``data``."""
        with self.entry(name, compress=compress) as sink:
            sink.write(data)
        return self.digests[name]


__all__ = ["DeterministicZipWriter", "HashingSink", "check_entry_name"]
