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
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from nnseal.errors import InvalidArgument, Refused, TamperedPackage
from nnseal.format.layout import CARD_NAME
from nnseal.format.limits import MAX_CARD_BYTES
from nnseal.format.strict_json import load_strict_json, show

FORMAT = "nnseal-package"
FORMAT_VERSION = 1
METADATA_FIELDS = ("name", "description", "licence", "reference", "release")
# When the release was made: UTC, to the second. Export takes it from its caller or from the
# newest source checkpoint's mtime, never from the clock, so the same inputs give the same bytes.
CREATED_FIELD = "created"
# Optional (older cards lack it): {"nnunetv2": {"version": ..., "source": "debug.json" | "environment"}, ...}.
# Informational: readers use its well-formed entries and ignore the rest (nnseal.compat.read_trained_with).
TRAINED_WITH_FIELD = "trained_with"
_CREATED_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def format_created(when: datetime | int | float) -> str:
    """``model.created`` for a time (an aware datetime, or seconds since the epoch as in
    SOURCE_DATE_EPOCH): ``YYYY-MM-DDTHH:MM:SSZ``, UTC, fractions dropped."""
    if isinstance(when, datetime):
        if when.tzinfo is None:  # a naive time means a different moment on every machine
            raise InvalidArgument("created must be a timezone-aware datetime")
        moment = when.astimezone(timezone.utc)
    else:
        try:
            moment = datetime.fromtimestamp(int(when), tz=timezone.utc)
        except (OverflowError, OSError, ValueError) as err:
            raise InvalidArgument(f"created {when!r} is not a time: {err}") from None
    if not 1000 <= moment.year <= 9999:  # four digits, as parse_created reads it
        raise InvalidArgument(f"created {when!r} is out of range")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_created(text: str) -> datetime | None:
    """The time a ``model.created`` value names, or None when it is not one (wrong shape or date)."""
    if not isinstance(text, str) or not _CREATED_RE.match(text):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


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


def build_card(*, dataset: str, metadata: dict, models: list[ModelRecord], versions: dict[str, str],
               created: str | None = None, trained_with: dict[str, dict[str, str]] | None = None) -> dict:
    """``created`` (``format_created``) goes into ``model.created``, beside ``model.release``.
    ``trained_with`` (``nnseal.compat.training_versions``) is the optional ``trained_with`` field:
    per distribution, the version the model was trained with and where that came from."""
    model: dict[str, Any] = {k: metadata.get(k) for k in METADATA_FIELDS}
    if created is not None:
        model[CREATED_FIELD] = created
    card = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_by": versions,
        "dataset": dataset,
        "model": model,
        "models": [m.to_json() for m in models],
    }
    if trained_with:
        card[TRAINED_WITH_FIELD] = trained_with
    return card


def card_bytes(card: dict) -> bytes:
    return (json.dumps(card, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def parse_card(data: bytes, *, path: str | None = None) -> dict[str, Any]:
    """The card as a dict, once it is strict JSON of this format at a version this nnseal reads.

    Refuses (TamperedPackage) a card that is not a JSON object of format ``nnseal-package``
    with an integer ``format_version`` of at least 1, or whose ``model.created`` (optional) is
    not a ``YYYY-MM-DDTHH:MM:SSZ`` time, and (Refused) a newer major version.
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
    model = card.get("model")
    created = model.get(CREATED_FIELD) if isinstance(model, dict) else None
    if created is not None and parse_created(created) is None:
        # Install compares it to refuse rollbacks: a value it cannot read is refused, not ignored.
        raise TamperedPackage(f"{CARD_NAME}: model.created {show(created)} is not a UTC time "
                              "YYYY-MM-DDTHH:MM:SSZ", path=path)
    return card
