"""Walk the given paths, classify every file and archive member by content, and collect findings."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from nnseal.errors import EnvironmentProblem, HostileArchive
from nnseal.readers.zip_archive import Entry, SafeZip, open_zip
from nnseal.scan.checkpoint_check import legacy_findings, torch_zip_findings
from nnseal.scan.classify import (
    HEAD_BYTES,
    in_model_folder,
    is_model_name,
    looks_like_model_name,
    readings,
    sniff,
    zip_kind,
)
from nnseal.scan.findings import Finding, Location, finding
from nnseal.scan.member_io import MemberReader
from nnseal.scan.numpy_check import npy_findings
from nnseal.scan.pickle_check import (
    MAX_PICKLE_BYTES,
    POSTPROCESSING_PICKLE,
    pickle_findings,
    postprocessing_pickle_findings,
)
from nnseal.scan.report import Scanned, ScanReport
from nnseal.scan.safetensors_check import safetensors_findings
from nnseal.scan.walk import WalkItem, walk

if TYPE_CHECKING:
    from tempfile import TemporaryDirectory

# A zip inside a zip inside a zip is scanned; one level more is reported, not followed.
MAX_ZIP_DEPTH = 3
# A zip inside a zip is copied to a temporary file to be read; past this size it is not
# (a deflate-bomb member could otherwise fill the disk) and the gate reports it unchecked.
MAX_NESTED_ZIP_BYTES = 1 << 30
# Below this many files or bytes, starting worker processes costs more than it saves.
PARALLEL_MIN_FILES = 64
PARALLEL_MIN_BYTES = 16 << 20

Opener = Callable[[], BinaryIO]

# What a model file may be: what nnseal can vouch for without running anything.
_VOUCHED_KINDS = frozenset({"torch-zip", "safetensors", "nnseal-package"})
# What torch.load falls back to when a file is not a zip: both run pickles.
_TORCH_LOAD_FALLBACKS = frozenset({"pickle", "torch-legacy", "torch-legacy-tar", "polyglot"})
_KIND_WORDS = {"pickle": "a raw pickle", "torch-legacy": "a legacy torch.save stream",
               "torch-legacy-tar": "a legacy torch.save tar", "polyglot": "a file with several readings",
               "npy": "a numpy array", "npz": "a numpy archive", "zip": "a zip", "nnunet-zip": "an nnU-Net zip"}


def _member_opener(archive: SafeZip, entry: Entry) -> Opener:
    """Open ``entry`` again for a full read (the head was read through its own stream)."""
    return lambda: cast(BinaryIO, MemberReader(archive.stream(entry)))


class Scanner:
    def __init__(self, trusted_keys: Sequence[str | os.PathLike] = (), trust_folder: str | os.PathLike | None = None):
        self.trusted_keys = [Path(k) for k in trusted_keys]
        self.trust_folder = Path(trust_folder) if trust_folder is not None else None
        self.report = ScanReport()
        self._spool: TemporaryDirectory | None = None

    # --- results -----------------------------------------------------------------

    def add(self, findings: list[Finding]) -> None:
        self.report.findings.extend(findings)

    def saw(self, where: Location, kind: str) -> None:
        self.report.scanned.append(Scanned(where.path, where.member, kind))

    # --- files on disk -------------------------------------------------------------

    def scan_item(self, item: WalkItem) -> None:
        where = Location(str(item.path))
        if item.status == "symlink":
            try:
                target = repr(os.readlink(item.path))[:200]
            except OSError:
                target = "(unreadable)"
            self.add([finding(where, "symlink", f"symbolic link to {target}: not followed")])
        elif item.status == "special":
            self.add([finding(where, "not-regular-file", "not a regular file: skipped")])
        elif item.status == "unreadable":
            self.add([finding(where, "unreadable", f"could not be read ({item.error}): not checked")])
        else:
            self.scan_disk_file(item.path, where)

    def merge(self, other: ScanReport) -> None:
        self.report.findings.extend(other.findings)
        self.report.scanned.extend(other.scanned)
        self.report.files += other.files

    def scan_disk_file(self, path: Path, where: Location, depth: int = 0, name: str | None = None) -> None:
        try:
            size, head = _read_head(path)
        except OSError as err:
            self.add([finding(where, "unreadable", f"could not be read ({err.strerror or err}): not checked")])
            return
        if depth == 0:
            self.report.files += 1
        self.scan_content(head, size, lambda: open(path, "rb"), where, name or path.name, depth, disk_path=path)

    # --- one file's content, wherever it lives -------------------------------------------

    def scan_content(self, head: bytes, size: int, opener: Opener, where: Location, name: str, depth: int,
                     disk_path: Path | None = None) -> None:
        kind = sniff(head, size)
        if kind == "zip":
            self.scan_zip_content(opener, where, depth, disk_path, size, name)
            return
        self.saw(where, kind)
        if kind in ("empty", "other"):
            if looks_like_model_name(name):
                what = "an empty file" if kind == "empty" else "no format nnseal recognises"
                self.add([finding(where, "unrecognized-model-file",
                                  f"named like a model file but holds {what}: not checked")])
            return
        if kind == "pickle" and name.rsplit("/", 1)[-1] == POSTPROCESSING_PICKLE and size <= MAX_PICKLE_BYTES:
            with opener() as handle:
                found = postprocessing_pickle_findings(where, handle.read(MAX_PICKLE_BYTES + 1))
            if found is not None:
                self.add(found)
                return
        self.check_model_format(where, name, kind)
        if kind == "polyglot":
            self.add([finding(where, "polyglot", f"reads validly as {' and as '.join(readings(head, size))}: "
                                                 "loaders would disagree on what it holds")])
            return
        if kind == "torch-legacy-tar":
            self.add([finding(where, "not-checked", "legacy tar torch.save format: not checked statically; "
                                                    "re-save it with torch.save in a trusted environment")])
            return
        with opener() as handle:
            if kind == "torch-legacy":
                self.add(legacy_findings(handle, where))
            elif kind == "npy":
                self.add(npy_findings(handle, where))
            elif kind == "safetensors":
                self.add(safetensors_findings(handle, size, where))
            elif kind == "pickle":
                data = handle.read(MAX_PICKLE_BYTES + 1)
                self.add(pickle_findings(where, data, "pickle", torch_pickle=False))

    def check_model_format(self, where: Location, name: str, kind: str) -> None:
        """A model file that is not a torch.save zip, safetensors or an nnseal package is refused.

        By name (what torch.load is pointed at), or by place: in an nnU-Net fold folder,
        anything torch.load would read as a legacy tar or a pickle.
        """
        if kind in _VOUCHED_KINDS:
            return
        if is_model_name(name):
            why = "named like a model file"
        elif kind in _TORCH_LOAD_FALLBACKS and in_model_folder(str(where)):
            why = "in an nnU-Net fold folder"
        else:
            return
        self.add([finding(where, "model-format", f"{why} but holds {_KIND_WORDS.get(kind, kind)}, not a torch.save "
                                                 "zip, safetensors or an nnseal package")])

    # --- zips ------------------------------------------------------------------------

    def scan_zip_content(self, opener: Opener, where: Location, depth: int, disk_path: Path | None,
                         size: int, name: str = "") -> None:
        if depth >= MAX_ZIP_DEPTH:
            self.saw(where, "zip")
            self.add([finding(where, "not-checked", f"zip nested more than {MAX_ZIP_DEPTH} levels deep: not opened")])
            return
        if disk_path is None:  # a zip inside a zip: the reader needs a file of its own
            if size > MAX_NESTED_ZIP_BYTES:
                self.saw(where, "zip")
                self.add([finding(where, "not-checked",
                                  f"nested zip of {size} bytes is over the {MAX_NESTED_ZIP_BYTES}-byte limit "
                                  "for nested zips: not opened")])
                return
            with self.spooled(opener) as spooled:
                self.scan_zip_file(spooled, where, depth, name)
        else:
            self.scan_zip_file(disk_path, where, depth, name)

    def scan_zip_file(self, path: Path, where: Location, depth: int, name: str = "") -> None:
        try:
            archive = open_zip(path)
        except HostileArchive as err:
            self.saw(where, "zip")
            self.add([finding(where, "hostile-archive", err.reason)])
            return
        with archive:
            kind = zip_kind(archive.names())
            self.saw(where, kind)
            self.check_model_format(where, name, kind)
            if kind == "torch-zip":
                self.add(torch_zip_findings(archive, path, where))
                return
            if kind == "nnseal-package":
                from nnseal.scan.package_check import package_findings  # the signing stack, only when needed

                try:
                    self.add(package_findings(path, where, self.trusted_keys, self.trust_folder))
                except HostileArchive as err:  # an entry's bytes disagree with its headers
                    self.add([finding(where, "hostile-archive", err.reason)])
            elif kind == "nnunet-zip":
                self.add([finding(where, "nnunet-export-zip", "nnU-Net's own export zip: unsigned, with pickle "
                                                              "checkpoints; every member is scanned")])
            self.scan_members(archive, where, depth)

    def scan_members(self, archive: SafeZip, where: Location, depth: int) -> None:
        for entry in archive.entries:
            if entry.is_dir:
                continue
            inner = where.inside(entry.name)
            try:
                with MemberReader(archive.stream(entry, chunk=HEAD_BYTES)) as reader:
                    head = reader.read(HEAD_BYTES)
                self.scan_content(head, entry.size, _member_opener(archive, entry), inner,
                                  entry.name.rsplit("/", 1)[-1], depth + 1)
            except HostileArchive as err:
                self.add([finding(inner, "hostile-archive", err.reason)])

    # --- temporary copies of nested zips ------------------------------------------------

    def spooled(self, opener: Opener):
        import tempfile

        if self._spool is None:
            self._spool = tempfile.TemporaryDirectory(prefix="nnseal-scan-")
        return _SpooledCopy(Path(self._spool.name), opener)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.cleanup()
            self._spool = None


class _SpooledCopy:
    """A member copied to a private temporary file for the length of a ``with`` block."""

    def __init__(self, folder: Path, opener: Opener):
        self.folder = folder
        self.opener = opener
        self.path: Path | None = None

    def __enter__(self) -> Path:
        import tempfile

        fd, name = tempfile.mkstemp(dir=self.folder, suffix=".zip")
        self.path = Path(name)
        with os.fdopen(fd, "wb") as out, self.opener() as source:
            while block := source.read(1 << 20):
                out.write(block)
        return self.path

    def __exit__(self, *exc) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _read_head(path: Path) -> tuple[int, bytes]:
    """The file's size and first HEAD_BYTES, without a buffered file object (a scan opens thousands)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        head = os.read(fd, HEAD_BYTES)
        while len(head) < min(size, HEAD_BYTES) and (more := os.read(fd, HEAD_BYTES - len(head))):
            head += more
        return size, head
    finally:
        os.close(fd)


def _total_size(files: list[WalkItem]) -> int:
    total = 0
    for item in files:
        try:
            total += os.lstat(item.path).st_size
        except OSError:
            pass  # reported as unreadable when scanned
    return total


def _scan_batch(paths: list[str], trusted_keys: list[str], trust_folder: str | None) -> list[ScanReport]:
    """A worker process's share: one report per file, in order."""
    reports = []
    for path in paths:
        scanner = Scanner(trusted_keys, trust_folder)
        try:
            scanner.scan_item(WalkItem(Path(path), "file"))
        finally:
            scanner.close()
        reports.append(scanner.report)
    return reports


def _forkable() -> bool:
    import sys
    import threading
    from multiprocessing import get_all_start_methods

    return "fork" in get_all_start_methods() and threading.active_count() == 1 and "torch" not in sys.modules


def _scan_files_in_parallel(files: list[WalkItem], trusted_keys: list[str], trust_folder: str | None,
                            workers: int) -> list[ScanReport]:
    # The walk over data.pkl is pure Python: processes, not threads. A single-threaded caller
    # without torch (the CLI) forks, which starts workers in milliseconds; any other caller
    # gets "spawn", clean interpreters (forking a process that holds threads or torch is
    # unsafe). Results come back in order.
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    can_fork = _forkable()
    batch = max(8, len(files) // (workers * 8))
    batches = [[str(item.path) for item in files[i:i + batch]] for i in range(0, len(files), batch)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork" if can_fork else "spawn")) as pool:
        results = pool.map(_scan_batch, batches, [trusted_keys] * len(batches), [trust_folder] * len(batches))
        return [report for reports in results for report in reports]


def scan_paths(paths: Sequence[str | os.PathLike], trusted_keys: Sequence[str | os.PathLike] = (), *,
               trust_folder: str | os.PathLike | None = None, workers: int = 1) -> ScanReport:
    """Scan files and folders; raise EnvironmentProblem if a given path does not exist.

    Package signatures count as trusted when made by a key in ``trusted_keys`` or (when it is
    given) in ``trust_folder``.

    Nothing is executed, unpickled, extracted into place or loaded with torch. With
    ``workers`` > 1 and enough work (PARALLEL_MIN_FILES files and PARALLEL_MIN_BYTES), files
    are scanned in that many processes; the report is the same, in the same order.
    """
    roots = [Path(p) for p in paths]
    if trusted_keys:  # a bad key file is the user's error: say so before scanning anything
        from nnseal.format.trust import load_trusted_keys

        load_trusted_keys(list(trusted_keys), trust_folder)
    for root in roots:
        if not os.path.lexists(root):
            raise EnvironmentProblem("no such file or folder", path=root)
    items = [item for root in roots for item in walk(root)]
    files = [item for item in items if item.status == "file"]
    scanner = Scanner(trusted_keys, trust_folder)
    try:
        if workers > 1 and len(files) >= PARALLEL_MIN_FILES and _total_size(files) >= PARALLEL_MIN_BYTES:
            folder = str(trust_folder) if trust_folder is not None else None
            per_file = iter(_scan_files_in_parallel(files, [str(k) for k in trusted_keys], folder, workers))
            for item in items:
                if item.status == "file":
                    scanner.merge(next(per_file))
                else:
                    scanner.scan_item(item)
        else:
            for item in items:
                scanner.scan_item(item)
    finally:
        scanner.close()
    return scanner.report
