"""`nnseal scan` over the sanitize stage's hostile checkpoint corpus, against picklescan, and without torch."""

from __future__ import annotations

import inspect
import io
import logging
import os
import subprocess
import sys

import hostile_checkpoints as hostile
import pytest
from helpers import tree_listing
from scan_helpers import scan_json

# Every generator in the corpus, found by name: a new attack is covered without editing this file.
GENERATORS = [fn for name, fn in sorted(vars(hostile).items())
              if name.startswith("make_") and inspect.isfunction(fn)]

# What each attack must be reported as (at least); the level of each rule is "unsafe".
EXPECTED_RULES = {
    "make_reduce_os_system": {"dangerous-global"},
    "make_reduce_subprocess": {"dangerous-global"},
    "make_reduce_eval": {"dangerous-global"},
    "make_reduce_exec": {"dangerous-global"},
    "make_reduce_dunder_import": {"dangerous-global"},
    "make_reduce_importlib": {"dangerous-global"},
    "make_raw_pickle_named_pth": {"dangerous-global"},
    "make_partial_torch_load": {"dangerous-global"},
    "make_nested_pickle_loads": {"dangerous-global"},
    "make_numpy_load_allow_pickle": {"dangerous-global"},
    "make_numpy_object_array": {"dangerous-global", "global-not-allowlisted"},
    "make_torchscript_archive": {"torchscript", "dangerous-global"},
    "make_legacy_format": {"legacy-format", "dangerous-global"},
    "make_protocol4_data_pkl": {"dangerous-global", "pickle-opcode"},
    "make_duplicate_data_pkl_hostile_first": {"hostile-archive"},
    "make_duplicate_data_pkl_hostile_last": {"hostile-archive"},
    "make_local_central_name_mismatch": {"hostile-archive"},
    "make_storage_shorter_than_declared": {"storage-mismatch"},
    "make_stride0_expansion": {"tensor-geometry"},
    "make_tensor_beyond_storage": {"tensor-geometry"},
    "make_empty_file": {"unrecognized-model-file"},
    "make_truncated_zip": {"hostile-archive"},
    # more than one reading of the archive (issue 11)
    "make_hidden_archive_checkpoint": {"hostile-archive"},
    "make_hidden_weights_checkpoint": {"hostile-archive"},
    "make_signature_in_checkpoint_comment": {"hostile-archive"},
    "make_checkpoint_comment": {"hostile-archive"},
    "make_appended_data_checkpoint": {"hostile-archive"},
    "make_prepended_data_checkpoint": {"hostile-archive"},
}


def test_every_generator_has_an_expectation():
    assert {fn.__name__ for fn in GENERATORS} == set(EXPECTED_RULES)


@pytest.mark.parametrize("make", GENERATORS, ids=[fn.__name__.removeprefix("make_") for fn in GENERATORS])
def test_cli_flags_hostile_checkpoint_unsafe(make, tmp_path, canary):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    target = make(corpus, canary)
    before = tree_listing(tmp_path)

    proc, report = scan_json(target, cwd=tmp_path)

    assert proc.exit_code == 1, proc.stdout
    mine = [f for f in report["findings"] if f["path"] == str(target)]
    assert {f["level"] for f in mine} >= {"unsafe"}
    assert EXPECTED_RULES[make.__name__] <= {f["rule"] for f in mine}, mine
    assert report["failed"] is True
    assert not canary.exists(), "the payload ran"
    assert tree_listing(tmp_path) == before, "the scan wrote something"


def test_dangerous_callable_is_named(tmp_path, canary):
    target = hostile.make_partial_torch_load(tmp_path, canary)
    _, report = scan_json(target)
    messages = " ".join(f["message"] for f in report["findings"])
    assert "functools.partial" in messages and "torch.serialization.load" in messages


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    canary = folder.parent / "CANARY_corpus"
    for make in GENERATORS:
        make(folder, canary)
    return folder, canary


def _picklescan_flags(path) -> bool:
    """picklescan's verdict: a dangerous global, a scan error, or a crash (its CLI exits non-zero on all three)."""
    from picklescan.scanner import scan_file_path

    logging.getLogger("picklescan").disabled = True
    try:
        result = scan_file_path(str(path))
    except Exception:
        return True
    return result.issues_count > 0 or bool(result.scan_err)


@pytest.mark.interop
def test_nnseal_flags_everything_picklescan_flags(corpus):
    folder, canary = corpus
    files = sorted(p for p in folder.iterdir() if p.is_file())
    flagged_by_picklescan = {p.name for p in files if _picklescan_flags(p)}
    proc, report = scan_json(folder)
    flagged_by_nnseal = {os.path.basename(f["path"]) for f in report["findings"] if f["level"] == "unsafe"}

    assert flagged_by_picklescan, "picklescan flagged nothing: the comparison would prove nothing"
    assert flagged_by_picklescan <= flagged_by_nnseal
    # docs/SCAN.md lists where nnseal flags more; keep it true.
    assert flagged_by_nnseal - flagged_by_picklescan == {
        "beyond_storage.pth", "dup_hostile_first.pth", "numpy_load.pth", "short_storage.pth", "stride0.pth",
        "hidden_weights.pth", "signature_in_comment.pth", "comment.pth"}
    assert flagged_by_nnseal == {p.name for p in files}
    assert not canary.exists()


def test_scan_of_checkpoints_and_packages_never_imports_torch(toy_results_session, toy_package_session, corpus,
                                                              session_key):
    folder, _ = corpus
    code = (
        "import sys\n"
        "from nnseal.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "print('torch' in sys.modules, 'numpy' in sys.modules, code, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, "scan", str(toy_results_session), str(toy_package_session),
                           str(folder), "--trusted-key", str(session_key.public_path), "--format", "json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.stderr.strip().splitlines()[-1] == "False False 1", proc.stderr
    kinds = {s["kind"] for s in __import__("json").loads(proc.stdout)["scanned"]}
    assert {"torch-zip", "nnseal-package", "torch-legacy", "pickle", "npy"} <= kinds


@pytest.fixture(scope="module")
def thousand_checkpoints(tmp_path_factory):
    import torch

    folder = tmp_path_factory.mktemp("thousand")
    for i in range(1000):
        buffer = io.BytesIO()
        torch.save({"network_weights": {"w": torch.full((4,), float(i))}, "trainer_name": "nnUNetTrainer"}, buffer)
        (folder / f"ckpt_{i:04d}.pth").write_bytes(buffer.getvalue())
    return folder


def test_thousand_small_checkpoints_all_pass(thousand_checkpoints):
    # Timing lives in benchmarks/scan_bench.py; this checks the result counts only.
    from nnseal.scan import scan_paths

    report = scan_paths([thousand_checkpoints])
    assert report.files == 1000
    assert report.kinds() == {"torch-zip": 1000}
    assert report.findings == []


def test_one_hostile_among_a_thousand_is_the_one_finding(thousand_checkpoints, tmp_path, canary):
    from nnseal.scan import scan_paths

    hostile_file = hostile.make_reduce_os_system(tmp_path, canary)
    report = scan_paths([thousand_checkpoints, hostile_file])
    assert report.files == 1001
    assert [(f.path, f.rule) for f in report.findings] == [(str(hostile_file), "dangerous-global")]
    assert report.failed("unsafe")


def test_parallel_scan_gives_the_same_report_in_the_same_order(thousand_checkpoints, tmp_path, canary, monkeypatch):
    from nnseal.scan import scan_paths, scanner

    hostile.make_reduce_os_system(tmp_path, canary)
    hostile.make_stride0_expansion(tmp_path, canary)
    (tmp_path / "link.pth").symlink_to(tmp_path / "os_system.pth")
    monkeypatch.setattr(scanner, "PARALLEL_MIN_BYTES", 0)  # the tiny files would not otherwise qualify
    batches = []
    real = scanner._scan_files_in_parallel
    monkeypatch.setattr(scanner, "_scan_files_in_parallel",
                        lambda files, keys, folder, workers: batches.append(len(files)) or real(files, keys, folder,
                                                                                                 workers))
    sequential = scan_paths([tmp_path, thousand_checkpoints])
    assert batches == []
    parallel = scan_paths([tmp_path, thousand_checkpoints], workers=2)
    assert batches == [1002]
    assert parallel == sequential
    assert [f.rule for f in parallel.findings] == ["symlink", "dangerous-global", "tensor-geometry"]
    assert parallel.files == 1002
