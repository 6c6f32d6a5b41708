"""The ``--json`` contract, in one place: every run of a command given ``--json`` prints exactly one
JSON document on stdout, on success and on every failure (a refusal, an I/O error, a usage error,
Ctrl-C or SIGTERM, a bug), with the same envelope (docs/JSON.md):

    json_version, nnseal_version, command, ok, exit_code, and on failure error {kind, path, reason, hint, message}

A command plugs in by taking ``--json`` (``as_json``) under ``@report_errors`` and calling
``emit_json(document, exit_code=..., error=...)`` once; failures raised out of the command body
are turned into the failure document by ``report_errors`` (``nnseal.commands._common``), usage
errors found while parsing by the group (``nnseal.cli``). Its schema is
docs/schemas/<command>.schema.json (tests/test_json_contract.py checks that every command has one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

from nnseal import __version__
from nnseal.errors import EXIT_ENVIRONMENT, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, NnsealError

JSON_VERSION = 1
ENVELOPE_FIELDS = ("json_version", "nnseal_version", "command", "ok", "exit_code", "error")

_EMITTED = "nnseal.json.emitted"  # in click's Context.meta, shared by a context and its parents
_ARGV = "nnseal.argv"


def json_requested(params: Mapping[str, Any]) -> bool:
    """Whether a command's parameters ask for JSON on stdout: ``--json``, or scan's ``--format json``."""
    return bool(params.get("as_json")) or params.get("output_format") == "json"


def argv_requests_json(argv: Sequence[str]) -> bool:
    """The same question asked of raw arguments, for a usage error found before they were parsed."""
    args = list(argv)
    if "--" in args:
        args = args[:args.index("--")]
    for i, arg in enumerate(args):
        if arg == "--json" or arg == "--format=json" or (arg == "--format" and args[i + 1:i + 2] == ["json"]):
            return True
    return False


def error_json(err: BaseException) -> tuple[dict, int]:
    """The ``error`` object for an exception and the exit code the process ends with."""
    from nnseal.commands._common import error_line, one_line

    if isinstance(err, NnsealError):
        return {**err.to_json(), "message": one_line(error_line(err))}, err.exit_code
    if isinstance(err, KeyboardInterrupt):
        code = getattr(err, "exit_code", 130)
        signal_name = str(err) or "SIGINT"
        return _error("interrupted", f"interrupted by {signal_name}; everything begun was undone"), code
    if isinstance(err, click.exceptions.Abort):
        return _error("aborted", "aborted at a prompt"), 1
    if isinstance(err, click.ClickException):
        kind = "usage_error" if isinstance(err, click.UsageError) else "environment_problem"
        return _error(kind, err.format_message(), getattr(err, "filename", None)), err.exit_code
    if isinstance(err, OSError):
        reason = one_line(err.strerror or str(err))
        return _error("environment_problem", reason, err.filename), EXIT_ENVIRONMENT
    # A bug, met on an input nnseal did not understand: a refusal (report_errors says the same).
    return (_error("unexpected_error", f"unexpected {type(err).__name__}: {one_line(str(err))}",
                   exception=type(err).__name__), EXIT_REFUSED)


def _error(kind: str, reason: str, path: Any = None, **more: Any) -> dict:
    from nnseal.commands._common import one_line

    path = None if path is None else str(path)
    message = f"{path}: {reason}" if path else reason
    return {"kind": kind, "path": path, "reason": reason, "hint": None, "message": one_line(message), **more}


def failure(kind: str, reason: str, path: Any = None) -> dict:
    """An ``error`` object for a failure that is not an exception (verify's problems, doctor's warnings)."""
    return _error(kind, reason, path)


def command_name(ctx: click.Context | None = None) -> str:
    """``verify``, ``trust add``: the command path without the program name."""
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is None:
        return ""
    return " ".join(ctx.command_path.split()[1:])


def envelope(document: Mapping[str, Any], *, command: str, exit_code: int, error: dict | None) -> dict:
    """``document`` with the envelope fields; they win over the document's own (a report's ``ok``)."""
    if exit_code != EXIT_OK and error is None:
        raise ValueError("a failed run's JSON document needs an error")  # a bug in the command
    return {**document, "json_version": JSON_VERSION, "nnseal_version": __version__, "command": command,
            "ok": exit_code == EXIT_OK, "exit_code": exit_code,
            **({"error": error} if exit_code != EXIT_OK else {})}


def render(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, default=str)


def emit_json(document: Mapping[str, Any], *, exit_code: int = EXIT_OK, error: NnsealError | dict | None = None,
              command: str | None = None) -> None:
    """Print ``document`` in the envelope as the run's one JSON document on stdout.

    ``exit_code`` is the code the command then exits with (it still calls ``sys.exit`` itself);
    a non-zero one needs ``error``: an NnsealError or a ``failure(...)`` object. Printing a second
    document in the same run is a bug; the second call is ignored, so stdout stays one document.
    """
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        if ctx.meta.get(_EMITTED):
            return
        ctx.meta[_EMITTED] = True
    if isinstance(error, NnsealError):
        error = error_json(error)[0]
    click.echo(render(envelope(document, command=command if command is not None else command_name(ctx),
                               exit_code=exit_code, error=error)))


def emit_error(err: BaseException, *, command: str | None = None) -> int:
    """Print the failure document for ``err`` (unless one was printed); return the exit code."""
    error, code = error_json(err)
    emit_json({}, exit_code=code, error=error, command=command)
    return code


# --- usage errors found while parsing (nnseal.cli's group) -------------------------------------


def remember_argv(ctx: click.Context, args: Sequence[str]) -> None:
    ctx.meta[_ARGV] = list(args)


def report_usage_error(ctx: click.Context, err: click.ClickException) -> None:
    """A usage error raised before a command body ran (a missing argument, an unknown option or
    command): the failure document, when the arguments asked for JSON."""
    argv = ctx.meta.get(_ARGV) or []
    if ctx.meta.get(_EMITTED) or not argv_requests_json(argv):
        return
    sub = getattr(err, "ctx", None)
    name = command_name(sub) if sub is not None and sub is not ctx else _command_from_argv(argv)
    error, code = error_json(err)
    if code == EXIT_OK:
        return
    if isinstance(err, click.UsageError):
        code = err.exit_code if err.exit_code else EXIT_USAGE
    emit_json({}, exit_code=code, error=error, command=name)


def _command_from_argv(argv: Sequence[str]) -> str:
    words = [a for a in argv if not a.startswith("-")]
    return " ".join(words[:2]) if words[:1] == ["trust"] else " ".join(words[:1])
