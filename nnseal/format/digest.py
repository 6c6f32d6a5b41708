"""sha256 digests as the format spells them: 64 lowercase hex characters."""

from __future__ import annotations

import re

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def is_sha256_hex(value: object) -> bool:
    return isinstance(value, str) and SHA256_HEX.fullmatch(value) is not None
