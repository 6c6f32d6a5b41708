"""Valid seed inputs for every fuzz target, built in code from a real toy nnU-Net model.

Fuzzers find deep bugs by mutating inputs that already pass the outer checks, so every
seed is a real artifact: a signed nnseal package, a torch.save checkpoint shaped like
nnU-Net's, its data.pkl, the package's model.sig and safetensors files, and the JSON
files toy_model writes. Needs torch (to build the model); the targets themselves do not.

    python fuzz/seeds.py OUT_ROOT     writes OUT_ROOT/<target>/seed_<name> for every target
"""

from __future__ import annotations

import argparse
import base64
import json
import pickle
import struct
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `fuzz` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.targets import TARGET_NAMES  # noqa: E402


@dataclass(frozen=True)
class SeedSources:
    """The real artifacts seeds are cut from."""

    package_zip: Path
    checkpoint: Path
    model_folder: Path


def build_sources(workdir: Path) -> SeedSources:
    """A toy results folder (one fold), a fresh signing key and the signed package exported from them."""
    from nnseal import toy_model
    from nnseal.format.keys import generate_key_pair
    from nnseal.package.export import export_model_to_zip

    model = toy_model.build_results(workdir / "results", folds=(0,))
    key = generate_key_pair(workdir / "signer")
    package = workdir / "package.zip"
    export_model_to_zip(model, package, key=key.private_path)
    return SeedSources(package, model / "fold_0" / "checkpoint_final.pth", model)


def _zip_members(path: Path) -> dict[str, bytes]:
    from nnseal.readers.zip_archive import open_zip

    with open_zip(path) as archive:
        return {name: archive.read(name) for name in archive.names()}


def _tiny_safetensors() -> bytes:
    """Two tensors and metadata, laid out as the format says (written by hand: no torch)."""
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "U8", "shape": [1, 3], "data_offsets": [8, 11]},
              "__metadata__": {"format": "pt"}}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(len(text) + 8) % 8)
    return struct.pack("<Q", len(text)) + text + struct.pack("<2f", 1.0, -2.5) + b"\x01\x02\x03"


def _plain_zip(workdir: Path) -> bytes:
    """What Python's zipfile writes: a folder entry, stored and deflated members."""
    path = workdir / "plain.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("Dataset042_Toy/"), b"")
        archive.writestr("Dataset042_Toy/a.json", b'{"a": [1, 2, 3]}' * 20, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("Dataset042_Toy/b.bin", bytes(range(256)), compress_type=zipfile.ZIP_STORED)
    return path.read_bytes()


def _receipt(workdir: Path) -> bytes:
    from nnseal.verify.receipt import RECEIPT_NAME, write_receipt

    folder = workdir / "receipt"
    folder.mkdir()
    write_receipt(folder, files={"plans.json": "0" * 64, "fold_0/checkpoint_final.pth": "f" * 64},
                  package="Dataset042_Toy.zip", package_sha256="a" * 64, provenance="signed",
                  signer_fingerprint="b" * 64, model={"name": "Toy"})
    return (folder / RECEIPT_NAME).read_bytes()


def seeds_from(sources: SeedSources, workdir: Path) -> dict[str, dict[str, bytes]]:
    """Target name -> seed name -> bytes."""
    from nnseal.format.layout import CARD_NAME
    from nnseal.format.oms import SIGNATURE_NAME

    package = sources.package_zip.read_bytes()
    checkpoint = sources.checkpoint.read_bytes()
    members = _zip_members(sources.package_zip)
    checkpoint_members = _zip_members(sources.checkpoint)
    data_pkl = next(data for name, data in checkpoint_members.items() if name.endswith("/data.pkl"))
    bundle = members[SIGNATURE_NAME]
    statement = base64.b64decode(json.loads(bundle)["dsseEnvelope"]["payload"])
    plans = (sources.model_folder / "plans.json").read_bytes()

    seeds: dict[str, dict[str, bytes]] = {name: {} for name in TARGET_NAMES}
    seeds["safezip"] = {"package.zip": package, "checkpoint.pth": checkpoint, "zipfile.zip": _plain_zip(workdir)}
    seeds["signature"] = {"model.sig": bundle, "statement.json": statement}
    seeds["safetensors"] = {"tiny.safetensors": _tiny_safetensors()}
    for name, data in members.items():
        if name.endswith(".safetensors"):
            seeds["safetensors"][name.replace("/", "_")] = data
    seeds["pickle"] = {"data.pkl": data_pkl}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        # Our own data, pickled here to give the walker every protocol's opcodes.
        seeds["pickle"][f"plans_protocol{protocol}.pkl"] = pickle.dumps(json.loads(plans), protocol=protocol)
    seeds["json"] = {name: (sources.model_folder / name).read_bytes()
                     for name in ("plans.json", "dataset.json", "dataset_fingerprint.json")}
    seeds["json"]["card.json"] = members[CARD_NAME]
    seeds["checkpoint_archive"] = {"checkpoint_final.pth": checkpoint}
    seeds["receipt"] = {"nnseal-receipt.json": _receipt(workdir)}
    return seeds


def build_seeds() -> dict[str, dict[str, bytes]]:
    with tempfile.TemporaryDirectory(prefix="nnseal-fuzz-seeds-") as tmp:
        workdir = Path(tmp)
        return seeds_from(build_sources(workdir), workdir)


def write_corpus(out_root: Path, targets: list[str] | None = None) -> None:
    """Write seed_<name> files into out_root/<target>/ (existing corpus files are kept)."""
    for target, seeds in build_seeds().items():
        if targets and target not in targets:
            continue
        folder = out_root / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (folder / f"seed_{name}").write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_root", type=Path)
    parser.add_argument("--target", action="append", choices=TARGET_NAMES, help="only these targets")
    args = parser.parse_args(argv)
    write_corpus(args.out_root, args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
