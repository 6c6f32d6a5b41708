"""sha256 digests as the format spells them: 64 lowercase hex characters."""

from __future__ import annotations

import re

from nnseal.errors import InvalidArgument

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def is_sha256_hex(value: object) -> bool:
    return isinstance(value, str) and SHA256_HEX.fullmatch(value) is not None


def normalise_sha256(value: str) -> str:
    """A sha256 pin as given (any case, surrounding blanks) in the format's spelling; InvalidArgument if it is none."""
    hexdigest = value.strip().lower()
    if not is_sha256_hex(hexdigest):
        raise InvalidArgument(f"not a sha256 hex digest (64 hex digits): {value!r}")
    return hexdigest
