"""PyTorch checkpoints, read statically: torch.save zips and the legacy (pre-1.6) stream format.

Unlike ``inspect_checkpoint``, which refuses on the first problem, every problem is
collected: the archive's layout, each pickle in it, storage sizes and tensor geometry.
"""

from __future__ import annotations

from pathlib import Path

from nnseal.errors import HostileArchive, MalformedPickle
from nnseal.readers.pickle_ops import PickleDecodeError, iter_ops
from nnseal.readers.pickle_stream import DEFAULT_MAX_OPS
from nnseal.readers.torch_archive import MAX_DATA_PKL, TORCHSCRIPT_MARKERS, layout_problem, storage_problem
from nnseal.readers.zip_archive import SafeZip
from nnseal.scan.findings import Finding, Location, finding
from nnseal.scan.pickle_check import MAX_PICKLE_BYTES, pickle_findings, scan_findings
from nnseal.scan.tensor_geometry import geometry_problems, scan_with_tensors

# torch's legacy stream: magic number, protocol version, sys info, the object, storage keys.
LEGACY_PICKLES = 5


def _is_torchscript(names: list[str]) -> bool:
    # One search per marker over all records: validated names hold no newline, and no marker does.
    records = "\n".join(name.split("/", 1)[1] for name in names if "/" in name)
    return any(marker in records for marker in TORCHSCRIPT_MARKERS)


def torch_zip_findings(archive: SafeZip, path: Path, where: Location) -> list[Finding]:
    names = archive.names()
    found: list[Finding] = []
    if any(entry.is_dir for entry in archive.entries):
        found.append(finding(where, "archive-layout", "zip holds directory entries: not written by torch.save"))
    if _is_torchscript(names):
        found.append(finding(where, "torchscript", "TorchScript archive (torch.jit.save): loading it runs its "
                                                   "code; export a state dict instead"))
        prefix, problem = None, None
    else:
        prefix, problem = layout_problem(path, names)
        if problem:
            found.append(finding(where, "archive-layout", problem))

    main_pickle = f"{prefix}/data.pkl" if prefix else None
    tensors = None
    for name in names:
        if not name.endswith(".pkl"):
            continue
        entry = archive.entry(name)
        if entry.size > MAX_DATA_PKL:
            found.append(finding(where, "not-checked", f"{name} is {entry.size} bytes, over the "
                                                       f"{MAX_DATA_PKL}-byte scan limit for pickles"))
            continue
        try:
            data = archive.read(entry, max_size=MAX_DATA_PKL)
        except HostileArchive as err:
            found.append(finding(where, "hostile-archive", err.reason))
            continue
        if name != main_pickle:
            found += pickle_findings(where, data, name, torch_pickle=True)
            continue
        try:
            scan, tensors = scan_with_tensors(data, max_ops=DEFAULT_MAX_OPS, source=name)
        except MalformedPickle as err:
            found.append(finding(where, "malformed-pickle", f"{name}: {err.reason}"))
            continue
        found += scan_findings(where, scan, name, torch_pickle=True)
        storages, problem = storage_problem(archive, prefix or "", scan.persistent_ids)
        if problem:
            found.append(finding(where, "storage-mismatch", problem))
        else:
            for geometry in geometry_problems(tensors, storages):
                found.append(finding(where, "tensor-geometry", geometry))
    return found


def _pickle_end(data: bytes, start: int) -> int:
    """Offset one past the STOP of the pickle starting at ``start``; raises MalformedPickle."""
    try:
        for op, _, _, after in iter_ops(data, start):
            if op.code == ".":
                return after
    except PickleDecodeError as err:
        raise MalformedPickle(f"not a well-formed pickle ({err})") from None
    raise MalformedPickle("pickle ends without STOP (truncated)")


def legacy_findings(handle, where: Location) -> list[Finding]:
    """The pickles of a legacy torch.save stream, each scanned; the tensor data after them is never read."""
    data = handle.read(MAX_PICKLE_BYTES)
    found = [finding(where, "legacy-format", "legacy (pre-1.6, non-zip) torch.save format: nnseal sanitize does "
                                             "not load it; re-save it with torch.save in a trusted environment")]
    labels = ("magic number", "protocol version", "system info", "checkpoint pickle", "storage keys")
    start = 0
    for index in range(LEGACY_PICKLES):
        label = f"legacy {labels[index]}"
        try:
            end = _pickle_end(data, start)
        except MalformedPickle as err:
            found.append(finding(where, "malformed-pickle", f"{label}: {err.reason}"))
            break
        found += pickle_findings(where, data[start:end], label, torch_pickle=True)
        start = end
    return found
