"""Download + verified install, end to end, from a real HTTP server on 127.0.0.1.

The package is the toy model exported and signed by the export stage (conftest's
toy_package_session); the server serves its bytes with the same behaviours as
test_download.py. Each test asserts the installed model, or a results folder left
exactly as it was, and no temporary or staging file anywhere the tool wrote.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from helpers import NNSEAL_EXE, assert_one_line_refusal, run_cli, tree_listing
from http_server import Route, running_server

from nnseal import toy_model
from nnseal.errors import Hint, NetworkError, Refused, TamperedPackage, WouldOverwrite
from nnseal.fsutil import TEMP_PREFIX
from nnseal.verify.download import DownloadPolicy, download_and_install_from_url

MODEL = f"{toy_model.DATASET}/{toy_model.model_folder_name('2d')}"
CHECKPOINTS = [f"fold_{f}/checkpoint_{c}.pth" for f in (0, 1) for c in ("best", "final")]
FAST = DownloadPolicy(connect_timeout=2.0, read_timeout=2.0, retries=2, backoff=0.01)
FAST_CLI = ("--retries", "2", "--read-timeout", "2", "--quiet")


@pytest.fixture()
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NNSEAL_BACKOFF_BASE", "0.01")  # the CLI's retries, fast
    with running_server() as srv:
        yield srv


@pytest.fixture()
def package_bytes(toy_package_session) -> bytes:
    return toy_package_session.read_bytes()


@pytest.fixture()
def results(tmp_path) -> Path:
    """A results folder that already holds another model, which must survive every failure."""
    folder = tmp_path / "results"
    other = folder / "Dataset001_Other" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    other.mkdir(parents=True)
    (other / "plans.json").write_text("{}")
    return folder


def assert_installed(results: Path) -> None:
    model = results / MODEL
    for name in ("plans.json", "dataset.json", *CHECKPOINTS):
        assert (model / name).is_file(), name
    assert (results / "Dataset001_Other" / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "plans.json").is_file()
    assert_no_leftovers(results)


def installed(results: Path) -> list[str]:
    """What the install report lists for the toy model: its folder, as an absolute path."""
    return [str(results.resolve() / MODEL)]


def assert_no_leftovers(results: Path) -> None:
    leftovers = [p for p in results.rglob("*") if p.name.startswith(".nnseal-")]  # locks too
    assert leftovers == []


def test_signed_package_downloads_and_installs(server, package_bytes, session_key, results):
    url = server.route("/Dataset042_Toy.zip", Route(body=package_bytes))
    report = download_and_install_from_url(url, results, trusted_keys=[session_key.public_path], policy=FAST)
    assert report.models == installed(results) and report.provenance == "signed"
    assert report.signer_fingerprint == session_key.fingerprint
    assert_installed(results)


def test_flaky_server_still_installs_the_signed_package(server, package_bytes, session_key, results):
    half = len(package_bytes) // 2
    server.route("/latest", Route(location="/Dataset042_Toy.zip", status=302))
    # The early look at the package's tail meets the first 503 (and gives up quietly); the download
    # meets the second, then a dropped body, then resumes.
    server.route("/Dataset042_Toy.zip", Route(status=503, times=2, headers={"Retry-After": "0"}),
                 Route(body=package_bytes, etag='"p1"', drop_after=half, times=1),
                 Route(body=package_bytes, etag='"p1"'))
    report = download_and_install_from_url(server.url("/latest"), results, trusted_keys=[session_key.public_path],
                                           policy=FAST)
    assert report.models == installed(results)
    ranges = [r.headers.get("Range") for r in server.requests_to("/Dataset042_Toy.zip")]
    assert ranges == ["bytes=-262144", None, None, f"bytes={half}-"]
    assert_installed(results)


def test_cli_download_with_sha256_pin_and_keep(server, package_bytes, session_key, results, tmp_path):
    url = server.route("/Dataset042_Toy.zip", Route(body=package_bytes, send_length=False))
    digest = hashlib.sha256(package_bytes).hexdigest()
    keep = tmp_path / "kept" / "model.zip"
    keep.parent.mkdir()
    proc = run_cli("download", url, "-o", results, "--trusted-key", session_key.public_path, "--sha256", digest,
                   "--keep", keep, "--json", *FAST_CLI)
    assert proc.exit_code == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["models"] == installed(results) and report["provenance"] == "signed"
    assert report["package_sha256"] == digest and report["package_bytes"] == len(package_bytes)
    assert keep.read_bytes() == package_bytes
    assert_installed(results)


def test_untrusted_signer_is_refused_and_nothing_is_kept(server, package_bytes, results, tmp_path):
    url = server.route("/Dataset042_Toy.zip", Route(body=package_bytes))
    keep = tmp_path / "model.zip"
    before = tree_listing(results)
    proc = run_cli("download", url, "-o", results, "--keep", keep, *FAST_CLI)
    assert_one_line_refusal(proc)
    assert tree_listing(results) == before
    assert not keep.exists()


def test_sha256_mismatch_is_refused_before_extraction(server, package_bytes, session_key, results, monkeypatch):
    import nnseal.verify.install as install

    def never(*args, **kwargs):
        raise AssertionError("install ran on a download whose sha256 did not match")

    monkeypatch.setattr(install, "install_model_from_zip", never)
    url = server.route("/Dataset042_Toy.zip", Route(body=package_bytes))
    before = tree_listing(results)
    with pytest.raises(TamperedPackage):
        download_and_install_from_url(url, results, trusted_keys=[session_key.public_path],
                                      sha256="0" * 64, policy=FAST)
    assert tree_listing(results) == before


def test_tampered_download_is_refused_and_results_untouched(server, package_bytes, session_key, results):
    damaged = bytearray(package_bytes)
    damaged[len(damaged) // 3] ^= 0x01  # one flipped bit inside a checkpoint entry
    url = server.route("/Dataset042_Toy.zip", Route(body=bytes(damaged)))
    before = tree_listing(results)
    with pytest.raises(Refused):
        download_and_install_from_url(url, results, trusted_keys=[session_key.public_path], policy=FAST)
    assert tree_listing(results) == before


def test_truncated_download_is_not_installed(server, package_bytes, session_key, results):
    url = server.route("/Dataset042_Toy.zip", Route(body=package_bytes[:-5000], declared_length=len(package_bytes),
                                                    ranges=False))
    before = tree_listing(results)
    proc = run_cli("download", url, "-o", results, "--trusted-key", session_key.public_path, *FAST_CLI)
    assert proc.exit_code == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "body ended after" in lines[0] and "resume attempts failed" in lines[0]
    assert tree_listing(results) == before


def test_network_failure_leaves_results_untouched(server, session_key, results):
    server.route("/a", Route(location="/b"))
    server.route("/b", Route(location="/a"))
    before = tree_listing(results)
    with pytest.raises(NetworkError, match="redirect loop"):
        download_and_install_from_url(server.url("/a"), results, trusted_keys=[session_key.public_path], policy=FAST)
    assert tree_listing(results) == before


def test_legacy_nnunet_zip_installs_with_unsigned_and_sha256(server, toy_results_session, results, tmp_path):
    # Laid out as nnUNetv2_export_model_to_zip writes it (ZIP_DEFLATED, rooted at DatasetXXX_Name/).
    legacy = tmp_path / "legacy.zip"
    with zipfile.ZipFile(legacy, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((toy_results_session / MODEL).rglob("*")):
            if path.is_file():
                archive.write(path, str(path.relative_to(toy_results_session)))
    data = legacy.read_bytes()
    url = server.route("/legacy.zip", Route(body=data))
    proc = run_cli("download", url, "-o", results, "--unsigned", "--sha256", hashlib.sha256(data).hexdigest(),
                   "--json", *FAST_CLI)
    assert proc.exit_code == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["provenance"] == "unsigned" and report["models"] == installed(results)
    assert_installed(results)
    assert not list((results / MODEL).rglob("*.pkl"))


def test_file_url_installs(toy_package_session, session_key, results):
    report = download_and_install_from_url(toy_package_session.as_uri(), results,
                                           trusted_keys=[session_key.public_path])
    assert report.models == installed(results)
    assert_installed(results)
    assert toy_package_session.is_file()  # the source is read, never moved


def test_destination_defaults_to_nnunet_results(server, package_bytes, session_key, results):
    url = server.route("/Dataset042_Toy.zip", Route(body=package_bytes))
    proc = run_cli("download", url, "--trusted-key", session_key.public_path, *FAST_CLI,
                   env={"nnUNet_results": str(results)})
    assert proc.exit_code == 0, proc.stderr
    assert_installed(results)


# --- the destination is checked before a byte is downloaded -------------------


def test_a_model_folder_already_installed_is_refused_before_downloading(server, package_bytes, session_key,
                                                                       results):
    """The package's central directory, read from its last bytes (one Range request), names the
    model folders it would install: one already there refuses the download before the body."""
    url = server.route("/latest.zip", Route(body=package_bytes))
    download_and_install_from_url(url, results, trusted_keys=[session_key.public_path], policy=FAST)
    before = tree_listing(results)
    server.seen.clear()
    with pytest.raises(WouldOverwrite) as caught:
        download_and_install_from_url(url, results, trusted_keys=[session_key.public_path], policy=FAST)
    assert caught.value.hint is Hint.FORCE and "nothing was downloaded" in caught.value.reason
    assert toy_model.model_folder_name("2d") in caught.value.reason
    assert [r.headers.get("Range") for r in server.requests_to("/latest.zip")] == ["bytes=-262144"]  # the tail only
    assert tree_listing(results) == before
    proc = run_cli("download", url, "-o", results, "--trusted-key", session_key.public_path, *FAST_CLI)
    assert_one_line_refusal(proc)
    assert "--force" in proc.stderr and tree_listing(results) == before


def test_without_range_support_a_file_name_naming_an_installed_dataset_is_refused_before_downloading(
        server, package_bytes, session_key, results):
    url = server.route("/Dataset042_Toy.zip", Route(body=package_bytes))
    download_and_install_from_url(url, results, trusted_keys=[session_key.public_path], policy=FAST)
    before = tree_listing(results)
    other = server.route("/Dataset042_Renamed_v2.zip", Route(body=package_bytes, ranges=False))
    proc = run_cli("download", other, "-o", results, "--trusted-key", session_key.public_path, *FAST_CLI)
    assert_one_line_refusal(proc)
    assert "dataset 042" in proc.stderr and "--force" in proc.stderr
    # Only the tail was asked for (and answered with the whole file, unread): no download.
    assert [r.headers.get("Range") for r in server.requests_to("/Dataset042_Renamed_v2.zip")] == ["bytes=-262144"]
    assert tree_listing(results) == before


def test_force_skips_the_early_check_and_replaces(server, package_bytes, session_key, results):
    url = server.route("/Dataset042_Toy.zip", Route(body=package_bytes))
    download_and_install_from_url(url, results, trusted_keys=[session_key.public_path], policy=FAST)
    (results / MODEL / "stale.txt").write_text("from before\n")
    report = download_and_install_from_url(url, results, trusted_keys=[session_key.public_path], policy=FAST,
                                           force=True)
    assert report.models == installed(results) and not (results / MODEL / "stale.txt").exists()
    assert_installed(results)


def test_dataset_folder_without_a_model_folder_does_not_stop_the_download(server, package_bytes, session_key,
                                                                          results):
    (results / toy_model.DATASET).mkdir()
    (results / toy_model.DATASET / "notes.txt").write_text("no model here\n")
    url = server.route("/Dataset042_Toy.zip", Route(body=package_bytes))
    report = download_and_install_from_url(url, results, trusted_keys=[session_key.public_path], policy=FAST)
    assert report.models == installed(results)


def test_without_range_support_an_unnamed_file_is_checked_late_by_the_install(server, package_bytes, session_key,
                                                                            results):
    url = server.route("/Dataset042_Toy.zip", Route(body=package_bytes))
    download_and_install_from_url(url, results, trusted_keys=[session_key.public_path], policy=FAST)
    latest = server.route("/latest.zip", Route(body=package_bytes, ranges=False))
    before = tree_listing(results)
    # The same signed content over an unchanged install: the install, late, finds nothing to do.
    again = download_and_install_from_url(latest, results, trusted_keys=[session_key.public_path], policy=FAST)
    assert again.already_installed == installed(results) and tree_listing(results) == before
    (results / MODEL / "notes.txt").write_text("added after install\n")
    before = tree_listing(results)
    with pytest.raises(WouldOverwrite, match="model folder .* exists"):
        download_and_install_from_url(latest, results, trusted_keys=[session_key.public_path], policy=FAST)
    assert len(server.requests_to("/latest.zip")) == 4  # twice: the tail (answered whole, unread), the download
    assert tree_listing(results) == before


# --- hash once -----------------------------------------------------------------


def test_download_and_install_hash_the_zip_once(server, package_bytes, session_key, results, monkeypatch):
    import nnseal.verify.install as install

    hashed = []
    real_sha256_file = install.sha256_file

    def counting_sha256_file(path, *args, **kwargs):
        hashed.append(Path(path))
        return real_sha256_file(path, *args, **kwargs)

    monkeypatch.setattr(install, "sha256_file", counting_sha256_file)
    digest = hashlib.sha256(package_bytes).hexdigest()
    url = server.route("/Dataset042_Toy.zip", Route(body=package_bytes))
    report = download_and_install_from_url(url, results, trusted_keys=[session_key.public_path], sha256=digest,
                                           policy=FAST)
    assert report.models == installed(results)
    # The pin was checked against the digest taken as the bytes streamed: the zip was not read for it again.
    assert [p for p in hashed if p.name.startswith(TEMP_PREFIX)] == []
    receipt = json.loads((results / MODEL / "nnseal-receipt.json").read_text())
    assert receipt["package_sha256"] == digest
    # The counter does see a zip the install hashes itself.
    copy = results.parent / "package.zip"
    copy.write_bytes(package_bytes)
    install.install_model_from_zip(copy, results.parent / "again", trusted_keys=[session_key.public_path],
                                   sha256=digest)
    assert hashed.count(copy) == 1


# --- a failed download leaves no results folder it created -----------------------


@pytest.fixture()
def parent(tmp_path) -> Path:
    """Where a results folder two levels down does not exist yet."""
    folder = tmp_path / "parent"
    folder.mkdir()
    (folder / "unrelated.txt").write_text("stays\n")
    return folder


def test_network_error_leaves_no_results_folder_it_created(server, session_key, parent):
    url = server.route("/Dataset042_Toy.zip", Route(status=404))
    before = tree_listing(parent)
    proc = run_cli("download", url, "-o", parent / "new" / "results", "--trusted-key", session_key.public_path,
                   *FAST_CLI)
    assert proc.exit_code == 3, proc.stderr
    assert tree_listing(parent) == before and not (parent / "new").exists()


def test_refused_package_leaves_no_results_folder_it_created(server, package_bytes, parent):
    url = server.route("/Dataset042_Toy.zip", Route(body=package_bytes))
    before = tree_listing(parent)
    proc = run_cli("download", url, "-o", parent / "new" / "results", *FAST_CLI)  # no trusted key
    assert_one_line_refusal(proc)
    assert len(server.requests_to("/Dataset042_Toy.zip")) == 1  # downloaded, then refused by the install
    assert tree_listing(parent) == before and not (parent / "new").exists()


def test_library_failure_leaves_no_results_folder_it_created(server, package_bytes, parent):
    url = server.route("/Dataset042_Toy.zip", Route(body=package_bytes))
    before = tree_listing(parent)
    with pytest.raises(TamperedPackage):
        download_and_install_from_url(url, parent / "new" / "results", sha256="0" * 64, policy=FAST)
    assert tree_listing(parent) == before and not (parent / "new").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_interrupted_download_leaves_no_results_folder_it_created(server, package_bytes, session_key, parent, sig):
    url = server.route("/Dataset042_Toy.zip", Route(body=package_bytes, chunk=1000, delay=0.2))
    results = parent / "new" / "results"
    before = tree_listing(parent)
    proc = subprocess.Popen([str(NNSEAL_EXE), "download", url, "-o", str(results), "--trusted-key",
                             str(session_key.public_path), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (results.is_dir() and any(p.name.endswith(".part") and p.stat().st_size > 0
                                             for p in results.iterdir())):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.05)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, stderr
    assert tree_listing(parent) == before and not (parent / "new").exists()


def test_success_keeps_the_results_folder_it_created(server, package_bytes, session_key, parent):
    url = server.route("/Dataset042_Toy.zip", Route(body=package_bytes))
    results = parent / "new" / "results"
    report = download_and_install_from_url(url, results, trusted_keys=[session_key.public_path], policy=FAST)
    assert report.models == installed(results)
    assert_no_leftovers(results)


# --- --allow-downgrade reaches the install ------------------------------------------


@pytest.fixture(scope="module")
def releases(toy_results_session, session_key, tmp_path_factory) -> dict[str, bytes]:
    from nnseal.package.export import export_model_to_zip

    folder = tmp_path_factory.mktemp("releases")
    out = {}
    for release in ("1.0", "2.0"):
        export_model_to_zip(toy_results_session / MODEL, folder / f"{release}.zip", key=session_key.private_path,
                            metadata={"release": release})
        out[release] = (folder / f"{release}.zip").read_bytes()
    return out


def test_cli_download_passes_allow_downgrade_to_the_install(server, releases, session_key, results):
    new = server.route("/Dataset042_Toy-2.0.zip", Route(body=releases["2.0"]))
    old = server.route("/Dataset042_Toy-1.0.zip", Route(body=releases["1.0"]))
    key = ("--trusted-key", session_key.public_path)
    assert run_cli("download", new, "-o", results, *key, *FAST_CLI).exit_code == 0
    before = tree_listing(results)
    refused = run_cli("download", old, "-o", results, *key, "--force", *FAST_CLI)
    assert_one_line_refusal(refused, "release '1.0'", "--allow-downgrade")
    assert tree_listing(results) == before
    allowed = run_cli("download", old, "-o", results, *key, "--force", "--allow-downgrade", *FAST_CLI)
    assert allowed.exit_code == 0, allowed.stderr
    assert json.loads((results / MODEL / "nnseal-receipt.json").read_text())["release"] == "1.0"
    assert_installed(results)


def test_library_download_passes_allow_downgrade_to_the_install(server, releases, session_key, results):
    new = server.route("/Dataset042_Toy-2.0.zip", Route(body=releases["2.0"]))
    old = server.route("/Dataset042_Toy-1.0.zip", Route(body=releases["1.0"]))
    keys = [session_key.public_path]
    download_and_install_from_url(new, results, trusted_keys=keys, policy=FAST)
    with pytest.raises(Refused, match="older than the installed"):
        download_and_install_from_url(old, results, trusted_keys=keys, policy=FAST, force=True)
    report = download_and_install_from_url(old, results, trusted_keys=keys, policy=FAST, force=True,
                                           allow_downgrade=True)
    assert report.models == installed(results)
    assert json.loads((results / MODEL / "nnseal-receipt.json").read_text())["release"] == "1.0"


def test_a_file_url_is_looked_at_before_it_is_copied(toy_package_session, session_key, results):
    url = toy_package_session.as_uri()
    download_and_install_from_url(url, results, trusted_keys=[session_key.public_path], policy=FAST)
    before = tree_listing(results)
    with pytest.raises(WouldOverwrite, match="nothing was downloaded"):
        download_and_install_from_url(url, results, trusted_keys=[session_key.public_path], policy=FAST)
    assert tree_listing(results) == before


def test_a_central_directory_outside_the_tail_is_not_guessed(toy_package_session, monkeypatch):
    from nnseal.transport import tail
    from nnseal.verify.download import model_folders_in_tail

    url = toy_package_session.as_uri()
    assert model_folders_in_tail(url) == [f"{toy_model.DATASET}/{toy_model.model_folder_name('2d')}"]
    monkeypatch.setattr(tail, "TAIL_BYTES", 64)  # the end record only: the directory lies before it
    monkeypatch.setattr(tail.fetch_tail, "__defaults__", (64,))
    assert model_folders_in_tail(url) is None
