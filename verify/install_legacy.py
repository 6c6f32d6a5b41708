"""Install a zip made by nnU-Net's own exporter (``--unsigned``): keep only what inference
needs, clean the JSON, sanitize and rebuild every checkpoint, drop pickles unread; then the
same staging and commit as a signed package (``nnseal.verify.staging``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from nnseal.errors import Hint, ModelLayoutError, Refused
from nnseal.format.layout import ENSEMBLES, INFERENCE_INFORMATION, INFERENCE_INSTRUCTIONS
from nnseal.progress import overall_bar
from nnseal.sanitize.jsonclean import CleanedJson
from nnseal.verify.consistency import check_checkpoint_matches_model, check_dataset_id_free, check_plans_match_model
from nnseal.verify.install import (
    UNSIGNED_WARNING,
    InstallReport,
    commit,
    extract_entry,
    note_already_installed,
    note_late_signals,
    write_model_receipt,
)
from nnseal.verify.pipeline_install import legacy_pipeline_entries, write_inference_files, write_pickles
from nnseal.verify.staging import Staging, check_dataset_destinations, check_destinations


def install_legacy(archive, results: Path, report: InstallReport, *, force: bool, package_sha256: str | None,
                    progress: bool) -> None:
    """A zip from nnUNetv2_export_model_to_zip: keep only what inference needs, rebuilt clean."""
    from nnseal.format.layout import legacy_model_entries
    from nnseal.format.oms import SIGNATURE_NAME
    from nnseal.sanitize.checkpoint import load_sanitized
    from nnseal.sanitize.jsonclean import KIND_BY_FILE_NAME, clean_json_file
    from nnseal.verify.rebuild import assemble, write_checkpoint

    if archive.get(SIGNATURE_NAME) is not None:
        raise Refused("this is a signed nnseal package", hint=Hint.SIGNED)
    report.warnings.append(UNSIGNED_WARNING)
    kept, dropped = legacy_model_entries(archive.names())
    for name in dropped:
        report.dropped.append(name)
        if name.lower().endswith((".pkl", ".pickle")):
            report.warnings.append(f"dropped pickle '{name}' without loading it")
    if not kept:
        raise ModelLayoutError("no nnU-Net model folder (DatasetXXX_Name/Trainer__Plans__configuration) in this zip")
    datasets = {m.split("/")[0] for m in kept}
    if len(datasets) > 1:
        raise ModelLayoutError(f"zip spans several datasets: {', '.join(sorted(datasets))}")
    models = sorted(kept)
    for model in models:
        for required in ("plans.json", "dataset.json"):
            if f"{model}/{required}" not in kept[model]:
                raise ModelLayoutError(f"model folder '{model}' lacks {required}")
        if not any(n.endswith(".pth") for n in kept[model]):
            raise ModelLayoutError(f"model folder '{model}' has no checkpoint")
    # find_best_configuration's results, from their JSON only (verify/pipeline_install.py).
    dataset = models[0].split("/")[0]
    pipeline, information = legacy_pipeline_entries(archive, report.dropped, models, report.warnings)
    report.dropped = [n for n in report.dropped if n not in pipeline]
    ensembles = sorted({n.rsplit("/", 1)[0] for n in pipeline if n.split("/")[1] == ENSEMBLES})
    units = ensembles + ([f"{dataset}/{INFERENCE_INFORMATION}", f"{dataset}/{INFERENCE_INSTRUCTIONS}"]
                         if information is not None else [])
    if information is not None:
        report.dropped.remove(f"{dataset}/{INFERENCE_INFORMATION}")
    if not force and note_already_installed(report, results, models, units, content_sha256=None,
                                            package_sha256=package_sha256):
        return
    destinations = check_destinations(results, models, force)
    check_dataset_id_free(results, datasets)  # before staging (verify/consistency.py)
    unit_destinations = check_dataset_destinations(results, units, force)
    checkpoints = [n for model in models for n in kept[model] if n.endswith(".pth")]
    shown = overall_bar(progress, sum(archive.entry(n).size for n in checkpoints), len(checkpoints), "install")
    with Staging(results) as stage, shown as overall:
        for name, data in sorted(pipeline.items()):
            stage.path(name).write_bytes(CleanedJson(data).to_bytes())
        write_pickles(stage, {n: d for n, d in pipeline.items() if n.endswith("/postprocessing.json")})
        dataset_files: list[str] = []
        for model in models:
            parsed: dict[str, Any] = {}
            for name in sorted(n for n in kept[model] if n.endswith(".json")):
                cleaned = clean_json_file(KIND_BY_FILE_NAME[name.rsplit("/", 1)[1]], archive.read(name), name=name)
                target = stage.path(name)
                target.write_bytes(cleaned.to_bytes())
                parsed[name.rsplit("/", 1)[1]] = cleaned.data
                report.warnings.extend(f"{name}: {f.action} {f.path} ({f.detail})" for f in cleaned.findings)
            check_plans_match_model(parsed["plans.json"], model, name=f"{model}/plans.json")  # verify/consistency.py
            for name in sorted(n for n in kept[model] if n.endswith(".pth")):
                scratch = stage.scratch(name)
                size = archive.entry(name).size
                # Done once its .pth is written; its bytes count as they are read.
                with overall.item(name.rsplit("/", 2)[-2], size, size) as bar:
                    extract_entry(archive, name, scratch, bar)
                    sanitized = load_sanitized(scratch)
                    scratch.unlink()
                    # The same check the signed path's verdict makes, on what sanitizing kept (verify/consistency.py).
                    check_checkpoint_matches_model(sanitized.meta, model, name.split("/")[2].removeprefix("fold_"),
                                                   name=name)
                    checkpoint = assemble(sanitized.tensors, sanitized.names, sanitized.aliases, sanitized.meta,
                                          parsed["plans.json"], parsed["dataset.json"])
                    write_checkpoint(checkpoint, stage.path(name))
                    del sanitized, checkpoint
                report.checkpoints.append(name)
        if information is not None:
            plans = {m.split("/")[1]: json.loads(stage.path(f"{m}/plans.json").read_bytes()) for m in models}
            dataset_files = write_inference_files(stage, dataset, information, results, plans)
        for model in models:
            write_model_receipt(stage, model, report, package_sha256, None, dataset_files=dataset_files,
                                trained_with=_debug_json_versions(archive, model))
        for ensemble in ensembles:
            write_model_receipt(stage, ensemble, report, package_sha256, None)
        commit(stage, models, destinations, report, force, unit_destinations)
    note_late_signals(stage, report)


def _debug_json_versions(archive, model: str) -> dict[str, dict[str, str]]:
    """What the zip's debug.json files (dropped, never installed) say the folds were trained with."""
    from nnseal.compat import MAX_DEBUG_JSON_BYTES, debug_json_versions, torch_version_in_debug_json

    debug_re = re.compile(rf"^{re.escape(model)}/fold_([0-4]|all)/debug\.json$")
    names = [n for n in archive.names() if debug_re.match(n) and archive.entry(n).size <= MAX_DEBUG_JSON_BYTES]
    return debug_json_versions(torch_version_in_debug_json(archive.read(n)) for n in names)
