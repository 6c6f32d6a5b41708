"""nnseal verify: a package against its signature, an OMS-signed folder against its signature, or an
installed model against its receipt."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from nnseal.commands._common import (
    HINT_TEXT,
    emit_json,
    failure,
    is_quiet,
    one_line,
    report_errors,
    trust_folder_from_environment,
)
from nnseal.errors import EXIT_OK, EXIT_REFUSED, Hint

if TYPE_CHECKING:
    from nnseal.verify.folder import FolderReport
    from nnseal.verify.receipt import DriftReport
    from nnseal.verify.report import VerifyReport

# A folder refusal lists this many problems on its one line; --json lists them all.
SHOWN_PROBLEMS = 5


@click.command(help="""Check PACKAGE.zip, or a PACKAGE folder written by `nnseal export --folder`
(signature against the trusted keys, then every entry's sha256 against the signed manifest,
the same rules for both; nothing is extracted); or an OMS-signed FOLDER
(or model file) with --signature, or a folder holding model.sig and no nnseal receipt, as
`model_signing verify` does (extra, missing or changed files are refused); key, certificate and
Sigstore signatures alike, against the trusted keys, CAs (`nnseal trust add-ca`) and Sigstore
identities (`nnseal trust add-sigstore`); or re-hash an
installed MODEL_FOLDER against the receipt written at install. Exit 1 if anything is wrong.

--all re-hashes every installed model and ensemble folder of the results folder
($nnUNet_results, or --results) against its receipt: one line each (folders without a
receipt are noted, not checked); exit 1 if any differs.""")
@click.argument("target", type=click.Path(), required=False)
@click.option("--all", "check_all", is_flag=True, help="Check every installed model in the results folder.")
@click.option("--results", "results", type=click.Path(file_okay=False),
              help="With --all: the results folder (default: $nnUNet_results).")
@click.option("--signature", type=click.Path(dir_okay=False),
              help="OMS signature (Sigstore bundle) of the folder or file TARGET; default TARGET/model.sig.")
@click.option("--ignore-path", "ignore_paths", multiple=True, metavar="PATH",
              help="With a folder: also leave PATH (relative to it) unchecked; repeatable.")
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False),
              help="Public key (PEM) to trust; repeatable. The trust folder is used too.")
@click.option("--trust-config", type=click.Path(dir_okay=False),
              help="Sigstore trusted root or ClientTrustConfig JSON for keyless signatures "
                   "(default: Sigstore's production root, embedded in sigstore-python).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@report_errors
def command(target, check_all, results, signature, ignore_paths, trusted_keys, trust_config, as_json):
    if check_all:
        if target is not None or signature or ignore_paths or trusted_keys or trust_config:
            raise click.UsageError("--all takes no TARGET and no signature option")
        verify_all(results, as_json)
        return
    if target is None:
        raise click.UsageError("give TARGET (a package, a folder or a model folder), or --all")
    if results is not None:
        raise click.UsageError("--results goes with --all")

    report: DriftReport | VerifyReport | FolderReport
    folder_mode = _is_oms_target(target, signature)
    kinds: list[str]  # each problem's kind, for the JSON error
    if folder_mode:
        mode = "signed_folder"
        from nnseal.format.trust import TrustAnchors
        from nnseal.verify.folder import verify_folder

        report = verify_folder(target, signature, trusted_keys, trust_folder=trust_folder_from_environment(),
                               ignore_paths=ignore_paths, anchors=TrustAnchors(sigstore_trust_config=trust_config))
        problems = [problem.message for problem in report.problems]
        kinds = [problem.kind.value for problem in report.problems]
        if len(problems) > 1:  # one refusal line for the folder, as for every other refusal
            shown = "; ".join(problems[:SHOWN_PROBLEMS])
            more = len(problems) - SHOWN_PROBLEMS
            problems = [f"{len(problems)} files differ from the signature: {shown}"
                        + (f"; and {more} more (--json lists all)" if more > 0 else "")]
        ok_line = f"{target}: OK, signed by {_signer(report)}, {report.files} files match"
    elif os.path.isdir(target) and not _is_folder_package(target):
        from nnseal.verify.receipt import check_installed

        mode = "installed_folder"
        report = check_installed(target)
        problems = [problem.message for problem in report.problems()]
        kinds = [problem.kind.value for problem in report.problems()]
        ok_line = f"{target}: OK, every installed file matches its receipt ({report.provenance})"
    else:
        from nnseal.commands.filekind import refuse_unless
        from nnseal.format.trust import TrustAnchors

        if not os.path.isdir(target):  # a folder here is a folder package
            refuse_unless(target, {"nnseal-package"}, "an nnseal package")
        from nnseal.verify.problems import ProblemKind
        from nnseal.verify.report import verify_package

        mode = "package"
        report = verify_package(target, trusted_keys, trust_folder=trust_folder_from_environment(),
                                anchors=TrustAnchors(sigstore_trust_config=trust_config))
        # The library names no remedy in a problem: say how to trust an unknown signer here.
        problems = [problem.message + (HINT_TEXT[_trust_hint(problem.error)]
                                       if problem.kind is ProblemKind.UNTRUSTED_SIGNER else "")
                    for problem in report.problems]
        kinds = [problem.kind.value for problem in report.problems]
        ok_line = f"{target}: OK, signed by {_signer(report)}, {report.signed_entries} entries match"
    if as_json:
        document = {**report.to_json(), "mode": mode}
        if mode == "package":
            document["problems"] = problems  # as a person reads them, remedies included
        error = None
        if not report.ok:
            kind = kinds[0] if len(set(kinds)) == 1 else "verification_failed"
            if not kinds:  # a package whose signature is not valid, without a problem saying why
                kind = "bad_signature"
            error = failure(kind, "; ".join(problems) or "the signature does not verify", target)
        emit_json(document, exit_code=EXIT_OK if report.ok else EXIT_REFUSED, error=error)
    elif report.ok:
        if not is_quiet():
            click.echo(ok_line)
    else:
        for problem in problems:
            click.echo(f"nnseal: refused: {target}: {one_line(problem)}", err=True)
    if not report.ok:
        sys.exit(EXIT_REFUSED)


def _signer(report: FolderReport | VerifyReport) -> str:
    from nnseal.format.trust import signer_label

    if report.method in (None, "key"):
        return f"{signer_label(report.signer_fingerprint, report.signer_name)} (OMS key method)"
    return f"{report.signer} (OMS {report.method} method)"


def _trust_hint(error) -> Hint:
    """The remedy the untrusted-signer error names (per method), else trusting a key."""
    return error.hint if error is not None and error.hint is not None else Hint.TRUST_SIGNER


def verify_all(results, as_json: bool) -> None:
    """Every installed folder against its receipt (re-hashed): one line each; exit 1 on any drift."""
    from nnseal.commands._common import results_folder
    from nnseal.commands.list import signer_names
    from nnseal.format.trust import signer_label
    from nnseal.verify.inventory import FolderKind, Status, list_installed

    folder = results_folder(results)
    items = [item for item in list_installed(folder, check=True, signer_names=signer_names())
             if item.kind is not FolderKind.FILE]
    failed = [item for item in items if not item.ok]
    if as_json:
        reason = f"{len(failed)} of {len(items)} installed folders differ from their receipts"
        emit_json({"mode": "all", "results": str(folder), "models": [item.to_json() for item in items]},
                  exit_code=EXIT_REFUSED if failed else EXIT_OK,
                  error=failure("drifted", reason, folder) if failed else None)
    elif not items:
        click.echo(f"no models in {folder}" + ("" if folder.is_dir() else " (no such folder)"))
    for item in items if not as_json else []:
        if item.status is Status.OK:
            who = (signer_label(item.signer_fingerprint, item.signer_name) if item.method in (None, "key")
                   else f"{item.signer} ({item.method})") if item.signer_fingerprint or item.signer else "unsigned"
            click.echo(f"{item.name}: OK ({item.provenance}, {who})")
        elif item.status is Status.NO_RECEIPT:
            click.echo(f"{item.name}: not installed by nnseal (no receipt), not checked")
        elif item.status is Status.BAD_RECEIPT:
            click.echo(f"{item.name}: FAILED: {one_line(item.problem or 'bad receipt')}")
        else:
            problems = [*(f"modified: {p}" for p in item.modified), *(f"missing: {p}" for p in item.missing),
                        *(f"extra: {p}" for p in item.extra)]
            shown = "; ".join(problems[:SHOWN_PROBLEMS])
            more = len(problems) - SHOWN_PROBLEMS
            click.echo(f"{item.name}: DRIFTED: {one_line(shown)}" + (f"; and {more} more (--json lists all)"
                                                                     if more > 0 else ""))
    if failed:
        if not as_json:
            click.echo(f"nnseal: refused: {len(failed)} of {len(items)} installed folders differ from their receipts",
                       err=True)
        sys.exit(EXIT_REFUSED)


def _is_oms_target(target: str, signature: str | None) -> bool:
    """A detached OMS signature is asked for, or a folder carries one, no nnseal receipt and no
    nnseal card (a folder package, checked as a zip is)."""
    if signature is not None:
        return True
    from nnseal.format.layout import CARD_NAME
    from nnseal.format.oms import SIGNATURE_NAME
    from nnseal.verify.receipt import RECEIPT_NAME

    return (os.path.isdir(target) and os.path.isfile(os.path.join(target, SIGNATURE_NAME))
            and not os.path.exists(os.path.join(target, RECEIPT_NAME))
            and not os.path.exists(os.path.join(target, CARD_NAME)))


def _is_folder_package(target: str) -> bool:
    """A folder written by ``nnseal export --folder`` (or its copy): model.sig and the card at its top."""
    from nnseal.format.layout import CARD_NAME
    from nnseal.format.oms import SIGNATURE_NAME

    return os.path.isdir(target) and all(os.path.isfile(os.path.join(target, name))
                                         for name in (SIGNATURE_NAME, CARD_NAME))

