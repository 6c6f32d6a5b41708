"""The files of a model folder as OpenSSF Model Signing sees them: which are signed, and their sha256.

Shared by ``nnseal sign`` (package/sign_folder.py) and ``nnseal verify FOLDER`` (verify/folder.py)
so that both enumerate a folder the same way, and the way model_signing does:
- every regular file under the root, by its '/'-separated path relative to the root;
- an ignore path leaves out that exact relative path and everything under it (``.git`` at
  the top is ignored, ``sub/.git`` is not), as model_signing's ``is_relative_to`` does;
- ignored paths are not looked at at all; anywhere else a symbolic link or a special file
  (fifo, socket, device) is refused: nnseal signs and verifies regular files only, whatever
  ``allow_symlinks`` a bundle records (a link can point outside the model, see SECURITY.md).
Hashing is one read of each file, files in parallel threads (hashlib releases the GIL).
Torch-free.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nnseal.errors import HostileArchive, InvalidArgument, Refused, from_os_error
from nnseal.format.oms import ignore_path_problem
from nnseal.format.strict_json import show

# Large reads: fewer system calls and GIL round trips per byte hashed.
HASH_CHUNK = 4 << 20


def normalize_ignore_path(entry: str) -> tuple[str, ...]:
    """An ignore path as its components ("./a//b/" -> ("a", "b")); callers check it first."""
    return tuple(part for part in entry.split("/") if part not in ("", "."))


def check_ignore_paths(entries: Iterable[str], error: type[Refused] | type[InvalidArgument] = InvalidArgument
                       ) -> list[str]:
    """The entries, normalised; one that is absolute, climbs out or names the whole model raises ``error``."""
    out = []
    for entry in entries:
        problem = ignore_path_problem(entry)
        if problem:
            raise error(f"ignore path {show(entry)} {problem}")
        out.append("/".join(normalize_ignore_path(entry)))
    return out


def list_model_files(root: str | os.PathLike, ignore_paths: Iterable[str] = ()) -> dict[str, Path]:
    """Relative POSIX name -> path of every regular file under ``root`` that no ignore path covers.

    Raises HostileArchive for a symbolic link, a special file or a name that is not UTF-8.
    """
    root = Path(root)
    ignored = {normalize_ignore_path(entry) for entry in ignore_paths}
    files: dict[str, Path] = {}
    stack: list[tuple[Path, tuple[str, ...]]] = [(root, ())]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as err:
            raise from_os_error(err, folder) from err
        for entry in entries:
            parts = (*prefix, entry.name)
            if any(parts[:len(rule)] == rule for rule in ignored):
                continue
            name = "/".join(parts)
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                raise HostileArchive(f"file name {show(name)} is not valid UTF-8: it cannot be signed",
                                     path=folder) from None
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError as err:
                raise from_os_error(err, entry.path) from err
            if stat.S_ISLNK(mode):
                raise HostileArchive(f"{name} is a symbolic link (to {show(os.readlink(entry.path))}); signed "
                                     "models hold regular files only", path=root)
            if stat.S_ISDIR(mode):
                stack.append((Path(entry.path), parts))
            elif stat.S_ISREG(mode):
                files[name] = Path(entry.path)
            else:
                raise HostileArchive(f"{name} is not a regular file or folder (a fifo, socket or device)",
                                     path=root)
    return files


def sha256_path(path: Path) -> tuple[str, int]:
    """(hex sha256, size) of one file, read once in large chunks."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(HASH_CHUNK)
    view = memoryview(buffer)
    try:
        with open(path, "rb", buffering=0) as handle:
            while True:
                count = handle.readinto(buffer)
                if not count:
                    break
                digest.update(view[:count])
                size += count
    except OSError as err:
        raise from_os_error(err, path) from err
    return digest.hexdigest(), size


def hash_files(files: Mapping[str, Path], workers: int | None = None) -> tuple[dict[str, str], int]:
    """({name: sha256}, total bytes) of ``files``, hashed in parallel threads."""
    if workers is None:
        workers = min(32, (os.cpu_count() or 1) + 4)
    names = sorted(files, key=lambda name: -_size_or_zero(files[name]))  # biggest first: balanced threads
    if workers <= 1 or len(names) <= 1:
        results = [sha256_path(files[name]) for name in names]
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(names))) as pool:
            results = list(pool.map(lambda name: sha256_path(files[name]), names))
    return ({name: digest for name, (digest, _) in zip(names, results, strict=True)},
            sum(size for _, size in results))


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
