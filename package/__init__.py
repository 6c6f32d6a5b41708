"""Package stage: lay sanitized models out as an nnU-Net-shaped zip and sign it (OpenSSF Model Signing).

Public API: ``export_model_to_zip(input_folder, output_file, key=..., ...)`` (the name of
nnU-Net's own function), ``export_model_to_folder`` (the same package as a folder),
``generate_key_pair``. Importing this package imports no torch.
"""

from __future__ import annotations

from nnseal.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "export_model_to_zip": "export",
    "export_model_to_folder": "export",
    "ExportReport": "export",
    "generate_key_pair": "keys",
})
