"""Parity with picklescan beyond nnseal's own corpus: picklescan's own malicious sample kinds, made in code.

The per-global samples come from picklescan's own deny table (``picklescan.scanner._unsafe_globals``):
one raw pickle and one torch.save-shaped zip per entry, so every global picklescan knows is
tried in both containers. The other kinds follow picklescan's and modelscan's test suites and
the 2024-2026 advisories (zip CRC and flag tricks, extension tricks, opcode variants,
concatenated pickles, numpy object arrays). nnseal must flag every file picklescan flags;
docs/SCAN.md lists the kinds where it flags more, and the test checks that list.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import struct
import zipfile
from pathlib import Path

import hostile_checkpoints as hostile
import numpy as np
import pytest
from helpers import REPO

pytestmark = pytest.mark.interop


def _call(module: str, name: str, arg: str = "true") -> bytes:
    """Protocol 0: import ``module.name`` (GLOBAL) and call it with one string."""
    return f"c{module}\n{name}\n(S'{arg}'\ntR.".encode()


def _stack_global_call(module: str, name: str, arg: str = "true") -> bytes:
    """Protocol 4: the same through STACK_GLOBAL, with the names memoised and fetched back."""
    def unicode(text: str) -> bytes:
        raw = text.encode()
        return b"\x8c" + bytes([len(raw)]) + raw + b"\x94"  # SHORT_BINUNICODE, MEMOIZE

    body = unicode(module) + unicode(name) + b"\x68\x00\x68\x01\x93" + unicode(arg) + b"\x85R."
    return b"\x80\x04" + body


def _sample_names(names) -> list[str]:
    if names == "*":
        return ["run"]
    if isinstance(names, str):
        return [names]
    return sorted(names)


def _deny_table_samples(folder: Path) -> list[str]:
    from picklescan.scanner import _unsafe_globals

    kinds = []
    for module, names in sorted(_unsafe_globals.items()):
        for name in _sample_names(names):
            stem = f"global_{module}.{name}".replace("/", "_")
            (folder / f"{stem}.pkl").write_bytes(_call(module, name))
            hostile.write_torch_zip(folder / f"{stem}.pth", _stack_global_call(module, name))
            kinds += [f"{stem}.pkl", f"{stem}.pth"]
    return kinds


def _zip_with_flag(source: Path, target: Path, flag: int) -> Path:
    """Set a general-purpose flag bit on data.pkl's local and central headers (zip flag tricks)."""
    data = bytearray(source.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at != -1:
            (old,) = struct.unpack_from("<H", data, at + offset)
            struct.pack_into("<H", data, at + offset, old | flag)
            at = data.find(signature, at + 4)
    target.write_bytes(bytes(data))
    return target


def _zip_with_bad_crc(source: Path, target: Path) -> Path:
    data = bytearray(source.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):
        at = data.find(signature)
        struct.pack_into("<I", data, at + offset, 0xDEADBEEF)
    target.write_bytes(bytes(data))
    return target


def _npy_object(payload) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([payload, 1], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _other_samples(folder: Path, canary: Path) -> list[str]:
    system = hostile.Reduce(os.system, hostile.touch(canary))
    evil2 = pickle.dumps(system, protocol=2)
    files = {
        # extension tricks: picklescan picks files by suffix, nnseal by content
        "ext_pytorch_model.bin": evil2,
        "ext_model.ckpt": evil2,
        "ext_weights.pt": evil2,
        "ext_data.dat": evil2,
        "ext_model.joblib": evil2,
        "ext_notes.txt": evil2,
        "ext_progress.png": evil2,
        # opcode variants
        "op_inst.pkl": b"(S'true'\nios\nsystem\n.",
        "op_obj.pkl": b"(cos\nsystem\nS'true'\no.",
        "op_builtin_py2_eval.pkl": _call("__builtin__", "eval", "1"),
        "op_newobj.pkl": b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85\x81.",
        "op_newtrue_first.pkl": b"\x880" + _call("os", "system"),
        # a benign pickle, then a hostile one in the same stream (picklescan reads both)
        "multi_second_pickle.pkl": pickle.dumps([1, 2], protocol=2) + evil2,
        "multi_second_pickle_data.pth": None,
        # nested loaders and resolvers
        "resolver_pkgutil.pkl": b"\x80\x02cpkgutil\nresolve_name\nX\x09\x00\x00\x00os:system\x85R.",
        "resolver_attrgetter.pkl": b"\x80\x02coperator\nattrgetter\nX\x06\x00\x00\x00system\x85R.",
        "resolver_getattr.pkl": b"\x80\x02cbuiltins\ngetattr\ncos\n\nX\x06\x00\x00\x00system\x86R.",
        "loader_torch_load.pkl": _call("torch.serialization", "load", "x.pth"),
        "loader_pickle_loads.pkl": b"\x80\x02c_pickle\nloads\nC\x01.\x85R.",
        "code_runstring.pkl": _call("numpy.testing._private.utils", "runstring", "1"),
        "code_timeit.pkl": _call("timeit", "timeit", "1"),
        "code_cprofile_run.pkl": _call("cProfile", "run", "1"),
        "code_pip_main.pkl": _call("pip", "main", "install"),
        "code_venv_create.pkl": _call("venv", "create", "x"),
        "code_inductor_compile_file.pkl": _call("torch._inductor.codecache", "compile_file", "x"),
        "code_codecs_then_exec.pkl": b"\x80\x02cbuiltins\nexec\nc_codecs\nencode\nX\x01\x00\x00\x001"
                                     b"X\x06\x00\x00\x00latin1\x86R\x85R.",
        # numpy object arrays
        "npy_object.npy": _npy_object(system),
        "npy_object_named.bin": _npy_object(system),
    }
    for name, data in files.items():
        if data is not None:
            (folder / name).write_bytes(data)
    hostile.write_torch_zip(folder / "multi_second_pickle_data.pth", files["multi_second_pickle.pkl"])
    with zipfile.ZipFile(folder / "npz_object.npz", "w") as zf:
        zf.writestr("a.npy", _npy_object(system))
    with zipfile.ZipFile(folder / "zip_pickle_member.zip", "w") as zf:
        zf.writestr("inner/model.pkl", evil2)
    torch_zip = hostile.make_reduce_os_system(folder, canary)
    _zip_with_bad_crc(torch_zip, folder / "zip_bad_crc.pth")
    _zip_with_flag(torch_zip, folder / "zip_flag_encrypted.pth", 0x1)
    _zip_with_flag(torch_zip, folder / "zip_flag_descriptor.pth", 0x8)
    _zip_with_flag(torch_zip, folder / "zip_flag_utf8_and_reserved.pth", 0x800 | 0x4000)
    return sorted(p.name for p in folder.iterdir())


def _picklescan_flags(path: Path, alone: Path) -> bool:
    """picklescan's verdict as a CI job gets it (``picklescan --path FOLDER``, a folder holding only
    ``path``): a dangerous global, a scan error, or a crash. On a folder picklescan picks files by
    suffix; ``scan_file_path`` on a single file would read any suffix as a pickle."""
    from picklescan.scanner import scan_directory_path

    logging.getLogger("picklescan").disabled = True
    alone.mkdir()
    os.link(path, alone / path.name)
    try:
        result = scan_directory_path(str(alone))
    except Exception:
        return True
    return result.issues_count > 0 or bool(result.scan_err)


# Sample kinds nnseal flags and picklescan 1.0.5 does not (docs/SCAN.md explains each).
NNSEAL_ONLY = {"ext_notes.txt", "ext_progress.png", "npy_object.npy"}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    folder = root / "samples"
    folder.mkdir()
    canary = root / "CANARY_PARITY"
    deny = _deny_table_samples(folder)
    _other_samples(folder, canary)
    return folder, canary, deny


def test_nnseal_flags_every_sample_picklescan_flags(samples):
    from nnseal.scan import scan_paths

    folder, canary, deny = samples
    files = sorted(folder.iterdir())
    report = scan_paths([folder])
    flagged_by_nnseal = {Path(f.path).name for f in report.findings if f.level == "unsafe"}
    flagged_by_picklescan = {p.name for i, p in enumerate(files) if _picklescan_flags(p, folder.parent / f"one{i}")}
    assert len(flagged_by_picklescan) >= 150, "picklescan flagged too little: the comparison would prove little"
    assert set(deny) <= flagged_by_picklescan  # every entry of its own table, in both containers
    assert flagged_by_picklescan - flagged_by_nnseal == set()
    assert {p.name for p in files} - flagged_by_picklescan == NNSEAL_ONLY
    assert {p.name for p in files} <= flagged_by_nnseal
    assert not canary.exists()


def test_docs_list_the_kinds_where_nnseal_flags_more():
    text = (REPO / "docs" / "SCAN.md").read_text()
    assert all(f"`{name}`" in text for name in NNSEAL_ONLY)
