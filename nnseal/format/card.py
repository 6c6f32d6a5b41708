"""The package card: ``nnseal-card.json`` at the root of every package (docs/FORMAT.md, "Card").

It records what the package is (format version, tools that made it, model metadata) and,
per checkpoint, the sha256 of its source .pth and what sanitizing removed. It is signed
like every other entry; nothing in it is trusted before the signature is checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

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
