"""nnseal download: fetch a package by URL into the results folder, then install it verified."""

from __future__ import annotations

import re

import click

from nnseal.commands._common import (
    check_sha256,
    emit_json,
    external_trainer_folders_from_environment,
    report_errors,
    results_folder,
    show_progress,
    trust_folder_from_environment,
)

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(ctx, param, value):
    """BYTES, or a number with K/M/G/T (binary units: 8G = 8 GiB)."""
    if value is None:
        return None
    match = _SIZE.match(str(value))
    if match is None:
        raise click.BadParameter(f"{value!r} is not a size (examples: 3000000000, 500M, 8G)")
    unit = (match[2] or "")[:1].upper()
    return int(match[1]) * _UNITS[unit]


@click.command(help="""Download the package at URL and install it the verified way.

http, https and file URLs. The download streams into a temporary file inside the
results folder (same filesystem, never the home folder), resumes a dropped
connection with a Range request, retries connection errors, timeouts, 429 and 5xx
with backoff, and is removed on success and on every failure, Ctrl-C, SIGTERM and
SIGHUP included; a lock held while it is in use lets a later run remove it if this
one is killed (never while it lives). A missing results folder is created only
for the download and removed again unless the install succeeds. The bytes are
stored as sent: a response with a Content-Encoding (gzip, ...) is refused, never
decoded. --deadline bounds the whole download and --min-rate refuses a server that
trickles.

Before the body is fetched: an existing --keep FILE is refused, and so is a model
folder the package would install that the results folder already holds (unless
--force), read from the package's central directory in its last bytes (one Range
request); a server without Range support is judged by the file name instead
(DatasetNNN_...). The install checks each model folder again, after the download.

Then `nnseal install` runs on it: signature checked against --trusted-key files and
the trust folder. --sha256 pins the download (a mismatch is refused before
anything is extracted; the file is hashed once, as it streams); with --unsigned it
installs a legacy nnU-Net zip. --allow-downgrade is that of `nnseal install`.

Exit codes: 0 installed, 1 refused (verification, existing destination), 3 network,
HTTP (including an unasked Content-Encoding, the deadline, the minimum rate) or I/O
error, 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP.""")
@click.argument("url")
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False),
              help="Public key (PEM) to trust for this install; repeatable.")
@click.option("--sha256", callback=check_sha256, metavar="HEX", help="Refuse unless the download has this sha256.")
@click.option("--results", "-o", "results", type=click.Path(file_okay=False),
              help="Results folder (default: $nnUNet_results).")
@click.option("--keep", type=click.Path(dir_okay=False), metavar="FILE",
              help="Keep the verified zip at FILE (only after the install succeeded).")
@click.option("--unsigned", is_flag=True,
              help="Install a legacy nnU-Net zip without a signature (pin it with --sha256).")
@click.option("--force", is_flag=True,
              help="Replace an existing model folder (atomically) and an existing --keep FILE; "
                   "skips the early look at the package's model folders.")
@click.option("--allow-downgrade", is_flag=True,
              help="With --force, replace a model with an older release from the same signer.")
@click.option("--max-size", callback=parse_size, metavar="BYTES",
              help="Largest download accepted, e.g. 3000000000 or 8G (default 8G).")
@click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), default=15.0, show_default=True,
              metavar="S", help="Seconds to wait for a connection.")
@click.option("--read-timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              metavar="S", help="Seconds to wait for the server's next bytes.")
@click.option("--deadline", type=click.FloatRange(min=0), default=6 * 3600.0, show_default=True, metavar="S",
              help="Seconds the whole download may take, retries and waits included (0: no limit).")
@click.option("--min-rate", callback=parse_size, default="1K", show_default=True, metavar="BYTES_PER_S",
              help="Refuse a body slower than this on average over each --rate-window, e.g. 1K, 100K "
                   "(0: no minimum; a slow attempt counts as a retry).")
@click.option("--rate-window", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              metavar="S", help="Seconds over which --min-rate is measured.")
@click.option("--retries", type=click.IntRange(min=0), default=5, show_default=True, metavar="N",
              help="Retries after connection errors, timeouts, 429, 5xx and dropped bodies.")
@click.option("--backoff", type=click.FloatRange(min=0), default=1.0, envvar="NNSEAL_BACKOFF_BASE", hidden=True,
              help="Seconds before the first retry (doubles each time); tests make it small.")
@click.option("--quiet", is_flag=True, help="No progress bar, no summary.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@report_errors
def command(url, trusted_keys, sha256, results, keep, unsigned, force, allow_downgrade, max_size, connect_timeout,
            read_timeout, deadline, min_rate, rate_window, retries, backoff, quiet, as_json):
    from nnseal.commands.install import print_install_report
    from nnseal.verify.download import DownloadPolicy, download_then_install

    policy = DownloadPolicy(connect_timeout=connect_timeout, read_timeout=read_timeout, retries=retries,
                            backoff=backoff, deadline=deadline or None, min_rate=min_rate, rate_window=rate_window,
                            **({"max_bytes": max_size} if max_size is not None else {}))
    outcome = download_then_install(url, results_folder(results), trusted_keys=trusted_keys,
                                    trust_folder=trust_folder_from_environment(), sha256=sha256, keep=keep,
                                    unsigned=unsigned, force=force, allow_downgrade=allow_downgrade, policy=policy,
                                    progress=show_progress(quiet or as_json),
                                    external_trainer_folders=external_trainer_folders_from_environment())
    got = outcome.download
    if as_json:
        emit_json(outcome.to_json(keep))
        return
    if not quiet:
        click.echo(f"downloaded {got.size} bytes, sha256 {got.sha256}")
    print_install_report(outcome.install, quiet=quiet, as_json=False)
    if keep and not quiet:
        click.echo(f"kept the verified zip at {keep}")

