"""The one exception family of nnseal.

Every error a user can see is an ``NnsealError``: a reason, the path it is about and,
where it helps, a ``Hint`` naming what to do. The CLI prints it as one line on stderr
(wording the hint as its own flag or command) and exits with ``err.exit_code``.

Exit codes (README, "Exit codes"):
  0 success
  1 refused: unsafe, unverified, tampered, would overwrite
  2 usage error (click's own exit code for bad arguments)
  3 environment or I/O error: missing file, permission denied, disk full, network
"""

from __future__ import annotations

import os
import re
from enum import Enum

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3


class Hint(Enum):
    """A remedy for an error, named, not worded: the library does not know how its caller is
    driven, so the CLI words each one as its own flag or command (``nnseal.commands._common``)."""

    FORCE = "replace what exists"
    FORCE_REMOVE = "remove it anyway"
    OTHER_PATH = "choose another path; key files are never replaced"
    UNSIGNED = "install it as a legacy nnU-Net zip, without a signature, ideally pinned by its sha256"
    SIGNED = "install it as a signed package"
    TRUSTED_KEY = "give a trusted public key, or add it to the trust folder"
    TRUST_SIGNER = "if you trust this signer, add its public key to the trusted keys"
    TRUST_CA = "if you trust this signer, trust its CA certificate for the signing certificate's identity"
    TRUST_SIGSTORE = "if you trust this signer, trust its Sigstore identity and OIDC issuer"
    OTHER_KEY_NAME = "choose another name, or remove the trusted key of that name first"
    ADD_TRUSTED_KEY = "the trust folder holds only files written by add_trusted_key"
    LIST_TRUSTED_KEYS = "list the trusted keys"
    PASSPHRASE = "give the key's passphrase"  # noqa: S105 (a remedy, not a secret)
    SIGNING_KEY = "give a signing key"
    MAX_SIZE = "raise the download size limit"
    READ_TIMEOUT = "raise the read timeout"
    DEADLINE = "raise the download deadline"
    MIN_RATE = "lower the minimum transfer rate, or lengthen the window it is measured over"
    RESULTS_FOLDER = "give the results folder"
    ALLOW_DOWNGRADE = "allow installing an older release over a newer one"
    OFFLINE = "allow network access, or fill the cache by installing once online"
    IDENTITY_TOKEN = "give an OIDC identity token for Sigstore"  # noqa: S105 (a remedy, not a secret)


class NnsealError(Exception):
    """Base of every error nnseal raises on purpose.

    ``reason`` says what is wrong, ``path`` names the file it is about, ``hint`` names a
    remedy. ``str(err)`` is ``"path: reason"``; it never names a CLI flag.
    """

    exit_code = EXIT_ENVIRONMENT

    def __init__(self, reason: str, *, path: str | os.PathLike | None = None, hint: Hint | None = None):
        self.path = os.fspath(path) if path is not None else None
        self.reason = reason
        self.hint = hint
        super().__init__(f"{self.path}: {reason}" if self.path else reason)

    def _fields(self) -> dict:
        """Constructor arguments beyond reason, path and hint (subclasses with more fields extend it)."""
        return {}

    @property
    def kind(self) -> str:
        """The error's class as a stable snake_case name (``WouldOverwrite`` -> ``would_overwrite``):
        what a script branches on in ``--json`` output, never the reason's wording."""
        return error_kind(type(self))

    def to_json(self) -> dict:
        """``kind``, ``path``, ``reason`` and ``hint`` (the remedy's stable name, or None)."""
        return {"kind": self.kind, "path": self.path, "reason": self.reason,
                "hint": self.hint.name.lower() if self.hint is not None else None}

    def with_path(self, path: str | os.PathLike) -> NnsealError:
        """The same error (type, reason, hint and fields) about ``path``: to name the package in a refusal."""
        return type(self)(self.reason, path=path, hint=self.hint, **self._fields())

    def __reduce__(self):
        # Errors cross process boundaries (the scanner's workers): rebuild from the fields, not from str().
        return _rebuild, (type(self), self.reason, self.path, self.hint, self._fields())


def error_kind(cls: type) -> str:
    """``SomeErrorName`` -> ``some_error_name``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cls.__name__).lower()


def _rebuild(cls, reason, path, hint, fields):
    return cls(reason, path=path, hint=hint, **fields)


class InvalidArgument(NnsealError):
    """A caller passed a value the function cannot take (a malformed digest, an invalid name)."""

    exit_code = EXIT_USAGE


# --- refusals (exit 1) -------------------------------------------------------


class Refused(NnsealError):
    """The input is unsafe, unverified or tampered, or the action would overwrite."""

    exit_code = EXIT_REFUSED


class UnsafeCheckpoint(Refused):
    """A checkpoint needs globals outside the allowlist, or its archive/tensors are malformed."""


class HostileArchive(Refused):
    """A zip whose structure is malformed or built to attack an extractor."""


class UnsafeJson(Refused):
    """A JSON file that fails sanitizing (absolute paths, foreign architecture classes, ...)."""


class InvalidNpyHeader(Refused):
    """A numpy .npy header that cannot be parsed, or is over the size limit."""


class InvalidSafetensors(Refused):
    """A safetensors file whose header or layout is invalid."""


class SignatureError(Refused):
    """A signature that is missing, malformed or does not verify."""


class UntrustedSigner(SignatureError):
    """A valid signature by a key that is not trusted; ``fingerprint`` is the signer the bundle names."""

    def __init__(self, reason: str, *, path: str | os.PathLike | None = None, hint: Hint | None = None,
                 fingerprint: str | None = None):
        super().__init__(reason, path=path, hint=hint)
        self.fingerprint = fingerprint

    def _fields(self) -> dict:
        return {"fingerprint": self.fingerprint}


class TamperedPackage(Refused):
    """Package contents disagree with the signed manifest."""


class WouldOverwrite(Refused):
    """The destination exists and replacing it was not asked for."""


class Downgrade(WouldOverwrite):
    """An older release of an installed model, from the same signer (a rollback), and allowing it was not asked for."""


class BadKey(Refused):
    """A key of the wrong type or curve, or a wrong passphrase."""


class ModelLayoutError(Refused):
    """A model folder or package that does not have nnU-Net's layout, or lacks what was asked for."""


# --- environment (exit 3) ----------------------------------------------------


class EnvironmentProblem(NnsealError):
    """Missing file, permission denied, disk full, bad configuration of the machine."""

    exit_code = EXIT_ENVIRONMENT


class NetworkError(EnvironmentProblem):
    """DNS, connection, timeout or HTTP error while downloading."""


def from_os_error(err: OSError, path: str | os.PathLike | None = None) -> EnvironmentProblem:
    """Turn an OSError into a one-line EnvironmentProblem naming the file."""
    where = path if path is not None else err.filename
    return EnvironmentProblem(err.strerror or str(err), path=where)


class MalformedPickle(Refused):
    """A pickle that cannot be parsed (truncated, unknown opcode, broken stack) or is over the scan limits."""
