"""`nnseal demo`: every stage, end to end, on the built-in toy nnU-Net model."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from nnseal import toy_model
from nnseal.units import format_bytes


def run_demo(workdir: Path | None = None, echo: Callable[[str], None] = print) -> dict:
    """Build a toy results folder, then sanitize, keygen, export, inspect, verify, tamper, install, load.

    Returns a summary dict; raises an NnsealError if any stage misbehaves.
    """
    from nnseal.errors import NnsealError

    own_dir = workdir is None
    base = Path(tempfile.mkdtemp(prefix="nnseal-demo-")) if workdir is None else Path(workdir)
    base.mkdir(parents=True, exist_ok=True)
    summary: dict = {"workdir": str(base)}
    try:
        step = _Steps(echo)
        with step("build a toy nnU-Net results folder (2 folds, checkpoint_final + checkpoint_best)"):
            model = toy_model.build_results(base / "results_original")
            pth = model / "fold_0" / "checkpoint_final.pth"
            step.result(f"{model} ({format_bytes(pth.stat().st_size)} per checkpoint)")

        with step("sanitize fold_0/checkpoint_final.pth (weights_only=True, minimal allowlist)"):
            from nnseal.sanitize.checkpoint import sanitize_checkpoint

            report = sanitize_checkpoint(pth, base / "checkpoint_final.safetensors", force=True)
            step.result(f"{report.tensors} tensors for {report.names} names; dropped "
                        f"{', '.join(report.dropped_keys)}; "
                        f"{format_bytes(report.source_bytes)} -> {format_bytes(report.output_bytes)}")

        with step("keygen: ECDSA P-256 key pair"):
            from nnseal.format.keys import generate_key_pair

            keys = generate_key_pair(base / "demo-key")
            step.result(f"{keys.private_path}, {keys.public_path}; fingerprint {keys.fingerprint}")

        with step("export: sanitize every checkpoint, package, sign (OpenSSF Model Signing)"):
            from nnseal.package.export import export_model_to_zip

            package = base / "Dataset042_Toy.nnseal.zip"
            exported = export_model_to_zip(model, package, key=keys.private_path)
            step.result(f"{package} ({format_bytes(exported.package_bytes)}, {len(exported.entries)} entries; "
                        f"sources {format_bytes(exported.source_bytes)})")

        with step("inspect: what the package says (nothing trusted)"):
            from nnseal.verify.report import inspect_package

            info = inspect_package(package)
            for folder, model_info in info.models.items():
                step.result(f"{folder}: folds {', '.join(model_info['folds'])}, "
                            f"{len(model_info['checkpoints'])} checkpoints")

        with step("verify: signature against the trusted key, every entry's sha256"):
            from nnseal.verify.report import verify_package

            verified = verify_package(package, [keys.public_path])
            if not verified.ok:
                raise NnsealError(f"demo package failed verification: {verified.problems}")
            step.result(f"OK: {verified.signed_entries} entries, signer {verified.signer_fingerprint}")

        with step("tamper: flip one byte of a copy, verify again"):
            tampered = base / "tampered.zip"
            _flip_one_weight_byte(package, tampered)
            bad = verify_package(tampered, [keys.public_path])
            if bad.ok:
                raise NnsealError("demo: a tampered package verified")
            step.result(f"refused as expected: {bad.problems[0]}")

        with step("scan: the CI gate over the original results folder, the package and the tampered copy"):
            from nnseal.scan.scanner import scan_paths

            clean = scan_paths([package], [keys.public_path])
            if clean.failed("any"):
                raise NnsealError(f"demo: scan flagged the clean package: {clean.to_text()}")
            step.result(clean.summary_line())
            # nnU-Net's own postprocessing.pkl is a pickle nnU-Net loads with pickle.load; holding
            # nothing but nnU-Net's own functions and plain data, it is the one note a clean results
            # folder gets.
            original = scan_paths([model.parent.parent], [keys.public_path])
            if {(Path(f.path).name, f.rule) for f in original.findings} != {("postprocessing.pkl",
                                                                             "nnunet-postprocessing")}:
                raise NnsealError(f"demo: unexpected scan of the results folder: {original.to_text()}")
            step.result(f"results folder: only nnU-Net's postprocessing.pkl fails the gate ({original.summary_line()})")
            gate = scan_paths([tampered], [keys.public_path])
            if not gate.failed("unsafe"):
                raise NnsealError("demo: scan passed a tampered package")
            step.result(f"tampered copy fails the gate: {gate.findings[0].rule}")

        with step("install: verify, stage, rebuild checkpoints, move into a fresh nnUNet_results"):
            from nnseal.verify.install import install_model_from_zip

            installed = install_model_from_zip(package, base / "nnUNet_results", trusted_keys=[keys.public_path])
            for folder in installed.models:
                step.result(f"{folder} ({len(installed.checkpoints)} checkpoints rebuilt)")

        with step("load: rebuilt checkpoints under torch.load(weights_only=True), no allowlist"):
            same = _compare_checkpoints(model, Path(installed.models[0]))
            step.result(f"{same} checkpoints load and their weights are bit-identical to the originals")

        with step("predict: nnU-Net's own predictor on the original and the installed folder"):
            step.result(_compare_predictions(model, Path(installed.models[0])))
        summary.update(package=str(package), installed=installed.models)
        echo("demo finished: every stage worked")
        return summary
    finally:
        if own_dir:
            shutil.rmtree(base, ignore_errors=True)


class _Steps:
    def __init__(self, echo):
        self.echo, self.n = echo, 0

    def __call__(self, title: str):
        self.n += 1
        self.echo(f"[{self.n}] {title}")
        return _NullContext()

    def result(self, text: str) -> None:
        self.echo(f"    -> {text}")


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _flip_one_weight_byte(package: Path, out: Path) -> None:
    """Re-zip the package with one weight byte changed: a valid zip (fresh CRCs), so only the
    signed manifest can tell. The input is the package this demo just made."""
    import zipfile

    with zipfile.ZipFile(package) as src, zipfile.ZipFile(out, "w") as dst:
        flipped = False
        for info in src.infolist():
            data = src.read(info)
            if not flipped and info.filename.endswith(".safetensors"):
                data, flipped = data[:-1] + bytes([data[-1] ^ 1]), True
            dst.writestr(info, data)


def _compare_checkpoints(original: Path, installed: Path) -> int:
    import torch

    from nnseal.errors import NnsealError

    count = 0
    for rebuilt in sorted(installed.glob("fold_*/checkpoint_*.pth")):
        new = torch.load(rebuilt, map_location="cpu", weights_only=True)
        source = original / rebuilt.relative_to(installed)
        # The original needs the numpy allowlist; load it through the sanitizer, never the unrestricted loader.
        from nnseal.sanitize.checkpoint import load_sanitized

        old = load_sanitized(source)
        for name in old.names:
            stored = old.aliases.get(name, name)
            a, b = old.tensors[stored], new["network_weights"][name]
            if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
                raise NnsealError(f"demo: weight {name} differs after install", path=rebuilt)
        count += 1
    return count


def _compare_predictions(original: Path, installed: Path) -> str:
    try:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor  # noqa: F401
    except ImportError:
        return "skipped: nnunetv2 is not installed here (pip install nnunetv2 to see this step)"
    from nnseal.nnunet_check import predict_both

    identical, shape = predict_both(original, installed)
    if not identical:
        from nnseal.errors import NnsealError

        raise NnsealError("demo: installed model predicts differently from the original")
    return f"identical segmentations from both folders (image {shape}, folds 0 and 1)"
