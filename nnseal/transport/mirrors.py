"""The mirror index: one small JSON file naming several places to get one package.

    {"nnseal_mirrors": 1, "name": "Dataset042_Liver.zip", "sha256": "<64 hex>",
     "urls": ["https://zenodo.org/...", "hf://lab/liver/Dataset042_Liver.zip", "https://mirror.example/..."]}

``urls`` are sources in the order to try them (any form ``nnseal.transport.sources`` reads).
``sha256`` is the package's digest: checked against the bytes from every URL, like a host's
digest. The index is not trust, and needs none: whatever it points to is installed only if
the package's signature verifies against a trusted key; a forged index can make a download
fail, never make one succeed. docs/FORMAT.md describes the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from nnseal.errors import InvalidArgument, NetworkError, from_os_error
from nnseal.format.digest import is_sha256_hex
from nnseal.format.strict_json import load_strict_json
from nnseal.transport.fetch import DownloadPolicy, HostDigest, redact
from nnseal.transport.sources import is_source

FORMAT_KEY = "nnseal_mirrors"
FORMAT_VERSION = 1
MAX_INDEX_BYTES = 64 << 10
MAX_URLS = 32
PUBLISHER = "the mirror index"


@dataclass(frozen=True)
class MirrorIndex:
    urls: tuple[str, ...]
    sha256: str | None
    name: str | None

    def digest(self) -> HostDigest | None:
        return HostDigest("sha256", self.sha256, PUBLISHER) if self.sha256 else None


def parse_mirror_index(data: bytes, *, where: str = "mirror index") -> MirrorIndex:
    """Read a mirror index; InvalidArgument (exit 2) says what is wrong with it."""
    if len(data) > MAX_INDEX_BYTES:
        raise InvalidArgument(f"{where}: over {MAX_INDEX_BYTES} bytes")
    index = load_strict_json(data, what=where, error=InvalidArgument)
    if not isinstance(index, dict) or index.get(FORMAT_KEY) != FORMAT_VERSION:
        raise InvalidArgument(f"{where}: not a mirror index (\"{FORMAT_KEY}\": {FORMAT_VERSION} missing)")
    unknown = set(index) - {FORMAT_KEY, "name", "sha256", "urls"}
    if unknown:
        raise InvalidArgument(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    urls = index.get("urls")
    if (not isinstance(urls, list) or not urls or len(urls) > MAX_URLS
            or not all(isinstance(u, str) and is_source(u) for u in urls)):
        raise InvalidArgument(f"{where}: \"urls\" must list 1 to {MAX_URLS} URLs or sources")
    sha256 = index.get("sha256")
    if sha256 is not None and not is_sha256_hex(sha256):
        raise InvalidArgument(f"{where}: \"sha256\" must be 64 lower-case hex digits")
    name = index.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidArgument(f"{where}: \"name\" must be a string")
    return MirrorIndex(tuple(urls), sha256, name)


def load_mirror_index(location: str, policy: DownloadPolicy, *, offline: bool = False) -> MirrorIndex:
    """Read a mirror index from a local path, a file URL or an http(s) URL (not when ``offline``)."""
    scheme = urlsplit(location).scheme.lower()
    if scheme in ("http", "https"):
        if offline:
            raise NetworkError(f"offline: the mirror index at {redact(location)} cannot be fetched; give a local copy")
        from nnseal.transport.sources.api import get_bytes

        data, _ = get_bytes(location, policy, max_bytes=MAX_INDEX_BYTES)
    else:
        path = Path(url2pathname(urlsplit(location).path)) if scheme == "file" else Path(location)
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_INDEX_BYTES + 1)
        except OSError as err:
            raise from_os_error(err, path) from err
    return parse_mirror_index(data, where=f"mirror index {redact(location)}")
