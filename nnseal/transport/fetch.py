"""Stream a URL (http, https or file) into a temporary file, hashing as it goes.

The temporary file lives in the folder the caller names (download puts it in the results
folder: same filesystem as the install, never the home folder) and is removed on every
failure, Ctrl-C included. A lock file (``nnseal.locks``) is held for as long as the file
is in use: ``sweep_stale`` removes the file once its holder is gone (SIGKILL, power loss),
never while it lives, in whatever PID namespace or on whatever host. http(s) transfers,
with their retries, resume and redirect rules, are in ``nnseal.transport.http_fetch``;
requests is imported only for those.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit, urlunsplit
from urllib.request import url2pathname

from nnseal.errors import Hint, NetworkError, NnsealError, TamperedPackage, from_os_error
from nnseal.format.digest import normalise_sha256
from nnseal.format.limits import IO_CHUNK
from nnseal.fsutil import TEMP_PREFIX
from nnseal.locks import Lock
from nnseal.progress import byte_bar

# Temporary downloads are named DOWNLOAD_PREFIX + the token of the lock that guards them.
DOWNLOAD_PREFIX = TEMP_PREFIX + "dl-"
SCHEMES = ("http", "https", "file")


@dataclass(frozen=True)
class DownloadPolicy:
    """Limits of one download. Defaults suit a 5-fold model over an ordinary link."""

    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    # Failed attempts allowed after the first one (connection errors, timeouts, 429, 5xx, dropped bodies).
    retries: int = 5
    # Seconds before the first retry; doubles each time, up to max_wait.
    backoff: float = 1.0
    # Cap on one wait, for our backoff and for a server's Retry-After alike.
    max_wait: float = 60.0
    max_redirects: int = 10
    # A 5-fold model with final+best checkpoints is about 2.4 GB as .pth, half that packaged.
    max_bytes: int = 8 << 30
    # Seconds the whole download may take, every attempt and wait included (None: no limit).
    # 8 GiB at 500 kB/s is under 5 hours; a server that never finishes ends here at the latest.
    deadline: float | None = 6 * 3600.0
    # Bytes per second an http(s) body must average over each rate_window seconds (0: no
    # minimum): a server trickling a byte a second never trips the read timeout, but this.
    min_rate: int = 1024
    rate_window: float = 60.0


@dataclass(frozen=True)
class HostDigest:
    """A digest the host publishes for a file (the Hub's LFS sha256, GitHub's asset digest,
    Zenodo's md5). Checked against the bytes as they stream, in addition to the package's
    signature, never instead of it: whoever controls the host controls this digest too."""

    algorithm: str  # "sha256" or "md5"
    value: str  # lower-case hex
    publisher: str  # who publishes it, for messages: "the Hugging Face Hub"

    def text(self) -> str:
        return f"{self.algorithm}:{self.value}"


HOST_DIGEST_ALGORITHMS = {"sha256": 64, "md5": 32}


def parse_host_digest(text: object, publisher: str) -> HostDigest | None:
    """``"sha256:HEX"`` or ``"md5:HEX"`` as hosts write it; None for anything else (no digest to check)."""
    if not isinstance(text, str) or ":" not in text:
        return None
    algorithm, _, value = text.partition(":")
    algorithm, value = algorithm.strip().lower(), value.strip().lower()
    length = HOST_DIGEST_ALGORITHMS.get(algorithm)
    if length is None or not re.fullmatch(f"[0-9a-f]{{{length}}}", value):
        return None
    return HostDigest(algorithm, value, publisher)


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    size: int
    sha256: str
    url: str
    final_url: str
    resumed: int  # 206 responses that continued a dropped body
    restarts: int  # times the body had to start again from byte 0
    # The lock fetch_to_temp took for the file when the caller passed none: ``discard`` releases it.
    lock: Lock | None = field(default=None, repr=False, compare=False)

    def discard(self) -> None:
        """Remove the temporary file, then release the lock that guarded it (if fetch_to_temp took one)."""
        self.path.unlink(missing_ok=True)
        if self.lock is not None:
            self.lock.release()

    def to_json(self, kept: str | os.PathLike | None = None) -> dict:
        """What was downloaded (URLs without passwords); ``kept``: where the verified zip was kept."""
        return {"url": redact(self.url), "final_url": redact(self.final_url), "bytes": self.size,
                "sha256": self.sha256, "resumed": self.resumed, "restarts": self.restarts, "kept": kept}


# --- public API -------------------------------------------------------------


def fetch_to_temp(
    url: str,
    directory: str | os.PathLike,
    *,
    policy: DownloadPolicy = DownloadPolicy(),
    expected_sha256: str | None = None,
    progress: bool = False,
    lock: Lock | None = None,
    host_digests: Sequence[HostDigest] = (),
) -> DownloadResult:
    """Stream ``url`` (http, https or file) into a new temporary file in ``directory``.

    ``lock``, a held ``nnseal.locks.Lock`` in ``directory``, guards the file: the caller
    keeps it until it has removed the file. Without one, fetch_to_temp takes one, and the
    caller ends with ``DownloadResult.discard()``, which removes the file and releases it.
    On any failure, Ctrl-C included, the file (and a lock taken here) is removed before the
    exception propagates. A sha256 pin that does not match is a refusal (TamperedPackage);
    network and HTTP failures are NetworkError; a missing file:// path is EnvironmentProblem.
    ``host_digests``, digests the host (or a mirror index) publishes for the file, are checked
    the same way (a mismatch is TamperedPackage), beside the pin and the signature, never
    instead of them.
    """
    expected = normalise_sha256(expected_sha256) if expected_sha256 is not None else None
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise NetworkError(f"unsupported URL scheme {scheme or '(none)'!r} in {redact(url)}: use http, https or file")
    directory = Path(directory)
    started = time.monotonic()
    own_lock = None
    try:
        if lock is None:
            lock = own_lock = Lock(directory)
        tmp = lock.owned(DOWNLOAD_PREFIX, f"-{secrets.token_hex(4)}-{_safe_name(url)}.part")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except BaseException as err:
        if own_lock is not None:
            own_lock.release()
        if isinstance(err, OSError) and not isinstance(err, NnsealError):
            raise from_os_error(err, directory) from err
        raise
    try:
        os.fchmod(fd, 0o644)  # --keep may hard-link this very file
        with os.fdopen(fd, "w+b") as handle:
            sink = Sink(handle, policy.max_bytes, url,
                        extra={d.algorithm for d in host_digests if d.algorithm != "sha256"})
            if scheme == "file":
                final_url, resumed, restarts = _copy_file_url(url, sink, progress, policy, started), 0, 0
            else:
                from nnseal.transport.http_fetch import HttpDownload

                final_url, resumed, restarts = HttpDownload(url, sink, policy, progress, started).run()
            handle.flush()
            os.fsync(handle.fileno())
        digest = sink.sha256.hexdigest()
        if expected is not None and digest != expected:
            raise TamperedPackage(
                f"sha256 of the download from {redact(url)} is {digest}, but {expected} was pinned; "
                "nothing was installed"
            )
        for published in host_digests:
            got = digest if published.algorithm == "sha256" else sink.extra_hexdigest(published.algorithm)
            if got != published.value:
                raise TamperedPackage(
                    f"{published.algorithm} of the download from {redact(url)} is {got}, but "
                    f"{published.publisher} publishes {published.value} for it; nothing was installed")
        return DownloadResult(tmp, sink.size, digest, url, final_url, resumed, restarts, own_lock)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if own_lock is not None:
            own_lock.release()
        if isinstance(err, OSError) and not isinstance(err, NnsealError):
            raise from_os_error(err, tmp) from err  # disk full, permission denied
        raise


# --- helpers, public because the CLI and tests use them --------------------


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds asked by a Retry-After header (delta-seconds or HTTP-date), None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def deadline_error(url: str, policy: DownloadPolicy, received: int, total: int | None) -> NetworkError:
    of = f"{total}" if total is not None else "an unknown number of"
    return NetworkError(
        f"download from {redact(url)} did not finish within the deadline of {policy.deadline:g}s "
        f"({received} of {of} bytes received)", hint=Hint.DEADLINE)


def redact(url: str) -> str:
    """The URL without a password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


# --- the byte sink shared by file and http ----------------------------------


class Sink:
    """The temporary file, with a running sha256 and the size limit, able to start over."""

    def __init__(self, handle: BinaryIO, max_bytes: int, url: str, extra: Iterable[str] = ()):
        self._handle = handle
        self._max_bytes = max_bytes
        self._url = url
        self.sha256 = hashlib.sha256()
        # A second digest a host publishes (Zenodo's md5), taken in the same pass.
        self._extra_names = tuple(sorted(set(extra)))
        self._extra = {name: hashlib.new(name, usedforsecurity=False) for name in self._extra_names}
        self.size = 0

    def extra_hexdigest(self, algorithm: str) -> str:
        return self._extra[algorithm].hexdigest()

    def check_declared(self, size: int | None) -> None:
        if size is not None and size > self._max_bytes:
            raise self._over_limit(size)

    def write(self, block: bytes) -> None:
        if self.size + len(block) > self._max_bytes:
            raise self._over_limit(None)
        self._handle.write(block)
        self.sha256.update(block)
        for hasher in self._extra.values():
            hasher.update(block)
        self.size += len(block)

    def restart(self) -> None:
        self._handle.seek(0)
        self._handle.truncate()
        self.sha256 = hashlib.sha256()
        self._extra = {name: hashlib.new(name, usedforsecurity=False) for name in self._extra_names}
        self.size = 0

    def _over_limit(self, declared: int | None) -> NetworkError:
        said = f" (the server announced {declared} bytes)" if declared is not None else ""
        return NetworkError(
            f"download from {redact(self._url)} exceeds the limit of {self._max_bytes} bytes{said}",
            hint=Hint.MAX_SIZE,
        )


def _safe_name(url: str) -> str:
    """The URL's file name, reduced to characters safe in a file name (receipts record it)."""
    return re.sub(r"[^A-Za-z0-9._]", "_", describe(url))[:80]


def describe(url: str) -> str:
    name = Path(urlsplit(url).path).name
    return name or "download"


def _copy_file_url(url: str, sink: Sink, progress: bool, policy: DownloadPolicy, started: float) -> str:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise NetworkError(f"file URL with a remote host is not supported: {url}")
    path = Path(url2pathname(parts.path))
    try:
        handle = open(path, "rb")
    except OSError as err:
        raise from_os_error(err, path) from err
    with handle:
        size = os.fstat(handle.fileno()).st_size
        sink.check_declared(size)
        with byte_bar(progress, size, "download") as bar:
            for block in iter(lambda: handle.read(IO_CHUNK), b""):
                # A hung network filesystem is a slow server too.
                if policy.deadline is not None and time.monotonic() - started > policy.deadline:
                    raise deadline_error(url, policy, sink.size, size)
                sink.write(block)
                bar.update(len(block))
    return url
