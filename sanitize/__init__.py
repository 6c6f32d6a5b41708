"""Sanitize stage: load checkpoints safely, keep what inference and fine-tuning need, write safetensors.

Importing this package imports no torch: names are resolved from their modules on first use.
"""

from __future__ import annotations

from nnseal.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "SanitizeReport": "checkpoint",
    "SanitizedCheckpoint": "checkpoint",
    "load_sanitized": "checkpoint",
    "safetensors_metadata": "checkpoint",
    "write_sanitized": "checkpoint",
    "sanitize_checkpoint": "checkpoint",
    "write_safetensors": "safetensors_io",
})
