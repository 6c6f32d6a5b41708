"""Verify stage: check signature and hashes, refuse hostile zips, install atomically, download by URL.

Public API (names match nnU-Net's model_sharing functions):
    install_model_from_zip(zip_file, install_location=None, trusted_keys=..., ...)
    download_and_install_from_url(url, destination=None, ...)
    verify_package(zip_file, trusted_keys=...) -> VerifyReport
    inspect_package(zip_file) -> dict
    check_installed(model_folder) -> DriftReport

Importing this package imports no torch; the functions load what they need.
"""

from __future__ import annotations

_LAZY = {
    "install_model_from_zip": "nnseal.verify.install",
    "InstallReport": "nnseal.verify.install",
    "download_and_install_from_url": "nnseal.verify.download",
    "verify_package": "nnseal.verify.report",
    "inspect_package": "nnseal.verify.report",
    "VerifyReport": "nnseal.verify.report",
    "check_installed": "nnseal.verify.receipt",
    "DriftReport": "nnseal.verify.receipt",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
