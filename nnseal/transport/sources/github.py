"""GitHub releases: ``gh://OWNER/REPO@TAG[/ASSET]`` through the releases API.

``GET {api}/repos/OWNER/REPO/releases/tags/TAG`` answers the release: ``assets[]`` with
``name``, ``size``, ``browser_download_url`` (a redirect to GitHub's download host) and
``digest`` ("sha256:HEX", published for assets uploaded since June 2025). A token, when
given, goes to the API host only, never to the download host.
"""

from __future__ import annotations

from urllib.parse import quote

from nnseal.errors import NetworkError
from nnseal.transport.fetch import DownloadPolicy, parse_host_digest
from nnseal.transport.sources import Remote, Source, choose_file
from nnseal.transport.sources.api import NotFound, get_json

PUBLISHER = "GitHub"


def resolve_github(source: Source, api: str, policy: DownloadPolicy, *, token: str | None = None) -> Remote:
    tag = source.revision or ""
    url = f"{api.rstrip('/')}/repos/{source.owner}/{source.repo}/releases/tags/{quote(tag, safe='')}"
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        release, _ = get_json(url, policy, headers=headers)
    except NotFound:
        raise NetworkError(f"GitHub has no release {tag!r} in {source.owner}/{source.repo} ({source.text})") from None
    if not isinstance(release, dict) or not isinstance(release.get("assets"), list):
        raise NetworkError(f"the answer of {url} is not a GitHub release (no assets list)")
    assets = {a["name"]: a for a in release["assets"] if isinstance(a, dict) and isinstance(a.get("name"), str)}
    name = choose_file(source, list(assets), f"release {tag} of {source.owner}/{source.repo}")
    asset = assets[name]
    link = asset.get("browser_download_url")
    if not isinstance(link, str):
        raise NetworkError(f"GitHub gives no download URL for {name} in release {tag} of {source.owner}/{source.repo}")
    size = asset.get("size") if isinstance(asset.get("size"), int) else None
    return Remote(source.text, link, name, size, parse_host_digest(asset.get("digest"), PUBLISHER),
                  resolved=f"gh://{source.owner}/{source.repo}@{tag}/{name}")
