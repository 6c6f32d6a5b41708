"""nnseal list: every model installed in the results folder, whom it came from, and whether it changed."""

from __future__ import annotations

import click

from nnseal.commands._common import emit_json, one_line, report_errors, results_folder, trust_folder_from_environment


@click.command(help="""List every model folder, ensemble folder and dataset-level file in the results
folder ($nnUNet_results, or --results): configuration, folds, checkpoints, provenance and
signer as the install receipt records them (the signer named as in the trust folder), the
release, and whether the files still match the receipt. Folders nnseal did not install are
listed as "no receipt".

By default the check is quick: the listing against the receipt (missing and extra files) and
each file's mtime against the receipt's (a file changed after install is newer); no file is
read. --check re-hashes every file, as `nnseal verify MODEL_FOLDER` does (slower: it reads
every checkpoint). Exit 0 whatever the status; `nnseal verify --all` exits 1 on drift.""")
@click.option("--results", "results", type=click.Path(file_okay=False),
              help="Results folder (default: $nnUNet_results).")
@click.option("--check", is_flag=True, help="Re-hash every file against its receipt (slow, exact).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per folder or file.")
@report_errors
def command(results, check, as_json):
    from nnseal.verify.inventory import list_installed

    folder = results_folder(results)
    items = list_installed(folder, check=check, signer_names=signer_names())
    if as_json:
        emit_json({"results": str(folder), "check": check, "models": [item.to_json() for item in items]})
        return
    if not items:
        click.echo(f"no models in {folder}" + ("" if folder.is_dir() else " (no such folder)"))
        return
    rows: list[tuple[str, ...]] = [("MODEL", "FOLDS", "CHECKPOINTS", "PROVENANCE", "SIGNER", "RELEASE", "STATUS")]
    rows += [row(item) for item in items]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=False)) + "  " + r[-1])
    if not check:
        click.echo("(quick check: file listing and mtimes; --check re-hashes every file)")


def signer_names() -> dict[str, str]:
    """fingerprint -> name in the trust folder; a trust folder that cannot be read names nobody
    (a listing is no place to refuse)."""
    from nnseal.errors import NnsealError
    from nnseal.format.trust import list_trusted_keys

    try:
        return {key.fingerprint: key.name for key in list_trusted_keys(trust_folder_from_environment())}
    except (NnsealError, OSError):
        return {}


def row(item) -> tuple[str, ...]:
    from nnseal.format.trust import signer_label
    from nnseal.verify.inventory import FolderKind, Status

    dash = "-"
    checkpoints = ",".join(name.removeprefix("checkpoint_").removesuffix(".pth") for name in item.checkpoints)
    if item.method in (None, "key"):
        signer = signer_label(item.signer_fingerprint, item.signer_name) if item.signer_fingerprint else dash
    else:
        signer = f"{item.signer} ({item.method})"
    if item.status is Status.DRIFTED:
        counts = [f"{len(files)} {what}" for files, what in ((item.modified, "modified"), (item.missing, "missing"),
                                                             (item.extra, "extra")) if files]
        status = "drifted: " + ", ".join(counts)
    elif item.status is Status.NO_RECEIPT:
        status = "no receipt (not installed by nnseal)" if item.kind is not FolderKind.FILE else "no receipt"
    elif item.status is Status.BAD_RECEIPT:
        status = f"bad receipt: {item.problem}"
    else:
        status = "ok"
    cells = (item.name, ",".join(item.folds) or dash, checkpoints or dash,
             item.provenance or dash, signer, item.release or dash, status)
    return tuple(one_line(cell) for cell in cells)
