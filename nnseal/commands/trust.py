"""nnseal trust add/list/remove: the keys whose packages `nnseal install` accepts."""

from __future__ import annotations

import click

from nnseal.commands._common import emit_json, report_errors, trust_folder_from_environment


def _check_name(ctx, param, value):
    from nnseal.format.trust import is_valid_key_name

    if value is not None and not is_valid_key_name(value):
        raise click.BadParameter("use letters, digits, '.', '_' or '-' (at most 64, not starting with '.')")
    return value


@click.group(help="""Manage the keys, CAs and Sigstore identities trusted for install.

Trusted keys live in $NNSEAL_TRUSTED_KEYS if set, else in
$XDG_CONFIG_HOME/nnseal/trusted_keys (default ~/.config/nnseal/trusted_keys).
A key is named by its fingerprint: the hex sha256 of its public key PEM, the
same value OpenSSF Model Signing records as the signer's hint. CA certificates
(certificate method) and Sigstore identities (keyless method) live beside them.""")
def command():
    pass


@command.command(name="add", help="""Trust the public key KEY (a .pub PEM file). The same key under the
same name again is a no-op (exit 0); another name for it, or another key under that name, is refused.""")
@click.argument("key", type=click.Path(dir_okay=False))
@click.option("--name", callback=_check_name, help="Name to list it under (default: the file name without .pub).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@report_errors
def add(key, name, as_json):
    from nnseal.format.trust import add_trusted_key

    trusted = add_trusted_key(trust_folder_from_environment(), key, name=name)
    if as_json:
        emit_json({"key": _key_json(trusted), "already_trusted": trusted.already_trusted})
        return
    if trusted.already_trusted:
        click.echo(f"already trusted {trusted.name}: {trusted.fingerprint} (nothing changed)")
        return
    click.echo(f"trusted {trusted.name}: {trusted.fingerprint}")
    click.echo(f"stored in {trusted.path}")


@command.command(name="add-ca", help="""Trust CA.pem (a CA certificate, root or intermediate) for packages
signed by the OMS certificate method, but only by signing certificates that match
an --identity: """ + "email:ADDRESS, uri:URI or dns:NAME (a subjectAltName), subject:RFC4514-NAME, "
                 "or sha256:HEX (the signing certificate's fingerprint).")
@click.argument("ca", type=click.Path(dir_okay=False))
@click.option("--name", required=True, callback=_check_name, help="Name to list it under.")
@click.option("--identity", "identities", multiple=True, required=True,
              help="Signing certificate this CA may vouch for; repeatable (any one matches).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@report_errors
def add_ca(ca, name, identities, as_json):
    from nnseal.format.trust import add_trusted_ca

    trusted = add_trusted_ca(trust_folder_from_environment(), ca, name, identities)
    if as_json:
        emit_json({"ca": _ca_json(trusted)})
        return
    click.echo(f"trusted CA {trusted.name}: {trusted.subject} ({trusted.fingerprint})")
    click.echo(f"for: {', '.join(trusted.identities)}")
    click.echo(f"stored in {trusted.path}")


@command.command(name="add-sigstore", help="""Trust Sigstore (keyless) signatures whose certificate names
IDENTITY (an e-mail address or a CI workflow URI), as vouched for by the OIDC ISSUER
(e.g. https://accounts.google.com or https://token.actions.githubusercontent.com).
Verifying them needs nnseal[sigstore].""")
@click.option("--name", required=True, callback=_check_name, help="Name to list it under.")
@click.option("--identity", required=True, help="The certificate's subjectAltName, exactly.")
@click.option("--issuer", required=True, help="The OIDC issuer URL, exactly.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@report_errors
def add_sigstore(name, identity, issuer, as_json):
    from nnseal.format.trust import add_sigstore_identity

    trusted = add_sigstore_identity(trust_folder_from_environment(), name, identity, issuer)
    if as_json:
        emit_json({"sigstore": _sigstore_json(trusted)})
        return
    click.echo(f"trusted Sigstore identity {trusted.name}: {trusted.identity} from {trusted.issuer}")
    click.echo(f"stored in {trusted.path}")


@command.command(name="list", help="Show the trusted keys, CAs and Sigstore identities.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@report_errors
def list_(as_json):
    from nnseal.format.trust import list_sigstore_identities, list_trusted_cas, list_trusted_keys

    folder = trust_folder_from_environment()
    keys = list_trusted_keys(folder)
    cas = list_trusted_cas(folder)
    identities = list_sigstore_identities(folder)
    if as_json:
        emit_json({"folder": str(folder), "keys": [_key_json(k) for k in keys], "cas": [_ca_json(c) for c in cas],
                   "sigstore": [_sigstore_json(i) for i in identities]})
        return
    if not (keys or cas or identities):
        click.echo(f"no trusted keys in {folder}")
        return
    width = max(len(name) for name in [*(k.name for k in keys), *(c.name for c in cas),
                                       *(i.name for i in identities)])
    for k in keys:
        click.echo(f"{k.name:<{width}}  {k.fingerprint}")
    for c in cas:
        click.echo(f"{c.name:<{width}}  CA {c.subject} ({c.fingerprint[:16]}) for {', '.join(c.identities)}")
    for i in identities:
        click.echo(f"{i.name:<{width}}  sigstore {i.identity} from {i.issuer}")


@command.command(name="remove", help="""Stop trusting a key, given its exact name, its fingerprint, or
a prefix of its fingerprint (at least 8 hex digits) that no other key shares.

An argument that names one key and is also (the start of) another key's
fingerprint is refused, listing both: give the full name or a longer fingerprint.""")
@click.argument("name_or_fingerprint")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@report_errors
def remove(name_or_fingerprint, as_json):
    from nnseal.format.trust import (
        CA_SUFFIX,
        SIGSTORE_SUFFIX,
        is_valid_key_name,
        remove_trust_entry,
        remove_trusted_key,
    )

    folder = trust_folder_from_environment()
    if is_valid_key_name(name_or_fingerprint) and any(
            (folder / f"{name_or_fingerprint}{suffix}").is_file() for suffix in (CA_SUFFIX, SIGSTORE_SUFFIX)):
        path = remove_trust_entry(folder, name_or_fingerprint)
        if as_json:
            emit_json({"removed": {"name": name_or_fingerprint, "fingerprint": None, "path": str(path)}})
        else:
            click.echo(f"removed {path}")
        return
    removed = remove_trusted_key(folder, name_or_fingerprint)
    if as_json:
        emit_json({"removed": _key_json(removed)})
        return
    click.echo(f"removed {removed.name}: {removed.fingerprint}")


# One shape per kind of trust entry, whichever command prints it (add, list, remove).
def _key_json(k) -> dict:
    return {"name": k.name, "fingerprint": k.fingerprint, "path": str(k.path)}


def _ca_json(c) -> dict:
    return {"name": c.name, "fingerprint": c.fingerprint, "subject": c.subject, "identities": list(c.identities),
            "path": str(c.path)}


def _sigstore_json(i) -> dict:
    return {"name": i.name, "identity": i.identity, "issuer": i.issuer, "path": str(i.path)}
