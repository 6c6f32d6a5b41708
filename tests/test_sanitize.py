"""The sanitize stage on checkpoints shaped like nnU-Net's: round trips, variants, refusals, atomicity."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import assert_one_line_refusal, run_cli
from hostile_checkpoints import rewrite_zip
from safetensors.torch import load_file

from nnseal import toy_model
from nnseal.errors import UnsafeCheckpoint, WouldOverwrite
from nnseal.readers.torch_archive import inspect_checkpoint
from nnseal.sanitize import checkpoint as sanitize_mod
from nnseal.sanitize.checkpoint import load_sanitized, safetensors_metadata, sanitize_checkpoint
from nnseal.sanitize.tensors import strip_wrapper_prefixes

SPEC = toy_model.ToySpec()
DROPPED = ["optimizer_state", "grad_scaler_state", "logging", "_best_ema",
           "init_args.plans", "init_args.dataset_json", "init_args.device"]


@pytest.fixture(scope="module")
def toy_dict() -> dict:
    return toy_model.checkpoint_dict(SPEC, 0, seed=7)


@pytest.fixture()
def toy_pth(tmp_path, toy_dict) -> Path:
    path = tmp_path / "checkpoint_final.pth"
    torch.save(toy_dict, path)
    return path


def save(tmp_path: Path, obj: dict, name: str = "ck.pth") -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a.dtype == b.dtype and a.shape == b.shape
            and torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8)))


def names_back(out: Path) -> dict[str, torch.Tensor]:
    """Every original name, resolved through the recorded aliases, from safetensors' own loader."""
    from safetensors import safe_open

    with safe_open(str(out), "pt") as handle:
        meta = handle.metadata()
    stored = load_file(str(out))
    aliases = json.loads(meta["nnseal.aliases"])
    return {name: stored[aliases.get(name, name)] for name in json.loads(meta["nnseal.names"])}


def assert_round_trip(source: dict[str, torch.Tensor], out: Path, rename=lambda n: n) -> None:
    back = names_back(out)
    assert list(back) == [rename(n) for n in source]
    for name, tensor in source.items():
        assert same_bits(back[rename(name)], tensor), name


# --- round trip of nnU-Net-shaped checkpoints ------------------------------------------


def test_round_trip_toy_checkpoint(tmp_path, toy_pth, toy_dict):
    out = tmp_path / "w.safetensors"
    report = sanitize_checkpoint(toy_pth, out)

    weights = toy_dict["network_weights"]
    assert len(weights) == 136  # PlainConvUNet naming: all_modules.N and decoder.encoder.* repeat tensors
    assert_round_trip(weights, out)
    distinct = {(t.data_ptr(), t.shape, t.stride()) for t in weights.values()}
    assert report.names == 136
    assert report.tensors == len(distinct) == len(load_file(str(out)))
    assert report.aliases == 136 - len(distinct)

    from safetensors import safe_open

    with safe_open(str(out), "pt") as handle:
        meta = handle.metadata()
    assert set(meta) == {"format", "nnseal.format", "nnseal.names", "nnseal.aliases", "nnseal.checkpoint"}
    assert meta["format"] == "pt" and meta["nnseal.format"] == "1"
    assert json.loads(meta["nnseal.checkpoint"]) == {
        "trainer_name": "nnUNetTrainer", "configuration": "2d", "fold": 0,
        "inference_allowed_mirroring_axes": [0, 1], "current_epoch": 3}
    # the fixed, compact, sorted serialization
    assert meta["nnseal.checkpoint"] == json.dumps(json.loads(meta["nnseal.checkpoint"]), sort_keys=True,
                                                   separators=(",", ":"))
    assert meta["nnseal.names"] == json.dumps(list(weights), separators=(",", ":"))


def test_report_lists_what_was_dropped_and_saved(tmp_path, toy_pth):
    out = tmp_path / "w.safetensors"
    report = sanitize_checkpoint(toy_pth, out)
    assert report.dropped_keys == DROPPED
    assert report.kept_metadata["current_epoch"] == 3
    assert report.source_bytes == toy_pth.stat().st_size
    assert report.output_bytes == out.stat().st_size
    assert report.bytes_saved == report.source_bytes - report.output_bytes > 0
    import hashlib

    assert report.output_sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert report.source_sha256 == hashlib.sha256(toy_pth.read_bytes()).hexdigest()
    assert report.dtypes == {"F32": report.tensors}


def test_cli_human_and_json(tmp_path, toy_pth):
    out = tmp_path / "w.safetensors"
    proc = run_cli("sanitize", toy_pth, "-o", out)
    assert proc.exit_code == 0, proc.stderr
    assert "optimizer_state" in proc.stdout and "saved" in proc.stdout
    proc = run_cli("sanitize", toy_pth, "-o", out, "--force", "--json")
    assert proc.exit_code == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["dropped_keys"] == DROPPED
    assert report["names"] == 136 and report["output_bytes"] == out.stat().st_size
    assert report["bytes_saved"] == report["source_bytes"] - report["output_bytes"]


def test_sanitized_in_memory_matches_file(toy_pth, toy_dict):
    ck = load_sanitized(toy_pth)
    assert ck.names == list(toy_dict["network_weights"])
    assert all(t.is_contiguous() and t.device.type == "cpu" for t in ck.tensors.values())
    assert set(ck.aliases.values()) <= set(ck.tensors)
    assert not set(ck.aliases) & set(ck.tensors)
    assert list(ck.tensors) == [n for n in ck.names if n not in ck.aliases]  # first-occurrence order
    assert json.loads(safetensors_metadata(ck)["nnseal.aliases"]) == ck.aliases


# --- what real checkpoints contain -------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights(tmp_path, toy_dict, dtype):
    obj = dict(toy_dict)
    obj["network_weights"] = {k: v.to(dtype) for k, v in toy_dict["network_weights"].items()}
    out = tmp_path / "w.safetensors"
    report = sanitize_checkpoint(save(tmp_path, obj), out)
    assert_round_trip(obj["network_weights"], out)
    assert set(report.dtypes) == {"F16" if dtype == torch.float16 else "BF16"}


def test_special_float_values_are_bit_identical(tmp_path, toy_dict):
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 1e-45, 3.4e38])
    obj = dict(toy_dict, network_weights={"a": special, "b": special.to(torch.bfloat16)})
    out = tmp_path / "w.safetensors"
    sanitize_checkpoint(save(tmp_path, obj), out)
    assert_round_trip(obj["network_weights"], out)


def test_cuda_saved_storages(tmp_path, toy_dict):
    """Storages recorded as cuda:0 (training on a GPU) load through map_location='cpu'."""
    cpu_bytes = io.BytesIO()
    torch.save(toy_dict, cpu_bytes)

    def to_cuda(name: str, data: bytes) -> bytes:
        if not name.endswith("data.pkl"):
            return data
        # BINUNICODE 'cpu' (memoized once, then referenced) -> 'cuda:0'
        assert data.count(b"X\x03\x00\x00\x00cpu") == 1
        return data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")

    path = rewrite_zip(cpu_bytes.getvalue(), tmp_path / "cuda.pth", to_cuda)
    assert {r.location for r in inspect_checkpoint(path).storages.values()} == {"cuda:0"}
    if not torch.cuda.is_available():  # the rewrite is real: a plain load wants the GPU
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=False)  # trusted: the file was just built from toy_dict
    out = tmp_path / "w.safetensors"
    sanitize_checkpoint(path, out)
    assert_round_trip(toy_dict["network_weights"], out)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_wrapper_prefixes_are_stripped(tmp_path, toy_dict, prefix):
    weights = {prefix + k: v for k, v in toy_dict["network_weights"].items()}
    obj = dict(toy_dict, network_weights=weights)
    out = tmp_path / "w.safetensors"
    report = sanitize_checkpoint(save(tmp_path, obj), out)
    assert report.stripped_prefix == prefix
    assert_round_trip(weights, out, rename=lambda n: n[len(prefix):])


def test_prefix_kept_unless_every_name_has_it():
    mapping, stripped = strip_wrapper_prefixes(["module.conv.weight", "head.weight"])
    assert stripped is None
    assert mapping == {"module.conv.weight": "module.conv.weight", "head.weight": "head.weight"}
    # a network whose only parameter is literally named like the prefix keeps it
    assert strip_wrapper_prefixes(["module.", "module.x"])[1] is None


def test_tensors_sharing_storage_and_non_contiguous(tmp_path, toy_dict):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    weights = {
        "base": base,
        "same": base,  # alias: stored once
        "rows": base[1:3],  # a slice: same storage, another view
        "transposed": base.t(),  # non-contiguous
        "strided": base[:, ::2],
    }
    obj = dict(toy_dict, network_weights=weights)
    out = tmp_path / "w.safetensors"
    report = sanitize_checkpoint(save(tmp_path, obj), out)
    assert report.tensors == 4 and report.aliases == 1
    assert_round_trip(weights, out)
    assert set(load_file(str(out))) == {"base", "rows", "transposed", "strided"}


def test_numpy1_spelling_of_the_scalar_reconstructor(tmp_path, toy_dict):
    buf = io.BytesIO()
    torch.save(toy_dict, buf)

    def numpy1(name: str, data: bytes) -> bytes:
        if name.endswith("data.pkl"):
            assert b"cnumpy._core.multiarray\nscalar\n" in data
            data = data.replace(b"cnumpy._core.multiarray\nscalar\n", b"cnumpy.core.multiarray\nscalar\n")
        return data

    path = rewrite_zip(buf.getvalue(), tmp_path / "numpy1.pth", numpy1)
    assert "numpy.core.multiarray.scalar" in inspect_checkpoint(path).globals
    with pytest.raises(Exception, match=r"numpy\.core\.multiarray\.scalar"):
        torch.load(path, weights_only=True)  # torch alone refuses it ...
    out = tmp_path / "w.safetensors"
    sanitize_checkpoint(path, out)  # ... our allowlist takes it
    assert_round_trip(toy_dict["network_weights"], out)


def test_fold_all_and_missing_optional_keys(tmp_path, toy_dict):
    obj = {k: v for k, v in toy_dict.items() if k not in ("inference_allowed_mirroring_axes", "current_epoch")}
    obj["init_args"] = dict(toy_dict["init_args"], fold="all")
    ck = load_sanitized(save(tmp_path, obj))
    assert ck.meta == {"trainer_name": "nnUNetTrainer", "configuration": "2d", "fold": "all",
                       "inference_allowed_mirroring_axes": None, "current_epoch": None}


def test_real_plain_conv_unet_loads_strictly(tmp_path):
    """The weights given back (aliases included) load strictly into dynamic_network_architectures' class."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = toy_model.architecture(SPEC)
    net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                 SPEC.input_channels, len(toy_model.LABELS), allow_init=True, deep_supervision=True)
    state = net.state_dict()
    obj = toy_model.checkpoint_dict(SPEC, 1, seed=3)
    obj["network_weights"] = state
    out = tmp_path / "w.safetensors"
    report = sanitize_checkpoint(save(tmp_path, obj), out)
    assert report.names == len(state) and report.aliases > 0
    fresh = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                   SPEC.input_channels, len(toy_model.LABELS), allow_init=True, deep_supervision=True)
    fresh.load_state_dict(names_back(out), strict=True)
    for name, tensor in fresh.state_dict().items():
        assert same_bits(tensor, state[name]), name


# --- refusals of malformed content -------------------------------------------------------


@pytest.mark.parametrize("change, needle", [
    (lambda d: d.pop("network_weights"), "network_weights"),
    (lambda d: d.update(network_weights={"w": [1.0]}), "not a tensor"),
    (lambda d: d.update(trainer_name="os.system"), "trainer_name"),
    (lambda d: d.pop("trainer_name"), "trainer_name"),
    (lambda d: d["init_args"].update(configuration="../../etc"), "configuration"),
    (lambda d: d["init_args"].pop("configuration"), "configuration"),
    (lambda d: d["init_args"].update(fold=-1), "fold"),
    (lambda d: d.update(inference_allowed_mirroring_axes=("x",)), "mirroring"),
    (lambda d: d.update(network_weights={"__metadata__": torch.zeros(1)}), "reserved"),
    (lambda d: d.update(network_weights={"w": torch.zeros(2, dtype=torch.complex64)}), "complex64"),
])
def test_refuses_checkpoints_missing_what_inference_needs(tmp_path, toy_dict, change, needle):
    obj = dict(toy_dict, init_args=dict(toy_dict["init_args"]))
    change(obj)
    with pytest.raises(UnsafeCheckpoint, match=needle):
        load_sanitized(save(tmp_path, obj))


def test_refuses_a_tensor_list_instead_of_a_dict(tmp_path):
    with pytest.raises(UnsafeCheckpoint, match="not the dict"):
        load_sanitized(save(tmp_path, [torch.zeros(2)]))


def test_refuses_views_that_outgrow_the_file(tmp_path, toy_dict):
    """Non-overlapping views of one storage, each legal, whose copies together exceed the file."""
    base = torch.zeros(64 * 1024)
    weights = {f"v{i}": base[i:] for i in range(64)}
    with pytest.raises(UnsafeCheckpoint, match="more than the file"):
        load_sanitized(save(tmp_path, dict(toy_dict, network_weights=weights)))


def test_torch_refusal_is_one_clear_refusal(tmp_path):
    """A data.pkl that passes the static check but that torch's loader rejects ends as a one-line refusal."""
    # _rebuild_tensor_v2("x"): only allowlisted names, called with arguments it cannot take.
    data = (b"\x80\x02}q\x00(X\x0f\x00\x00\x00network_weightsq\x01}q\x02X\x01\x00\x00\x00w"
            b"ctorch._utils\n_rebuild_tensor_v2\nX\x01\x00\x00\x00x\x85Rsu.")
    pickle_path = tmp_path / "odd.pth"
    with zipfile.ZipFile(pickle_path, "w") as zf:
        zf.writestr("odd/data.pkl", data)
        zf.writestr("odd/version", b"3\n")
    with pytest.raises(UnsafeCheckpoint, match="weights_only=True"):
        load_sanitized(pickle_path)
    proc = run_cli("sanitize", pickle_path, "-o", tmp_path / "o.safetensors")
    assert_one_line_refusal(proc, "odd.pth", "weights_only=True")
    assert not (tmp_path / "o.safetensors").exists()


# --- atomicity ------------------------------------------------------------------------


def test_existing_output_needs_force(tmp_path, toy_pth):
    out = tmp_path / "w.safetensors"
    out.write_bytes(b"keep me")
    with pytest.raises(WouldOverwrite):
        sanitize_checkpoint(toy_pth, out)
    assert out.read_bytes() == b"keep me"
    proc = run_cli("sanitize", toy_pth, "-o", out)
    assert_one_line_refusal(proc, "exists", "--force")
    assert out.read_bytes() == b"keep me"
    sanitize_checkpoint(toy_pth, out, force=True)
    assert load_file(str(out))


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, MemoryError])
def test_interrupted_write_leaves_nothing(tmp_path, toy_pth, monkeypatch, interrupt):
    real = sanitize_mod.write_safetensors

    def dies_half_way(fileobj, tensors, metadata):
        class Boom:
            written = 0

            def write(self, data):
                fileobj.write(data)
                Boom.written += 1
                if Boom.written == 3:
                    raise interrupt()

        real(Boom(), tensors, metadata)

    monkeypatch.setattr(sanitize_mod, "write_safetensors", dies_half_way)
    with pytest.raises(interrupt):
        sanitize_checkpoint(toy_pth, tmp_path / "w.safetensors")
    assert sorted(os.listdir(tmp_path)) == [toy_pth.name]


# --- the stage stays light ----------------------------------------------------------------


def test_importing_sanitize_does_not_import_torch():
    code = ("import sys\n"
            "import nnseal.sanitize, nnseal.readers.torch_archive, nnseal.readers.pickle_stream\n"
            "import nnseal.sanitize.safetensors_io, nnseal.readers.allowlist, nnseal.sanitize.checkpoint\n"
            "import nnseal.sanitize.tensors, nnseal.commands.sanitize\n"
            "from nnseal.readers.allowlist import allowed_global_names\n"
            "from nnseal.readers.pickle_stream import scan_pickle\n"
            "from nnseal.readers.safetensors_header import read_header\n"
            "print(sorted(m for m in ('torch', 'numpy', 'safetensors') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr


# --- the static pickle walker ------------------------------------------------------------


class _Call:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_scan_lists_globals_of_every_protocol_without_running_them():
    import pickle

    from nnseal.readers.pickle_stream import scan_pickle

    payload = {"a": _Call(os.system, "exit 3"), "b": [_Call(eval, "1")], "c": _Call(os.system, "again")}
    for protocol in range(0, 6):
        scan = scan_pickle(pickle.dumps(payload, protocol=protocol))
        assert scan.globals == ["posix.system", "builtins.eval"], protocol
        assert scan.protocol == protocol
        assert not scan.anomalies


def test_scan_reads_inst_and_obj_globals():
    from nnseal.readers.pickle_stream import scan_pickle

    inst = b"(S'touch x'\nios\nsystem\n."  # protocol 0 INST
    assert scan_pickle(inst).globals == ["os.system"]
    obj = b"\x80\x01(cposix\nsystem\nX\x01\x00\x00\x00xo."  # OBJ with the class from GLOBAL
    assert scan_pickle(obj).globals == ["posix.system"]


def test_scan_reports_unresolvable_stack_global():
    from nnseal.readers.pickle_stream import scan_pickle

    # module name produced by a call result: a scanner cannot know it statically
    data = (b"\x80\x04\x8c\x08builtins\x8c\x03str\x93\x8c\x02os\x85R\x8c\x06system\x93\x8c\x01x\x85R.")
    scan = scan_pickle(data)
    assert "builtins.str" in scan.globals
    assert any("STACK_GLOBAL" in a for a in scan.anomalies)


@pytest.mark.parametrize("data, needle", [
    (b"\x80\x02cposix\nsystem\n", "STOP|exhausted|truncated"),
    (b"\x80\x02\xff.", "opcode|well-formed"),
    (b"\x80\x02R.", "underflow"),
    (b"", "empty"),
])
def test_scan_refuses_malformed_pickles(data, needle):
    from nnseal.errors import MalformedPickle
    from nnseal.readers.pickle_stream import scan_pickle

    with pytest.raises(MalformedPickle, match=needle):
        scan_pickle(data, source="x.pkl")


def test_scan_is_bounded():
    import pickle

    from nnseal.errors import MalformedPickle
    from nnseal.readers.pickle_stream import scan_pickle

    data = pickle.dumps(list(range(1000)), protocol=2)
    with pytest.raises(MalformedPickle, match="opcodes"):
        scan_pickle(data, max_ops=100)
    with pytest.raises(MalformedPickle, match="scan limit"):
        scan_pickle(data, max_bytes=100)
    assert any("after the pickle" in a for a in scan_pickle(data + b"junk").anomalies)


def test_scan_follows_persistent_storage_ids(toy_pth):
    from nnseal.readers.pickle_stream import GlobalRef, scan_pickle

    with zipfile.ZipFile(toy_pth) as zf:
        scan = scan_pickle(zf.read("checkpoint_final/data.pkl"))
    first = scan.persistent_ids[0]
    assert first[0] == "storage" and first[1] == GlobalRef("torch.FloatStorage") and first[3] == "cpu"
    with zipfile.ZipFile(toy_pth) as zf:
        sizes = {n: zf.getinfo(n).file_size for n in zf.namelist()}
    for _, _kind, key, _, numel in scan.persistent_ids:
        assert sizes[f"checkpoint_final/data/{key}"] == numel * 4


# --- allowlist and the facts it rests on ---------------------------------------------------


def test_static_allowlist_matches_installed_torch():
    from torch._weights_only_unpickler import _get_allowed_globals

    from nnseal.readers.allowlist import NNUNET_EXTRA_GLOBALS, TORCH_DEFAULT_GLOBALS, allowed_global_names

    assert TORCH_DEFAULT_GLOBALS == frozenset(_get_allowed_globals())
    assert allowed_global_names() == TORCH_DEFAULT_GLOBALS | NNUNET_EXTRA_GLOBALS
    assert not any(name.startswith(("os.", "posix.", "builtins.eval", "subprocess")) for name in allowed_global_names())


def test_facts_torch_default_refuses_nnunet_checkpoints(toy_pth):
    """FACTS.md: weights_only=True alone refuses; get_unsafe_globals_in_checkpoint names only two globals."""
    with pytest.raises(Exception, match=r"numpy\._core\.multiarray\.scalar"):
        torch.load(toy_pth, weights_only=True)
    assert sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(toy_pth))) == [
        "numpy._core.multiarray.scalar", "numpy.dtype"]
    # ... and those two are not enough: the dtype class is needed at BUILD time
    import numpy
    from numpy._core.multiarray import scalar

    with torch.serialization.safe_globals([scalar, numpy.dtype]):
        with pytest.raises(Exception, match="Float64DType|Float32DType"):
            torch.load(toy_pth, weights_only=True)


def test_allowlist_is_scoped_to_the_load(toy_pth):
    before = set(torch.serialization.get_safe_globals())  # torch itself registers some on import
    load_sanitized(toy_pth)
    assert set(torch.serialization.get_safe_globals()) == before
    assert not any("numpy" in str(g) for g in before)


def test_globals_torch_registers_at_import_are_still_refused(tmp_path, canary):
    """torch 2.14 adds builtins exceptions and traceback classes to its allowlist on import;
    the static check keeps to allowed_global_names() and refuses them before torch loads."""
    import pickle

    from hostile_checkpoints import checkpoint_with, write_torch_zip

    registered = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}"
                  for g in torch.serialization.get_safe_globals()}
    assert "builtins.SystemExit" in registered
    path = write_torch_zip(tmp_path / "exit.pth", pickle.dumps(checkpoint_with(SystemExit(3)), protocol=2))
    with pytest.raises(UnsafeCheckpoint, match="SystemExit"):
        load_sanitized(path)


# --- tensor geometry ---------------------------------------------------------------------


@pytest.mark.parametrize("shape, stride, offset, storage_bytes, needle", [
    ((4, 6), (6, 1), 0, 96, None),
    ((6, 4), (1, 6), 0, 96, None),  # transposed
    ((2, 6), (6, 1), 12, 96, None),  # a slice at the end
    ((0, 5), (5, 1), 0, 0, None),  # empty
    ((3, 1), (1, 0), 0, 12, None),  # stride 0 on a size-1 dim is harmless
    ((1 << 17, 1 << 17), (0, 0), 0, 4, "stride-0"),
    ((3, 3), (1, 1), 0, 20, "overlapping"),
    ((4, 6), (6, 1), 1, 96, "out of bounds"),
    ((5,), (1,), 0, 16, "out of bounds"),
    ((2,), (1,), -1, 16, "out of bounds"),
])
def test_view_geometry(shape, stride, offset, storage_bytes, needle):
    from nnseal.sanitize.tensors import view_problem

    problem = view_problem(shape, stride, offset, 4, storage_bytes)
    if needle is None:
        assert problem is None
    else:
        assert problem is not None and needle in problem


def test_geometry_check_agrees_with_torch_on_real_views():
    from nnseal.sanitize.tensors import check_tensor

    base = torch.arange(24.0).reshape(4, 6)
    for view in (base, base.t(), base[1:3], base[:, ::2], base[2:], base.unsqueeze(0)):
        assert check_tensor("v", view, "x") == view.numel() * 4
    with pytest.raises(UnsafeCheckpoint, match="stride-0"):
        check_tensor("v", torch.zeros(1).expand(3, 3), "x")
    with pytest.raises(UnsafeCheckpoint, match="overlapping"):
        check_tensor("v", base.reshape(-1).as_strided((3, 3), (1, 1)), "x")


def test_a_file_swapped_after_the_checks_is_not_what_gets_loaded(tmp_path, toy_pth, toy_dict, monkeypatch):
    """sanitize opens the checkpoint once: replacing the path between the static checks and
    torch.load cannot make torch load bytes nnseal did not check."""
    swapped = dict(toy_dict)
    swapped["network_weights"] = {k: torch.full_like(v, 666.0) if v.is_floating_point() else v
                                  for k, v in toy_dict["network_weights"].items()}
    other = tmp_path / "other.pth"
    torch.save(swapped, other)
    real_check = sanitize_mod.check_torch_reads_the_same

    def check_then_swap(path, info):
        real_check(path, info)
        os.replace(other, toy_pth)  # the attacker's moment: after the checks, before the load

    monkeypatch.setattr(sanitize_mod, "check_torch_reads_the_same", check_then_swap)
    ck = load_sanitized(toy_pth)
    assert not any((t == 666.0).all() for t in ck.tensors.values() if t.is_floating_point() and t.numel())
    name = next(k for k, v in toy_dict["network_weights"].items() if v.is_floating_point())
    assert torch.equal(ck.tensors[name], toy_dict["network_weights"][name])
