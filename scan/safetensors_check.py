"""safetensors files: the header, validated as strictly as the Rust loader; tensor data is never read."""

from __future__ import annotations

from typing import BinaryIO

from nnseal.errors import InvalidSafetensors
from nnseal.readers.safetensors_header import read_header
from nnseal.scan.findings import Finding, Location, finding


def safetensors_findings(handle: BinaryIO, size: int, where: Location) -> list[Finding]:
    try:
        read_header(handle, size)
    except InvalidSafetensors as err:
        return [finding(where, "safetensors-header", err.reason)]
    return []
