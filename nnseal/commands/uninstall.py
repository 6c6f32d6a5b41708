"""nnseal uninstall: remove an installed model folder atomically, with what only it needs."""

from __future__ import annotations

from pathlib import Path

import click

from nnseal.commands._common import emit_json, one_line, report_errors, results_folder


@click.command(help="""Remove an installed model folder: MODEL is its path, or
DatasetXXX_Name/Trainer__Plans__configuration under the results folder ($nnUNet_results,
or --results), or nnU-Net's -d DATASET -c CONFIGURATION [-tr TRAINER] [-p PLANS]. An
ensemble folder (DatasetXXX_Name/ensembles/ensemble___...) can be removed the same way.

The folder is renamed out of nnU-Net's sight in one step, then deleted: a crash leaves the
model whole or gone, and the next install, download or uninstall deletes what is left. Ensemble
folders that have the model as a member go with it (they cannot run without it); the
dataset's inference_information.json and inference_instructions.txt go when no other
installed model's receipt records them; an emptied dataset folder is removed. Refused unless
--force: a folder nnseal did not install (no receipt), and one whose files differ from its
receipt (re-hashed). Holds the results folder's lock: installs and uninstalls take turns.""")
@click.argument("model", required=False)
@click.option("-d", "dataset", metavar="DATASET", help="Dataset id or name (with -c).")
@click.option("-c", "configuration", metavar="CONFIGURATION", help="Configuration, e.g. 3d_fullres (with -d).")
@click.option("-tr", "trainer", default="nnUNetTrainer", show_default=True, help="Trainer (with -d).")
@click.option("-p", "plans", default="nnUNetPlans", show_default=True, help="Plans identifier (with -d).")
@click.option("--results", "results", type=click.Path(file_okay=False),
              help="Results folder (default: $nnUNet_results).")
@click.option("--force", is_flag=True, help="Remove it even if nnseal did not install it or its files changed.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@report_errors
def command(model, dataset, configuration, trainer, plans, results, force, as_json):
    from nnseal.verify.uninstall import uninstall_model

    report = uninstall_model(_target(model, dataset, configuration, trainer, plans, results), force=force)
    if as_json:
        emit_json(report.to_json())
        return
    for forced in report.forced:
        click.echo(f"nnseal: warning: removed with --force: {one_line(forced)}", err=True)
    for kept in report.kept:
        click.echo(f"nnseal: note: kept {one_line(kept)}", err=True)
    for removed in report.removed:
        click.echo(f"removed {removed}")
    for note in report.notes:
        click.echo(note)


def _target(model, dataset, configuration, trainer, plans, results) -> Path:
    if dataset is not None or configuration is not None:
        if model is not None:
            raise click.UsageError("give MODEL or -d/-c, not both")
        if dataset is None or configuration is None:
            raise click.UsageError("-d and -c go together")
        from nnseal.verify.inventory import find_model_folder

        return find_model_folder(results_folder(results), dataset, configuration, trainer=trainer, plans=plans)
    if model is None:
        raise click.UsageError("give MODEL (a model folder) or -d DATASET -c CONFIGURATION")
    from nnseal.format.layout import DATASET_RE

    path = Path(model)
    if not path.is_absolute() and DATASET_RE.match(path.parts[0] if path.parts else ""):
        return results_folder(results) / path  # DatasetXXX_Name/...: under the results folder, as nnU-Net names it
    return path
