"""numpy .npy files: parse the header (a Python dict literal) and flag object arrays, which need pickle.

Format (numpy.lib.format): magic ``\\x93NUMPY``, major and minor version bytes, the
header length (2 bytes in version 1, 4 in versions 2 and 3), then the header text.
Only the header is parsed, with ``ast.literal_eval`` and a size cap; array data is read
only when it is a pickle (object arrays), to name what it imports.
"""

from __future__ import annotations

import ast
import struct
from typing import Any, BinaryIO

from nnseal.format.strict_json import show
from nnseal.scan.findings import Finding, Location, finding
from nnseal.scan.pickle_check import MAX_PICKLE_BYTES, pickle_findings

# numpy.load itself refuses headers over 10,000 bytes unless told otherwise.
MAX_HEADER_BYTES = 64 << 10


class _BadHeader(ValueError):
    pass


def _has_object(descr: Any) -> bool:
    """Whether a dtype description (``'<f4'``, ``'|O'``, or a list of fields) involves Python objects."""
    if isinstance(descr, str):
        return descr.lstrip("<>|=!").startswith("O")
    if isinstance(descr, list):
        for field in descr:
            if not isinstance(field, tuple) or len(field) < 2:
                raise _BadHeader(f"structured dtype field {show(field, 60)} is malformed")
            if _has_object(field[1]):
                return True
        return False
    raise _BadHeader(f"'descr' is {type(descr).__name__}, not a dtype description")


def read_npy_header(handle: BinaryIO) -> dict:
    """The header dict of a .npy stream positioned at its start; raises _BadHeader."""
    prefix = handle.read(8)
    if len(prefix) < 8 or not prefix.startswith(b"\x93NUMPY"):
        raise _BadHeader("truncated before the header")
    major = prefix[6]
    if major == 1:
        raw_len = handle.read(2)
        length = struct.unpack("<H", raw_len)[0] if len(raw_len) == 2 else -1
    elif major in (2, 3):
        raw_len = handle.read(4)
        length = struct.unpack("<I", raw_len)[0] if len(raw_len) == 4 else -1
    else:
        raise _BadHeader(f"unknown format version {major}")
    if length < 0:
        raise _BadHeader("truncated inside the header length")
    if length > MAX_HEADER_BYTES:
        raise _BadHeader(f"header of {length} bytes, over the {MAX_HEADER_BYTES}-byte limit")
    raw = handle.read(length)
    if len(raw) != length:
        raise _BadHeader("truncated inside the header")
    try:
        text = raw.decode("utf-8" if major == 3 else "latin-1")
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError) as err:
        raise _BadHeader(f"header is not a Python literal ({type(err).__name__})") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise _BadHeader("header is not a dict of exactly descr, fortran_order and shape")
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
        raise _BadHeader("shape is not a tuple of non-negative integers")
    if not isinstance(header["fortran_order"], bool):
        raise _BadHeader("fortran_order is not a boolean")
    return header


def npy_findings(handle: BinaryIO, where: Location, label: str = "array") -> list[Finding]:
    try:
        header = read_npy_header(handle)
        has_object = _has_object(header["descr"])
    except _BadHeader as err:
        return [finding(where, "numpy-header", f"{label}: {err}")]
    if not has_object:
        return []
    found = [finding(where, "numpy-object-array",
                     f"{label} holds Python objects (dtype {show(header['descr'], 60)}): numpy.load needs "
                     "allow_pickle=True, which unpickles it")]
    payload = handle.read(MAX_PICKLE_BYTES + 1)
    if payload:
        found += pickle_findings(where, payload, f"{label}'s pickled data", torch_pickle=False)
    return found
