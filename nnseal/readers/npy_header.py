"""numpy .npy headers: parse the header (a Python dict literal) and resolve its dtype, torch- and numpy-free.

Format (numpy.lib.format): magic ``\\x93NUMPY``, major and minor version bytes, the
header length (2 bytes in version 1, 4 in versions 2 and 3), then the header text. Only
the header is parsed, with ``ast.literal_eval`` and a size cap; ``descr`` is resolved the
way numpy's ``descr_to_dtype`` walks it, against plain spellings only, never through
``numpy.dtype``.
"""

from __future__ import annotations

import ast
import re
import struct
from typing import Any, BinaryIO

from nnseal.errors import InvalidNpyHeader
from nnseal.format.strict_json import show

# numpy.load itself refuses headers over 10,000 bytes unless told otherwise.
MAX_HEADER_BYTES = 64 << 10


# dtype strings numpy.save writes for arrays without Python objects (dtype.str, plus the one-letter
# and named spellings numpy.dtype also accepts). Anything else ('O', 'object', 'object_', 'O8',
# '|O', typos, ...) is not resolved here: numpy may read it as an object dtype, so it is refused.
_PLAIN_DTYPE = re.compile(
    r"^[<>|=]?(?:b1|[iu][1248]|f2|f4|f8|f16|f12|c8|c16|c32|c24|[SUVa]\d*|[mM]8(?:\[\d*\w+\])?"
    r"|[?bBhHiIlLqQpPefdgFDG]"
    r"|bool|int(?:8|16|32|64)|uint(?:8|16|32|64)|float(?:16|32|64)|complex(?:64|128))$")
_MAX_DESCR_DEPTH = 32


def descr_verdict(descr: Any, depth: int = 0) -> str | None:
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
            return f"object dtype {show(descr, 40)}"
        return f"dtype spelling {show(descr, 40)} that nnseal does not resolve"
    if isinstance(descr, tuple) and len(descr) == 2:
        return descr_verdict(descr[0], depth + 1)
    if isinstance(descr, list):
        for field in descr:
            if not isinstance(field, tuple) or len(field) not in (2, 3):
                return f"structured dtype field {show(field, 60)} that nnseal does not resolve"
            verdict = descr_verdict(field[1], depth + 1)
            if verdict is not None:
                return f"structured dtype with field {show(field[0], 40)} of {verdict}"
        return None
    return f"'descr' of type {type(descr).__name__} that nnseal does not resolve"


def read_npy_header(handle: BinaryIO) -> dict:
    """The header dict of a .npy stream positioned at its start; raises InvalidNpyHeader."""
    prefix = handle.read(8)
    if len(prefix) < 8 or not prefix.startswith(b"\x93NUMPY"):
        raise InvalidNpyHeader("truncated before the header")
    major = prefix[6]
    if major == 1:
        raw_len = handle.read(2)
        length = struct.unpack("<H", raw_len)[0] if len(raw_len) == 2 else -1
    elif major in (2, 3):
        raw_len = handle.read(4)
        length = struct.unpack("<I", raw_len)[0] if len(raw_len) == 4 else -1
    else:
        raise InvalidNpyHeader(f"unknown format version {major}")
    if length < 0:
        raise InvalidNpyHeader("truncated inside the header length")
    if length > MAX_HEADER_BYTES:
        raise InvalidNpyHeader(f"header of {length} bytes, over the {MAX_HEADER_BYTES}-byte limit")
    raw = handle.read(length)
    if len(raw) != length:
        raise InvalidNpyHeader("truncated inside the header")
    try:
        text = raw.decode("utf-8" if major == 3 else "latin-1")
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError) as err:
        raise InvalidNpyHeader(f"header is not a Python literal ({type(err).__name__})") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise InvalidNpyHeader("header is not a dict of exactly descr, fortran_order and shape")
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidNpyHeader("shape is not a tuple of non-negative integers")
    if not isinstance(header["fortran_order"], bool):
        raise InvalidNpyHeader("fortran_order is not a boolean")
    return header
