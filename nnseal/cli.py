"""The `nnseal` console script: a click group whose commands are imported on demand.

Each command lives in ``nnseal.commands.<name>`` and is only imported when it runs (or
when its help is asked for), so `nnseal verify --help` never pays for torch.
"""

from __future__ import annotations

import importlib
import sys

import click

from nnseal import __version__

# command name -> module under nnseal.commands; each module defines `command`.
COMMANDS = {
    "demo": "demo",
    "sanitize": "sanitize",
    "keygen": "keygen",
    "sign": "sign",
    "export": "export",
    "verify": "verify",
    "inspect": "inspect",
    "install": "install",
    "trust": "trust",
    "download": "download",
    "scan": "scan",
    "doctor": "doctor",
    "list": "list",
    "uninstall": "uninstall",
}

SHORT_HELP = {
    "demo": "Run every stage on a small built-in nnU-Net-shaped model.",
    "sanitize": "Load a checkpoint safely and write its weights as safetensors.",
    "keygen": "Make an ECDSA P-256 signing key pair.",
    "sign": "Sign a model folder in place (OpenSSF Model Signing, key method).",
    "export": "Sanitize, package and sign trained nnU-Net models into one zip.",
    "verify": "Check a package, an OMS-signed folder, or an installed model's receipt.",
    "inspect": "Show what a package holds without trusting or extracting it.",
    "install": "Verify a package and install it atomically into nnUNet_results.",
    "trust": "Manage the keys trusted for install.",
    "download": "Download a package by URL and install it the verified way.",
    "scan": "CI gate: classify and check checkpoints, pickles and packages.",
    "doctor": "Check that this environment can run an installed or trained model folder.",
    "list": "List the models in nnUNet_results: signer, provenance, drift.",
    "uninstall": "Remove an installed model folder atomically.",
}


# Where the global -q/-v lands: Context.meta is shared by a context and all its children.
VERBOSITY_KEY = "nnseal.verbosity"
INVOKED_KEY = "nnseal.invoked"


class OneLineError(click.ClickException):
    """A click error as nnseal prints every error: ``nnseal: error: ...`` on one line, and for a usage
    error the line that says where help is (no usage block, no blank line)."""

    def __init__(self, message: str, help_hint: str | None = None):
        super().__init__(message)
        self.help_hint = help_hint

    def show(self, file=None) -> None:
        from nnseal.commands._common import one_line

        click.echo(f"nnseal: error: {one_line(self.message)}", err=True)
        if self.help_hint:
            click.echo(self.help_hint, err=True)


class OneLineUsageError(OneLineError):
    exit_code = 2


def one_line_click_error(err: click.ClickException, command_path: str | None = None) -> OneLineError:
    """``command_path`` names the command for an error that carries no context (some parser errors)."""
    if isinstance(err, OneLineError):
        return err
    if isinstance(err, click.UsageError):
        path = err.ctx.command_path if err.ctx is not None else command_path
        return OneLineUsageError(err.format_message(), f"Try '{path} -h' for help." if path else None)
    return OneLineError(err.format_message())


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        module_name = COMMANDS.get(name)
        if module_name is None:
            return None
        return importlib.import_module(f"nnseal.commands.{module_name}").command

    def main(self, args=None, prog_name=None, *rest, **extra):
        # The program is nnseal however it was started (console script, python -m nnseal, -c).
        return super().main(args, prog_name or "nnseal", *rest, **extra)

    def parse_args(self, ctx, args):
        from nnseal.commands.json_contract import remember_argv

        remember_argv(ctx, args)
        return super().parse_args(ctx, args)

    def format_commands(self, ctx, formatter):
        # Listing the commands must not import them (start-up time is a feature).
        rows = [(name, SHORT_HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    # click prints a usage error as a usage block, a blank line and "Error: ..."; nnseal prints
    # every error as one line. Both ways in are covered: the group's own arguments
    # (make_context) and a command's, parsed or raised while the group invokes it.
    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.ClickException as err:
            raise one_line_click_error(err, info_name) from None

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta[INVOKED_KEY] = name  # for an error raised while parsing its arguments
        return name, command, rest

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.ClickException as err:
            # A usage error found before the command body ran: still one JSON document under --json.
            from nnseal.commands.json_contract import report_usage_error

            report_usage_error(ctx, err)
            raise one_line_click_error(err, _invoked_path(ctx)) from None
        except click.exceptions.Abort:  # a prompt interrupted outside read_passphrase
            click.echo("nnseal: interrupted", err=True)
            sys.exit(130)


def _invoked_path(ctx: click.Context) -> str:
    """The command path up to the command being invoked (``nnseal export``)."""
    name = ctx.meta.get(INVOKED_KEY)
    return f"{ctx.command_path} {name}" if name else ctx.command_path


def _versions() -> str:
    """nnseal's version, and torch's and nnunetv2's when installed: read from their metadata, never imported."""
    from importlib.metadata import PackageNotFoundError, version

    others = []
    for name in ("torch", "nnunetv2"):
        try:
            others.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return f"nnseal {__version__}" + (f" ({', '.join(others)})" if others else "")


def _print_version(ctx, param, value):
    if value and not ctx.resilient_parsing:
        click.echo(_versions())
        ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Print nnseal's version (and torch's and nnunetv2's) and exit.")
@click.option("-q", "--quiet", is_flag=True, help="No progress, no summaries; refusals and errors still one line.")
@click.option("-v", "--verbose", is_flag=True, help="More detail (e.g. one line per entry written or rebuilt).")
@click.pass_context
def main(ctx, quiet, verbose):
    """Safety-first export, signing and verified install of nnU-Net models.

    Exit codes: 0 success, 1 refused (unsafe, unverified, tampered, would
    overwrite, not the kind of file the command takes), 2 usage error, 3
    environment or I/O error (missing file); 130, 143, 129 interrupted by
    SIGINT, SIGTERM, SIGHUP (everything begun is undone).

    Shell completion: eval "$(_NNSEAL_COMPLETE=bash_source nnseal)" (zsh_source, fish_source).
    """
    if quiet and verbose:
        raise click.UsageError("give -q or -v, not both")
    ctx.meta[VERBOSITY_KEY] = -1 if quiet else (1 if verbose else 0)


if __name__ == "__main__":  # python -m nnseal.cli
    main(prog_name="nnseal")
