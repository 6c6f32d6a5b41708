"""nnseal verify: a package against its signature, or an installed model against its receipt."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from nnseal.commands._common import HINT_TEXT, emit_json, one_line, report_errors, trust_folder_from_environment
from nnseal.errors import EXIT_REFUSED, Hint

if TYPE_CHECKING:
    from nnseal.verify.receipt import DriftReport
    from nnseal.verify.report import VerifyReport


@click.command(help="""Check PACKAGE.zip (signature against the trusted keys, then every
entry's sha256 against the signed manifest; nothing is extracted), or re-hash an
installed MODEL_FOLDER against the receipt written at install. Every problem is
reported; exit 1 if there is any.""")
@click.argument("target", type=click.Path())
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False),
              help="Public key (PEM) to trust; repeatable. The trust folder is used too.")
@click.option("--trust-config", type=click.Path(dir_okay=False),
              help="Sigstore trusted root or ClientTrustConfig JSON for keyless signatures "
                   "(default: Sigstore's production root, embedded in sigstore-python).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@report_errors
def command(target, trusted_keys, trust_config, as_json):
    report: DriftReport | VerifyReport
    if os.path.isdir(target):
        from nnseal.verify.receipt import check_installed

        report = check_installed(target)
        problems = [problem.message for problem in report.problems()]
        ok_line = f"{target}: OK, every installed file matches its receipt ({report.provenance})"
    else:
        from nnseal.format.trust import TrustAnchors
        from nnseal.verify.problems import ProblemKind
        from nnseal.verify.report import verify_package

        report = verify_package(target, trusted_keys, trust_folder=trust_folder_from_environment(),
                                anchors=TrustAnchors(sigstore_trust_config=trust_config))
        # The library names no remedy in a problem: say how to trust an unknown signer here.
        problems = [problem.message + (HINT_TEXT[Hint.TRUST_SIGNER]
                                       if problem.kind is ProblemKind.UNTRUSTED_SIGNER else "")
                    for problem in report.problems]
        ok_line = (f"{target}: OK, signed by trusted {report.signer or 'key ' + str(report.signer_fingerprint)}, "
                   f"{report.entries} entries match")
    if as_json:
        document = report.to_json()
        if "problems" in document:  # as a person reads them, remedies included
            document["problems"] = problems
        emit_json(document)
    elif report.ok:
        click.echo(ok_line)
    else:
        for problem in problems:
            click.echo(f"nnseal: refused: {target}: {one_line(problem)}", err=True)
    if not report.ok:
        sys.exit(EXIT_REFUSED)
