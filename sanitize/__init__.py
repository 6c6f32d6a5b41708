"""Sanitize stage: load checkpoints safely, keep what inference and fine-tuning need, write safetensors.

Importing this package imports no torch: names are resolved from their modules on first use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SanitizeReport": "checkpoint",
    "SanitizedCheckpoint": "checkpoint",
    "load_sanitized": "checkpoint",
    "safetensors_metadata": "checkpoint",
    "write_sanitized": "checkpoint",
    "sanitize_checkpoint": "checkpoint",
    "ArchiveInfo": "archive",
    "inspect_checkpoint": "archive",
    "PickleScan": "pickle_globals",
    "scan_pickle": "pickle_globals",
    "allowed_global_names": "allowlist",
    "SafetensorsHeader": "safetensors_io",
    "TensorInfo": "safetensors_io",
    "read_header": "safetensors_io",
    "write_safetensors": "safetensors_io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
