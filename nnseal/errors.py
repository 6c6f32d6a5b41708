"""The one exception family of nnseal.

Every error a user can see is an ``NnsealError``; the CLI prints ``str(err)`` as
one line on stderr and exits with ``err.exit_code``. Messages name the file and
say what is wrong (and, where it helps, what to do), never a traceback.

Exit codes (README, "Exit codes"):
  0 success
  1 refused: unsafe, unverified, tampered, would overwrite
  2 usage error (click's own exit code for bad arguments)
  3 environment or I/O error: missing file, permission denied, disk full, network
"""

from __future__ import annotations

import os

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3


class NnsealError(Exception):
    """Base of every error nnseal raises on purpose."""

    exit_code = EXIT_ENVIRONMENT

    def __init__(self, message: str, *, path: str | os.PathLike | None = None):
        self.path = os.fspath(path) if path is not None else None
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


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


class InvalidSafetensors(Refused):
    """A safetensors file whose header or layout is invalid."""


class SignatureError(Refused):
    """A signature that is missing, malformed or does not verify."""


class UntrustedSigner(SignatureError):
    """A valid signature by a key that is not trusted."""


class TamperedPackage(Refused):
    """Package contents disagree with the signed manifest."""


class WouldOverwrite(Refused):
    """The destination exists and --force was not given."""


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
