"""Files that appear whole or not at all, and hashing at disk speed."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from nnseal.errors import EnvironmentProblem, Hint, WouldOverwrite, from_os_error
from nnseal.format.limits import IO_CHUNK

TEMP_PREFIX = ".nnseal-tmp-"


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, force: bool = False, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a file to write; it becomes ``path`` only if the block ends without an exception.

    The temporary file lives beside ``path`` (same filesystem, so the final rename is
    atomic) and is removed on any failure, Ctrl-C included. Without ``force`` an
    existing ``path`` is never replaced, even if it appears while we write.
    """
    path = Path(path)
    if path.exists() and not force:
        raise WouldOverwrite("exists", path=path, hint=Hint.FORCE)
    parent = path.parent if str(path.parent) else Path(".")
    import tempfile  # here: `nnseal scan` reaches this module but never writes through it

    try:
        fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix="-" + path.name, dir=parent)
    except OSError as err:
        raise from_os_error(err, parent) from err
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path exists: no clobbering race
            except FileExistsError:
                raise WouldOverwrite("exists", path=path, hint=Hint.FORCE) from None
            except OSError as err:
                if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                os.replace(tmp, path)  # filesystems without hard links
            tmp.unlink(missing_ok=True)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, EnvironmentProblem):
            raise from_os_error(err, path) from err
        raise


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield an empty folder to fill; it becomes ``path`` only if the block ends without an exception.

    The temporary folder lives beside ``path`` (one rename puts it in place) and is removed on
    any failure, Ctrl-C included. An existing empty folder at ``path`` is replaced; anything else
    there only with ``force``, and then the old one is moved aside first and deleted after the
    new one is in place, so ``path`` is never half-written.
    """
    import shutil
    import tempfile

    path = Path(path)
    if (path.exists() or path.is_symlink()) and not force and not _empty_folder(path):
        raise WouldOverwrite("exists and is not an empty folder", path=path, hint=Hint.FORCE)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix="-" + path.name, dir=parent))
        os.chmod(tmp, 0o755)  # noqa: S103 - a package folder is readable by all, as a zip written here is
    except OSError as err:
        raise from_os_error(err, parent) from err
    old: Path | None = None
    try:
        yield tmp
        _fsync_tree(tmp)
        if path.is_symlink() or path.exists():
            if _empty_folder(path) and not path.is_symlink():
                path.rmdir()
            elif not force:
                raise WouldOverwrite("exists and is not an empty folder", path=path, hint=Hint.FORCE)
            else:
                old = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX + "old-", dir=parent))
                os.replace(path, old / "old")
        os.rename(tmp, path)  # fails if a folder appeared meanwhile: never clobber
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not (path.exists() or path.is_symlink()):
            os.replace(old / "old", path)  # put the old one back
        if isinstance(err, OSError) and not isinstance(err, EnvironmentProblem):
            raise from_os_error(err, path) from err
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _empty_folder(path: Path) -> bool:
    try:
        return not path.is_symlink() and path.is_dir() and not any(path.iterdir())
    except OSError:
        return False


def _fsync_tree(root: Path) -> None:
    """Every file and folder under ``root`` on disk before the rename that publishes it."""
    for folder, _, files in os.walk(root):
        for name in [*files, "."]:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def open_new(path: str | os.PathLike) -> BinaryIO:
    """A new file opened for writing: never an existing file, never through a symbolic link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    return os.fdopen(fd, "wb")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(IO_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class ByteSink(Protocol):
    """Anything bytes can be written to: a binary file, or one of the writers that wrap one."""

    def write(self, data: Any, /) -> int: ...

    def flush(self) -> None: ...


class HashingWriter:
    """A write-only file object that hashes and counts every byte passed through it."""

    def __init__(self, target: ByteSink):
        import hashlib

        self._target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self.sha256.update(view)
        self.size += view.nbytes
        self._target.write(view)
        return view.nbytes

    def flush(self) -> None:
        self._target.flush()

    def hexdigest(self) -> str:
        return self.sha256.hexdigest()



def package_size(path: Path) -> int:
    """A package's size in bytes: the zip file's, or the sum of a folder package's files."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size
