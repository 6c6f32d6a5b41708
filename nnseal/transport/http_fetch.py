"""http(s) transfers for ``fetch_to_temp``: retries with backoff, resume, redirects, limits.

Retries connection errors, read timeouts, 429 and 5xx with exponential backoff
(Retry-After honoured, capped); resumes a dropped body with a Range request guarded by
If-Range, restarting from zero when the server ignores the Range or the file changed;
follows redirects up to a limit, refusing loops, https->http downgrades and other
schemes; stops at the size limit, the overall deadline and below the minimum rate.
Bytes are stored exactly as they came over the wire: the request asks for no
Content-Encoding and a response that carries one is refused, never decoded (a 200 KiB
gzip body could otherwise grow to gigabytes on disk). Imported only when an http(s) URL
is fetched.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from nnseal import __version__
from nnseal.errors import Hint, NetworkError
from nnseal.progress import byte_bar
from nnseal.transport.fetch import DownloadPolicy, Sink, deadline_error, redact, retry_after_seconds

if TYPE_CHECKING:
    import requests

# Network reads are smaller than disk reads so that a slow link still moves the bar.
NET_CHUNK = 64 << 10
# An attempt that took the download this much further than ever before does not use up
# a retry: a long download over a flaky link keeps going while it makes progress, and the
# number of attempts stays bounded by retries + max_bytes / RETRY_FREE_PROGRESS (a server
# that restarts from zero every time makes no such progress).
RETRY_FREE_PROGRESS = 1 << 20
HTTP_SCHEMES = ("http", "https")
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


# --- http(s) -----------------------------------------------------------------


class _Retryable(Exception):
    """A failure worth another attempt; once retries run out, _give_up turns it into a NetworkError."""

    def __init__(self, kind: str, detail: str, *, retry_after: float | None = None, wait: bool = True):
        super().__init__(detail)
        self.kind = kind  # "connect", "timeout", "slow", "status", "body", "changed"
        self.detail = detail
        self.retry_after = retry_after
        self.wait = wait


class HttpDownload:
    def __init__(self, url: str, sink: Sink, policy: DownloadPolicy, progress: bool, started: float | None = None):
        self.url = url
        self.started = time.monotonic() if started is None else started
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
                            bar = stack.enter_context(byte_bar(self.progress, self.total, "download"))
                        bar.update(start - before)  # negative after a restart
                        self._stream(response, bar)
                    if self.total is not None and self.sink.size < self.total:
                        raise _Retryable("body", "the connection closed early")
                    return self.final_url, self.resumed, self.restarts
                except _Retryable as problem:
                    if bar is not None and start is None:
                        bar.update(self.sink.size - before)  # a restart before any body
                    self._check_deadline()  # a timeout cut short by the deadline is the deadline
                    gained = max(0, self.sink.size - furthest)
                    furthest = max(furthest, self.sink.size)
                    if gained < RETRY_FREE_PROGRESS:
                        failures += 1
                    if failures > self.policy.retries:
                        raise self._give_up(problem, failures) from None
                    if problem.wait:
                        wait = self._wait(failures, problem.retry_after)
                        remaining = self._remaining()
                        if remaining is not None and wait >= remaining:
                            raise self._deadline_error() from None  # waiting would only end there
                        time.sleep(wait)

    # One request, following redirects by hand so that loops and downgrades are ours to refuse.
    def _open(self, session: requests.Session) -> requests.Response:
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
            self._check_deadline()
            try:
                response = session.get(
                    current, headers=headers, stream=True, allow_redirects=False,
                    timeout=(self._bounded(self.policy.connect_timeout), self._bounded(self.policy.read_timeout)),
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

    def _accept(self, response: requests.Response) -> None:
        """Decide whether this response continues our bytes, restarts them, or is useless."""
        headers = response.headers
        encoding = headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            # We asked for identity: the length, the ranges and the hash are of the wire bytes.
            raise NetworkError(
                f"{redact(self.final_url)} answered with Content-Encoding {encoding!r} although none was "
                "asked for; refusing to decode or store it")
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

    def _continues(self, response: requests.Response) -> bool:
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

    def _stream(self, response: requests.Response, bar) -> None:
        """Copy the body into the sink, turning a broken or stalled connection into a retry."""
        import requests
        from urllib3.exceptions import HTTPError as Urllib3Error
        from urllib3.exceptions import ReadTimeoutError

        # A short body is ours to detect (size < total, then resume): urllib3's own check
        # would raise and drop the bytes it had already read in the last chunk.
        response.raw.enforce_content_length = False
        window_start, window_size = time.monotonic(), self.sink.size
        try:
            for block in _body_blocks(response):
                self.sink.write(block)
                bar.update(len(block))
                now = time.monotonic()
                self._check_deadline(now)
                # Whole windows, each measured on its own: a fast start does not pay for a stall later.
                if self.policy.min_rate and now - window_start >= self.policy.rate_window:
                    got, took = self.sink.size - window_size, now - window_start
                    if got < self.policy.min_rate * took:
                        raise _Retryable("slow", f"{got} bytes in the last {took:.1f}s")
                    window_start, window_size = now, self.sink.size
        except ReadTimeoutError as err:
            raise _Retryable("timeout", "the server stopped sending") from err
        except requests.exceptions.ConnectionError as err:
            if isinstance(err.args[0] if err.args else None, ReadTimeoutError):
                raise _Retryable("timeout", "the server stopped sending") from err
            raise _Retryable("body", f"the connection broke ({_reason(err)})") from err
        except (requests.exceptions.RequestException, Urllib3Error) as err:
            raise _Retryable("body", f"the connection broke ({_reason(err)})") from err

    def _remaining(self, now: float | None = None) -> float | None:
        if self.policy.deadline is None:
            return None
        return self.policy.deadline - ((time.monotonic() if now is None else now) - self.started)

    def _check_deadline(self, now: float | None = None) -> None:
        remaining = self._remaining(now)
        if remaining is not None and remaining <= 0:
            raise self._deadline_error()

    def _deadline_error(self) -> NetworkError:
        return deadline_error(self.url, self.policy, self.sink.size, self.total)

    def _bounded(self, timeout: float) -> float:
        """A timeout that does not outlast the deadline (a silent server overruns it by no more)."""
        remaining = self._remaining()
        return timeout if remaining is None else max(0.001, min(timeout, remaining))

    def _wait(self, failures: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.policy.max_wait)
        return min(self.policy.backoff * 2 ** (failures - 1), self.policy.max_wait)

    def _give_up(self, problem: _Retryable, failures: int) -> NetworkError:
        attempts = f"{failures} attempts"
        where = redact(self.url)
        if problem.kind == "timeout":
            return NetworkError(
                f"read timed out after {self.policy.read_timeout:g}s from {where} ({attempts})",
                hint=Hint.READ_TIMEOUT)
        if problem.kind == "slow":
            return NetworkError(
                f"transfer from {where} slower than the minimum of {self.policy.min_rate} bytes/s over "
                f"{self.policy.rate_window:g}s ({problem.detail}; {attempts})", hint=Hint.MIN_RATE)
        if problem.kind in ("body", "changed"):
            of = f"{self.total}" if self.total is not None else "an unknown number of"
            return NetworkError(
                f"body ended after {self.sink.size} of {of} bytes and {failures - 1} resume attempts failed: "
                f"{where} ({problem.detail})"
            )
        return NetworkError(f"{problem.detail} (gave up after {attempts})")


def _body_blocks(response: requests.Response) -> Iterator[bytes]:
    # decode_content=False throughout: what is stored is what was hashed on the wire (and
    # _accept already refused any Content-Encoding); requests' iter_content would decode.
    raw = response.raw
    if not hasattr(raw, "read1"):  # urllib3 < 2.3
        yield from raw.stream(NET_CHUNK, decode_content=False)
        return
    # read1 returns what arrived, where stream() waits for a full chunk: on a slow
    # link the bar moves and Ctrl-C finds bytes on disk, not a silent 64 KiB wait.
    while True:
        block = raw.read1(NET_CHUNK, decode_content=False)
        if not block:
            return
        yield block


def _content_length(response: requests.Response) -> int | None:
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
