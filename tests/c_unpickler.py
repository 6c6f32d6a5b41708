"""CPython's C unpickler as a reference reader, for tests only: every global is recorded and refused.

find_class raises before anything is imported and persistent_load hands the id back, so
nothing a generated pickle asks for is ever imported or called; without a global there is no
callable on the unpickler's stack, only ints, strings, bytes, tuples, lists, dicts and sets.
"""

from __future__ import annotations

import _pickle
import io
import pickle
from dataclasses import dataclass


class _Refused(Exception):
    pass


@dataclass(frozen=True)
class CReading:
    outcome: str  # "stop" (returned a value), "import" (asked for a global) or "error"
    position: int  # bytes read when it stopped
    imported: tuple[str, str] | None = None
    value: object = None
    error: str = ""


class _Recorder(_pickle.Unpickler):
    imported: tuple[str, str] | None = None

    def find_class(self, module, name):
        self.imported = (module, name)
        raise _Refused

    def persistent_load(self, pid):
        return pid


assert pickle.Unpickler is _pickle.Unpickler, "pickle.load must be the C unpickler here"


def c_reading(data: bytes) -> CReading:
    """What pickle.load does with ``data``, up to its first global. latin-1, like the most lenient loader."""
    stream = io.BytesIO(data)
    unpickler = _Recorder(stream, encoding="latin1")
    try:
        value = unpickler.load()
    except _Refused:
        return CReading("import", stream.tell(), imported=unpickler.imported)
    except (Exception, RecursionError) as err:  # noqa: BLE001 - every refusal is an outcome here
        return CReading("error", stream.tell(), error=f"{type(err).__name__}: {err}")
    return CReading("stop", stream.tell(), value=value)
