"""nnseal trust add/list/remove: the keys whose packages `nnseal install` accepts."""

from __future__ import annotations

import click

from nnseal.commands._common import emit_json, report_errors, trust_folder_from_environment


def _check_name(ctx, param, value):
    from nnseal.format.trust import is_valid_key_name

    if value is not None and not is_valid_key_name(value):
        raise click.BadParameter("use letters, digits, '.', '_' or '-' (at most 64, not starting with '.')")
    return value


@click.group(help="""Manage the keys trusted for install.

Trusted keys live in $NNSEAL_TRUSTED_KEYS if set, else in
$XDG_CONFIG_HOME/nnseal/trusted_keys (default ~/.config/nnseal/trusted_keys).
A key is named by its fingerprint: the hex sha256 of its public key PEM, the
same value OpenSSF Model Signing records as the signer's hint.""")
def command():
    pass


@command.command(name="add", help="Trust the public key KEY (a .pub PEM file).")
@click.argument("key", type=click.Path(dir_okay=False))
@click.option("--name", callback=_check_name, help="Name to list it under (default: the file name without .pub).")
@report_errors
def add(key, name):
    from nnseal.format.trust import add_trusted_key

    trusted = add_trusted_key(trust_folder_from_environment(), key, name=name)
    click.echo(f"trusted {trusted.name}: {trusted.fingerprint}")
    click.echo(f"stored in {trusted.path}")


@command.command(name="list", help="Show the trusted keys and their fingerprints.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@report_errors
def list_(as_json):
    from nnseal.format.trust import list_trusted_keys

    folder = trust_folder_from_environment()
    keys = list_trusted_keys(folder)
    if as_json:
        emit_json({"folder": str(folder),
                   "keys": [{"name": k.name, "fingerprint": k.fingerprint, "path": str(k.path)} for k in keys]})
        return
    if not keys:
        click.echo(f"no trusted keys in {folder}")
        return
    width = max(len(k.name) for k in keys)
    for k in keys:
        click.echo(f"{k.name:<{width}}  {k.fingerprint}")


@command.command(name="remove", help="""Stop trusting a key, given its exact name, its fingerprint, or
a prefix of its fingerprint (at least 8 hex digits) that no other key shares.

An argument that names one key and is also (the start of) another key's
fingerprint is refused, listing both: give the full name or a longer fingerprint.""")
@click.argument("name_or_fingerprint")
@report_errors
def remove(name_or_fingerprint):
    from nnseal.format.trust import remove_trusted_key

    removed = remove_trusted_key(trust_folder_from_environment(), name_or_fingerprint)
    click.echo(f"removed {removed.name}: {removed.fingerprint}")
