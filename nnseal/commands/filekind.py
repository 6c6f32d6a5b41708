"""The answer to the wrong kind of file: one line saying what the file is and which command takes it.

What a file is comes from the scan's classifier (``nnseal.scan.classify.file_kind``, by content,
never by name); this module only words it.
"""

from __future__ import annotations

import os

from nnseal.errors import Refused

_CHECKPOINT = "a PyTorch checkpoint"
_FOR_CHECKPOINTS = "`nnseal sanitize` or `nnseal scan`"
_FOR_PACKAGES = "`nnseal verify`, `nnseal inspect` or `nnseal install`"

# kind -> (what it is, the commands that take it)
_KINDS: dict[str, tuple[str, str | None]] = {
    "nnseal-package": ("an nnseal package", _FOR_PACKAGES),
    "nnunet-zip": ("an nnU-Net export zip (unsigned)",
                   "`nnseal inspect`, or `nnseal install --unsigned` (ideally with --sha256)"),
    "torch-zip": (_CHECKPOINT, _FOR_CHECKPOINTS),
    "torch-legacy": (_CHECKPOINT + " (legacy format)", _FOR_CHECKPOINTS),
    "torch-legacy-tar": (_CHECKPOINT + " (legacy tar format)", _FOR_CHECKPOINTS),
    "pickle": ("a pickle", "`nnseal scan`"),
    "polyglot": ("a file that reads as several formats at once", "`nnseal scan`"),
    "npy": ("a numpy array (.npy)", "`nnseal scan`"),
    "npz": ("a numpy archive (.npz)", "`nnseal scan`"),
    "safetensors": ("a safetensors file", "`nnseal scan`, or `nnseal sign` to sign it"),
    "zip": ("a zip archive, neither an nnseal package nor an nnU-Net export", "`nnseal scan`"),
}
# Kinds that are no model format at all: said as what the file is not.
_NOT_A_FORMAT = {"empty": "it is an empty file", "other": "its content is no format nnseal knows"}

CHECKPOINT_KINDS = frozenset({"torch-zip", "torch-legacy", "torch-legacy-tar"})


def describe(path: str | os.PathLike, kind: str) -> tuple[str, str | None]:
    """(what ``path`` is, the commands that take it), for a ``file_kind`` kind."""
    if kind == "folder":
        return _describe_folder(path)
    return _KINDS.get(kind, (f"a {kind} file", "`nnseal scan`"))


def _describe_folder(path: str | os.PathLike) -> tuple[str, str | None]:
    from nnseal.format.oms import SIGNATURE_NAME
    from nnseal.verify.receipt import RECEIPT_NAME

    def has(name: str) -> bool:
        return os.path.isfile(os.path.join(path, name))

    if has(RECEIPT_NAME):
        return "a model folder installed by nnseal", "`nnseal verify` or `nnseal doctor`"
    if is_folder_package(path):
        return "an nnseal folder package", "`nnseal verify` or `nnseal install`"
    if has(SIGNATURE_NAME):
        return "an OMS-signed folder", "`nnseal verify`"
    if has("plans.json"):
        return "an nnU-Net model folder", "`nnseal export -i`, `nnseal sign` or `nnseal doctor`"
    return "a folder", "`nnseal scan`, or `nnseal sign` to sign it"


def is_folder_package(path: str | os.PathLike) -> bool:
    """A folder holding a package's card and signature (``nnseal export --folder``)."""
    from nnseal.format.layout import CARD_NAME
    from nnseal.format.oms import SIGNATURE_NAME

    return all(os.path.isfile(os.path.join(path, name)) for name in (CARD_NAME, SIGNATURE_NAME))


def refuse_unless(path: str | os.PathLike, accepted: frozenset[str] | set[str], wanted: str) -> str | None:
    """The kind of ``path``; raise a one-line refusal when it is known and not ``accepted``.

    ``wanted`` is what the command takes ("a package"); an unknown kind (missing, unreadable,
    a zip the reader refuses) passes, for the command's own reader to say why.
    """
    from nnseal.scan.classify import file_kind

    kind = file_kind(path)
    if kind is None or kind in accepted:
        return kind
    if kind in _NOT_A_FORMAT:
        raise Refused(f"is not {wanted}: {_NOT_A_FORMAT[kind]}", path=path)
    what, commands = describe(path, kind)
    raise Refused(f"is {what}, not {wanted}" + (f": use {commands}" if commands else ""), path=path)
