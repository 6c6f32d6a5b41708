"""The torch-free checkpoint writer used by install: what it writes, torch loads back exactly."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from collections import OrderedDict

import pytest

from nnseal import toy_model
from nnseal.verify import pth_writer
from nnseal.verify.pth_writer import StoredTensor


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    """A toy checkpoint sanitized to safetensors, then rebuilt by the torch-free path."""
    from nnseal.sanitize.checkpoint import sanitize_checkpoint
    from nnseal.verify.rebuild import rebuild_from_safetensors, write_checkpoint

    root = tmp_path_factory.mktemp("pth")
    spec = toy_model.ToySpec()
    model = toy_model.build_results(root / "results", folds=(0,), spec=spec)
    source = model / "fold_0" / "checkpoint_final.pth"
    sanitize_checkpoint(source, root / "c.safetensors")
    checkpoint = rebuild_from_safetensors(root / "c.safetensors", toy_model.plans_json(spec),
                                          toy_model.dataset_json(spec))
    assert pth_writer.can_write(checkpoint)
    out = root / "checkpoint_final.pth"
    digest = write_checkpoint(checkpoint, out)
    return source, out, digest, checkpoint, spec


def test_rebuilt_checkpoint_loads_without_allowlist_and_matches_the_source(rebuilt):
    import torch

    source, out, _, _, spec = rebuilt
    original = torch.load(source, map_location="cpu", weights_only=False)  # our own toy file, made in this test
    for mmap in (False, True):
        loaded = torch.load(out, map_location="cpu", weights_only=True, mmap=mmap)
        assert list(loaded["network_weights"]) == list(original["network_weights"])
        for name, tensor in original["network_weights"].items():
            got = loaded["network_weights"][name]
            assert got.dtype == tensor.dtype and got.shape == tensor.shape and got.stride() == tensor.stride()
            assert torch.equal(got, tensor), name
        assert loaded["trainer_name"] == original["trainer_name"]
        assert loaded["inference_allowed_mirroring_axes"] == original["inference_allowed_mirroring_axes"]
        assert loaded["current_epoch"] == original["current_epoch"]
        assert loaded["init_args"]["plans"] == toy_model.plans_json(spec)
        assert loaded["init_args"]["configuration"] == spec.configuration


def test_aliases_share_one_storage_as_in_the_source(rebuilt):
    import torch

    source, out, _, _, _ = rebuilt
    original = torch.load(source, map_location="cpu", weights_only=False)["network_weights"]
    loaded = torch.load(out, map_location="cpu", weights_only=True)["network_weights"]

    def storages(weights):
        return len({t.untyped_storage().data_ptr() for t in weights.values()})

    assert storages(loaded) == storages(original) < len(loaded)


def test_written_bytes_are_deterministic_and_the_digest_is_theirs(rebuilt, tmp_path):
    _, out, digest, checkpoint, _ = rebuilt
    assert digest == hashlib.sha256(out.read_bytes()).hexdigest()
    again = tmp_path / "checkpoint_final.pth"
    with open(again, "wb") as handle:
        assert pth_writer.write_pth(checkpoint, handle, stem="checkpoint_final") == digest
    assert again.read_bytes() == out.read_bytes()


def test_nnseal_static_inspection_accepts_the_file(rebuilt):
    from nnseal.readers.torch_archive import inspect_checkpoint

    _, out, _, _, _ = rebuilt
    info = inspect_checkpoint(out)
    assert set(info.globals) == {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.FloatStorage"}


@pytest.mark.parametrize("dtype_name, safetensors_dtype", [
    ("float64", "F64"), ("float16", "F16"), ("bfloat16", "BF16"), ("int64", "I64"), ("int32", "I32"),
    ("int16", "I16"), ("int8", "I8"), ("uint8", "U8"), ("bool", "BOOL"),
])
def test_every_supported_dtype_round_trips(tmp_path, dtype_name, safetensors_dtype):
    import torch

    dtype = getattr(torch, dtype_name)
    values = (torch.arange(24) % 7 - 3).reshape(2, 3, 4)
    tensor = (values > 0) if dtype is torch.bool else values.to(dtype)
    raw = tmp_path / "raw.bin"
    prefix = b"\x00" * 13  # an offset that is not aligned, as in a safetensors file
    raw.write_bytes(prefix + tensor.contiguous().view(torch.uint8).numpy().tobytes())
    stored = StoredTensor(source=str(raw), offset=len(prefix), nbytes=tensor.numel() * tensor.element_size(),
                          dtype=safetensors_dtype, shape=tuple(tensor.shape))
    out = tmp_path / "x.pth"
    with open(out, "wb") as handle:
        pth_writer.write_pth({"w": stored, "alias": stored}, handle, stem="x")
    loaded = torch.load(out, weights_only=True)
    assert loaded["w"].dtype == dtype and torch.equal(loaded["w"], tensor)
    assert loaded["alias"].untyped_storage().data_ptr() == loaded["w"].untyped_storage().data_ptr()


def test_plain_values_round_trip_exactly_past_the_one_byte_memo(tmp_path):
    import torch

    value = {
        "ints": [0, 1, 255, 256, 65535, 65536, -1, -(1 << 31), (1 << 31) - 1, 1 << 40, -(1 << 70)],
        "floats": [0.0, -2.5, 1e-300, float("inf")],
        "flags": (True, False, None),
        "text": "Größe ✓",
        "tuples": [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)],
        "many": {f"key_{i}": [f"value_{i}"] for i in range(400)},  # > 256 memo entries: LONG_BINPUT/LONG_BINGET
        "ordered": OrderedDict([("b", 1), ("a", 2)]),
    }
    shared = ["same object"]
    value["shared"] = [shared, shared]
    out = tmp_path / "plain.pth"
    with open(out, "wb") as handle:
        pth_writer.write_pth(value, handle, stem="plain")
    loaded = torch.load(out, weights_only=True)
    assert loaded == value
    assert type(loaded["ordered"]) is OrderedDict and list(loaded["ordered"]) == ["b", "a"]
    assert loaded["shared"][0] is loaded["shared"][1]


def test_torch_tensors_are_left_to_torch_save():
    import torch

    assert not pth_writer.can_write({"network_weights": {"w": torch.zeros(2)}})
    assert not pth_writer.can_write({"w": StoredTensor("f", 0, 2, "U16", (1,))})  # no legacy storage class


def test_verified_install_never_imports_torch(tmp_path, toy_package_session, session_key):
    script = textwrap.dedent("""
        import sys
        from nnseal.verify.install import install_model_from_zip
        report = install_model_from_zip(sys.argv[1], sys.argv[2], trusted_keys=[sys.argv[3]])
        assert report.checkpoints, report
        print("torch imported:", "torch" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(toy_package_session), str(tmp_path / "results"),
                           str(session_key.public_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "torch imported: False" in proc.stdout


def test_dtypes_without_a_storage_class_fall_back_to_real_tensors(tmp_path):
    """uint16 / float8 have no legacy storage class: torch.save writes them, from torch tensors."""
    import json
    import zipfile

    import torch
    from safetensors.torch import save_file

    from nnseal.verify.rebuild import rebuild_from_safetensors, write_checkpoint

    tensors = {"a": torch.arange(6, dtype=torch.int32).reshape(2, 3).to(torch.uint16),
               "b": torch.tensor([0.5, -2.0], dtype=torch.float8_e4m3fn)}
    meta = {"format": "pt", "nnseal.format": "1", "nnseal.names": json.dumps(["a", "b", "a2"]),
            "nnseal.aliases": json.dumps({"a2": "a"}),
            "nnseal.checkpoint": json.dumps({"trainer_name": "nnUNetTrainer", "configuration": "2d", "fold": 0,
                                             "inference_allowed_mirroring_axes": None, "current_epoch": None})}
    source = tmp_path / "c.safetensors"
    save_file(tensors, str(source), metadata=meta)
    out = tmp_path / "c.pth"
    write_checkpoint(rebuild_from_safetensors(source, {"p": 1}, {"d": 2}), out)
    with zipfile.ZipFile(out) as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert b"nnseal" not in pickled  # no nnseal object leaked into the checkpoint
    loaded = torch.load(out, weights_only=True)["network_weights"]
    assert list(loaded) == ["a", "b", "a2"]
    assert torch.equal(loaded["a"], tensors["a"]) and loaded["a"].dtype == torch.uint16
    assert loaded["b"].dtype == torch.float8_e4m3fn
    assert torch.equal(loaded["b"].view(torch.uint8), tensors["b"].view(torch.uint8))
    assert loaded["a2"].data_ptr() == loaded["a"].data_ptr()
