"""nnseal inspect: what a package says about itself; nothing trusted, nothing extracted."""

from __future__ import annotations

import click

from nnseal.commands._common import emit_json, one_line, report_errors, trust_folder_from_environment


@click.command(help="""Show PACKAGE's card, signer fingerprint (and whether that key is
trusted), configurations, folds and sizes. Nothing is verified or extracted: use
`nnseal verify` to check the signature and hashes. A zip made by nnU-Net's exporter
is shown too (model folders, folds, checkpoints; it is unsigned).""")
@click.argument("package", type=click.Path())
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False),
              help="Public key (PEM) to count as trusted; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@report_errors
def command(package, trusted_keys, as_json):
    from nnseal.commands.filekind import refuse_unless
    from nnseal.format.trust import signer_label
    from nnseal.units import format_bytes
    from nnseal.verify.report import inspect_nnunet_zip, inspect_package

    if refuse_unless(package, {"nnseal-package", "nnunet-zip"}, "a package") == "nnunet-zip":
        info = inspect_nnunet_zip(package)
        if as_json:
            emit_json(info.to_json())
        else:
            _print_nnunet_zip(info)
        return
    info = inspect_package(package, trusted_keys, trust_folder=trust_folder_from_environment())
    if as_json:
        emit_json(info.to_json())
        return
    card = info.card or {}
    model = card.get("model") or {}
    made_by = ", ".join(f"{k} {v}" for k, v in (card.get("created_by") or {}).items())
    # Everything below but the signer's fingerprint comes from the package itself: one line each, escaped.
    show = one_line
    click.echo(f"package:   {show(info.package)}  ({format_bytes(info.package_bytes)}; {len(info.entries)} entries, "
               f"{format_bytes(info.entries_bytes)} uncompressed)")
    click.echo(f"format:    {show(card.get('format', '?'))} v{show(card.get('format_version', '?'))}, "
               f"made by {show(made_by or '?')}")
    for key in ("name", "description", "licence", "reference", "release", "created"):
        if model.get(key):
            click.echo(f"{key + ':':<10} {show(model[key])}")
    if info.method in (None, "key"):
        trusted = "trusted" if info.signer_trusted else "NOT trusted"
        signer = (signer_label(info.signer_fingerprint, info.signer_name, full=True) if info.signer_fingerprint
                  else "none")
        click.echo(f"signer:    {signer}, OMS key method ({trusted}; signature not checked here)")
    else:  # the certificate's names come from the package: escaped, and said to be unchecked
        click.echo(f"signer:    {info.method} method, {show(info.signer or '?')} (chain and signature not "
                   "checked here)")
    for folder, model_info in sorted(info.models.items()):
        click.echo(f"model:     {show(folder)}: folds {', '.join(model_info['folds'])}; "
                   f"{len(model_info['checkpoints'])} checkpoint(s), {format_bytes(model_info['entries_bytes'])}")
    for folder, metrics in sorted(info.metrics.items()):
        after = metrics["dice_postprocessed"]
        post = f", {after:.4f} postprocessed" if after is not None else ""
        dice = f"{metrics['dice']:.4f}" if metrics["dice"] is not None else "?"
        click.echo(f"cv dice:   {show(folder)}: {dice}{post} (foreground mean)")
    for note in info.notes:
        click.echo(f"note:      {show(note)}")


def _print_nnunet_zip(info) -> None:
    """A zip from nnUNetv2_export_model_to_zip: its model folders, folds and checkpoints, and that it is unsigned."""
    from nnseal.units import format_bytes

    show = one_line
    click.echo(f"package:   {show(info.package)}  ({format_bytes(info.package_bytes)}; {len(info.entries)} entries, "
               f"{format_bytes(info.entries_bytes)} uncompressed)")
    click.echo("format:    nnU-Net export zip (nnUNetv2_export_model_to_zip): UNSIGNED, pickle checkpoints")
    for folder, model in sorted(info.models.items()):
        configuration = folder.rsplit("__", 1)[-1]
        checkpoints = sorted({c["checkpoint"] for c in model["checkpoints"]})
        click.echo(f"model:     {show(folder)}: configuration {show(configuration)}, "
                   f"folds {', '.join(model['folds']) or 'none'}; {len(model['checkpoints'])} checkpoint(s) "
                   f"({show(', '.join(checkpoints)) or 'none'}), {format_bytes(model['entries_bytes'])}")
    for note in info.notes:
        click.echo(f"note:      {show(note)}")
    click.echo("install:   nnseal install --unsigned (ideally with --sha256): checkpoints are sanitized and rebuilt, "
               "pickles dropped")
