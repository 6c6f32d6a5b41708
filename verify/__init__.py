"""Verify stage: check signature and hashes, refuse hostile zips, install atomically, download by URL.

Public API (names match nnU-Net's model_sharing functions):
    install_model_from_zip(zip_file, install_location=None, trusted_keys=..., ...)
    install_model_from_folder(folder, install_location, trusted_keys=..., ...)  (a folder package)
    download_and_install_from_url(url, destination=None, ...)
    verify_package(zip_file, trusted_keys=...) -> VerifyReport
    inspect_package(zip_file) -> InspectReport
    check_installed(model_folder) -> DriftReport

Importing this package imports no torch; the functions load what they need.
"""

from __future__ import annotations

from nnseal.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "install_model_from_zip": "install",
    "install_model_from_folder": "install",
    "InstallReport": "install",
    "download_and_install_from_url": "download",
    "verify_package": "report",
    "inspect_package": "report",
    "VerifyReport": "report",
    "InspectReport": "report",
    "check_installed": "receipt",
    "DriftReport": "receipt",
})
