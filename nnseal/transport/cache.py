"""A folder of verified downloads, so that a second install needs no network.

Content-addressed: ``sha256/<first two hex digits>/<sha256>`` holds the bytes of a package
that passed the whole verified install, written atomically (a temporary file renamed into
place) and only then. ``sources/<sha256 of the source text>.json`` remembers which digest a
source (``hf://owner/repo``, a URL...) last gave, and the host's digest at the time, so that
an offline install of the same source finds its bytes.

The cache is a convenience, never trust: a cached file is read back through the same hashing
fetch (its name must be its sha256, or it is dropped) and installed through the same
signature check as a download. Its location is an argument (the CLI reads ``NNSEAL_CACHE``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from nnseal.errors import EnvironmentProblem, NnsealError
from nnseal.format.digest import is_sha256_hex
from nnseal.format.limits import IO_CHUNK
from nnseal.format.strict_json import load_strict_json
from nnseal.fsutil import atomic_output

_INDEX_MAX = 64 << 10


@dataclass(frozen=True)
class Remembered:
    """What a source gave last time: the package's sha256 and the host's digest then (or None)."""

    sha256: str
    host_digest: str | None


class Cache:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def path_of(self, sha256: str) -> Path:
        return self.folder / "sha256" / sha256[:2] / sha256

    def find(self, sha256: str) -> Path | None:
        """The cached file with this sha256, if any (its content is checked when it is read)."""
        if not is_sha256_hex(sha256):
            return None
        path = self.path_of(sha256)
        return path if path.is_file() and not path.is_symlink() else None

    def drop(self, sha256: str) -> None:
        """Forget a cached file whose bytes no longer match its name."""
        self.path_of(sha256).unlink(missing_ok=True)

    def store(self, source: Path, sha256: str) -> Path:
        """Put the verified file ``source`` (whose sha256 is ``sha256``) in the cache: a hard link
        where possible, else an atomic copy. An entry already there is kept."""
        target = self.path_of(sha256)
        if target.is_file():
            return target
        # Whoever can write the cache could make its folders links elsewhere: never create, link
        # or copy anything through one (into a folder the cache does not own).
        _refuse_links(target.parent.parent, target.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        _refuse_links(target.parent.parent, target.parent)
        try:
            os.link(source, target)
            return target
        except FileExistsError:
            return target
        except OSError as err:
            if err.errno not in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise
        try:
            with open(source, "rb") as src, atomic_output(target) as out:
                shutil.copyfileobj(src, out, IO_CHUNK)
        except NnsealError:
            if not target.is_file():  # another install stored it meanwhile: fine
                raise
        return target

    def remember(self, source: str, sha256: str, host_digest: str | None) -> None:
        """Record that ``source`` gave the package ``sha256`` (and the host published ``host_digest``)."""
        path = self._index_path(source)
        _refuse_links(path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        _refuse_links(path.parent)
        data = json.dumps({"source": source, "sha256": sha256, "host_digest": host_digest}, indent=1).encode()
        with atomic_output(path, force=True) as out:
            out.write(data)

    def recall(self, source: str) -> Remembered | None:
        """What ``source`` gave last time, if recorded; a damaged record counts as none."""
        path = self._index_path(source)
        try:
            with open(path, "rb") as handle:
                data = handle.read(_INDEX_MAX + 1)
            if len(data) > _INDEX_MAX:
                return None
            record = load_strict_json(data, what="cache record")
        except (OSError, NnsealError):
            return None
        if not isinstance(record, dict) or record.get("source") != source or not is_sha256_hex(record.get("sha256")):
            return None
        host = record.get("host_digest")
        return Remembered(record["sha256"], host if isinstance(host, str) else None)

    def _index_path(self, source: str) -> Path:
        return self.folder / "sources" / (hashlib.sha256(source.encode()).hexdigest() + ".json")


def _refuse_links(*folders: Path) -> None:
    for folder in folders:
        if folder.is_symlink():
            raise EnvironmentProblem("a cache folder is a symbolic link; refusing to store through it", path=folder)
