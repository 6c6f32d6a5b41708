"""Install a signed nnseal package: signature, entry set, layout, then staged extraction
hashing exactly the bytes written, checkpoint rebuild, receipts, and one commit for all
model folders (``nnseal.verify.staging``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nnseal.errors import Hint, InvalidSafetensors, SignatureError, TamperedPackage
from nnseal.format.layout import EntryKind, PackageEntry
from nnseal.progress import byte_bar
from nnseal.verify.install import InstallReport, commit, extract_entry, note_late_signals, write_model_receipt
from nnseal.verify.staging import Staging, check_destinations


def install_signed(archive, results: Path, report: InstallReport, *, trusted_keys, trust_folder, force: bool,
                   package_sha256: str | None, progress: bool) -> None:
    from nnseal.format.oms import SIGNATURE_NAME
    from nnseal.format.trust import load_trusted_keys
    from nnseal.verify.verdict import judge_package

    signature = archive.get(SIGNATURE_NAME)
    if signature is None:
        raise SignatureError(f"no {SIGNATURE_NAME}: not a signed nnseal package", hint=Hint.UNSIGNED)
    keys = load_trusted_keys(list(trusted_keys), trust_folder)
    if not keys:
        raise SignatureError("no trusted key", hint=Hint.TRUSTED_KEY)
    # The same decision verify and scan make; install refuses on its first problem, unextracted.
    verdict = judge_package(archive, [k.key for k in keys])
    manifest = verdict.manifest
    if verdict.problems or manifest is None:
        first = verdict.problems[0] if verdict.problems else None
        raise first.error if first and first.error else TamperedPackage("the signed manifest could not be read")
    report.signer_fingerprint = manifest.signer_fingerprint
    entries = verdict.entries
    card_model = verdict.card["model"] if verdict.card and isinstance(verdict.card.get("model"), dict) else None
    models = sorted({e.model for e in entries if e.model})
    destinations = check_destinations(results, models, force)
    total = sum(archive.entry(e.name).size for e in entries)
    with Staging(results) as stage, byte_bar(progress, total, "install") as bar:
        for entry in entries:
            target = stage.path(entry.name)
            digest = extract_entry(archive, entry.name, target, bar)
            if digest != manifest.resources[entry.name]:
                raise TamperedPackage(f"entry '{entry.name}' does not match the signed manifest")
        for model in models:
            written = _finish_model(stage, model, [e for e in entries if e.model == model], verdict.json, report)
            write_model_receipt(stage, model, report, package_sha256, card_model, known_digests=written)
        commit(stage, models, destinations, report, force)
    note_late_signals(stage, report)


def _finish_model(stage: Staging, model: str, entries: list[PackageEntry], json_entries: dict[str, Any],
                  report: InstallReport) -> dict[Path, str]:
    """Rebuild nnU-Net checkpoints from the staged safetensors files (their headers are checked
    again as they are read). ``json_entries`` is the verdict's parsed JSON, by entry name.

    Returns the sha256 of each checkpoint written, hashed as it was written (the receipt needs it).
    """
    from nnseal.verify.rebuild import rebuild_from_safetensors, write_checkpoint

    model_dir = stage.path(model)
    parsed = {entry.filename: json_entries[entry.name] for entry in entries if entry.kind is EntryKind.JSON}
    written: dict[Path, str] = {}
    for entry in entries:
        if entry.kind != "checkpoint":
            continue
        path = stage.path(entry.name)
        try:  # validates the header before anything else is read: hostile headers stop here
            checkpoint = rebuild_from_safetensors(path, parsed["plans.json"], parsed["dataset.json"])
        except InvalidSafetensors as err:
            raise InvalidSafetensors(f"entry '{entry.name}': {err.reason}") from None
        pth = path.with_suffix(".pth")
        written[pth] = write_checkpoint(checkpoint, pth)
        del checkpoint
        path.unlink()
        report.checkpoints.append(f"{model}/{pth.relative_to(model_dir)}")
    return written
