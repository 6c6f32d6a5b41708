"""nnseal scan: the CI gate. Classify files by content, check them statically, report, exit 0 or 1."""

from __future__ import annotations

import json
import sys

import click

from nnseal.commands._common import emit_json, failure, is_quiet, report_errors, trust_folder_from_environment
from nnseal.commands.json_contract import command_name, envelope
from nnseal.errors import EXIT_OK, EXIT_REFUSED


@click.command(help="""Scan files and folders (recursively) for unsafe model files: PyTorch
checkpoints (zip and legacy), raw pickles, numpy .npy/.npz, safetensors, nnseal
packages and nnU-Net zips, recognised by content, not by name. Nothing is loaded,
unpickled or executed, and torch is never imported.

Exit 0 when no finding reaches --fail-on, 1 otherwise, 3 if a PATH does not exist.
Rules and report formats: docs/SCAN.md.""")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False),
              help="Public key (PEM) whose package signatures count as trusted; repeatable. "
                   "The trust folder is used too.")
@click.option("--format", "output_format", type=click.Choice(["text", "json", "sarif", "cyclonedx"]),
              default="text", show_default=True,
              help="Report format (cyclonedx: a CycloneDX 1.6 ML-BOM of the models found; needs nnseal[bom]).")
@click.option("--output", "output", type=click.Path(dir_okay=False),
              help="Write the report to FILE (replaced if it exists); stdout then gets the summary line "
                   "(with --json: the JSON report).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the JSON report on stdout (--format json; with --output, FILE gets --format).")
@click.option("--fail-on", "fail_on", type=click.Choice(["unsafe", "unsigned", "any"]), default="unsafe",
              show_default=True, help="Lowest finding level that makes the exit status 1.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Processes to scan with (default: the number of CPUs, at most 8; used for large scans only).")
@report_errors
def command(paths, trusted_keys, output_format, output, fail_on, jobs, as_json):
    import os

    from nnseal.scan.scanner import scan_paths

    if output_format == "cyclonedx":  # before scanning: a missing extra is no reason to read gigabytes
        from nnseal.scan.cyclonedx import require_library

        require_library()

    if as_json and not output:
        if output_format in ("sarif", "cyclonedx"):
            raise click.UsageError(f"--json prints JSON on stdout: give --format {output_format} with --output FILE")
        output_format = "json"
    report = scan_paths(paths, trusted_keys, trust_folder=trust_folder_from_environment(),
                        workers=jobs or min(8, os.cpu_count() or 1))
    failed = report.failed(fail_on)
    code = EXIT_REFUSED if failed else EXIT_OK
    # The JSON report is the run's --json document too: scan's schema plus the envelope (docs/JSON.md).
    document = envelope(report.to_json(fail_on), command=command_name(), exit_code=code,
                        error=failure("findings", report.summary_line()) if failed else None)
    if as_json:
        emit_json(document, exit_code=code, error=document.get("error"))
    if output_format == "json":
        text = json.dumps(document, indent=2) + "\n"
    elif output_format == "sarif":
        from nnseal.scan.sarif import to_sarif

        text = json.dumps(to_sarif(report), indent=2) + "\n"
    elif output_format == "cyclonedx":
        from nnseal.scan.cyclonedx import bom_json, models_in_scan

        text = bom_json(models_in_scan(report))
    elif is_quiet():  # the findings, without the summary line
        text = "".join(f"{finding.text_line()}\n" for finding in report.findings)
    else:
        text = report.to_text()
    if output:
        from nnseal.fsutil import atomic_output

        with atomic_output(output, force=True) as handle:
            handle.write(text.encode("utf-8"))
        if not as_json and not is_quiet():
            click.echo(report.summary_line())
    elif not as_json:
        click.echo(text, nl=False)
    if failed:
        sys.exit(EXIT_REFUSED)
