"""Staging, locks and the swap: how an install changes a results folder all at once or not at all.

One install is one transaction on the results folder:

- ``.nnseal-lock-<token>``: a lock file (``nnseal.locks``), created first and removed last,
  ``flock``-ed (exclusive) for the whole transaction. The kernel drops the lock when its
  holder dies, however it dies, in whatever PID namespace or container: a lock that can be
  taken belongs to nobody alive. No (pid, host) guess is involved.
- ``.nnseal-staging-<token>/``: the staging folder (same filesystem as the destination,
  so each final move is one rename). Everything is extracted and checked there.
- ``commit`` swaps every model folder of the package in, in one short step that signals
  cannot cut in two; a failure rolls the earlier swaps back. After the last rename each
  installed folder's listing is checked against its receipt before success is reported.
- ``__exit__`` removes the staging folder (with the old model folders swapped out of the
  results folder), then the lock file, then, after a failure, the folders it created.

``sweep_stale`` (``nnseal.locks``, shared with downloads) removes what dead transactions
left: only a token whose lock it can take (non-blocking) and whose lock file is still the one
it locked; it claims the staging folder by renaming it to ``.nnseal-trash-<token>-...`` and
deletes that, then the lock file. It never enters a folder whose lock it does not hold, so it
never follows into a folder that a live install may rename.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
from pathlib import Path

from nnseal.errors import (
    EnvironmentProblem,
    Hint,
    HostileArchive,
    ModelLayoutError,
    WouldOverwrite,
    from_os_error,
)
from nnseal.interrupt import deferred_interrupts, mark_done
from nnseal.locks import Lock, remove_created_folders
from nnseal.verify.receipt import RECEIPT_NAME

STAGING_PREFIX = ".nnseal-staging-"


def _rmtree(path: Path) -> None:
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)  # never follows links inside (fd-based where the platform allows)


# --- the transaction -----------------------------------------------------------


class Staging:
    """One install's transaction on ``results``; see the module docstring.

    A missing ``results`` folder (and its missing parents) is created on entry and removed
    again on exit unless ``commit`` succeeded, so a refused or failed install leaves no
    folder behind. Only folders still empty are removed (rmdir): a folder another install
    started to use in the meantime stays.
    """

    def __init__(self, results: Path):
        self.results = results
        self.root = results  # set on entry
        self.committed = False
        self.late_signals: list[int] = []  # signals that arrived once the swap had started
        self._created: list[Path] = []  # the results folder and its parents, if this install made them
        self._dataset_folders: list[Path] = []  # made by commit
        self._lock: Lock | None = None
        self._defer = contextlib.ExitStack()

    def __enter__(self) -> Staging:
        try:
            self._lock = Lock(self.results, create_folder=True)
            self._created = self._lock.created
            self.root = self._lock.owned(STAGING_PREFIX)
            self.root.mkdir(mode=0o700)
            (self.root / "tree").mkdir()
        except BaseException as err:
            self.__exit__(type(err), err, None)
            if isinstance(err, OSError) and not isinstance(err, EnvironmentProblem):
                raise from_os_error(err, self.results) from err
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        # Old model folders sit in staging after a swap: they go even if a signal arrives now.
        with deferred_interrupts() as late:
            try:
                if self.root != self.results:
                    _rmtree(self.root)
            except OSError:
                pass  # the lock is released below: the next sweep finishes the job
            finally:
                if self._lock is not None:
                    self._lock.release()
            if not self.committed:
                remove_created_folders(self._created)
        self._defer.close()
        self.late_signals += late.signals
        # Once the swap is done the install is done: an interruption from then on changes nothing.
        return self.committed and exc_type is not None and issubclass(exc_type, KeyboardInterrupt)

    def path(self, name: str) -> Path:
        """Where entry ``name`` goes; names were checked by the zip reader (no '..', no absolute)."""
        path = self.root / "tree" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def scratch(self, name: str) -> Path:
        return self.root / f"scratch-{secrets.token_hex(4)}-{os.path.basename(name)}"

    def commit(self, models: list[str], destinations: dict[str, Path], *, force: bool) -> list[str]:
        """Move every staged model folder to its destination: all of them, or (after a failure)
        none; return the destinations that replaced an existing folder.

        ``models`` may also name the dataset-level units of find_best_configuration's results
        (``DatasetX/ensembles/NAME`` folders, with a receipt of their own, and the files
        ``DatasetX/inference_information.json`` and ``inference_instructions.txt``): they move in
        the same step, after the model folders, and roll back with them.

        With ``force`` an existing folder is swapped with the new one (``renameat2`` exchange
        where the filesystem has it: the destination never stands empty) and the old one ends
        in staging, deleted on exit. Signals wait until the end of the ``with`` block.
        """
        deferred = self._defer.enter_context(deferred_interrupts())
        self._defer.callback(lambda: self.late_signals.extend(deferred.signals))
        self._defer.enter_context(commit_lock(self.results))
        done: list[tuple[Path, Path, Path | None]] = []  # (destination, staged, parking of the old folder)
        expected: dict[Path, tuple[dict[str, int], bytes]] = {}
        try:
            for i, model in enumerate(models):
                dest, staged = destinations[model], self.path(model)
                expected[dest] = _unit_state(staged)
                for folder in _folders_between(self.results, dest.parent):  # DatasetX[, DatasetX/ensembles]
                    _make_dataset_folder(folder, self._dataset_folders)
                if dest.is_symlink():  # appeared while we were staging: never replace through a link
                    raise HostileArchive(f"{dest} is a symbolic link; refusing to install through it")
                if dest.exists():
                    if not force:  # appeared while we were staging
                        raise WouldOverwrite(f"{_what(staged)} {dest} exists", hint=Hint.FORCE)
                    parking = self.root / f"old-{i}"
                    done.append((dest, staged, _replace_folder(staged, dest, parking)))
                else:
                    _rename_new(staged, dest)
                    done.append((dest, staged, None))
            for dest, listing in expected.items():
                _check_against_receipt(dest, listing)
        except BaseException as err:
            _roll_back(done)
            for folder in reversed(self._dataset_folders):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            if isinstance(err, OSError) and not isinstance(err, EnvironmentProblem):
                raise from_os_error(err, err.filename or self.results) from err
            raise
        self.committed = True
        mark_done()  # the install has happened: no signal from here on may report otherwise
        return [str(dest) for dest, _, parking in done if parking is not None]


@contextlib.contextmanager
def commit_lock(results: Path):
    """Commits into one results folder take turns (a flock on the folder itself, no extra file):
    two ``--force`` installs of the same model would otherwise swap between each other's
    rename and receipt check. Held for the renames only; the later commit wins. Where the
    filesystem cannot lock a folder (some NFS mounts) commits go unserialized."""
    fd = os.open(results, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _make_dataset_folder(folder: Path, created: list[Path]) -> None:
    if folder.is_symlink():
        raise HostileArchive(f"{folder} is a symbolic link; refusing to install through it")
    try:
        folder.mkdir()
        created.append(folder)
    except FileExistsError:
        if not folder.is_dir():
            raise ModelLayoutError(f"{folder} exists and is not a folder") from None


def _folders_between(results: Path, folder: Path) -> list[Path]:
    """``folder`` and its parents below ``results``, outermost first."""
    chain = []
    while folder != results and results in folder.parents:
        chain.append(folder)
        folder = folder.parent
    return chain[::-1]


def _what(staged: Path) -> str:
    return "file" if staged.is_file() else ("ensemble folder" if staged.parent.name == "ensembles" else "model folder")


def check_dataset_destinations(results: Path, units: list[str], force: bool) -> dict[str, Path]:
    """The dataset-level units' destinations (``DatasetX/ensembles/NAME``, ``DatasetX/<file>``): refuse
    before any work if one exists (unless ``force``) or a path on the way is a link."""
    destinations = {}
    for unit in units:
        dest = results.joinpath(*unit.split("/"))
        for path in [*_folders_between(results, dest.parent), dest]:
            if path.is_symlink():
                raise HostileArchive(f"{path} is a symbolic link; refusing to install through it")
        for path in _folders_between(results, dest.parent):
            if path.exists() and not path.is_dir():
                raise ModelLayoutError(f"{path} exists and is not a folder")
        if dest.exists() and not force:
            raise WouldOverwrite(f"{dest} exists", hint=Hint.FORCE)
        destinations[unit] = dest
    return destinations


def check_destinations(results: Path, models: list[str], force: bool) -> dict[str, Path]:
    """Refuse before any work if a model exists (unless ``force``) or a path on the way is a link."""
    destinations = {}
    for model in models:
        dataset, folder = model.split("/")
        dataset_dir, dest = results / dataset, results / dataset / folder
        for path in (dataset_dir, dest):
            if path.is_symlink():
                raise HostileArchive(f"{path} is a symbolic link; refusing to install through it")
        if dataset_dir.exists() and not dataset_dir.is_dir():
            raise ModelLayoutError(f"{dataset_dir} exists and is not a folder")
        if dest.exists() and not force:
            raise WouldOverwrite(f"model folder {dest} exists", hint=Hint.FORCE)
        destinations[model] = dest
    return destinations


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.lstat().st_size
            for p in sorted(folder.rglob("*")) if p.is_file() or p.is_symlink()}


def _staged_state(staged: Path) -> tuple[dict[str, int], bytes]:
    """A staged model folder's listing (names, sizes) and its receipt, which must list exactly
    the other files (this install wrote both a moment ago)."""
    from nnseal.format.strict_json import load_strict_json

    listing = _listing(staged)
    receipt = (staged / RECEIPT_NAME).read_bytes()
    if set(load_strict_json(receipt)["files"]) != set(listing) - {RECEIPT_NAME}:
        raise EnvironmentProblem("a staged model folder does not match its receipt", path=staged)
    return listing, receipt


def _unit_state(staged: Path) -> tuple[dict[str, int], bytes]:
    """A staged folder's state (``_staged_state``), or a staged file's: its size and bytes (small JSON and text)."""
    if staged.is_file():
        return {"": staged.stat().st_size}, staged.read_bytes()
    return _staged_state(staged)


def _check_against_receipt(dest: Path, staged: tuple[dict[str, int], bytes]) -> None:
    """The installed folder holds exactly what was staged: the same receipt, the files it lists
    and their sizes. Not a re-hash: every byte was hashed as it was written; this catches a
    folder that was emptied, swapped or half-moved under us, which is how installs used to lose
    models."""
    listing, receipt = staged
    try:
        if set(listing) == {""}:  # a file unit
            same = not dest.is_symlink() and dest.is_file() and dest.read_bytes() == receipt
        else:
            same = _listing(dest) == listing and (dest / RECEIPT_NAME).read_bytes() == receipt
    except OSError:
        same = False
    if not same:
        raise EnvironmentProblem("the installed folder does not match its receipt after the final rename "
                                 "(another process changed it); the previous state was restored", path=dest)


def _roll_back(done: list[tuple[Path, Path, Path | None]]) -> None:
    """Undo the renames of ``commit`` in reverse order: each destination gets its old folder back
    (or none), each new folder goes back to staging, removed with it."""
    for dest, staged, parking in reversed(done):
        with contextlib.suppress(OSError):
            if parking is None:
                os.rename(dest, staged)
            elif parking == staged:  # exchanged: exchange back
                if not _rename_exchange(staged, dest):
                    raise OSError(errno.EINVAL, "exchange failed")
            else:
                os.rename(dest, staged)
                os.rename(parking, dest)


def _rename_new(staged: Path, dest: Path) -> None:
    """Rename to a destination that must not exist: rename(2) would silently replace an empty folder."""
    if _renameat2(staged, dest, 1):  # RENAME_NOREPLACE
        return
    if dest.exists() or dest.is_symlink():
        raise WouldOverwrite(f"model folder {dest} exists", hint=Hint.FORCE)
    os.rename(staged, dest)


def _replace_folder(new: Path, dest: Path, old_parking: Path) -> Path:
    """Swap ``new`` into ``dest``; return where the old folder is now. With renameat2(RENAME_EXCHANGE)
    ``dest`` always holds the old or the new folder, never neither; elsewhere, two renames."""
    if _rename_exchange(new, dest):
        return new  # the old folder now sits at ``new``, inside staging, and goes with it
    os.rename(dest, old_parking)
    try:
        os.rename(new, dest)
    except BaseException:
        os.rename(old_parking, dest)
        raise
    return old_parking


def _rename_exchange(a: Path, b: Path) -> bool:
    return _renameat2(a, b, 2)  # RENAME_EXCHANGE


def _renameat2(a: Path, b: Path, flags: int) -> bool:
    """renameat2(2) with ``flags``: True if done; False where the kernel, libc or filesystem lacks
    it (the caller falls back); an OSError for any other failure (EEXIST for NOREPLACE included)."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))
