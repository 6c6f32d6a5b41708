"""nnseal demo: every stage on a small built-in nnU-Net-shaped model."""

from __future__ import annotations

import click

from nnseal.commands._common import emit_json, report_errors


@click.command(help="""Build a small nnU-Net-shaped model in a temporary folder and run every
stage on it: sanitize, keygen, export, inspect, verify, tamper detection, install,
and (where nnunetv2 is installed) prediction with nnU-Net's own predictor.""")
@click.option("--keep", type=click.Path(file_okay=False), help="Work in this folder and keep it.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (the steps' lines in \"log\").")
@report_errors
def command(keep, as_json):
    from nnseal.demo import run_demo

    if not as_json:
        run_demo(keep, echo=click.echo)
        return
    log: list[str] = []
    summary = run_demo(keep, echo=log.append)
    emit_json({"workdir": summary["workdir"], "kept": keep is not None, "package": summary.get("package"),
               "installed": summary.get("installed", []), "log": log})
