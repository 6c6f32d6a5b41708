"""The last bytes of a remote or local file, for a look at a zip's central directory before
the whole file is fetched.

Best effort by design: what comes back only lets a download be refused early (a model folder
it would overwrite); it is never trusted, and every failure (no Range support, a redirect
loop, a timeout) answers None, after which the real download and install decide.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

from nnseal import __version__

# Enough for the end records and the central directory of any package nnseal writes
# (a few dozen entries of about 150 bytes each).
TAIL_BYTES = 256 << 10
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


def fetch_tail(url: str, nbytes: int = TAIL_BYTES, *, timeout: float = 15.0) -> tuple[int, bytes] | None:
    """``(file size, its last bytes)`` (at most ``nbytes``), or None when it cannot be had cheaply."""
    scheme = urlsplit(url).scheme.lower()
    try:
        if scheme == "file":
            return _file_tail(unquote(urlsplit(url).path), nbytes)
        if scheme in ("http", "https"):
            return _http_tail(url, nbytes, timeout)
    except Exception:  # noqa: BLE001 - any failure only means "no early look"
        return None
    return None


def _file_tail(path: str, nbytes: int) -> tuple[int, bytes] | None:
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(max(0, size - nbytes))
        return size, handle.read(nbytes)


def _http_tail(url: str, nbytes: int, timeout: float) -> tuple[int, bytes] | None:
    import requests

    headers = {"Range": f"bytes=-{nbytes}", "Accept-Encoding": "identity", "User-Agent": f"nnseal/{__version__}"}
    with requests.get(url, headers=headers, stream=True, timeout=(timeout, timeout)) as response:
        # Anything but a plain partial answer (a 200 would be the whole file) is not read at all.
        if response.status_code != 206 or response.headers.get("Content-Encoding", "identity") != "identity":
            return None
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match is None:
            return None
        first, last, size = (int(group) for group in match.groups())
        if last != size - 1 or last - first + 1 > nbytes:
            return None
        body = response.raw.read(nbytes + 1, decode_content=False)
        if len(body) != last - first + 1:
            return None
        return size, body
