"""Proxies and private CA bundles, as pip and huggingface_hub take them from the environment.

A package served over HTTPS by a certificate of a CA generated in code (tests/tls_server.py):
no client trusts it until told by the variable its library reads. Downloads go through
requests (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``; ``SSL_CERT_FILE`` is not read: requests
uses certifi's bundle); the Hub's API goes through huggingface_hub's httpx client
(``SSL_CERT_FILE``; ``REQUESTS_CA_BUNDLE`` is not read). Both take ``HTTPS_PROXY`` and
``NO_PROXY``: a CONNECT proxy on 127.0.0.1 records what it tunnelled.

The Hub cases run the CLI as a real process: huggingface_hub builds its one httpx client
from the environment of the process, once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import assert_one_line_error, run_cli, run_cli_process, tree_listing
from host_apis import Hub
from http_server import Route, running_server
from tls_server import TestCA, running_proxy

from nnseal import toy_model

MODEL = f"{toy_model.DATASET}/{toy_model.model_folder_name('2d')}"
FAST = ("--retries", "1", "--read-timeout", "5", "--connect-timeout", "5")
NAME = "/Dataset042_Toy.zip"
# Every variable that could route or trust a connection, whatever this machine has set.
NETWORK_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
                     "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


@pytest.fixture(autouse=True)
def clean_network_environment(monkeypatch):
    for name in NETWORK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NNSEAL_BACKOFF_BASE", "0.01")


@pytest.fixture()
def ca(tmp_path) -> TestCA:
    return TestCA(tmp_path / "pki")


@pytest.fixture()
def https_package(ca, toy_package_session):
    """An HTTPS server under the test CA serving the signed toy package."""
    with running_server(tls_context=ca.server_context()) as server:
        server.route(NAME, Route(body=toy_package_session.read_bytes()))
        yield server


def download(url: str, results: Path, key, env: dict[str, str | None]):
    return run_cli("download", url, "-o", results, "--trusted-key", key.public_path, *FAST, env=env)


def assert_installed(results: Path) -> None:
    assert (results / MODEL / "plans.json").is_file()
    assert list(results.rglob(".nnseal-*")) == []


def empty_results(tmp_path: Path) -> tuple[Path, dict]:
    results = tmp_path / "results"
    results.mkdir()
    return results, tree_listing(results)


# --- downloads (requests) -----------------------------------------------------


def test_a_certificate_of_an_unknown_ca_is_refused_in_one_line_and_nothing_installed(https_package, session_key,
                                                                                      tmp_path):
    results, before = empty_results(tmp_path)
    result = download(https_package.url(NAME), results, session_key, env={})
    assert_one_line_error(result, 3, f"127.0.0.1:{https_package.port}", "TLS failed")
    assert tree_listing(results) == before
    assert https_package.seen == []  # the handshake failed: not one request reached the server


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_a_ca_bundle_named_as_requests_reads_it_lets_the_download_install(variable, ca, https_package, session_key,
                                                                          tmp_path):
    results = tmp_path / "results"
    result = download(https_package.url(NAME), results, session_key, env={variable: str(ca.ca_file)})
    assert result.exit_code == 0, result.stderr
    assert_installed(results)
    assert https_package.requests_to(NAME)


def test_ssl_cert_file_is_not_read_by_downloads(ca, https_package, session_key, tmp_path):
    # requests verifies against certifi's bundle unless REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE says
    # otherwise; README says so, and this is what keeps it true.
    results, before = empty_results(tmp_path)
    result = download(https_package.url(NAME), results, session_key, env={"SSL_CERT_FILE": str(ca.ca_file)})
    assert_one_line_error(result, 3, "TLS failed")
    assert tree_listing(results) == before


def test_https_proxy_tunnels_the_download(ca, https_package, session_key, tmp_path):
    results = tmp_path / "results"
    with running_proxy() as proxy:
        result = download(https_package.url(NAME), results, session_key,
                          env={"HTTPS_PROXY": proxy.url, "REQUESTS_CA_BUNDLE": str(ca.ca_file)})
        assert result.exit_code == 0, result.stderr
        assert proxy.connect_targets and set(proxy.connect_targets) == {f"127.0.0.1:{https_package.port}"}
    assert_installed(results)


def test_no_proxy_bypasses_the_proxy(ca, https_package, session_key, tmp_path):
    results = tmp_path / "results"
    with running_proxy() as proxy:
        result = download(https_package.url(NAME), results, session_key,
                          env={"HTTPS_PROXY": proxy.url, "NO_PROXY": "127.0.0.1",
                               "REQUESTS_CA_BUNDLE": str(ca.ca_file)})
        assert result.exit_code == 0, result.stderr
        assert proxy.request_lines == []
    assert_installed(results)
    assert https_package.requests_to(NAME)


def test_an_untrusted_certificate_behind_the_proxy_is_still_refused(https_package, session_key, tmp_path):
    # A proxy changes the route, not the trust: the tunnel ends at the server's own certificate.
    results, before = empty_results(tmp_path)
    with running_proxy() as proxy:
        result = download(https_package.url(NAME), results, session_key, env={"HTTPS_PROXY": proxy.url})
        assert proxy.connect_targets
    assert_one_line_error(result, 3, "TLS failed")
    assert tree_listing(results) == before


# --- the Hugging Face Hub (huggingface_hub's httpx client, then requests for the file) ---


@pytest.fixture()
def https_hub(ca, toy_package_session, tmp_path, monkeypatch):
    with running_server(tls_context=ca.server_context()) as api, \
            running_server(tls_context=ca.server_context()) as cdn:
        hub = Hub(api, cdn)
        hub.publish("lab/toy", {"Dataset042_Toy.zip": toy_package_session.read_bytes()})
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.setenv("HF_TOKEN", "")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
        yield hub


def hub_download(results: Path, key, env: dict[str, str | None]):
    return run_cli_process("download", "hf://lab/toy", "-o", results, "--trusted-key", key.public_path, *FAST,
                           env=env)


def test_hub_over_https_installs_with_ssl_cert_file_and_requests_ca_bundle(ca, https_hub, session_key, tmp_path):
    results = tmp_path / "results"
    result = hub_download(results, session_key,
                          env={"SSL_CERT_FILE": str(ca.ca_file), "REQUESTS_CA_BUNDLE": str(ca.ca_file)})
    assert result.exit_code == 0, result.stderr
    assert_installed(results)
    assert [s for s in https_hub.api.seen if s.path.startswith("/api/models/lab/toy")]


def test_hub_client_does_not_read_requests_ca_bundle(ca, https_hub, session_key, tmp_path):
    results, before = empty_results(tmp_path)
    result = hub_download(results, session_key, env={"REQUESTS_CA_BUNDLE": str(ca.ca_file)})
    assert_one_line_error(result, 3, "could not reach the Hugging Face Hub")
    assert tree_listing(results) == before
    assert https_hub.api.seen == [] and https_hub.cdn.seen == []


def test_hub_and_its_file_go_through_https_proxy(ca, https_hub, session_key, tmp_path):
    results = tmp_path / "results"
    with running_proxy() as proxy:
        result = hub_download(results, session_key, env={
            "HTTPS_PROXY": proxy.url, "SSL_CERT_FILE": str(ca.ca_file), "REQUESTS_CA_BUNDLE": str(ca.ca_file)})
        assert result.exit_code == 0, result.stderr
        assert set(proxy.connect_targets) == {f"127.0.0.1:{https_hub.api.port}", f"127.0.0.1:{https_hub.cdn.port}"}
    assert_installed(results)


def test_hub_with_no_proxy_goes_direct(ca, https_hub, session_key, tmp_path):
    results = tmp_path / "results"
    with running_proxy() as proxy:
        result = hub_download(results, session_key, env={
            "HTTPS_PROXY": proxy.url, "NO_PROXY": "127.0.0.1",
            "SSL_CERT_FILE": str(ca.ca_file), "REQUESTS_CA_BUNDLE": str(ca.ca_file)})
        assert result.exit_code == 0, result.stderr
        assert proxy.request_lines == []
    assert_installed(results)
