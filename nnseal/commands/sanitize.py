"""nnseal sanitize: one checkpoint -> safetensors weights plus inference metadata."""

from __future__ import annotations

import click

from nnseal.commands._common import emit_json, is_quiet, report_errors
from nnseal.units import format_bytes as _size


def _summary(report) -> str:
    meta = report.kept_metadata
    fold = meta["fold"] if meta["fold"] is not None else "?"
    lines = [
        f"sanitized {report.source} -> {report.output}",
        f"  kept: {report.tensors} tensors for {report.names} names ({report.aliases} aliases), "
        f"{_size(report.tensor_bytes)}; {meta['trainer_name']}, configuration {meta['configuration']}, fold {fold}"
        + (f", epoch {meta['current_epoch']}" if meta["current_epoch"] is not None else ""),
        f"  dropped: {', '.join(report.dropped_keys) if report.dropped_keys else 'nothing'}",
    ]
    if report.stripped_prefix:
        lines.append(f"  stripped name prefix: {report.stripped_prefix}")
    lines.append(f"  size: {_size(report.source_bytes)} -> {_size(report.output_bytes)} "
                 f"(saved {_size(report.bytes_saved)})")
    return "\n".join(lines)


@click.command(help="""Load CHECKPOINT safely and write its network weights as safetensors.

The checkpoint is inspected without loading it, then loaded with
torch.load(weights_only=True) and a minimal numpy allowlist; anything else is refused
(exit 1). Optimizer state, logs and plans are dropped; the weights (each shared
tensor stored once) and the metadata inference needs are kept.""")
@click.argument("checkpoint", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .safetensors file to write.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@report_errors
def command(checkpoint, output, force, as_json):
    from nnseal.commands.filekind import CHECKPOINT_KINDS, refuse_unless
    from nnseal.sanitize.checkpoint import sanitize_checkpoint

    # A pickle or a polyglot is what torch.load might read: sanitize's own checks say why it is refused.
    refuse_unless(checkpoint, CHECKPOINT_KINDS | {"pickle", "polyglot"}, "a checkpoint")
    report = sanitize_checkpoint(checkpoint, output, force=force)
    if as_json:
        emit_json(report.to_json())
    elif not is_quiet():
        click.echo(_summary(report))
