"""`verify` and `inspect` of a package: read-only, torch-free, nothing extracted."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnseal.errors import EnvironmentProblem, Refused, SignatureError, UntrustedSigner
from nnseal.format.layout import CARD_NAME

# A card is a few kilobytes; a bundle is limited to 16 MiB by the signature parser.
MAX_CARD_BYTES = 16 << 20
MAX_BUNDLE_BYTES = (16 << 20) + 1


@dataclass
class VerifyReport:
    package: str
    signature: str = "missing"  # valid | untrusted | invalid | missing
    signer_fingerprint: str | None = None
    entries: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.signature == "valid" and not self.problems

    def to_json(self) -> dict:
        return {"package": self.package, "ok": self.ok, "signature": self.signature,
                "signer_fingerprint": self.signer_fingerprint, "entries": self.entries, "bytes": self.bytes,
                "problems": self.problems}


def verify_package(zip_file: str | os.PathLike, trusted_keys: Sequence[str | os.PathLike] = (), *,
                   trust_folder: str | os.PathLike | None = None, workers: int | None = None,
                   limits=None) -> VerifyReport:
    """Check the signature against the trusted keys, then every entry's sha256 against the manifest.

    The trusted keys are the key files ``trusted_keys`` and, when it is given, ``trust_folder``'s keys.

    Every problem found is reported (bad signature, unknown signer, missing, extra,
    modified entries, entries outside the layout). A structurally hostile zip raises
    ``HostileArchive`` instead: nothing in it can be read with confidence.
    """
    from nnseal.format.layout import classify, classify_all
    from nnseal.format.oms import SIGNATURE_NAME
    from nnseal.format.trust import load_trusted_keys
    from nnseal.safezip import Limits, open_zip
    from nnseal.verify.signature import read_bundle_unverified, verify_bundle

    path = Path(zip_file)
    if not path.is_file():
        raise EnvironmentProblem("no such package file", path=path)
    report = VerifyReport(package=str(path))
    with open_zip(path, limits or Limits()) as archive:
        names = [n for n in archive.names() if n != SIGNATURE_NAME]
        report.entries = len(names)
        report.bytes = sum(archive.entry(n).size for n in names)
        signature = archive.get(SIGNATURE_NAME)
        manifest = None
        if signature is None:
            report.problems.append(f"no {SIGNATURE_NAME}: the package is not signed")
        else:
            bundle = archive.read(signature, max_size=MAX_BUNDLE_BYTES)
            keys = [k.key for k in load_trusted_keys(list(trusted_keys), trust_folder)]
            try:
                manifest = verify_bundle(bundle, keys)
                report.signature = "valid"
            except UntrustedSigner as err:
                report.signature = "untrusted"
                report.problems.append(f"unknown signer: {err.reason}")
            except SignatureError as err:
                report.signature = "invalid"
                report.problems.append(f"bad signature: {err.reason}")
            if manifest is None:
                try:  # still compare hashes, so the report shows everything that is wrong
                    manifest = read_bundle_unverified(bundle)
                except SignatureError:
                    manifest = None
            if manifest is not None:
                report.signer_fingerprint = manifest.signer_fingerprint
        layout_ok = True
        for name in names:
            try:
                classify(name)
            except Refused as err:
                report.problems.append(err.reason)
                layout_ok = False
        if layout_ok:
            try:
                classify_all(names)  # one dataset, plans.json, dataset.json and a checkpoint per model folder
            except Refused as err:
                report.problems.append(err.reason)
        if manifest is not None:
            resources = manifest.resources
            for name in sorted(set(names) - set(resources)):
                report.problems.append(f"extra entry not in the signed manifest: {name}")
            for name in sorted(set(resources) - set(names)):
                report.problems.append(f"missing entry: {name}")
            present = [archive.entry(n) for n in names if n in resources]
            digests = archive.sha256_all(present, workers=workers)
            for name in sorted(digests):
                if digests[name] != resources[name]:
                    report.problems.append(f"modified entry: {name}")
    return report


def inspect_package(zip_file: str | os.PathLike, trusted_keys: Sequence[str | os.PathLike] = (), *,
                    trust_folder: str | os.PathLike | None = None) -> dict:
    """What a package says about itself. Nothing here is verified: `nnseal verify` does that.

    ``signer_trusted`` is about the key files ``trusted_keys`` and (when given) ``trust_folder``'s keys."""
    from nnseal.format.layout import classify
    from nnseal.format.oms import SIGNATURE_NAME
    from nnseal.format.trust import load_trusted_keys
    from nnseal.safezip import open_zip
    from nnseal.verify.signature import read_bundle_unverified

    path = Path(zip_file)
    if not path.is_file():
        raise EnvironmentProblem("no such package file", path=path)
    info: dict = {"package": str(path), "verified": False, "card": None, "signer_fingerprint": None,
                  "signer_trusted": False, "models": {}, "entries": [], "bytes": 0, "notes": []}
    with open_zip(path) as archive:
        card = archive.get(CARD_NAME)
        if card is not None:
            try:
                parsed = json.loads(archive.read(card, max_size=MAX_CARD_BYTES))
            except (ValueError, RecursionError):
                parsed = None
            if isinstance(parsed, dict):
                info["card"] = {k: v for k, v in parsed.items()
                                if k not in ("model", "created_by") or isinstance(v, dict)}
            else:
                info["notes"].append(f"{CARD_NAME} is not a JSON object")
        signature = archive.get(SIGNATURE_NAME)
        if signature is not None:
            try:
                manifest = read_bundle_unverified(archive.read(signature, max_size=MAX_BUNDLE_BYTES))
                info["signer_fingerprint"] = manifest.signer_fingerprint
                trusted = {k.fingerprint for k in load_trusted_keys(list(trusted_keys), trust_folder)}
                info["signer_trusted"] = manifest.signer_fingerprint in trusted
            except SignatureError as err:
                info["notes"].append(f"signature unreadable: {err.reason}")
        else:
            info["notes"].append("not signed")
        for name in archive.names():
            entry = archive.entry(name)
            info["entries"].append({"name": name, "bytes": entry.size, "stored_bytes": entry.compressed_size})
            info["bytes"] += entry.size
            try:
                kind = classify(name)
            except Refused as err:
                if name != SIGNATURE_NAME:
                    info["notes"].append(err.reason)
                continue
            if kind.model:
                model = info["models"].setdefault(kind.model, {"folds": [], "checkpoints": [], "bytes": 0})
                model["bytes"] += entry.size
                if kind.kind == "checkpoint":
                    model["checkpoints"].append(f"fold_{kind.fold}/{kind.checkpoint}")
                    if kind.fold not in model["folds"]:
                        model["folds"].append(kind.fold)
    return info
