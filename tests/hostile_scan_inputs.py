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
