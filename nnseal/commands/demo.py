"""nnseal demo: every stage on a small built-in nnU-Net-shaped model."""

from __future__ import annotations

import click

from nnseal.commands._common import report_errors


@click.command(help="""Build a small nnU-Net-shaped model in a temporary folder and run every
stage on it: sanitize, keygen, export, inspect, verify, tamper detection, install,
and (where nnunetv2 is installed) prediction with nnU-Net's own predictor.""")
@click.option("--keep", type=click.Path(file_okay=False), help="Work in this folder and keep it.")
@report_errors
def command(keep):
    from nnseal.demo import run_demo

    run_demo(keep, echo=click.echo)
