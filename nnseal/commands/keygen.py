"""nnseal keygen: make an ECDSA P-256 key pair for signing packages."""

from __future__ import annotations

import os

import click

from nnseal.commands._common import emit_json, is_quiet, passphrase_options, read_passphrase, report_errors


@click.command(help="""Make an ECDSA P-256 signing key pair.

Writes PATH.pem (PKCS#8 private key, mode 0600, encrypted when a passphrase is
given) and PATH.pub (public key to hand to whoever installs your packages), and
prints the key's fingerprint; `-o lab` and `-o lab.pem` both write lab.pem and
lab.pub, and missing folders are created (mode 0700). Existing files are never
overwritten. Keys made
with openssl (`openssl ecparam -name prime256v1 -genkey | openssl pkcs8 -topk8`)
work as well.""")
@click.option("-o", "output", required=True, metavar="PATH",
              help="Path prefix: writes PATH.pem and PATH.pub (a .pem or .pub suffix is not doubled).")
@passphrase_options
@click.option("--json", "as_json", is_flag=True, help="Print paths and fingerprint as JSON.")
@report_errors
def command(output, passphrase, passphrase_env, as_json):
    from nnseal.format.keys import generate_key_pair

    secret = read_passphrase(passphrase, passphrase_env, confirm=True)
    files = generate_key_pair(os.path.expanduser(output), secret)
    if as_json:
        emit_json({"private_key": str(files.private_path), "public_key": str(files.public_path),
                   "fingerprint": files.fingerprint, "encrypted": secret is not None})
        return
    if is_quiet():
        return
    click.echo(f"private key: {files.private_path}{'' if secret else ' (not encrypted: keep it secret)'}")
    click.echo(f"public key:  {files.public_path}")
    click.echo(f"fingerprint: {files.fingerprint}")
