"""Sanitize nnU-Net's JSON files: plans.json, dataset.json, dataset_fingerprint.json.

Used by export on the user's own files and by verify/import on untrusted ones, so
parsing is hostile-input-safe and nothing here imports torch, nnunetv2 or any name
a file mentions: every check is syntactic.

Policy
------
Parsing (``load_json_bytes``) refuses: more than ``max_bytes``, bytes that are not
UTF-8 (a BOM included: nnU-Net's own ``json.load`` refuses it too), nesting deeper
than ``max_depth`` (checked before ``json`` recurses), duplicate keys (readers
disagree on which value wins), lone surrogates, and anything ``json`` rejects.
``NaN``/``Infinity`` are accepted and written back unchanged: nnU-Net's ``save_json``
writes them (``json.dump`` allows them) when a channel has no foreground voxels, and
nnU-Net reads them back with Python's ``json``.

Case lists are dropped: dataset.json's v1 ``training``/``test`` lists and the v2
``dataset`` dict (case identifiers as keys, file paths as values). Inference never
reads them.

Absolute paths and home directories (``/home/alice/x``, ``C:\\Users\\bob``,
``\\\\server\\share``, ``~/x``, ``file://...``; http(s) URLs and relative names are
left alone) are handled by where they appear:

* dataset.json keys nnU-Net reads (``channel_names``, ``modality``, ``labels``,
  ``numTraining``, ``file_ending``, ``regions_class_order``,
  ``overwrite_image_reader_writer``): refused, since changing them changes the model.
* dataset.json's other keys (name, description, licence, ...) and the whole of
  dataset_fingerprint.json (not read at inference): the path is replaced by
  ``<redacted>``; a key that looks like a path drops its entry.
* plans.json: refused anywhere. nnU-Net and custom trainers may read any key of it,
  and nnU-Net's planners never write paths there, so one is a hand edit to look at.

Names plans.json makes nnU-Net import (checked against nnunetv2 2.8.1):

* ``architecture.network_class_name`` and every ``arch_kwargs`` value named in
  ``_kw_requires_import`` go to ``pydoc.locate`` (utilities/get_network_from_plans.py):
  any dotted path, importing every module on the way, falling back to ``builtins``
  for bare names. Allowed: ``dynamic_network_architectures.architectures.<module>.<Class>``
  (for kwargs also ``.building_blocks.``), exactly four ASCII-identifier parts, module
  lowercase, class capitalised, no leading underscore (so no dunders and no walking
  through a module's imports such as ``...unet.torch``); or one of an explicit list
  of torch.nn layer classes, spelled ``torch.nn.X`` or ``torch.nn.modules.<file>.X``.
  If ``pydoc.locate`` finds nothing, nnU-Net looks the last part up in
  dynamic_network_architectures.architectures: the same reach.
* ``preprocessor_name``, ``resampling_fn_data``/``_seg``/``_probabilities``,
  ``normalization_schemes``, ``image_reader_writer``, ``label_manager`` (and
  dataset.json's ``overwrite_image_reader_writer``) go to ``recursive_find_python_class``:
  it imports every module under one nnunetv2 folder and takes the first attribute of
  that name, which also reaches what those modules import (``load_pickle``,
  ``write_pickle``, ``save_json``, ``rmtree``-like helpers); resampling functions are
  then called with kwargs from plans.json. Allowed: the exact names nnunetv2 2.8.1
  defines for each role.
* ``experiment_planner_used`` is resolved the same way, but only by a property nothing
  in nnunetv2 2.8.1 calls: a bare identifier is enough.
* ``dataset_name``, ``plans_name`` and each ``data_identifier`` become folder names
  under nnUNet_preprocessed (training and preprocessing write there): they must be a
  single path component.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from nnseal.errors import InvalidArgument, UnsafeJson
from nnseal.format.limits import MAX_JSON_BYTES
from nnseal.format.strict_json import load_strict_json
from nnseal.format.strict_json import show as _show

REDACTED = "<redacted>"
DEFAULT_MAX_BYTES = MAX_JSON_BYTES
DEFAULT_MAX_DEPTH = 64
JSON_KINDS = ("plans", "dataset", "fingerprint", "postprocessing", "summary", "inference_information")
# The JSON files of an nnU-Net model folder and how each is cleaned.
KIND_BY_FILE_NAME = {"plans.json": "plans", "dataset.json": "dataset", "dataset_fingerprint.json": "fingerprint"}
# What nnUNetv2_find_best_configuration writes, cleaned by nnseal.sanitize.pipeline_json.
PIPELINE_KIND_BY_FILE_NAME = {"postprocessing.json": "postprocessing", "summary.json": "summary",
                              "inference_information.json": "inference_information"}

# json.dumps refuses ints over sys.get_int_max_str_digits() (4300 by default) decimal digits.
_MAX_INT_BITS = 14_000

# --- names nnU-Net resolves to code ------------------------------------------

# torch.nn layer classes plans.json may name, by the torch.nn.modules file that defines them.
TORCH_NN_LAYERS: dict[str, frozenset[str]] = {
    "conv": frozenset({"Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"}),
    "instancenorm": frozenset({"InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"}),
    "batchnorm": frozenset({"BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm"}),
    "normalization": frozenset({"GroupNorm", "LayerNorm", "RMSNorm"}),
    "dropout": frozenset({"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"}),
    "activation": frozenset({
        "CELU", "ELU", "GELU", "Hardsigmoid", "Hardswish", "Hardtanh", "LeakyReLU", "Mish", "PReLU",
        "RReLU", "ReLU", "ReLU6", "SELU", "SiLU", "Sigmoid", "Softplus", "Tanh",
    }),
    "linear": frozenset({"Identity"}),
}

# What nnunetv2 2.8.1 defines for each name it looks up with recursive_find_python_class.
NNUNET_PREPROCESSORS = frozenset({"DefaultPreprocessor"})
NNUNET_RESAMPLING_FUNCTIONS = frozenset({
    "resample_data_or_seg_to_shape", "resample_data_or_seg_to_spacing", "resample_data_or_seg",
    "resample_torch_fornnunet", "resample_torch_simple", "no_resampling_hack",
})
NNUNET_NORMALIZATIONS = frozenset({
    "CTNormalization", "NoNormalization", "ZScoreNormalization", "RescaleTo01Normalization", "RGBTo01Normalization",
})
NNUNET_READER_WRITERS = frozenset({
    "NaturalImage2DIO", "SimpleITKIO", "SimpleITKIOWithReorient", "Tiff3DIO", "NibabelIO", "NibabelIOWithReorient",
})
NNUNET_LABEL_MANAGERS = frozenset({"LabelManager"})

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_MODULE_PART = re.compile(r"[a-z][a-z0-9_]*")
_CLASS_PART = re.compile(r"[A-Z][A-Za-z0-9_]*")

# --- paths -------------------------------------------------------------------

# One alternation, scanned left to right, so overlapping spellings are found once.
# Lookbehinds keep URLs (``https://host/a/b``), relative names (``./a/b``, ``w/o``) and
# plain words out.
_PATH_TOKEN = re.compile(
    r"(?P<file_url>(?<![A-Za-z0-9_])file:/[^\s]*)"
    r"|(?P<unc>(?<![\w.:/\\-])(?:\\\\|//)[^\s\\/]+[\\/][^\s]*)"
    r"|(?P<windows>(?<![A-Za-z0-9_])[A-Za-z]:[\\/][^\s]*)"
    r"|(?P<home>(?<![\w~/\\-])~(?:[A-Za-z_][A-Za-z0-9._-]*)?[\\/][^\s]*)"
    r"|(?P<posix>(?<![\w.:/~\\-])/[^\s/]+(?:/[^\s/]*)+)",
    re.IGNORECASE,
)
_WHOLE_POSIX_PATH = re.compile(r"/[^\s/]+")
_PATH_KIND_WORDS = {
    "file_url": "file:// URL",
    "unc": "network (UNC) path",
    "windows": "Windows absolute path",
    "home": "home-directory path",
    "posix": "absolute path",
}

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

# dataset.json keys nnU-Net reads for inference; everything else is description.
DATASET_KEYS_NNUNET_READS = frozenset({
    "channel_names", "modality", "labels", "numTraining", "file_ending",
    "regions_class_order", "overwrite_image_reader_writer",
})
# Per-case lists: v1 ``training`` (list of {image, label}) and ``test`` (list of files),
# v2 ``dataset`` (case id -> {images, label}).
DATASET_CASE_LISTS = ("training", "test", "dataset")


@dataclass
class JsonFinding:
    """Something cleaning changed: ``path`` is a JSON pointer (RFC 6901) into the original."""

    path: str
    action: str  # "dropped" | "redacted" | "refused"
    detail: str


@dataclass
class CleanedJson:
    data: object
    findings: list[JsonFinding] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        """Indent 2, original key order (people read these files), UTF-8, trailing newline."""
        text = json.dumps(self.data, indent=2, ensure_ascii=False, allow_nan=True)
        return (text + "\n").encode("utf-8")


# --- parsing -----------------------------------------------------------------


def load_json_bytes(raw: bytes, *, name: str, max_bytes: int = DEFAULT_MAX_BYTES,
                    max_depth: int = DEFAULT_MAX_DEPTH) -> object:
    """Parse untrusted JSON bytes; refuse (UnsafeJson) anything ambiguous or oversized.

    NaN and Infinity are accepted: nnU-Net writes them (a channel without foreground voxels).
    """
    if len(raw) > max_bytes:
        raise UnsafeJson(f"{len(raw)} bytes, more than the {max_bytes} allowed for a JSON file", path=name)
    data = load_strict_json(raw, error=UnsafeJson, path=name, max_depth=max_depth, allow_nan=True)
    _check_tree(data, name=name, max_depth=max_depth)
    return data


def _check_tree(value: object, *, name: str, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """Refuse values json.dumps cannot write back or that a parse would not produce."""
    _copy_tree(value, "", 0, name=name, max_depth=max_depth, on_string=None, on_key=None)


# --- tree walking ------------------------------------------------------------

# on_string(pointer, text) -> replacement text; on_key(pointer, key) -> keep the entry?
StringPolicy = Callable[[str, str], str]
KeyPolicy = Callable[[str, str], bool]


def _copy_tree(value: object, pointer: str, depth: int, *, name: str, max_depth: int,
               on_string: StringPolicy | None, on_key: KeyPolicy | None) -> object:
    """A fresh copy of a JSON value, type-checked, with the policies applied to every string."""
    if depth > max_depth:
        raise UnsafeJson(f"{pointer or '/'}: nested deeper than {max_depth} levels", path=name)
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            raise UnsafeJson(f"{pointer or '/'}: integer too large", path=name)
        return value
    if isinstance(value, str):
        _check_text(value, pointer, name)
        return on_string(pointer, value) if on_string else value
    if isinstance(value, (list, tuple)):
        return [_copy_tree(item, f"{pointer}/{i}", depth + 1, name=name, max_depth=max_depth,
                           on_string=on_string, on_key=on_key) for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnsafeJson(f"{pointer or '/'}: key {_show(key)} is not a string", path=name)
            _check_text(key, pointer, name)
            child = child_pointer(pointer, key)
            if on_key is not None and not on_key(child, key):
                continue
            out[key] = _copy_tree(item, child, depth + 1, name=name, max_depth=max_depth,
                                  on_string=on_string, on_key=on_key)
        return out
    raise UnsafeJson(f"{pointer or '/'}: {type(value).__name__} is not a JSON value", path=name)


def _check_text(text: str, pointer: str, name: str) -> None:
    if _LONE_SURROGATE.search(text):
        raise UnsafeJson(f"{pointer or '/'}: string with a lone UTF-16 surrogate (not valid Unicode)", path=name)


def child_pointer(pointer: str, key: str | int) -> str:
    """RFC 6901: ``~`` and ``/`` in a key are escaped as ``~0`` and ``~1``."""
    return pointer + "/" + str(key).replace("~", "~0").replace("/", "~1")


# --- paths -------------------------------------------------------------------


def find_paths(text: str) -> list[str]:
    """Kinds of absolute path / home directory in ``text`` ("absolute path", ...), in order."""
    kinds = [_PATH_KIND_WORDS[m.lastgroup or ""] for m in _PATH_TOKEN.finditer(text)]
    if not kinds and _WHOLE_POSIX_PATH.fullmatch(text):
        kinds.append(_PATH_KIND_WORDS["posix"])
    return kinds


def redact_paths(text: str) -> str:
    """``text`` with each path replaced by ``<redacted>``; the whole string if pieces would still read as one."""
    redacted = _PATH_TOKEN.sub(REDACTED, text)
    return REDACTED if find_paths(redacted) else redacted


def _refuse_paths(name: str, why: str) -> tuple[StringPolicy, KeyPolicy]:
    def on_string(pointer: str, text: str) -> str:
        kinds = find_paths(text)
        if kinds:
            raise UnsafeJson(f"{pointer}: value {_show(text)} holds a {kinds[0]}; {why}", path=name)
        return text

    def on_key(pointer: str, key: str) -> bool:
        kinds = find_paths(key)
        if kinds:
            raise UnsafeJson(f"{pointer}: key holds a {kinds[0]}; {why}", path=name)
        return True

    return on_string, on_key


def _redact_paths(findings: list[JsonFinding]) -> tuple[StringPolicy, KeyPolicy]:
    # The finding never repeats the value: the report may be shared, the path is what leaks.
    def on_string(pointer: str, text: str) -> str:
        kinds = find_paths(text)
        if not kinds:
            return text
        findings.append(JsonFinding(pointer, "redacted", f"{', '.join(sorted(set(kinds)))} replaced by {REDACTED}"))
        return redact_paths(text)

    def on_key(pointer: str, key: str) -> bool:
        kinds = find_paths(key)
        if not kinds:
            return True
        findings.append(JsonFinding(pointer, "dropped", f"key holds a {kinds[0]}"))
        return False

    return on_string, on_key


# --- the three files ---------------------------------------------------------


def clean_dataset_json(data: object, *, name: str = "dataset.json") -> CleanedJson:
    """Drop case lists, redact paths in descriptive keys, refuse paths in keys nnU-Net reads."""
    top = _require_object(data, name, "an nnU-Net dataset.json")
    findings: list[JsonFinding] = []
    refuse_string, refuse_key = _refuse_paths(name, "nnU-Net reads this key, so nnseal will not change it")
    redact_string, redact_key = _redact_paths(findings)
    out: dict = {}
    for key, value in top.items():
        if not isinstance(key, str):
            raise UnsafeJson(f"/: key {_show(key)} is not a string", path=name)
        pointer = child_pointer("", key)
        _check_text(key, pointer, name)
        if key in DATASET_CASE_LISTS:
            findings.append(JsonFinding(pointer, "dropped", _describe_case_list(key, value)))
            continue
        if key in DATASET_KEYS_NNUNET_READS:
            out[key] = _copy_tree(value, pointer, 1, name=name, max_depth=DEFAULT_MAX_DEPTH,
                                  on_string=refuse_string, on_key=refuse_key)
        elif redact_key(pointer, key):
            out[key] = _copy_tree(value, pointer, 1, name=name, max_depth=DEFAULT_MAX_DEPTH,
                                  on_string=redact_string, on_key=redact_key)
    reader = out.get("overwrite_image_reader_writer")
    if reader is not None and reader != "None":  # nnU-Net treats the string 'None' as unset
        _require_name_in(reader, NNUNET_READER_WRITERS, "/overwrite_image_reader_writer", name,
                         "an nnunetv2 image reader/writer")
    return CleanedJson(out, findings)


def clean_fingerprint_json(data: object, *, name: str = "dataset_fingerprint.json") -> CleanedJson:
    """Redact paths anywhere: inference never reads the fingerprint, planners read only its numbers."""
    _require_object(data, name, "an nnU-Net dataset_fingerprint.json")
    findings: list[JsonFinding] = []
    on_string, on_key = _redact_paths(findings)
    out = _copy_tree(data, "", 0, name=name, max_depth=DEFAULT_MAX_DEPTH, on_string=on_string, on_key=on_key)
    return CleanedJson(out, findings)


def clean_plans_json(data: object, *, name: str = "plans.json") -> CleanedJson:
    """Refuse paths anywhere and every name nnU-Net would import that is not allowlisted; change nothing."""
    _require_object(data, name, "an nnU-Net plans.json")
    on_string, on_key = _refuse_paths(name, "plans.json is configuration nnU-Net reads, so nnseal will not change it")
    out = _copy_tree(data, "", 0, name=name, max_depth=DEFAULT_MAX_DEPTH, on_string=on_string, on_key=on_key)
    check_plans_architecture(out, name=name)
    return CleanedJson(out, [])


def clean_json_file(kind: str, raw: bytes, *, name: str) -> CleanedJson:
    """Parse and clean one file; ``kind`` is one of ``JSON_KINDS``."""
    from nnseal.sanitize import pipeline_json

    cleaners: dict[str, Callable[..., CleanedJson]] = {
        "plans": clean_plans_json, "dataset": clean_dataset_json, "fingerprint": clean_fingerprint_json,
        "postprocessing": pipeline_json.clean_postprocessing_json, "summary": pipeline_json.clean_summary_json,
        "inference_information": pipeline_json.clean_inference_information_json}
    if kind not in cleaners:
        raise InvalidArgument(f"kind must be one of {JSON_KINDS}, not {kind!r}")
    return cleaners[kind](load_json_bytes(raw, name=name), name=name)


# --- plans.json checks -------------------------------------------------------


def check_plans_architecture(data: object, *, name: str = "plans.json") -> None:
    """Refuse plans.json unless every name nnU-Net turns into code, and every folder name, is allowed.

    This is the check to run on untrusted plans (verify does): architecture classes and
    layers (pydoc.locate), names nnU-Net looks up in its own package, folder names.
    It changes nothing; paths elsewhere in the file are clean_plans_json's job.
    """
    check_architecture_classes(data, name=name)
    check_plans_nnunet_names(data, name=name)
    check_plans_folder_names(data, name=name)


def check_architecture_classes(data: object, *, name: str = "plans.json") -> None:
    """Refuse an architecture class or layer that nnU-Net would pydoc.locate outside the allowlist."""
    for cfg_pointer, cfg in _configurations(data, name):
        if "architecture" not in cfg:
            # Inherits it, or the pre-2.3 format, which nnU-Net maps from two fixed names only.
            continue
        arch_pointer = cfg_pointer + "/architecture"
        arch = _require_object(cfg["architecture"], name, "an object", pointer=arch_pointer)
        class_pointer = arch_pointer + "/network_class_name"
        if "network_class_name" not in arch:
            raise UnsafeJson(f"{arch_pointer}: has no network_class_name", path=name)
        if not is_allowed_network_class(arch["network_class_name"]):
            raise UnsafeJson(f"{class_pointer}: {_show(arch['network_class_name'])} is not an allowed architecture "
                             "class (dynamic_network_architectures.architectures.<module>.<Class>); "
                             "nnU-Net would import and call it", path=name)
        kwargs_pointer = arch_pointer + "/arch_kwargs"
        kwargs = _require_object(arch.get("arch_kwargs", {}), name, "an object", pointer=kwargs_pointer)
        imports_pointer = arch_pointer + "/_kw_requires_import"
        imports = arch.get("_kw_requires_import", [])
        if not isinstance(imports, (list, tuple)):
            raise UnsafeJson(f"{imports_pointer}: must be a list of arch_kwargs keys", path=name)
        for i, key in enumerate(imports):
            if not isinstance(key, str):
                raise UnsafeJson(f"{imports_pointer}/{i}: {_show(key)} is not an arch_kwargs key", path=name)
            if key not in kwargs:
                raise UnsafeJson(f"{imports_pointer}/{i}: names {_show(key)}, which arch_kwargs lacks", path=name)
            value = kwargs[key]
            if value is not None and not is_allowed_layer_class(value):
                raise UnsafeJson(f"{child_pointer(kwargs_pointer, key)}: {_show(value)} is not an allowed layer "
                                 "class (a torch.nn layer such as torch.nn.modules.conv.Conv3d, or "
                                 "dynamic_network_architectures.<architectures|building_blocks>.<module>.<Class>); "
                                 "nnU-Net would import it", path=name)


def check_plans_nnunet_names(data: object, *, name: str = "plans.json") -> None:
    """Refuse names nnU-Net looks up inside its own package that nnunetv2 2.8.1 does not define for the role."""
    top = _require_object(data, name, "an nnU-Net plans.json")
    for key, allowed, role in (("image_reader_writer", NNUNET_READER_WRITERS, "an nnunetv2 image reader/writer"),
                               ("label_manager", NNUNET_LABEL_MANAGERS, "an nnunetv2 label manager")):
        if key in top:
            _require_name_in(top[key], allowed, child_pointer("", key), name, role)
    if "experiment_planner_used" in top:
        planner = top["experiment_planner_used"]
        if not (isinstance(planner, str) and _IDENTIFIER.fullmatch(planner)):
            raise UnsafeJson(f"/experiment_planner_used: {_show(planner)} is not a plain class name", path=name)
    for cfg_pointer, cfg in _configurations(data, name):
        if "preprocessor_name" in cfg:
            _require_name_in(cfg["preprocessor_name"], NNUNET_PREPROCESSORS, cfg_pointer + "/preprocessor_name",
                             name, "an nnunetv2 preprocessor")
        for key in ("resampling_fn_data", "resampling_fn_seg", "resampling_fn_probabilities"):
            if key in cfg:
                _require_name_in(cfg[key], NNUNET_RESAMPLING_FUNCTIONS, child_pointer(cfg_pointer, key), name,
                                 "an nnunetv2 resampling function")
        if "normalization_schemes" in cfg:
            schemes = cfg["normalization_schemes"]
            pointer = cfg_pointer + "/normalization_schemes"
            if not isinstance(schemes, (list, tuple)):
                raise UnsafeJson(f"{pointer}: must be a list of normalization class names", path=name)
            for i, scheme in enumerate(schemes):
                _require_name_in(scheme, NNUNET_NORMALIZATIONS, f"{pointer}/{i}", name, "an nnunetv2 normalization")


def check_plans_folder_names(data: object, *, name: str = "plans.json") -> None:
    """Refuse dataset_name, plans_name or data_identifier values that are not one folder name."""
    top = _require_object(data, name, "an nnU-Net plans.json")
    places = [(child_pointer("", key), top[key]) for key in ("dataset_name", "plans_name") if key in top]
    places += [(cfg_pointer + "/data_identifier", cfg["data_identifier"])
               for cfg_pointer, cfg in _configurations(data, name) if "data_identifier" in cfg]
    for pointer, value in places:
        if not is_single_folder_name(value):
            raise UnsafeJson(f"{pointer}: {_show(value)} is not a single folder name; nnU-Net joins it into "
                             "paths it writes to", path=name)


def is_allowed_network_class(value: object) -> bool:
    return _is_dna_class(value, packages=("architectures",))


def is_allowed_layer_class(value: object) -> bool:
    return _is_torch_nn_layer(value) or _is_dna_class(value, packages=("architectures", "building_blocks"))


def is_single_folder_name(value: object) -> bool:
    return (isinstance(value, str) and value not in ("", ".", "..") and len(value) <= 255
            and not any(c in value for c in "/\\\0:") and not value.startswith("~"))


def _is_dna_class(value: object, *, packages: tuple[str, ...]) -> bool:
    if not isinstance(value, str):
        return False
    parts = value.split(".")
    return (len(parts) == 4 and parts[0] == "dynamic_network_architectures" and parts[1] in packages
            and _MODULE_PART.fullmatch(parts[2]) is not None and _CLASS_PART.fullmatch(parts[3]) is not None)


def _is_torch_nn_layer(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = value.split(".")
    if len(parts) == 3 and parts[:2] == ["torch", "nn"]:
        return any(parts[2] in names for names in TORCH_NN_LAYERS.values())
    if len(parts) == 5 and parts[:3] == ["torch", "nn", "modules"]:
        return parts[4] in TORCH_NN_LAYERS.get(parts[3], ())
    return False


# --- helpers -----------------------------------------------------------------


def _configurations(data: object, name: str) -> list[tuple[str, dict]]:
    top = _require_object(data, name, "an nnU-Net plans.json")
    if "configurations" not in top:
        raise UnsafeJson("has no 'configurations': not an nnU-Net plans.json", path=name)
    configs = _require_object(top["configurations"], name, "an object", pointer="/configurations")
    return [(child_pointer("/configurations", key), _require_object(cfg, name, "an object",
                                                                   pointer=child_pointer("/configurations", key)))
            for key, cfg in configs.items()]


def _require_object(value: object, name: str, what: str, *, pointer: str = "") -> dict:
    if not isinstance(value, dict):
        where = f"{pointer}: " if pointer else ""
        raise UnsafeJson(f"{where}{type(value).__name__} where {what} was expected", path=name)
    return value


def _require_name_in(value: object, allowed: frozenset[str], pointer: str, name: str, role: str) -> None:
    if not (isinstance(value, str) and value in allowed):
        raise UnsafeJson(f"{pointer}: {_show(value)} is not {role} (allowed: {', '.join(sorted(allowed))}); "
                         "nnU-Net would look it up by name and call it", path=name)


def _describe_case_list(key: str, value: object) -> str:
    count = len(value) if isinstance(value, (list, tuple, dict)) else 1
    return f"case list {key!r} ({count} entries: case identifiers and file paths inference does not need)"


