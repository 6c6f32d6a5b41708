"""Hostile and benign non-checkpoint inputs for `nnseal scan`, generated in code: one function per case.

Checkpoint attacks live in hostile_checkpoints.py; these cover the other formats the
scan classifies (safetensors, numpy, nnU-Net zips, nnseal packages).
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from pathlib import Path

from hostile_checkpoints import Reduce, rewrite_zip, touch


def _safetensors(path: Path, header: dict | bytes, data: bytes, *, declared_length: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    length = len(raw) if declared_length is None else declared_length
    path.write_bytes(struct.pack("<Q", length) + raw + data)
    return path


def make_safetensors_ok(directory: Path) -> Path:
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": {"k": "v"}}
    return _safetensors(directory / "ok.safetensors", header, b"\0" * 8)


def make_safetensors_huge_header_length(directory: Path) -> Path:
    """The 8-byte length claims a 2**40-byte header: a loader that trusts it allocates a terabyte."""
    return _safetensors(directory / "huge_length.safetensors", b'{"w": {}}', b"", declared_length=1 << 40)


def make_safetensors_overlapping_offsets(directory: Path) -> Path:
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    return _safetensors(directory / "overlap.safetensors", header, b"\0" * 12)


def make_safetensors_shape_overflow(directory: Path) -> Path:
    """A shape whose element count is astronomically larger than the 8 bytes its offsets span."""
    header = {"w": {"dtype": "F32", "shape": [1 << 40, 1 << 40], "data_offsets": [0, 8]}}
    return _safetensors(directory / "shape_overflow.safetensors", header, b"\0" * 8)


def npy_object_array_bytes(canary: Path) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.array([Reduce(os.system, touch(canary)), 1], dtype=object), allow_pickle=True)
    return buf.getvalue()


def npy_float_bytes() -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.arange(6, dtype=np.float32).reshape(2, 3))
    return buf.getvalue()


def make_npy_object_array(directory: Path, canary: Path) -> Path:
    path = directory / "objects.npy"
    path.write_bytes(npy_object_array_bytes(canary))
    return path


def make_npy_structured_object_field(directory: Path, canary: Path) -> Path:
    """A structured dtype hides its object field one level down: [('a', '<f4'), ('b', '|O')]."""
    import numpy as np

    array = np.zeros(1, dtype=[("a", "<f4"), ("b", "O")])
    array["b"][0] = Reduce(os.system, touch(canary))
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    path = directory / "structured.npy"
    path.write_bytes(buf.getvalue())
    return path


def make_npz_with_object_member(directory: Path, canary: Path) -> Path:
    path = directory / "arrays.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("weights.npy", npy_float_bytes())
        zf.writestr("payload.npy", npy_object_array_bytes(canary))
    return path


def make_nnunet_zip(directory: Path, members: dict[str, bytes], name: str = "nnunet_export.zip") -> Path:
    """A zip shaped like nnUNetv2_export_model_to_zip's output (deflated, rooted at DatasetXXX_Name/)."""
    path = directory / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return path


def make_tampered_package(source: Path, directory: Path) -> Path:
    """One byte of plans.json changed after signing."""
    def change(name: str, data: bytes):
        return data.replace(b"{", b"{ ", 1) if name.endswith("/plans.json") else data

    return rewrite_zip(source, directory / "tampered.zip", change)


def make_unsigned_package(source: Path, directory: Path) -> Path:
    return rewrite_zip(source, directory / "unsigned.zip",
                           lambda name, data: None if name == "model.sig" else data)


def make_package_with_pickle_member(source: Path, directory: Path, canary: Path) -> Path:
    """A pickle smuggled in under a safetensors name (the signature no longer matches either)."""
    import pickle

    evil = pickle.dumps(Reduce(os.system, touch(canary)), protocol=2)

    def change(name: str, data: bytes):
        return evil if name.endswith("checkpoint_final.safetensors") else data

    return rewrite_zip(source, directory / "smuggled.zip", change)


# --- readings the loaders have that a magic-byte sniffer misses (issue 11) ----------------------------


def _system_pickle(canary: Path, protocol: int = 2) -> bytes:
    import pickle

    return pickle.dumps(Reduce(os.system, touch(canary)), protocol=protocol)


def _tar_tail(payload: bytes) -> tuple[bytes, int]:
    """A pax tar holding ``storages`` = ``payload``; returns its bytes and the size of its pax record."""
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("x")
        info.size = len(payload)
        info.pax_headers = {"path": "storages"}
        tar.addfile(info, io.BytesIO(payload))
    data = buf.getvalue()
    assert data[156:157] == b"x"  # the first block is the pax header that names the member
    return data, int(data[124:136].rstrip(b"\0 ") or b"0", 8)


def _crafted_pax_block(prefix: bytes, filler: bytes, pax_size: int) -> bytes:
    """A 512-byte tar block starting with ``prefix`` (another format's header), then ``filler`` text,
    with the numeric fields tarfile parses written as space-padded octal and a matching checksum.
    Every byte from the end of ``prefix`` on is printable, so it can sit inside a JSON string or a
    Python comment.
    """
    block = bytearray(prefix + filler * TAR_BLOCK)[:TAR_BLOCK]

    def put(offset: int, text: str) -> None:
        block[offset:offset + len(text)] = text.encode()

    for offset in (100, 108, 116, 136):  # mode, uid, gid, mtime
        put(offset, "0000000 ")
    put(124, f"{pax_size:011o} ")
    put(156, "x")  # pax extended header: names the next member
    for offset in (329, 337):  # devmajor, devminor
        put(offset, "0000000 ")
    put(148, "        ")
    checksum = sum(block)
    put(148, f"{checksum:07o} ")
    return bytes(block)


TAR_BLOCK = 512


def make_safetensors_tar_polyglot(directory: Path, canary: Path) -> Path:
    """Valid safetensors (one U8 tensor) and at once a legacy torch tar whose `storages` member is a
    pickle: torch.load(weights_only=False) unpickles it, a safetensors reader sees a clean file."""
    tail, pax_size = _tar_tail(_system_pickle(canary))
    rest = tail[TAR_BLOCK:]
    header_len = TAR_BLOCK - 8
    tensor = {"t": {"dtype": "U8", "shape": [len(rest)], "data_offsets": [0, len(rest)]}}
    opening = b'{"t": ' + json.dumps(tensor["t"]).encode() + b', "__metadata__": {"pad": "'
    closing = b'"}}'
    prefix = struct.pack("<Q", header_len) + opening
    block = bytearray(_crafted_pax_block(prefix, b" ", pax_size))
    block[TAR_BLOCK - len(closing):] = closing
    # the checksum must cover the closing bytes too
    block[148:156] = b"        "
    block[148:156] = f"{sum(block):07o} ".encode()
    path = directory / "polyglot_safetensors_tar.pth"
    path.write_bytes(bytes(block) + rest)
    return path


def make_npy_tar_polyglot(directory: Path, canary: Path) -> Path:
    """A valid uint8 .npy and at once a legacy torch tar whose `storages` member is a pickle (the npy
    header's padding is a Python comment that holds the tar header's fields)."""
    tail, pax_size = _tar_tail(_system_pickle(canary))
    rest = tail[TAR_BLOCK:]
    header_len = TAR_BLOCK - 10
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({len(rest)},), }} #".encode()
    prefix = b"\x93NUMPY\x01\x00" + struct.pack("<H", header_len) + text
    block = bytearray(_crafted_pax_block(prefix, b" ", pax_size))
    block[-1:] = b"\n"
    block[148:156] = b"        "
    block[148:156] = f"{sum(block):07o} ".encode()
    path = directory / "polyglot_npy_tar.pth"
    path.write_bytes(bytes(block) + rest)
    return path


def make_legacy_tar_without_ustar_magic(directory: Path, canary: Path) -> Path:
    """A v7 tar (no `ustar` magic) with a `storages` pickle: tarfile and so torch.load accept it."""
    import tarfile

    payload = _system_pickle(canary)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("storages")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    data = bytearray(buf.getvalue())
    data[257:265] = b"\0" * 8  # drop magic and version: an old V7 header
    data[148:156] = b"        "
    data[148:156] = f"{sum(data[:TAR_BLOCK]):06o}\0 ".encode()
    path = directory / "v7_tar.pth"
    path.write_bytes(bytes(data))
    return path


def make_pickle_newtrue_first(directory: Path, canary: Path) -> Path:
    """A raw protocol-0 pickle that starts with NEWTRUE (popped at once), named like a HF checkpoint."""
    path = directory / "pytorch_model.bin"
    path.write_bytes(b"\x880" + _system_pickle(canary, protocol=0))
    return path


def make_pickle_short_binbytes_first(directory: Path, canary: Path) -> Path:
    """A raw pickle that starts with SHORT_BINBYTES, named like a text file."""
    path = directory / "notes.txt"
    path.write_bytes(b"C\x04junk0" + _system_pickle(canary, protocol=0))
    return path


def make_pickle_runs_then_breaks(directory: Path, canary: Path) -> Path:
    """os.system is imported and called, then garbage: pickle.load runs the call before it fails."""
    path = directory / "readme.txt"
    path.write_bytes(b"cos\nsystem\n(S'" + touch(canary).encode() + b"'\ntR\xff not a pickle any more")
    return path


def make_pickle_ext_opcode(directory: Path) -> Path:
    """EXT1 imports whatever copyreg's extension registry maps code 1 to at load time."""
    path = directory / "ext.pkl"
    path.write_bytes(b"\x80\x02\x82\x01)R.")
    return path


# --- arguments the C unpickler reads and pickletools.genops does not (review finding 1) -----------------


def c_only_pickle(first: bytes, canary: Path) -> bytes:
    """``first`` (an opcode genops cannot read, popped at once), then os.system(touch canary)."""
    return first + b"0" + f"cos\nsystem\n(S'{touch(canary)}'\ntR.".encode()


def make_pickle_base0_int_first(directory: Path, canary: Path) -> Path:
    """INT 0x0: _pickle.c reads it with strtol in base 0, genops with int() (base 10) and stops."""
    path = directory / "notes.txt"
    path.write_bytes(c_only_pickle(b"I0x0\n", canary))
    return path


def make_pickle_base0_long_first(directory: Path, canary: Path) -> Path:
    """LONG 0b1L in a fold folder under a name nnU-Net does not use: base 0 again."""
    fold = directory / "Dataset001_X" / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "fold_0"
    fold.mkdir(parents=True)
    path = fold / "postprocessing.dat"
    path.write_bytes(c_only_pickle(b"L0b1L\n", canary))
    return path


def make_pickle_nul_terminated_int_first(directory: Path, canary: Path) -> Path:
    """INT 7 then a NUL and junk: strtol stops at the NUL, genops' int() refuses the line."""
    path = directory / "checkpoint_final.model"
    path.write_bytes(c_only_pickle(b"I7\0junk\n", canary))
    return path


def make_pickle_float_with_nul_first(directory: Path, canary: Path) -> Path:
    """FLOAT 1.5 ended by a NUL: PyOS_string_to_double stops there, float() refuses."""
    path = directory / "readme.md"
    path.write_bytes(c_only_pickle(b"F1.5\0 not a float\n", canary))
    return path


def make_pickle_sets_environ(directory: Path) -> Path:
    """An import and SETITEM, no REDUCE: os.environ["NNSEAL_REVIEW"] = "1" in the loading process."""
    path = directory / "settings.txt"
    path.write_bytes(b"cos\nenviron\nS'NNSEAL_REVIEW'\nS'1'\ns\xff")
    return path


def make_pickle_import_only(directory: Path) -> Path:
    """Only an import, which runs the module (antigravity opens a web browser), then junk."""
    path = directory / "todo.txt"
    path.write_bytes(b"cantigravity\nfly\n\xff")
    return path


def make_clean_pickle_named_pth(directory: Path) -> Path:
    """A raw pickle without globals under a checkpoint name: torch.load falls back to pickle."""
    import pickle

    path = directory / "checkpoint_final.pth"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    return path


def make_pickle_in_fold_folder(directory: Path) -> Path:
    """A pickle in an nnU-Net fold folder under a harmless name: `-chk notes.dat` would load it."""
    import pickle

    fold = directory / "fold_0"
    fold.mkdir()
    path = fold / "notes.dat"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    return path


def npy_with_descr(descr: str | list, data: bytes = b"") -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": (1,)}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def make_npy_object_spelled(directory: Path, canary: Path, spelling: str) -> Path:
    """An object array whose header spells the dtype some other way than numpy.save's '|O'."""
    path = directory / f"object_{spelling.strip('<|')}.npy"
    path.write_bytes(npy_with_descr(spelling, _system_pickle(canary, protocol=3)))
    return path


def make_npy_unknown_dtype(directory: Path) -> Path:
    path = directory / "unknown_dtype.npy"
    path.write_bytes(npy_with_descr("mystery", b"\0" * 8))
    return path


def make_safetensors_named_pth(directory: Path) -> Path:
    """Benign: safetensors under a .pth name is a model format nnseal vouches for."""
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    return _safetensors(directory / "weights.pth", header, b"\0" * 8)
