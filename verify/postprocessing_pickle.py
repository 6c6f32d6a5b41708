"""Write nnU-Net's ``postprocessing.pkl`` from a checked postprocessing.json, without pickle.

``nnUNetv2_apply_postprocessing -pp_pkl_file`` unpickles ``(pp_fns, pp_fn_kwargs)``: a list of
functions and a list of keyword dicts. Packages never carry that pickle; install rebuilds it
here, opcode by opcode (protocol 2, no memo), from the steps ``postprocessing_steps`` allowed.
The only globals it can name are nnU-Net's own postprocessing functions
(``nnseal.sanitize.pipeline_json.POSTPROCESSING_FUNCTIONS``); everything else is a list, a
tuple, a dict, a string or an int. Torch-free, nnunetv2-free.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from nnseal.errors import InvalidArgument

PROTO, STOP, MARK = b"\x80\x02", b".", b"("
EMPTY_LIST, APPENDS, EMPTY_DICT, SETITEMS, TUPLE, TUPLE2 = b"]", b"e", b"}", b"u", b"t", b"\x86"
BININT, BINUNICODE, GLOBAL = b"J", b"X", b"c"


def postprocessing_pickle_bytes(postprocessing: object, *, name: str = "postprocessing.json") -> bytes:
    """The pickle nnU-Net's determine_postprocessing would have saved for ``postprocessing`` (a parsed
    postprocessing.json): the same functions, the same arguments (labels as ints, regions as
    tuples). Refused (UnsafeJson) unless every step is allowlisted."""
    from nnseal.sanitize.pipeline_json import POSTPROCESSING_FUNCTIONS, postprocessing_steps

    steps = postprocessing_steps(postprocessing, name=name)
    out = bytearray(PROTO)
    out += EMPTY_LIST
    if steps:
        out += MARK
        for module, function, _ in steps:
            if POSTPROCESSING_FUNCTIONS.get(function) != module:  # postprocessing_steps promises this
                raise InvalidArgument(f"{module}.{function} is not an allowlisted postprocessing function")
            out += GLOBAL + module.encode("ascii") + b"\n" + function.encode("ascii") + b"\n"
        out += APPENDS
    out += EMPTY_LIST
    if steps:
        out += MARK
        for _, _, kwargs in steps:
            out += EMPTY_DICT
            if kwargs:
                out += MARK
                for key, value in kwargs.items():
                    out += _value(key) + _value(value)
                out += SETITEMS
        out += APPENDS
    out += TUPLE2 + STOP
    return bytes(out)


def write_postprocessing_pickle(path: Path, postprocessing: object, *, name: str = "postprocessing.json") -> None:
    """Write ``postprocessing.pkl`` at ``path`` (a new file) from a parsed postprocessing.json."""
    from nnseal.fsutil import open_new

    data = postprocessing_pickle_bytes(postprocessing, name=name)
    with open_new(path) as handle:
        handle.write(data)


def _value(value: Any) -> bytes:
    if isinstance(value, bool):
        raise InvalidArgument("a postprocessing argument is never a bool")
    if isinstance(value, int):
        if not -2**31 <= value < 2**31:
            raise InvalidArgument(f"{value} does not fit a BININT")
        return BININT + struct.pack("<i", value)
    if isinstance(value, str):
        encoded = value.encode("utf-8")
        return BINUNICODE + struct.pack("<I", len(encoded)) + encoded
    if isinstance(value, tuple):
        return MARK + b"".join(_value(v) for v in value) + TUPLE
    if isinstance(value, list):
        return EMPTY_LIST + (MARK + b"".join(_value(v) for v in value) + APPENDS if value else b"")
    raise InvalidArgument(f"{type(value).__name__} is not a postprocessing argument type")
