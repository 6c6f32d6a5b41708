"""The `nnseal` console script: a click group whose commands are imported on demand.

Each command lives in ``nnseal.commands.<name>`` and is only imported when it runs (or
when its help is asked for), so `nnseal verify --help` never pays for torch.
"""

from __future__ import annotations

import importlib

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


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        module_name = COMMANDS.get(name)
        if module_name is None:
            return None
        return importlib.import_module(f"nnseal.commands.{module_name}").command

    def parse_args(self, ctx, args):
        from nnseal.commands.json_contract import remember_argv

        remember_argv(ctx, args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.ClickException as err:
            # A usage error found before the command body ran: still one JSON document under --json.
            from nnseal.commands.json_contract import report_usage_error

            report_usage_error(ctx, err)
            raise

    def format_commands(self, ctx, formatter):
        # Listing the commands must not import them (start-up time is a feature).
        rows = [(name, SHORT_HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nnseal")
def main():
    """Safety-first export, signing and verified install of nnU-Net models.

    Exit codes: 0 success, 1 refused (unsafe, unverified, tampered, would
    overwrite), 2 usage error, 3 environment or I/O error; 130, 143, 129
    interrupted by SIGINT, SIGTERM, SIGHUP (everything begun is undone).
    """
