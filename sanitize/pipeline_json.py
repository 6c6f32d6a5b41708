"""Clean the JSON that ``nnUNetv2_find_best_configuration`` writes: postprocessing.json, the
cross-validation and ensemble summary.json, and the dataset's inference_information.json.

Used by export on the user's own files and by verify/install on untrusted ones; torch-free and
nnunetv2-free, every check syntactic (docs/FORMAT.md, "The nnU-Net pipeline").

postprocessing.json is what install turns back into the ``postprocessing.pkl`` nnU-Net unpickles
(``nnUNetv2_apply_postprocessing -pp_pkl_file``), so it is held to an allowlist, never cleaned:
every function must be one of nnU-Net's own postprocessing functions (``POSTPROCESSING_FUNCTIONS``,
by the bare name nnU-Net writes, ``fn.__name__``), every keyword one that function takes with the
type nnU-Net gives it (``labels_or_regions``: a label, a region (a list of labels) or a list of
those; ``background_label``: a label), and the file holds nothing else; anything else is refused.
nnU-Net's ``postprocessing.pkl`` is never read, shipped or loaded.

summary.json keeps its metrics (``foreground_mean``, ``mean``) and drops ``metric_per_case`` (case
identifiers and the paths of every prediction and reference file).

inference_information.json names two files by absolute path. In a package both are relative to
the results folder (``DatasetXXX_Name/...``, "/"-separated, see ``relative_results_path``); install
writes them back absolute, as nnU-Net does.
"""

from __future__ import annotations

import math
import re
from typing import Any

from nnseal.errors import UnsafeJson
from nnseal.format.layout import ensemble_members
from nnseal.format.strict_json import show as _show
from nnseal.sanitize.jsonclean import CleanedJson, JsonFinding, child_pointer

# nnU-Net's postprocessing functions (nnunetv2 2.8.1 defines one; determine_postprocessing uses it):
# bare name as postprocessing.json writes it -> the module that defines it.
POSTPROCESSING_FUNCTIONS = {
    "remove_all_but_largest_component_from_segmentation": "nnunetv2.postprocessing.remove_connected_components",
}
# Keyword -> what it must be: "labels_or_regions" (label, region or list of those) or "label".
POSTPROCESSING_KWARGS = {
    "remove_all_but_largest_component_from_segmentation": {"labels_or_regions": "labels_or_regions",
                                                           "background_label": "label"},
}
REQUIRED_KWARGS = {"remove_all_but_largest_component_from_segmentation": ("labels_or_regions",)}
MAX_POSTPROCESSING_STEPS = 1024
MAX_LABEL = 2**31 - 1  # pickled as BININT; nnU-Net's label maps are at most 32-bit
MAX_REGION_LABELS = 1024

_METRIC_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_LABEL_KEY = re.compile(r"\d{1,10}|\(\d{1,10}(?:, \d{1,10})*,?\)")  # nnU-Net's label_or_region_to_key
# Trainer, plans, configuration names: what find_best_configuration's commands pass on a shell line.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_DATASET = re.compile(r"Dataset\d{3}_[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_MODEL_ID = r"[A-Za-z0-9][A-Za-z0-9_.\-]*?__[A-Za-z0-9][A-Za-z0-9_.\-]*?__[A-Za-z0-9][A-Za-z0-9_.\-]*"
# The two files inference_information.json names, relative to the results folder.
POSTPROCESSING_FILE_RE = re.compile(
    rf"(?P<dataset>Dataset\d{{3}}_[^/]+)/(?:(?P<model>{_MODEL_ID})/crossval_results_folds_(?P<folds>[0-9a-z_]+)"
    r"|ensembles/(?P<ensemble>ensemble___[^/]+))/postprocessing\.pkl")
PLANS_FILE_RE = re.compile(rf"(?P<dataset>Dataset\d{{3}}_[^/]+)/(?P<model>{_MODEL_ID})/plans\.json")
_ENSEMBLE_PLANS_RE = re.compile(r"(?P<dataset>Dataset\d{3}_[^/]+)/ensembles/(?P<ensemble>ensemble___[^/]+)/plans\.json")

SUMMARY_KEYS = ("foreground_mean", "mean")
POSTPROCESSING_KEYS = ("input_folder", "postprocessed", "postprocessing_fns", "postprocessing_kwargs")
INFERENCE_KEYS = ("folds", "dataset_name_or_id", "considered_models", "ensembling_allowed", "all_results",
                  "best_model_or_ensemble")
BEST_KEYS = ("result_on_crossval_pre_pp", "result_on_crossval_post_pp", "postprocessing_file", "some_plans_file",
             "selected_model_or_models")


# --- postprocessing.json -------------------------------------------------------


def clean_postprocessing_json(data: object, *, name: str = "postprocessing.json") -> CleanedJson:
    """Refuse (UnsafeJson) unless ``data`` is exactly what nnU-Net's determine_postprocessing writes,
    with allowlisted functions and keywords; returns it unchanged (no findings)."""
    top = _object(data, "", name, "nnU-Net's postprocessing.json")
    extra = [k for k in top if k not in POSTPROCESSING_KEYS]
    if extra:
        raise UnsafeJson(f"{child_pointer('', extra[0])}: unknown key in postprocessing.json", path=name)
    postprocessing_steps(top, name=name)
    out: dict[str, Any] = {}
    for key in POSTPROCESSING_KEYS:
        if key in ("input_folder", "postprocessed") and key in top:
            block = _object(top[key], f"/{key}", name, "an object of metrics")
            bad = [k for k in block if k not in SUMMARY_KEYS]
            if bad:
                raise UnsafeJson(f"{child_pointer('/' + key, bad[0])}: unknown key", path=name)
            out[key] = _metrics_block(block, f"/{key}", name)
        elif key in top:
            out[key] = top[key]
    return CleanedJson(out)


def postprocessing_steps(data: object, *, name: str = "postprocessing.json") -> list[tuple[str, str, dict[str, Any]]]:
    """The steps of a postprocessing.json as (module, function, keyword arguments), the arguments
    in the Python types nnU-Net pickles (regions as tuples); refused (UnsafeJson) unless every
    function and keyword is allowlisted and typed as nnU-Net writes it."""
    top = _object(data, "", name, "nnU-Net's postprocessing.json")
    for key in ("postprocessing_fns", "postprocessing_kwargs"):
        if key not in top:
            raise UnsafeJson(f"/{key}: missing", path=name)
    fns, kwargs = top["postprocessing_fns"], top["postprocessing_kwargs"]
    if not isinstance(fns, list) or not isinstance(kwargs, list):
        raise UnsafeJson("/postprocessing_fns and /postprocessing_kwargs must be lists", path=name)
    if len(fns) != len(kwargs):
        raise UnsafeJson(f"{len(fns)} postprocessing functions but {len(kwargs)} keyword sets", path=name)
    if len(fns) > MAX_POSTPROCESSING_STEPS:
        raise UnsafeJson(f"more than {MAX_POSTPROCESSING_STEPS} postprocessing steps", path=name)
    steps = []
    for i, (fn, arguments) in enumerate(zip(fns, kwargs, strict=True)):
        if not (isinstance(fn, str) and fn in POSTPROCESSING_FUNCTIONS):
            raise UnsafeJson(f"/postprocessing_fns/{i}: {_show(fn)} is not one of nnU-Net's postprocessing functions "
                             f"(allowed: {', '.join(sorted(POSTPROCESSING_FUNCTIONS))}); nnU-Net would call it",
                             path=name)
        pointer = f"/postprocessing_kwargs/{i}"
        arguments = _object(arguments, pointer, name, "an object of keyword arguments")
        allowed = POSTPROCESSING_KWARGS[fn]
        python_kwargs: dict[str, Any] = {}
        for key, value in arguments.items():
            if key not in allowed:
                raise UnsafeJson(f"{child_pointer(pointer, key)}: {fn} takes no keyword {_show(key)} "
                                 f"(allowed: {', '.join(sorted(allowed))})", path=name)
            where = child_pointer(pointer, key)
            python_kwargs[key] = (_labels_or_regions(value, where, name) if allowed[key] == "labels_or_regions"
                                  else _label(value, where, name))
        for key in REQUIRED_KWARGS[fn]:
            if key not in arguments:
                raise UnsafeJson(f"{pointer}: {fn} needs {key}", path=name)
        steps.append((POSTPROCESSING_FUNCTIONS[fn], fn, python_kwargs))
    return steps


def _label(value: object, pointer: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LABEL:
        raise UnsafeJson(f"{pointer}: {_show(value)} is not a label (an integer from 0 to {MAX_LABEL})", path=name)
    return value


def _region(value: object, pointer: str, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or len(value) > MAX_REGION_LABELS:
        raise UnsafeJson(f"{pointer}: {_show(value)} is not a region (a non-empty list of labels)", path=name)
    return tuple(_label(v, f"{pointer}/{i}", name) for i, v in enumerate(value))


def _labels_or_regions(value: object, pointer: str, name: str) -> int | list:
    """A label, or a list of labels and regions. A top-level list of labels is read as a list (what
    the first step, keep-largest-foreground, holds); a one-region step that nnU-Net wrote as a tuple
    reads the same way and selects the same voxels (remove_all_but_largest_component_from_segmentation
    takes the union of the labels either way)."""
    if not isinstance(value, list):
        return _label(value, pointer, name)
    if not value or len(value) > MAX_REGION_LABELS:
        raise UnsafeJson(f"{pointer}: {_show(value)} is not a label, a region or a non-empty list of those",
                         path=name)
    return [_region(v, f"{pointer}/{i}", name) if isinstance(v, list) else _label(v, f"{pointer}/{i}", name)
            for i, v in enumerate(value)]


# --- summary.json ----------------------------------------------------------------


def clean_summary_json(data: object, *, name: str = "summary.json") -> CleanedJson:
    """Keep the metrics (``foreground_mean``, ``mean``); drop ``metric_per_case`` and anything else."""
    top = _object(data, "", name, "nnU-Net's summary.json")
    findings = []
    out: dict[str, Any] = {}
    for key in top:
        if key in SUMMARY_KEYS:
            continue
        detail = ("case identifiers and prediction/reference file paths" if key == "metric_per_case"
                  else "not a metric nnU-Net's summary.json holds")
        findings.append(JsonFinding(child_pointer("", key), "dropped", detail))
    for key in SUMMARY_KEYS:
        if key not in top:
            raise UnsafeJson(f"/{key}: missing; not an nnU-Net summary.json", path=name)
    out.update(_metrics_block({k: top[k] for k in SUMMARY_KEYS}, "", name))
    return CleanedJson(out, findings)


def _metrics_block(block: dict, pointer: str, name: str) -> dict:
    out: dict[str, Any] = {}
    if "foreground_mean" in block:
        out["foreground_mean"] = _metrics(block["foreground_mean"], pointer + "/foreground_mean", name)
    if "mean" in block:
        mean = _object(block["mean"], pointer + "/mean", name, "an object of per-label metrics")
        out["mean"] = {}
        for key, metrics in mean.items():
            if not _LABEL_KEY.fullmatch(key):
                raise UnsafeJson(f"{child_pointer(pointer + '/mean', key)}: not a label or region key", path=name)
            out["mean"][key] = _metrics(metrics, child_pointer(pointer + "/mean", key), name)
    return out


def _metrics(value: object, pointer: str, name: str) -> dict:
    metrics = _object(value, pointer, name, "an object of metrics")
    for key, number in metrics.items():
        if not _METRIC_NAME.fullmatch(key):
            raise UnsafeJson(f"{child_pointer(pointer, key)}: not a metric name", path=name)
        if not _is_number_or_none(number):
            raise UnsafeJson(f"{child_pointer(pointer, key)}: {_show(number)} is not a number", path=name)
    return dict(metrics)


def _is_number_or_none(value: object) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


# --- inference_information.json --------------------------------------------------


def relative_results_path(path: str, dataset: str) -> str | None:
    """An absolute path nnU-Net wrote into inference_information.json, relative to its results folder:
    everything from the last path component equal to ``dataset`` on, "/"-separated ("\\" read as
    "/"); None when no component is ``dataset`` or the rest holds "." or ".." components."""
    parts = path.replace("\\", "/").split("/")
    if dataset not in parts:
        return None
    rest = parts[len(parts) - 1 - parts[::-1].index(dataset):]
    if any(p in ("", ".", "..") for p in rest):
        return None
    return "/".join(rest)


def relativize_inference_information(data: object, dataset: str, *, name: str) -> tuple[object, list[str]]:
    """inference_information.json as nnU-Net wrote it -> the package's form: the two paths relative
    to the results folder (an ensemble's ``plans.json``, which export does not ship, becomes its
    first member's, the file nnU-Net copied it from). Returns the data and the paths it could not
    place (empty when it placed both)."""
    top = _object(data, "", name, "nnU-Net's inference_information.json")
    best = top.get("best_model_or_ensemble")
    if not isinstance(best, dict):
        return data, ["/best_model_or_ensemble"]
    out = dict(top)
    out["best_model_or_ensemble"] = dict(best)
    unplaced = []
    for key in ("postprocessing_file", "some_plans_file"):
        value = best.get(key)
        relative = relative_results_path(value, dataset) if isinstance(value, str) else None
        if relative is not None and key == "some_plans_file":
            match = _ENSEMBLE_PLANS_RE.fullmatch(relative)
            members = ensemble_members(match["ensemble"]) if match else None
            if members is not None:
                relative = f"{dataset}/{members[0][0]}/plans.json"
        if relative is None:
            unplaced.append(f"/best_model_or_ensemble/{key}")
        else:
            out["best_model_or_ensemble"][key] = relative
    return out, unplaced


def clean_inference_information_json(data: object, *, name: str = "inference_information.json") -> CleanedJson:
    """The package form of inference_information.json: nnU-Net's keys, names that are plain names
    (they end up on command lines in inference_instructions.txt), the two paths relative to the
    results folder (``POSTPROCESSING_FILE_RE``, ``PLANS_FILE_RE``). Unknown keys are dropped; the
    rest is refused unless it has this shape."""
    top = _object(data, "", name, "nnU-Net's inference_information.json")
    findings = [JsonFinding(child_pointer("", k), "dropped", "not a key nnU-Net's find_best_configuration writes")
                for k in top if k not in INFERENCE_KEYS]
    for key in INFERENCE_KEYS:
        if key not in top:
            raise UnsafeJson(f"/{key}: missing; not an nnU-Net inference_information.json", path=name)
    folds = top["folds"]
    if not (isinstance(folds, list) and folds and len(folds) <= 64
            and all(isinstance(f, int) and not isinstance(f, bool) and 0 <= f < 10_000 for f in folds)):
        raise UnsafeJson(f"/folds: {_show(folds)} is not a list of fold numbers", path=name)
    dataset = top["dataset_name_or_id"]
    if not ((isinstance(dataset, int) and not isinstance(dataset, bool) and 0 <= dataset <= 999)
            or (isinstance(dataset, str) and (re.fullmatch(r"\d{1,3}", dataset) or _DATASET.fullmatch(dataset)))):
        raise UnsafeJson(f"/dataset_name_or_id: {_show(dataset)} is not a dataset id or name", path=name)
    considered = _list_of_names(top["considered_models"], "/considered_models", ("plans", "configuration", "trainer"),
                                name)
    if not isinstance(top["ensembling_allowed"], bool):
        raise UnsafeJson("/ensembling_allowed: not true or false", path=name)
    results = _object(top["all_results"], "/all_results", name, "an object of results")
    for key, value in results.items():
        if not (re.fullmatch(_MODEL_ID, key) or ensemble_members(key)) or not _is_number_or_none(value):
            raise UnsafeJson(f"{child_pointer('/all_results', key)}: not a model or ensemble name with its score",
                             path=name)
    best = _object(top["best_model_or_ensemble"], "/best_model_or_ensemble", name, "an object")
    for key in BEST_KEYS:
        if key not in best:
            raise UnsafeJson(f"/best_model_or_ensemble/{key}: missing", path=name)
    findings += [JsonFinding(child_pointer("/best_model_or_ensemble", k), "dropped", "not a key nnU-Net writes")
                 for k in best if k not in BEST_KEYS]
    for key in ("result_on_crossval_pre_pp", "result_on_crossval_post_pp"):
        if not _is_number_or_none(best[key]):
            raise UnsafeJson(f"/best_model_or_ensemble/{key}: not a number", path=name)
    pp_file = best["postprocessing_file"]
    if not (isinstance(pp_file, str) and POSTPROCESSING_FILE_RE.fullmatch(pp_file) and _path_ok(pp_file)):
        raise UnsafeJson(f"/best_model_or_ensemble/postprocessing_file: {_show(best['postprocessing_file'])} is not "
                         "a postprocessing.pkl path relative to the results folder", path=name)
    if not (isinstance(best["some_plans_file"], str) and PLANS_FILE_RE.fullmatch(best["some_plans_file"])
            and _path_ok(best["some_plans_file"])):
        raise UnsafeJson(f"/best_model_or_ensemble/some_plans_file: {_show(best['some_plans_file'])} is not a model "
                         "folder's plans.json path relative to the results folder", path=name)
    selected = _list_of_names(best["selected_model_or_models"], "/best_model_or_ensemble/selected_model_or_models",
                              ("configuration", "trainer", "plans_identifier"), name)
    if not 1 <= len(selected) <= 16:
        raise UnsafeJson("/best_model_or_ensemble/selected_model_or_models: no model selected", path=name)
    out = {key: top[key] for key in INFERENCE_KEYS}
    out["considered_models"] = considered
    out["all_results"] = dict(results)
    out["best_model_or_ensemble"] = {key: best[key] for key in BEST_KEYS}
    out["best_model_or_ensemble"]["selected_model_or_models"] = selected
    return CleanedJson(out, findings)


def selected_models(data: dict) -> list[str]:
    """The model folder names (``Trainer__Plans__configuration``) a cleaned inference_information.json selects."""
    return [f"{m['trainer']}__{m['plans_identifier']}__{m['configuration']}"
            for m in data["best_model_or_ensemble"]["selected_model_or_models"]]


def _path_ok(relative: str) -> bool:
    parts = relative.split("/")
    return all(p not in ("", ".", "..") and "\\" not in p and "\0" not in p for p in parts)


def _list_of_names(value: object, pointer: str, keys: tuple[str, ...], name: str) -> list[dict]:
    if not isinstance(value, list) or len(value) > 64:
        raise UnsafeJson(f"{pointer}: not a list", path=name)
    out = []
    for i, item in enumerate(value):
        item = _object(item, f"{pointer}/{i}", name, "an object")
        if set(item) != set(keys):
            raise UnsafeJson(f"{pointer}/{i}: keys must be {', '.join(keys)}", path=name)
        for key in keys:
            if not (isinstance(item[key], str) and _NAME.fullmatch(item[key]) and "__" not in item[key]):
                raise UnsafeJson(f"{pointer}/{i}/{key}: {_show(item[key])} is not a plain name", path=name)
        out.append({key: item[key] for key in keys})
    return out


def _object(value: object, pointer: str, name: str, what: str) -> dict:
    if not isinstance(value, dict):
        raise UnsafeJson(f"{pointer or '/'}: {type(value).__name__} where {what} was expected", path=name)
    return value


def score(value: object) -> float | None:
    """A metric as a float for display (None for a missing or non-finite one)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
