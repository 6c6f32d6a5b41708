"""Every reading of a pickle in nnseal agrees with CPython's C unpickler, the one pickle.load and
torch.load run (review finding 1): argument decoding, where a pickle stops, what it imports.

The reference is the real C unpickler with a find_class that records and refuses every global
(tests/c_unpickler.py): nothing a generated input asks for is imported or run.
"""

from __future__ import annotations

from pathlib import Path

import hostile_scan_inputs as inputs
import pytest
from c_unpickler import c_reading
from helpers import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnseal.errors import MalformedPickle
from nnseal.readers.pickle_ops import UNREPRESENTED, PickleDecodeError, PickleTruncated, iter_ops
from nnseal.readers.pickle_stream import normalize_global, scan_pickle
from nnseal.scan.classify import EMPTY_ZIP_MAGIC, TORCH_ZIP_MAGIC, could_import, readings, sniff

# --- the review's regression tests -------------------------------------------------------------------------


def _base0_int_pickle(canary: Path) -> bytes:
    return b"I0x0\n0" + f"cos\nsystem\n(S'touch {canary}'\ntR.".encode()


@pytest.mark.parametrize("relative", [
    "notes.txt",  # the issue's own example name
    "Dataset001_X/nnUNetTrainer__nnUNetPlans__3d_fullres/fold_0/checkpoint_final.model",  # in a fold folder
])
def test_scan_flags_pickle_with_base0_int_first_opcode(tmp_path, canary, relative):
    from nnseal.scan import scan_paths

    path = tmp_path / "tree" / relative
    path.parent.mkdir(parents=True)
    path.write_bytes(_base0_int_pickle(canary))
    report = scan_paths([tmp_path / "tree"])
    assert [s.kind for s in report.scanned] != ["other"], "pickle.load runs this file, scan calls it 'other'"
    assert any(f.level == "unsafe" for f in report.findings), [str(f) for f in report.findings]
    assert not canary.exists()


def test_classifier_agrees_with_the_c_unpickler_on_base0_ints():
    for head in (b"I0x0\n.", b"L0x10L\n.", b"I0b1\n.", b"I0o7\n."):
        assert sniff(head, len(head)) == "pickle", head


# --- the review's repro, through the CLI --------------------------------------------------------------------

def test_cli_reports_every_repro_file_unsafe(tmp_path, canary):
    folder = tmp_path / "rv"
    fold = folder / "Dataset001_X" / "T__P__3d" / "fold_0"
    fold.mkdir(parents=True)
    repro = _base0_int_pickle(canary)
    paths = [folder / "notes.txt", fold / "checkpoint_final.model", fold / "postprocessing.dat"]
    for path in paths:
        path.write_bytes(repro)
    assert c_reading(repro).imported == ("os", "system")  # the loader really gets to os.system
    proc = run_cli("scan", folder)
    assert proc.exit_code == 1, proc.stdout
    *lines, summary = proc.stdout.splitlines()
    assert summary.startswith("3 files scanned")
    assert all(line.startswith("UNSAFE ") for line in lines)  # one line per finding
    for path in paths:
        assert any(f"{path}: dangerous-global: " in line and "os.system" in line for line in lines), lines
    assert not canary.exists()


# --- imports and the calls on what they return -------------------------------------------------------------

@pytest.mark.parametrize("head", [
    b"cos\nenviron\nS'K'\nS'V'\ns\xff",  # os.environ["K"] = "V" (SETITEM), then junk
    b"cos\nenviron\n(S'K'\nS'V'\nu\xff",  # SETITEMS
    b"csys\npath\nS'/tmp/x'\na\xff",  # sys.path.append (APPEND)
    b"csys\npath\n(S'/tmp/x'\ne\xff",  # APPENDS
    b"cantigravity\nfly\n\xff",  # the import alone runs the module
    b"cat\nmeow\n",  # GLOBAL at.meow: an import, whatever module `at` turns out to be
    b"(iantigravity\nfly\n\xff",  # INST
])
def test_an_import_is_a_pickle_reading(head):
    assert c_reading(head).outcome == "import"
    assert sniff(head, len(head)) == "pickle"


@pytest.mark.parametrize("head", [
    b"c os\nenviron\n",  # " os" is no module: __import__ refuses it
    b"copyright 2024\nAll rights reserved.\n",  # prose: GLOBAL "opyright 2024"
    b"class Model:\n    pass\n",  # source: GLOBAL "lass Model:"
])
def test_an_import_of_no_installable_module_is_text(head):
    c = c_reading(head)
    assert c.outcome == "import" and not could_import(c.imported[0])
    assert sniff(head, len(head)) == "other"


@pytest.mark.parametrize("head", [
    b"import os\nimport sys\n",  # INST without a MARK: the C unpickler refuses at once
    b"Install with pip\n",  # INT with text: refused
    b"Fix the float\n",  # FLOAT with text: refused
    b"I1 000\n.",  # strtol stops at the space, PyLong_FromString refuses it
    b"F1e999\n.",  # PyOS_string_to_double refuses an overflow (float() says inf)
    b"S'\n.",  # STRING needs two quotes (genops takes one)
    b"p-1\nI1\n.",  # negative PUT
    b"\x80\x02\x82\x00.",  # EXT code 0
])
def test_what_the_c_unpickler_refuses_at_once_is_text(head):
    assert c_reading(head).outcome != "import"
    assert sniff(head, len(head)) == "other"


def test_could_import_names():
    assert could_import("os") and could_import("os.path") and could_import("a-b") and could_import("x.y z")
    assert not could_import("") and not could_import(" os") and not could_import(".x") and not could_import("a b.c")


# --- the argument decoder against _pickle.c's load_* functions --------------------------------------------

ATOMS = [b"0", b"1", b"7", b"8", b"9", b"x", b"X", b"o", b"O", b"b", b"_", b" ", b"\t", b"\x0b", b"\x0c", b"\r",
         b"\x1c", b"+", b"-", b"\0", b"L", b"a", b"f", b"e", b"E", b".", b"inf", b"INFINITY", b"nan", b"in",
         b"\xc3\xa9", b"\xff", b"'", b'"', b"\\", b"\\x4", b"\\x41", b"\\u00e9", b"\\q", b"9" * 25, b"0x" + b"f" * 17]
ARGS = st.lists(st.sampled_from(ATOMS), max_size=6).map(b"".join)


def _same(ours, theirs) -> bool:
    if ours is UNREPRESENTED:
        return isinstance(theirs, int)
    if isinstance(ours, float) and ours != ours:
        return theirs != theirs
    return type(ours) is type(theirs) and ours == theirs


@settings(max_examples=600, deadline=None, derandomize=True)
@given(st.sampled_from(b"ILFSVPgp"), ARGS)
def test_line_arguments_decode_like_the_c_unpickler(opcode, arg):
    # GET and PUT need something in the memo and on the stack; PERSID's id comes back as the value
    prefix = b"I5\np0\n" if opcode in b"gp" else b""
    data = prefix + bytes([opcode]) + arg + b"\n."
    c = c_reading(data)
    try:
        ops = list(iter_ops(data))
    except PickleDecodeError as err:
        memo_miss = c.outcome == "error" and "Memo value not found" in c.error
        assert c.outcome == "error" and not memo_miss, f"{data!r}: nnseal refuses ({err}), C reads {c}"
        return
    op, value, _, _ = ops[-2]
    if c.outcome == "error" and "Memo value not found" in c.error:
        assert value == int(c.error.split("index ")[1].rstrip("'"))  # C read the same index, then missed
        return
    assert c.outcome == "stop", f"{data!r}: nnseal reads {value!r}, C refuses: {c.error}"
    assert ops[-1][3] == c.position
    if opcode in b"gp":
        assert value == 0 or opcode == ord("p")  # the only memo slot GET can find; PUT's value is its index
        return
    if opcode in b"SV" and any(ord(ch) > 127 for ch in c.value):
        return  # the value of a non-ASCII STRING depends on the loader's encoding
    assert _same(value, c.value), (data, value, c.value)


# --- the differential test: where nnseal and the C unpickler stop, and what they import -------------------

def _line(op: bytes) -> st.SearchStrategy[bytes]:
    return ARGS.map(lambda arg: op + arg + b"\n")


NAMES = st.sampled_from([b"os", b"system", b"environ", b" os", b"", b"a b", b"\xc3\xa9t\xc3\xa9", b"\xff", b"o\\x73",
                         b"__builtin__", b"eval", b"copy_reg", b"x.y", b"sys"])
PIECES = st.one_of(
    _line(b"I"), _line(b"L"), _line(b"F"), _line(b"S"), _line(b"V"), _line(b"P"), _line(b"g"), _line(b"p"),
    st.tuples(NAMES, NAMES).map(lambda pair: b"c" + pair[0] + b"\n" + pair[1] + b"\n"),
    st.tuples(NAMES, NAMES).map(lambda pair: b"(i" + pair[0] + b"\n" + pair[1] + b"\n"),
    st.tuples(st.sampled_from([b"U", b"C", b"\x8c", b"\x8a"]), st.integers(0, 6), st.binary(max_size=5))
    .map(lambda t: t[0] + bytes([t[1]]) + t[2]),
    st.tuples(st.sampled_from([b"T", b"X", b"B", b"\x8b"]), st.integers(-2, 6), st.binary(max_size=5))
    .map(lambda t: t[0] + t[1].to_bytes(4, "little", signed=True) + t[2]),
    st.tuples(st.sampled_from([b"\x80", b"\x82", b"\x83", b"\x84", b"\x95", b"K", b"h", b"q", b"J", b"G"]),
              st.binary(min_size=0, max_size=9)).map(b"".join),
    st.sampled_from([b"(", b"0", b"1", b"2", b".", b"N", b"}", b"]", b")", b"t", b"s", b"u", b"a", b"e", b"b",
                     b"R", b"\x93", b"\x94", b"\x88", b"\x85", b"\x8c\x02os\x8c\x06system\x93"]),
    st.binary(min_size=1, max_size=3),
)

# Mostly balanced streams (each piece popped again), ending in a value or an import, so that the
# C unpickler often gets to the end; some not popped, so that stack errors come up too.
BODY = st.lists(st.tuples(PIECES, st.sampled_from([b"0", b"0", b""])).map(b"".join), max_size=6).map(b"".join)
TAILS = st.sampled_from([b"N.", b"cos\nsystem\n.", b"\x8c\x02os\x8c\x06system\x93.", b"(S'x'\nios\nsystem\n.",
                         b"cat\nmeow\n", b"", b"\x80\x02\x82\x01.", b"I0x0\n."])
STREAMS = st.tuples(BODY, TAILS).map(b"".join).filter(bool)


@settings(max_examples=1500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(STREAMS)
def test_nnseal_reads_where_the_c_unpickler_reads(data):
    c = c_reading(data)
    zip_magic = data.startswith((TORCH_ZIP_MAGIC, EMPTY_ZIP_MAGIC))  # torch.load opens those as zips
    if c.outcome == "stop":
        *_, (op, _, _, after) = iter_ops(data)
        assert op.name == "STOP" and after == c.position, data
        assert zip_magic or "pickle" in readings(data, len(data)), data
    elif c.outcome == "import" and could_import(c.imported[0]):
        assert zip_magic or "pickle" in readings(data, len(data)), (data, c.imported)
        try:
            scan = scan_pickle(data)
        except MalformedPickle:
            return  # reported unsafe as malformed-pickle
        assert normalize_global(*c.imported) in scan.globals, (data, c.imported, scan.globals)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(STREAMS, st.integers(1, 40))
def test_a_cut_head_is_a_pickle_when_the_loader_reads_on(data, cut):
    """The sniffer sees only the file's first bytes: running out of them inside an argument is no refusal."""
    c = c_reading(data)
    if c.outcome in ("stop", "import") and cut < len(data) and not data.startswith((TORCH_ZIP_MAGIC, b"\x93")):
        if c.outcome == "import" and not could_import(c.imported[0]):
            return
        assert "pickle" in readings(data[:cut], len(data)), (data, cut)


def test_truncated_and_refused_are_told_apart():
    with pytest.raises(PickleTruncated):
        list(iter_ops(b"I12"))
    with pytest.raises(PickleDecodeError) as refused:
        list(iter_ops(b"I1 2\n."))
    assert not isinstance(refused.value, PickleTruncated)


def test_hostile_generators_get_to_an_import_in_the_c_unpickler(tmp_path, canary):
    def folder(make) -> Path:
        path = tmp_path / make.__name__
        path.mkdir()
        return path

    for make in (inputs.make_pickle_base0_int_first, inputs.make_pickle_base0_long_first,
                 inputs.make_pickle_nul_terminated_int_first, inputs.make_pickle_float_with_nul_first):
        assert c_reading(make(folder(make), canary).read_bytes()).imported == ("os", "system")
    for make in (inputs.make_pickle_sets_environ, inputs.make_pickle_import_only):
        assert c_reading(make(folder(make)).read_bytes()).outcome == "import"
