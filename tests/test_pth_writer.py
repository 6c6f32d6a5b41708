"""The torch-free checkpoint writer used by install: what it writes, torch loads back exactly."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from collections import OrderedDict

import pytest

from nnseal import toy_model
from nnseal.errors import InvalidArgument
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


def _sample(dtype_name: str):
    """A small tensor of ``dtype_name`` with varied values (negative, zero, positive where the dtype has them)."""
    import torch

    dtype = getattr(torch, dtype_name)
    base = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) - 5
    if dtype is torch.bool:
        return base > 0
    if dtype.is_complex:
        return torch.complex(base, -base / 3).to(dtype)
    if dtype_name.startswith("uint"):
        return (base + 5).to(torch.int64).mul(2 ** (8 * dtype.itemsize - 6)).to(dtype)  # values near the top
    return base.to(dtype)


def _torch_save_pkl(obj) -> bytes:
    import io
    import zipfile

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with zipfile.ZipFile(buffer) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))


def _own_pkl(path) -> bytes:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))


def _bits(tensor):
    return tensor.contiguous().reshape(-1).view(__import__("torch").uint8)


@pytest.mark.parametrize("safetensors_dtype", sorted(pth_writer.DTYPES))
def test_every_dtype_round_trips_bit_identically_and_pickles_as_torch_save(tmp_path, safetensors_dtype):
    import torch

    dtype_info = pth_writer.DTYPES[safetensors_dtype]
    tensor = _sample(dtype_info.torch_name)
    assert tensor.dtype == getattr(torch, dtype_info.torch_name) and tensor.element_size() == dtype_info.size
    raw = tmp_path / "raw.bin"
    prefix = b"\x00" * 13  # an offset that is not aligned, as in a safetensors file
    raw.write_bytes(prefix + _bits(tensor).numpy().tobytes())
    stored = StoredTensor(source=str(raw), offset=len(prefix), nbytes=tensor.numel() * tensor.element_size(),
                          dtype=safetensors_dtype, shape=tuple(tensor.shape))
    out = tmp_path / "x.pth"
    with open(out, "wb") as handle:
        pth_writer.write_pth({"w": stored, "alias": stored}, handle, stem="x")
    # the pickle is torch.save's, byte for byte (v2 + legacy storage class, or v3 + UntypedStorage + dtype)
    assert _own_pkl(out) == _torch_save_pkl({"w": tensor, "alias": tensor})
    reference = tmp_path / "ref.pth"
    torch.save({"w": tensor}, reference)
    expected = torch.load(reference, weights_only=True)["w"]
    for mmap in (False, True):
        loaded = torch.load(out, weights_only=True, mmap=mmap)
        got = loaded["w"]
        assert got.dtype == expected.dtype and got.shape == expected.shape and got.stride() == expected.stride()
        assert torch.equal(_bits(got), _bits(expected))
        assert loaded["alias"].untyped_storage().data_ptr() == got.untyped_storage().data_ptr()


def test_all_dtypes_in_one_checkpoint_pickle_exactly_as_torch_save(tmp_path):
    import torch

    tensors = OrderedDict((name, _sample(d.torch_name)) for name, d in pth_writer.DTYPES.items())
    tensors["scalar"] = torch.tensor(7, dtype=torch.uint16)  # 0-d: an empty shape tuple
    tensors["empty"] = torch.zeros((0, 3), dtype=torch.float8_e5m2)
    tensors["alias"] = tensors["U64"]
    stored = {}
    for name, tensor in tensors.items():
        if name == "alias":
            continue
        data = _bits(tensor).numpy().tobytes()
        dtype = pth_writer.SAFETENSORS_BY_TORCH[str(tensor.dtype).removeprefix("torch.")]
        stored[name] = StoredTensor(data, 0, len(data), dtype, tuple(tensor.shape))
    stored["alias"] = stored["U64"]
    plain = {"epoch": 1 << 100, "axes": (0, 1, 2, 3), "one": [1], "none": [], "text": "Größe"}
    out = tmp_path / "all.pth"
    with open(out, "wb") as handle:
        pth_writer.write_pth({"network_weights": OrderedDict(stored), **plain}, handle, stem="all")
    assert _own_pkl(out) == _torch_save_pkl({"network_weights": tensors, **plain})
    loaded = torch.load(out, weights_only=True)
    for name, tensor in tensors.items():
        got = loaded["network_weights"][name]
        assert got.dtype == tensor.dtype and got.shape == tensor.shape and torch.equal(_bits(got), _bits(tensor))
    assert loaded["network_weights"]["alias"].data_ptr() == loaded["network_weights"]["U64"].data_ptr()
    assert {k: loaded[k] for k in plain} == plain


INTEGER_EDGES = [0, 1, 255, 256, 65535, 65536, -1, -128, -129, -255, -256, -257, -(1 << 31), (1 << 31) - 1,
                 1 << 31, -(1 << 31) - 1, (1 << 63) - 1, 1 << 63, -(1 << 63), -(1 << 63) - 1, 1 << 64, -(1 << 64),
                 (1 << 2039) - 1, -(1 << 2039),  # the largest LONG1 (255 bytes)
                 1 << 2039, -(1 << 2039) - 1, 10 ** 4000, -(10 ** 4000)]  # LONG4


@pytest.mark.parametrize("value", INTEGER_EDGES, ids=lambda v: f"{'-' if v < 0 else ''}2^{abs(v).bit_length()}")
def test_integers_of_any_size_pickle_exactly_as_pickle_does(value):
    import pickle
    import pickletools

    encoded = pth_writer._Pickle({}).dump(value)
    assert encoded == pickle.dumps(value, protocol=2)  # dumps only: nothing is unpickled here
    ops = list(pickletools.genops(encoded))
    assert ops[1][1] == value  # pickletools decodes the argument without running the pickle


@pytest.mark.parametrize("value", [v for v in INTEGER_EDGES if abs(v).bit_length() < 2040])
def test_integers_up_to_long1_load_under_weights_only(tmp_path, value):
    import torch

    out = tmp_path / "i.pth"
    with open(out, "wb") as handle:
        pth_writer.write_pth({"current_epoch": value, "list": [value, -value]}, handle, stem="i")
    assert torch.load(out, weights_only=True) == {"current_epoch": value, "list": [value, -value]}


@pytest.mark.parametrize("limit", [1, 64, 200, 5000])
def test_zip64_fields_past_a_lowered_limit_read_back_in_torch_zipfile_and_nnseal(tmp_path, limit):
    """Past ``zip64_limit`` sizes, offsets and the directory get ZIP64 fields: with the limit lowered,
    a small file exercises the same fields a checkpoint over 4 GiB needs."""
    import zipfile

    import torch

    from nnseal.readers.zip_archive import open_zip

    tensors = {"big": torch.arange(3000, dtype=torch.float32).reshape(30, 100),
               "small": torch.tensor([1, 2], dtype=torch.uint16), "tiny": torch.tensor([True])}
    stored = {}
    for name, tensor in tensors.items():
        data = _bits(tensor).numpy().tobytes()
        stored[name] = StoredTensor(data, 0, len(data), pth_writer.SAFETENSORS_BY_TORCH[str(tensor.dtype)[6:]],
                                    tuple(tensor.shape))
    out = tmp_path / "z.pth"
    with open(out, "wb") as handle:
        digest = pth_writer.write_pth({"w": stored}, handle, stem="z", zip64_limit=limit)
    raw = out.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == digest
    assert b"PK\x06\x06" in raw and b"PK\x06\x07" in raw  # ZIP64 end record and locator
    for mmap in (False, True):
        loaded = torch.load(out, weights_only=True, mmap=mmap)["w"]
        for name, tensor in tensors.items():
            assert torch.equal(loaded[name], tensor)
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None
        by_zipfile = {info.filename: archive.read(info) for info in archive.infolist()}
        assert any(info.file_size >= limit for info in archive.infolist())
    with open_zip(out) as archive:  # nnseal's strict reader: every header agrees, nothing hidden
        assert {name: archive.read(name) for name in archive.names()} == by_zipfile


def test_small_files_have_no_zip64_fields(rebuilt):
    raw = rebuilt[1].read_bytes()
    assert b"PK\x06\x06" not in raw


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


def test_only_stored_tensors_of_known_dtypes_are_writable(tmp_path):
    import torch

    assert not pth_writer.can_write({"network_weights": {"w": torch.zeros(2)}})
    assert not pth_writer.can_write({"w": StoredTensor("f", 0, 1, "F4", (2,))})  # sub-byte: no torch counterpart
    assert pth_writer.can_write({"w": StoredTensor("f", 0, 2, "U16", (1,))})
    with open(tmp_path / "x.pth", "wb") as handle, pytest.raises(InvalidArgument, match="F4"):
        pth_writer.write_pth({"w": StoredTensor("f", 0, 1, "F4", (2,))}, handle, stem="x")


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


def _safetensors_checkpoint(path, tensors: dict, names: list[str], aliases: dict[str, str], current_epoch=None):
    import json

    from safetensors.torch import save_file

    meta = {"format": "pt", "nnseal.format": "1", "nnseal.names": json.dumps(names),
            "nnseal.aliases": json.dumps(aliases),
            "nnseal.checkpoint": json.dumps({"trainer_name": "nnUNetTrainer", "configuration": "2d", "fold": 0,
                                             "inference_allowed_mirroring_axes": None,
                                             "current_epoch": current_epoch})}
    save_file(tensors, str(path), metadata=meta)


def test_dtypes_without_a_storage_class_are_written_without_torch_save(tmp_path, monkeypatch):
    """uint16 / float8 / uint64 have no legacy storage class: written like torch.save does, by nnseal."""
    import torch

    from nnseal.verify.rebuild import rebuild_from_safetensors, write_checkpoint

    def no_torch_save(*args, **kwargs):
        raise AssertionError("torch.save must not be used")

    monkeypatch.setattr(torch, "save", no_torch_save)
    tensors = {"a": torch.arange(6, dtype=torch.int32).reshape(2, 3).to(torch.uint16),
               "b": torch.tensor([0.5, -2.0], dtype=torch.float8_e4m3fn),
               "c": torch.tensor([(1 << 64) - 1, 0], dtype=torch.uint64)}
    source = tmp_path / "c.safetensors"
    _safetensors_checkpoint(source, tensors, ["a", "b", "c", "a2"], {"a2": "a"})
    out = tmp_path / "c.pth"
    write_checkpoint(rebuild_from_safetensors(source, {"p": 1}, {"d": 2}), out)
    assert b"nnseal" not in _own_pkl(out)  # no nnseal object leaked into the checkpoint
    loaded = torch.load(out, weights_only=True)["network_weights"]
    assert list(loaded) == ["a", "b", "c", "a2"]
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(_bits(loaded[name]), _bits(tensor))
    assert loaded["a2"].data_ptr() == loaded["a"].data_ptr()


def test_torch_tensors_of_the_legacy_path_are_written_without_torch_save(tmp_path, monkeypatch):
    import torch

    from nnseal.verify.rebuild import write_checkpoint

    weights = OrderedDict([("w", torch.arange(12, dtype=torch.float32).reshape(3, 4)[:, 1:]),  # not contiguous
                           ("u", torch.tensor([65535, 1], dtype=torch.uint16))])
    weights["alias"] = weights["u"]
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(AssertionError("torch.save used")))
    write_checkpoint({"network_weights": weights, "current_epoch": 10 ** 30}, tmp_path / "l.pth")
    loaded = torch.load(tmp_path / "l.pth", weights_only=True)
    assert loaded["current_epoch"] == 10 ** 30
    for name, tensor in weights.items():
        assert loaded["network_weights"][name].dtype == tensor.dtype
        assert torch.equal(loaded["network_weights"][name], tensor)
    assert loaded["network_weights"]["alias"].data_ptr() == loaded["network_weights"]["u"].data_ptr()
