"""What a file is, from its first bytes (and, for zips, from its entry names): never from its file name.

The one exception is the verdict on content nnseal does not recognise: a file *named*
like a model file but holding no recognisable format is reported, because a gate must
not pass what it could not check (see ``looks_like_model_name``).
"""

from __future__ import annotations

import io
import pickletools
import re

from nnseal.format.layout import CARD_NAME, DATASET_RE
from nnseal.format.oms import SIGNATURE_NAME
from nnseal.sanitize.archive import LEGACY_MAGIC, TAR_MAGIC_OFFSET, ZIP_MAGIC

# How much of a file the sniffer looks at.
HEAD_BYTES = 64 << 10

NUMPY_MAGIC = b"\x93NUMPY"
# Opcodes a protocol-0/1 pickle can start with (protocol 2+ start with PROTO, 0x80).
_PICKLE0_FIRST = frozenset(b"(c}])NIFLSVKJMGi" + b"U" + b"T" + b"X")
# torch's legacy tar format holds these members (torch/serialization.py, _legacy_load).
_TORCH_TAR_MEMBERS = (b"sys_info", b"pickle", b"storages", b"tensors")
# Names of files that hold models or packages: content that is none of the formats nnseal checks is a finding.
MODEL_SUFFIXES = (".pth", ".pt", ".ckpt", ".pkl", ".pickle", ".joblib", ".npy", ".npz", ".safetensors", ".zip")

_TORCH_RECORD = re.compile(r"^[^/]+/(data|constants)\.pkl$")


def _is_pickle0(head: bytes, size: int) -> bool:
    """A protocol-0/1 pickle: the head parses as pickle opcodes up to STOP, or up to the end of
    the bytes read when the file goes on (so padding cannot push a payload past the sniffer).

    Text files starting with a letter that happens to be an opcode fail within a line or two.
    """
    if not head or head[0] not in _PICKLE0_FIRST:
        return False
    stream = io.BytesIO(head)
    try:
        for op, _, _ in pickletools.genops(stream):
            if op.name == "STOP":
                return True
    except (ValueError, UnicodeDecodeError):
        pass
    return size > len(head) and stream.tell() >= len(head)


def sniff(head: bytes, size: int) -> str:
    """The kind of a file from its first bytes.

    zip | torch-legacy | torch-legacy-tar | npy | safetensors | pickle | empty | other
    """
    if size == 0:
        return "empty"
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head.startswith(LEGACY_MAGIC):
        return "torch-legacy"
    if head.startswith(NUMPY_MAGIC):
        return "npy"
    if len(head) > TAR_MAGIC_OFFSET + 5 and head[TAR_MAGIC_OFFSET:TAR_MAGIC_OFFSET + 5] == b"ustar":
        first_member = head[:100].split(b"\0", 1)[0]
        return "torch-legacy-tar" if first_member in _TORCH_TAR_MEMBERS else "other"
    # safetensors: 8-byte little-endian header length, then a JSON object.
    if len(head) >= 10 and head[8:9] == b"{" and head[9:10] in b'"} \t\r\n':
        return "safetensors"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return "pickle"
    if _is_pickle0(head, size):
        return "pickle"
    return "other"


def zip_kind(names: list[str]) -> str:
    """nnseal-package | torch-zip | npz | nnunet-zip | zip, from the entry names of a validated zip."""
    if SIGNATURE_NAME in names or CARD_NAME in names:
        return "nnseal-package"
    if any(_TORCH_RECORD.match(name) for name in names):
        return "torch-zip"
    if names and all(name.endswith(".npy") for name in names):
        return "npz"
    if any(DATASET_RE.match(name.split("/", 1)[0]) for name in names if "/" in name):
        return "nnunet-zip"
    return "zip"


def looks_like_model_name(name: str) -> bool:
    return name.lower().endswith(MODEL_SUFFIXES)
