"""What a file is, read the way each loader that might open it would read it: never from magic bytes alone.

torch.load opens a file as a zip when it starts with a local-file header
(``torch.serialization._is_zipfile``); otherwise it tries the legacy tar format
(``tarfile.open``, which accepts any 512-byte header whose checksum matches, ``ustar``
magic or not), and then falls back to a raw pickle stream. pickle.load reads opcodes from
byte 0 whatever they are; numpy.load reads a ``\\x93NUMPY`` header; the safetensors loader
reads an 8-byte length and a JSON object. ``readings`` lists every one of those readings
that the file's first bytes admit: more than one is a polyglot, which the scan refuses
because two programs would see two different files.

The file name matters only for the verdict on content that is not a model format nnseal
can vouch for (see ``looks_like_model_name`` and ``in_model_folder``).
"""

from __future__ import annotations

import os
import re

from nnseal.format.layout import CARD_NAME, DATASET_RE
from nnseal.readers.legacy_tar import LEGACY_MAGIC, is_tar_header
from nnseal.readers.pickle_ops import PickleDecodeError, PickleTruncated, iter_ops

# How much of a file the sniffer looks at.
HEAD_BYTES = 64 << 10

NUMPY_MAGIC = b"\x93NUMPY"
# torch.serialization._is_zipfile: exactly these four bytes at offset 0.
TORCH_ZIP_MAGIC = b"PK\x03\x04"
# An empty zip (end record only): not torch's zip reading, but zipfile's.
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
# nnseal.format.oms.SIGNATURE_NAME, spelled out so that classifying a file does not import
# the signing stack (a test checks that the two agree).
SIGNATURE_NAME = "model.sig"
# How a pickle reaches code: it imports (GLOBAL, INST, STACK_GLOBAL, and the copyreg extension
# opcodes by number). Importing a module runs it, so an import is enough: the calls (REDUCE,
# BUILD, SETITEM into the process environment, ...) need no more than what the import returned.
_IMPORTS = frozenset({0x63, 0x69, 0x93, 0x82, 0x83, 0x84})
_MARK = 0x28

# Names torch.load (or pickle.load) is pointed at in practice.
MODEL_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".tar", ".pkl", ".pickle", ".joblib")
# Content formats with their own suffixes: unrecognisable content under these is reported too.
DATA_SUFFIXES = (".npy", ".npz", ".safetensors", ".zip")
# nnU-Net's fold folders: nnUNetv2_predict loads fold_X/<checkpoint name> with torch.load.
_FOLD_DIR = re.compile(r"^fold_(\d+|all)$")

_TORCH_RECORD = re.compile(r"^[^/]+/(data|constants)\.pkl$")


def could_import(module: str) -> bool:
    """Whether an unpickler asked for ``module`` could run code by importing it.

    A module is a file or folder on sys.path named after it, and importing ``a.b c`` imports
    ``a`` first: so the first dotted part decides. One with whitespace in it names no module
    an environment installs (only a file an attacker already placed on sys.path, which runs
    anyway), and that keeps prose like ``copyright 2024`` (GLOBAL ``opyright 2024``) text.
    """
    first = module.split(".", 1)[0]
    return bool(first) and not any(char.isspace() for char in first)


def pickle_reading(head: bytes, size: int) -> bool:
    """Whether pickle.load would get anywhere from byte 0, whatever the first opcode.

    The opcodes are read as the C unpickler reads them (``iter_ops``). Yes when they parse up
    to STOP; when they parse up to the end of the bytes read and the file goes on (padding
    cannot push a payload past the sniffer); and when they import anything (see
    ``could_import``) before they break, because pickle runs the import before it notices
    the damage. Text rarely parses that far: a line or two, then a byte that is no opcode.
    """
    if not head:
        return False
    marked = False
    try:
        for _op, arg, pos, _ in iter_ops(head):
            code = head[pos]
            if code == 0x2E:  # STOP
                return True
            if code == _MARK:
                marked = True
            elif code in _IMPORTS:
                if code == 0x63 or (code == 0x69 and marked):  # GLOBAL; INST pops to a MARK first
                    if could_import(arg[0]):
                        return True
                elif code != 0x69:
                    return True
    except PickleTruncated:
        return size > len(head)
    except PickleDecodeError:
        return False
    return False


def safetensors_reading(head: bytes, size: int) -> bool:
    """An 8-byte little-endian header length, then a JSON object (a lying length is the header check's to report)."""
    return len(head) >= 10 and head[8:9] == b"{" and head[9:10] in b'"} \t\r\n'


def readings(head: bytes, size: int) -> list[str]:
    """Every way a loader could read a file whose first bytes are ``head``, in torch.load's order.

    zip | torch-legacy-tar | torch-legacy | pickle | npy | safetensors
    """
    found: list[str] = []
    is_zip = head.startswith(TORCH_ZIP_MAGIC) or head.startswith(EMPTY_ZIP_MAGIC)
    if is_zip:
        found.append("zip")
    if is_tar_header(head):
        found.append("torch-legacy-tar")
    if head.startswith(LEGACY_MAGIC):
        found.append("torch-legacy")
    # A zip starts with PERSID ('P'), which plain pickle refuses at once; 0x93 (numpy's magic)
    # is STACK_GLOBAL on an empty stack: neither can be a pickle that gets anywhere.
    elif not is_zip and head[:1] != b"\x93" and pickle_reading(head, size):
        found.append("pickle")
    if head.startswith(NUMPY_MAGIC):
        found.append("npy")
    if safetensors_reading(head, size):
        found.append("safetensors")
    return found


def sniff(head: bytes, size: int) -> str:
    """The kind of a file from its first bytes.

    zip | torch-legacy | torch-legacy-tar | npy | safetensors | pickle | polyglot | empty | other
    """
    if size == 0:
        return "empty"
    kinds = readings(head, size)
    if not kinds:
        return "other"
    if len(kinds) > 1:
        return "polyglot"
    return kinds[0]


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
    """A name torch.load or pickle.load is pointed at, or a data format's own suffix."""
    return name.lower().endswith(MODEL_SUFFIXES + DATA_SUFFIXES)


def is_model_name(name: str) -> bool:
    """A name torch.load or pickle.load is pointed at (``.pth .pt .ckpt .bin .tar .pkl``, ...)."""
    return name.lower().endswith(MODEL_SUFFIXES)


def in_model_folder(path: str) -> bool:
    """Whether ``path`` (``/`` or ``!`` separated) lies in an nnU-Net fold folder (``fold_0/``, ``fold_all/``)."""
    parts = re.split(r"[/\\!]", path)
    return any(_FOLD_DIR.match(part) for part in parts[:-1])


def file_kind(path: str | os.PathLike) -> str | None:
    """What the file or folder at ``path`` is, by content: a ``sniff`` kind, a zip's ``zip_kind``, or
    "folder"; None when that cannot be told (missing, unreadable, or a zip the reader refuses),
    so that the command reading it says why in its own words.

    For the CLI's answer to the wrong kind of file (a checkpoint given to `install`): one
    reading, the scan's, of what each loader would see.
    """
    from nnseal.errors import HostileArchive
    from nnseal.readers.zip_archive import open_zip

    if os.path.isdir(path):
        return "folder"
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(HEAD_BYTES)
    except OSError:
        return None
    kind = sniff(head, size)
    if kind == "other" and _has_zip_end_record(path, size):
        return None  # a zip by its end (zipfile reads from there): the zip reader says what is wrong
    if kind != "zip":
        return kind
    try:
        with open_zip(path) as archive:
            return zip_kind(archive.names())
    except (HostileArchive, OSError):
        return None


def _has_zip_end_record(path: str | os.PathLike, size: int) -> bool:
    """Whether the file's last 64 KiB (and the end record's 22 bytes) hold an end-of-central-directory signature."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, size - (64 << 10) - 22))
            return EMPTY_ZIP_MAGIC in handle.read()
    except OSError:
        return False
