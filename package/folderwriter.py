"""Write a package as a folder (``nnseal export --folder``): the zip writer's interface, files instead of entries.

Each entry becomes the file of the same name under the folder, holding the same bytes the zip
entry would (the export pipeline is the same; only the container differs), hashed as it is
written. Names pass the zip writer's checks (``check_entry_name``, no two names that differ
only in case, which a case-insensitive filesystem would merge). Files are 0o644, folders
0o755, created anew (never through an existing path or link). The folder is published by
its caller (``nnseal.fsutil.atomic_folder``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from nnseal.fsutil import HashingWriter, open_new
from nnseal.readers.zip_archive import NameRegistry, check_entry_name


class FolderWriter:
    """A package being written as files under ``root`` (an empty folder); entries one at a time."""

    def __init__(self, root: Path):
        self.root = root
        self._names = NameRegistry()
        self.digests: dict[str, str] = {}
        self.sizes: dict[str, int] = {}

    def __enter__(self) -> FolderWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        pass

    @contextlib.contextmanager
    def entry(self, name: str, *, compress: bool) -> Iterator[HashingWriter]:
        """Yield a sink for the file's bytes; after the block, digests[name] and sizes[name] are set.
        ``compress`` is the zip writer's and means nothing here."""
        check_entry_name(name)
        self._names.add(name)
        target = self.root.joinpath(*name.split("/"))
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        with open_new(target) as handle:
            sink = HashingWriter(handle)
            yield sink
        self.digests[name] = sink.hexdigest()
        self.sizes[name] = sink.size

    def add_bytes(self, name: str, data: bytes, *, compress: bool) -> str:
        with self.entry(name, compress=compress) as sink:
            sink.write(data)
        return self.digests[name]
