"""nnseal export: model folder(s) -> signed package."""

from __future__ import annotations

import os

import click

from nnseal.commands._common import (
    SIGNING_KEY_ENV,
    emit_json,
    is_quiet,
    is_verbose,
    key_passphrase,
    one_line,
    report_errors,
    results_folder,
    show_progress,
    signing_key_path,
    signing_options,
    sigstore_signer,
)
from nnseal.commands.multivalue import MultiValueCommand, MultiValueOption
from nnseal.errors import ModelLayoutError

SOURCE_DATE_EPOCH_ENV = "SOURCE_DATE_EPOCH"


def _check_created(ctx, param, value, *, source: str = "--created"):
    """A time as export takes it: integer seconds since the epoch, or a UTC YYYY-MM-DDTHH:MM:SSZ."""
    from nnseal.errors import InvalidArgument
    from nnseal.format.card import format_created, parse_created

    if value is None:
        return None
    text = value.strip()
    when = parse_created(text) if not text.isdigit() else int(text)
    if when is None:
        raise click.BadParameter(f"{value!r} is neither seconds since the epoch nor YYYY-MM-DDTHH:MM:SSZ",
                                 param_hint=source)
    try:
        format_created(when)
    except InvalidArgument as err:
        raise click.BadParameter(err.reason, param_hint=source) from None
    return when


def _note_text(note) -> str:
    """A note from the export report, with the flag that would have exported what it names."""
    hint = ""
    if note.checkpoint:
        hint = f" (add -chk {note.checkpoint})"
    elif note.fold:
        hint = f" (add -f {note.fold})"
    return f"{one_line(str(note))}{hint}"


@click.command(cls=MultiValueCommand, help="""Sanitize, package and sign trained nnU-Net models into one zip
(-o), or into a folder of the same files plus model.sig (--folder).

Give model folders with -i, or select like nnU-Net does with -d/-c/-tr/-p under
$nnUNet_results (-d without -c: every configuration trained with that trainer and
plans). Like nnU-Net, -f, -c and -chk take several values after one flag
(-f 0 1 2); repeating the flag or commas work too. By default every fold folder found
and both checkpoint_final and checkpoint_best are exported; what is found and not
exported (checkpoint_latest, another fold) is listed, one note per line. The key may
come from $NNSEAL_SIGNING_KEY and its passphrase from $NNSEAL_KEY_PASSPHRASE (an
encrypted key without one is asked for at a terminal).""")
@click.option("-i", "input_folders", cls=MultiValueOption, split=False, type=click.Path(),
              help="Model folder(s) (DatasetXXX_Name/Trainer__Plans__configuration): -i A B, or repeated.")
@click.option("-o", "output", type=click.Path(dir_okay=False), help="Package zip to write.")
@click.option("--folder", "output_folder", type=click.Path(file_okay=False),
              help="Write the package as this folder instead of a zip: the same files plus model.sig "
                   "(what `model_signing verify` checks as it is and a model hub such as the Hugging Face "
                   "Hub stores file by file). Instead of -o.")
@signing_options
@click.option("-d", "dataset", help="Dataset id or name under $nnUNet_results (instead of -i).")
@click.option("-c", "configurations", cls=MultiValueOption,
              help="Configuration(s), with -d: -c 2d 3d_fullres. Default: every one found.")
@click.option("-tr", "trainer", default="nnUNetTrainer", show_default=True, help="Trainer, with -d.")
@click.option("-p", "plans", default="nnUNetPlans", show_default=True, help="Plans identifier, with -d.")
@click.option("-f", "folds", cls=MultiValueOption,
              help="Folds: -f 0 1 2 (any fold_N, or all). Default: every fold folder found.")
@click.option("-chk", "--checkpoints", "checkpoint_names", cls=MultiValueOption,
              help="Checkpoints: -chk checkpoint_final.pth checkpoint_best.pth (or final best latest). "
                   "Default: checkpoint_final and checkpoint_best where present.")
@click.option("--name", help="Model name (default: dataset.json's name).")
@click.option("--description", help="Model description (default: dataset.json's).")
@click.option("--licence", "--license", "licence", help="Licence (default: dataset.json's).")
@click.option("--reference", help="Reference / citation (default: dataset.json's).")
@click.option("--release", help="Release (default: dataset.json's).")
@click.option("--created", callback=_check_created, metavar="TIME",
              help="Creation time recorded in the card: seconds since the epoch or YYYY-MM-DDTHH:MM:SSZ. "
                   "Default: $SOURCE_DATE_EPOCH, else the newest exported checkpoint's mtime.")
@click.option("--include-progress", is_flag=True, help="Also ship fold_N/progress.png.")
@click.option("--force", is_flag=True, help="Replace the zip (or a folder that is not empty) if it exists.")
@click.option("--bom", "bom_file", type=click.Path(dir_okay=False),
              help="Also write a CycloneDX 1.6 ML-BOM of the package to FILE (replaced if it exists): "
                   "card fields, every entry's sha256, signer, training framework versions. Needs nnseal[bom].")
@click.option("--quiet", is_flag=True, help="No progress bar, no summary.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@report_errors
def command(input_folders, output, output_folder, key, passphrase, passphrase_env, certificate, certificate_chain,
            pkcs11_uri, use_sigstore, identity_token, oidc_issuer, staging, dataset, configurations, trainer, plans,
            folds, checkpoint_names, name, description, licence, reference, release, created, include_progress, force,
            bom_file, quiet, as_json):
    from nnseal.package import model_folder as layout
    from nnseal.package.export import export_model_to_zip

    quiet = is_quiet(quiet)
    if certificate_chain and not certificate:
        raise click.UsageError("--certificate-chain needs --certificate")
    if bool(output) == bool(output_folder):
        raise click.UsageError("give the package to write with -o PACKAGE.zip or --folder FOLDER, one of them")
    if use_sigstore:
        pass  # checked below, once the models are found: the sign-in comes last
    elif pkcs11_uri:
        if key:
            raise click.UsageError("give --key or --pkcs11-uri, not both")
        from nnseal.package.pkcs11_signing import open_pkcs11_key

        key = open_pkcs11_key(pkcs11_uri)
    else:
        key = signing_key_path(key)
    if key is None and not use_sigstore:
        raise click.UsageError(f"no signing key: pass --key KEY.pem, --pkcs11-uri URI or set {SIGNING_KEY_ENV}")
    if bool(input_folders) == bool(dataset):
        raise click.UsageError("give model folders with -i, or select them with -d (and -c, -tr, -p), not both")
    from nnseal.commands.filekind import refuse_unless

    for folder in input_folders:
        refuse_unless(folder, {"folder"}, "a model folder")
    if dataset:
        results = results_folder(None)
        if not configurations:  # as nnU-Net's exporter: every configuration there is
            configurations = layout.find_configurations(results, dataset, trainer, plans)
            if not (quiet or as_json):
                click.echo(f"nnseal: -d {dataset} without -c: exporting every configuration found for "
                           f"{trainer}__{plans}: {', '.join(configurations)}", err=True)
        input_folders = layout.model_folders_from_selection(results, dataset, list(configurations), trainer, plans)
    elif configurations:
        raise click.UsageError("-c selects configurations with -d; with -i give the model folders themselves")
    try:  # a fold or checkpoint name that cannot exist is a usage error, not a refusal
        folds = [layout.normalise_fold(f) for f in folds]
        checkpoint_names = [layout.normalise_checkpoint(c) for c in checkpoint_names]
    except ModelLayoutError as err:
        raise click.BadParameter(err.reason) from None
    if created is None and os.environ.get(SOURCE_DATE_EPOCH_ENV):  # the reproducible-builds convention
        created = _check_created(None, None, os.environ[SOURCE_DATE_EPOCH_ENV], source=f"${SOURCE_DATE_EPOCH_ENV}")
    if bom_file:  # before exporting: a missing extra is no reason to sanitize and sign
        from nnseal.scan.cyclonedx import require_library

        require_library()
    sigstore = sigstore_signer(use_sigstore, identity_token, oidc_issuer, staging, key=key, passphrase=passphrase,
                               passphrase_env=passphrase_env, certificate=certificate, pkcs11_uri=pkcs11_uri)
    secret = key_passphrase(key, passphrase, passphrase_env) if sigstore is None else None
    report = export_model_to_zip(
        [os.fspath(f) for f in input_folders], output or output_folder, key=key, as_folder=bool(output_folder),
        passphrase=secret,
        folds=folds or None, checkpoints=checkpoint_names or None,
        metadata={"name": name, "description": description, "licence": licence, "reference": reference,
                  "release": release},
        include_progress=include_progress, force=force, progress=show_progress(quiet or as_json), created=created,
        certificate=certificate, certificate_chain=certificate_chain, sigstore=sigstore)
    # Everything found and left out, one line each: folds and checkpoints not selected, and
    # find_best_configuration's files that cannot travel (with why).
    notes = [_note_text(note) for note in report.notes] + [f"not shipped: {one_line(s)}" for s in report.skipped]
    if bom_file:
        from nnseal.fsutil import atomic_output
        from nnseal.scan.cyclonedx import bom_json, package_model

        with atomic_output(bom_file, force=True) as handle:
            handle.write(bom_json([package_model(report.output)]).encode("utf-8"))
    if as_json:
        emit_json({**report.to_json(), "notes": notes})
        return
    for text in notes:
        click.echo(f"nnseal: note: {text}", err=True)
    if not quiet:
        n_ckpt = sum(len(m["checkpoints"]) for m in report.models)
        from nnseal.units import format_bytes

        click.echo(f"wrote {report.output}: {len(report.models)} model folder(s), {n_ckpt} checkpoint(s), "
                   f"{len(report.entries)} entries, {format_bytes(report.package_bytes)} "
                   f"(sources {format_bytes(report.source_bytes)}, saved {format_bytes(report.removed_bytes)})")
        click.echo(f"signed by {report.signer}")
        for name in report.pipeline:
            click.echo(f"shipped:  {one_line(name)}")
        if is_verbose():
            for entry in report.entries:
                click.echo(f"entry:    {one_line(entry['name'])} ({format_bytes(entry['bytes'])}, "
                           f"sha256 {entry['sha256']})")
