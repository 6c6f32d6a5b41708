"""What every command shares: errors as one line and an exit code, JSON output, and what comes
from the environment (results folder, trust folder, signing key): the library reads none of it."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from nnseal.commands.json_contract import emit_json, failure  # noqa: F401  (every command's one way to print JSON)
from nnseal.errors import (
    EXIT_ENVIRONMENT,
    EXIT_REFUSED,
    EnvironmentProblem,
    Hint,
    InvalidArgument,
    NnsealError,
    Refused,
)

RESULTS_ENV = "nnUNet_results"
EXTERNAL_TRAINER_ENV = "nnUNet_extTrainer"
TRUST_FOLDER_ENV = "NNSEAL_TRUSTED_KEYS"
SIGNING_KEY_ENV = "NNSEAL_SIGNING_KEY"
PASSPHRASE_ENV = "NNSEAL_KEY_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)
SIGSTORE_TOKEN_ENV = "SIGSTORE_ID_TOKEN"  # noqa: S105 (sigstore-python's and model_signing's variable name)
OFFLINE_ENV = "NNSEAL_OFFLINE"
CACHE_ENV = "NNSEAL_CACHE"

# Each hint worded as the flag or command that applies it; appended to "path: reason".
HINT_TEXT = {
    Hint.FORCE: "; pass --force to replace it",
    Hint.FORCE_REMOVE: "; pass --force to remove it anyway",
    Hint.OTHER_PATH: " (choose another -o)",
    Hint.UNSIGNED: " (for a zip made by nnU-Net's exporter use --unsigned, ideally with --sha256)",
    Hint.SIGNED: ": install it without --unsigned",
    Hint.TRUSTED_KEY: ": pass --trusted-key KEY.pub or run `nnseal trust add KEY.pub`",
    Hint.TRUST_SIGNER: "; if you trust this signer, run `nnseal trust add KEY.pub` or pass --trusted-key KEY.pub",
    Hint.TRUST_CA: ("; if you trust this signer, run `nnseal trust add-ca CA.pem --name NAME --identity "
                    "email:ADDRESS` (or uri:, dns:, subject:, sha256: the signing certificate's)"),
    Hint.TRUST_SIGSTORE: ("; if you trust this signer, run `nnseal trust add-sigstore --name NAME --identity "
                          "IDENTITY --issuer ISSUER` with the identity and issuer named above"),
    Hint.OTHER_KEY_NAME: "; choose another --name or `nnseal trust remove` it first",
    Hint.ADD_TRUSTED_KEY: " written by `nnseal trust add`",
    Hint.LIST_TRUSTED_KEYS: " (see `nnseal trust list`)",
    Hint.PASSPHRASE: f" (--passphrase, or ${PASSPHRASE_ENV})",
    Hint.SIGNING_KEY: f": pass --key KEY.pem or set {SIGNING_KEY_ENV}",
    Hint.MAX_SIZE: " (raise it with --max-size)",
    Hint.READ_TIMEOUT: "; raise it with --read-timeout",
    Hint.DEADLINE: "; raise it with --deadline",
    Hint.MIN_RATE: "; lower --min-rate or lengthen --rate-window",
    Hint.RESULTS_FOLDER: "; set it or pass the results folder explicitly",
    Hint.ALLOW_DOWNGRADE: "; pass --allow-downgrade to install it anyway",
    Hint.OFFLINE: f"; install it once without --offline (and without ${OFFLINE_ENV}=1) to fill the cache",
    Hint.IDENTITY_TOKEN: f": pass --identity-token TOKEN or set ${SIGSTORE_TOKEN_ENV}, or run at a terminal",
}


def error_line(err: NnsealError) -> str:
    """``path: reason`` and the hint as this CLI's flag or command."""
    return str(err) + (HINT_TEXT[err.hint] if err.hint is not None else "")


def report_errors(fn):
    """Run a command body; print any failure as one line on stderr and exit with its code.

    With ``--json`` (``json_contract.json_requested``) the failure is also the run's one JSON
    document on stdout (``json_contract.emit_error``), usage errors raised in the body included.
    Set NNSEAL_DEBUG=1 to get the traceback of an unexpected error. SIGTERM and SIGHUP take the
    path Ctrl-C takes (every cleanup runs); the exit status is 128 + the signal: 130, 143, 129.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from nnseal.commands.json_contract import emit_error, json_requested
        from nnseal.interrupt import interrupts_as_keyboard_interrupt

        as_json = json_requested(kwargs)
        try:
            with interrupts_as_keyboard_interrupt(ignore_after_done=True):
                return fn(*args, **kwargs)
        except click.exceptions.Exit:
            raise
        except (click.ClickException, click.exceptions.Abort) as err:
            if as_json:
                emit_error(err)
            raise
        except NnsealError as err:
            kind = "refused" if isinstance(err, Refused) else "error"
            click.echo(f"nnseal: {kind}: {one_line(error_line(err))}", err=True)
            sys.exit(emit_error(err) if as_json else err.exit_code)
        except KeyboardInterrupt as err:
            code = getattr(err, "exit_code", 130)
            click.echo("nnseal: interrupted" + (f" ({err})" if code != 130 else ""), err=True)
            sys.exit(emit_error(err) if as_json else code)
        except OSError as err:
            where = f"{err.filename}: " if err.filename else ""
            click.echo(f"nnseal: error: {where}{one_line(err.strerror or str(err))}", err=True)
            sys.exit(emit_error(err) if as_json else EXIT_ENVIRONMENT)
        except Exception as err:  # a bug, but the user still gets one line
            if os.environ.get("NNSEAL_DEBUG"):
                raise
            click.echo(
                f"nnseal: refused: unexpected {type(err).__name__}: {one_line(str(err))} "
                "(set NNSEAL_DEBUG=1 for a traceback, and please report it)",
                err=True,
            )
            # Unexpected failures happen on inputs nnseal did not understand: refuse them.
            sys.exit(emit_error(err) if as_json else EXIT_REFUSED)

    return wrapper


def one_line(text: str) -> str:
    """Whitespace collapsed, and every other non-printable character shown escaped, so text that
    came from an input (a card, an entry name) can neither add lines nor drive the terminal."""
    collapsed = " ".join(str(text).split())
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in collapsed)


def verbosity() -> int:
    """The global -q (-1) / -v (1) given before the command; 0 for neither."""
    from nnseal.cli import VERBOSITY_KEY

    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(VERBOSITY_KEY, 0) if ctx is not None else 0


def is_quiet(quiet: bool = False) -> bool:
    """The command's own --quiet, or the global -q."""
    return quiet or verbosity() < 0


def is_verbose() -> bool:
    return verbosity() > 0


def show_progress(quiet: bool) -> bool:
    """Progress bars only for a person at a terminal: never in CI, with --quiet or -q, or piped."""
    if is_quiet(quiet) or os.environ.get("CI"):
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
    if prompt and env_var:
        raise click.UsageError("give --passphrase or --passphrase-env, not both")
    if env_var:
        value = os.environ.get(env_var)
        if value is None:
            raise click.UsageError(f"--passphrase-env {env_var}: that environment variable is not set")
        return value.encode("utf-8")
    if prompt:
        return _prompt_passphrase(confirm)
    return None


def _prompt_passphrase(confirm: bool) -> bytes:
    try:
        return click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm).encode("utf-8")
    except click.exceptions.Abort as err:
        # click turns Ctrl-C and end of input alike into Abort ("Aborted!", exit 1); what it
        # caught is still its context. Ctrl-C is an interrupt (130, one line, via report_errors).
        if isinstance(err.__context__, KeyboardInterrupt):  # SIGTERM and SIGHUP arrive as one too (their code kept)
            raise err.__context__ from None
        raise InvalidArgument("no passphrase read: the input ended at the prompt") from None


def key_passphrase(key, prompt: bool, env_var: str | None) -> bytes | None:
    """The passphrase for the private key ``key`` (a PEM path; anything else, e.g. a PKCS#11 key,
    takes none): --passphrase-env VAR, the --passphrase prompt, else $NNSEAL_KEY_PASSPHRASE.

    An encrypted key with none of them is asked for at a terminal and refused elsewhere (a
    script would hang on a prompt); a passphrase given for a key that is not encrypted is
    refused, as the mistake it is (the wrong key file, most likely), not silently ignored.
    """
    secret = read_passphrase(prompt, env_var, confirm=False)
    source = f"--passphrase-env {env_var}" if env_var else "--passphrase"
    if secret is None and (secret := passphrase_from_environment()) is not None:
        source = f"${PASSPHRASE_ENV}"
    if not isinstance(key, (str, os.PathLike)):
        return secret
    from nnseal.format.keys import private_key_is_encrypted

    encrypted = private_key_is_encrypted(key)
    if encrypted and secret is None:
        if sys.stdin is not None and sys.stdin.isatty():
            return _prompt_passphrase(confirm=False)
        raise InvalidArgument(f"the key is encrypted and no passphrase was given: pass --passphrase-env VAR "
                              f"(or set ${PASSPHRASE_ENV}), or --passphrase at a terminal", path=key)
    if not encrypted and secret is not None:
        raise InvalidArgument(f"the key is not encrypted, but a passphrase was given ({source}): "
                              "drop it, or give the encrypted key", path=key)
    return secret


def check_sha256(ctx, param, value):
    """click callback: a --sha256 pin must be 64 hex digits (an empty one is a mistake, not "no pin")."""
    if value is None:
        return None
    from nnseal.errors import InvalidArgument
    from nnseal.format.digest import normalise_sha256

    try:
        return normalise_sha256(value)
    except InvalidArgument as err:
        raise click.BadParameter(err.reason) from None


# --- what comes from the environment ------------------------------------------------------


def results_folder(explicit: str | os.PathLike | None) -> Path:
    """``explicit`` or ``$nnUNet_results``."""
    value = explicit if explicit is not None else os.environ.get(RESULTS_ENV)
    if not value:
        raise EnvironmentProblem(f"{RESULTS_ENV} is not set", hint=Hint.RESULTS_FOLDER)
    return Path(value)


def external_trainer_folders_from_environment() -> list[str]:
    """Where nnU-Net also looks for trainer classes: ``$nnUNet_extTrainer``, folders separated by
    ``os.pathsep`` (nnU-Net 2.8.1's mechanism for custom trainers)."""
    value = os.environ.get(EXTERNAL_TRAINER_ENV) or ""
    return [part for part in value.split(os.pathsep) if part.strip()]


def trust_folder_from_environment() -> Path:
    """$NNSEAL_TRUSTED_KEYS if set, else $XDG_CONFIG_HOME/nnseal/trusted_keys, else
    ~/.config/nnseal/trusted_keys (the folder need not exist yet)."""
    configured = os.environ.get(TRUST_FOLDER_ENV)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "nnseal" / "trusted_keys"


def sigstore_options(fn):
    """--sigstore and its --identity-token, --oidc-issuer, --staging, for commands that sign."""
    fn = click.option("--staging", is_flag=True, help="With --sigstore: use Sigstore's staging instance "
                      "(for trying it out; its signatures are not trusted by the production root).")(fn)
    fn = click.option("--oidc-issuer", metavar="URL", help="With --sigstore: the OIDC issuer of the browser "
                      "sign-in (default: Sigstore's, https://oauth2.sigstore.dev/auth).")(fn)
    fn = click.option("--identity-token", metavar="TOKEN", help="With --sigstore: the OIDC identity token "
                      f"(default: ${SIGSTORE_TOKEN_ENV}, else an ambient CI credential, else the browser "
                      "sign-in at a terminal).")(fn)
    fn = click.option("--sigstore", "use_sigstore", is_flag=True,
                      help="Sign keyless by the OMS Sigstore method (Fulcio certificate for your OIDC identity, "
                           "Rekor log entry), as `model_signing sign sigstore`, instead of a key. Needs the "
                           "network and nnseal[sigstore]; untested here beyond its wiring.")(fn)
    return fn


def signing_options(fn):
    """How a command that signs gets its signer: --key (or $NNSEAL_SIGNING_KEY) with its
    passphrase, the certificate method's --certificate/--certificate-chain, --pkcs11-uri, or
    Sigstore keyless (``sigstore_options``)."""
    fn = sigstore_options(fn)
    fn = click.option("--pkcs11-uri", help="Sign with a key held in a PKCS#11 token (RFC 7512 URI, e.g. "
                      "'pkcs11:token=T;object=K?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234'); "
                      "instead of --key. Needs nnseal[pkcs11].")(fn)
    fn = click.option("--certificate-chain", "certificate_chain", multiple=True, type=click.Path(dir_okay=False),
                      help="Intermediate certificate(s) (PEM) to ship with --certificate; repeatable.")(fn)
    fn = click.option("--certificate", type=click.Path(dir_okay=False),
                      help="Sign by the OMS certificate method: the signing certificate (PEM) for the key.")(fn)
    fn = passphrase_options(fn)
    return click.option("--key", type=click.Path(dir_okay=False),
                        help=f"Signing key (PEM). Default: ${SIGNING_KEY_ENV}.")(fn)


def sigstore_signer(use_sigstore: bool, identity_token: str | None, oidc_issuer: str | None, staging: bool,
                    **key_options):
    """The Sigstore signer --sigstore asks for (None without it); refused with any key option in ``key_options``."""
    if not use_sigstore:
        given = [name for name, value in (("--identity-token", identity_token), ("--oidc-issuer", oidc_issuer),
                                          ("--staging", staging)) if value]
        if given:
            raise click.UsageError(f"{given[0]} is for --sigstore signing")
        return None
    given = [f"--{name.replace('_', '-')}" for name, value in key_options.items() if value]
    if given:
        raise click.UsageError(f"--sigstore signs without a key: drop {', '.join(given)}")
    from nnseal.package.sigstore_signing import open_sigstore_signer

    return open_sigstore_signer(identity_token or os.environ.get(SIGSTORE_TOKEN_ENV) or None,
                                interactive=sys.stdin.isatty() and sys.stderr.isatty(),
                                oidc_issuer=oidc_issuer, staging=staging)


def signing_key_path(explicit: str | None) -> str | None:
    """``--key`` or ``$NNSEAL_SIGNING_KEY`` (None when neither is given)."""
    return explicit or os.environ.get(SIGNING_KEY_ENV) or None


def passphrase_from_environment() -> bytes | None:
    """``$NNSEAL_KEY_PASSPHRASE``, the default when no passphrase was asked for."""
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None
