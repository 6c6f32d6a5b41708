"""`nnseal scan` reads files the way torch.load, pickle, numpy and safetensors would (issue 11).

One generator per attack (tests/hostile_scan_inputs.py); each must give exit 1, one line per
finding with the expected rule, no canary and nothing written.
"""

from __future__ import annotations

import subprocess
import sys

import hostile_scan_inputs as inputs
import pytest
from helpers import run_cli, tree_listing

LEVEL_WORDS = ("NOTE ", "WARNING ", "UNSIGNED ", "UNSAFE ")

ATTACKS = {
    "safetensors_tar_polyglot": (inputs.make_safetensors_tar_polyglot, True, {"polyglot"}),
    "npy_tar_polyglot": (inputs.make_npy_tar_polyglot, True, {"polyglot"}),
    "legacy_tar_without_ustar_magic": (inputs.make_legacy_tar_without_ustar_magic, True, {"not-checked"}),
    "pickle_newtrue_first": (inputs.make_pickle_newtrue_first, True, {"dangerous-global", "model-format"}),
    "pickle_short_binbytes_first": (inputs.make_pickle_short_binbytes_first, True, {"dangerous-global"}),
    "pickle_runs_then_breaks": (inputs.make_pickle_runs_then_breaks, True, {"malformed-pickle"}),
    "pickle_ext_opcode": (inputs.make_pickle_ext_opcode, False, {"dangerous-global", "model-format"}),
    # arguments only the C unpickler reads, and imports without calls (review finding 1)
    "pickle_base0_int_first": (inputs.make_pickle_base0_int_first, True, {"dangerous-global"}),
    "pickle_base0_long_first": (inputs.make_pickle_base0_long_first, True, {"dangerous-global"}),
    "pickle_nul_terminated_int_first": (inputs.make_pickle_nul_terminated_int_first, True, {"dangerous-global"}),
    "pickle_float_with_nul_first": (inputs.make_pickle_float_with_nul_first, True, {"dangerous-global"}),
    "pickle_sets_environ": (inputs.make_pickle_sets_environ, False, {"malformed-pickle"}),
    "pickle_import_only": (inputs.make_pickle_import_only, False, {"malformed-pickle"}),
    "clean_pickle_named_pth": (inputs.make_clean_pickle_named_pth, False, {"model-format"}),
    "pickle_in_fold_folder": (inputs.make_pickle_in_fold_folder, False, {"model-format"}),
    "npy_unknown_dtype": (inputs.make_npy_unknown_dtype, False, {"numpy-dtype"}),
}


def _scan_text(target, tmp_path):
    before = tree_listing(tmp_path)
    proc = run_cli("scan", target)
    assert tree_listing(tmp_path) == before  # nothing written
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    finding_lines = [line for line in lines if line.startswith(LEVEL_WORDS)]
    assert len(finding_lines) == len(lines) - 1  # one line per finding, then the summary
    return proc, finding_lines


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_loader_reading_attack_is_unsafe(attack, tmp_path, canary):
    make, takes_canary, expected = ATTACKS[attack]
    folder = tmp_path / "models"
    folder.mkdir()
    path = make(folder, canary) if takes_canary else make(folder)
    proc, lines = _scan_text(folder, tmp_path)
    assert proc.exit_code == 1, proc.stdout
    rules = {line.split(": ")[1] for line in lines}
    assert expected <= rules, lines
    assert any(line.startswith("UNSAFE ") and path.name in line for line in lines)
    assert not canary.exists()


@pytest.mark.parametrize("spelling", ["object", "O", "object_", "O8", "|O", "<O"])
def test_npy_object_dtype_spellings_are_unsafe(spelling, tmp_path, canary):
    path = inputs.make_npy_object_spelled(tmp_path, canary, spelling)
    proc, lines = _scan_text(path, tmp_path)
    assert proc.exit_code == 1
    assert {line.split(": ")[1] for line in lines} >= {"numpy-object-array", "dangerous-global"}
    assert not canary.exists()


def test_npy_structured_dtype_with_object_field_spelled_object(tmp_path, canary):
    path = tmp_path / "structured.npy"
    path.write_bytes(inputs.npy_with_descr([("a", "<f4"), ("b", "object")]))
    proc, lines = _scan_text(path, tmp_path)
    assert proc.exit_code == 1 and "numpy-object-array" in lines[0]


def test_polyglot_generators_really_have_both_readings(tmp_path, canary):
    """The attack is real: torch.load (weights_only=False, as nnU-Net calls it) runs the tar's pickle,
    while safetensors and numpy read a clean array."""
    import numpy as np
    from safetensors import safe_open

    polyglot = inputs.make_safetensors_tar_polyglot(tmp_path, canary)
    with safe_open(str(polyglot), "np") as handle:
        assert list(handle.keys()) == ["t"]
    npy = inputs.make_npy_tar_polyglot(tmp_path, canary)
    assert np.load(npy).dtype == np.uint8
    code = "import sys, torch\ntry:\n    torch.load(sys.argv[1], weights_only=False)\nexcept Exception:\n    pass\n"
    subprocess.run([sys.executable, "-c", code, str(polyglot)], check=True, capture_output=True, timeout=300)
    assert canary.exists()


@pytest.mark.parametrize("make", [inputs.make_safetensors_named_pth, inputs.make_safetensors_ok])
def test_safetensors_under_any_name_passes(make, tmp_path):
    proc, lines = _scan_text(make(tmp_path), tmp_path)
    assert (proc.exit_code, lines) == (0, [])


def test_text_files_are_not_pickles(tmp_path):
    """Source, logs and JSON that start with opcode letters stay `other`."""
    folder = tmp_path / "fold_0"
    folder.mkdir()
    (folder / "train.py").write_text("import os\nimport sys\n\nprint(os.getcwd())\n")
    (folder / "config.txt").write_text("config = value\nmore text\n")
    (folder / "log.txt").write_text("2024-01-01 epoch 0\n" * 5000)
    (folder / "debug.json").write_text('{"a": 1}')
    proc, lines = _scan_text(folder, tmp_path)
    assert (proc.exit_code, lines) == (0, [])


def test_signature_name_spelled_out_in_classify_matches_the_format():
    from nnseal.format.oms import SIGNATURE_NAME
    from nnseal.scan import classify

    assert classify.SIGNATURE_NAME == SIGNATURE_NAME
