"""What export ships of ``nnUNetv2_find_best_configuration``'s results (docs/FORMAT.md, "The nnU-Net pipeline").

Picked up when present, for the exported model folders only:

- ``<model>/crossval_results_folds_<F>/postprocessing.json`` and ``summary.json``;
- ``<dataset>/ensembles/<ensemble>/postprocessing.json`` and ``summary.json`` for each ensemble whose
  members are all exported (what nnU-Net's own exporter ships);
- ``<dataset>/inference_information.json``, its paths made relative to the results folder, when the
  recommendation it holds is wholly in the package.

postprocessing.json must pass the allowlist (``nnseal.sanitize.pipeline_json``) or export is refused;
summary.json loses ``metric_per_case``. ``postprocessing.pkl`` is never read. What is not shipped is
said in the report's ``skipped``, with why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nnseal.format.layout import (
    CROSSVAL_PREFIX,
    ENSEMBLES,
    INFERENCE_INFORMATION,
    PIPELINE_FILES,
    ensemble_members,
    folds_string_ok,
)


@dataclass
class PipelineFiles:
    entries: list[tuple[str, bytes]] = field(default_factory=list)  # (entry name, cleaned bytes)
    findings: dict[str, list[dict]] = field(default_factory=dict)  # entry name -> what cleaning changed
    skipped: list[str] = field(default_factory=list)  # "path: why"


def collect_pipeline_files(dataset_dir: Path, models: list[str]) -> PipelineFiles:
    """``models``: the exported model folder names (``Trainer__Plans__cfg``) under ``dataset_dir``."""
    out = PipelineFiles()
    dataset = dataset_dir.name
    for model in sorted(models):
        for folder in sorted((dataset_dir / model).glob(CROSSVAL_PREFIX + "*")):
            if not folder.is_dir() or folder.is_symlink():
                continue
            if not folds_string_ok(folder.name.removeprefix(CROSSVAL_PREFIX)):
                out.skipped.append(f"{dataset}/{model}/{folder.name}: not a crossval_results_folds_<folds> name "
                                   "nnU-Net writes")
                continue
            _add_folder(out, folder, f"{dataset}/{model}/{folder.name}")
    ensembles = dataset_dir / ENSEMBLES
    if ensembles.is_dir() and not ensembles.is_symlink():
        for folder in sorted(ensembles.iterdir()):
            if not folder.is_dir() or folder.is_symlink():
                continue
            members = ensemble_members(folder.name)
            if members is None:
                out.skipped.append(f"{dataset}/{ENSEMBLES}/{folder.name}: not an nnU-Net ensemble folder "
                                   "name")
                continue
            absent = [m for m in members[0] if m not in models]
            if absent:
                out.skipped.append(f"{dataset}/{ENSEMBLES}/{folder.name}: member {absent[0]} is not exported")
                continue
            _add_folder(out, folder, f"{dataset}/{ENSEMBLES}/{folder.name}")
    _add_inference_information(out, dataset_dir, models)
    return out


def _add_folder(out: PipelineFiles, folder: Path, prefix: str) -> None:
    from nnseal.sanitize.jsonclean import PIPELINE_KIND_BY_FILE_NAME, clean_json_file

    for file_name in sorted(PIPELINE_FILES):
        source = folder / file_name
        if not source.is_file():
            if file_name == "postprocessing.json" and (folder / "postprocessing.pkl").is_file():
                out.skipped.append(f"{prefix}/postprocessing.pkl: a pickle, and no postprocessing.json "
                                   "beside it to rebuild it from")
            continue
        cleaned = clean_json_file(PIPELINE_KIND_BY_FILE_NAME[file_name], source.read_bytes(), name=str(source))
        name = f"{prefix}/{file_name}"
        out.entries.append((name, cleaned.to_bytes()))
        out.findings[name] = [vars(f) for f in cleaned.findings]


def _add_inference_information(out: PipelineFiles, dataset_dir: Path, models: list[str]) -> None:
    from nnseal.errors import Refused
    from nnseal.sanitize.jsonclean import clean_json_file, load_json_bytes
    from nnseal.sanitize.pipeline_json import (
        POSTPROCESSING_FILE_RE,
        clean_inference_information_json,
        relativize_inference_information,
        selected_models,
    )

    source = dataset_dir / INFERENCE_INFORMATION
    if not source.is_file():
        return
    dataset = dataset_dir.name
    data, unplaced = relativize_inference_information(load_json_bytes(source.read_bytes(), name=str(source)),
                                                      dataset, name=str(source))
    if unplaced:
        out.skipped.append(f"{dataset}/{INFERENCE_INFORMATION}: {unplaced[0]} is not a path inside this "
                           "dataset's results folder")
        return
    try:
        cleaned = clean_inference_information_json(data, name=str(source))
    except Refused as err:
        out.skipped.append(f"{dataset}/{INFERENCE_INFORMATION}: {err.reason}")
        return
    best = cleaned.data["best_model_or_ensemble"]  # type: ignore[index]
    shipped = {name for name, _ in out.entries}
    pp_json = best["postprocessing_file"].removesuffix(".pkl") + ".json"
    absent = [m for m in selected_models(cleaned.data) if m not in models]  # type: ignore[arg-type]
    if absent:
        out.skipped.append(f"{dataset}/{INFERENCE_INFORMATION}: the recommended model {absent[0]} is not "
                           "exported")
    elif pp_json not in shipped or POSTPROCESSING_FILE_RE.fullmatch(best["postprocessing_file"]) is None:
        out.skipped.append(f"{dataset}/{INFERENCE_INFORMATION}: its postprocessing "
                           f"({best['postprocessing_file']}) is not exported")
    elif best["some_plans_file"].split("/")[1] not in models:
        out.skipped.append(f"{dataset}/{INFERENCE_INFORMATION}: its plans file ({best['some_plans_file']}) is not "
                           "exported")
    else:
        name = f"{dataset}/{INFERENCE_INFORMATION}"
        final = clean_json_file("inference_information", cleaned.to_bytes(), name=name)
        out.entries.append((name, final.to_bytes()))
        out.findings[name] = [vars(f) for f in cleaned.findings]
