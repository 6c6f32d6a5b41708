"""rebuild_checkpoint_from_entry: a package entry streamed into its .pth in one pass, hashed as it passes."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from nnseal.errors import HostileArchive, InvalidSafetensors, TamperedPackage
from nnseal.verify.rebuild import rebuild_checkpoint_from_entry, rebuild_from_safetensors, write_checkpoint

PLANS, DATASET = {"plans": 1}, {"dataset": 2}
ENTRY = "Dataset001_X/T__P__2d/fold_0/checkpoint_final.safetensors"


def _safetensors(path, tensors: dict, names: list[str], aliases: dict[str, str]) -> bytes:
    import json

    from safetensors.torch import save_file

    meta = {"format": "pt", "nnseal.format": "1", "nnseal.names": json.dumps(names),
            "nnseal.aliases": json.dumps(aliases),
            "nnseal.checkpoint": json.dumps({"trainer_name": "nnUNetTrainer", "configuration": "2d", "fold": 0,
                                             "inference_allowed_mirroring_axes": [0, 1], "current_epoch": 1 << 1000})}
    save_file(tensors, str(path), metadata=meta)
    return path.read_bytes()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("stream")
    tensors = {"w": torch.randn(300, 500), "u16": torch.arange(70000, dtype=torch.int32).to(torch.uint16),
               "f8": torch.randn(1000).to(torch.float8_e5m2), "unused": torch.ones(3000, dtype=torch.float64),
               "b": torch.tensor([True, False])}
    # names in another order than the offsets: records still follow the offsets
    data = _safetensors(root / "c.safetensors", tensors, ["u16", "b", "w", "f8", "w_alias"], {"w_alias": "w"})
    return root, tensors, data


def _package(path, data: bytes, method=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        archive.writestr(ENTRY, data)
    return path


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_streamed_checkpoint_is_the_file_based_one_byte_for_byte(source, tmp_path, method):
    import torch

    from nnseal.readers.zip_archive import open_zip

    root, tensors, data = source
    expected_file = tmp_path / "file" / "checkpoint_final.pth"
    expected_file.parent.mkdir()
    expected_digest = write_checkpoint(rebuild_from_safetensors(root / "c.safetensors", PLANS, DATASET),
                                       expected_file)
    target = tmp_path / "checkpoint_final.pth"
    seen = []

    class Bar:
        def update(self, n):
            seen.append(n)

    with open_zip(_package(tmp_path / "p.zip", data, method)) as archive:
        digest = rebuild_checkpoint_from_entry(archive, ENTRY, hashlib.sha256(data).hexdigest(), PLANS, DATASET,
                                               target, bar=Bar())
    assert target.read_bytes() == expected_file.read_bytes()
    assert digest == expected_digest == hashlib.sha256(target.read_bytes()).hexdigest()
    assert sum(seen) == len(data)  # every entry byte was read (and hashed) once
    loaded = torch.load(target, weights_only=True)
    weights = loaded["network_weights"]
    assert list(weights) == ["u16", "b", "w", "f8", "w_alias"] and "unused" not in weights
    for name in ("u16", "b", "w", "f8"):
        assert weights[name].dtype == tensors[name].dtype
        assert torch.equal(weights[name].view(torch.uint8), tensors[name].view(torch.uint8))
    assert weights["w_alias"].data_ptr() == weights["w"].data_ptr()
    assert loaded["init_args"] == {"plans": PLANS, "configuration": "2d", "fold": 0, "dataset_json": DATASET}


def test_records_follow_the_safetensors_offsets(source, tmp_path):
    from nnseal.readers.zip_archive import open_zip

    root, tensors, data = source
    target = tmp_path / "c.pth"
    with open_zip(_package(tmp_path / "p.zip", data)) as archive:
        rebuild_checkpoint_from_entry(archive, ENTRY, hashlib.sha256(data).hexdigest(), PLANS, DATASET, target)
    with zipfile.ZipFile(target) as pth:
        records = [i for i in pth.infolist() if "/data/" in i.filename]
        assert [r.filename.rsplit("/", 1)[1] for r in records] == [str(i) for i in range(len(records))]
        offsets = [r.header_offset for r in records]
        assert offsets == sorted(offsets)


def test_a_hash_mismatch_refuses_and_leaves_nothing(source, tmp_path):
    from nnseal.readers.zip_archive import open_zip

    _, _, data = source
    target = tmp_path / "c.pth"
    with open_zip(_package(tmp_path / "p.zip", data)) as archive, \
            pytest.raises(TamperedPackage, match="signed manifest"):
        rebuild_checkpoint_from_entry(archive, ENTRY, "0" * 64, PLANS, DATASET, target)
    assert list(tmp_path.iterdir()) == [tmp_path / "p.zip"]


def test_a_changed_tensor_byte_is_caught_by_the_hash(source, tmp_path):
    from nnseal.readers.zip_archive import open_zip

    _, _, data = source
    changed = bytearray(data)
    changed[-100] ^= 1  # inside the last tensor: the header still parses, the pth is written, then refused
    target = tmp_path / "c.pth"
    with open_zip(_package(tmp_path / "p.zip", bytes(changed))) as archive, pytest.raises(TamperedPackage):
        rebuild_checkpoint_from_entry(archive, ENTRY, hashlib.sha256(data).hexdigest(), PLANS, DATASET, target)
    assert not target.exists()


@pytest.mark.parametrize("signed_is_the_broken_one", [True, False])
def test_a_broken_header_is_invalid_if_signed_and_tampering_if_not(source, tmp_path, signed_is_the_broken_one):
    from nnseal.readers.zip_archive import open_zip

    _, _, data = source
    broken = b"\xff" * 8 + data[8:]  # header length over the limit
    expected = hashlib.sha256(broken if signed_is_the_broken_one else data).hexdigest()
    target = tmp_path / "c.pth"
    error = InvalidSafetensors if signed_is_the_broken_one else TamperedPackage
    with open_zip(_package(tmp_path / "p.zip", broken)) as archive, pytest.raises(error) as info:
        rebuild_checkpoint_from_entry(archive, ENTRY, expected, PLANS, DATASET, target)
    if signed_is_the_broken_one:
        assert info.value.reason.startswith(f"entry '{ENTRY}': header length")
    assert not target.exists()


def test_a_crc_mismatch_in_the_zip_refuses_and_leaves_nothing(source, tmp_path):
    from nnseal.readers.zip_archive import open_zip

    _, _, data = source
    package = _package(tmp_path / "p.zip", data)
    raw = bytearray(package.read_bytes())
    position = raw.index(data[-64:]) + 10  # last bytes of the entry's data: the CRC no longer matches
    raw[position] ^= 1
    package.write_bytes(bytes(raw))
    target = tmp_path / "c.pth"
    with open_zip(package) as archive, pytest.raises((HostileArchive, TamperedPackage)):
        rebuild_checkpoint_from_entry(archive, ENTRY, hashlib.sha256(data).hexdigest(), PLANS, DATASET, target)
    assert not target.exists()


def test_an_existing_target_is_never_written_through_or_removed(source, tmp_path):
    from nnseal.readers.zip_archive import open_zip

    _, _, data = source
    target = tmp_path / "c.pth"
    target.write_bytes(b"someone else's")
    with open_zip(_package(tmp_path / "p.zip", data)) as archive, pytest.raises(FileExistsError):
        rebuild_checkpoint_from_entry(archive, ENTRY, hashlib.sha256(data).hexdigest(), PLANS, DATASET, target)
    assert target.read_bytes() == b"someone else's"


def test_memory_stays_flat_whatever_the_entry_size(tmp_path):
    """A 64 MiB tensor of a dtype torch.save once had to write: Python allocations stay at a few chunks."""
    import json
    import tracemalloc

    import numpy as np
    from safetensors.numpy import save_file

    from nnseal.readers.zip_archive import open_zip

    path = tmp_path / "big.safetensors"
    meta = {"format": "pt", "nnseal.format": "1", "nnseal.names": json.dumps(["u"]), "nnseal.aliases": "{}",
            "nnseal.checkpoint": json.dumps({"trainer_name": "T", "configuration": "2d", "fold": 0,
                                             "inference_allowed_mirroring_axes": None, "current_epoch": None})}
    save_file({"u": np.arange(32 << 20, dtype=np.uint16)}, str(path), metadata=meta)
    data = path.read_bytes()
    package = _package(tmp_path / "p.zip", data)
    expected = hashlib.sha256(data).hexdigest()
    del data
    target = tmp_path / "big.pth"
    with open_zip(package) as archive:
        tracemalloc.start()
        try:
            rebuild_checkpoint_from_entry(archive, ENTRY, expected, PLANS, DATASET, target)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 8 << 20, peak
    assert target.stat().st_size > 64 << 20


def test_a_package_with_a_huge_current_epoch_installs(tmp_path, session_key, monkeypatch):
    """A signed epoch past LONG1 (over 255 bytes) is pickled with LONG4, as pickle and torch.save do."""
    import pickletools

    from nnseal import toy_model
    from nnseal.package.export import export_model_to_zip
    from nnseal.sanitize import checkpoint as sanitize_checkpoint
    from nnseal.verify.install import install_model_from_zip

    epoch = 10 ** 700
    # torch.save would write it with LONG4, which the sanitizer refuses in a .pth: put it in the signed metadata.
    original = sanitize_checkpoint._inference_metadata
    monkeypatch.setattr(sanitize_checkpoint, "_inference_metadata",
                        lambda *args: {**original(*args), "current_epoch": epoch})
    model = toy_model.build_results(tmp_path / "results", folds=(0,), checkpoints=("checkpoint_final",))
    package = tmp_path / "p.zip"
    export_model_to_zip(model, package, key=session_key.private_path)
    report = install_model_from_zip(package, tmp_path / "installed", trusted_keys=[session_key.public_path])
    installed = tmp_path / "installed" / report.checkpoints[0]
    with zipfile.ZipFile(installed) as archive:
        pkl = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    ops = list(pickletools.genops(pkl))  # decoded without running the pickle
    assert ("LONG4", epoch) in {(op.name, arg) for op, arg, _ in ops}
