"""Sources resolved through the hosts' real APIs, mirrors, the cache and --offline.

The Hub is queried by the real huggingface_hub client, pointed at a local endpoint
(tests/host_apis.py speaks the routes it calls); Zenodo and GitHub answer as their REST
APIs do. File bytes come from a second local server (a CDN on another port), reached by
redirect. The package is the toy model, signed (conftest's toy_package_session).
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
from helpers import run_cli, tree_listing
from host_apis import GitHub, Hub, Zenodo
from http_server import Route, running_server

from nnseal import toy_model
from nnseal.errors import InvalidArgument, NetworkError
from nnseal.transport.mirrors import parse_mirror_index
from nnseal.transport.sources import Endpoints, parse_source, resolve
from nnseal.verify.download import DownloadPolicy, download_then_install

MODEL = f"{toy_model.DATASET}/{toy_model.model_folder_name('2d')}"
FAST = ("--retries", "1", "--read-timeout", "5", "--connect-timeout", "5")


@pytest.fixture()
def servers(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NNSEAL_BACKOFF_BASE", "0.01")
    with running_server() as api, running_server() as cdn:
        yield api, cdn


@pytest.fixture()
def hub(servers, monkeypatch):
    api, cdn = servers
    host = Hub(api, cdn)
    monkeypatch.setenv("HF_ENDPOINT", host.endpoint)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_TOKEN", "")  # no token of this machine goes to the local Hub
    return host


@pytest.fixture()
def zenodo(servers, monkeypatch):
    host = Zenodo(*servers)
    monkeypatch.setenv("NNSEAL_ZENODO_URL", host.base)
    return host


@pytest.fixture()
def github(servers, monkeypatch):
    host = GitHub(*servers)
    monkeypatch.setenv("NNSEAL_GITHUB_API_URL", host.base)
    monkeypatch.delenv("GH_TOKEN", raising=False)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    return host


@pytest.fixture()
def package(toy_package_session) -> bytes:
    return toy_package_session.read_bytes()


def install(source, results: Path, key, *extra, env=None):
    return run_cli("download", source, "-o", results, "--trusted-key", key.public_path, *FAST, *extra, env=env)


def assert_installed(results: Path) -> None:
    assert (results / MODEL / "plans.json").is_file()
    assert list(results.rglob(".nnseal-*")) == []


def assert_refused_untouched(result, code: int, before: dict, results: Path, *needles: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert tree_listing(results) == before


# --- Hugging Face Hub ---------------------------------------------------------


def test_hub_source_resolves_with_huggingface_hub_and_installs(hub, package, session_key, tmp_path):
    repo = hub.publish("lab/toy", {"Dataset042_Toy.zip": package, "README.md": b"# toy\n"})
    results = tmp_path / "results"
    result = install("hf://lab/toy", results, session_key, "--json")
    assert result.exit_code == 0, result.stderr
    assert_installed(results)
    report = json.loads(result.stdout)["download"]
    assert report["source"]["resolved"] == f"hf://lab/toy@{repo.commit}/Dataset042_Toy.zip"
    assert report["source"]["host_digest"] == "sha256:" + hashlib.sha256(package).hexdigest()
    # Fetched at the commit that was listed, through the redirect to the CDN host.
    assert hub.api.requests_to(f"/lab/toy/resolve/{repo.commit}/Dataset042_Toy.zip")
    assert report["final_url"].startswith(hub.cdn.url("/hub-cdn/"))


def test_hub_library_call_takes_the_endpoint_as_an_argument(hub, package, monkeypatch):
    repo = hub.publish("lab/toy", {"models/Dataset042_Toy.zip": package})
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the library reads no environment of ours
    remote = resolve("hf://lab/toy@main/models/Dataset042_Toy.zip", endpoints=Endpoints(hf=hub.endpoint))
    assert remote.url == f"{hub.endpoint}/lab/toy/resolve/{repo.commit}/models/Dataset042_Toy.zip"
    assert remote.size == len(package) and remote.digest is not None
    assert remote.digest.value == hashlib.sha256(package).hexdigest()


def test_hub_revision_that_does_not_exist_is_one_line_exit_3(hub, package, session_key, tmp_path):
    hub.publish("lab/toy", {"Dataset042_Toy.zip": package})
    results = tmp_path / "results"
    result = install("hf://lab/toy@v9", results, session_key)
    assert_refused_untouched(result, 3, {}, results, "no revision 'v9'", "lab/toy")
    assert not results.exists()


def test_hub_repository_that_does_not_exist_is_one_line_exit_3(hub, session_key, tmp_path):
    result = install("hf://lab/missing", tmp_path / "results", session_key)
    assert_refused_untouched(result, 3, {}, tmp_path / "results", "no model repository lab/missing")


def test_hub_digest_that_does_not_match_the_bytes_is_refused(hub, package, session_key, tmp_path):
    hub.publish("lab/toy", {"Dataset042_Toy.zip": package}, lfs_sha256={"Dataset042_Toy.zip": "ab" * 32})
    results = tmp_path / "results"
    result = install("hf://lab/toy", results, session_key)
    assert_refused_untouched(result, 1, {}, results, "the Hugging Face Hub publishes " + "ab" * 32)
    assert not (tmp_path / "nnseal_cache" / "sha256").exists()  # nothing unverified is cached


def test_hub_repository_with_several_packages_must_name_one(hub, package, session_key, tmp_path):
    hub.publish("lab/toy", {"a/Dataset042_Toy.zip": package, "b/Dataset042_Toy.zip": package})
    result = install("hf://lab/toy", tmp_path / "results", session_key)
    assert_refused_untouched(result, 3, {}, tmp_path / "results", "several packages",
                             "a/Dataset042_Toy.zip, b/Dataset042_Toy.zip", "hf://lab/toy/a/Dataset042_Toy.zip")
    result = install("hf://lab/toy/b/Dataset042_Toy.zip", tmp_path / "results", session_key)
    assert result.exit_code == 0, result.stderr


def test_install_of_a_source_downloads_it(hub, package, session_key, tmp_path):
    hub.publish("lab/toy", {"Dataset042_Toy.zip": package})
    results = tmp_path / "results"
    result = run_cli("install", "hf://lab/toy", "-o", results, "--trusted-key", session_key.public_path)
    assert result.exit_code == 0, result.stderr
    assert_installed(results)


# --- Zenodo --------------------------------------------------------------------


def test_zenodo_concept_doi_installs_the_latest_version_with_its_md5_checked(zenodo, package, session_key, tmp_path):
    zenodo.publish(1001, {"Dataset042_Toy.zip": b"an older release"}, concept=1000)
    zenodo.publish(1002, {"Dataset042_Toy.zip": package, "README.md": b"x"}, concept=1000)
    results = tmp_path / "results"
    result = install("doi:10.5281/zenodo.1000", results, session_key, "--json")
    assert result.exit_code == 0, result.stderr
    assert_installed(results)
    source = json.loads(result.stdout)["download"]["source"]
    assert source["resolved"] == "zenodo://1002/Dataset042_Toy.zip"
    assert source["host_digest"] == "md5:" + hashlib.md5(package, usedforsecurity=False).hexdigest()


def test_zenodo_record_and_file(zenodo, package, session_key, tmp_path):
    zenodo.publish(77, {"Dataset042_Toy.zip": package, "other.zip": b"x"})
    result = install("zenodo://77/Dataset042_Toy.zip", tmp_path / "results", session_key)
    assert result.exit_code == 0, result.stderr
    assert_installed(tmp_path / "results")


def test_zenodo_md5_that_does_not_match_is_refused(zenodo, package, session_key, tmp_path):
    zenodo.publish(77, {"Dataset042_Toy.zip": package}, md5={"Dataset042_Toy.zip": "0" * 32})
    result = install("zenodo://77", tmp_path / "results", session_key)
    assert_refused_untouched(result, 1, {}, tmp_path / "results", "Zenodo publishes " + "0" * 32)


def test_zenodo_record_that_does_not_exist(zenodo, session_key, tmp_path):
    result = install("doi:10.5281/zenodo.5", tmp_path / "results", session_key)
    assert_refused_untouched(result, 3, {}, tmp_path / "results", "Zenodo has no record 5")


# --- GitHub releases -------------------------------------------------------------


def test_github_release_asset_installs_with_its_digest_checked(github, package, session_key, tmp_path):
    github.publish("lab/toy", "v1.0", {"Dataset042_Toy.zip": package, "notes.txt": b"x"})
    result = install("gh://lab/toy@v1.0", tmp_path / "results", session_key, "--json")
    assert result.exit_code == 0, result.stderr
    assert_installed(tmp_path / "results")
    source = json.loads(result.stdout)["download"]["source"]
    assert source["host_digest"] == "sha256:" + hashlib.sha256(package).hexdigest()
    assert source["host_digest_by"] == "GitHub"


def test_github_digest_that_does_not_match_is_refused(github, package, session_key, tmp_path):
    github.publish("lab/toy", "v1.0", {"Dataset042_Toy.zip": package},
                   digests={"Dataset042_Toy.zip": "sha256:" + "cd" * 32})
    result = install("gh://lab/toy@v1.0/Dataset042_Toy.zip", tmp_path / "results", session_key)
    assert_refused_untouched(result, 1, {}, tmp_path / "results", "GitHub publishes " + "cd" * 32)


def test_github_asset_without_a_digest_still_installs_on_its_signature(github, package, session_key, tmp_path):
    github.publish("lab/toy", "v1.0", {"Dataset042_Toy.zip": package}, digests={"Dataset042_Toy.zip": None})
    result = install("gh://lab/toy@v1.0", tmp_path / "results", session_key)
    assert result.exit_code == 0, result.stderr


def test_github_tag_that_does_not_exist(github, session_key, tmp_path):
    result = install("gh://lab/toy@v9", tmp_path / "results", session_key)
    assert_refused_untouched(result, 3, {}, tmp_path / "results", "no release 'v9'")


# --- mirrors ----------------------------------------------------------------------


def test_first_mirror_with_the_right_bytes_wins_and_each_failure_is_one_line(servers, package, session_key,
                                                                              tmp_path):
    api, cdn = servers
    down = api.route("/down/Dataset042_Toy.zip", Route(status=503))
    short = api.route("/short/Dataset042_Toy.zip", Route(body=package[: len(package) // 2], ranges=False))
    good = api.route("/good/Dataset042_Toy.zip", Route(status=302, location=cdn.url("/Dataset042_Toy.zip")))
    cdn.route("/Dataset042_Toy.zip", Route(body=package))
    results = tmp_path / "results"
    result = install(down, results, session_key, "--mirror", short, "--mirror", good)
    assert result.exit_code == 0, result.stderr
    assert_installed(results)
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 2, result.stderr
    assert down in warnings[0] and "HTTP 503" in warnings[0]
    assert short in warnings[1]


def test_every_mirror_failing_is_one_line_and_nothing_installed(servers, package, session_key, tmp_path):
    api, _ = servers
    down = api.route("/down/x.zip", Route(status=503))
    wrong = api.route("/wrong/x.zip", Route(body=package))
    results = tmp_path / "results"
    result = install(down, results, session_key, "--mirror", wrong, "--sha256", "ef" * 32)
    assert result.exit_code == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and "none of the 2 sources" in lines[1], result.stderr
    assert not results.exists()


def test_mirror_index_lists_urls_and_pins_their_bytes(servers, hub, package, session_key, tmp_path):
    api, cdn = servers
    hub.publish("lab/toy", {"Dataset042_Toy.zip": package})
    down = api.route("/down/x.zip", Route(status=503))
    index = tmp_path / "nnseal-mirrors.json"
    index.write_text(json.dumps({"nnseal_mirrors": 1, "name": "Dataset042_Toy.zip",
                                 "sha256": hashlib.sha256(package).hexdigest(), "urls": [down, "hf://lab/toy"]}))
    result = install(api.url("/missing.zip"), tmp_path / "results", session_key, "--mirror-index", index)
    assert result.exit_code == 0, result.stderr
    assert_installed(tmp_path / "results")
    index.write_text(json.dumps({"nnseal_mirrors": 1, "sha256": "12" * 32, "urls": ["hf://lab/toy"]}))
    result = install("hf://lab/toy", tmp_path / "other", session_key, "--mirror-index", index)
    assert result.exit_code == 1 and "the mirror index publishes " + "12" * 32 in result.stderr, result.stderr


@pytest.mark.parametrize("index, words", [
    (b"{}", "not a mirror index"),
    (b'{"nnseal_mirrors": 1, "urls": []}', '"urls" must list'),
    (b'{"nnseal_mirrors": 1, "urls": ["/etc/passwd"]}', '"urls" must list'),
    (b'{"nnseal_mirrors": 1, "urls": ["https://a/b.zip"], "sha256": "x"}', '"sha256"'),
    (b'{"nnseal_mirrors": 1, "urls": ["https://a/b.zip"], "extra": 1}', "unknown field"),
])
def test_malformed_mirror_index_is_refused(index, words):
    with pytest.raises(InvalidArgument, match=words):
        parse_mirror_index(index)


# --- cache and offline --------------------------------------------------------------


def forbid_sockets(monkeypatch) -> list[str]:
    """Make every outgoing connection (and name lookup) fail, and record the attempts."""
    tried: list[str] = []

    def refuse(*args, **kwargs):
        tried.append(repr(args[:2]))
        raise OSError("network access in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return tried


def test_offline_install_comes_from_the_cache_without_a_connection(hub, package, session_key, tmp_path, monkeypatch,
                                                                   isolated_cache):
    repo = hub.publish("lab/toy", {"Dataset042_Toy.zip": package})
    assert install("hf://lab/toy", tmp_path / "first", session_key).exit_code == 0
    cached = isolated_cache / "sha256" / hashlib.sha256(package).hexdigest()[:2] / hashlib.sha256(package).hexdigest()
    assert cached.read_bytes() == package
    file_requests = len(hub.cdn.requests_to(f"/hub-cdn/{repo.commit}/Dataset042_Toy.zip"))

    # Online again: the Hub is asked which file, the body comes from the cache.
    result = install("hf://lab/toy", tmp_path / "second", session_key, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["download"]["from_cache"] is True
    assert len(hub.cdn.requests_to(f"/hub-cdn/{repo.commit}/Dataset042_Toy.zip")) == file_requests

    tried = forbid_sockets(monkeypatch)
    result = install("hf://lab/toy", tmp_path / "third", session_key, "--offline")
    assert result.exit_code == 0, result.stderr
    assert_installed(tmp_path / "third")
    assert tried == []
    result = install("hf://lab/toy", tmp_path / "fourth", session_key, env={"NNSEAL_OFFLINE": "1"})
    assert result.exit_code == 0 and tried == [], result.stderr


def test_offline_without_a_cache_hit_refuses_without_a_connection(hub, package, session_key, tmp_path, monkeypatch):
    hub.publish("lab/toy", {"Dataset042_Toy.zip": package})
    tried = forbid_sockets(monkeypatch)
    results = tmp_path / "results"
    for source in ("hf://lab/toy", "doi:10.5281/zenodo.3", "gh://a/b@v1", "https://example.org/x.zip"):
        result = install(source, results, session_key, "--offline")
        assert_refused_untouched(result, 3, {}, results, "offline", "cache")
    assert tried == [] and not results.exists()


def test_sha256_pinned_and_cached_needs_no_network_even_online(servers, package, session_key, tmp_path,
                                                               monkeypatch):
    api, _ = servers
    url = api.route("/Dataset042_Toy.zip", Route(body=package))
    pin = hashlib.sha256(package).hexdigest()
    assert install(url, tmp_path / "first", session_key, "--sha256", pin).exit_code == 0
    tried = forbid_sockets(monkeypatch)
    result = install(url, tmp_path / "second", session_key, "--sha256", pin)
    assert result.exit_code == 0 and tried == [], result.stderr


def test_a_damaged_cache_entry_is_dropped_and_downloaded_again(servers, package, session_key, tmp_path,
                                                               isolated_cache):
    api, _ = servers
    url = api.route("/Dataset042_Toy.zip", Route(body=package))
    pin = hashlib.sha256(package).hexdigest()
    assert install(url, tmp_path / "first", session_key, "--sha256", pin).exit_code == 0
    cached = isolated_cache / "sha256" / pin[:2] / pin
    cached.unlink()
    cached.write_bytes(package[:-1] + b"\0")
    result = install(url, tmp_path / "second", session_key, "--sha256", pin)
    assert result.exit_code == 0, result.stderr
    assert cached.read_bytes() == package


def test_no_cache_leaves_the_cache_empty(servers, package, session_key, tmp_path, isolated_cache):
    api, _ = servers
    url = api.route("/Dataset042_Toy.zip", Route(body=package))
    assert install(url, tmp_path / "results", session_key, "--no-cache").exit_code == 0
    assert not isolated_cache.exists()


# --- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, kind, fields", [
    ("hf://lab/toy", "hf", {"owner": "lab", "repo": "toy", "revision": None, "path": None}),
    ("hf://lab/toy@v1.0/models/a.zip", "hf", {"revision": "v1.0", "path": "models/a.zip"}),
    ("doi:10.5281/zenodo.123/a.zip", "zenodo", {"record": "123", "path": "a.zip"}),
    ("zenodo://9", "zenodo", {"record": "9", "path": None}),
    ("gh://o/r@v2/a.zip", "github", {"owner": "o", "repo": "r", "revision": "v2", "path": "a.zip"}),
    ("https://x.org/a.zip", "url", {}),
])
def test_sources_parse(text, kind, fields):
    source = parse_source(text)
    assert source.kind == kind
    for name, value in fields.items():
        assert getattr(source, name) == value


@pytest.mark.parametrize("text", ["hf://lab", "gh://o/r/a.zip", "doi:10.1000/other.1", "hf://lab/toy/../x.zip",
                                  "zenodo://abc", "ftp://x/a.zip"])
def test_malformed_sources_are_usage_errors(text, tmp_path):
    with pytest.raises(InvalidArgument):
        parse_source(text)
    result = run_cli("download", text, "-o", tmp_path / "results")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_library_download_from_a_github_source(github, package, session_key, tmp_path):
    github.publish("lab/toy", "v1", {"Dataset042_Toy.zip": package})
    outcome = download_then_install("gh://lab/toy@v1", tmp_path / "results", trusted_keys=[session_key.public_path],
                                    policy=DownloadPolicy(retries=0), endpoints=Endpoints(github_api=github.base))
    assert outcome.remote is not None and outcome.remote.resolved == "gh://lab/toy@v1/Dataset042_Toy.zip"
    assert_installed(tmp_path / "results")
    with pytest.raises(NetworkError):
        download_then_install("gh://lab/toy@v2", tmp_path / "r2", trusted_keys=[session_key.public_path],
                              policy=DownloadPolicy(retries=0), endpoints=Endpoints(github_api=github.base))


def test_downloading_a_hub_source_imports_no_torch(hub, package, session_key, tmp_path):
    import subprocess
    import sys

    from helpers import process_env

    hub.publish("lab/toy", {"Dataset042_Toy.zip": package})
    code = ("import sys\nfrom nnseal.cli import main\n"
            f"try:\n    main(['download', 'hf://lab/toy', '-o', {str(tmp_path / 'results')!r}, '--quiet', "
            f"'--trusted-key', {str(session_key.public_path)!r}])\nexcept SystemExit as e:\n    assert e.code == 0, e\n"
            "heavy = [m for m in ('torch', 'nnunetv2') if m in sys.modules]\nprint(heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=process_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert_installed(tmp_path / "results")


def test_http_proxy_from_the_environment_is_used(package, session_key, tmp_path, monkeypatch):
    # requests honours HTTP(S)_PROXY and NO_PROXY as pip does: the download goes through the proxy,
    # which is asked for the absolute URL of a host that does not even listen.
    target = "http://127.0.0.1:9/Dataset042_Toy.zip"
    with running_server() as proxy:
        proxy.fallback = lambda path: Route(body=package) if path == target else None
        env = {"HTTP_PROXY": proxy.url(""), "http_proxy": proxy.url(""), "NO_PROXY": "", "no_proxy": ""}
        result = install(target, tmp_path / "results", session_key, env=env)
        assert result.exit_code == 0, result.stderr
        assert [seen.path for seen in proxy.seen if seen.path == target]
    assert_installed(tmp_path / "results")


def test_a_cache_folder_that_is_a_link_is_not_stored_through(servers, package, session_key, tmp_path,
                                                             isolated_cache):
    """Whoever can write the cache could point sha256/<xx> elsewhere: the install still succeeds,
    nothing is linked or copied into the link's target, and a warning says the download was not cached."""
    api, _ = servers
    url = api.route("/Dataset042_Toy.zip", Route(body=package))
    pin = hashlib.sha256(package).hexdigest()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (isolated_cache / "sha256").mkdir(parents=True)
    (isolated_cache / "sha256" / pin[:2]).symlink_to(elsewhere)
    result = install(url, tmp_path / "results", session_key, "--sha256", pin)
    assert result.exit_code == 0, result.stderr
    assert list(elsewhere.iterdir()) == []
    assert "not cached" in result.stderr and "symbolic link" in result.stderr
