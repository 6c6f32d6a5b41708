"""`nnseal sanitize` on hostile checkpoints: exit 1, one line, payload never ran, nothing written."""

from __future__ import annotations

import os

import hostile_checkpoints as hostile
import pytest
from helpers import assert_one_line_refusal, run_cli, tree_listing

# attack generator -> words its one-line refusal must contain
ATTACKS = {
    hostile.make_reduce_os_system: ["posix.system", "allowlist"],
    hostile.make_reduce_subprocess: ["subprocess.call"],
    hostile.make_reduce_eval: ["builtins.eval"],
    hostile.make_reduce_exec: ["builtins.exec"],
    hostile.make_reduce_dunder_import: ["builtins.__import__", "builtins.getattr"],
    hostile.make_reduce_importlib: ["importlib.import_module"],
    hostile.make_partial_torch_load: ["functools.partial", "torch.serialization.load"],
    hostile.make_nested_pickle_loads: ["pickle.loads"],
    hostile.make_numpy_load_allow_pickle: ["numpy.load"],
    # every disallowed global in one line, not just the first
    hostile.make_numpy_object_array: ["numpy._core.multiarray._reconstruct", "numpy.ndarray", "posix.system"],
    hostile.make_torchscript_archive: ["TorchScript"],
    hostile.make_legacy_format: ["legacy", "non-zip"],
    hostile.make_protocol4_data_pkl: ["posix.system", "STACK_GLOBAL", "protocol 4"],
    hostile.make_raw_pickle_named_pth: ["bare pickle"],
    hostile.make_duplicate_data_pkl_hostile_first: ["duplicate entry name", "data.pkl"],
    hostile.make_duplicate_data_pkl_hostile_last: ["duplicate entry name", "data.pkl"],
    hostile.make_local_central_name_mismatch: ["local and central names differ"],
    hostile.make_storage_shorter_than_declared: ["storage size mismatch"],
    hostile.make_stride0_expansion: ["stride-0", "68719476736"],
    hostile.make_tensor_beyond_storage: ["weights_only=True", "not resizable"],
    hostile.make_empty_file: ["empty file"],
    hostile.make_truncated_zip: ["truncated"],
}


@pytest.mark.parametrize("make", list(ATTACKS), ids=[f.__name__.removeprefix("make_") for f in ATTACKS])
def test_sanitize_refuses_attack(make, tmp_path, canary):
    source_dir = tmp_path / "in"
    source_dir.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    checkpoint = make(source_dir, canary)
    before = tree_listing(source_dir)

    proc = run_cli("sanitize", checkpoint, "-o", out_dir / "weights.safetensors", cwd=tmp_path)

    assert_one_line_refusal(proc, checkpoint.name, *ATTACKS[make])
    assert not canary.exists(), "the payload ran"
    assert os.listdir(out_dir) == [], "a refusal left a file behind"
    assert tree_listing(source_dir) == before


def test_canary_payloads_are_live(tmp_path, canary):
    """Control: the same payload under a plain unpickler does create the canary."""
    payload = hostile.make_raw_pickle_named_pth(tmp_path, canary)
    proc = hostile.run_unpickler_on(payload)
    assert proc.returncode == 0, proc.stderr
    assert canary.exists()


def test_library_refuses_without_importing_payload_modules(tmp_path, canary):
    """The static check runs before torch: a refused file never gets as far as torch.load."""
    import subprocess
    import sys

    checkpoint = hostile.make_reduce_os_system(tmp_path, canary)
    code = (
        "import sys\n"
        "from nnseal.errors import UnsafeCheckpoint\n"
        "from nnseal.sanitize.checkpoint import load_sanitized\n"
        "try:\n"
        "    load_sanitized(sys.argv[1])\n"
        "except UnsafeCheckpoint as err:\n"
        "    print('refused', 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(checkpoint)], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "refused False", proc.stderr
    assert not canary.exists()
