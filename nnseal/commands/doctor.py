"""nnseal doctor: can this environment run a model folder?"""

from __future__ import annotations

import sys

import click

from nnseal.commands._common import (
    emit_json,
    external_trainer_folders_from_environment,
    failure,
    one_line,
    report_errors,
)
from nnseal.errors import EXIT_OK, EXIT_REFUSED


@click.command(help="""Check MODEL_FOLDER (an nnU-Net Trainer__Plans__configuration folder)
against this environment: nnunetv2, dynamic_network_architectures and torch installed and
not older than the model was trained with (install receipt, else the folds' debug.json),
and the trainer class found where nnU-Net looks for it (nnunetv2's trainers, then
$nnUNet_extTrainer). Nothing is loaded or imported. One line per check; exit 1 if any
check warns.""")
@click.argument("model_folder", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@report_errors
def command(model_folder, as_json):
    from nnseal.commands.filekind import refuse_unless
    from nnseal.verify.doctor import diagnose

    refuse_unless(model_folder, {"folder"}, "a model folder")
    report = diagnose(model_folder, external_trainer_folders_from_environment())
    if as_json:
        warnings = report.warnings
        error = (failure("incompatible_environment", f"{len(warnings)} check(s) warn: {'; '.join(warnings)}",
                         model_folder) if warnings else None)
        emit_json(report.to_json(), exit_code=EXIT_OK if report.ok else EXIT_REFUSED, error=error)
    else:
        for check in report.checks:
            click.echo(f"{'ok' if check.ok else 'warn'}: {one_line(check.message)}")
    if not report.ok:
        sys.exit(EXIT_REFUSED)
