"""What every command shares: turning errors into one line and an exit code, JSON output."""

from __future__ import annotations

import functools
import json
import os
import sys

import click

from nnseal.errors import EXIT_ENVIRONMENT, EXIT_REFUSED, NnsealError, Refused


def report_errors(fn):
    """Run a command body; print any failure as one line on stderr and exit with its code.

    Set NNSEAL_DEBUG=1 to get the traceback of an unexpected error.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except NnsealError as err:
            kind = "refused" if isinstance(err, Refused) else "error"
            click.echo(f"nnseal: {kind}: {one_line(str(err))}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("nnseal: interrupted", err=True)
            sys.exit(130)
        except OSError as err:
            where = f"{err.filename}: " if err.filename else ""
            click.echo(f"nnseal: error: {where}{one_line(err.strerror or str(err))}", err=True)
            sys.exit(EXIT_ENVIRONMENT)
        except Exception as err:  # a bug, but the user still gets one line
            if os.environ.get("NNSEAL_DEBUG"):
                raise
            click.echo(
                f"nnseal: refused: unexpected {type(err).__name__}: {one_line(str(err))} "
                "(set NNSEAL_DEBUG=1 for a traceback, and please report it)",
                err=True,
            )
            # Unexpected failures happen on inputs nnseal did not understand: refuse them.
            sys.exit(EXIT_REFUSED)

    return wrapper


def one_line(text: str) -> str:
    """Whitespace collapsed, and every other non-printable character shown escaped, so text that
    came from an input (a card, an entry name) can neither add lines nor drive the terminal."""
    collapsed = " ".join(str(text).split())
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in collapsed)


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def show_progress(quiet: bool) -> bool:
    """Progress bars only for a person at a terminal: never in CI, with --quiet or piped."""
    if quiet or os.environ.get("CI"):
        return False
    return sys.stderr.isatty()


def passphrase_options(fn):
    """--passphrase (prompt) and --passphrase-env VAR, for commands that take a private key."""
    fn = click.option("--passphrase-env", metavar="VAR",
                      help="Read the key passphrase from environment variable VAR.")(fn)
    fn = click.option("--passphrase", is_flag=True, help="Ask for the key passphrase at a prompt.")(fn)
    return fn


def read_passphrase(prompt: bool, env_var: str | None, *, confirm: bool) -> bytes | None:
    """The passphrase from VAR or a prompt; None when neither was asked for."""
    if env_var:
        value = os.environ.get(env_var)
        if value is None:
            raise click.UsageError(f"--passphrase-env {env_var}: that environment variable is not set")
        return value.encode("utf-8")
    if prompt:
        return click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm).encode("utf-8")
    return None


def check_sha256(ctx, param, value):
    """click callback: a --sha256 pin must be 64 hex digits (an empty one is a mistake, not "no pin")."""
    if value is None:
        return None
    from nnseal.verify.fetch import normalise_sha256

    try:
        return normalise_sha256(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
