"""JSON sanitizing of plans.json, dataset.json and dataset_fingerprint.json.

Hostile inputs are built by the generators below, one per attack, named after it.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnseal import toy_model
from nnseal.errors import EXIT_REFUSED, InvalidArgument, UnsafeJson
from nnseal.sanitize import jsonclean
from nnseal.sanitize.jsonclean import (
    REDACTED,
    CleanedJson,
    check_plans_architecture,
    clean_dataset_json,
    clean_fingerprint_json,
    clean_json_file,
    clean_plans_json,
    find_paths,
    load_json_bytes,
)

SPEC = toy_model.ToySpec()
CFG = SPEC.configuration
ARCH = f"/configurations/{CFG}/architecture"


def toy_plans() -> dict:
    return toy_model.plans_json(SPEC)


def toy_dataset() -> dict:
    return toy_model.dataset_json(SPEC)


def toy_fingerprint() -> dict:
    return toy_model.fingerprint_json(SPEC)


def as_bytes(obj) -> bytes:
    return json.dumps(obj, indent=4).encode()


# --- hostile generators ------------------------------------------------------


def plans_with_network_class(name) -> dict:
    plans = toy_plans()
    plans["configurations"][CFG]["architecture"]["network_class_name"] = name
    return plans


def plans_with_layer(key: str, value) -> dict:
    plans = toy_plans()
    plans["configurations"][CFG]["architecture"]["arch_kwargs"][key] = value
    return plans


def plans_with_extra_import(key: str, value) -> dict:
    """A new arch_kwargs entry that _kw_requires_import tells nnU-Net to pydoc.locate."""
    plans = plans_with_layer(key, value)
    plans["configurations"][CFG]["architecture"]["_kw_requires_import"].append(key)
    return plans


def plans_with_config_value(key: str, value) -> dict:
    plans = toy_plans()
    plans["configurations"][CFG][key] = value
    return plans


def plans_with_top_value(key: str, value) -> dict:
    plans = toy_plans()
    plans[key] = value
    return plans


def depth_bomb(depth: int, opener: str = "[", closer: str = "]") -> bytes:
    return (opener * depth + closer * depth).encode()


def object_depth_bomb(depth: int) -> bytes:
    return ('{"a":' * depth + "1" + "}" * depth).encode()


def huge_file(size: int) -> bytes:
    """Valid JSON of exactly ``size`` bytes, just big: one long list of zeros."""
    body = b"0," * ((size - 3) // 2)
    return b"[" + body + b"0" + b" " * (size - 3 - len(body)) + b"]"


def duplicate_key_plans() -> bytes:
    """Two network_class_name keys: Python keeps the last, other readers the first."""
    text = json.dumps(toy_plans(), indent=1)
    good = '"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet"'
    assert good in text
    return text.replace(good, good + ', "network_class_name": "os.system"').encode()


def unterminated_escaped_string(n: int) -> bytes:
    """Every quote after the first is escaped: a naive string regex goes quadratic on this."""
    return b'["' + b'\\"' * n


def lone_surrogate() -> bytes:
    return b'{"name": "\\ud800"}'


# --- the toy files -----------------------------------------------------------


def test_toy_plans_pass_unchanged():
    plans = toy_plans()
    cleaned = clean_json_file("plans", as_bytes(plans), name="plans.json")
    assert cleaned.data == plans
    assert cleaned.findings == []
    assert json.loads(cleaned.to_bytes()) == plans


def test_toy_dataset_loses_only_its_case_list():
    dataset = toy_dataset()
    cleaned = clean_json_file("dataset", as_bytes(dataset), name="dataset.json")
    expected = {k: v for k, v in dataset.items() if k != "training"}
    assert cleaned.data == expected
    assert list(cleaned.data) == list(expected)  # key order kept
    assert [(f.path, f.action) for f in cleaned.findings] == [("/training", "dropped")]
    assert "/home/alice" not in cleaned.to_bytes().decode()
    assert "alice" not in cleaned.findings[0].detail


def test_toy_fingerprint_passes_unchanged():
    fingerprint = toy_fingerprint()
    cleaned = clean_json_file("fingerprint", as_bytes(fingerprint), name="dataset_fingerprint.json")
    assert cleaned.data == fingerprint
    assert cleaned.findings == []


def test_toy_files_from_disk_clean(toy_model_folder):
    for kind, filename in (("plans", "plans.json"), ("dataset", "dataset.json"),
                           ("fingerprint", "dataset_fingerprint.json")):
        raw = (toy_model_folder / filename).read_bytes()
        cleaned = clean_json_file(kind, raw, name=filename)
        assert json.loads(cleaned.to_bytes()) == cleaned.data
        assert not [f for f in cleaned.findings if f.action != "dropped"]


def test_cleaning_does_not_mutate_its_input():
    dataset = toy_dataset()
    before = copy.deepcopy(dataset)
    clean_dataset_json(dataset)
    assert dataset == before


# --- output format -----------------------------------------------------------


def test_to_bytes_is_deterministic_ordered_utf8_with_newline():
    data = {"z": 1, "a": {"ü": "Hüfte", "b": [1.5, None, True]}}
    out = CleanedJson(data, []).to_bytes()
    assert out == CleanedJson(copy.deepcopy(data), []).to_bytes()
    assert out.endswith(b"}\n") and not out.endswith(b"\n\n")
    text = out.decode("utf-8")
    assert text.index('"z"') < text.index('"a"')  # not sorted
    assert "Hüfte" in text  # not \u-escaped
    assert text.splitlines()[1] == '  "z": 1,'  # indent 2


def test_nan_written_by_nnunet_round_trips():
    # nnU-Net's save_json writes NaN for a channel without foreground voxels.
    raw = b'{"foreground_intensity_properties_per_channel": {"0": {"mean": NaN, "max": Infinity}}}'
    cleaned = clean_json_file("fingerprint", raw, name="dataset_fingerprint.json")
    props = cleaned.data["foreground_intensity_properties_per_channel"]["0"]
    assert math.isnan(props["mean"]) and props["max"] == math.inf
    assert b"NaN" in cleaned.to_bytes() and b"Infinity" in cleaned.to_bytes()


# --- architecture allowlist --------------------------------------------------

HOSTILE_NETWORK_CLASSES = [
    "os.system",
    "subprocess.Popen",
    "builtins.eval",
    "eval",  # pydoc.locate falls back to builtins for a bare name
    "PlainConvUNet",
    "dynamic_network_architectures.__class__",
    "dynamic_network_architectures.architectures.unet.__class__",
    "dynamic_network_architectures.architectures.unet.torch",  # the module's `import torch`
    "dynamic_network_architectures.architectures.unet.torch.Tensor",
    "dynamic_network_architectures.architectures.unet.nn.Module",
    "dynamic_network_architectures.architectures.__init__.Primus",
    "dynamic_network_architectures.architectures.unet._private",
    "dynamic_network_architectures.architectures..unet.PlainConvUNet",  # pydoc.locate drops empty parts
    "dynamic_network_architectures.architectures.unet.PlainConvUNet ",
    "dynamic_network_architectures.architectures.Unet.PlainConvUNet",
    "dynamic_network_architectures.building_blocks.residual.BasicBlockD",  # a block, not a network
    "dynamic_network_architectures_evil.architectures.unet.PlainConvUNet",
    "torch.nn.modules.conv.Conv3d",  # a layer, not a network
    "dynamic_network_architectures.architectures.unet.PlainConvUNet\nimport os",
    "",
    42,
    None,
    ["dynamic_network_architectures.architectures.unet.PlainConvUNet"],
]


@pytest.mark.parametrize("value", HOSTILE_NETWORK_CLASSES, ids=repr)
def test_network_class_outside_allowlist_is_refused(value, canary):
    plans = plans_with_network_class(value)
    with pytest.raises(UnsafeJson) as err:
        check_plans_architecture(plans, name="plans.json")
    message = str(err.value)
    assert message.startswith("plans.json: ")
    assert f"{ARCH}/network_class_name" in message
    assert repr(value)[:40] in message
    assert "\n" not in message
    assert err.value.exit_code == EXIT_REFUSED
    with pytest.raises(UnsafeJson):
        clean_json_file("plans", as_bytes(plans), name="plans.json")
    assert not canary.exists()


HOSTILE_LAYERS = [
    "os.system",
    "posix.system",
    "builtins.exec",
    "torch.load",
    "torch.nn.__dict__",
    "torch.nn.__class__",
    "torch.nn.modules.conv.__builtins__",
    "torch.nn.modules.conv.Conv3d.__init__",
    "torch.nn.modules.conv.F",  # torch.nn.functional, imported as F
    "torch.nn.modules.conv.torch",
    "torch.nn.functional.conv3d",
    "torch.nn.modules.module.Module",
    "torch.nn.modules.dropout.Conv3d",  # real class, wrong file: not how torch spells it
    "torch.nn.Conv3d.__subclasses__",
    "torch..nn.Conv3d",
    "torch.nn.LazyConv3d",
    "dynamic_network_architectures.building_blocks.helper.os",
    "dynamic_network_architectures.initialization.weight_init.InitWeights_He",
    3,
    {"op": "torch.nn.Conv3d"},
]


@pytest.mark.parametrize("key", ["conv_op", "norm_op", "dropout_op", "nonlin"])
@pytest.mark.parametrize("value", HOSTILE_LAYERS, ids=repr)
def test_layer_outside_allowlist_is_refused(key, value, canary):
    with pytest.raises(UnsafeJson) as err:
        check_plans_architecture(plans_with_layer(key, value), name="plans.json")
    assert f"{ARCH}/arch_kwargs/{key}" in str(err.value)
    assert not canary.exists()


def test_kw_requires_import_pointing_at_posix_system_is_refused():
    plans = plans_with_extra_import("evil", "posix.system")
    with pytest.raises(UnsafeJson, match=r"/arch_kwargs/evil: 'posix\.system' is not an allowed layer"):
        clean_plans_json(plans)


def test_string_kwargs_not_imported_are_left_alone():
    # nnU-Net passes arch_kwargs values not named in _kw_requires_import as plain strings.
    plans = plans_with_layer("comment", "os.system")
    assert clean_plans_json(plans).data == plans


@pytest.mark.parametrize("imports, reason", [
    ("conv_op", "must be a list"),  # a string would be iterated character by character
    ([["conv_op"]], "is not an arch_kwargs key"),
    (["missing_key"], "which arch_kwargs lacks"),
])
def test_malformed_kw_requires_import_is_refused(imports, reason):
    plans = toy_plans()
    plans["configurations"][CFG]["architecture"]["_kw_requires_import"] = imports
    with pytest.raises(UnsafeJson, match=reason):
        check_plans_architecture(plans)


@pytest.mark.parametrize("mutate, reason", [
    (lambda p: p.pop("configurations"), "has no 'configurations'"),
    (lambda p: p.__setitem__("configurations", ["2d"]), "/configurations: list where an object"),
    (lambda p: p["configurations"].__setitem__("2d", "3d_fullres"), "/configurations/2d: str where an object"),
    (lambda p: p["configurations"]["2d"].__setitem__("architecture", "x"), "/architecture: str where an object"),
    (lambda p: p["configurations"]["2d"]["architecture"].pop("network_class_name"), "has no network_class_name"),
    (lambda p: p["configurations"]["2d"]["architecture"].__setitem__("arch_kwargs", []), "/arch_kwargs: list"),
])
def test_malformed_plans_structure_is_refused(mutate, reason):
    plans = toy_plans()
    mutate(plans)
    with pytest.raises(UnsafeJson, match=reason):
        check_plans_architecture(plans)


def test_plans_that_are_not_an_object_are_refused():
    with pytest.raises(UnsafeJson, match="list where an nnU-Net plans.json was expected"):
        clean_json_file("plans", b"[1, 2]", name="plans.json")


@pytest.mark.parametrize("key, value", [
    ("conv_op", "torch.nn.modules.conv.Conv3d"),
    ("conv_op", "torch.nn.Conv3d"),
    ("norm_op", "torch.nn.modules.instancenorm.InstanceNorm3d"),
    ("norm_op", "torch.nn.modules.batchnorm.BatchNorm2d"),
    ("dropout_op", "torch.nn.modules.dropout.Dropout3d"),
    ("dropout_op", None),
    ("nonlin", "torch.nn.LeakyReLU"),
    ("nonlin", "torch.nn.modules.activation.ReLU"),
])
def test_real_layer_spellings_are_allowed(key, value):
    plans = plans_with_layer(key, value)
    assert clean_plans_json(plans).data == plans


@pytest.mark.parametrize("network", [
    "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
    # Older plans: the module moved; nnU-Net finds the class by its last part.
    "dynamic_network_architectures.architectures.residual_unet.ResidualEncoderUNet",
    "dynamic_network_architectures.architectures.primus.PrimusM",
    "dynamic_network_architectures.architectures.resnet.ResNet18_CIFAR",
])
def test_real_network_classes_are_allowed(network):
    plans = plans_with_network_class(network)
    check_plans_architecture(plans)


def test_residual_block_kwarg_is_allowed():
    plans = plans_with_extra_import("block", "dynamic_network_architectures.building_blocks.residual.BasicBlockD")
    check_plans_architecture(plans)


def test_inheriting_configuration_without_architecture_is_checked_where_it_overrides():
    plans = toy_plans()
    plans["configurations"]["2d_bs4"] = {"inherits_from": CFG, "batch_size": 4}
    check_plans_architecture(plans)
    plans["configurations"]["2d_evil"] = {"inherits_from": CFG, "architecture": {
        "network_class_name": "os.system", "arch_kwargs": {}, "_kw_requires_import": []}}
    with pytest.raises(UnsafeJson, match="/configurations/2d_evil/architecture/network_class_name"):
        check_plans_architecture(plans)


CANARY_MODULE = "nnseal_canary_payload"


@pytest.fixture()
def importable_payload(tmp_path, canary, monkeypatch):
    """A module on sys.path that creates the canary when imported: what a name resolver would run."""
    folder = tmp_path / "payload"
    folder.mkdir()
    (folder / f"{CANARY_MODULE}.py").write_text(
        f"open({str(canary)!r}, 'w').close()\nclass Evil:\n    pass\n")
    monkeypatch.syspath_prepend(str(folder))
    yield
    sys.modules.pop(CANARY_MODULE, None)


@pytest.mark.parametrize("make", [
    lambda: plans_with_network_class(f"{CANARY_MODULE}.Evil"),
    lambda: plans_with_layer("conv_op", f"{CANARY_MODULE}.Evil"),
    lambda: plans_with_extra_import("payload", f"{CANARY_MODULE}.Evil"),
    lambda: plans_with_config_value("preprocessor_name", f"{CANARY_MODULE}.Evil"),
])
def test_refused_names_are_never_imported(make, importable_payload, canary):
    with pytest.raises(UnsafeJson):
        clean_json_file("plans", as_bytes(make()), name="plans.json")
    assert CANARY_MODULE not in sys.modules
    assert not canary.exists()


def test_checking_plans_imports_no_torch_nnunet_or_architectures():
    # Verify runs this on untrusted packages before anything heavy is imported.
    code = (
        "import json, sys\n"
        "from nnseal import toy_model\n"
        "from nnseal.sanitize.jsonclean import clean_json_file\n"
        "spec = toy_model.ToySpec()\n"
        "for kind, make in (('plans', toy_model.plans_json), ('dataset', toy_model.dataset_json)):\n"
        "    clean_json_file(kind, json.dumps(make(spec)).encode(), name=kind)\n"
        "heavy = [m for m in ('torch', 'numpy', 'nnunetv2', 'dynamic_network_architectures') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --- names nnU-Net looks up in its own package ---------------------------------


@pytest.mark.parametrize("make, pointer", [
    (lambda: plans_with_config_value("preprocessor_name", "load_pickle"), f"/configurations/{CFG}/preprocessor_name"),
    (lambda: plans_with_config_value("resampling_fn_data", "write_pickle"),
     f"/configurations/{CFG}/resampling_fn_data"),
    (lambda: plans_with_config_value("resampling_fn_seg", "os.system"), f"/configurations/{CFG}/resampling_fn_seg"),
    (lambda: plans_with_config_value("resampling_fn_probabilities", "__class__"),
     f"/configurations/{CFG}/resampling_fn_probabilities"),
    (lambda: plans_with_config_value("normalization_schemes", ["ZScoreNormalization", "save_json"]),
     f"/configurations/{CFG}/normalization_schemes/1"),
    (lambda: plans_with_config_value("normalization_schemes", "ZScoreNormalization"),
     f"/configurations/{CFG}/normalization_schemes"),
    (lambda: plans_with_top_value("image_reader_writer", "subprocess.Popen"), "/image_reader_writer"),
    (lambda: plans_with_top_value("image_reader_writer", "BaseReaderWriter"), "/image_reader_writer"),
    (lambda: plans_with_top_value("label_manager", "__builtins__"), "/label_manager"),
    (lambda: plans_with_top_value("experiment_planner_used", "os.system"), "/experiment_planner_used"),
    (lambda: plans_with_top_value("experiment_planner_used", None), "/experiment_planner_used"),
])
def test_nnunet_lookup_names_outside_allowlist_are_refused(make, pointer, canary):
    with pytest.raises(UnsafeJson) as err:
        clean_plans_json(make())
    assert str(err.value).startswith(f"plans.json: {pointer}: ")
    assert not canary.exists()


def test_custom_experiment_planner_name_is_allowed():
    # Only a property nothing in nnunetv2 2.8.1 calls resolves it: a plain name is enough.
    check_plans_architecture(plans_with_top_value("experiment_planner_used", "nnUNetPlannerResEncL"))


@pytest.mark.parametrize("make, pointer", [
    (lambda: plans_with_config_value("data_identifier", "../../../.ssh"), f"/configurations/{CFG}/data_identifier"),
    (lambda: plans_with_config_value("data_identifier", ".."), f"/configurations/{CFG}/data_identifier"),
    (lambda: plans_with_config_value("data_identifier", "a\\b"), f"/configurations/{CFG}/data_identifier"),
    (lambda: plans_with_config_value("data_identifier", ""), f"/configurations/{CFG}/data_identifier"),
    (lambda: plans_with_top_value("dataset_name", "x/../../y"), "/dataset_name"),
    (lambda: plans_with_top_value("plans_name", 7), "/plans_name"),
])
def test_folder_names_that_escape_are_refused(make, pointer):
    with pytest.raises(UnsafeJson, match="is not a single folder name") as err:
        check_plans_architecture(make())
    assert pointer in str(err.value)


def test_dataset_reader_writer_override():
    for ok in ("NibabelIOWithReorient", "None", None):
        dataset = dict(toy_dataset(), overwrite_image_reader_writer=ok)
        assert clean_dataset_json(dataset).data["overwrite_image_reader_writer"] == ok
    dataset = dict(toy_dataset(), overwrite_image_reader_writer="load_json")
    with pytest.raises(UnsafeJson, match="/overwrite_image_reader_writer: 'load_json' is not an nnunetv2 image"):
        clean_dataset_json(dataset)


# --- paths ---------------------------------------------------------------------

PATHS = [
    "/home/alice/nnUNet_raw/x.nii.gz",
    "/Users/bob",
    "/data",
    "C:\\Users\\carol\\data",
    "D:/nnUNet_results",
    "\\\\server\\share\\cases",
    "//server/share/cases",
    "~/nnUNet_raw",
    "~dave/data",
    "file:///srv/data",
    "FILE:/etc/passwd",
    "trained on /scratch/alice/data/run3 last week",
]
NOT_PATHS = [
    "https://example.org/nnseal-toy/a/b",
    "doi:10.1000/xyz/abc",
    "left/right kidney",
    "w/o contrast",
    "~5/10 cases",
    "ratio 1/2/3",
    "./imagesTr/case_001",
    "CT",
    "background",
    "torch.nn.modules.conv.Conv3d",
    ".nii.gz",
    "s3://bucket/key/x",
]


@pytest.mark.parametrize("text", PATHS)
def test_paths_and_home_directories_are_found(text):
    assert find_paths(text)
    assert find_paths(jsonclean.redact_paths(text)) == []


@pytest.mark.parametrize("text", NOT_PATHS)
def test_urls_words_and_relative_names_are_not_paths(text):
    assert find_paths(text) == []


def test_paths_in_dataset_description_are_redacted_and_reported():
    dataset = toy_dataset()
    dataset["description"] = "trained on /home/alice/data by alice"
    dataset["converted_by"] = ["ok", ["nested", "C:\\Users\\alice\\conv.py"]]
    dataset["extra"] = {"/home/alice/cache": 1, "keep": "~/x"}
    cleaned = clean_dataset_json(dataset)
    assert cleaned.data["description"] == f"trained on {REDACTED} by alice"
    assert cleaned.data["converted_by"] == ["ok", ["nested", REDACTED]]
    assert cleaned.data["extra"] == {"keep": REDACTED}
    assert cleaned.data["reference"] == "https://example.org/nnseal-toy"
    got = {(f.path, f.action) for f in cleaned.findings}
    assert got == {("/training", "dropped"), ("/description", "redacted"), ("/converted_by/1/1", "redacted"),
                   ("/extra/~1home~1alice~1cache", "dropped"), ("/extra/keep", "redacted")}
    # The report may be shared: it never repeats what it removed.
    assert not any("alice" in f.detail for f in cleaned.findings)


@pytest.mark.parametrize("key, value, pointer", [
    ("labels", {"background": 0, "/home/alice/organ": 1}, "/labels/~1home~1alice~1organ"),
    ("channel_names", {"0": "/home/alice/ct"}, "/channel_names/0"),
    ("file_ending", "C:\\data\\.nii.gz", "/file_ending"),
])
def test_paths_in_dataset_keys_nnunet_reads_are_refused(key, value, pointer):
    dataset = dict(toy_dataset(), **{key: value})
    with pytest.raises(UnsafeJson) as err:
        clean_dataset_json(dataset)
    assert str(err.value).startswith(f"dataset.json: {pointer}: ")
    assert "nnU-Net reads this key" in str(err.value)


def test_v1_and_v2_case_lists_are_dropped():
    dataset = toy_dataset()
    dataset["test"] = ["/home/alice/imagesTs/toy_100.nii.gz", "./imagesTs/toy_101.nii.gz"]
    dataset["dataset"] = {"toy_000": {"images": ["/home/alice/a_0000.nii.gz"], "label": "/home/alice/a.nii.gz"}}
    cleaned = clean_dataset_json(dataset)
    assert not {"training", "test", "dataset"} & set(cleaned.data)
    assert {f.path for f in cleaned.findings if f.action == "dropped"} == {"/training", "/test", "/dataset"}
    assert b"toy_000" not in cleaned.to_bytes()


def test_paths_anywhere_in_plans_are_refused_with_their_pointer():
    plans = plans_with_config_value("custom", ["x", {"p": "see /home/alice/y"}])
    with pytest.raises(UnsafeJson, match=rf"^plans\.json: /configurations/{CFG}/custom/1/p: value "):
        clean_plans_json(plans)
    plans = toy_plans()
    plans["configurations"]["\\\\server\\share"] = plans["configurations"][CFG]
    with pytest.raises(UnsafeJson, match="key holds a network"):
        clean_plans_json(plans)


def test_paths_in_fingerprint_nested_lists_are_redacted():
    fingerprint = toy_fingerprint()
    fingerprint["source"] = [[1, ["/home/alice/raw", "\\\\nas\\scans\\x"]]]
    cleaned = clean_fingerprint_json(fingerprint)
    assert cleaned.data["source"] == [[1, [REDACTED, REDACTED]]]
    assert [f.path for f in cleaned.findings] == ["/source/0/1/0", "/source/0/1/1"]


# --- hostile parsing ----------------------------------------------------------------


@pytest.mark.parametrize("raw", [depth_bomb(100_000), depth_bomb(100_000, "{", "}"), object_depth_bomb(50_000),
                                 depth_bomb(65)])
def test_depth_bombs_are_refused_before_json_recurses(raw):
    start = time.monotonic()
    with pytest.raises(UnsafeJson, match="nested deeper than 64 levels"):
        load_json_bytes(raw, name="plans.json")
    assert time.monotonic() - start < 2


def test_depth_limit_is_exact_and_ignores_brackets_in_strings():
    assert load_json_bytes(depth_bomb(64), name="x.json") is not None
    deep_text = json.dumps({"k": "[[[[{{{{" * 50})
    assert load_json_bytes(deep_text.encode(), name="x.json") == json.loads(deep_text)
    with pytest.raises(UnsafeJson, match="nested deeper than 4 levels"):
        load_json_bytes(depth_bomb(5), name="x.json", max_depth=4)


def test_depth_of_python_data_is_capped_too():
    value: list = []
    for _ in range(200):
        value = [value]
    with pytest.raises(UnsafeJson, match="nested deeper than 64 levels"):
        clean_fingerprint_json({"x": value})


def test_files_over_the_size_cap_are_refused_without_parsing():
    raw = huge_file(4096)
    assert len(raw) == 4096
    assert isinstance(load_json_bytes(raw, name="a.json", max_bytes=4096), list)
    with pytest.raises(UnsafeJson, match="4097 bytes, more than the 4096 allowed"):
        load_json_bytes(raw + b" ", name="a.json", max_bytes=4096)
    big = b" " * (jsonclean.DEFAULT_MAX_BYTES + 1)
    with pytest.raises(UnsafeJson, match="more than the 33554432 allowed"):
        clean_json_file("dataset", big, name="dataset.json")


def test_duplicate_keys_are_refused():
    with pytest.raises(UnsafeJson, match="duplicate key 'network_class_name'"):
        clean_json_file("plans", duplicate_key_plans(), name="plans.json")
    with pytest.raises(UnsafeJson, match="duplicate key 'a'"):
        load_json_bytes(b'{"a": 1, "b": 2, "a": 1}', name="x.json")


@pytest.mark.parametrize("raw, reason", [
    (b'{"name": "caf\xe9"}', r"not UTF-8 \(invalid byte at offset 13\)"),
    (b"\xff\xfe{\x00}\x00", "not UTF-8"),
    (b'\xef\xbb\xbf{"a": 1}', "not valid JSON: Unexpected UTF-8 BOM"),
    (b'{"a": 1', "not valid JSON: Expecting ',' delimiter at line 1 column 8"),
    (b"", "not valid JSON: Expecting value"),
    (lone_surrogate(), "/name: string with a lone UTF-16 surrogate"),
    (b"[" + b"9" * 5000 + b"]", "not valid JSON"),
])
def test_invalid_bytes_are_refused_naming_the_file(raw, reason):
    with pytest.raises(UnsafeJson, match=reason) as err:
        load_json_bytes(raw, name="Dataset042_Toy/m/dataset.json")
    assert str(err.value).startswith("Dataset042_Toy/m/dataset.json: ")
    assert "\n" not in str(err.value)


def test_unterminated_escaped_string_is_refused_in_linear_time():
    start = time.monotonic()
    with pytest.raises(UnsafeJson, match="not valid JSON"):
        load_json_bytes(unterminated_escaped_string(2_000_000), name="x.json")
    assert time.monotonic() - start < 5


def test_non_json_python_values_are_refused():
    with pytest.raises(UnsafeJson, match="/a/0: bytes is not a JSON value"):
        clean_fingerprint_json({"a": [b"raw"]})
    with pytest.raises(UnsafeJson, match="key 1 is not a string"):
        clean_dataset_json({1: "x"})
    with pytest.raises(UnsafeJson, match="integer too large"):
        clean_fingerprint_json({"a": 1 << 20_000})


def test_hostile_value_in_message_stays_on_one_line_and_short():
    value = "os.system\n" + "x" * 10_000
    with pytest.raises(UnsafeJson) as err:
        check_plans_architecture(plans_with_network_class(value))
    assert "\n" not in str(err.value)
    assert len(str(err.value)) < 400


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(InvalidArgument, match="kind must be one of"):
        clean_json_file("debug", b"{}", name="debug.json")


# --- properties ----------------------------------------------------------------

_path_alphabet = st.sampled_from(list("/\\:~.abcHOMEx_- 0") + ["/home/", "C:\\", "file:", "https://", "\\\\"])
_texts = st.one_of(st.text(max_size=20), st.lists(_path_alphabet, max_size=12).map("".join))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _texts,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_texts, children, max_size=5),
    max_leaves=30,
)
_property_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _no_paths_left(value) -> bool:
    if isinstance(value, str):
        return not find_paths(value)
    if isinstance(value, list):
        return all(_no_paths_left(v) for v in value)
    if isinstance(value, dict):
        return all(not find_paths(k) and _no_paths_left(v) for k, v in value.items())
    return True


@_property_settings
@given(value=json_values)
def test_cleaners_raise_only_unsafejson_on_any_json_value(value):
    for clean in (clean_plans_json, clean_dataset_json, clean_fingerprint_json, check_plans_architecture):
        try:
            result = clean(value)
        except UnsafeJson:
            continue
        if isinstance(result, CleanedJson):
            json.loads(result.to_bytes())


@_property_settings
@given(extra=st.dictionaries(_texts, json_values, max_size=4))
def test_dataset_and_fingerprint_output_holds_no_paths(extra):
    for clean, base in ((clean_dataset_json, toy_dataset()), (clean_fingerprint_json, toy_fingerprint())):
        try:
            cleaned = clean(dict(base, **extra))
        except UnsafeJson:
            continue
        assert _no_paths_left(cleaned.data)
        if clean is clean_dataset_json:  # dataset.json's case list; a fingerprint has none to drop
            assert "training" not in cleaned.data
        assert json.loads(cleaned.to_bytes(), parse_constant=lambda c: c) is not None


@_property_settings
@given(key=_texts, value=json_values)
def test_plans_with_an_extra_value_pass_unchanged_or_are_refused(key, value):
    plans = plans_with_config_value(key, value)
    try:
        cleaned = clean_plans_json(plans)
    except UnsafeJson:
        return
    assert cleaned.data == plans or any(isinstance(v, float) and math.isnan(v) for v in _leaves(value))
    assert _no_paths_left(cleaned.data)


def _leaves(value):
    if isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    else:
        yield value


@_property_settings
@given(raw=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_load_json_bytes_raises_only_unsafejson(raw):
    try:
        load_json_bytes(raw, name="x.json")
    except UnsafeJson:
        pass


# --- the allowlists match upstream (imports torch and nnunetv2: the only test that does) -----


def test_allowlists_name_real_upstream_classes():
    import pydoc
    from os.path import join

    import nnunetv2
    import torch
    from nnunetv2.imageio.base_reader_writer import BaseReaderWriter
    from nnunetv2.imageio.reader_writer_registry import recursive_find_reader_writer_by_name
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import ImageNormalization
    from nnunetv2.preprocessing.resampling.utils import recursive_find_resampling_fn_by_name
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    for file, names in jsonclean.TORCH_NN_LAYERS.items():
        for cls_name in names:
            for spelling in (f"torch.nn.{cls_name}", f"torch.nn.modules.{file}.{cls_name}"):
                assert jsonclean.is_allowed_layer_class(spelling)
                cls = pydoc.locate(spelling)
                assert isinstance(cls, type) and issubclass(cls, torch.nn.Module), spelling
                assert cls.__module__ == f"torch.nn.modules.{file}", spelling

    def nnunet_lookup(folder: str, module: str, name: str):
        return recursive_find_python_class(join(nnunetv2.__path__[0], *folder.split("/")), name, module)

    for name in jsonclean.NNUNET_PREPROCESSORS:
        cls = nnunet_lookup("preprocessing", "nnunetv2.preprocessing", name)
        assert isinstance(cls, type) and cls.__module__.startswith("nnunetv2.preprocessing.preprocessors")
    for name in jsonclean.NNUNET_RESAMPLING_FUNCTIONS:
        assert recursive_find_resampling_fn_by_name(name).__module__.startswith("nnunetv2.preprocessing.resampling")
    for name in jsonclean.NNUNET_NORMALIZATIONS:
        cls = nnunet_lookup("preprocessing/normalization", "nnunetv2.preprocessing.normalization", name)
        assert issubclass(cls, ImageNormalization) and cls is not ImageNormalization
    for name in jsonclean.NNUNET_READER_WRITERS:
        cls = recursive_find_reader_writer_by_name(name)
        assert issubclass(cls, BaseReaderWriter) and cls is not BaseReaderWriter
    for name in jsonclean.NNUNET_LABEL_MANAGERS:
        assert issubclass(nnunet_lookup("utilities/label_handling", "nnunetv2.utilities.label_handling", name),
                          LabelManager)

    # The toy's (real nnU-Net) spellings resolve; the escapes the rule blocks are real escapes.
    arch = toy_plans()["configurations"][CFG]["architecture"]
    assert issubclass(pydoc.locate(arch["network_class_name"]), torch.nn.Module)
    assert pydoc.locate("dynamic_network_architectures.architectures.unet.torch") is torch
    assert pydoc.locate("torch.nn.modules.conv.F") is torch.nn.functional
    assert not jsonclean.is_allowed_network_class("dynamic_network_architectures.architectures.unet.torch")
    assert not jsonclean.is_allowed_layer_class("torch.nn.modules.conv.F")
