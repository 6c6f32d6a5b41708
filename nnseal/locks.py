"""Lock files: how a process says "this temporary thing in this folder is mine, and I am alive".

A holder creates ``.nnseal-lock-<token>`` (a fresh random token) and keeps it ``flock``-ed
(exclusive) for as long as it works. Everything it names ``.nnseal-<kind>-<token>`` or
``.nnseal-<kind>-<token>-<anything>`` in the same folder is its own: an install's staging
folder, a download's ``.part`` file. The kernel drops the lock when its holder dies, however
it dies, in whatever PID namespace, container or NFS client: a lock that can be taken belongs
to nobody alive. No (pid, host) guess is involved.

``sweep_stale`` removes what dead holders left: only a token whose lock it can take
(non-blocking) and whose lock file is still the one it locked. It claims a folder by renaming
it to ``.nnseal-trash-<token>-<n>`` before deleting it, and never enters a folder whose lock
it does not hold, so it never follows into a folder that a live holder may rename. A file
goes in one unlink, which is its own claim. The lock file goes last.

Shared by ``nnseal.verify.staging`` (installs) and ``nnseal.transport.fetch`` (downloads):
one sweep removes the leftovers of both.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
from pathlib import Path

from nnseal.errors import EnvironmentProblem

LOCK_PREFIX = ".nnseal-lock-"
TRASH_PREFIX = ".nnseal-trash-"
_TOKEN = re.compile(r"[0-9a-f]{32}")
_OPEN_FLAGS = os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed, not replaced)."""
    try:
        on_disk = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


def new_lock(folder: Path) -> tuple[str, int]:
    """A fresh token and its lock file in ``folder``, locked. A sweep may take a lock file in the
    instant between its creation and our flock (it is then removed): the identity check catches
    that; try again."""
    path = folder
    for _ in range(100):
        token = secrets.token_hex(16)
        path = folder / f"{LOCK_PREFIX}{token}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if same_file(fd, path):
                return token, fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise EnvironmentProblem("could not create a lock file that stays put", path=folder)


class Lock:
    """A held lock file in ``folder``; ``owned(prefix)`` names what belongs to it.

    With ``create_folder`` a missing ``folder`` (and its missing parents) is created first;
    ``created`` lists those folders, outermost first, for ``remove_created_folders``.
    """

    def __init__(self, folder: Path, *, create_folder: bool = False):
        self.folder = folder
        self.created: list[Path] = []
        self._fd: int | None = None
        try:
            for attempt in range(5):
                if create_folder:
                    self.created += make_folders(folder)
                try:
                    self.token, self._fd = new_lock(folder)
                    break
                except FileNotFoundError:
                    # Another process removed the folder it had created an instant before we chose
                    # to use it (its install or download failed): create it again, then it is ours.
                    if not create_folder or attempt == 4:
                        raise
        except BaseException:
            remove_created_folders(self.created)
            raise
        self.path = folder / f"{LOCK_PREFIX}{self.token}"

    def owned(self, prefix: str, suffix: str = "") -> Path:
        """``folder/<prefix><token><suffix>``: a name the sweep leaves alone while the lock is held.
        ``prefix`` is ``.nnseal-<kind>-``; a non-empty ``suffix`` starts with '-'."""
        return self.folder / f"{prefix}{self.token}{suffix}"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file, then drop the lock. Remove what it guards first: once the lock is
        dropped, whatever is left is the next sweep's."""
        if self._fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def sweep_stale(folder: Path) -> list[str]:
    """Remove what dead holders left in ``folder``; return their tokens."""
    swept: list[str] = []
    try:
        children = [child.name for child in os.scandir(folder)]
    except OSError:
        return swept
    for name in children:
        token = name[len(LOCK_PREFIX):]
        if not (name.startswith(LOCK_PREFIX) and _TOKEN.fullmatch(token)):
            continue
        lock = folder / name
        try:
            fd = os.open(lock, os.O_RDONLY | _OPEN_FLAGS)
        except OSError:
            continue  # removed meanwhile, or a link: not ours to judge
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # held: alive, in this namespace or any other
            if not same_file(fd, lock):
                continue  # its owner or another sweep finished with it before we got the lock
            _remove_owned(folder, token)
            lock.unlink()
            swept.append(token)
        except OSError:
            continue  # left for the next sweep
        finally:
            os.close(fd)
    return swept


def _remove_owned(folder: Path, token: str) -> None:
    """With ``token``'s lock held: remove everything named after it (see the module docstring).
    Listed afresh: its holder may have created more after the sweep began, then died."""
    owned = re.compile(rf"\.nnseal-[a-z]+(?:-[a-z]+)*-{token}(?:-.*)?", re.DOTALL)
    for name in os.listdir(folder):
        if name.startswith(LOCK_PREFIX) or not owned.fullmatch(name):
            continue
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            if not name.startswith(TRASH_PREFIX):  # an earlier sweep of this token already claimed it
                claimed = folder / f"{TRASH_PREFIX}{token}-{secrets.token_hex(4)}"
                os.rename(path, claimed)
                path = claimed
            shutil.rmtree(path)  # never follows links inside (fd-based where the platform allows)
        else:
            path.unlink(missing_ok=True)


# --- folders made tentatively ------------------------------------------------------


def make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those this call created, outermost first."""
    missing = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    created = []
    for path in reversed(missing):
        try:
            path.mkdir()
            created.append(path)
        except FileExistsError:
            pass  # another process made it: not ours to remove
    if not folder.is_dir():
        raise EnvironmentProblem("not a folder", path=folder)
    return created


def remove_created_folders(created: list[Path]) -> None:
    """Undo ``make_folders``: remove the folders it created, innermost first, each only if still
    empty (rmdir), so a folder another process started to use in the meantime stays."""
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()
