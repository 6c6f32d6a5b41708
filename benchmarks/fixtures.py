"""The inputs the benchmark measures on, built once and cached under benchmarks/out/.

The full model is nnU-Net's default-size 3d_fullres PlainConvUNet (6 stages, 32-320
features, about 31 M parameters) with checkpoints shaped like nnUNetTrainer's
save_checkpoint (SGD momentum buffers included), final and best for every fold.
A cache is reused only if its ``built.json`` describes the same spec and folds; the
folder is built under a temporary name and renamed, so an interrupted build is never
mistaken for a finished one.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from nnseal import toy_model
from nnseal.toy_model import ToySpec

CHECKPOINTS = ("checkpoint_final", "checkpoint_best")
MARKER = "built.json"


@dataclass(frozen=True)
class Scenario:
    name: str
    spec: ToySpec
    folds: tuple[int, ...]


FULL = Scenario("full", ToySpec(configuration="3d_fullres", features=(32, 64, 128, 256, 320, 320),
                                patch_size=(128, 128, 128), n_conv_per_stage=2), folds=(0, 1, 2, 3, 4))
SMALL = Scenario("small", ToySpec(configuration="3d_fullres", features=(16, 32, 64), patch_size=(32, 32, 32),
                                  n_conv_per_stage=2), folds=(0, 1))


@dataclass
class BuiltModel:
    results: Path  # the nnUNet_results folder
    model: Path  # DatasetXXX_Name/Trainer__Plans__configuration inside it
    dataset: str
    configuration: str
    folds: tuple[int, ...]
    parameters: int
    checkpoint_files: int
    checkpoint_bytes: int


def _description(scenario: Scenario) -> dict:
    return {"spec": asdict(scenario.spec), "folds": list(scenario.folds), "checkpoints": list(CHECKPOINTS),
            "format": 1}


def parameter_count(spec: ToySpec) -> int:
    """Distinct parameters of the network (aliased names counted once), as nnU-Net would report them."""
    net = toy_model.build_network(spec, seed=0)
    return sum(p.numel() for p in net.parameters())


def ensure_results(root: Path, scenario: Scenario, *, rebuild: bool) -> BuiltModel:
    """The cached results folder for ``scenario`` under ``root``, built if missing, stale or ``rebuild``."""
    final = root / "results"
    marker = root / MARKER
    wanted = json.loads(json.dumps(_description(scenario)))  # as it reads back from built.json: lists, not tuples
    cached = None
    if marker.is_file() and final.is_dir() and not rebuild:
        cached = json.loads(marker.read_text())
        if cached.get("description") != wanted:
            cached = None
    if cached is None:
        partial = root / "results.partial"
        for stale in (partial, final):
            shutil.rmtree(stale, ignore_errors=True)
        marker.unlink(missing_ok=True)
        root.mkdir(parents=True, exist_ok=True)
        print(f"building {scenario.name} results folder under {final} (cached for later runs) ...",
              file=sys.stderr, flush=True)
        toy_model.build_results(partial, folds=scenario.folds, spec=scenario.spec, checkpoints=CHECKPOINTS)
        os.rename(partial, final)
        cached = {"description": wanted, "parameters": parameter_count(scenario.spec)}
        marker.write_text(json.dumps(cached, indent=2))
    model = final / toy_model.DATASET / toy_model.model_folder_name(scenario.spec.configuration)
    checkpoints = sorted(model.glob("fold_*/*.pth"))
    return BuiltModel(results=final, model=model, dataset=toy_model.DATASET,
                      configuration=scenario.spec.configuration, folds=scenario.folds,
                      parameters=int(cached["parameters"]), checkpoint_files=len(checkpoints),
                      checkpoint_bytes=sum(p.stat().st_size for p in checkpoints))


def ensure_scan_folder(root: Path, count: int, *, rebuild: bool) -> Path:
    """A flat folder of ``count`` small nnU-Net-shaped checkpoints (the default toy spec), cached."""
    import torch

    folder = root / f"scan_{count}"
    marker = root / f"scan_{count}.built"
    if marker.is_file() and folder.is_dir() and not rebuild:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    marker.unlink(missing_ok=True)
    folder.mkdir(parents=True)
    print(f"building {count} small checkpoints under {folder} ...", file=sys.stderr, flush=True)
    spec = ToySpec()
    for index in range(count):
        torch.save(toy_model.checkpoint_dict(spec, index % 5, seed=index), folder / f"checkpoint_{index:04d}.pth")
    marker.write_text(str(count))
    return folder


def built_to_json(built: BuiltModel) -> dict:
    data = asdict(built)
    data.update(results=str(built.results), model=str(built.model), folds=list(built.folds))
    return data


def built_from_json(data: dict) -> BuiltModel:
    return BuiltModel(**{**data, "results": Path(data["results"]), "model": Path(data["model"]),
                         "folds": tuple(data["folds"])})


def main(argv: list[str] | None = None) -> int:
    """Build in a child process: the driver must stay small, since a child's peak RSS
    (ru_maxrss) starts from the high-water mark of the process that spawned it."""
    import argparse

    parser = argparse.ArgumentParser(description="Build (or reuse) the benchmark's cached inputs; print JSON.")
    parser.add_argument("what", choices=("results", "scan"))
    parser.add_argument("root", type=Path)
    parser.add_argument("--scenario", choices=("full", "small"), default="full")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)
    if args.what == "results":
        scenario = FULL if args.scenario == "full" else SMALL
        built = ensure_results(args.root / scenario.name, scenario, rebuild=args.rebuild)
        print(json.dumps(built_to_json(built)))
    else:
        print(json.dumps({"folder": str(ensure_scan_folder(args.root, args.count, rebuild=args.rebuild))}))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
