"""A real HTTP server on 127.0.0.1 for download tests, with behaviours chosen per path.

Each path serves a chain of ``Route``s: a route answers ``times`` requests, then the
next one takes over (the last answers forever). "503 twice, then the file" is
``[Route(status=503, times=2), Route(body=data)]``. Everything a route does is bounded
in time, and sleeps end as soon as the server stops.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    times: int | None = None  # how many requests this route answers before the next one; None: all
    send_length: bool = True  # False: no Content-Length, the body ends when the connection closes
    declared_length: int | None = None  # a Content-Length that lies
    ranges: bool = True  # honour Range with 206 + Content-Range; False: always 200 and the whole body
    if_range: bool = True  # honour If-Range; False: a 206 even when the validator no longer matches
    etag: str | None = None
    last_modified: str | None = None
    drop_after: int | None = None  # close the socket abruptly after this many body bytes
    chunk: int = 16 << 10
    delay: float = 0.0  # sleep before each chunk
    location: str | None = None  # for redirects: a path on this server or a full URL
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients that hang up mid-response (timeouts, resumes) are what these tests provoke;
        # socketserver would print a traceback for each.
        pass


class TestServer:
    __test__ = False  # not a pytest test class

    def __init__(self, tls_dir: Path | None = None, tls_context: ssl.SSLContext | None = None) -> None:
        """Plain HTTP, or HTTPS with a fresh self-signed certificate written to ``tls_dir``, or
        HTTPS with ``tls_context`` (a server context holding its certificate chain)."""
        self.routes: dict[str, list[Route]] = {}
        # For paths without a route: a host's API answering by pattern (tests/host_apis.py).
        self.fallback: Callable[[str], Route | None] | None = None
        self.seen: list[Seen] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self.scheme = "http"
        self.ca_file: Path | None = None
        if tls_dir is not None:
            self.scheme = "https"
            self.ca_file, key_file = write_self_signed_certificate(tls_dir)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.ca_file, key_file)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        elif tls_context is not None:
            self.scheme = "https"
            self._httpd.socket = tls_context.wrap_socket(self._httpd.socket, server_side=True)
        # shutdown() waits up to one poll interval, at the end of every test that uses a server.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.005},
                                        daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def route(self, path: str, *chain: Route) -> str:
        """Serve ``chain`` at ``path``; return its URL."""
        with self._lock:
            self.routes[path] = list(chain)
        return self.url(path)

    def requests_to(self, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path == path]

    def _next_route(self, path: str, headers: dict[str, str]) -> Route | None:
        with self._lock:
            self.seen.append(Seen(path, headers))
            chain = self.routes.get(path)
            if not chain:
                return self.fallback(path) if self.fallback is not None else None
            current = chain[0]
            if current.times is not None:
                current.times -= 1
                if current.times <= 0 and len(chain) > 1:
                    chain.pop(0)
            return current

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def running_server(tls_dir: Path | None = None, tls_context: ssl.SSLContext | None = None) -> Iterator[TestServer]:
    server = TestServer(tls_dir, tls_context)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def write_self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A P-256 certificate for 127.0.0.1, its own CA: (certificate PEM, key PEM) in ``folder``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nnseal test server")])
    now = datetime.datetime.now(datetime.timezone.utc)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "server.crt", folder / "server.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class _Dropped(Exception):
    """Raised inside a handler after it cut the connection on purpose."""


def _make_handler(server: TestServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # keep test output clean
            pass

        def do_GET(self):
            route = server._next_route(self.path, dict(self.headers.items()))
            try:
                if route is None:
                    self._send_status(404, b"not found\n")
                elif route.location is not None:
                    target = route.location if "://" in route.location else server.url(route.location)
                    self._send_status(route.status if route.status != 200 else 302, b"",
                                      {**route.headers, "Location": target})
                elif route.status != 200:
                    self._send_status(route.status, b"try later\n", route.headers)
                else:
                    self._send_body(route)
            except (_Dropped, BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _send_status(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _send_body(self, route: Route) -> None:
            body = route.body
            start = self._range_start(route)
            if start is not None and start >= len(body):
                self._send_status(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                return
            self.send_response(206 if start is not None else 200)
            part = body[start or 0:]
            if start is not None:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            if route.etag:
                self.send_header("ETag", route.etag)
            if route.last_modified:
                self.send_header("Last-Modified", route.last_modified)
            if route.ranges:
                self.send_header("Accept-Ranges", "bytes")
            for name, value in route.headers.items():
                self.send_header(name, value)
            if route.send_length:
                length = route.declared_length if route.declared_length is not None else len(part)
                self.send_header("Content-Length", str(length))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            sent = 0
            while sent < len(part):
                if route.delay and server.stopping.wait(route.delay):
                    raise _Dropped()
                piece = part[sent:sent + route.chunk]
                if route.drop_after is not None and sent + len(piece) >= route.drop_after:
                    self.wfile.write(piece[: max(0, route.drop_after - sent)])
                    self._drop()
                self.wfile.write(piece)
                sent += len(piece)
            if route.declared_length is not None:
                self.close_connection = True  # the lie ends with the connection, as a real cut would

        def _range_start(self, route: Route) -> int | None:
            header = self.headers.get("Range")
            if route.ranges and header is not None and header.startswith("bytes=-") and header[7:].isdigit():
                return max(0, len(route.body) - int(header[7:]))  # a suffix: the last N bytes
            if not route.ranges or header is None or not header.startswith("bytes=") or not header.endswith("-"):
                return None
            if_range = self.headers.get("If-Range")
            if route.if_range and if_range is not None and if_range not in (route.etag, route.last_modified):
                return None  # RFC 9110: a changed representation is sent whole
            return int(header[len("bytes="):-1])

        def _drop(self) -> None:
            self.wfile.flush()
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            raise _Dropped()

    return Handler
