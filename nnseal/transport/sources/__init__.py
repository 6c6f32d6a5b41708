"""Sources of packages: where a package is published, resolved to a URL to fetch.

A source is written as the user writes it:

| source | host API |
|---|---|
| ``hf://OWNER/REPO[@REVISION][/PATH]`` | the Hugging Face Hub, through ``huggingface_hub`` (``hf.py``) |
| ``doi:10.5281/zenodo.N[/FILE]``, ``zenodo://RECORD[/FILE]`` | Zenodo's records API (``zenodo.py``) |
| ``gh://OWNER/REPO@TAG[/ASSET]`` | GitHub's releases API (``github.py``) |
| ``http(s)://...``, ``file://...`` | none: the URL is fetched as it is |

``resolve`` asks the host's API which file to fetch and returns a ``Remote``: the URL of
its bytes, pinned where the host allows it (the Hub's commit, Zenodo's record), and the
digest the host publishes for it (``HostDigest``), which the fetch checks beside the
signature, never instead of it. Base URLs are arguments (``Endpoints``); nothing here reads
the environment, except what ``huggingface_hub`` itself reads (``HF_ENDPOINT`` when no
endpoint is given, ``HF_TOKEN``, its proxy and CA settings).

A source that holds several packages is refused with their names, never guessed. Imports
nothing from the stages; ``requests`` and ``huggingface_hub`` are imported only when used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from nnseal.errors import InvalidArgument, NetworkError
from nnseal.format.layout import CARD_NAME
from nnseal.format.oms import SIGNATURE_NAME
from nnseal.transport.fetch import SCHEMES, DownloadPolicy, HostDigest

ZENODO_DOI_PREFIX = "10.5281/zenodo."
# What a package file is called; a source with several of them must name one.
PACKAGE_SUFFIX = ".zip"
# What a folder package holds at its top (``nnseal export --folder``): a folder holding both is one.
FOLDER_PACKAGE_MARKERS = (SIGNATURE_NAME, CARD_NAME)

_HF = re.compile(r"^hf://(?P<owner>[A-Za-z0-9][\w.-]*)/(?P<repo>[\w.-]+)(?:@(?P<revision>[^/]+))?(?:/(?P<path>.+))?$")
_ZENODO = re.compile(r"^zenodo://(?P<record>\d+)(?:/(?P<path>.+))?$")
_DOI = re.compile(r"^doi:10\.5281/zenodo\.(?P<record>\d+)(?:/(?P<path>.+))?$", re.IGNORECASE)
_GH = re.compile(r"^gh://(?P<owner>[A-Za-z0-9][\w.-]*)/(?P<repo>[\w.-]+)@(?P<tag>[^/]+)(?:/(?P<path>.+))?$")
_PREFIXES = ("hf://", "zenodo://", "doi:", "gh://")


@dataclass(frozen=True)
class Endpoints:
    """Where each host's API lives. ``hf`` None: huggingface_hub's default (it reads HF_ENDPOINT)."""

    hf: str | None = None
    zenodo: str = "https://zenodo.org"
    github_api: str = "https://api.github.com"
    # Sent to the GitHub API only (rate limits, private repositories), never to a download host.
    github_token: str | None = None


@dataclass(frozen=True)
class Source:
    """A parsed source: ``kind`` is "hf", "zenodo", "github" or "url"."""

    text: str
    kind: str
    owner: str = ""
    repo: str = ""
    revision: str | None = None  # hf revision, GitHub tag
    record: str = ""  # Zenodo record (or concept record) id
    path: str | None = None  # file inside the repository, record or release


@dataclass(frozen=True)
class Remote:
    """A file to fetch: its URL, name, size and the host's digest, if published. For a folder
    package (``snapshot`` set) ``url`` is its model.sig's and the files are the snapshot's."""

    source: str  # the source as the user wrote it
    url: str
    name: str
    size: int | None = None
    digest: HostDigest | None = None
    # What the source resolved to, e.g. "hf://owner/repo@<commit>/model.zip", for reports.
    resolved: str | None = None
    snapshot: Snapshot | None = None

    def to_json(self) -> dict:
        return {"source": self.source, "resolved": self.resolved or self.url,
                "declared_bytes": self.size,
                "host_digest": self.digest.text() if self.digest else None,
                "host_digest_by": self.digest.publisher if self.digest else None}


@dataclass(frozen=True)
class Snapshot:
    """A package published as files (a folder package) at one commit: every file under ``root``,
    by its name relative to ``root``, each a ``Remote`` fetched from that commit. Which of them to
    fetch is for the package's signature to say (``nnseal.verify.snapshot``), not the host."""

    root: str  # the folder in the repository, "" for its top
    files: dict[str, Remote]


def is_source(text: str) -> bool:
    """Whether ``text`` is something ``parse_source`` reads (a URL or a host source), not a local path."""
    lowered = text.lower()
    return lowered.startswith(_PREFIXES) or urlsplit(text).scheme.lower() in SCHEMES


def parse_source(text: str) -> Source:
    """Read a source; InvalidArgument names the forms accepted when it is none of them."""
    for pattern, kind in ((_HF, "hf"), (_ZENODO, "zenodo"), (_DOI, "zenodo"), (_GH, "github")):
        match = pattern.match(text)
        if match is not None:
            fields = {k: v for k, v in match.groupdict().items() if v is not None}
            path = fields.pop("path", None)
            if path is not None:
                _check_path(text, path)
            if "tag" in fields:
                fields["revision"] = fields.pop("tag")
            return Source(text, kind, path=path, **fields)
    if urlsplit(text).scheme.lower() in SCHEMES:
        return Source(text, "url")
    if text.lower().startswith(_PREFIXES):
        raise InvalidArgument(
            f"cannot read the source {text!r}: write hf://OWNER/REPO[@REVISION][/PATH], "
            "doi:10.5281/zenodo.N[/FILE], zenodo://RECORD[/FILE] or gh://OWNER/REPO@TAG[/ASSET]")
    raise InvalidArgument(f"unsupported source {text!r}: use an http, https or file URL, or a host source "
                          "(hf://, doi:, zenodo://, gh://)")


def resolve(source: Source | str, *, endpoints: Endpoints | None = None,
            policy: DownloadPolicy | None = None) -> Remote:
    """Ask the source's host which file to fetch (a URL is its own answer).

    NetworkError for an unreachable host, a repository, revision, record, release or file that
    does not exist (exit 3, as a 404 is), and for a source holding several packages without
    naming one (the message lists them).
    """
    if isinstance(source, str):
        source = parse_source(source)
    endpoints = endpoints or Endpoints()
    policy = policy or DownloadPolicy()
    if source.kind == "hf":
        from nnseal.transport.sources.hf import resolve_hf

        return resolve_hf(source, endpoint=endpoints.hf, timeout=policy.read_timeout)
    if source.kind == "zenodo":
        from nnseal.transport.sources.zenodo import resolve_zenodo

        return resolve_zenodo(source, endpoints.zenodo, policy)
    if source.kind == "github":
        from nnseal.transport.sources.github import resolve_github

        return resolve_github(source, endpoints.github_api, policy, token=endpoints.github_token)
    name = unquote(PurePosixPath(urlsplit(source.text).path).name) or "download"
    return Remote(source.text, source.text, name)


def choose_file(source: Source, names: list[str], where: str) -> str:
    """The one file the source means: the path it names, else the only package among ``names``."""
    if source.path is not None:
        if source.path not in names:
            raise NetworkError(f"{where} holds no file {source.path!r} (it holds: {_listing(names)})")
        return source.path
    packages = sorted(name for name in names if name.lower().endswith(PACKAGE_SUFFIX))
    if len(packages) == 1:
        return packages[0]
    if not packages:
        raise NetworkError(f"{where} holds no package ({PACKAGE_SUFFIX} file); it holds: {_listing(names)}")
    raise NetworkError(f"{where} holds several packages ({_listing(packages)}); name one: {source.text}/"
                       f"{packages[0]}")


def folder_packages(names: list[str]) -> list[str]:
    """The folders (``""`` for the top, else ``PATH``) that hold a folder package among the file ``names``."""
    present = set(names)
    roots = set()
    for name in names:
        folder, _, base = name.rpartition("/")
        if base == FOLDER_PACKAGE_MARKERS[0] and all(
                (f"{folder}/{marker}" if folder else marker) in present for marker in FOLDER_PACKAGE_MARKERS):
            roots.add(folder)
    return sorted(roots)


def choose_package(source: Source, names: list[str], where: str) -> tuple[str, bool]:
    """``(path, is_folder)``: the file or folder package the source names, else its only package
    (a zip, or a folder holding model.sig and the card). Several, or none: NetworkError naming them."""
    folders = folder_packages(names)
    if source.path is not None:
        folder = source.path.rstrip("/")
        if source.path not in names and folder in folders:
            return folder, True
        return choose_file(source, names, where), False
    zips = sorted(name for name in names if name.lower().endswith(PACKAGE_SUFFIX))
    if len(zips) + len(folders) == 1:
        return (zips[0], False) if zips else (folders[0], True)
    if not zips and not folders:
        raise NetworkError(f"{where} holds no package ({PACKAGE_SUFFIX} file, or folder with "
                           f"{' and '.join(FOLDER_PACKAGE_MARKERS)}); it holds: {_listing(names)}")
    shown = [*zips, *(f"{folder}/" if folder else "a folder package at the top" for folder in folders)]
    named = next(iter([*zips, *(f for f in folders if f)]), None)
    raise NetworkError(f"{where} holds several packages ({_listing(shown)}); name one"
                       + (f": {source.text}/{named}" if named else ""))


def _listing(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(sorted(names)[:limit]) or "nothing"
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _check_path(text: str, path: str) -> None:
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts) or "\\" in path:
        raise InvalidArgument(f"the file path in the source {text!r} must be relative, without '.', '..' or "
                              "empty parts")
