"""Size limits and I/O sizes every reader and writer of the format shares (docs/FORMAT.md)."""

from __future__ import annotations

# Bytes read or hashed per call: large enough for disk speed, small enough to keep memory flat.
IO_CHUNK = 1 << 20

# model.sig: a real bundle is a few kilobytes plus 100 bytes per signed file.
MAX_BUNDLE_BYTES = 16 << 20
# Resources one statement may list (a package holds a few dozen).
MAX_RESOURCES = 100_000
# Any single text field of a bundle or statement (names, key ids).
MAX_SHORT_TEXT = 4096
# nnseal-card.json: a few kilobytes in practice.
MAX_CARD_BYTES = 16 << 20
# plans.json, dataset.json, dataset_fingerprint.json: parsed whole, so larger ones are refused unread.
MAX_JSON_BYTES = 32 << 20
# nnseal-receipt.json: one line per installed file.
MAX_RECEIPT_BYTES = 16 << 20
# Real PEM keys are a few hundred bytes; larger files are not read into memory.
MAX_KEY_FILE_BYTES = 64 * 1024
