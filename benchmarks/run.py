"""Benchmark nnseal against nnU-Net's own model sharing, in one run, as ratios.

    .venv/bin/python benchmarks/run.py            # full: 5-fold 3d_fullres, ~31 M parameters, ~2.5 GB
    .venv/bin/python benchmarks/run.py --small    # quick check, well under a minute
    .venv/bin/python benchmarks/run.py --scan     # also `nnseal scan` over 1,000 small checkpoints

Every command runs as a child process; wall time is perf_counter around it and peak RSS
is that child's ru_maxrss from wait4. Runs are warm-cache for both sides alike: inputs
are read once before each run, dirty pages are flushed (sync) outside the timed region,
and each command gets one unmeasured warm-up run (except nnU-Net's minutes-long export
in full mode, whose inputs and imports are warmed instead). Prints a table and writes
benchmarks/out/results.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fixtures  # noqa: E402
import goals  # noqa: E402
from measure import Measurement, flush_dirty_pages, measure, run_child, warm_files  # noqa: E402

BIN = Path(sys.executable).parent
NNSEAL = str(BIN / "nnseal")
NNUNET_EXPORT = str(BIN / "nnUNetv2_export_model_to_zip")
NNUNET_INSTALL = str(BIN / "nnUNetv2_install_pretrained_model_from_zip")
MODEL_SIGNING = str(BIN / "model_signing")
SCAN_COUNT = 1000

GB = 1_000_000_000
MB = 1_000_000


@dataclass
class Settings:
    scenario: fixtures.Scenario
    out: Path
    repeats: int
    export_repeats: int
    warm_expensive_peer: bool  # False: warm nnU-Net's export by its inputs and imports, not a full run


def parse_args(argv: list[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="Small model, 2 folds: a quick check (< 1 min).")
    parser.add_argument("--rebuild", action="store_true", help="Rebuild the cached results folder(s).")
    parser.add_argument("--scan", action="store_true",
                        help=f"Also time `nnseal scan` over {SCAN_COUNT} small checkpoints (if the command exists).")
    parser.add_argument("--install-memory", action="store_true",
                        help="Also measure install peak RSS for a 2.5 GB checkpoint and U16/U32/U64/F8 tensors "
                             "(builds ~5 GB of inputs once; small mode: 250 MB and 38 MB).")
    parser.add_argument("--repeats", type=int, default=3, help="Measured runs per command (median reported).")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="Cache and output folder.")
    args = parser.parse_args(argv)
    scenario = fixtures.SMALL if args.small else fixtures.FULL
    settings = Settings(scenario=scenario, out=args.out, repeats=max(1, args.repeats),
                        export_repeats=max(1, args.repeats) if args.small else 1,
                        warm_expensive_peer=args.small)
    return settings, args


def child_env(results: Path, scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"nnUNet_results": str(results), "nnUNet_raw": str(scratch / "nnUNet_raw"),
                "nnUNet_preprocessed": str(scratch / "nnUNet_preprocessed"), "CI": "1",
                "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1")})
    env.pop("NNSEAL_DEBUG", None)
    env.pop("NNSEAL_SIGNING_KEY", None)
    return env


def _reset(*paths: Path, warm: tuple[Path, ...] = ()):
    """Remove outputs of the previous run, warm the inputs, flush dirty pages: all outside the timing."""
    def before() -> None:
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        warm_files(list(warm))
        flush_dirty_pages()
    return before


def _installed_checkpoints(results: Path) -> int:
    return sum(1 for _ in results.glob("Dataset*/*/fold_*/checkpoint_*.pth"))


def _build_in_child(*args: str) -> dict:
    """Run fixtures.py in a child: torch must never enter this (measuring) process."""
    proc = subprocess.run([sys.executable, str(HERE / "fixtures.py"), *args], stdout=subprocess.PIPE, check=True)
    return json.loads(proc.stdout)


def driver_peak_rss() -> int:
    """This process's high-water RSS: a floor under every child's ru_maxrss (fork inherits it)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_benchmark(settings: Settings, args: argparse.Namespace) -> dict:
    root = settings.out / settings.scenario.name
    built = fixtures.built_from_json(_build_in_child(
        "results", str(settings.out), "--scenario", settings.scenario.name, *(["--rebuild"] if args.rebuild else [])))
    work = root / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    subprocess.run([NNSEAL, "keygen", "-o", str(work / "bench")], stdout=subprocess.DEVNULL, check=True)
    private_key, public_key = work / "bench.pem", work / "bench.pub"
    package, peer_zip = work / "model.nnseal.zip", work / "model.nnunet.zip"
    nnseal_results, peer_results = work / "nnseal_install", work / "nnunet_install"
    env = child_env(built.results, work)
    peer_install_env = child_env(peer_results, work)
    folds = [str(f) for f in built.folds]
    r = settings.repeats
    measured: dict[str, Measurement] = {}
    started = time.perf_counter()

    def note(label: str) -> None:
        m = measured[label]
        print(f"  {label:<24} {m.seconds:8.2f} s  peak RSS {m.peak_rss_bytes / MB:8.0f} MB", flush=True)

    if "torch" in sys.modules:
        raise RuntimeError("torch was imported into the benchmark driver: children's peak RSS would include it")
    print(f"model: {built.parameters / 1e6:.1f} M parameters, {built.checkpoint_files} checkpoints, "
          f"{built.checkpoint_bytes / GB:.2f} GB of .pth", flush=True)

    # --- export -----------------------------------------------------------------------
    export_argv = [NNSEAL, "export", "-i", str(built.model), "-o", str(package), "--key", str(private_key),
                   "-f", ",".join(folds), "--checkpoints", "final,best", "--quiet"]
    measured["nnseal export"] = measure("nnseal export", export_argv, repeats=settings.export_repeats,
                                        warmup=True, env=env, before_each=_reset(package, warm=(built.model,)))
    note("nnseal export")
    peer_export_argv = [NNUNET_EXPORT, "-d", built.dataset, "-o", str(peer_zip), "-c", built.configuration,
                        "-tr", "nnUNetTrainer", "-p", "nnUNetPlans", "-f", *folds,
                        "-chk", "checkpoint_final.pth", "checkpoint_best.pth"]
    if not settings.warm_expensive_peer:
        # Its imports are what a warm-up run would warm beyond the inputs (read in before_each).
        run_child([sys.executable, "-c", "import nnunetv2.model_sharing.entry_points"], env=env)
    measured["nnU-Net export"] = measure("nnU-Net export", peer_export_argv, repeats=settings.export_repeats,
                                         warmup=settings.warm_expensive_peer, env=env,
                                         before_each=_reset(peer_zip, warm=(built.model,)))
    note("nnU-Net export")

    # --- install ----------------------------------------------------------------------
    def check_nnseal_install() -> None:
        assert _installed_checkpoints(nnseal_results) == built.checkpoint_files, "nnseal install incomplete"

    def check_peer_install() -> None:
        assert _installed_checkpoints(peer_results) == built.checkpoint_files, "nnU-Net install incomplete"

    install_argv = [NNSEAL, "install", str(package), "--results", str(nnseal_results),
                    "--trusted-key", str(public_key), "--quiet"]
    measured["nnseal install"] = measure("nnseal install", install_argv, repeats=r, warmup=True, env=env,
                                         before_each=_reset(nnseal_results, warm=(package,)),
                                         check=check_nnseal_install)
    note("nnseal install")
    measured["nnU-Net install"] = measure("nnU-Net install", [NNUNET_INSTALL, str(peer_zip)], repeats=r,
                                          warmup=True, env=peer_install_env,
                                          before_each=_reset(peer_results, warm=(peer_zip,)),
                                          check=check_peer_install)
    note("nnU-Net install")
    _reset(nnseal_results, peer_results)()

    # --- verify -----------------------------------------------------------------------
    verify_argv = [NNSEAL, "verify", str(package), "--trusted-key", str(public_key)]
    measured["nnseal verify"] = measure("nnseal verify", verify_argv, repeats=r, warmup=True, env=env,
                                        before_each=_reset(warm=(package,)))
    note("nnseal verify")
    measured["sha256sum"] = measure("sha256sum", ["sha256sum", str(package)], repeats=r, warmup=True, env=env,
                                    before_each=_reset(warm=(package,)))
    note("sha256sum")
    measured["nnseal verify --help"] = measure("nnseal verify --help", [NNSEAL, "verify", "--help"],
                                               repeats=max(5, r), warmup=True, env=env)
    note("nnseal verify --help")

    oms_status = measure_folder_signing(measured, note, package, work, private_key, public_key, env, r)

    if args.install_memory:
        import install_memory

        big_gb, dtype_mb = (0.25, 38) if settings.scenario is fixtures.SMALL else (2.5, 384)
        for case in install_memory.CASES:
            nbytes = int(big_gb * 1e9 if case == "big" else dtype_mb * 1e6) // 8 * 8
            case_package, case_key = install_memory.build(settings.out / "install_memory", case, nbytes)
            case_results = work / f"install_{case}"
            label = f"nnseal install {case} ({nbytes / MB:,.0f} MB {install_memory.CASES[case]})"
            measured[label] = measure(label, [NNSEAL, "install", str(case_package), "--results", str(case_results),
                                              "--trusted-key", str(case_key), "--quiet"], repeats=1, warmup=True,
                                      env=env, before_each=_reset(case_results, warm=(case_package,)))
            note(label)
            _reset(case_results)()

    scan_status = "not requested"
    if args.scan:
        if importlib.util.find_spec("nnseal.commands.scan") is None:
            scan_status = "skipped: nnseal/commands/scan.py does not exist yet"
            print(f"  scan: {scan_status}", flush=True)
        else:
            scan_dir = Path(_build_in_child("scan", str(settings.out), "--count", str(SCAN_COUNT),
                                            *(["--rebuild"] if args.rebuild else []))["folder"])
            measured["nnseal scan"] = measure("nnseal scan", [NNSEAL, "scan", str(scan_dir)], repeats=r,
                                              warmup=True, env=env, before_each=_reset(warm=(scan_dir,)))
            scan_status = "measured"
            note("nnseal scan")

    package_bytes, peer_zip_bytes = package.stat().st_size, peer_zip.stat().st_size
    results = judge(measured, package_bytes, peer_zip_bytes)
    return {
        "scenario": settings.scenario.name,
        "model": {"parameters": built.parameters, "checkpoints": built.checkpoint_files,
                  "checkpoint_bytes": built.checkpoint_bytes, "folds": list(built.folds),
                  "configuration": built.configuration, "spec": fixtures._description(settings.scenario)["spec"]},
        "package_bytes": package_bytes,
        "nnunet_zip_bytes": peer_zip_bytes,
        "cache": "warm (inputs read before each run; sync before each run; one warm-up run per command)",
        "scan": scan_status,
        "oms_folder": oms_status,
        "environment": environment(),
        "driver_peak_rss_bytes": driver_peak_rss(),
        "measurements": {label: m.to_json() for label, m in measured.items()},
        "goals": [g.to_json() for g in results],
        "table": goals.format_table(results),
        "markdown": goals.format_markdown(results),
        "total_seconds": time.perf_counter() - started,
    }


def extract_package(package: Path, folder: Path) -> None:
    """The package's entries as a plain folder (a model repository's shape), one entry at a time."""
    import zipfile

    shutil.rmtree(folder, ignore_errors=True)
    with zipfile.ZipFile(package) as archive:
        for info in archive.infolist():
            if info.is_dir() or info.filename == "model.sig":
                continue
            target = folder / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)


def measure_folder_signing(measured: dict[str, Measurement], note, package: Path, work: Path, private_key: Path,
                           public_key: Path, env: dict[str, str], r: int) -> str:
    """`nnseal sign/verify FOLDER` against `model_signing sign/verify key` on the extracted package."""
    if not Path(MODEL_SIGNING).exists():
        print("  OMS folder: skipped, model_signing is not installed", flush=True)
        return "skipped: model_signing is not installed"
    folder = work / "extracted"
    extract_package(package, folder)
    ours, theirs = work / "folder.nnseal.sig", work / "folder.model_signing.sig"
    runs = {
        "nnseal sign folder": [NNSEAL, "sign", str(folder), "--key", str(private_key), "-o", str(ours), "--force"],
        "model_signing sign key": [MODEL_SIGNING, "sign", "key", str(folder), "--private_key", str(private_key),
                                   "--signature", str(theirs)],
        "nnseal verify folder": [NNSEAL, "verify", str(folder), "--signature", str(ours), "--trusted-key",
                                 str(public_key)],
        "model_signing verify key": [MODEL_SIGNING, "verify", "key", str(folder), "--signature", str(theirs),
                                     "--public_key", str(public_key)],
    }
    for label, argv in runs.items():
        # Each verify checks the other tool's signature too (interop in the same run), untimed.
        measured[label] = measure(label, argv, repeats=r, warmup=True, env=env, before_each=_reset(warm=(folder,)))
        note(label)
    for argv in ([NNSEAL, "verify", str(folder), "--signature", str(theirs), "--trusted-key", str(public_key)],
                 [MODEL_SIGNING, "verify", "key", str(folder), "--signature", str(ours), "--public_key",
                  str(public_key)]):
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, env=env)
    return "measured"


def judge(measured: dict[str, Measurement], package_bytes: int, peer_zip_bytes: int) -> list[goals.Result]:
    m = measured
    out = [
        goals.speedup("export time", m["nnseal export"].seconds, m["nnU-Net export"].seconds,
                      "nnUNetv2_export_model_to_zip", 15),
        goals.fraction("package size", package_bytes, peer_zip_bytes, "nnU-Net zip", 0.55),
        goals.speedup("install time (verify + extract + rebuild)", m["nnseal install"].seconds,
                      m["nnU-Net install"].seconds, "nnUNetv2_install_pretrained_model_from_zip (unverified)", 4.5,
                      note="nnseal fsyncs every file it installs; nnU-Net's extractall does not"),
        goals.speedup("verify time", m["nnseal verify"].seconds, m["sha256sum"].seconds, "sha256sum of the zip", 1),
        goals.ceiling("export peak RSS", m["nnseal export"].peak_rss_bytes, "bytes", 1500 * MB,
                      baseline=m["nnU-Net export"].peak_rss_bytes, baseline_name="nnU-Net export"),
        goals.ceiling("install peak RSS", m["nnseal install"].peak_rss_bytes, "bytes", 100 * MB,
                      baseline=m["nnU-Net install"].peak_rss_bytes, baseline_name="nnU-Net install"),
        goals.reported("verify peak RSS", m["nnseal verify"].peak_rss_bytes, "bytes",
                       baseline=m["sha256sum"].peak_rss_bytes, baseline_name="sha256sum"),
        goals.ceiling("`nnseal verify --help` start-up", m["nnseal verify --help"].seconds, "s", 0.5),
    ]
    if "nnseal sign folder" in m:
        out.append(goals.speedup("OMS sign of the extracted package", m["nnseal sign folder"].seconds,
                                 m["model_signing sign key"].seconds, "`model_signing sign key` 1.1.1", 3))
        out.append(goals.speedup("OMS verify of the extracted package", m["nnseal verify folder"].seconds,
                                 m["model_signing verify key"].seconds, "`model_signing verify key` 1.1.1", 3))
    for label in sorted(k for k in m if k.startswith("nnseal install ")):
        out.append(goals.ceiling(f"{label} peak RSS", m[label].peak_rss_bytes, "bytes", 100 * MB,
                                 note="issue 12: flat for every dtype and size"))
    if "nnseal scan" in m:
        out.append(goals.ceiling(f"scan of {SCAN_COUNT} small checkpoints", m["nnseal scan"].seconds, "s", 10.0,
                                 note="issue: 'scans in seconds'"))
    return out


def environment() -> dict:
    import importlib.metadata as md

    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "not installed"

    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
            "cpus": os.cpu_count(), "nnseal": version("nnseal"), "nnunetv2": version("nnunetv2"),
            "torch": version("torch"), "safetensors": version("safetensors")}


def main(argv: list[str] | None = None) -> int:
    settings, args = parse_args(argv)
    report = run_benchmark(settings, args)
    settings.out.mkdir(parents=True, exist_ok=True)
    target = settings.out / "results.json"
    target.write_text(json.dumps(report, indent=2))
    print()
    print(f"{report['scenario']} run, {report['model']['parameters'] / 1e6:.1f} M parameters, "
          f"{report['model']['checkpoints']} checkpoints ({report['model']['checkpoint_bytes'] / GB:.2f} GB); "
          f"{report['cache']}")
    print(report["table"])
    if report["scan"] != "measured":
        print(f"scan: {report['scan']}")
    print(f"\nwrote {target} ({report['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
