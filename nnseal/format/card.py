"""The package card: ``nnseal-card.json`` at the root of every package (docs/FORMAT.md, "Card").

It records what the package is (format version, tools that made it, model metadata) and,
per checkpoint, the sha256 of its source .pth and what sanitizing removed. It is signed
like every other entry; nothing in it is trusted before the signature is checked.

Versions: ``format_version`` is one integer, the format's MAJOR version. A reader refuses a
card whose version is larger than the one it implements (``FORMAT_VERSION``); a change that
older readers can safely ignore (a new optional field) keeps the number, anything else
raises it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from nnseal.errors import Refused, TamperedPackage
from nnseal.format.layout import CARD_NAME
from nnseal.format.limits import MAX_CARD_BYTES
from nnseal.format.strict_json import load_strict_json, show

FORMAT = "nnseal-package"
FORMAT_VERSION = 1
METADATA_FIELDS = ("name", "description", "licence", "reference", "release")


@dataclass
class CheckpointRecord:
    entry: str
    fold: str
    checkpoint: str
    source_sha256: str
    source_bytes: int
    bytes: int
    tensors: int
    names: int
    removed: list[str]
    kept: dict

    def to_json(self) -> dict:
        return {
            "entry": self.entry, "fold": self.fold, "checkpoint": self.checkpoint,
            "source_sha256": self.source_sha256, "source_bytes": self.source_bytes, "bytes": self.bytes,
            "tensors": self.tensors, "names": self.names, "removed": self.removed, "kept": self.kept,
        }


@dataclass
class ModelRecord:
    folder: str
    trainer: str
    plans: str
    configuration: str
    folds: list[str]
    checkpoints: list[CheckpointRecord] = field(default_factory=list)
    json_findings: dict[str, list[dict]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "folder": self.folder, "trainer": self.trainer, "plans": self.plans,
            "configuration": self.configuration, "folds": self.folds,
            "checkpoints": [c.to_json() for c in self.checkpoints],
            "json_sanitizing": self.json_findings,
        }


def build_card(*, dataset: str, metadata: dict, models: list[ModelRecord], versions: dict[str, str]) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_by": versions,
        "dataset": dataset,
        "model": {k: metadata.get(k) for k in METADATA_FIELDS},
        "models": [m.to_json() for m in models],
    }


def card_bytes(card: dict) -> bytes:
    return (json.dumps(card, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def parse_card(data: bytes, *, path: str | None = None) -> dict[str, Any]:
    """The card as a dict, once it is strict JSON of this format at a version this nnseal reads.

    Refuses (TamperedPackage) a card that is not a JSON object of format ``nnseal-package``
    with an integer ``format_version`` of at least 1, and (Refused) a newer major version.
    Pass at most ``MAX_CARD_BYTES + 1`` bytes: anything larger is refused here.
    """
    if len(data) > MAX_CARD_BYTES:
        raise TamperedPackage(f"{CARD_NAME} is larger than {MAX_CARD_BYTES} bytes", path=path)
    card = load_strict_json(data, what=CARD_NAME, error=TamperedPackage, path=path)
    if not isinstance(card, dict):
        raise TamperedPackage(f"{CARD_NAME} is not a JSON object", path=path)
    if card.get("format") != FORMAT:
        raise TamperedPackage(f"{CARD_NAME}: format is {show(card.get('format'))}, not {FORMAT!r}", path=path)
    version = card.get("format_version")
    if type(version) is not int or version < 1:
        raise TamperedPackage(f"{CARD_NAME}: format_version {show(version)} is not a positive integer", path=path)
    if version > FORMAT_VERSION:
        raise Refused(f"card format_version {version} is newer than this nnseal understands ({FORMAT_VERSION}); "
                      "upgrade nnseal", path=path)
    return card
