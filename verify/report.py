"""`verify` and `inspect` of a package: read-only, torch-free, nothing extracted."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnseal.errors import EnvironmentProblem, Refused, SignatureError
from nnseal.format.layout import CARD_NAME
from nnseal.format.limits import MAX_BUNDLE_BYTES, MAX_CARD_BYTES
from nnseal.format.oms import SIGNATURE_NAME
from nnseal.format.trust import TrustAnchors
from nnseal.fsutil import package_size
from nnseal.verify.problems import Problem, ProblemKind
from nnseal.verify.verdict import SignatureStatus

__all__ = ["InspectReport", "SignatureStatus", "VerifyReport", "inspect_package", "verify_package"]


@dataclass
class VerifyReport:
    package: str
    signature: SignatureStatus = SignatureStatus.MISSING
    signer_fingerprint: str | None = None
    signer_name: str | None = None  # the trusted key's name (trust folder or key file), when one verified it
    entries: list[dict] = field(default_factory=list)  # {name, bytes, sha256 (as hashed; None if not signed)}
    package_bytes: int = 0  # the zip file's size on disk
    problems: list[Problem] = field(default_factory=list)
    method: str | None = None  # "key", "certificate" or "sigstore"
    signer: str | None = None  # who signed, in words

    @property
    def ok(self) -> bool:
        return self.signature is SignatureStatus.VALID and not self.problems

    @property
    def signed_entries(self) -> int:
        """Entries other than the signature itself."""
        return sum(1 for e in self.entries if e["name"] != SIGNATURE_NAME)

    @property
    def entries_bytes(self) -> int:
        return sum(e["bytes"] for e in self.entries)

    def add(self, kind: ProblemKind, message: str, subject: str | None = None) -> None:
        self.problems.append(Problem(kind, message, subject))

    def to_json(self) -> dict:
        return {"package": self.package, "ok": self.ok, "signature": self.signature.value,
                "signer_fingerprint": self.signer_fingerprint, "signer_name": self.signer_name,
                "method": self.method, "signer": self.signer, "package_bytes": self.package_bytes,
                "entries": self.entries, "entries_bytes": self.entries_bytes,
                "problems": [p.message for p in self.problems]}


@dataclass
class InspectReport:
    """What a package says about itself (``inspect_package``); nothing in it is verified."""

    package: str
    card: dict | None = None
    signer_fingerprint: str | None = None
    signer_trusted: bool = False
    signer_name: str | None = None  # the trusted key's name, when the key is trusted
    method: str | None = None
    signer: str | None = None
    models: dict[str, dict] = field(default_factory=dict)  # folder -> {folds, checkpoints, bytes}
    entries: list[dict] = field(default_factory=list)  # {name, bytes, stored_bytes}
    package_bytes: int = 0  # the zip file's size on disk
    notes: list[str] = field(default_factory=list)
    # Cross-validation headline per configuration or ensemble folder (postprocessing.json, else summary.json):
    # {"dice": foreground mean Dice, "dice_postprocessed": the same after postprocessing (or None)}
    metrics: dict[str, dict] = field(default_factory=dict)

    @property
    def entries_bytes(self) -> int:
        """The entries' uncompressed sizes, added up (``package_bytes`` is the zip's size)."""
        return sum(e["bytes"] for e in self.entries)

    def to_json(self) -> dict:
        """Collections as lists of objects, as in every command's JSON (docs/JSON.md)."""
        return {"package": self.package, "verified": False, "card": self.card,
                "signer_fingerprint": self.signer_fingerprint, "signer_trusted": self.signer_trusted,
                "signer_name": self.signer_name, "method": self.method, "signer": self.signer,
                "models": [{"folder": folder, **model} for folder, model in sorted(self.models.items())],
                "entries": self.entries, "entries_bytes": self.entries_bytes, "package_bytes": self.package_bytes,
                "notes": self.notes,
                "metrics": [{"folder": folder, **values} for folder, values in sorted(self.metrics.items())]}


def verify_package(zip_file: str | os.PathLike, trusted_keys: Sequence[str | os.PathLike] = (), *,
                   trust_folder: str | os.PathLike | None = None, workers: int | None = None,
                   limits=None, anchors: TrustAnchors | None = None) -> VerifyReport:
    """Check the signature against the trusted keys, then every entry's sha256 against the manifest.

    ``zip_file`` may also be a folder package (``nnseal export --folder``): its files are the
    entries, checked by the same rules (``nnseal.readers.folder_archive``).

    The trusted keys are the key files ``trusted_keys`` and, when it is given, ``trust_folder``'s keys.
    Certificate and Sigstore signatures are checked against ``anchors`` (trusted CAs, Sigstore
    identities, time and Sigstore root) plus ``trust_folder``'s CAs and identities.

    Every problem found is reported (bad signature, unknown signer, missing, extra,
    modified entries, entries outside the layout). A structurally hostile zip raises
    ``HostileArchive`` instead: nothing in it can be read with confidence.
    """
    from nnseal.format.trust import load_trust_anchors, load_trusted_keys
    from nnseal.readers.folder_archive import open_package
    from nnseal.verify.verdict import judge_package

    path = Path(zip_file)
    report = VerifyReport(package=str(path))
    with open_package(path, limits) as archive:
        report.package_bytes = package_size(path)
        names = [n for n in archive.names() if n != SIGNATURE_NAME]
        keys = load_trusted_keys(list(trusted_keys), trust_folder)
        anchors = anchors or TrustAnchors()
        anchors = load_trust_anchors(trust_folder, cas=anchors.cas, sigstore=anchors.sigstore,
                                     validation_time=anchors.validation_time,
                                     sigstore_trust_config=anchors.sigstore_trust_config)
        verdict = judge_package(archive, [k.key for k in keys], anchors)
        report.signature = verdict.signature
        report.problems = list(verdict.problems)
        if verdict.manifest is not None:
            report.signer_fingerprint = verdict.manifest.signer_fingerprint
            report.method, report.signer = verdict.manifest.method, verdict.manifest.signer
            if verdict.manifest.verified:
                report.signer_name = next((k.name for k in keys if k.fingerprint == report.signer_fingerprint),
                                          None)
            resources = verdict.manifest.resources
            present = [n for n in names if n in resources]
            digests = archive.sha256_all(present, workers=workers)
            for name in sorted(digests):
                if digests[name] != resources[name]:
                    report.add(ProblemKind.MODIFIED_ENTRY, f"modified entry: {name}", name)
        else:
            digests = {}
        report.entries = [{"name": n, "bytes": archive.entry(n).size, "sha256": digests.get(n)}
                          for n in archive.names()]
    return report


def inspect_package(zip_file: str | os.PathLike, trusted_keys: Sequence[str | os.PathLike] = (), *,
                    trust_folder: str | os.PathLike | None = None) -> InspectReport:
    """What a package says about itself. Nothing here is verified: `nnseal verify` does that.

    ``signer_trusted`` is about the key files ``trusted_keys`` and (when given) ``trust_folder``'s keys."""
    from nnseal.format.card import parse_card
    from nnseal.format.layout import EntryKind, classify
    from nnseal.format.strict_json import load_strict_json
    from nnseal.format.trust import load_trusted_keys
    from nnseal.readers.zip_archive import open_zip
    from nnseal.verify.signature import read_bundle_unverified

    path = Path(zip_file)
    if not path.is_file():
        raise EnvironmentProblem("no such package file", path=path)
    info = InspectReport(package=str(path), package_bytes=path.stat().st_size)
    with open_zip(path) as archive:
        card = archive.get(CARD_NAME)
        if card is not None:
            data = None
            parsed: Any = None
            try:
                data = archive.read(card, max_size=MAX_CARD_BYTES + 1)
                parsed = parse_card(data)
            except Refused as err:
                info.notes.append(err.reason)
                try:  # still show what a card of another format or version says
                    parsed = None if data is None else load_strict_json(data)
                except Refused:
                    parsed = None
            if isinstance(parsed, dict):
                info.card = {k: v for k, v in parsed.items() if k not in ("model", "created_by") or isinstance(v, dict)}
        signature = archive.get(SIGNATURE_NAME)
        if signature is not None:
            try:
                manifest = read_bundle_unverified(archive.read(signature, max_size=MAX_BUNDLE_BYTES + 1))
                info.signer_fingerprint = manifest.signer_fingerprint
                info.method, info.signer = manifest.method, manifest.signer
                if manifest.method == "key":
                    names = {k.fingerprint: k.name for k in load_trusted_keys(list(trusted_keys), trust_folder)}
                    info.signer_trusted = manifest.signer_fingerprint in names
                    info.signer_name = names.get(manifest.signer_fingerprint)
            except SignatureError as err:
                info.notes.append(f"signature unreadable: {err.reason}")
        else:
            info.notes.append("not signed")
        for name in archive.names():
            entry = archive.entry(name)
            info.entries.append({"name": name, "bytes": entry.size, "stored_bytes": entry.compressed_size})
            try:
                kind = classify(name)
            except Refused as err:
                if name != SIGNATURE_NAME:
                    info.notes.append(err.reason)
                continue
            if kind.kind in (EntryKind.POSTPROCESSING, EntryKind.SUMMARY):
                _read_metrics(info, archive, entry, kind)
            if kind.model:
                model = info.models.setdefault(kind.model, {"folds": [], "checkpoints": [], "entries_bytes": 0})
                model["entries_bytes"] += entry.size
                if kind.kind is EntryKind.CHECKPOINT:
                    model["checkpoints"].append({"entry": name, "fold": kind.fold, "checkpoint": kind.checkpoint,
                                                 "bytes": entry.size})
                    if kind.fold not in model["folds"]:
                        model["folds"].append(kind.fold)
    return info


def inspect_nnunet_zip(zip_file: str | os.PathLike) -> InspectReport:
    """What a zip made by nnU-Net's exporter (nnUNetv2_export_model_to_zip) holds: its model folders,
    their folds and checkpoints (by name: none is opened), and what an install would leave out.
    Such a zip carries no signature and no card."""
    from nnseal.format.layout import legacy_model_entries
    from nnseal.readers.zip_archive import open_zip

    path = Path(zip_file)
    if not path.is_file():
        raise EnvironmentProblem("no such file", path=path)
    info = InspectReport(package=str(path), package_bytes=path.stat().st_size)
    with open_zip(path) as archive:
        names = archive.names()
        kept, dropped = legacy_model_entries(names)
        for name in names:
            entry = archive.entry(name)
            info.entries.append({"name": name, "bytes": entry.size, "stored_bytes": entry.compressed_size})
        for model, members in sorted(kept.items()):
            record = info.models.setdefault(model, {"folds": [], "checkpoints": [], "entries_bytes": 0})
            for name in members:
                size = archive.entry(name).size
                record["entries_bytes"] += size
                if name.endswith(".pth"):
                    fold_dir, checkpoint = name.split("/")[2:4]
                    fold = fold_dir.removeprefix("fold_")
                    record["checkpoints"].append({"entry": name, "fold": fold,
                                                  "checkpoint": checkpoint.removesuffix(".pth"), "bytes": size})
                    if fold not in record["folds"]:
                        record["folds"].append(fold)
            record["checkpoints"].sort(key=lambda c: c["entry"])
            record["folds"].sort(key=lambda f: (f == "all", int(f) if f.isdigit() else 0))
    info.notes.append("not signed: an nnU-Net export zip carries no signature and no card")
    if dropped:
        info.notes.append(f"{len(dropped)} other entries (logs, validation, pickles) are left out by an install")
    return info


def _read_metrics(info: InspectReport, archive, entry, kind) -> None:
    """The cross-validation foreground mean Dice an entry states, before and after postprocessing."""
    from nnseal.format.layout import EntryKind
    from nnseal.format.limits import MAX_JSON_BYTES
    from nnseal.sanitize.jsonclean import PIPELINE_KIND_BY_FILE_NAME, clean_json_file
    from nnseal.sanitize.pipeline_json import score

    try:
        data = clean_json_file(PIPELINE_KIND_BY_FILE_NAME[kind.filename], archive.read(entry, max_size=MAX_JSON_BYTES),
                               name=kind.name).data
    except Refused as err:
        info.notes.append(err.reason)
        return
    if not isinstance(data, dict):  # the cleaners return objects; keeps the type checker informed
        return
    folder = kind.folder.split("/", 1)[1]  # Model/crossval_results_folds_F or ensembles/NAME
    metrics = info.metrics.setdefault(folder, {"dice": None, "dice_postprocessed": None})
    if kind.kind is EntryKind.POSTPROCESSING:
        for key, block in (("dice", "input_folder"), ("dice_postprocessed", "postprocessed")):
            value = score((data.get(block) or {}).get("foreground_mean", {}).get("Dice"))
            if value is not None:
                metrics[key] = value
    elif metrics["dice"] is None:
        metrics["dice"] = score(data["foreground_mean"].get("Dice"))
