"""nnseal sign: sign a model folder in place with the OpenSSF Model Signing key method."""

from __future__ import annotations

import click

from nnseal.commands._common import (
    SIGNING_KEY_ENV,
    emit_json,
    passphrase_from_environment,
    passphrase_options,
    read_passphrase,
    report_errors,
    signing_key_path,
)


@click.command(help="""Sign FOLDER (any model folder, e.g. a Hugging Face repository, or one model
file) with the OpenSSF Model Signing key method, as `model_signing sign key` does: the files stay
as they are and a detached signature is written (default FOLDER/model.sig). Every regular file is
signed except .git, .gitattributes, .github and .gitignore at the top, the signature itself and
--ignore-path; a symbolic link or special file is refused. `nnseal verify FOLDER` and
`model_signing verify key` both check the result. An existing signature is never replaced
without --force.""")
@click.argument("folder", type=click.Path(exists=True))
@click.option("--key", type=click.Path(dir_okay=False), help=f"Signing key (PEM). Default: ${SIGNING_KEY_ENV}.")
@passphrase_options
@click.option("-o", "--signature", "signature", type=click.Path(dir_okay=False),
              help="Signature file to write (default: FOLDER/model.sig).")
@click.option("--ignore-path", "ignore_paths", multiple=True, metavar="PATH",
              help="Leave PATH (relative to FOLDER, and everything under it) unsigned; repeatable.")
@click.option("--force", is_flag=True, help="Replace the signature file if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@report_errors
def command(folder, key, passphrase, passphrase_env, signature, ignore_paths, force, as_json):
    from nnseal.format.trust import signer_label
    from nnseal.package.sign_folder import sign_folder
    from nnseal.units import format_bytes

    key = signing_key_path(key)
    if key is None:
        raise click.UsageError(f"no signing key: pass --key KEY.pem or set {SIGNING_KEY_ENV}")
    secret = read_passphrase(passphrase, passphrase_env, confirm=False)
    result = sign_folder(folder, key, signature=signature, ignore_paths=ignore_paths, force=force,
                         passphrase=secret if secret is not None else passphrase_from_environment())
    if as_json:
        emit_json({"folder": folder, "signature_file": str(result.signature), "method": "key",
                   "signer_fingerprint": result.signer_fingerprint, "signer_name": None,
                   "signer": signer_label(result.signer_fingerprint), "files": result.files,
                   "files_bytes": result.bytes})
        return
    click.echo(f"wrote {result.signature}: {result.files} file(s), {format_bytes(result.bytes)}, signed by "
               f"{signer_label(result.signer_fingerprint)} (OMS key method)")
