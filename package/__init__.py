"""Package stage: lay sanitized models out as an nnU-Net-shaped zip and sign it (OpenSSF Model Signing).

Public API: ``export_model_to_zip(input_folder, output_file, key=..., ...)`` (the name of
nnU-Net's own function), ``generate_key_pair``. Importing this package imports no torch.
"""

from __future__ import annotations

_LAZY = {
    "export_model_to_zip": "nnseal.package.export",
    "ExportReport": "nnseal.package.export",
    "generate_key_pair": "nnseal.package.keys",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
