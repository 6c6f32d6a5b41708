"""Download by URL against a real HTTP server on 127.0.0.1 (tests/http_server.py), no mocked client.

Every failure test checks that the directory the download wrote into is exactly as it
was before: no temporary file survives, whatever went wrong.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from helpers import NNSEAL_EXE, run_cli, tree_listing
from http_server import Route, running_server

from nnseal import locks
from nnseal.errors import EnvironmentProblem, Hint, NetworkError, TamperedPackage, WouldOverwrite
from nnseal.fsutil import TEMP_PREFIX
from nnseal.transport import fetch, http_fetch
from nnseal.transport.fetch import DownloadPolicy, fetch_to_temp, retry_after_seconds
from nnseal.verify import download

BODY = random.Random(1234).randbytes(300_000)
BODY_SHA256 = hashlib.sha256(BODY).hexdigest()
# Short timeouts and near-zero backoff keep every retry scenario well under a second.
FAST = DownloadPolicy(connect_timeout=2.0, read_timeout=0.3, retries=2, backoff=0.01)


@pytest.fixture()
def server(monkeypatch):
    # A proxy configured on the machine must not see requests meant for 127.0.0.1.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with running_server() as srv:
        yield srv


@pytest.fixture()
def target(tmp_path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "existing.txt").write_text("already here\n")
    return folder


def fetch_ok(url: str, directory: Path, policy: DownloadPolicy = FAST, **kwargs) -> download.DownloadResult:
    result = fetch_to_temp(url, directory, policy=policy, **kwargs)
    assert result.path.parent == directory
    assert result.path.name.startswith(TEMP_PREFIX)
    assert hashlib.sha256(result.path.read_bytes()).hexdigest() == result.sha256
    assert result.size == result.path.stat().st_size
    return result


def fetch_fails(url: str, directory: Path, error=NetworkError, policy: DownloadPolicy = FAST, **kwargs):
    before = tree_listing(directory)
    with pytest.raises(error) as caught:
        fetch_to_temp(url, directory, policy=policy, **kwargs)
    assert tree_listing(directory) == before, "a failed download left something behind"
    assert "\n" not in str(caught.value)
    return caught.value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- success paths -----------------------------------------------------------


def test_plain_download_streams_whole_file(server, target):
    url = server.route("/model.zip", Route(body=BODY))
    result = fetch_ok(url, target)
    assert result.path.read_bytes() == BODY
    assert (result.sha256, result.size, result.final_url) == (BODY_SHA256, len(BODY), url)
    assert (result.resumed, result.restarts) == (0, 0)
    assert server.requests_to("/model.zip")[0].headers.get("Accept-Encoding") == "identity"


def test_connection_dropped_mid_body_is_resumed_with_range(server, target):
    url = server.route("/model.zip", Route(body=BODY, etag='"v1"', drop_after=100_000, times=2),
                       Route(body=BODY, etag='"v1"'))
    result = fetch_ok(url, target)
    assert result.path.read_bytes() == BODY
    assert result.sha256 == BODY_SHA256  # the hash continued across the resumes
    assert (result.resumed, result.restarts) == (2, 0)
    sent = [(r.headers.get("Range"), r.headers.get("If-Range")) for r in server.requests_to("/model.zip")]
    assert sent == [(None, None), ("bytes=100000-", '"v1"'), ("bytes=200000-", '"v1"')]


def test_resume_uses_last_modified_when_there_is_no_etag(server, target):
    stamp = "Mon, 01 Jan 2024 00:00:00 GMT"
    url = server.route("/model.zip", Route(body=BODY, last_modified=stamp, drop_after=150_000, times=1),
                       Route(body=BODY, last_modified=stamp))
    result = fetch_ok(url, target)
    assert result.path.read_bytes() == BODY and result.resumed == 1
    assert server.requests_to("/model.zip")[1].headers.get("If-Range") == stamp


def test_server_ignoring_range_restarts_from_zero(server, target):
    url = server.route("/model.zip", Route(body=BODY, drop_after=120_000, times=1), Route(body=BODY, ranges=False))
    result = fetch_ok(url, target)
    assert result.path.read_bytes() == BODY
    assert result.sha256 == BODY_SHA256  # the hash was reset with the file
    assert (result.resumed, result.restarts) == (0, 1)


@pytest.mark.parametrize("validator", ["etag", "last_modified"])
def test_file_changed_between_attempts_is_downloaded_again_whole(server, target, validator):
    old, new = BODY[::-1], BODY
    first = {"etag": '"old"'} if validator == "etag" else {"last_modified": "Mon, 01 Jan 2024 00:00:00 GMT"}
    second = {"etag": '"new"'} if validator == "etag" else {"last_modified": "Tue, 02 Jan 2024 00:00:00 GMT"}
    url = server.route("/model.zip", Route(body=old, drop_after=100_000, times=1, **first), Route(body=new, **second))
    result = fetch_ok(url, target)
    assert result.path.read_bytes() == new and result.sha256 == BODY_SHA256
    assert result.restarts == 1


def test_changed_file_detected_when_server_ignores_if_range(server, target):
    # The server answers 206 for the new file anyway; its ETag gives the change away.
    url = server.route("/model.zip", Route(body=BODY[::-1], etag='"old"', drop_after=100_000, times=1),
                       Route(body=BODY, etag='"new"', if_range=False))
    result = fetch_ok(url, target)
    assert result.path.read_bytes() == BODY and result.restarts == 1
    assert [r.headers.get("Range") for r in server.requests_to("/model.zip")] == [None, "bytes=100000-", None]


def test_503_twice_then_success_honours_retry_after(server, target):
    url = server.route("/model.zip", Route(status=503, times=1, headers={"Retry-After": "1"}),
                       Route(status=503, times=1), Route(body=BODY))
    started = time.monotonic()
    result = fetch_ok(url, target)
    elapsed = time.monotonic() - started
    assert result.path.read_bytes() == BODY
    assert len(server.requests_to("/model.zip")) == 3
    assert 1.0 <= elapsed < 5.0  # waited the second the server asked for, not FAST's 10 ms


def test_429_is_retried(server, target):
    url = server.route("/model.zip", Route(status=429, times=1, headers={"Retry-After": "0"}), Route(body=BODY))
    assert fetch_ok(url, target).path.read_bytes() == BODY


def test_retry_after_is_capped(server, target):
    url = server.route("/model.zip", Route(status=503, times=1, headers={"Retry-After": "3600"}), Route(body=BODY))
    started = time.monotonic()
    fetch_ok(url, target, policy=DownloadPolicy(read_timeout=2, retries=2, backoff=0.01, max_wait=0.2))
    assert time.monotonic() - started < 3.0


def test_no_content_length(server, target):
    url = server.route("/model.zip", Route(body=BODY, send_length=False))
    result = fetch_ok(url, target)
    assert result.path.read_bytes() == BODY and result.sha256 == BODY_SHA256


def test_redirect_chain_is_followed(server, target):
    server.route("/a", Route(location="/b", status=301))
    server.route("/b", Route(location="/c", status=302))
    server.route("/c", Route(location="/d", status=307))
    server.route("/d", Route(location="/model.zip", status=308))
    server.route("/model.zip", Route(body=BODY))
    result = fetch_ok(server.url("/a"), target)
    assert result.path.read_bytes() == BODY
    assert (result.url, result.final_url) == (server.url("/a"), server.url("/model.zip"))


def test_file_url_goes_through_the_same_copy(tmp_path, target):
    source = tmp_path / "model.zip"
    source.write_bytes(BODY)
    result = fetch_ok(source.as_uri(), target)
    assert result.path.read_bytes() == BODY and result.sha256 == BODY_SHA256


def test_sha256_pin_that_matches_is_accepted(server, target):
    url = server.route("/model.zip", Route(body=BODY))
    assert fetch_ok(url, target, expected_sha256=BODY_SHA256.upper()).sha256 == BODY_SHA256


# --- failures: exit 3, nothing left behind -----------------------------------


@pytest.mark.parametrize("status, words", [(404, "Not Found"), (403, "Forbidden"), (410, "Gone")])
def test_client_errors_fail_at_once_with_one_line(server, target, status, words):
    url = server.route("/model.zip", Route(status=status))
    err = fetch_fails(url, target)
    assert str(err) == f"HTTP {status} {words} for {url}"
    assert err.exit_code == 3
    assert len(server.requests_to("/model.zip")) == 1  # not retried


def test_5xx_forever_gives_up_after_the_retries(server, target):
    url = server.route("/model.zip", Route(status=500))
    err = fetch_fails(url, target)
    assert f"HTTP 500 Internal Server Error for {url}" in str(err) and "3 attempts" in str(err)
    assert len(server.requests_to("/model.zip")) == FAST.retries + 1


def test_content_length_larger_than_body_is_a_truncated_download(server, target):
    url = server.route("/model.zip", Route(body=BODY, declared_length=len(BODY) + 100_000, ranges=False))
    err = fetch_fails(url, target)
    assert f"body ended after {len(BODY)} of {len(BODY) + 100_000} bytes and {FAST.retries} resume attempts failed" \
        in str(err)
    assert len(server.requests_to("/model.zip")) == FAST.retries + 1


def test_connection_dropped_every_time_gives_up(server, target):
    url = server.route("/model.zip", Route(body=BODY, drop_after=50_000, ranges=False))
    err = fetch_fails(url, target)
    assert f"body ended after 50000 of {len(BODY)} bytes" in str(err)


@pytest.mark.timeout(60)  # a regression here loops forever
def test_server_restarting_from_zero_every_time_gives_up(server, target):
    # Each attempt gets far (past the retry-free progress threshold) but never further
    # than the last: the retries must still run out instead of looping forever.
    body = random.Random(5).randbytes(http_fetch.RETRY_FREE_PROGRESS * 2)
    url = server.route("/model.zip", Route(body=body, drop_after=http_fetch.RETRY_FREE_PROGRESS + 200_000,
                                           ranges=False, chunk=256 << 10))
    err = fetch_fails(url, target, policy=DownloadPolicy(read_timeout=2, retries=2, backoff=0.01))
    assert "body ended after" in str(err)
    assert len(server.requests_to("/model.zip")) == 2 + 2  # the first attempt's progress was free


def test_slow_server_trips_the_read_timeout_in_bounded_time(server, target):
    url = server.route("/model.zip", Route(body=BODY, delay=5.0))
    started = time.monotonic()
    err = fetch_fails(url, target, policy=DownloadPolicy(connect_timeout=2, read_timeout=0.3, retries=1, backoff=0.01))
    assert time.monotonic() - started < 4.0  # two 0.3 s timeouts, not the server's 5 s per chunk
    assert str(err).startswith("read timed out after 0.3s from " + url)


def test_redirect_loop_is_refused(server, target):
    server.route("/a", Route(location="/b"))
    server.route("/b", Route(location="/a"))
    err = fetch_fails(server.url("/a"), target)
    assert str(err).startswith(f"redirect loop at {server.url('/a')}")
    assert len(server.requests_to("/a")) == 1


def test_too_many_redirects(server, target):
    for n in range(5):
        server.route(f"/r{n}", Route(location=f"/r{n + 1}"))
    server.route("/r5", Route(body=BODY))
    err = fetch_fails(server.url("/r0"), target, policy=DownloadPolicy(max_redirects=3, retries=0))
    assert str(err) == f"more than 3 redirects from {server.url('/r0')}"


def test_redirect_to_a_local_file_is_refused(server, target, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the server to choose\n")
    url = server.route("/model.zip", Route(location=secret.as_uri()))
    err = fetch_fails(url, target)
    assert "unsupported scheme 'file'" in str(err)


def test_https_download_and_downgrade_to_http_refused(server, target, tmp_path, monkeypatch):
    with running_server(tls_dir=tmp_path / "tls") as secure:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(secure.ca_file))
        url = secure.route("/model.zip", Route(body=BODY))
        assert url.startswith("https://")
        assert fetch_ok(url, target).path.read_bytes() == BODY

        plain = server.route("/model.zip", Route(body=BODY))
        downgrade = secure.route("/old-link", Route(location=plain))
        err = fetch_fails(downgrade, target)
        assert "redirect from https to plain http refused" in str(err)
        assert server.requests_to("/model.zip") == []


def test_untrusted_https_certificate_fails_at_once(target, tmp_path):
    with running_server(tls_dir=tmp_path / "tls") as secure:
        url = secure.route("/model.zip", Route(body=BODY))
        started = time.monotonic()
        err = fetch_fails(url, target, policy=DownloadPolicy(connect_timeout=2, retries=3, backoff=1.0))
        assert time.monotonic() - started < 1.0  # not retried: the first backoff alone is 1 s
        assert str(err).startswith(f"could not connect to 127.0.0.1:{secure.port}: TLS failed: ")
        assert "certificate verify failed" in str(err).lower()
        assert secure.requests_to("/model.zip") == []


def test_connection_refused(target):
    port = free_port()
    err = fetch_fails(f"http://127.0.0.1:{port}/model.zip", target,
                      policy=DownloadPolicy(connect_timeout=1, retries=1, backoff=0.01))
    assert str(err).startswith(f"could not connect to 127.0.0.1:{port}: ")
    assert "refused" in str(err).lower() and "0x" not in str(err)


def test_announced_size_over_the_limit_is_refused_before_the_body(server, target):
    url = server.route("/model.zip", Route(body=BODY))
    err = fetch_fails(url, target, policy=DownloadPolicy(max_bytes=1000))
    assert "exceeds the limit of 1000 bytes" in str(err) and err.hint is Hint.MAX_SIZE


def test_streamed_size_over_the_limit_is_refused(server, target):
    url = server.route("/model.zip", Route(body=BODY, send_length=False))
    err = fetch_fails(url, target, policy=DownloadPolicy(max_bytes=100_000))
    assert "exceeds the limit of 100000 bytes" in str(err)


def test_sha256_mismatch_is_a_refusal_and_removes_the_file(server, target):
    url = server.route("/model.zip", Route(body=BODY))
    err = fetch_fails(url, target, error=TamperedPackage, expected_sha256="0" * 64)
    assert err.exit_code == 1 and BODY_SHA256 in str(err)


def test_missing_file_url_is_an_environment_problem(tmp_path, target):
    err = fetch_fails((tmp_path / "absent.zip").as_uri(), target, error=EnvironmentProblem)
    assert not isinstance(err, NetworkError) and "absent.zip" in str(err)


def test_unsupported_scheme(target):
    err = fetch_fails("ftp://127.0.0.1/model.zip", target)
    assert "unsupported URL scheme 'ftp'" in str(err)


def test_password_in_url_is_not_repeated_in_errors(server, target):
    server.route("/model.zip", Route(status=404))
    err = fetch_fails(f"http://alice:s3cret@127.0.0.1:{server.port}/model.zip", target)
    assert "s3cret" not in str(err) and "alice:***@" in str(err)


# --- Content-Encoding: stored as sent, never decoded -------------------------


def test_gzip_content_encoding_is_refused_and_never_decoded(server, target, monkeypatch):
    # 100 MiB of zeros in a ~100 KiB gzip body: decoding it would be a decompression bomb on disk.
    bomb = gzip.compress(bytes(100 << 20), compresslevel=9)
    assert len(bomb) < 200 << 10
    url = server.route("/model.zip", Route(body=bomb, headers={"Content-Encoding": "gzip"}))
    most = [0]
    real_write = fetch.Sink.write

    def counting_write(self, block):
        real_write(self, block)
        most[0] = max(most[0], self.size)

    monkeypatch.setattr(fetch.Sink, "write", counting_write)
    err = fetch_fails(url, target)
    assert str(err) == (f"{url} answered with Content-Encoding 'gzip' although none was asked for; "
                        "refusing to decode or store it")
    assert err.exit_code == 3
    assert most[0] <= len(bomb)  # nothing over the compressed size was ever written (in fact nothing)
    assert len(server.requests_to("/model.zip")) == 1  # not retried: the server would answer the same
    assert server.requests_to("/model.zip")[0].headers.get("Accept-Encoding") == "identity"


def test_identity_content_encoding_is_accepted(server, target):
    url = server.route("/model.zip", Route(body=BODY, headers={"Content-Encoding": "identity"}))
    assert fetch_ok(url, target).path.read_bytes() == BODY


def test_gzip_on_a_resumed_body_is_refused_too(server, target):
    url = server.route("/model.zip", Route(body=BODY, etag='"v1"', drop_after=100_000, times=1),
                       Route(body=BODY, etag='"v1"', headers={"Content-Encoding": "gzip"}))
    err = fetch_fails(url, target)
    assert "Content-Encoding 'gzip'" in str(err)


# --- overall deadline and minimum rate: a trickling server ends --------------

# One byte a second: never silent long enough for a read timeout.
TRICKLE = {"chunk": 1, "delay": 1.0}


def test_trickling_server_is_cut_by_the_minimum_rate(server, target):
    url = server.route("/model.zip", Route(body=BODY, etag='"v1"', **TRICKLE))
    started = time.monotonic()
    err = fetch_fails(url, target, policy=DownloadPolicy(connect_timeout=2, read_timeout=5, retries=1,
                                                         backoff=0.01, min_rate=100, rate_window=1.5, deadline=None))
    assert time.monotonic() - started < 8.0  # two ~2 s attempts
    assert str(err).startswith(f"transfer from {url} slower than the minimum of 100 bytes/s over 1.5s (")
    assert str(err).endswith("2 attempts)") and err.hint is Hint.MIN_RATE and err.exit_code == 3
    # The second attempt resumed where the first stopped: a slow attempt is a retry like a timeout.
    assert server.requests_to("/model.zip")[1].headers.get("Range", "").startswith("bytes=")


def test_trickling_server_is_cut_by_the_deadline(server, target):
    url = server.route("/model.zip", Route(body=BODY, **TRICKLE))
    started = time.monotonic()
    err = fetch_fails(url, target, policy=DownloadPolicy(connect_timeout=2, read_timeout=5, retries=3,
                                                         backoff=0.01, min_rate=0, deadline=2.0))
    assert time.monotonic() - started < 5.0
    assert str(err).startswith(f"download from {url} did not finish within the deadline of 2s (")
    assert str(err).endswith(f" of {len(BODY)} bytes received)") and err.hint is Hint.DEADLINE
    assert len(server.requests_to("/model.zip")) == 1


def test_a_wait_past_the_deadline_ends_the_download_at_once(server, target):
    url = server.route("/model.zip", Route(status=503, headers={"Retry-After": "30"}))
    started = time.monotonic()
    err = fetch_fails(url, target, policy=DownloadPolicy(retries=5, max_wait=60, deadline=3.0))
    assert time.monotonic() - started < 2.0  # did not sleep 30 s to fail afterwards
    assert "did not finish within the deadline of 3s (0 of an unknown number of bytes received)" in str(err)


def test_deadline_bounds_a_silent_server_by_its_read_timeout(server, target):
    url = server.route("/model.zip", Route(body=BODY, delay=30.0))
    started = time.monotonic()
    err = fetch_fails(url, target, policy=DownloadPolicy(read_timeout=60, retries=3, deadline=1.0))
    assert time.monotonic() - started < 3.0  # the 60 s read timeout was cut to what was left of the deadline
    assert "did not finish within the deadline of 1s" in str(err)


def test_keyboard_interrupt_mid_stream_removes_the_temporary_file(server, target, monkeypatch):
    url = server.route("/model.zip", Route(body=BODY))
    seen_temp = []

    class InterruptingBar:
        def update(self, n: int = 1) -> None:
            seen_temp.extend(p for p in target.iterdir() if p.name.startswith(TEMP_PREFIX))
            if n > 0:
                raise KeyboardInterrupt

    @contextlib.contextmanager
    def interrupting_bar(enabled, total, desc):
        yield InterruptingBar()

    monkeypatch.setattr(http_fetch, "byte_bar", interrupting_bar)
    before = tree_listing(target)
    with pytest.raises(KeyboardInterrupt):
        fetch_to_temp(url, target, policy=FAST, progress=True)
    assert seen_temp, "the interrupt came before the temporary file existed"
    assert tree_listing(target) == before


def test_keep_file_links_and_never_clobbers(tmp_path):
    source = tmp_path / "download.part"
    source.write_bytes(BODY)
    keep = tmp_path / "kept.zip"
    keep.write_bytes(b"mine")
    with pytest.raises(WouldOverwrite):
        download.keep_file(source, keep, force=False)
    assert keep.read_bytes() == b"mine"
    download.keep_file(source, keep, force=True)
    assert keep.read_bytes() == BODY


def test_keep_file_copies_across_filesystems(tmp_path, monkeypatch):
    source = tmp_path / "download.part"
    source.write_bytes(BODY)
    keep = tmp_path / "other-disk" / "kept.zip"
    keep.parent.mkdir()
    real_link = os.link

    def link_across_devices(src, dst, *args, **kwargs):
        if Path(src) == source:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(src))
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(download.os, "link", link_across_devices)
    download.keep_file(source, keep, force=False)
    assert keep.read_bytes() == BODY
    assert [p.name for p in keep.parent.iterdir()] == ["kept.zip"]  # no temporary file beside it


# A download that stays in progress: fetched (its lock held), then the process waits to be killed.
HOLD_DOWNLOAD = """
import sys, time
from nnseal.transport.fetch import fetch_to_temp
result = fetch_to_temp(sys.argv[1], sys.argv[2])
print(result.path.name, flush=True)
time.sleep(120)
"""


def _downloading(source: Path, directory: Path, *prefix: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([*prefix, sys.executable, "-c", HOLD_DOWNLOAD, source.as_uri(), str(directory)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    return proc, proc.stdout.readline().strip()


def _can_unshare() -> bool:
    import shutil

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True).returncode == 0


# --kill-child: killing unshare kills the download inside, PID 1 of its namespace.
NAMESPACES = [pytest.param((), id="same-namespace"),
              pytest.param(("unshare", "--pid", "--fork", "--mount-proc", "--kill-child"), id="own-pid-namespace",
                           marks=pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare(1) for PID "
                                                                               "namespaces (CI runs as root)"))]


def _sweep_until_one(folder: Path) -> list[str]:
    """The sweep, repeated until it removes something: a killed namespace's last process dies an
    instant after the process that was killed."""
    deadline = time.monotonic() + 10
    while not (swept := locks.sweep_stale(folder)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return swept


@pytest.mark.parametrize("prefix", NAMESPACES)
def test_sweep_removes_a_dead_downloads_part_file_never_a_live_one(tmp_path, prefix):
    """A .part file is guarded by a lock held for as long as its download lives: the sweep takes
    what it can lock (its holder is gone, whatever its PID namespace: in its own, each holder is
    PID 1 or 2, numbers that mean other, live processes here) and nothing else."""
    source = tmp_path / "model.zip"
    source.write_bytes(BODY)
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "Dataset001_Other.zip").write_bytes(b"unrelated")
    live, live_part = _downloading(source, folder, *prefix)
    dead, dead_part = _downloading(source, folder, *prefix)
    try:
        assert live_part.startswith(download.DOWNLOAD_PREFIX) and dead_part.startswith(download.DOWNLOAD_PREFIX)
        assert locks.sweep_stale(folder) == []  # both alive
        dead.kill()
        dead.wait()
        assert len(list(folder.glob(f"{locks.LOCK_PREFIX}*"))) == 2  # the dead one's lock file is left, no holder
        [token] = _sweep_until_one(folder)
        assert token in dead_part and token not in live_part
        [live_lock] = [p.name for p in folder.glob(f"{locks.LOCK_PREFIX}*")]
        assert live_lock[len(locks.LOCK_PREFIX):] in live_part
        assert sorted(p.name for p in folder.iterdir()) == sorted(["Dataset001_Other.zip", live_part, live_lock])
        assert (folder / live_part).read_bytes() == BODY
        assert locks.sweep_stale(folder) == []  # the live one, again
    finally:
        live.kill()
        live.wait()
    assert len(_sweep_until_one(folder)) == 1  # now that one is dead too
    assert [p.name for p in folder.iterdir()] == ["Dataset001_Other.zip"]


def test_fetch_to_temp_holds_its_own_lock_until_discard(tmp_path):
    """Without a lock from the caller, fetch_to_temp takes one: a sweep leaves the file alone
    until ``discard`` removes the file and the lock."""
    source = tmp_path / "model.zip"
    source.write_bytes(BODY)
    result = fetch_to_temp(source.as_uri(), tmp_path, policy=FAST)
    assert result.lock is not None and result.lock.held
    assert locks.sweep_stale(tmp_path) == []
    assert result.path.read_bytes() == BODY
    result.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.zip"]


def test_retry_after_accepts_seconds_and_http_dates():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


# --- the command line: one line, exit codes, Ctrl-C ------------------------


def test_cli_404_is_one_line_exit_3_and_results_untouched(server, target):
    url = server.route("/model.zip", Route(status=404))
    before = tree_listing(target)
    proc = run_cli("download", url, "-o", target, "--retries", "0", "--quiet")
    assert proc.exit_code == 3, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"nnseal: error: HTTP 404 Not Found for {url}"]
    assert tree_listing(target) == before


def test_cli_failure_does_not_leave_a_results_folder_it_created(server, tmp_path):
    url = server.route("/model.zip", Route(status=410))
    results = tmp_path / "new-results"
    proc = run_cli("download", url, "-o", results, "--quiet")
    assert proc.exit_code == 3 and "HTTP 410 Gone" in proc.stderr
    assert not results.exists()


def test_cli_sha256_mismatch_is_refused_before_install(server, target):
    url = server.route("/model.zip", Route(body=BODY))
    before = tree_listing(target)
    proc = run_cli("download", url, "-o", target, "--sha256", "ab" * 32, "--quiet")
    assert proc.exit_code == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnseal: refused: ") and BODY_SHA256 in lines[0]
    assert tree_listing(target) == before


def test_cli_rejects_a_malformed_sha256_before_downloading(server, target):
    url = server.route("/model.zip", Route(body=BODY))
    proc = run_cli("download", url, "-o", target, "--sha256", "abc")
    assert proc.exit_code == 2 and "sha256" in proc.stderr
    assert server.requests_to("/model.zip") == []


def test_cli_existing_keep_file_is_refused_before_downloading(server, target, tmp_path):
    url = server.route("/model.zip", Route(body=BODY))
    keep = tmp_path / "kept.zip"
    keep.write_bytes(b"mine")
    proc = run_cli("download", url, "-o", target, "--keep", keep)
    assert proc.exit_code == 1 and "kept.zip" in proc.stderr and "--force" in proc.stderr
    assert keep.read_bytes() == b"mine" and server.requests_to("/model.zip") == []


def test_cli_needs_a_results_folder(server, tmp_path):
    url = server.route("/model.zip", Route(body=BODY))
    proc = run_cli("download", url, env={"nnUNet_results": None}, cwd=tmp_path)
    assert proc.exit_code == 3 and "nnUNet_results" in proc.stderr
    assert server.requests_to("/model.zip") == []


def test_cli_max_size_accepts_units(server, target):
    url = server.route("/model.zip", Route(body=BODY))
    proc = run_cli("download", url, "-o", target, "--max-size", "200K", "--quiet")
    assert proc.exit_code == 3 and f"exceeds the limit of {200 << 10} bytes" in proc.stderr


def test_cli_deadline_and_min_rate_are_one_line_exit_3(server, target):
    url = server.route("/model.zip", Route(body=BODY, **TRICKLE))
    before = tree_listing(target)
    proc = run_cli("download", url, "-o", target, "--deadline", "1.5", "--min-rate", "0", "--quiet")
    assert proc.exit_code == 3, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("nnseal: error: download from ") and line.endswith("; raise it with --deadline")
    proc = run_cli("download", url, "-o", target, "--min-rate", "1K", "--rate-window", "1", "--retries", "0",
                   "--quiet")
    assert proc.exit_code == 3, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "slower than the minimum of 1024 bytes/s over 1s" in line
    assert line.endswith("; lower --min-rate or lengthen --rate-window")
    assert tree_listing(target) == before


def test_cli_gzip_content_encoding_is_one_line_exit_3(server, target):
    url = server.route("/model.zip", Route(body=gzip.compress(BODY), headers={"Content-Encoding": "gzip"}))
    before = tree_listing(target)
    proc = run_cli("download", url, "-o", target, "--quiet")
    assert proc.exit_code == 3, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"nnseal: error: {url} answered with Content-Encoding 'gzip' although none was asked for; "
        "refusing to decode or store it"]
    assert tree_listing(target) == before


@pytest.mark.parametrize("sig, code, message", [
    (signal.SIGINT, 130, "nnseal: interrupted"),
    (signal.SIGTERM, 143, "nnseal: interrupted (SIGTERM)"),
    (signal.SIGHUP, 129, "nnseal: interrupted (SIGHUP)"),
])
def test_cli_ctrl_c_and_sigterm_remove_the_temporary_file(server, target, sig, code, message):
    url = server.route("/model.zip", Route(body=BODY, chunk=1000, delay=0.2))
    before = tree_listing(target)
    # Ctrl-C needs a real process: SIGINT goes to the process, not to a function call.
    proc = subprocess.Popen([str(NNSEAL_EXE), "download", url, "-o", str(target), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not any(p.name.startswith(TEMP_PREFIX) and p.stat().st_size > 0 for p in target.iterdir()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.05)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, stderr
    assert stderr.strip() == message
    assert tree_listing(target) == before
