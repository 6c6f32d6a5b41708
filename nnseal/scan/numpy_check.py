"""numpy .npy files: parse the header (a Python dict literal) and flag object arrays, which need pickle.

Format (numpy.lib.format): magic ``\\x93NUMPY``, major and minor version bytes, the
header length (2 bytes in version 1, 4 in versions 2 and 3), then the header text.
Only the header is parsed, with ``ast.literal_eval`` and a size cap; array data is read
only when it is a pickle (object arrays), to name what it imports.
"""

from __future__ import annotations

import ast
import re
import struct
from typing import Any, BinaryIO

from nnseal.format.strict_json import show
from nnseal.scan.findings import Finding, Location, finding
from nnseal.scan.pickle_check import MAX_PICKLE_BYTES, pickle_findings

# numpy.load itself refuses headers over 10,000 bytes unless told otherwise.
MAX_HEADER_BYTES = 64 << 10


class _BadHeader(ValueError):
    pass


# dtype strings numpy.save writes for arrays without Python objects (dtype.str, plus the one-letter
# and named spellings numpy.dtype also accepts). Anything else ('O', 'object', 'object_', 'O8',
# '|O', typos, ...) is not resolved here: numpy may read it as an object dtype, so it is refused.
_PLAIN_DTYPE = re.compile(
    r"^[<>|=]?(?:b1|[iu][1248]|f2|f4|f8|f16|f12|c8|c16|c32|c24|[SUVa]\d*|[mM]8(?:\[\d*\w+\])?"
    r"|[?bBhHiIlLqQpPefdgFDG]"
    r"|bool|int(?:8|16|32|64)|uint(?:8|16|32|64)|float(?:16|32|64)|complex(?:64|128))$")
_MAX_DESCR_DEPTH = 32


def _descr_verdict(descr: Any, depth: int = 0) -> str | None:
    """None when ``descr`` resolves to a dtype without Python objects, else why not.

    Mirrors numpy.lib.format.descr_to_dtype: a string is a dtype spelling, a tuple is
    (base, shape), a list is structured fields (name, descr[, shape]); nothing is passed to
    numpy.dtype, so no spelling can reach code.
    """
    if depth > _MAX_DESCR_DEPTH:
        return "dtype nested too deeply"
    if isinstance(descr, str):
        if _PLAIN_DTYPE.match(descr):
            return None
        if descr.lstrip("<>|=!").lower().startswith("o"):
            return f"object dtype {descr!r:.40}"
        return f"dtype spelling {descr!r:.40} that nnseal does not resolve"
    if isinstance(descr, tuple) and len(descr) == 2:
        return _descr_verdict(descr[0], depth + 1)
    if isinstance(descr, list):
        for field in descr:
            if not isinstance(field, tuple) or len(field) not in (2, 3):
                return f"structured dtype field {show(field, 60)} that nnseal does not resolve"
            verdict = _descr_verdict(field[1], depth + 1)
            if verdict is not None:
                return f"structured dtype with field {show(field[0], 40)} of {verdict}"
        return None
    return f"'descr' of type {type(descr).__name__} that nnseal does not resolve"


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
    except _BadHeader as err:
        return [finding(where, "numpy-header", f"{label}: {err}")]
    verdict = _descr_verdict(header["descr"])
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
