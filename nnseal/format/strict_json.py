"""The one loader of untrusted JSON: a document with one reading, or a typed refusal.

Python's ``json`` module accepts things other readers read differently or not at all:
duplicate keys (which value wins?), ``NaN``/``Infinity``, invalid UTF-8 escapes, nesting
deep enough to overflow a recursive reader. Every reader of JSON that came from a package,
a download or an installed folder goes through ``load_strict_json`` instead.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from nnseal.errors import NnsealError, Refused

DEFAULT_MAX_DEPTH = 64
# Outside strings, only brackets change the nesting; a string runs to its closing quote or,
# if unterminated, to the end (json refuses it later). The possessive quantifier and the
# end-anchor keep the scan linear on hostile input.
_NESTING_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*+(?:"|\Z)|[\[\]{}]', re.DOTALL)


class _Problem(Exception):
    """Raised inside json.loads hooks; turned into the caller's error type outside."""


def show(value: object, limit: int = 80) -> str:
    """A value quoted and cut to ``limit`` characters, for error messages about untrusted input."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def load_strict_json(data: bytes | bytearray | memoryview | str, *, what: str | None = None,
                     error: type[NnsealError] = Refused, path: str | os.PathLike | None = None,
                     max_depth: int = DEFAULT_MAX_DEPTH, allow_nan: bool = False) -> Any:
    """Parse ``data`` as strict JSON (UTF-8, no duplicate keys, no NaN/Infinity, at most
    ``max_depth`` levels deep); refuse anything else with ``error("<what>: <why>", path=path)``.

    ``allow_nan`` accepts NaN/Infinity: nnU-Net's own JSON files hold them (sanitize/jsonclean.py).
    """
    prefix = f"{what}: " if what else ""
    if isinstance(data, str):
        text = data
    else:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as err:
            raise error(f"{prefix}not UTF-8 (invalid byte at offset {err.start})", path=path) from None
    _check_nesting(text, max_depth, prefix, error, path)
    try:
        if allow_nan:
            return json.loads(text, object_pairs_hook=_refuse_duplicates)
        return json.loads(text, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant)
    except _Problem as err:
        raise error(f"{prefix}{err}", path=path) from None
    except json.JSONDecodeError as err:
        raise error(f"{prefix}not valid JSON: {err.msg} at line {err.lineno} column {err.colno}",
                    path=path) from None
    except RecursionError:
        raise error(f"{prefix}not valid JSON: nested deeper than {max_depth} levels", path=path) from None
    except ValueError as err:  # e.g. an integer longer than Python's int-from-string limit
        raise error(f"{prefix}not valid JSON: {' '.join(str(err).split())[:120]}", path=path) from None


def _check_nesting(text: str, max_depth: int, prefix: str, error: type[NnsealError],
                   path: str | os.PathLike | None) -> None:
    if text.count("[") + text.count("{") <= max_depth:
        return
    depth = 0
    for match in _NESTING_TOKEN.finditer(text):
        lexeme = match.group()
        if lexeme in ("[", "{"):
            depth += 1
            if depth > max_depth:
                raise error(f"{prefix}nested deeper than {max_depth} levels (at character {match.start()})",
                            path=path)
        elif lexeme in ("]", "}"):
            depth -= 1


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise _Problem(f"duplicate key {show(key)} in one object: readers disagree on which value counts")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise _Problem(f"not valid JSON: non-standard constant {name}")
