"""`nnseal scan`: a static, torch-free CI gate over checkpoints, pickles, numpy files, safetensors and packages.

Files are classified by every reading their content admits for the loaders that might
open them (a file with two readings is refused; a model-named file must be a torch.save
zip, safetensors or an nnseal package), and checked without
executing, unpickling or loading anything: pickles are read opcode by opcode, zips
through ``nnseal.readers.zip_archive``, safetensors and numpy headers as bounded text. The rules,
their levels and the report formats are documented in docs/SCAN.md.
"""

from __future__ import annotations

from nnseal.scan.findings import LEVELS, Finding, level_at_least
from nnseal.scan.report import ScanReport
from nnseal.scan.scanner import scan_paths

__all__ = ["LEVELS", "Finding", "ScanReport", "level_at_least", "scan_paths"]
