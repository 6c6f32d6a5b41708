"""Folder packages: `nnseal export --folder`, verified by model_signing as it is and by nnseal with the
zip's rules, installed from a local folder and from a Hugging Face Hub repository (the real
huggingface_hub client against tests/host_apis.py's local Hub), with the zip's transaction."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import assert_one_line_refusal, run_cli, tree_listing
from host_apis import Hub
from http_server import running_server

from nnseal import toy_model
from nnseal.errors import HostileArchive, TamperedPackage
from nnseal.format.oms import SIGNATURE_NAME
from nnseal.verify.receipt import RECEIPT_NAME

MODEL = f"{toy_model.DATASET}/{toy_model.model_folder_name('2d')}"
CHECKPOINT = f"{MODEL}/fold_0/checkpoint_final.safetensors"
FAST = ("--retries", "1", "--read-timeout", "5", "--connect-timeout", "5")
CREATED = "1700000000"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, toy_results_session, session_key) -> tuple[Path, Path]:
    """The toy model exported twice by the CLI, as a zip and as a folder, at the same creation time."""
    out = tmp_path_factory.mktemp("exported")
    model = toy_results_session / MODEL
    for flag, name in (("-o", "Dataset042_Toy.zip"), ("--folder", "Dataset042_Toy")):
        result = run_cli("export", "-i", model, flag, out / name, "--key", session_key.private_path,
                         "--created", CREATED, "--quiet")
        assert result.exit_code == 0, result.stderr
    return out / "Dataset042_Toy.zip", out / "Dataset042_Toy"


def folder_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def installed(results: Path) -> dict[str, tuple[int, str]]:
    """The installed tree without the receipt's package field (which names where it came from)."""
    listing = tree_listing(results)
    receipt = results / MODEL / RECEIPT_NAME
    files = json.loads(receipt.read_text())["files"]
    listing[f"{MODEL}/{RECEIPT_NAME}"] = (0, json.dumps(files, sort_keys=True))
    return listing


def copy_folder(source: Path, target: Path) -> Path:
    for name, data in folder_files(source).items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)
    return target


# --- export --folder ------------------------------------------------------------------


def test_export_folder_holds_the_zip_entries_byte_for_byte(exported):
    package, folder = exported
    with zipfile.ZipFile(package) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    assert folder_files(folder) == entries
    assert SIGNATURE_NAME in entries and "nnseal-card.json" in entries
    assert list(folder.parent.glob(".nnseal-*")) == []


@pytest.mark.interop
def test_export_folder_verifies_with_model_signing_as_it_is(exported, session_key):
    _, folder = exported
    proc = subprocess.run([sys.executable, "-m", "model_signing", "verify", "key", str(folder), "--signature",
                           str(folder / SIGNATURE_NAME), "--public_key", str(session_key.public_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_export_folder_refuses_a_folder_that_is_not_empty_unless_forced(toy_model_folder, session_key, tmp_path):
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "keep.txt").write_bytes(b"mine")
    args = ("export", "-i", toy_model_folder, "--folder", out, "--key", session_key.private_path, "--quiet")
    assert_one_line_refusal(run_cli(*args), "exists and is not an empty folder")
    assert folder_files(out) == {"keep.txt": b"mine"}
    result = run_cli(*args, "--force")
    assert result.exit_code == 0, result.stderr
    assert "keep.txt" not in folder_files(out) and (out / SIGNATURE_NAME).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # no temporary or old folder left


def test_export_folder_that_fails_leaves_nothing(toy_model_folder, session_key, tmp_path, monkeypatch):
    from nnseal.package import signing

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(signing, "sign_manifest", fail)
    out = tmp_path / "pkg"
    result = run_cli("export", "-i", toy_model_folder, "--folder", out, "--key", session_key.private_path)
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_export_takes_one_of_zip_and_folder(toy_model_folder, session_key, tmp_path):
    result = run_cli("export", "-i", toy_model_folder, "-o", tmp_path / "a.zip", "--folder", tmp_path / "b",
                     "--key", session_key.private_path)
    assert result.exit_code == 2 and "-o PACKAGE.zip or --folder FOLDER" in result.stderr
    assert list(tmp_path.iterdir()) == []


# --- verify and install a local folder --------------------------------------------------


def test_verify_folder_package_with_the_zip_rules(exported, session_key, tmp_path):
    _, original = exported
    folder = copy_folder(original, tmp_path / "pkg")
    result = run_cli("verify", folder, "--trusted-key", session_key.public_path)
    assert result.exit_code == 0, result.stderr
    assert "8 entries match" in result.stdout
    (folder / "README.md").write_bytes(b"# not signed\n")
    result = run_cli("verify", folder, "--trusted-key", session_key.public_path)
    assert result.exit_code == 1
    assert "extra entry not in the signed manifest: README.md" in result.stderr
    (folder / "README.md").unlink()
    data = bytearray((folder / CHECKPOINT).read_bytes())
    data[-1] ^= 1
    (folder / CHECKPOINT).write_bytes(bytes(data))
    result = run_cli("verify", folder, "--trusted-key", session_key.public_path)
    assert result.exit_code == 1 and f"modified entry: {CHECKPOINT}" in result.stderr


def test_install_folder_installs_what_the_zip_installs(exported, session_key, tmp_path):
    package, folder = exported
    for source, results in ((package, tmp_path / "from_zip"), (folder, tmp_path / "from_folder")):
        result = run_cli("install", source, "-o", results, "--trusted-key", session_key.public_path, "--quiet")
        assert result.exit_code == 0, result.stderr
    assert installed(tmp_path / "from_folder") == installed(tmp_path / "from_zip")
    assert (tmp_path / "from_folder" / MODEL / "fold_0" / "checkpoint_final.pth").is_file()


def test_install_folder_with_an_extra_file_is_refused_untouched(exported, session_key, tmp_path):
    _, original = exported
    folder = copy_folder(original, tmp_path / "pkg")
    (folder / toy_model.DATASET / "notes.txt").write_bytes(b"unsigned")
    results = tmp_path / "results"
    result = run_cli("install", folder, "-o", results, "--trusted-key", session_key.public_path)
    assert_one_line_refusal(result, "extra entry not in the signed manifest", "notes.txt")
    assert not results.exists()


def test_install_folder_with_a_symlink_is_refused(exported, session_key, tmp_path):
    _, original = exported
    folder = copy_folder(original, tmp_path / "pkg")
    target = folder / MODEL / "plans.json"
    target.unlink()
    target.symlink_to(original / MODEL / "plans.json")
    result = run_cli("install", folder, "-o", tmp_path / "results", "--trusted-key", session_key.public_path)
    assert_one_line_refusal(result, "symbolic link")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("swap", ["checkpoint_bytes", "json_bytes", "symlink"])
def test_folder_changed_between_verdict_and_install_installs_nothing(exported, session_key, tmp_path, monkeypatch,
                                                                     swap):
    """A file replaced after the verdict read it: install hashes what it installs, and refuses."""
    from nnseal.verify import verdict as verdict_module

    _, original = exported
    folder = copy_folder(original, tmp_path / "pkg")
    real_judge = verdict_module.judge_package
    swapped = []

    def judge_then_swap(archive, *args, **kwargs):
        result = real_judge(archive, *args, **kwargs)
        assert result.ok, result.problems  # the folder as it was verified is sound
        name = CHECKPOINT if swap != "json_bytes" else f"{MODEL}/plans.json"
        path = folder / name
        data = bytearray(path.read_bytes())
        if swap == "symlink":
            decoy = tmp_path / "decoy"
            decoy.write_bytes(bytes(data))
            path.unlink()
            path.symlink_to(decoy)
        else:
            data[-2] = ord(" ") if data[-2] != ord(" ") else ord("\t")  # same size, different bytes
            path.write_bytes(bytes(data))
        swapped.append(name)
        return result

    monkeypatch.setattr(verdict_module, "judge_package", judge_then_swap)
    results = tmp_path / "results"
    result = run_cli("install", folder, "-o", results, "--trusted-key", session_key.public_path)
    assert swapped
    assert_one_line_refusal(result, swapped[0])
    assert not results.exists()


def test_library_folder_install_refuses_a_swap_with_a_typed_error(exported, session_key, tmp_path, monkeypatch):
    from nnseal.verify import verdict as verdict_module
    from nnseal.verify.install import install_model_from_folder

    _, original = exported
    folder = copy_folder(original, tmp_path / "pkg")
    real_judge = verdict_module.judge_package

    def judge_then_grow(archive, *args, **kwargs):
        result = real_judge(archive, *args, **kwargs)
        with open(folder / CHECKPOINT, "ab") as handle:
            handle.write(b"\0")
        return result

    monkeypatch.setattr(verdict_module, "judge_package", judge_then_grow)
    with pytest.raises((HostileArchive, TamperedPackage)):
        install_model_from_folder(folder, tmp_path / "results", trusted_keys=[session_key.public_path])
    assert not (tmp_path / "results").exists()


# --- the Hugging Face Hub -----------------------------------------------------------------


@pytest.fixture()
def hub(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NNSEAL_BACKOFF_BASE", "0.01")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_TOKEN", "")
    with running_server() as api, running_server() as cdn:
        host = Hub(api, cdn)
        monkeypatch.setenv("HF_ENDPOINT", host.endpoint)
        yield host


def hub_files(folder: Path, prefix: str = "") -> dict[str, bytes]:
    """The folder as `huggingface-cli upload` leaves it: its files, plus what the Hub adds."""
    files = {prefix + name: data for name, data in folder_files(folder).items()}
    files.update({".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
                  "README.md": b"---\nlicense: cc-by-4.0\n---\n# toy\n"})
    return files


def hf_install(source: str, results: Path, key, *extra):
    return run_cli("download", source, "-o", results, "--trusted-key", key.public_path, *FAST, *extra)


def test_hub_folder_package_installs_what_the_zip_installs(hub, exported, session_key, tmp_path):
    package, folder = exported
    repo = hub.publish("lab/toy", hub_files(folder))
    result = run_cli("install", "hf://lab/toy", "-o", tmp_path / "from_hub", "--trusted-key", session_key.public_path,
                     "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["download"]["source"]["resolved"] == f"hf://lab/toy@{repo.commit}"
    assert report["package"] == "hf://lab/toy"
    assert run_cli("install", package, "-o", tmp_path / "from_zip", "--trusted-key", session_key.public_path,
                   "--quiet").exit_code == 0
    assert installed(tmp_path / "from_hub") == installed(tmp_path / "from_zip")
    # Every signed file fetched at the listed commit; nothing the signature does not list.
    for name in folder_files(folder):
        assert hub.api.requests_to(f"/lab/toy/resolve/{repo.commit}/{name}"), name
    assert not hub.api.requests_to(f"/lab/toy/resolve/{repo.commit}/README.md")
    assert not hub.api.requests_to(f"/lab/toy/resolve/{repo.commit}/.gitattributes")
    assert [p.name for p in (tmp_path / "from_hub").iterdir() if p.name.startswith(".nnseal")] == []


def test_hub_folder_package_under_a_path_and_pinned_to_its_commit(hub, exported, session_key, tmp_path):
    _, folder = exported
    repo = hub.publish("lab/models", {**hub_files(folder, "toy/"), "other/weights.bin": b"x" * 10})
    result = hf_install(f"hf://lab/models@{repo.commit}/toy", tmp_path / "results", session_key, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["download"]["source"]["resolved"] == f"hf://lab/models@{repo.commit}/toy"
    assert any(seen.path.startswith(f"/api/models/lab/models/revision/{repo.commit}") for seen in hub.api.seen)
    assert not hub.api.requests_to(f"/lab/models/resolve/{repo.commit}/other/weights.bin")
    stale = "f" * 40  # a commit the repository does not have: never another revision instead
    result = hf_install(f"hf://lab/models@{stale}/toy", tmp_path / "other", session_key)
    assert result.exit_code == 3 and f"no revision '{stale}'" in result.stderr
    assert not (tmp_path / "other").exists()


def test_hub_folder_file_that_differs_from_the_signature_is_refused(hub, exported, session_key, tmp_path):
    """The Hub's own LFS digest matches the altered bytes (whoever controls the host controls it):
    the signed digest refuses them."""
    _, folder = exported
    files = hub_files(folder)
    data = bytearray(files[CHECKPOINT])
    data[-1] ^= 1
    files[CHECKPOINT] = bytes(data)
    hub.publish("lab/toy", files)
    results = tmp_path / "results"
    result = hf_install("hf://lab/toy", results, session_key)
    assert_one_line_refusal(result, CHECKPOINT, "the signature says")
    assert not results.exists()


def test_hub_folder_file_that_differs_from_the_hub_digest_is_refused(hub, exported, session_key, tmp_path):
    _, folder = exported
    hub.publish("lab/toy", hub_files(folder), lfs_sha256={CHECKPOINT: "ab" * 32})
    results = tmp_path / "results"
    results.mkdir()
    (results / "keep").write_bytes(b"mine")
    before = tree_listing(results)
    result = hf_install("hf://lab/toy", results, session_key)
    assert_one_line_refusal(result, "the Hugging Face Hub publishes " + "ab" * 32)
    assert tree_listing(results) == before


def test_hub_folder_missing_a_signed_file_is_refused(hub, exported, session_key, tmp_path):
    _, folder = exported
    files = hub_files(folder)
    del files[CHECKPOINT]
    hub.publish("lab/toy", files)
    result = hf_install("hf://lab/toy", tmp_path / "results", session_key)
    assert_one_line_refusal(result, f"missing entry: {CHECKPOINT}")
    assert not (tmp_path / "results").exists()


def test_hub_folder_of_an_unknown_signer_downloads_only_its_signature(hub, exported, tmp_path):
    from nnseal.format.keys import generate_key_pair

    _, folder = exported
    repo = hub.publish("lab/toy", hub_files(folder))
    stranger = generate_key_pair(tmp_path / "stranger")
    result = hf_install("hf://lab/toy", tmp_path / "results", stranger)
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    assert hub.api.requests_to(f"/lab/toy/resolve/{repo.commit}/{SIGNATURE_NAME}")
    assert not hub.api.requests_to(f"/lab/toy/resolve/{repo.commit}/{CHECKPOINT}")
    assert not (tmp_path / "results").exists()


def test_hub_repository_with_a_zip_and_a_folder_package_must_name_one(hub, exported, session_key, tmp_path):
    package, folder = exported
    hub.publish("lab/toy", {**hub_files(folder, "pkg/"), "Dataset042_Toy.zip": package.read_bytes()})
    result = hf_install("hf://lab/toy", tmp_path / "results", session_key)
    assert result.exit_code == 3 and "several packages (Dataset042_Toy.zip, pkg/)" in result.stderr
    result = hf_install("hf://lab/toy/pkg", tmp_path / "results", session_key)
    assert result.exit_code == 0, result.stderr


def test_hub_folder_package_has_no_zip_pin(hub, exported, session_key, tmp_path):
    _, folder = exported
    hub.publish("lab/toy", hub_files(folder))
    result = hf_install("hf://lab/toy", tmp_path / "results", session_key, "--sha256", "0" * 64)
    assert result.exit_code == 2 and "folder package" in result.stderr, result.stderr
    assert not (tmp_path / "results").exists()


def test_hub_folder_package_already_installed_is_refused_before_its_weights_are_fetched(hub, exported, session_key,
                                                                                        tmp_path):
    _, folder = exported
    repo = hub.publish("lab/toy", hub_files(folder))
    results = tmp_path / "results"
    assert hf_install("hf://lab/toy", results, session_key).exit_code == 0
    fetched = len(hub.api.requests_to(f"/lab/toy/resolve/{repo.commit}/{CHECKPOINT}"))
    before = tree_listing(results)
    result = hf_install("hf://lab/toy", results, session_key)
    assert_one_line_refusal(result, f"holds model folder {MODEL}")
    assert len(hub.api.requests_to(f"/lab/toy/resolve/{repo.commit}/{CHECKPOINT}")) == fetched
    assert tree_listing(results) == before
    result = hf_install("hf://lab/toy", results, session_key, "--force")
    assert result.exit_code == 0, result.stderr
