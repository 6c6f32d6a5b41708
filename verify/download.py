"""Download a package by URL into a temporary file on the results filesystem, then install it verified.

Replaces nnU-Net's ``download_and_install_from_url``, which wrote into the home folder,
had one 100 s timeout, no retry, no resume, no hash, and crashed (``int(None)``) when a
server sent no Content-Length.

What a download can do here: retry connection errors, read timeouts, 429 and 5xx with
exponential backoff (Retry-After honoured, capped); resume a dropped body with a Range
request guarded by If-Range, restarting from zero when the server ignores the Range or
the file changed; follow redirects up to a limit, refusing loops and https->http
downgrades; stop at a size limit. Every failure removes the temporary file.

No torch here, and ``requests`` is imported only when an http(s) URL is fetched.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator, Sequence
from urllib.parse import urljoin, urlsplit, urlunsplit
from urllib.request import url2pathname

from nnseal import __version__
from nnseal.errors import (
    NetworkError,
    NnsealError,
    TamperedPackage,
    WouldOverwrite,
    from_os_error,
)
from nnseal.fsutil import CHUNK, TEMP_PREFIX, atomic_output, host_tag, left_by_dead_process
from nnseal.progress import byte_bar

if TYPE_CHECKING:
    import requests

    from nnseal.verify.install import InstallReport

# Network reads are smaller than disk reads so that a slow link still moves the bar.
NET_CHUNK = 64 << 10
# An attempt that took the download this much further than ever before does not use up
# a retry: a long download over a flaky link keeps going while it makes progress, and the
# number of attempts stays bounded by retries + max_bytes / RETRY_FREE_PROGRESS (a server
# that restarts from zero every time makes no such progress).
RETRY_FREE_PROGRESS = 1 << 20
# Temporary downloads are named DOWNLOAD_PREFIX + pid + host: the next download on the same
# host can tell those of a killed process (SIGKILL, power loss) and remove them.
DOWNLOAD_PREFIX = TEMP_PREFIX + "dl-"
HTTP_SCHEMES = ("http", "https")
SCHEMES = HTTP_SCHEMES + ("file",)
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


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


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    size: int
    sha256: str
    url: str
    final_url: str
    resumed: int  # 206 responses that continued a dropped body
    restarts: int  # times the body had to start again from byte 0


@dataclass(frozen=True)
class DownloadAndInstall:
    download: DownloadResult
    install: "InstallReport"


# --- public API -------------------------------------------------------------


def fetch_to_temp(
    url: str,
    directory: str | os.PathLike,
    *,
    policy: DownloadPolicy = DownloadPolicy(),
    expected_sha256: str | None = None,
    progress: bool = False,
) -> DownloadResult:
    """Stream ``url`` (http, https or file) into a new temporary file in ``directory``.

    The caller owns the returned file and must remove it. On any failure, Ctrl-C
    included, the file is removed before the exception propagates. A sha256 pin that
    does not match is a refusal (TamperedPackage); network and HTTP failures are
    NetworkError; a missing file:// path is EnvironmentProblem.
    """
    expected = normalise_sha256(expected_sha256) if expected_sha256 is not None else None
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise NetworkError(f"unsupported URL scheme {scheme or '(none)'!r} in {redact(url)}: use http, https or file")
    directory = Path(directory)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f"{DOWNLOAD_PREFIX}{os.getpid()}-{host_tag()}-",
                                        suffix=f"-{_safe_name(url)}.part", dir=directory)
    except OSError as err:
        raise from_os_error(err, directory) from err
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o644)  # --keep may hard-link this very file
        with os.fdopen(fd, "w+b") as handle:
            sink = _Sink(handle, policy.max_bytes, url)
            if scheme == "file":
                final_url, resumed, restarts = _copy_file_url(url, sink, progress), 0, 0
            else:
                final_url, resumed, restarts = _HttpDownload(url, sink, policy, progress).run()
            handle.flush()
            os.fsync(handle.fileno())
        digest = sink.sha256.hexdigest()
        if expected is not None and digest != expected:
            raise TamperedPackage(
                f"sha256 of the download from {redact(url)} is {digest}, but {expected} was pinned; nothing was installed"
            )
        return DownloadResult(tmp, sink.size, digest, url, final_url, resumed, restarts)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, NnsealError):
            raise from_os_error(err, tmp) from err  # disk full, permission denied
        raise


def download_and_install_from_url(
    url: str,
    destination: str | os.PathLike | None = None,
    *,
    trusted_keys: Sequence[str | os.PathLike] = (),
    sha256: str | None = None,
    keep: str | os.PathLike | None = None,
    unsigned: bool = False,
    force: bool = False,
    policy: DownloadPolicy = DownloadPolicy(),
    progress: bool = False,
) -> "InstallReport":
    """Download ``url`` and install it with the verified install; return the InstallReport."""
    return download_then_install(
        url, destination, trusted_keys=trusted_keys, sha256=sha256, keep=keep, unsigned=unsigned,
        force=force, policy=policy, progress=progress,
    ).install


def download_then_install(
    url: str,
    destination: str | os.PathLike | None = None,
    *,
    trusted_keys: Sequence[str | os.PathLike] = (),
    sha256: str | None = None,
    keep: str | os.PathLike | None = None,
    unsigned: bool = False,
    force: bool = False,
    policy: DownloadPolicy = DownloadPolicy(),
    progress: bool = False,
) -> DownloadAndInstall:
    """As download_and_install_from_url, also returning what was downloaded (for --json)."""
    results = resolve_destination(destination)
    keep_path = Path(keep) if keep is not None else None
    if keep_path is not None and keep_path.exists() and not force:
        # Checked before a long download, and again when the file is kept.
        raise WouldOverwrite("exists; pass --force to replace it", path=keep_path)
    created = not results.exists()
    try:
        results.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise from_os_error(err, results) from err
    remove_stale_downloads(results)
    # In the results folder, not the home folder: same filesystem, and no surprise quota.
    try:
        downloaded = fetch_to_temp(url, results, policy=policy, expected_sha256=sha256, progress=progress)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                results.rmdir()  # only if still empty: a failed download leaves no trace
        raise
    try:
        from nnseal.verify.install import install_model_from_zip

        report = install_model_from_zip(
            downloaded.path, install_location=results, trusted_keys=tuple(trusted_keys), force=force,
            unsigned=unsigned, sha256=sha256, progress=progress, source_name=redact(url),
        )
        if keep_path is not None:
            keep_file(downloaded.path, keep_path, force=force)
    finally:
        downloaded.path.unlink(missing_ok=True)
    return DownloadAndInstall(downloaded, report)


# --- small helpers, public because the CLI and tests use them ---------------


def resolve_destination(destination: str | os.PathLike | None) -> Path:
    """``destination`` or ``$nnUNet_results`` (EnvironmentProblem when neither is given)."""
    from nnseal.package.layout import results_dir

    return results_dir(destination)


def remove_stale_downloads(directory: Path) -> list[Path]:
    """Remove temporary downloads left in ``directory`` by dead processes of this host; return them.

    A results folder is often shared between hosts (NFS): files named after another
    host are left alone, since its processes cannot be checked from here.
    """
    removed = []
    for child in directory.glob(f"{DOWNLOAD_PREFIX}*"):
        fields = child.name[len(DOWNLOAD_PREFIX):].split("-", 2)
        if len(fields) != 3 or not left_by_dead_process(fields[0], fields[1]):
            continue
        if child.is_symlink() or not child.is_file():
            continue
        with contextlib.suppress(OSError):
            child.unlink()
            removed.append(child)
    return removed


def normalise_sha256(value: str) -> str:
    hexdigest = value.strip().lower()
    if not _SHA256_HEX.fullmatch(hexdigest):
        raise ValueError(f"not a sha256 hex digest (64 hex digits): {value!r}")
    return hexdigest


def keep_file(source: Path, keep: Path, *, force: bool) -> None:
    """Put the verified download at ``keep``: a hard link where possible, else an atomic copy."""
    try:
        if force:
            os.replace(source, keep)  # source is a temporary file that goes anyway
        else:
            os.link(source, keep)  # fails if keep appeared meanwhile: never clobber
        return
    except FileExistsError:
        raise WouldOverwrite("exists; pass --force to replace it", path=keep) from None
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
            raise from_os_error(err, keep) from err
    with open(source, "rb") as src, atomic_output(keep, force=force) as out:
        shutil.copyfileobj(src, out, CHUNK)


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


class _Sink:
    """The temporary file, with a running sha256 and the size limit, able to start over."""

    def __init__(self, handle: BinaryIO, max_bytes: int, url: str):
        self._handle = handle
        self._max_bytes = max_bytes
        self._url = url
        self.sha256 = hashlib.sha256()
        self.size = 0

    def check_declared(self, size: int | None) -> None:
        if size is not None and size > self._max_bytes:
            raise self._over_limit(size)

    def write(self, block: bytes) -> None:
        if self.size + len(block) > self._max_bytes:
            raise self._over_limit(None)
        self._handle.write(block)
        self.sha256.update(block)
        self.size += len(block)

    def restart(self) -> None:
        self._handle.seek(0)
        self._handle.truncate()
        self.sha256 = hashlib.sha256()
        self.size = 0

    def _over_limit(self, declared: int | None) -> NetworkError:
        said = f" (the server announced {declared} bytes)" if declared is not None else ""
        return NetworkError(
            f"download from {redact(self._url)} exceeds the limit of {self._max_bytes} bytes{said} "
            "(raise it with --max-size)"
        )


def _safe_name(url: str) -> str:
    """The URL's file name, reduced to characters safe in a file name (receipts record it)."""
    return re.sub(r"[^A-Za-z0-9._]", "_", _describe(url))[:80]


def _describe(url: str) -> str:
    name = Path(urlsplit(url).path).name
    return name or "download"


def _copy_file_url(url: str, sink: _Sink, progress: bool) -> str:
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
        with byte_bar(progress, size, _describe(url)) as bar:
            for block in iter(lambda: handle.read(CHUNK), b""):
                sink.write(block)
                bar.update(len(block))
    return url


# --- http(s) -----------------------------------------------------------------


class _Retryable(Exception):
    """A failure worth another attempt; once retries run out, _give_up turns it into a NetworkError."""

    def __init__(self, kind: str, detail: str, *, retry_after: float | None = None, wait: bool = True):
        super().__init__(detail)
        self.kind = kind  # "connect", "timeout", "status", "body", "changed"
        self.detail = detail
        self.retry_after = retry_after
        self.wait = wait


class _HttpDownload:
    def __init__(self, url: str, sink: _Sink, policy: DownloadPolicy, progress: bool):
        self.url = url
        self.sink = sink
        self.policy = policy
        self.progress = progress
        self.final_url = url
        self.total: int | None = None  # full size of the file, when the server said
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.resumed = 0
        self.restarts = 0

    def run(self) -> tuple[str, int, int]:
        import requests

        failures = 0
        with requests.Session() as session, contextlib.ExitStack() as stack:
            session.headers["User-Agent"] = f"nnseal/{__version__}"
            # Byte ranges and Content-Length are about the bytes on the wire: ask for no encoding.
            session.headers["Accept-Encoding"] = "identity"
            bar = None
            furthest = 0  # the most bytes ever held: only pushing it forward counts as progress
            while True:
                before = self.sink.size
                start = None  # offset this attempt's body began at, once accepted
                try:
                    response = self._open(session)
                    with response:
                        self._accept(response)
                        start = self.sink.size
                        if bar is None:
                            bar = stack.enter_context(byte_bar(self.progress, self.total, _describe(self.url)))
                        bar.update(start - before)  # negative after a restart
                        self._stream(response, bar)
                    if self.total is not None and self.sink.size < self.total:
                        raise _Retryable("body", "the connection closed early")
                    return self.final_url, self.resumed, self.restarts
                except _Retryable as problem:
                    if bar is not None and start is None:
                        bar.update(self.sink.size - before)  # a restart before any body
                    gained = max(0, self.sink.size - furthest)
                    furthest = max(furthest, self.sink.size)
                    if gained < RETRY_FREE_PROGRESS:
                        failures += 1
                    if failures > self.policy.retries:
                        raise self._give_up(problem, failures) from None
                    if problem.wait:
                        time.sleep(self._wait(failures, problem.retry_after))

    # One request, following redirects by hand so that loops and downgrades are ours to refuse.
    def _open(self, session: "requests.Session") -> "requests.Response":
        import requests

        headers = {}
        if self.sink.size > 0:
            headers["Range"] = f"bytes={self.sink.size}-"
            validator = self._if_range()
            if validator is not None:
                headers["If-Range"] = validator
        current = self.url
        seen = {current}
        hops = 0
        while True:
            try:
                response = session.get(
                    current, headers=headers, stream=True, allow_redirects=False,
                    timeout=(self.policy.connect_timeout, self.policy.read_timeout),
                )
            except requests.exceptions.ConnectTimeout as err:
                raise _Retryable("connect", f"could not connect to {_host(current)}: connection timed out") from err
            except requests.exceptions.ReadTimeout as err:
                raise _Retryable("timeout", f"no response from {redact(current)}") from err
            except requests.exceptions.InvalidURL as err:
                raise NetworkError(f"invalid URL {redact(current)}: {_reason(err)}") from None
            except requests.exceptions.SSLError as err:
                # A certificate that fails today fails on every retry: say so at once.
                raise NetworkError(f"could not connect to {_host(current)}: TLS failed: {_reason(err)}") from None
            except requests.exceptions.RequestException as err:  # ConnectionError, SSLError, ...
                raise _Retryable("connect", f"could not connect to {_host(current)}: {_reason(err)}") from err
            status = response.status_code
            if status in REDIRECT_STATUSES and "Location" in response.headers:
                target = urljoin(current, response.headers["Location"])
                response.close()
                self._check_redirect(current, target)
                if target in seen:
                    raise NetworkError(f"redirect loop at {redact(target)} (reached from {redact(self.url)})")
                hops += 1
                if hops > self.policy.max_redirects:
                    raise NetworkError(f"more than {self.policy.max_redirects} redirects from {redact(self.url)}")
                seen.add(target)
                current = target
                continue
            self.final_url = current
            if status in (200, 206):
                return response
            reason = response.reason or ""
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            response.close()
            message = f"HTTP {status} {reason} for {redact(current)}".replace("  ", " ")
            if status == 416 and self.sink.size > 0:
                # The server has nothing past our offset: the file shrank or changed. Start over.
                self._restart()
                raise _Retryable("body", message, wait=False)
            if status == 429 or 500 <= status <= 599:
                raise _Retryable("status", message, retry_after=retry_after)
            raise NetworkError(message)

    def _check_redirect(self, current: str, target: str) -> None:
        scheme = urlsplit(target).scheme.lower()
        if scheme not in HTTP_SCHEMES:
            raise NetworkError(f"redirect from {redact(current)} to unsupported scheme {scheme!r} refused")
        if urlsplit(current).scheme.lower() == "https" and scheme == "http":
            raise NetworkError(f"redirect from https to plain http refused: {redact(current)} -> {redact(target)}")

    def _if_range(self) -> str | None:
        # If-Range takes a strong ETag or a date; a weak ETag would never match.
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def _accept(self, response: "requests.Response") -> None:
        """Decide whether this response continues our bytes, restarts them, or is useless."""
        headers = response.headers
        if self.sink.size > 0 and response.status_code == 206:
            if not self._continues(response):
                self._restart()
                raise _Retryable("changed", f"{redact(self.final_url)} changed during the download", wait=False)
            self.resumed += 1
            return
        if response.status_code == 206:
            raise NetworkError(f"{redact(self.final_url)} answered 206 Partial Content to a request without Range")
        if self.sink.size > 0:
            self._restart()  # the server ignored Range or If-Range saw a new version: take it whole
        self.etag = headers.get("ETag")
        self.last_modified = headers.get("Last-Modified")
        self.total = _content_length(response)
        self.sink.check_declared(self.total)

    def _continues(self, response: "requests.Response") -> bool:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != self.sink.size:
            return False
        complete = None if match.group(3) == "*" else int(match.group(3))
        if self.total is not None and complete is not None and complete != self.total:
            return False
        for name, known in (("ETag", self.etag), ("Last-Modified", self.last_modified)):
            seen = response.headers.get(name)
            if known is not None and seen is not None and seen != known:
                return False
        if self.total is None and complete is not None:
            self.total = complete
            self.sink.check_declared(complete)
        return True

    def _restart(self) -> None:
        self.sink.restart()
        self.restarts += 1

    def _stream(self, response: "requests.Response", bar) -> None:
        """Copy the body into the sink, turning a broken or stalled connection into a retry."""
        import requests
        from urllib3.exceptions import HTTPError as Urllib3Error
        from urllib3.exceptions import ReadTimeoutError

        # A short body is ours to detect (size < total, then resume): urllib3's own check
        # would raise and drop the bytes it had already read in the last chunk.
        response.raw.enforce_content_length = False
        try:
            for block in _body_blocks(response):
                self.sink.write(block)
                bar.update(len(block))
        except ReadTimeoutError as err:
            raise _Retryable("timeout", "the server stopped sending") from err
        except requests.exceptions.ConnectionError as err:
            if isinstance(err.args[0] if err.args else None, ReadTimeoutError):
                raise _Retryable("timeout", "the server stopped sending") from err
            raise _Retryable("body", f"the connection broke ({_reason(err)})") from err
        except (requests.exceptions.RequestException, Urllib3Error) as err:
            raise _Retryable("body", f"the connection broke ({_reason(err)})") from err

    def _wait(self, failures: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.policy.max_wait)
        return min(self.policy.backoff * 2 ** (failures - 1), self.policy.max_wait)

    def _give_up(self, problem: _Retryable, failures: int) -> NetworkError:
        attempts = f"{failures} attempts"
        where = redact(self.url)
        if problem.kind == "timeout":
            return NetworkError(
                f"read timed out after {self.policy.read_timeout:g}s from {where} ({attempts}; raise it with --read-timeout)"
            )
        if problem.kind in ("body", "changed"):
            of = f"{self.total}" if self.total is not None else "an unknown number of"
            return NetworkError(
                f"body ended after {self.sink.size} of {of} bytes and {failures - 1} resume attempts failed: "
                f"{where} ({problem.detail})"
            )
        return NetworkError(f"{problem.detail} (gave up after {attempts})")


def _body_blocks(response: "requests.Response") -> Iterator[bytes]:
    raw = response.raw
    if not hasattr(raw, "read1"):  # urllib3 < 2.3
        yield from response.iter_content(NET_CHUNK)
        return
    # read1 returns what arrived, where iter_content waits for a full chunk: on a slow
    # link the bar moves and Ctrl-C finds bytes on disk, not a silent 64 KiB wait.
    while True:
        block = raw.read1(NET_CHUNK, decode_content=True)
        if not block:
            return
        yield block


def _content_length(response: "requests.Response") -> int | None:
    if response.headers.get("Content-Encoding", "identity").lower() != "identity":
        return None  # the length is of the encoded bytes, not of what we store
    value = response.headers.get("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _host(url: str) -> str:
    parts = urlsplit(url)
    if parts.hostname is None:
        return url
    return parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"


def _reason(err: BaseException) -> str:
    """The innermost useful words of a requests/urllib3 exception, without object reprs."""
    seen: set[int] = set()
    stack: list[BaseException] = [err]
    deepest = err
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror and not _is_wrapper(current):
            return current.strerror
        deepest = current
        for nxt in (getattr(current, "reason", None), current.__cause__, current.__context__, *current.args):
            if isinstance(nxt, BaseException):
                stack.append(nxt)
    text = str(deepest)
    # urllib3 messages look like "<...HTTPConnection object at 0x..>: Failed to establish ...".
    text = re.sub(r"<[^>]*>:?\s*", "", text)
    text = re.sub(r"\(Caused by .*", "", text)
    return " ".join(text.split()) or type(deepest).__name__


def _is_wrapper(err: OSError) -> bool:
    # requests' exceptions are OSErrors without an errno; the socket error underneath has one.
    return err.errno is None
