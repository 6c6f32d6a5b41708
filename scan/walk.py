"""Which files a scan visits: recursive, sorted, never through a symlink, never into .git."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SKIPPED_DIRS = frozenset({".git"})


@dataclass(frozen=True)
class WalkItem:
    path: Path
    status: str  # file | symlink | special | unreadable
    error: str | None = None


def _classify(path: Path) -> WalkItem | None:
    """One path, not followed if it is a link; None for a folder (walked by the caller)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as err:
        return WalkItem(path, "unreadable", err.strerror or str(err))
    if stat.S_ISLNK(mode):
        return WalkItem(path, "symlink")
    if stat.S_ISDIR(mode):
        return None
    if stat.S_ISREG(mode):
        return WalkItem(path, "file")
    return WalkItem(path, "special")


def walk(root: Path) -> Iterator[WalkItem]:
    """Every file under ``root`` (or ``root`` itself), depth first, names sorted byte-wise."""
    item = _classify(root)
    if item is not None:
        yield item
        return
    try:
        with os.scandir(root) as entries:
            names = sorted(entry.name for entry in entries)
    except OSError as err:
        yield WalkItem(root, "unreadable", err.strerror or str(err))
        return
    for name in names:
        if name in SKIPPED_DIRS:
            continue
        yield from walk(root / name)
