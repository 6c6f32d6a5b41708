"""Install what ``nnUNetv2_find_best_configuration`` left (docs/FORMAT.md, "The nnU-Net pipeline").

Into the staging folder, at nnU-Net's paths: each checked ``postprocessing.json`` gets the
``postprocessing.pkl`` nnU-Net reads beside it, written by ``nnseal.verify.postprocessing_pickle``
(never a shipped pickle); ``inference_information.json`` is written with the installed absolute
paths (as nnU-Net writes it) and ``inference_instructions.txt`` beside it, in the shape of
nnU-Net's ``print_inference_instructions``, by nnseal (no nnunetv2 import). Ensemble folders and
the two dataset-level files are committed with the model folders, in the same transaction
(``Staging.commit``). Torch-free.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from nnseal.format.layout import INFERENCE_INFORMATION, INFERENCE_INSTRUCTIONS
from nnseal.fsutil import open_new
from nnseal.verify.postprocessing_pickle import write_postprocessing_pickle

# nnU-Net's default_num_processes when nnUNet_def_n_proc is unset (nnunetv2/configuration.py).
DEFAULT_NUM_PROCESSES = 8


def write_pickles(stage, postprocessing: dict[str, Any]) -> None:
    """``postprocessing``: entry name of each postprocessing.json -> its checked, parsed content."""
    for name, data in sorted(postprocessing.items()):
        write_postprocessing_pickle(stage.path(name).with_name("postprocessing.pkl"), data, name=name)


def write_inference_files(stage, dataset: str, data: dict, results: Path, plans: dict[str, Any]) -> list[str]:
    """Stage ``<dataset>/inference_information.json`` (paths made absolute under ``results``) and
    ``<dataset>/inference_instructions.txt``; return both relative names. ``plans``: model folder
    name -> its parsed plans.json (for nnU-Net's previous-stage rule)."""
    installed = json.loads(json.dumps(data))
    best = installed["best_model_or_ensemble"]
    for key in ("postprocessing_file", "some_plans_file"):
        best[key] = str(results.joinpath(*best[key].split("/")))
    information = f"{dataset}/{INFERENCE_INFORMATION}"
    instructions = f"{dataset}/{INFERENCE_INSTRUCTIONS}"
    with open_new(stage.path(information)) as handle:  # as nnU-Net's save_json writes it
        handle.write(json.dumps(installed, sort_keys=True, indent=4).encode("utf-8"))
    with open_new(stage.path(instructions)) as handle:
        handle.write(inference_instructions(installed, plans).encode("utf-8"))
    return [information, instructions]


def inference_instructions(info: dict, plans: dict[str, Any]) -> str:
    """The text nnU-Net's print_inference_instructions writes for ``info`` (installed paths), each
    path shell-quoted where it needs it."""
    lines = ["***Run inference like this:***\n"]
    selected = info["best_model_or_ensemble"]["selected_model_or_models"]
    is_ensemble = len(selected) > 1
    if is_ensemble:
        lines.append("An ensemble won! What a surprise! Run the following commands to run predictions with the "
                     "ensemble members:\n")
    outputs = []
    for j, model in enumerate(selected):
        output = f"OUTPUT_FOLDER_MODEL_{j + 1}" if is_ensemble else "OUTPUT_FOLDER"
        outputs.append(output)
        fold_str = "".join(f" {f}" for f in info["folds"])
        command = (f"nnUNetv2_predict -d {info['dataset_name_or_id']} -i INPUT_FOLDER -o {output} -f {fold_str} "
                   f"-tr {model['trainer']} -c {model['configuration']} -p {model['plans_identifier']}")
        folder = f"{model['trainer']}__{model['plans_identifier']}__{model['configuration']}"
        configurations = (plans.get(folder) or {}).get("configurations") or {}
        if isinstance(configurations, dict) and "previous_stage" in configurations:
            command += " -prev_stage_predictions OUTPUT_FOLDER_PREV_STAGE"
        if is_ensemble:
            command += " " + _nnunet_long_option("save_probabilities")
        lines.append(command)
    if is_ensemble:
        lines.append("\nThe run ensembling with:\n")
        lines.append(f"nnUNetv2_ensemble -i {' '.join(outputs)} -o OUTPUT_FOLDER -np {DEFAULT_NUM_PROCESSES}")
    best = info["best_model_or_ensemble"]
    lines.append("\n***Once inference is completed, run postprocessing like this:***\n")
    lines.append(f"nnUNetv2_apply_postprocessing -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP "
                 f"-pp_pkl_file {shlex.quote(best['postprocessing_file'])} -np {DEFAULT_NUM_PROCESSES} "
                 f"-plans_json {shlex.quote(best['some_plans_file'])}")
    return "".join(line + "\n" for line in lines)


def _nnunet_long_option(name: str) -> str:
    """An option of nnU-Net's commands (not of nnseal's: the library names none of those)."""
    return "--" + name


def legacy_pipeline_entries(archive, names: list[str], models: list[str], warnings: list[str]
                            ) -> tuple[dict[str, Any], dict | None]:
    """find_best_configuration's files in a zip from nnU-Net's own exporter (``install --unsigned``):
    the cleaned postprocessing.json and summary.json of the installed models and of ensembles whose
    members are all installed (entry name -> parsed JSON), and inference_information.json in the
    package form when what it recommends is installed (else None). Its postprocessing.pkl files are
    never read. A postprocessing.json outside the allowlist refuses the install (UnsafeJson)."""
    from nnseal.errors import Refused
    from nnseal.format.layout import EntryKind, classify
    from nnseal.format.limits import MAX_JSON_BYTES
    from nnseal.sanitize.jsonclean import PIPELINE_KIND_BY_FILE_NAME, clean_json_file, load_json_bytes
    from nnseal.sanitize.pipeline_json import clean_inference_information_json, relativize_inference_information
    from nnseal.verify.verdict import check_inference_references

    files: dict[str, Any] = {}
    information = None
    for name in sorted(names):
        try:
            entry = classify(name)
        except Refused:
            continue
        if entry.kind in (EntryKind.POSTPROCESSING, EntryKind.SUMMARY):
            owners = [entry.model] if entry.model else _ensemble_models(entry.ensemble or "")
            if not owners or any(m not in models for m in owners):
                continue
            data = archive.read(name, max_size=MAX_JSON_BYTES)
            cleaned = clean_json_file(PIPELINE_KIND_BY_FILE_NAME[entry.filename or ""], data, name=name)
            warnings.extend(f"{name}: {f.action} {f.path} ({f.detail})" for f in cleaned.findings)
            files[name] = cleaned.data
        elif entry.kind is EntryKind.INFERENCE:
            information = name
    if information is None:
        return files, None
    dataset = information.split("/")[0]
    try:
        data, unplaced = relativize_inference_information(
            load_json_bytes(archive.read(information, max_size=MAX_JSON_BYTES), name=information), dataset,
            name=information)
        if unplaced:
            raise Refused(f"{unplaced[0]} is not a path inside this dataset's results folder")
        cleaned = clean_inference_information_json(data, name=information)
        installed = set(files) | {f"{m}/plans.json" for m in models}
        check_inference_references(cleaned.data, installed, name=information)
    except Refused as err:
        warnings.append(f"dropped {information}: {err.reason}")
        return files, None
    return files, cleaned.data  # type: ignore[return-value]


def _ensemble_models(folder: str) -> list[str]:
    from nnseal.format.layout import ensemble_members

    dataset, _, name = folder.partition("/ensembles/")
    members = ensemble_members(name)
    return [f"{dataset}/{m}" for m in members[0]] if members else []
