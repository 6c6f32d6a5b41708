"""A package published as a folder (``nnseal export --folder``, a Hub repository), read as a zip is.

``FolderArchive`` offers the part of ``SafeZip``'s interface that the verdict, verify and
install use (``names``, ``get``, ``entry``, ``stream``, ``read``, ``copy_to``, ``sha256``,
``sha256_all``), so a folder is judged and installed by the same code as a zip, with the
same rules: every regular file is an entry, named by its '/'-separated path, except what
OpenSSF Model Signing ignores by default (``.git``, ``.gitattributes``, ``.github``,
``.gitignore``; ``model.sig`` is an entry, as in a zip). Names pass the zip's name checks
(``check_entry_name``, case-insensitive collisions) and its count and size limits; a
symbolic link or special file is refused (``nnseal.format.model_files``).

A folder can change while it is read. Each read opens the file again, component by
component from the folder's descriptor without following a link (``O_NOFOLLOW``,
``O_NONBLOCK``: a fifo put in its place cannot block), demands a regular file of the
size listed, and stops after exactly that many bytes, checking that no more follow. What
the bytes are is not this reader's business: verify and install hash every byte they use
against the signed manifest as they read it, so a file swapped after the verdict is
refused when install reads it. Torch-free.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from nnseal.errors import EnvironmentProblem, HostileArchive, from_os_error
from nnseal.format.limits import IO_CHUNK
from nnseal.format.model_files import list_model_files
from nnseal.format.oms import DEFAULT_IGNORE_PATHS
from nnseal.format.strict_json import show
from nnseal.readers.zip_archive import Limits, NameRegistry, SafeZip, check_entry_name, open_zip

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class PackageReader(Protocol):
    """What the verdict, verify and install read a package through: ``SafeZip`` or ``FolderArchive``.
    An entry argument is one of the reader's own entries (from ``get``/``entry``) or a name."""

    path: Path

    def names(self) -> list[str]: ...
    def get(self, name: str) -> Any: ...
    def entry(self, name: str) -> Any: ...
    def stream(self, entry_or_name: Any, *, chunk: int = ...) -> Iterator[bytes]: ...
    def read(self, entry_or_name: Any, *, max_size: int = ...) -> bytes: ...
    def copy_to(self, entry_or_name: Any, fileobj: BinaryIO) -> str: ...
    def sha256_all(self, entries: Any = ..., *, workers: int | None = ...) -> dict[str, str]: ...


@dataclass(frozen=True)
class FileEntry:
    """One file of the folder, as listed: its name and size (``is_dir`` for SafeZip's callers)."""

    name: str
    size: int
    is_dir: bool = False


class FolderArchive:
    """A folder package, listed and checked once; use as a context manager, or call close()."""

    def __init__(self, path: Path, entries: list[FileEntry], limits: Limits, root_fd: int):
        self.path = path
        self.entries = entries
        self.limits = limits
        self._root_fd = root_fd
        self._by_name = {e.name: e for e in entries}

    def close(self) -> None:
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1

    def __enter__(self) -> FolderArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- lookup ----------------------------------------------------------------

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def get(self, name: str) -> FileEntry | None:
        return self._by_name.get(name)

    def entry(self, name: str) -> FileEntry:
        found = self._by_name.get(name)
        if found is None:
            raise HostileArchive(f"no file {show(name)}", path=self.path)
        return found

    def _resolve(self, entry_or_name: FileEntry | str) -> FileEntry:
        name = entry_or_name if isinstance(entry_or_name, str) else entry_or_name.name
        return self.entry(name)  # always the size listed, never a caller's

    # --- reading ---------------------------------------------------------------

    def _open(self, entry: FileEntry) -> int:
        """The file, reached from the folder without following a link, checked to be as listed."""
        parts = entry.name.split("/")
        fd = self._root_fd
        opened: list[int] = []
        try:
            for part in parts[:-1]:
                fd = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
                opened.append(fd)
            file_fd = os.open(parts[-1], os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC, dir_fd=fd)
        except OSError as err:
            raise HostileArchive(f"{entry.name}: cannot be opened as the regular file listed (changed while "
                                 f"reading? {os.strerror(err.errno or 0) or err})", path=self.path) from None
        finally:
            for folder_fd in opened:
                os.close(folder_fd)
        info = os.fstat(file_fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size != entry.size:
            os.close(file_fd)
            raise HostileArchive(f"{entry.name}: no longer the regular file of {entry.size} bytes listed "
                                 "(changed while reading?)", path=self.path)
        return file_fd

    def stream(self, entry_or_name: FileEntry | str, *, chunk: int = IO_CHUNK) -> Iterator[bytes]:
        """Yield exactly the listed size's bytes; raise HostileArchive if the file holds fewer or more."""
        entry = self._resolve(entry_or_name)
        fd = self._open(entry)
        try:
            left = entry.size
            while left:
                block = os.read(fd, min(chunk, left))
                if not block:
                    raise HostileArchive(f"{entry.name}: shorter than the {entry.size} bytes listed (changed "
                                         "while reading?)", path=self.path)
                left -= len(block)
                yield block
            if os.read(fd, 1):
                raise HostileArchive(f"{entry.name}: longer than the {entry.size} bytes listed (changed while "
                                     "reading?)", path=self.path)
        finally:
            os.close(fd)

    def read(self, entry_or_name: FileEntry | str, *, max_size: int = 64 << 20) -> bytes:
        entry = self._resolve(entry_or_name)
        if entry.size > max_size:
            raise HostileArchive(f"file {show(entry.name)}: {entry.size} bytes, more than the {max_size} "
                                 "expected for this file", path=self.path)
        return b"".join(self.stream(entry))

    def copy_to(self, entry_or_name: FileEntry | str, fileobj: BinaryIO) -> str:
        """Stream the file into ``fileobj``; return the sha256 hex of exactly the bytes written."""
        digest = hashlib.sha256()
        for block in self.stream(entry_or_name):
            digest.update(block)
            fileobj.write(block)
        return digest.hexdigest()

    def sha256(self, entry_or_name: FileEntry | str) -> str:
        digest = hashlib.sha256()
        for block in self.stream(entry_or_name):
            digest.update(block)
        return digest.hexdigest()

    def sha256_all(self, entries: Iterable[FileEntry | str] | None = None, *,
                   workers: int | None = None) -> dict[str, str]:
        chosen = [self._resolve(e) for e in entries] if entries is not None else list(self.entries)
        workers = workers or min(8, os.cpu_count() or 1, max(len(chosen), 1))
        if workers <= 1 or len(chosen) <= 1:
            return {e.name: self.sha256(e) for e in chosen}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nnseal-hash") as pool:
            return dict(zip([e.name for e in chosen], pool.map(self.sha256, chosen), strict=True))


def open_folder(path: str | os.PathLike, limits: Limits | None = None) -> FolderArchive:
    """List a folder package and check every name and size; HostileArchive on anything a zip would be refused for."""
    limits = limits or Limits()
    root = Path(path)
    if not root.is_dir():
        raise EnvironmentProblem("no such package folder", path=root)
    files = list_model_files(root, DEFAULT_IGNORE_PATHS)
    if len(files) > limits.max_entries:
        raise HostileArchive(f"{len(files)} files, more than the limit of {limits.max_entries}", path=root)
    registry = NameRegistry()
    entries = []
    total = 0
    for name in sorted(files):
        check_entry_name(name, limits)
        registry.add(name)
        try:
            size = files[name].lstat().st_size
        except OSError as err:
            raise from_os_error(err, files[name]) from err
        if size > limits.max_entry_size:
            raise HostileArchive(f"{name}: {size} bytes, more than the limit of {limits.max_entry_size}", path=root)
        total += size
        if total > limits.max_total_size:
            raise HostileArchive(f"files hold more than {limits.max_total_size} bytes in total", path=root)
        entries.append(FileEntry(name, size))
    try:
        root_fd = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    except OSError as err:
        raise from_os_error(err, root) from err
    return FolderArchive(root, entries, limits, root_fd)


def open_package(path: str | os.PathLike, limits: Limits | None = None) -> SafeZip | FolderArchive:
    """The package at ``path`` opened for reading: a folder as a ``FolderArchive``, anything else as a zip."""
    path = Path(path)
    if path.is_dir():
        return open_folder(path, limits or Limits())
    if not path.is_file():
        raise EnvironmentProblem("no such package file", path=path)
    return open_zip(path, limits or Limits())
