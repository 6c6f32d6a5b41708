"""The install receipt: what was installed, from where, and the sha256 of every file.

``nnseal-receipt.json`` in each installed model folder lets ``nnseal verify FOLDER``
report drift later (a file changed, removed or added after install).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from nnseal.errors import ModelLayoutError, Refused, from_os_error
from nnseal.format.limits import MAX_RECEIPT_BYTES
from nnseal.format.strict_json import load_strict_json
from nnseal.fsutil import sha256_file
from nnseal.verify.problems import Problem, ProblemKind

RECEIPT_NAME = "nnseal-receipt.json"
RECEIPT_FORMAT = "nnseal-receipt"
# A receipt lists a few dozen files; anything far larger is not one nnseal wrote.


class Provenance(str, Enum):
    SIGNED = "signed"  # installed from a package whose signature a trusted key verified
    UNSIGNED = "unsigned"  # installed with --unsigned from nnU-Net's own zip: nothing vouches for it

    def __str__(self) -> str:
        return self.value


def write_receipt(model_dir: Path, *, files: dict[str, str], package: str, package_sha256: str | None,
                  provenance: Provenance, signer_fingerprint: str | None, model: dict | None,
                  trained_with: dict[str, dict[str, str]] | None = None,
                  dataset_files: dict[str, str] | None = None,
                  method: str | None = None, signer: str | None = None,
                  content_sha256: str | None = None) -> None:
    """``model`` is the card's ``model``; its release and creation time are also recorded on their
    own (``release``, ``created``): the next install compares them to refuse a rollback.
    ``trained_with`` (the card's, or what an unsigned zip's debug.json says) is recorded when known:
    ``nnseal doctor`` compares it with the installed software.
    ``dataset_files``: files the same install wrote into the dataset folder (the model folder's
    parent: inference_information.json, inference_instructions.txt), name -> sha256; drift checks
    them as ``../<name>``. ``content_sha256``: ``content_digest`` of the signed manifest (what a
    second install of the same signed content compares, whatever the zip's bytes)."""
    receipt = {
        "format": RECEIPT_FORMAT, "format_version": 1,
        "package": package, "package_sha256": package_sha256,
        "provenance": Provenance(provenance).value, "signer_fingerprint": signer_fingerprint,
        "method": method, "signer": signer, "model": model,
        "release": _text_or_none((model or {}).get("release")),
        "created": _text_or_none((model or {}).get("created")),
        "files": dict(sorted(files.items())),
    }
    if content_sha256 is not None:
        receipt["content_sha256"] = content_sha256
    if trained_with:
        receipt["trained_with"] = trained_with
    if dataset_files:
        receipt["dataset_files"] = dict(sorted(dataset_files.items()))
    (model_dir / RECEIPT_NAME).write_text(json.dumps(receipt, indent=2, sort_keys=True) + "\n")


def content_digest(resources: dict[str, str]) -> str:
    """The sha256 of a signed manifest's resources (entry name -> sha256) as canonical JSON: equal for
    two packages exactly when they hold the same signed entries, whatever their zip bytes."""
    import hashlib

    canonical = json.dumps(dict(sorted(resources.items())), separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def same_install(folders: list[Path], *, provenance: Provenance, signer_fingerprint: str | None,
                 content_sha256: str | None, package_sha256: str | None) -> bool:
    """Whether every folder in ``folders`` (model and ensemble folders) is already installed from this
    very content: a receipt of the same provenance and signer recording the same signed content (or
    the same package sha256), and no file drifted from it (re-hashed). Then installing again would
    change nothing."""
    if not folders:
        return False
    for folder in folders:
        if folder.is_symlink() or not folder.is_dir():
            return False
        try:
            receipt = read_receipt(folder)
        except ModelLayoutError:
            return False
        if (receipt.get("provenance") != Provenance(provenance).value
                or receipt.get("signer_fingerprint") != signer_fingerprint):
            return False
        same_content = content_sha256 is not None and receipt.get("content_sha256") == content_sha256
        same_package = package_sha256 is not None and receipt.get("package_sha256") == package_sha256
        if not (same_content or same_package) or not check_installed(folder).ok:
            return False
    return True


@dataclass
class DriftReport:
    folder: str
    provenance: str | None = None  # as the receipt says: "signed" | "unsigned" (not checked: anyone could edit it)
    signer_fingerprint: str | None = None
    method: str | None = None
    signer: str | None = None
    modified: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.modified or self.missing or self.extra)

    def problems(self) -> list[Problem]:
        return ([Problem(ProblemKind.MODIFIED_FILE, f"modified: {p}", p) for p in self.modified]
                + [Problem(ProblemKind.MISSING_FILE, f"missing: {p}", p) for p in self.missing]
                + [Problem(ProblemKind.EXTRA_FILE, f"extra: {p}", p) for p in self.extra])

    def to_json(self) -> dict:
        return {"folder": self.folder, "ok": self.ok, "provenance": self.provenance,
                "signer_fingerprint": self.signer_fingerprint, "signer_name": None, "method": self.method,
                "signer": self.signer, "modified": self.modified, "missing": self.missing, "extra": self.extra,
                "problems": [p.message for p in self.problems()]}


def check_installed(model_dir: str | os.PathLike) -> DriftReport:
    """Re-hash an installed model folder against its receipt."""
    model_dir = Path(model_dir)
    receipt_path = model_dir / RECEIPT_NAME
    if not receipt_path.is_file():
        raise ModelLayoutError(f"no {RECEIPT_NAME}: this folder was not installed by nnseal", path=model_dir)
    receipt = _read_receipt(receipt_path, model_dir)
    files = receipt["files"]
    report = DriftReport(folder=str(model_dir), provenance=_text_or_none(receipt.get("provenance")),
                         signer_fingerprint=_text_or_none(receipt.get("signer_fingerprint")),
                         method=_text_or_none(receipt.get("method")), signer=_text_or_none(receipt.get("signer")))
    present = {str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file() or p.is_symlink()}
    present.discard(RECEIPT_NAME)
    for rel, digest in sorted(files.items()):
        path = model_dir / rel
        if rel not in present:
            report.missing.append(rel)
        elif path.is_symlink() or sha256_file(path) != digest:
            report.modified.append(rel)
    report.extra = sorted(present - set(files))
    dataset_files = receipt.get("dataset_files")
    for rel, digest in sorted(dataset_files.items() if isinstance(dataset_files, dict) else []):
        path = model_dir.parent / rel
        if not isinstance(rel, str) or "/" in rel or rel in ("", ".", "..") or not isinstance(digest, str):
            report.modified.append(f"../{rel}")  # not a receipt nnseal wrote
        elif not path.is_file() and not path.is_symlink():
            report.missing.append(f"../{rel}")
        elif path.is_symlink() or sha256_file(path) != digest:
            report.modified.append(f"../{rel}")
    return report


def read_receipt(model_dir: str | os.PathLike) -> dict:
    """An installed model folder's receipt, its shape checked (ModelLayoutError if there is none
    or it is not one). Nothing in it is verified: anyone who can write the folder can edit it."""
    model_dir = Path(model_dir)
    receipt_path = model_dir / RECEIPT_NAME
    if not receipt_path.is_file():
        raise ModelLayoutError(f"no {RECEIPT_NAME}: this folder was not installed by nnseal", path=model_dir)
    return _read_receipt(receipt_path, model_dir)


def _read_receipt(receipt_path: Path, model_dir: Path) -> dict:
    """The receipt as a dict whose "files" maps names to digest strings; anything else is refused.

    Anyone who can write the folder can edit the receipt, so its shape is checked, not assumed.
    """
    try:
        with open(receipt_path, "rb") as handle:
            data = handle.read(MAX_RECEIPT_BYTES + 1)
    except OSError as err:
        raise from_os_error(err, receipt_path) from err
    try:
        receipt = None if len(data) > MAX_RECEIPT_BYTES else load_strict_json(data)
    except Refused:
        receipt = None
    files = receipt.get("files") if isinstance(receipt, dict) else None
    if not (isinstance(receipt, dict) and isinstance(files, dict)
            and all(isinstance(digest, str) for digest in files.values())):
        raise ModelLayoutError(f"{RECEIPT_NAME} is not a valid receipt (expected an object whose \"files\" "
                               "maps file names to sha256 digests)", path=model_dir)
    return receipt


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
