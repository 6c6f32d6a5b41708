"""Pickle opcodes and their arguments, read the way CPython's C unpickler reads them.

pickle.load and torch.load run ``_pickle.c``, not ``pickletools``, and the two disagree on
arguments: the C ``load_int`` reads INT with ``strtol``/``PyLong_FromString`` in base 0
(``I0x0`` is an int to it, an error to ``pickletools.genops``), LONG likewise, FLOAT with
``PyOS_string_to_double`` (no whitespace, no underscores, overflow refused), a C string
ends at its first NUL byte, GLOBAL names are raw UTF-8 (genops escape-decodes them as
ASCII), STRING needs two quote characters, negative PUT and EXT code 0 are refused. A
scanner that reads an argument differently from the loader stops where the loader goes
on, so every reading of a pickle in nnseal goes through ``iter_ops``: the opcode table of
``pickletools`` with the argument rules of ``_pickle.c``. tests/test_pickle_readings.py
holds it to the real C unpickler of the interpreter it runs on.

Only argument decoding is modelled here; what an opcode does to the stack and memo is the
walker's business (``nnseal.readers.pickle_stream``).
"""

from __future__ import annotations

import codecs
import pickle
import pickletools
import re
import struct
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

# _pickle.c refuses sizes and indices above PY_SSIZE_T_MAX.
_SSIZE_MAX = sys.maxsize
_INT64 = 1 << 63


class PickleDecodeError(ValueError):
    """Bytes the C unpickler refuses at this opcode: an unknown opcode or an argument it cannot read."""


class PickleTruncated(PickleDecodeError):
    """The bytes end inside an opcode or before STOP: a longer stream might go on."""


class _Unrepresented:
    """A decimal literal over CPython's 4300-digit limit: valid where the loader lifts the limit.

    Its value is never needed (no torch.save id holds such a number), and computing it is
    quadratic in its length.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<huge int>"


UNREPRESENTED = _Unrepresented()

OPCODES: dict[int, pickletools.OpcodeInfo] = {ord(op.code): op for op in pickletools.opcodes}

# Py_ISSPACE: what PyLong_FromString skips around digits, and the C locale's isspace for strtol.
_WS = rb"[ \t\n\r\x0b\x0c]*"
# strtol(s, &end, 0) in the C locale: octal after a leading 0, hex after 0x (only when a hex digit follows).
_STRTOL0 = re.compile(_WS + rb"([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
# PyLong_FromString(s, NULL, base): Python's int literal syntax with surrounding whitespace.
_PYLONG = {
    0: re.compile(_WS + rb"([+-]?)(0[xX](?:_?[0-9a-fA-F])+|0[oO](?:_?[0-7])+|0[bB](?:_?[01])+|0(?:_?0)*"
                        rb"|[1-9](?:_?[0-9])*)" + _WS),
    10: re.compile(_WS + rb"([+-]?)([0-9](?:_?[0-9])*)" + _WS),
}
# _Py_dg_strtod, then _Py_parse_inf_or_nan: no leading whitespace, no underscores, no hex.
_STRTOD = re.compile(rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:infinity|inf|nan))")
_MAX_DECIMAL_DIGITS = 4000


def _c_string(line: bytes) -> bytes:
    """What C string functions see of a line the unpickler copied: it ends at the first NUL."""
    nul = line.find(b"\0")
    return line if nul < 0 else line[:nul]


def _digits_value(digits: bytes, base: int) -> Any:
    digits = digits.replace(b"_", b"").lstrip(b"0") or b"0"
    if base == 10 and len(digits) > _MAX_DECIMAL_DIGITS:
        return UNREPRESENTED
    return int(digits, base)


def _literal_value(body: bytes) -> Any:
    prefix = body[:2].lower()
    if prefix in (b"0x", b"0o", b"0b"):
        return _digits_value(body[2:], {b"0x": 16, b"0o": 8, b"0b": 2}[prefix])
    return _digits_value(body, 10)


def _pylong(s: bytes, base: int, what: str) -> Any:
    """PyLong_FromString(s, NULL, base) on a NUL-terminated copy of ``s``."""
    match = _PYLONG[base].fullmatch(_c_string(s))
    if match is None:
        raise PickleDecodeError(f"{what} argument is not an integer")
    value = _literal_value(match.group(2))
    return -value if match.group(1) == b"-" and value is not UNREPRESENTED else value


def _strtol0(s: bytes) -> int | None:
    """strtol(s, &end, 0) when it reads the whole line (end at the newline or the NUL), else None."""
    if not s:
        return 0  # no digits: end stays at s, which is the terminating NUL
    match = _STRTOL0.match(s)
    if match is None or (match.end() < len(s) and s[match.end()] != 0x0A):
        return None
    body = match.group(2)
    if body[:2] in (b"0x", b"0X"):
        digits, base = body[2:].lstrip(b"0"), 16
    elif body[:1] == b"0":
        digits, base = body.lstrip(b"0"), 8
    else:
        digits, base = body, 10
    if len(digits) > 22:
        return None  # ERANGE
    value = int(digits or b"0", base)
    value = -value if match.group(1) == b"-" else value
    return value if -_INT64 <= value < _INT64 else None


def _int(line: bytes) -> Any:
    # load_int: strtol in base 0, then PyLong_FromString in base 0 when strtol stops early or overflows.
    if line.isdigit() and len(line) < 19 and (line[0] != 0x30 or len(line) == 1):
        return int(line)  # what protocol 0 writes: plain decimal digits, no octal leading 0
    if not line:
        raise PickleDecodeError("INT argument is empty")
    s = _c_string(line + b"\n")
    value = _strtol0(s)
    if value is None:
        return _pylong(s, 0, "INT")
    if len(line) == 2 and value in (0, 1):
        return bool(value)  # protocol 0's True and False: I01 and I00
    return value


def _long(line: bytes) -> Any:
    # load_long: a trailing L is cut off (it becomes the string's end), then base 0.
    if not line:
        raise PickleDecodeError("LONG argument is empty")
    return _pylong(line[:-1] if line.endswith(b"L") else line + b"\n", 0, "LONG")


def _float(line: bytes) -> float:
    # load_float: PyOS_string_to_double(s, &end, OverflowError), end at the newline or the NUL.
    if not line:
        raise PickleDecodeError("FLOAT argument is empty")
    s = _c_string(line + b"\n")
    match = _STRTOD.match(s)
    if match is None or (match.end() < len(s) and s[match.end()] != 0x0A):
        raise PickleDecodeError("FLOAT argument is not a float")
    text = match.group()
    value = float(text)
    if value in (float("inf"), float("-inf")) and b"n" not in text.lower():
        raise PickleDecodeError("FLOAT argument overflows a double")
    return value


def _memo_index(line: bytes, what: str) -> int:
    # load_get / load_put: PyLong_FromString in base 10, then PyLong_AsSsize_t.
    if line.isdigit() and len(line) < 19:
        return int(line)  # what protocol 0 writes: plain decimal digits
    if not line:
        raise PickleDecodeError(f"{what} argument is empty")
    value = _pylong(line + b"\n", 10, what)
    if value is UNREPRESENTED or not -_INT64 <= value < _INT64:
        raise PickleDecodeError(f"{what} argument overflows a memo index")
    if what == "PUT" and value < 0:
        raise PickleDecodeError("negative PUT argument")
    return value


def _text(data: bytes) -> str:
    """A protocol-0/1 byte string as a str: every loader's encoding reads ASCII alike (torch uses UTF-8)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _string(line: bytes) -> str:
    # load_string: the same quote character at both ends (two of them), then the bytes escapes.
    if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
        raise PickleDecodeError("the STRING opcode argument must be quoted")
    body = line[1:-1]
    if b"\\" in body:
        # PyBytes_DecodeEscape only warns about an unknown escape such as \q: the loader reads on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                body = codecs.escape_decode(body)[0]
            except ValueError as err:
                raise PickleDecodeError(f"STRING argument: {err}") from None
    return _text(body)


def _decode(data: bytes, codec: str, what: str) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        raise PickleDecodeError(f"{what} argument is not {codec}") from None


def _line(data: bytes, start: int, end: int, name: str) -> tuple[bytes, int]:
    """A newline-terminated argument, as _Unpickler_Readline reads it (the newline must come)."""
    newline = data.find(b"\n", start, end)
    if newline < 0:
        raise PickleTruncated(f"no newline after {name}'s argument")
    return data[start:newline], newline + 1


def _global(data: bytes, start: int, end: int) -> tuple[tuple[str, str], int]:
    # load_global: the module line may be empty, the name line may not; both raw UTF-8, decoded in turn.
    line, start = _line(data, start, end, "GLOBAL")
    module = _decode(line, "utf-8", "GLOBAL")
    line, start = _line(data, start, end, "GLOBAL")
    if not line:
        raise PickleDecodeError("GLOBAL name is empty")
    return (module, _decode(line, "utf-8", "GLOBAL")), start


def _inst(data: bytes, start: int, end: int) -> tuple[tuple[str, str], int]:
    # load_inst: both lines non-empty ASCII (the MARK it needs first is the walker's to check).
    parts = []
    for _ in range(2):
        line, start = _line(data, start, end, "INST")
        if not line:
            raise PickleDecodeError("INST module or name is empty")
        parts.append(_decode(line, "ascii", "INST"))
    return (parts[0], parts[1]), start


_LINE_ARGS: dict[str, Callable[[bytes], Any]] = {
    "INT": _int,
    "LONG": _long,
    "FLOAT": _float,
    "STRING": _string,
    "UNICODE": lambda line: _decode_raw_unicode(line),
    "PERSID": lambda line: _decode(line, "ascii", "PERSID"),
    "GET": lambda line: _memo_index(line, "GET"),
    "PUT": lambda line: _memo_index(line, "PUT"),
}
_PAIR_ARGS = {"GLOBAL": _global, "INST": _inst}


def _decode_raw_unicode(line: bytes) -> str:
    try:
        return line.decode("raw-unicode-escape")
    except UnicodeDecodeError:
        raise PickleDecodeError("UNICODE argument is not raw-unicode-escape") from None


# Counted arguments: (width of the count, signed count, how the bytes become a value).
_COUNTED: dict[str, tuple[int, bool, Callable[[bytes], Any]]] = {
    "string1": (1, False, lambda raw: raw.decode("latin-1")),
    "string4": (4, True, lambda raw: raw.decode("latin-1")),
    "bytes1": (1, False, bytes),
    "bytes4": (4, False, bytes),
    "bytes8": (8, False, bytes),
    "bytearray8": (8, False, bytearray),
    "unicodestring1": (1, False, lambda raw: raw.decode("utf-8", "surrogatepass")),
    "unicodestring4": (4, False, lambda raw: raw.decode("utf-8", "surrogatepass")),
    "unicodestring8": (8, False, lambda raw: raw.decode("utf-8", "surrogatepass")),
    "long1": (1, False, lambda raw: int.from_bytes(raw, "little", signed=True)),
    "long4": (4, True, lambda raw: int.from_bytes(raw, "little", signed=True)),
}

# Fixed-size arguments: (size, struct unpacker).
_FIXED = {
    "uint1": (1, struct.Struct("<B").unpack_from),
    "uint2": (2, struct.Struct("<H").unpack_from),
    "int4": (4, struct.Struct("<i").unpack_from),
    "uint4": (4, struct.Struct("<I").unpack_from),
    "uint8": (8, struct.Struct("<Q").unpack_from),
    "float8": (8, struct.Struct(">d").unpack_from),
}
# byte -> (opcode, fixed argument size or -1, unpacker or None): one lookup per opcode.
_TABLE: dict[int, tuple[pickletools.OpcodeInfo, int, Any]] = {
    code: (op, *((0, None) if op.arg is None else _FIXED.get(op.arg.name, (-1, None))))
    for code, op in OPCODES.items()
}
_EXTENSIONS = frozenset({"EXT1", "EXT2", "EXT4"})
# PROTO, FRAME, EXT1, EXT2, EXT4: the only fixed-size arguments the C unpickler checks.
_CHECKED = frozenset({0x80, 0x95, 0x82, 0x83, 0x84})


def _checked_fixed(op: pickletools.OpcodeInfo, arg: Any, data: bytes, after: int, end: int) -> None:
    """The C unpickler's checks on fixed-size arguments (only PROTO, FRAME and EXT* have any)."""
    name = op.name
    if name == "PROTO" and arg > pickle.HIGHEST_PROTOCOL:
        raise PickleDecodeError(f"unsupported pickle protocol: {arg}")
    if name == "FRAME":
        if arg > _SSIZE_MAX:
            raise PickleDecodeError("FRAME length exceeds system's maximum of sys.maxsize bytes")
        if after + arg > end:
            raise PickleTruncated("pickle data was truncated (FRAME longer than the data)")
    if name in _EXTENSIONS and arg <= 0:
        raise PickleDecodeError("EXT specifies code <= 0")


def _variable_arg(op: pickletools.OpcodeInfo, data: bytes, start: int, end: int) -> tuple[Any, int]:
    name = op.name
    decode = _LINE_ARGS.get(name)
    if decode is not None:
        line, after = _line(data, start, end, name)
        return decode(line), after
    if name in _PAIR_ARGS:
        return _PAIR_ARGS[name](data, start, end)
    # opcodes without an argument have the fixed size 0: the rest have a counted one
    width, signed, convert = _COUNTED[op.arg.name if op.arg is not None else ""]
    if start + width > end:
        raise PickleTruncated(f"not enough data to read {name}'s length")
    length = int.from_bytes(data[start:start + width], "little", signed=signed)
    if length < 0:
        raise PickleDecodeError(f"{name} has a negative byte count")
    if length > _SSIZE_MAX:
        raise PickleDecodeError(f"{name} length exceeds sys.maxsize bytes")
    begin = start + width
    if begin + length > end:
        raise PickleTruncated(f"{name} wants {length} bytes, only {end - begin} remain")
    try:
        return convert(data[begin:begin + length]), begin + length
    except UnicodeDecodeError:
        raise PickleDecodeError(f"{name} argument is not UTF-8") from None


Op = tuple[pickletools.OpcodeInfo, Any, int, int]


def iter_ops(data: bytes, pos: int = 0, end: int | None = None) -> Iterator[Op]:
    """``(opcode, argument, position, position after it)`` for each opcode from ``pos`` up to STOP.

    GLOBAL and INST arguments are ``(module, name)`` tuples. Raises PickleTruncated when the
    bytes end first, PickleDecodeError when the C unpickler would refuse the opcode itself.
    """
    if end is None:
        end = len(data)
    table = _TABLE
    while True:
        if pos >= end:
            raise PickleTruncated("pickle exhausted before seeing STOP")
        code = data[pos]
        known = table.get(code)
        if known is None:
            raise PickleDecodeError(f"at position {pos}, opcode {data[pos:pos + 1]!r} unknown")
        op, size, unpack = known
        start = pos + 1
        if size >= 0:
            after = start + size
            if after > end:
                raise PickleTruncated(f"not enough data to read {op.name}'s argument")
            if unpack is None:
                arg = None
            else:
                arg = unpack(data, start)[0]
                if code in _CHECKED:
                    _checked_fixed(op, arg, data, after, end)
        else:
            arg, after = _variable_arg(op, data, start, end)
        yield op, arg, pos, after
        if code == 0x2E:  # STOP
            return
        pos = after
