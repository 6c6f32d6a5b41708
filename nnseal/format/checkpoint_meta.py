"""The nnseal keys in each checkpoint's safetensors ``__metadata__`` (docs/FORMAT.md, "Checkpoints").

Export writes them with ``build_metadata``; install reads them back with ``read_metadata``,
which checks every type, so the rebuilt nnU-Net checkpoint holds only what nnseal wrote.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from nnseal.errors import InvalidSafetensors
from nnseal.format.strict_json import load_strict_json, show

FORMAT_KEY = "nnseal.format"
NAMES_KEY = "nnseal.names"
ALIASES_KEY = "nnseal.aliases"
CHECKPOINT_KEY = "nnseal.checkpoint"
METADATA_FORMAT_VERSION = "1"
# The nnU-Net checkpoint fields that travel (everything else is dropped by sanitize).
CHECKPOINT_FIELDS = ("trainer_name", "configuration", "fold", "inference_allowed_mirroring_axes", "current_epoch")


def _compact(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def build_metadata(names: list[str], aliases: Mapping[str, str], meta: Mapping[str, Any]) -> dict[str, str]:
    """The ``__metadata__`` a later stage rebuilds the nnU-Net checkpoint from."""
    return {
        "format": "pt",
        FORMAT_KEY: METADATA_FORMAT_VERSION,
        NAMES_KEY: _compact(names),
        ALIASES_KEY: _compact(dict(aliases)),
        CHECKPOINT_KEY: _compact({key: meta[key] for key in CHECKPOINT_FIELDS}),
    }


def read_metadata(metadata: Mapping[str, str], *, path: str,
                  stored: Collection[str]) -> tuple[list[str], dict[str, str], dict]:
    """Parse and type-check the nnseal keys of a safetensors ``__metadata__``: (names, aliases, meta).

    ``stored`` are the tensor names the file's header holds: every weight name must be one of
    them or an alias of one, so what install rebuilds is exactly what verify accepted.
    """
    fields = []
    for key in (NAMES_KEY, ALIASES_KEY, CHECKPOINT_KEY):
        if not isinstance(metadata.get(key), str):
            raise InvalidSafetensors(f"nnseal metadata missing or not JSON ({key!r} is missing)", path=path)
        fields.append(load_strict_json(metadata[key], what=f"nnseal metadata {key}", error=InvalidSafetensors,
                                       path=path))
    names, aliases, meta = fields
    ok = (isinstance(names, list) and all(isinstance(n, str) for n in names)
          and isinstance(aliases, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items())
          and isinstance(meta, dict) and isinstance(meta.get("trainer_name"), str)
          and meta["trainer_name"].isidentifier() and isinstance(meta.get("configuration"), str)
          and (meta.get("fold") == "all" or is_index(meta.get("fold")))
          and (meta.get("inference_allowed_mirroring_axes") is None
               or (isinstance(meta["inference_allowed_mirroring_axes"], list)
                   and all(is_index(a) for a in meta["inference_allowed_mirroring_axes"])))
          and (meta.get("current_epoch") is None or is_index(meta.get("current_epoch"))))
    if not ok or len(set(names)) != len(names):
        raise InvalidSafetensors("nnseal metadata has the wrong shape", path=path)
    for name in names:
        target = aliases.get(name, name)
        if target not in stored:
            raise InvalidSafetensors(f"weight {show(name)} refers to {show(target)}, which is not stored", path=path)
    for alias in aliases:
        if alias not in names:
            raise InvalidSafetensors(f"alias {show(alias)} names no weight", path=path)
    return names, aliases, meta


def is_index(value: object) -> bool:
    """A non-negative int that is not a bool: folds, epochs and axes."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
