"""A private certificate authority and a CONNECT proxy on 127.0.0.1, for the proxy and CA bundle tests.

``TestCA`` is a CA generated in code (P-256); ``server_context()`` is a TLS server context
whose certificate it issued for IP:127.0.0.1 and DNS:localhost, for tests/http_server.py's
``running_server(tls_context=...)``. A client trusts that server only when told about
``ca_file``, as behind a company's TLS-inspecting proxy.

``ConnectProxy`` is what ``HTTPS_PROXY`` points at: it answers ``CONNECT host:port`` with a
tunnel (to 127.0.0.1 or localhost only) and records every request line it was sent, so a test
can tell whether a client went through it.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import select
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class TestCA:
    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path) -> None:
        """A fresh CA; its certificate is written to ``folder/ca.pem`` (the bundle a client is given)."""
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nnseal tests"),
                                x509.NameAttribute(NameOID.COMMON_NAME, "nnseal test CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        public = self._key.public_key()
        self.cert = (
            x509.CertificateBuilder().subject_name(self._name).issuer_name(self._name).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_file = folder / "ca.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context with a leaf for 127.0.0.1 and localhost issued by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        public = key.public_key()
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(self._name).public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                           critical=False)
            .sign(self._key, hashes.SHA256())
        )
        # Each call gets its own files: several servers of one test share the CA, not the leaf.
        index = len(list(self.folder.glob("server-*.pem")))
        chain_file, key_file = self.folder / f"server-{index}.pem", self.folder / f"server-{index}.key"
        chain_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(_pem_key(key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain_file, key_file)
        return context


class _ThreadingServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # Clients hang up mid-tunnel whenever a download ends; that is not worth a traceback.
        pass


class ConnectProxy:
    """An HTTP proxy that only tunnels (CONNECT) to this machine, recording each request line."""

    def __init__(self) -> None:
        self.request_lines: list[str] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = _ThreadingServer(("127.0.0.1", 0), _tunnel_handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.005},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def connect_targets(self) -> list[str]:
        with self._lock:
            return [line.split(" ")[1] for line in self.request_lines if line.startswith("CONNECT ")]

    def _record(self, line: str) -> None:
        with self._lock:
            self.request_lines.append(line)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def running_proxy() -> Iterator[ConnectProxy]:
    proxy = ConnectProxy()
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def _tunnel_handler(proxy: ConnectProxy):
    class Tunnel(socketserver.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline(8192).decode("latin-1").strip()
            while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                pass  # the client waits for our answer before it sends a byte of TLS: nothing else is buffered
            proxy._record(line)
            method, _, rest = line.partition(" ")
            target = rest.partition(" ")[0]
            host, _, port = target.rpartition(":")
            if method != "CONNECT":
                self._answer(b"405 Method Not Allowed")
                return
            if host not in ("127.0.0.1", "localhost") or not port.isdigit():
                self._answer(b"403 Forbidden")  # a test proxy never reaches beyond this machine
                return
            try:
                upstream = socket.create_connection((host, int(port)), timeout=5)
            except OSError:
                self._answer(b"502 Bad Gateway")
                return
            with upstream:
                self._answer(b"200 Connection established")
                self._pipe(self.connection, upstream)

        def _answer(self, status: bytes) -> None:
            # A 2xx answer to CONNECT has no body and, by RFC 9110, no length to declare.
            length = b"" if status.startswith(b"2") else b"Content-Length: 0\r\n"
            self.wfile.write(b"HTTP/1.1 " + status + b"\r\n" + length + b"\r\n")
            self.wfile.flush()

        def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
            peer = {client: upstream, upstream: client}
            while not proxy.stopping.is_set():
                readable, _, _ = select.select(list(peer), [], [], 0.05)
                for sock in readable:
                    try:
                        data = sock.recv(64 << 10)
                        if not data:
                            return
                        peer[sock].sendall(data)
                    except OSError:
                        return

    return Tunnel
