"""nnseal download: fetch a package from where it is published, then install it verified."""

from __future__ import annotations

import os
import re
from pathlib import Path

import click

from nnseal.commands._common import (
    CACHE_ENV,
    OFFLINE_ENV,
    check_sha256,
    emit_json,
    external_trainer_folders_from_environment,
    is_quiet,
    one_line,
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


def source_options(fn):
    """--mirror, --mirror-index, --offline, --cache, --no-cache: shared by download and install."""
    options = [
        click.option("--mirror", "mirrors", multiple=True, metavar="URL",
                     help="Another place with the same package, tried in order when the source fails "
                          "(a URL or a source); repeatable."),
        click.option("--mirror-index", metavar="FILE|URL",
                     help="A mirror index (nnseal-mirrors.json, docs/FORMAT.md): its URLs are tried after "
                          "the source and --mirror, its sha256 checked on the bytes."),
        click.option("--offline", is_flag=True, envvar=OFFLINE_ENV,
                     help=f"Open no connection: install from the cache (or a file URL) or refuse (${OFFLINE_ENV}=1)."),
        click.option("--cache", "cache", type=click.Path(file_okay=False), metavar="DIR",
                     help=f"Cache of verified downloads (default ${CACHE_ENV}, else $XDG_CACHE_HOME/nnseal, "
                          "else ~/.cache/nnseal)."),
        click.option("--no-cache", is_flag=True, help="Neither read nor fill the cache."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def cache_folder(explicit: str | None, disabled: bool) -> Path | None:
    if disabled:
        return None
    if explicit:
        return Path(explicit)
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nnseal"


def endpoints_from_environment():
    """The hosts' API base URLs: HF_ENDPOINT (as huggingface_hub reads it, passed explicitly so that it
    holds however early huggingface_hub was imported), NNSEAL_ZENODO_URL, NNSEAL_GITHUB_API_URL (GitHub
    Enterprise: its /api/v3); GH_TOKEN or GITHUB_TOKEN for GitHub's API."""
    from nnseal.transport.sources import Endpoints

    defaults = Endpoints()
    return Endpoints(
        hf=os.environ.get("HF_ENDPOINT") or None,
        zenodo=os.environ.get("NNSEAL_ZENODO_URL") or defaults.zenodo,
        github_api=os.environ.get("NNSEAL_GITHUB_API_URL") or defaults.github_api,
        github_token=os.environ.get("GH_TOKEN") or os.environ.get("GITHUB_TOKEN") or None,
    )


def print_failed_source(failure) -> None:
    from nnseal.commands._common import error_line
    from nnseal.transport.fetch import redact

    click.echo(f"nnseal: warning: {redact(failure.source)} failed: {one_line(error_line(failure.error))}; "
               "trying the next source", err=True)


def download_and_report(source, *, results, trusted_keys, sha256, keep, unsigned, force, allow_downgrade, policy,
                        mirrors, mirror_index, offline, cache, no_cache, quiet, as_json):
    """Resolve, fetch (mirrors, cache, offline) and install SOURCE, then print what happened."""
    from nnseal.commands.install import print_install_report
    from nnseal.transport.mirrors import load_mirror_index
    from nnseal.verify.download import download_then_install

    quiet = is_quiet(quiet)
    index = load_mirror_index(mirror_index, policy, offline=offline) if mirror_index else None
    outcome = download_then_install(
        source, results_folder(results), trusted_keys=trusted_keys, trust_folder=trust_folder_from_environment(),
        sha256=sha256, keep=keep, unsigned=unsigned, force=force, allow_downgrade=allow_downgrade, policy=policy,
        progress=show_progress(quiet or as_json), mirrors=mirrors, mirror_index=index,
        endpoints=endpoints_from_environment(), cache=cache_folder(cache, no_cache), offline=offline,
        on_source_failed=None if as_json else print_failed_source,
        external_trainer_folders=external_trainer_folders_from_environment())
    for warning in outcome.warnings:
        click.echo(f"nnseal: warning: {one_line(warning)}", err=True)
    got = outcome.download
    if as_json:
        emit_json(outcome.to_json(keep))
        return
    if not quiet:
        if outcome.remote is not None and outcome.remote.resolved:
            click.echo(f"resolved {outcome.remote.source} to {outcome.remote.resolved}")
        if outcome.remote is not None and outcome.remote.digest is not None:
            digest = outcome.remote.digest
            click.echo(f"{digest.algorithm} matches the one {digest.publisher} publishes (checked beside the "
                       "signature)")
        where = "from the cache" if outcome.from_cache else "downloaded"
        from nnseal.units import format_bytes

        click.echo(f"{where} {format_bytes(got.size)}, sha256 {got.sha256}")
    print_install_report(outcome.install, quiet=quiet, as_json=False)
    if keep and not quiet:
        click.echo(f"kept the verified zip at {keep}")


@click.command(help="""Download the package at SOURCE and install it the verified way.

SOURCE is an http, https or file URL, or where the package is published, resolved
through the host's own API:

\b
  hf://OWNER/REPO[@REVISION][/PATH]   Hugging Face Hub (huggingface_hub; HF_ENDPOINT, HF_TOKEN)
  doi:10.5281/zenodo.N[/FILE]         Zenodo (a concept DOI installs the latest version)
  zenodo://RECORD[/FILE]              Zenodo records API (NNSEAL_ZENODO_URL)
  gh://OWNER/REPO@TAG[/ASSET]         GitHub release asset (NNSEAL_GITHUB_API_URL, GH_TOKEN)

Without a file name the source's one .zip is taken; a source with several is
refused with their names. The digest the host publishes (the Hub's LFS sha256,
GitHub's asset digest, Zenodo's md5) is checked on the bytes beside the signature
and --sha256, never instead of them: a mismatch is refused (exit 1).

--mirror (repeatable) and --mirror-index name other places for the same package,
tried in order: the first that gives a package that verifies wins, each failure
is reported on one line. Verified downloads are kept in a cache (content-addressed
by sha256, see --cache) so that installing again needs no download; --offline
opens no connection at all and refuses (exit 3) without a cache hit.

The download streams into a temporary file inside the results folder (same
filesystem, never the home folder), resumes a dropped connection with a Range
request, retries connection errors, timeouts, 429 and 5xx with backoff, and is
removed on success and on every failure, Ctrl-C, SIGTERM and SIGHUP included; a
lock held while it is in use lets a later run remove it if this one is killed
(never while it lives). A missing results folder is created only for the download
and removed again unless the install succeeds. The bytes are stored as sent: a
response with a Content-Encoding (gzip, ...) is refused, never decoded. --deadline
bounds the whole download and --min-rate refuses a server that trickles.

Before the body is fetched: an existing --keep FILE is refused, and so is a model
folder the package would install that the results folder already holds (unless
--force), read from the package's central directory in its last bytes (one Range
request); a server without Range support is judged by the file name instead
(DatasetNNN_...). The install checks each model folder again, after the download.

Then `nnseal install` runs on it: signature checked against --trusted-key files and
the trust folder. --sha256 pins the download (a mismatch is refused before
anything is extracted; the file is hashed once, as it streams); with --unsigned it
installs a legacy nnU-Net zip. --allow-downgrade is that of `nnseal install`.
Proxies (HTTPS_PROXY, NO_PROXY) and CA bundles (REQUESTS_CA_BUNDLE; SSL_CERT_FILE
for the Hub's client) are honoured as by pip's requests and huggingface_hub.

Exit codes: 0 installed, 1 refused (verification, a digest that does not match,
existing destination), 3 network, HTTP (including an unasked Content-Encoding, the
deadline, the minimum rate, a missing revision, record or release), offline without
a cache hit, or I/O error, 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP.""")
@click.argument("source", metavar="SOURCE")
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
@source_options
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
def command(source, trusted_keys, sha256, results, keep, unsigned, force, allow_downgrade, mirrors, mirror_index,
            offline, cache, no_cache, max_size, connect_timeout, read_timeout, deadline, min_rate, rate_window,
            retries, backoff, quiet, as_json):
    from nnseal.verify.download import DownloadPolicy

    policy = DownloadPolicy(connect_timeout=connect_timeout, read_timeout=read_timeout, retries=retries,
                            backoff=backoff, deadline=deadline or None, min_rate=min_rate, rate_window=rate_window,
                            **({"max_bytes": max_size} if max_size is not None else {}))
    download_and_report(source, results=results, trusted_keys=trusted_keys, sha256=sha256, keep=keep,
                        unsigned=unsigned, force=force, allow_downgrade=allow_downgrade, policy=policy,
                        mirrors=mirrors, mirror_index=mirror_index, offline=offline, cache=cache,
                        no_cache=no_cache, quiet=quiet, as_json=as_json)
