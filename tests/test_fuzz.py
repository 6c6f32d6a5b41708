"""Short fuzz runs of every parser of untrusted input (the long runs are fuzz/*.py, with atheris).

Inputs are real artifacts (a signed package, a torch.save checkpoint, its data.pkl,
model.sig, safetensors and JSON files), mutated byte-wise, plus structured inputs
that pass the outer checks and reach the inner ones. For every input the parser must
return or raise an NnsealError (``fuzz.targets.run_target`` lets anything else
through, which fails the test), finish quickly, and allocate in proportion to it.
"""

from __future__ import annotations

import json
import pickletools
import struct
import subprocess
import sys
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import hostile_zips as hz
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from fuzz.seeds import SeedSources, seeds_from  # noqa: E402
from fuzz.targets import TARGET_NAMES, run_target, signed_bundle  # noqa: E402

# Far above what any seed-sized input takes (milliseconds), far below a hang.
PER_INPUT_SECONDS = 5.0
# "Out of proportion": more than this constant plus this many bytes per input byte.
MEMORY_CONSTANT = 64 << 20
MEMORY_PER_INPUT_BYTE = 64

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def seeds(toy_package_session, toy_results_session, tmp_path_factory) -> dict[str, list[bytes]]:
    from nnseal import toy_model

    model = toy_results_session / toy_model.DATASET / toy_model.model_folder_name("2d")
    sources = SeedSources(toy_package_session, model / "fold_0" / "checkpoint_final.pth", model)
    built = seeds_from(sources, tmp_path_factory.mktemp("fuzz_seeds"))
    return {target: list(by_name.values()) for target, by_name in built.items()}


def run_timed(target: str, data: bytes) -> bool:
    """run_target, failing the test if one input takes longer than PER_INPUT_SECONDS."""
    started = time.perf_counter()
    accepted = run_target(target, data)
    elapsed = time.perf_counter() - started
    assert elapsed < PER_INPUT_SECONDS, f"{target}: {len(data)}-byte input took {elapsed:.1f} s"
    return accepted


# --- byte-level mutation of real inputs ------------------------------------------------------

_BOUNDARY_INTS = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 32, (1 << 63) - 1, (1 << 64) - 1]


@st.composite
def mutated(draw, originals: list[bytes]) -> bytes:
    """A seed after 1-4 of: byte change, boundary integer written over a field, truncation,
    insertion, deletion, a range copied elsewhere, a splice with another seed."""
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.sampled_from(["byte", "int", "truncate", "insert", "delete", "copy", "splice"]))
        if op == "byte" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "int":
            width = draw(st.sampled_from([2, 4, 8]))
            value = draw(st.sampled_from(_BOUNDARY_INTS)) % (1 << (8 * width))
            data[pos:pos + width] = value.to_bytes(width, "little")
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "copy" and data:
            start = draw(st.integers(0, len(data) - 1))
            data[pos:pos] = data[start:start + draw(st.integers(1, 256))]
        elif op == "splice":
            other = draw(st.sampled_from(originals))
            data[pos:] = other[draw(st.integers(0, max(len(other) - 1, 0))):]
    return bytes(data)


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_seeds_are_accepted(seeds, target):
    # Mutations of inputs that pass reach the inner checks; a refused seed would fuzz only the outer ones.
    assert seeds[target]
    for data in seeds[target]:
        assert run_timed(target, data) is True


@pytest.mark.parametrize("target", TARGET_NAMES)
@FUZZ
@given(data=st.data())
def test_mutated_seeds_raise_only_nnseal_errors(seeds, target, data):
    run_timed(target, data.draw(mutated(seeds[target]), label="input"))


@pytest.mark.parametrize("target", TARGET_NAMES)
@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_memory_stays_in_proportion_to_the_input(seeds, target, data):
    payload = data.draw(mutated(seeds[target]), label="input")
    tracemalloc.start()
    try:
        run_timed(target, payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_CONSTANT + MEMORY_PER_INPUT_BYTE * len(payload), (target, len(payload), peak)


# --- structured inputs: past the outer checks ------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70),
                         st.floats(allow_nan=False), st.text(max_size=20),
                         st.sampled_from(["", "/home/alice/x", "C:\\Users\\bob", "~/x", "sha256", "files",
                                          "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                                          "torch.nn.modules.conv.Conv3d", "a" * 64]))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)


@st.composite
def replace_subtree(draw, doc: object) -> object:
    """``doc`` with one value (at any depth) replaced by arbitrary JSON, or one key added or removed."""
    if not isinstance(doc, (dict, list)) or not doc or draw(st.integers(0, 4)) == 0:
        return draw(json_values)
    if isinstance(doc, list):
        index = draw(st.integers(0, len(doc) - 1))
        return doc[:index] + [draw(replace_subtree(doc[index]))] + doc[index + 1:]
    out = dict(doc)
    key = draw(st.sampled_from(sorted(out)))
    action = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
    if action == "remove":
        del out[key]
    elif action == "add":
        out[draw(st.text(max_size=10))] = draw(json_values)
    else:
        out[key] = draw(replace_subtree(out[key]))
    return out


@FUZZ
@given(data=st.data())
def test_json_files_with_a_subtree_replaced(seeds, data):
    doc = json.loads(data.draw(st.sampled_from(seeds["json"])))
    changed = data.draw(replace_subtree(doc))
    run_timed("json", json.dumps(changed).encode())


@FUZZ
@given(data=st.data())
def test_signed_statements_with_a_subtree_replaced(seeds, data):
    # The signature target signs its input as a statement: this reaches every statement check.
    statement = json.loads(seeds["signature"][1])
    run_timed("signature", json.dumps(data.draw(replace_subtree(statement))).encode())


@FUZZ
@given(data=st.data())
def test_bundles_with_a_subtree_replaced(seeds, data):
    bundle = json.loads(seeds["signature"][0])
    run_timed("signature", json.dumps(data.draw(replace_subtree(bundle))).encode())


def test_signature_target_verifies_what_it_signs(seeds):
    # Without this, a broken signed_bundle would leave the statement parser unfuzzed.
    from cryptography.hazmat.primitives.asymmetric import ec

    from nnseal.verify.signature import verify_bundle

    key = ec.generate_private_key(ec.SECP256R1())
    manifest = verify_bundle(signed_bundle(seeds["signature"][1], key), [key.public_key()])
    assert manifest.verified and manifest.resources


_DTYPES = ["F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "F4", "f32", ""]


@st.composite
def safetensors_files(draw) -> bytes:
    """A header of tensors with arbitrary dtype/shape/offsets and metadata, then arbitrary data."""
    header: dict[str, object] = {}
    offset = 0
    for name in draw(st.lists(st.text(max_size=8), max_size=4, unique=True)):
        shape = draw(st.lists(st.one_of(st.integers(0, 8), st.sampled_from(_BOUNDARY_INTS),
                                        st.integers(-3, -1), st.integers(1 << 64, 1 << 200)), max_size=5))
        size = draw(st.integers(0, 64))
        dtype = draw(st.one_of(st.sampled_from(_DTYPES), st.sampled_from(_DTYPES), json_values))
        spec = {"dtype": dtype, "shape": shape,
                "data_offsets": draw(st.sampled_from([[offset, offset + size], [0, size], [offset + 1, offset]]))}
        header[name] = draw(replace_subtree(spec)) if draw(st.integers(0, 3)) == 0 else spec
        offset += size
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.one_of(st.dictionaries(st.text(max_size=5), st.text(max_size=5)), json_values))
    text = json.dumps(header).encode()
    text += b" " * draw(st.integers(0, 7))
    declared = draw(st.sampled_from([len(text), len(text) - 1, len(text) + 1, 0, (1 << 64) - 1]))
    return struct.pack("<Q", max(declared, 0) % (1 << 64)) + text + draw(st.binary(max_size=offset + 8))


@FUZZ
@given(safetensors_files())
def test_safetensors_headers_with_arbitrary_fields(raw):
    run_timed("safetensors", raw)


# Pickle fragments: opcodes torch.save uses, the ones it never does, memo and stack tricks.
_PICKLE_FRAGMENTS = [
    b"N", b"(", b"t", b"\x85", b"\x86", b"\x87", b")", b"]", b"}", b"e", b"a", b"s", b"u", b"b", b"R", b"\x81",
    b"0", b"1", b"2", b"\x94", b"q\x00", b"q\x01", b"h\x00", b"h\x01", b"h\x07", b"j\x00\x00\x00\x00",
    b"K\x05", b"J\xff\xff\xff\xff", b"\x8a\x01\xff", b"X\x07\x00\x00\x00storage", b"X\x01\x00\x00\x000",
    b"X\x03\x00\x00\x00cpu", b"\x8c\x05torch\x94", b"\x8c\x0bFloatStorage\x94", b"\x93", b"Q",
    b"ctorch\nFloatStorage\n", b"c__builtin__\neval\n", b"cos\nsystem\n", b"\x80\x02", b"\x80\x05",
    b"\x95\x10\x00\x00\x00\x00\x00\x00\x00", b"P0\n", b"\x88", b"\x89", b"G?\xf0\x00\x00\x00\x00\x00\x00",
    b"\x8f", b"\x90", b"\x91", b"i__main__\nX\n", b"o", b"\x92", b"C\x02ab", b"I123\n",
]


@st.composite
def pickles(draw) -> bytes:
    body = b"".join(draw(st.lists(st.sampled_from(_PICKLE_FRAGMENTS), max_size=60)))
    return body + draw(st.sampled_from([b".", b"", b".junk"]))


@FUZZ
@given(pickles())
def test_pickles_built_from_opcode_fragments(raw):
    run_timed("pickle", raw)


@FUZZ
@given(pickles())
def test_checkpoints_whose_data_pkl_is_built_from_fragments(tmp_path_factory, raw):
    from hostile_checkpoints import write_torch_zip

    path = write_torch_zip(tmp_path_factory.getbasetemp() / "structured.pth", raw, storages={"0": b"\0" * 4})
    run_timed("checkpoint_archive", path.read_bytes())


_U32_BOUNDARIES = [v for v in _BOUNDARY_INTS if v <= 0xFFFFFFFF]
_ZIP_NAMES = [b"Dataset042_Toy/a/plans.json", b"a", b"a/", b"A", b"a/b", b"../x", b"/x", b"x\\y", b"\xff",
              b"", b"a" * 300, "é".encode(), b"model.sig", b"nnseal-card.json"]


@st.composite
def raw_zip_entries(draw) -> list[hz.RawEntry]:
    """Entries whose every header field may disagree with the data and with each other."""
    entries = []
    count = draw(st.integers(1, 3))
    for index in range(count):
        content = draw(st.binary(max_size=64))
        entry = hz.raw_entry(draw(st.sampled_from(_ZIP_NAMES)), content, compress=draw(st.booleans()))
        changes = draw(st.fixed_dictionaries({}, optional={
            "size": st.sampled_from(_U32_BOUNDARIES),
            "crc": st.integers(0, 0xFFFFFFFF),
            "method": st.sampled_from([0, 8, 12, 99]),
            "flags": st.sampled_from([0, 0x1, 0x8, 0x20, 0x40, 0x800, 0x806, 0xFFFF]),
            "create_system": st.sampled_from([0, 3, 10]),
            "external_attr": st.sampled_from([0, 0x10, hz.S_IFREG_0644 << 16, hz.S_IFLNK_0777 << 16,
                                              0o040755 << 16, 0o010644 << 16]),
            "local_name": st.sampled_from(_ZIP_NAMES),
            "alias_of": st.integers(0, max(index - 1, 0)) if index else st.none(),
            "local_fields": st.tuples(*[st.sampled_from(_U32_BOUNDARIES)] * 3),
            "local_extra": st.sampled_from([b"", b"\x01\x00\x10\x00" + b"\xff" * 16, b"\x01\x00", b"up\x01\x00x"]),
            "central_extra": st.sampled_from([b"", b"\x01\x00\x08\x00" + b"\x00" * 8, b"\x01\x00\x1c\x00" + b"\0" * 28,
                                              b"\x00\x00\x00\x00\x00\x00\x00\x00"]),
            "trailer": st.sampled_from([b"", b"PK\x07\x08" + b"\0" * 12, b"hidden", b"\0" * 20]),
        }))
        entries.append(replace(entry, **changes))
    return entries


@FUZZ
@given(entries=raw_zip_entries(), tail=st.sampled_from([b"", b"x", b"PK\x05\x06" + b"\0" * 18]))
def test_zips_with_arbitrary_header_fields(tmp_path_factory, entries, tail):
    path = tmp_path_factory.getbasetemp() / "structured.zip"
    hz.write_raw_zip(path, entries)
    run_timed("safezip", path.read_bytes() + tail)


# --- memory on a real bomb, and the torch-free promise ---------------------------------------


def test_streaming_a_deflated_entry_keeps_memory_flat(tmp_path):
    # 32 MiB that deflates ~500:1: streamed and hashed in 1 MiB pieces, never held whole.
    content = (b"\0" * 500 + b"\1") * (32 * 1024 * 1024 // 501)
    path = hz.write_raw_zip(tmp_path / "big.zip", [hz.raw_entry("model/w.bin", content, compress=True, level=9)])
    assert path.stat().st_size < len(content) // 200
    from nnseal.readers.zip_archive import open_zip

    tracemalloc.start()
    try:
        with open_zip(path) as archive:
            digests = archive.sha256_all()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(digests) == 1
    assert peak < 8 << 20, peak


def test_targets_do_not_import_torch():
    code = ("import sys; from fuzz.targets import TARGET_NAMES, run_target\n"
            "for name in TARGET_NAMES: run_target(name, b'{}')\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_atheris_defaults_add_limits_but_keep_given_flags(tmp_path):
    from fuzz.atheris_harness import libfuzzer_argv

    argv = libfuzzer_argv("safezip", ["fuzz_safezip.py", "-timeout=3", str(tmp_path)])
    assert "-timeout=3" in argv and "-timeout=10" not in argv
    assert any(arg.startswith("-rss_limit_mb=") for arg in argv)
    assert argv[-1] == str(tmp_path)


def test_pickle_fragments_are_real_opcodes():
    # A fragment that genops cannot read would only test the "malformed" refusal.
    for fragment in _PICKLE_FRAGMENTS:
        ops = list(pickletools.genops(fragment + b"."))
        assert ops[-1][0].name == "STOP", fragment


def test_zip_builder_round_trips(tmp_path):
    # The structured zips start from honest entries: those must open, or every case tests one refusal.
    path = hz.write_raw_zip(tmp_path / "ok.zip", [hz.raw_entry(b"a/b.json", b"{}", compress=True)])
    assert run_target("safezip", path.read_bytes()) is True
