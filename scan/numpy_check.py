"""numpy .npy files: flag object arrays (they need pickle) and dtypes nnseal does not resolve.

The header is read by ``nnseal.readers.npy_header``; array data is read only when it is a
pickle (object arrays), to name what it imports.
"""

from __future__ import annotations

from typing import BinaryIO

from nnseal.errors import InvalidNpyHeader
from nnseal.readers.npy_header import descr_verdict, read_npy_header
from nnseal.scan.findings import Finding, Location, finding
from nnseal.scan.pickle_check import MAX_PICKLE_BYTES, pickle_findings


def npy_findings(handle: BinaryIO, where: Location, label: str = "array") -> list[Finding]:
    try:
        header = read_npy_header(handle)
    except InvalidNpyHeader as err:
        return [finding(where, "numpy-header", f"{label}: {err}")]
    verdict = descr_verdict(header["descr"])
    if verdict is None:
        return []
    if not verdict.startswith("object") and "object dtype" not in verdict:
        return [finding(where, "numpy-dtype", f"{label} declares a {verdict}: numpy may read it as objects")]
    found = [finding(where, "numpy-object-array",
                     f"{label} holds Python objects ({verdict}): numpy.load needs allow_pickle=True, which "
                     "unpickles it")]
    payload = handle.read(MAX_PICKLE_BYTES + 1)
    if payload:
        found += pickle_findings(where, payload, f"{label}'s pickled data", torch_pickle=False)
    return found
