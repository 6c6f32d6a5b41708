"""nnseal sign: sign a model folder in place with the OpenSSF Model Signing key, certificate or Sigstore method."""

from __future__ import annotations

import os

import click

from nnseal.commands._common import (
    SIGNING_KEY_ENV,
    emit_json,
    is_quiet,
    key_passphrase,
    report_errors,
    signing_key_path,
    signing_options,
    sigstore_signer,
)
from nnseal.errors import EnvironmentProblem


@click.command(help="""Sign FOLDER (any model folder, e.g. a Hugging Face repository, or one model
file) with the OpenSSF Model Signing key method, as `model_signing sign key` does (with
--certificate, the certificate method, as `model_signing sign certificate`; the key may be in a
PKCS#11 token, --pkcs11-uri; with --sigstore, keyless by the Sigstore method, as `model_signing sign
sigstore`, which needs the network): the files stay as they are and a detached signature is written
(default FOLDER/model.sig). An encrypted key's passphrase comes from --passphrase-env,
$NNSEAL_KEY_PASSPHRASE, or a prompt at a terminal. Every regular file is
signed except .git, .gitattributes, .github and .gitignore at the top, the signature itself and
--ignore-path; a symbolic link or special file is refused. `nnseal verify FOLDER` and
`model_signing verify key` (or `verify certificate`) both check the result. An existing signature is never replaced
without --force.""")
@click.argument("folder", type=click.Path())
@signing_options
@click.option("-o", "--signature", "signature", type=click.Path(dir_okay=False),
              help="Signature file to write (default: FOLDER/model.sig).")
@click.option("--ignore-path", "ignore_paths", multiple=True, metavar="PATH",
              help="Leave PATH (relative to FOLDER, and everything under it) unsigned; repeatable.")
@click.option("--force", is_flag=True, help="Replace the signature file if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@report_errors
def command(folder, key, passphrase, passphrase_env, certificate, certificate_chain, pkcs11_uri, use_sigstore,
            identity_token, oidc_issuer, staging, signature, ignore_paths, force, as_json):
    from nnseal.format.trust import signer_label
    from nnseal.package.sign_folder import sign_folder
    from nnseal.units import format_bytes

    if certificate_chain and not certificate:
        raise click.UsageError("--certificate-chain needs --certificate")
    if use_sigstore and not os.path.lexists(folder):  # before the sign-in, not after
        raise EnvironmentProblem("no such folder or file", path=folder)
    sigstore = sigstore_signer(use_sigstore, identity_token, oidc_issuer, staging, key=key, passphrase=passphrase,
                               passphrase_env=passphrase_env, certificate=certificate, pkcs11_uri=pkcs11_uri)
    if sigstore is not None:
        result = sign_folder(folder, None, signature=signature, ignore_paths=ignore_paths, force=force,
                             sigstore=sigstore)
    else:
        result = _sign_with_key(folder, key, passphrase, passphrase_env, certificate, certificate_chain, pkcs11_uri,
                                signature, ignore_paths, force)
    signer = result.signer if result.method != "key" else signer_label(result.signer_fingerprint)
    if as_json:
        emit_json({"folder": folder, "signature_file": str(result.signature), "method": result.method,
                   "signer_fingerprint": result.signer_fingerprint, "signer_name": None, "signer": signer,
                   "files": result.files, "files_bytes": result.bytes})
        return
    if is_quiet():
        return
    click.echo(f"wrote {result.signature}: {result.files} file(s), {format_bytes(result.bytes)}, signed by "
               f"{signer} (OMS {result.method} method)")


def _sign_with_key(folder, key, passphrase, passphrase_env, certificate, certificate_chain, pkcs11_uri, signature,
                   ignore_paths, force):
    from nnseal.package.sign_folder import sign_folder

    if pkcs11_uri:
        if key:
            raise click.UsageError("give --key or --pkcs11-uri, not both")
        from nnseal.package.pkcs11_signing import open_pkcs11_key

        key = open_pkcs11_key(pkcs11_uri)
    else:
        key = signing_key_path(key)
    if key is None:
        raise click.UsageError(f"no signing key: pass --key KEY.pem, --pkcs11-uri URI or set {SIGNING_KEY_ENV}")
    return sign_folder(folder, key, signature=signature, ignore_paths=ignore_paths, force=force,
                       passphrase=key_passphrase(key, passphrase, passphrase_env),
                       certificate=certificate, certificate_chain=certificate_chain)
