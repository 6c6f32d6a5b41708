"""Install a signed nnseal package: the shared verdict (signature, entry set, layout, content),
the destination checks (dataset id, rollback), then staged extraction hashing exactly the bytes
written (checkpoints streamed straight into their rebuilt .pth), receipts, and one commit for
all model folders (``nnseal.verify.staging``)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nnseal.compat import read_trained_with
from nnseal.errors import Hint, SignatureError, TamperedPackage
from nnseal.format.card import TRAINED_WITH_FIELD
from nnseal.format.layout import INFERENCE_INFORMATION, INFERENCE_INSTRUCTIONS, EntryKind, PackageEntry
from nnseal.progress import overall_bar
from nnseal.verify.consistency import check_dataset_id_free
from nnseal.verify.install import (
    InstallReport,
    commit,
    extract_entry,
    note_already_installed,
    note_late_signals,
    write_model_receipt,
)
from nnseal.verify.pipeline_install import write_inference_files, write_pickles
from nnseal.verify.receipt import content_digest
from nnseal.verify.rollback import check_not_downgrade
from nnseal.verify.staging import Staging, check_dataset_destinations, check_destinations

# Checkpoints rebuilt at once; more than the cores only adds contention on the disk.
MAX_REBUILD_THREADS = 4


def install_signed(archive, results: Path, report: InstallReport, *, trusted_keys, trust_folder, force: bool,
                    package_sha256: str | None, progress: bool, allow_downgrade: bool = False) -> None:
    from nnseal.format.oms import SIGNATURE_NAME
    from nnseal.format.trust import load_trust_anchors, load_trusted_keys
    from nnseal.verify.verdict import judge_package

    signature = archive.get(SIGNATURE_NAME)
    if signature is None:
        raise SignatureError(f"no {SIGNATURE_NAME}: not a signed nnseal package", hint=Hint.UNSIGNED)
    keys = load_trusted_keys(list(trusted_keys), trust_folder)
    anchors = load_trust_anchors(trust_folder)
    if not keys and not anchors:
        raise SignatureError("no trusted key", hint=Hint.TRUSTED_KEY)
    # The same decision verify and scan make; install refuses on its first problem, unextracted.
    verdict = judge_package(archive, [k.key for k in keys], anchors)
    manifest = verdict.manifest
    if verdict.problems or manifest is None:
        first = verdict.problems[0] if verdict.problems else None
        raise first.error if first and first.error else TamperedPackage("the signed manifest could not be read")
    report.signer_fingerprint = manifest.signer_fingerprint
    report.method, report.signer = manifest.method, manifest.signer
    entries = verdict.entries
    card_model = verdict.card["model"] if verdict.card and isinstance(verdict.card.get("model"), dict) else None
    trained_with = read_trained_with(verdict.card.get(TRAINED_WITH_FIELD)) if verdict.card else {}
    models = sorted({e.model for e in entries if e.model})
    # find_best_configuration's dataset-level results: ensemble folders, inference_information.json.
    dataset = models[0].split("/")[0]
    ensembles = sorted({e.ensemble for e in entries if e.ensemble})
    inference = [e for e in entries if e.kind is EntryKind.INFERENCE]
    units = ensembles + ([f"{dataset}/{INFERENCE_INFORMATION}", f"{dataset}/{INFERENCE_INSTRUCTIONS}"]
                         if inference else [])
    content_sha256 = content_digest(manifest.resources)
    if not force and note_already_installed(report, results, models, units, content_sha256=content_sha256,
                                            package_sha256=package_sha256):
        return
    destinations = check_destinations(results, models, force)
    unit_destinations = check_dataset_destinations(results, units, force)
    # Before staging: one name per dataset id (verify/consistency.py), no rollback (verify/rollback.py).
    check_dataset_id_free(results, {model.split("/")[0] for model in models})
    check_not_downgrade(destinations, card=verdict.card, signer_fingerprint=manifest.signer_fingerprint,
                        allow_downgrade=allow_downgrade)
    total = sum(archive.entry(e.name).size for e in entries)
    rebuilt = sum(1 for e in entries if e.kind is EntryKind.CHECKPOINT)
    with Staging(results) as stage, overall_bar(progress, total, rebuilt, "install") as bar:
        for entry in entries:
            if entry.kind == "checkpoint":
                continue  # streamed straight into its .pth by _finish_model: one write, one hash
            if entry.kind is EntryKind.INFERENCE:
                continue  # written with the installed paths below, from the verdict's checked JSON
            target = stage.path(entry.name)
            digest = extract_entry(archive, entry.name, target, bar)
            if digest != manifest.resources[entry.name]:
                raise TamperedPackage(f"entry '{entry.name}' does not match the signed manifest")
        write_pickles(stage, {e.name: verdict.json[e.name] for e in entries if e.kind is EntryKind.POSTPROCESSING})
        dataset_files = []
        if inference:
            plans = {model.split("/")[1]: verdict.json[f"{model}/plans.json"] for model in models}
            dataset_files = write_inference_files(stage, dataset, verdict.json[inference[0].name], results, plans)
        for model in models:
            written = _finish_model(stage, model, [e for e in entries if e.model == model], verdict.json, report,
                                    archive, manifest.resources, bar)
            write_model_receipt(stage, model, report, package_sha256, card_model, known_digests=written,
                                trained_with=trained_with, dataset_files=dataset_files,
                                content_sha256=content_sha256)
        for ensemble in ensembles:
            write_model_receipt(stage, ensemble, report, package_sha256, card_model, content_sha256=content_sha256)
        commit(stage, models, destinations, report, force, unit_destinations)
    note_late_signals(stage, report)


def _finish_model(stage: Staging, model: str, entries: list[PackageEntry], json_entries: dict[str, Any],
                  report: InstallReport, archive, digests: dict[str, str], bar) -> dict[Path, str]:
    """Rebuild nnU-Net checkpoints straight from the package's safetensors entries (headers checked
    as they are read, bytes hashed against ``digests``, the signed manifest, as they pass).
    ``json_entries`` is the verdict's parsed JSON, by entry name.

    Returns the sha256 of each checkpoint written, hashed as it was written (the receipt needs it).
    """
    from nnseal.verify.rebuild import rebuild_checkpoint_from_entry

    model_dir = stage.path(model)
    parsed = {entry.filename: json_entries[entry.name] for entry in entries if entry.kind is EntryKind.JSON}
    jobs = [(entry.name, stage.path(entry.name).with_suffix(".pth"))
            for entry in entries if entry.kind is EntryKind.CHECKPOINT]

    def rebuild(job: tuple[str, Path]) -> str:
        name, pth = job
        digest = rebuild_checkpoint_from_entry(archive, name, digests[name], parsed["plans.json"],
                                               parsed["dataset.json"], pth, bar=bar)
        bar.item_done()
        return digest

    # Hashing, copying and fsync release the GIL: one thread per core keeps every core busy.
    # A refusal surfaces from map(); leaving the pool waits for the others, then staging goes.
    workers = min(len(jobs), os.cpu_count() or 1, MAX_REBUILD_THREADS)
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nnseal-rebuild") as pool:
            digests_written = list(pool.map(rebuild, jobs))
    else:
        digests_written = [rebuild(job) for job in jobs]
    written: dict[Path, str] = {}
    for (_, pth), digest in zip(jobs, digests_written, strict=True):
        written[pth] = digest
        report.checkpoints.append(f"{model}/{pth.relative_to(model_dir)}")
    return written
