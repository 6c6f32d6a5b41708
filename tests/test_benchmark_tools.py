"""The benchmark's measuring, judging and caching: figures that mean what the table says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import fixtures  # noqa: E402
import goals  # noqa: E402
import measure  # noqa: E402

from nnseal.toy_model import ToySpec  # noqa: E402

ALLOCATE = ("import sys, time; block = bytearray(int(sys.argv[1]) * 1_000_000); "
            "block[::4096] = b'x' * len(block[::4096])")


def test_peak_rss_is_the_childs_own():
    # Measured from a fresh, small driver, as run.py is: a child's ru_maxrss starts at its
    # parent's high-water mark, and this pytest process may have imported torch.
    driver = (f"import json, sys; sys.path.insert(0, {str(BENCHMARKS)!r}); import measure; "
              f"runs = [measure.run_child([sys.executable, '-c', {ALLOCATE!r}, n]) for n in ('1', '300')]; "
              "print(json.dumps([[r.returncode, r.peak_rss_bytes] for r in runs]))")
    proc = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=120, check=True)
    (small_rc, small), (large_rc, large) = json.loads(proc.stdout)
    assert small_rc == large_rc == 0
    assert large >= 300_000_000
    assert large - small >= 250_000_000
    assert small < 150_000_000


def test_measure_skips_the_warmup_and_reports_the_median(tmp_path):
    counter = tmp_path / "runs"
    script = (f"import pathlib; p = pathlib.Path({str(counter)!r}); "
              "p.write_text(str(int(p.read_text() or 0) + 1) if p.exists() else '1')")
    result = measure.measure("count", [sys.executable, "-c", script], repeats=3, warmup=True)
    assert counter.read_text() == "4"
    assert len(result.runs) == 3
    assert result.seconds == sorted(r.seconds for r in result.runs)[1]


def test_a_failing_command_stops_the_benchmark():
    with pytest.raises(measure.ChildFailed, match="exited 3"):
        measure.measure("fails", [sys.executable, "-c", "import sys; sys.exit(3)"], repeats=1, warmup=False)


def test_goals_are_judged_in_the_direction_they_are_stated():
    assert goals.speedup("export", 2.0, 40.0, "peer", 15).passed  # 20x
    assert not goals.speedup("export", 4.0, 40.0, "peer", 15).passed  # 10x
    assert goals.fraction("size", 50, 100, "peer", 0.55).passed
    assert not goals.fraction("size", 60, 100, "peer", 0.55).passed
    assert goals.ceiling("rss", 500e6, "bytes", 600e6).passed
    assert not goals.ceiling("start", 0.6, "s", 0.5).passed
    table = goals.format_table([goals.speedup("export", 4.0, 40.0, "peer", 15)])
    assert "10.0x faster" in table and "MISS" in table


def test_results_folder_is_cached_until_rebuild(tmp_path):
    scenario = fixtures.Scenario("tiny", ToySpec(), folds=(0,))
    first = fixtures.ensure_results(tmp_path, scenario, rebuild=False)
    assert first.checkpoint_files == 2 and first.parameters > 0
    marker = first.model / "fold_0" / "checkpoint_final.pth"
    stamp = marker.stat().st_mtime_ns
    assert fixtures.ensure_results(tmp_path, scenario, rebuild=False).checkpoint_bytes == first.checkpoint_bytes
    assert marker.stat().st_mtime_ns == stamp  # reused, not rebuilt
    other = fixtures.Scenario("tiny", ToySpec(), folds=(0, 1))
    assert fixtures.ensure_results(tmp_path, other, rebuild=False).checkpoint_files == 4  # stale cache rebuilt
    fixtures.ensure_results(tmp_path, other, rebuild=True)
    assert not (tmp_path / "results.partial").exists()


def test_full_scenario_is_nnunet_default_size():
    spec = fixtures.FULL.spec
    assert spec.features == (32, 64, 128, 256, 320, 320) and spec.patch_size == (128, 128, 128)
    assert fixtures.FULL.folds == (0, 1, 2, 3, 4)
