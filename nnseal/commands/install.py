"""nnseal install: verify a package, then install it atomically."""

from __future__ import annotations

from pathlib import Path

import click

from nnseal.commands._common import (
    check_sha256,
    emit_json,
    external_trainer_folders_from_environment,
    is_quiet,
    is_verbose,
    one_line,
    report_errors,
    results_folder,
    show_progress,
    trust_folder_from_environment,
)
from nnseal.commands.download import source_options


@click.command(help="""Verify PACKAGE and install it into the results folder.

The signature is checked against --trusted-key files and the trust folder
(`nnseal trust`); every entry is hashed while it is extracted into a staging folder
inside the results folder; checkpoints are rebuilt for nnU-Net; then each model
folder is moved into place in one rename. All model folders of the package
appear, or none; a refused, failed or interrupted install leaves the results
folder exactly as it was, and a missing results folder is created only when
the install succeeds. The same package again (same signed content, or for
--unsigned the same zip) over an unchanged install is a no-op: "already
installed", exit 0. Any other existing model folder is refused unless --force; an
older release (or, for the same release, an older creation time) of a model
installed from the same signer is refused unless --allow-downgrade.
Checkpoints must match their folder and plans.json, and a dataset id may not be
installed under a second name. Ctrl-C, SIGTERM and SIGHUP undo the install
(exit 130, 143, 129); once the folders are in place the install completes.
--unsigned installs a zip made by nnUNetv2_export_model_to_zip
(checkpoints sanitized and rebuilt, pickles dropped), without provenance.

PACKAGE may be a folder written by `nnseal export --folder` (the same checks; a file
the signature does not list is refused). It may also be a URL or a published source
(hf://, doi:, zenodo://, gh://; a Hugging Face repository may hold a zip or a folder package):
that is `nnseal download PACKAGE` with its default limits (see its help for the
sources, --mirror, the cache and --offline).""")
@click.argument("package", type=click.Path())
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False),
              help="Public key (PEM) to trust for this install; repeatable.")
@click.option("--results", "-o", "results", type=click.Path(file_okay=False),
              help="Results folder (default: $nnUNet_results).")
@click.option("--force", is_flag=True, help="Replace an existing model folder (atomically).")
@click.option("--allow-downgrade", is_flag=True,
              help="With --force, replace a model with an older release from the same signer.")
@click.option("--unsigned", is_flag=True, help="Install a legacy nnU-Net zip without a signature.")
@click.option("--sha256", callback=check_sha256, metavar="HEX", help="Refuse unless the zip has this sha256.")
@click.option("--quiet", is_flag=True, help="No progress bar, no summary.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@source_options
@report_errors
def command(package, trusted_keys, results, force, allow_downgrade, unsigned, sha256, quiet, as_json, mirrors,
            mirror_index, offline, cache, no_cache):
    from nnseal.transport.sources import is_source

    quiet = is_quiet(quiet)
    if is_source(package) and not Path(package).exists():
        from nnseal.commands.download import download_and_report
        from nnseal.transport.fetch import DownloadPolicy

        download_and_report(package, results=results, trusted_keys=trusted_keys, sha256=sha256, keep=None,
                            unsigned=unsigned, force=force, allow_downgrade=allow_downgrade, policy=DownloadPolicy(),
                            mirrors=mirrors, mirror_index=mirror_index, offline=offline, cache=cache,
                            no_cache=no_cache, quiet=quiet, as_json=as_json)
        return
    from nnseal.commands.filekind import is_folder_package, refuse_unless
    from nnseal.errors import Hint, Refused
    from nnseal.verify.install import install_model_from_folder, install_model_from_zip

    if Path(package).is_dir() and not is_folder_package(package):
        refuse_unless(package, set(), "a package")  # says what the folder is
    if Path(package).is_dir():  # a folder package (nnseal export --folder): the same checks, no zip
        if unsigned or sha256:
            raise click.UsageError("--unsigned and --sha256 are for zips; a folder package is always signed")
        report = install_model_from_folder(package, results_folder(results), trusted_keys=trusted_keys,
                                           trust_folder=trust_folder_from_environment(), force=force,
                                           progress=show_progress(quiet or as_json),
                                           allow_downgrade=allow_downgrade,
                                           external_trainer_folders=external_trainer_folders_from_environment())
        print_install_report(report, quiet=quiet, as_json=as_json)
        return
    kind = refuse_unless(package, {"nnseal-package", "nnunet-zip"}, "a package")
    if kind == "nnunet-zip" and not unsigned:
        raise Refused("is an nnU-Net export zip, not a signed package", path=package, hint=Hint.UNSIGNED)
    report = install_model_from_zip(package, results_folder(results), trusted_keys=trusted_keys,
                                    trust_folder=trust_folder_from_environment(), force=force, unsigned=unsigned,
                                    sha256=sha256, progress=show_progress(quiet or as_json),
                                    allow_downgrade=allow_downgrade,
                                    external_trainer_folders=external_trainer_folders_from_environment())
    print_install_report(report, quiet=quiet, as_json=as_json)


def print_install_report(report, *, quiet: bool, as_json: bool) -> None:
    if as_json:
        emit_json(report.to_json())
        return
    from nnseal.verify.install import UNSIGNED_WARNING

    for warning in report.warnings:
        flag = " (--unsigned)" if warning == UNSIGNED_WARNING else ""
        click.echo(f"nnseal: warning: {one_line(warning)}{flag}", err=True)
    if quiet:
        return
    who = (f"signed by {report.signer or report.signer_fingerprint}" if report.signer_fingerprint
           else "UNSIGNED")
    if report.already_installed:
        for model in [*report.models, *report.pipeline]:
            click.echo(f"already installed {model}")
        click.echo(f"nothing changed: the installed files match this package's receipt; {who}")
        return
    for model in [*report.models, *report.pipeline]:
        verb = "replaced" if model in report.replaced else "installed"
        click.echo(f"{verb} {model}")
    if is_verbose():
        for name in report.checkpoints:
            click.echo(f"rebuilt {one_line(name)}")
    click.echo(f"{len(report.checkpoints)} checkpoint(s) rebuilt; {who}")
