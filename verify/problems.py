"""What verify and drift reports find wrong: one Problem type whose ``kind`` callers branch on.

The message is what a person reads; library callers (scan, tests) match on ``kind``,
never on the message's wording.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from nnseal.errors import NnsealError


class ProblemKind(str, Enum):
    # The package's signature (verify_package)
    UNSIGNED = "unsigned"
    UNTRUSTED_SIGNER = "untrusted_signer"
    BAD_SIGNATURE = "bad_signature"
    # The package's entries (verify_package)
    FORMAT = "format"  # the card: not this format, or a newer format version than this nnseal reads
    LAYOUT = "layout"  # an entry outside nnU-Net's layout, or the layout incomplete
    EXTRA_ENTRY = "extra_entry"
    MISSING_ENTRY = "missing_entry"
    MODIFIED_ENTRY = "modified_entry"
    CONTENT = "content"  # JSON or a checkpoint header that install would refuse (foreign classes, paths, ...)
    # An installed model folder against its receipt (check_installed)
    MODIFIED_FILE = "modified_file"
    MISSING_FILE = "missing_file"
    EXTRA_FILE = "extra_file"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    message: str
    subject: str | None = None  # the entry or file it is about, when there is one
    # The error the check raised: install raises it as it is (same type, same hint).
    error: NnsealError | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return self.message
