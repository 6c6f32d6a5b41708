"""The --json contract (docs/JSON.md): every command, on success and on failure, prints exactly one JSON
document on stdout, with the envelope, valid against docs/schemas/<command>.schema.json, whose
exit_code is the process's; and one package has one size in every command."""

from __future__ import annotations

import json
import shutil
import signal
import zipfile
from pathlib import Path

import jsonschema
import pytest
from helpers import REPO, run_cli
from referencing import Registry, Resource

from nnseal import __version__, toy_model
from nnseal.units import format_bytes

SCHEMAS = REPO / "docs" / "schemas"
MODEL = f"{toy_model.DATASET}/{toy_model.model_folder_name('2d')}"
# Every command and subcommand that prints JSON, as typed after `nnseal`.
COMMANDS = ("sanitize", "keygen", "sign", "export", "verify", "inspect", "install", "download", "scan", "doctor",
            "demo", "list", "uninstall", "trust add", "trust add-ca", "trust add-sigstore", "trust list",
            "trust remove")


def _registry() -> Registry:
    resources = [(path.name, Resource.from_contents(json.loads(path.read_text())))
                 for path in SCHEMAS.glob("*.schema.json")]
    scan_report = json.loads((REPO / "docs" / "scan-report.schema.json").read_text())
    resources.append(("../scan-report.schema.json", Resource.from_contents(scan_report)))
    return Registry().with_resources(resources)


REGISTRY = _registry()


def schema_path(command: str) -> Path:
    return SCHEMAS / f"{command.replace(' ', '-')}.schema.json"


def one_document(result, command: str) -> dict:
    """The run's stdout is exactly one JSON object with the envelope, valid against its command's schema."""
    document = json.loads(result.stdout)  # "Extra data" if stdout held more than one document
    assert isinstance(document, dict), result.stdout
    assert document["json_version"] == 1 and document["nnseal_version"] == __version__
    assert document["command"] == command
    assert document["exit_code"] == result.exit_code, (document, result.stderr)
    assert document["ok"] is (result.exit_code == 0)
    if result.exit_code:
        error = document["error"]
        assert error["kind"] and error["reason"] and error["message"]
    else:
        assert "error" not in document
    schema = schema_path(command if command in COMMANDS else "envelope")  # an unknown command: the envelope alone
    validator = jsonschema.Draft202012Validator(json.loads(schema.read_text()), registry=REGISTRY)
    errors = sorted(validator.iter_errors(document), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]
    return document


def failed(result, command: str, code: int, kind: str) -> dict:
    document = one_document(result, command)
    assert result.exit_code == code and document["error"]["kind"] == kind, (result.exit_code, document)
    return document


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory, toy_results_session, session_key) -> dict:
    """One export through the CLI, shared by the module: the package every command is run on."""
    root = tmp_path_factory.mktemp("contract")
    package = root / "toy.zip"
    result = run_cli("export", "-i", toy_results_session / MODEL, "-o", package, "--key", session_key.private_path,
                     "--json")
    return {"root": root, "package": package, "export": one_document(result, "export")}


def trusted(key) -> tuple:
    return ("--trusted-key", key.public_path)


# --- the schemas themselves -------------------------------------------------------------------------


def test_every_command_has_a_valid_schema():
    from nnseal.cli import COMMANDS as REGISTERED

    tops = {c.split()[0] for c in COMMANDS}
    assert tops == set(REGISTERED), "a new command needs --json and docs/schemas/<command>.schema.json"
    for command in (*COMMANDS, "envelope"):
        schema = json.loads(schema_path(command).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)


def test_every_trust_subcommand_is_covered():
    from nnseal.commands.trust import command as trust

    assert {f"trust {name}" for name in trust.commands} == {c for c in COMMANDS if c.startswith("trust ")}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_usage_error_under_json_is_one_document(command):
    result = run_cli(*command.split(), "--json", "--no-such-option")
    failed(result, command, 2, "usage_error")
    assert "--no-such-option" in result.stderr  # the person still gets click's lines


def test_an_unknown_command_under_json_is_one_document():
    failed(run_cli("no-such-command", "--json"), "no-such-command", 2, "usage_error")


# --- each command: success and failure ---------------------------------------------------------------


def test_export(work, tmp_path, session_key, toy_results_session):
    document = work["export"]
    assert document["package_bytes"] == work["package"].stat().st_size
    assert [e["name"] for e in document["entries"]] == zipfile.ZipFile(work["package"]).namelist()
    for model in document["models"]:
        for checkpoint in model["checkpoints"]:
            assert isinstance(checkpoint["kept"]["fold"], str) and checkpoint["fold"] == checkpoint["kept"]["fold"]
            assert "optimizer_state" in checkpoint["dropped_keys"] and "removed" not in checkpoint
    again = run_cli("export", "-i", toy_results_session / MODEL, "-o", work["package"], "--key",
                    session_key.private_path, "--json")
    failed(again, "export", 1, "would_overwrite")
    failed(run_cli("export", "-o", tmp_path / "x.zip", "--json", env={"NNSEAL_SIGNING_KEY": None}),
           "export", 2, "usage_error")


def test_sanitize(tmp_path, toy_results_session):
    checkpoint = toy_results_session / MODEL / "fold_1" / "checkpoint_final.pth"
    out = tmp_path / "w.safetensors"
    document = one_document(run_cli("sanitize", checkpoint, "-o", out, "--json"), "sanitize")
    assert document["kept_metadata"]["fold"] == "1" and document["output_bytes"] == out.stat().st_size
    failed(run_cli("sanitize", checkpoint, "-o", out, "--json"), "sanitize", 1, "would_overwrite")
    failed(run_cli("sanitize", tmp_path / "none.pth", "-o", tmp_path / "y", "--json"), "sanitize", 3,
           "environment_problem")


def test_keygen(tmp_path):
    document = one_document(run_cli("keygen", "-o", tmp_path / "k", "--json"), "keygen")
    assert Path(document["public_key"]).is_file() and document["encrypted"] is False
    failed(run_cli("keygen", "-o", tmp_path / "k", "--json"), "keygen", 1, "would_overwrite")
    failed(run_cli("keygen", "-o", tmp_path / "j", "--passphrase", "--passphrase-env", "X", "--json"),
           "keygen", 2, "usage_error")


def test_inspect(work, tmp_path, session_key):
    document = one_document(run_cli("inspect", work["package"], *trusted(session_key), "--json"), "inspect")
    assert document["signer_trusted"] and document["models"][0]["folder"] == MODEL
    assert all(isinstance(f, str) for m in document["models"] for f in m["folds"])
    failed(run_cli("inspect", tmp_path / "none.zip", "--json"), "inspect", 3, "environment_problem")
    not_a_zip = tmp_path / "bad.zip"
    not_a_zip.write_bytes(b"PK\x03\x04 this is no zip")
    failed(run_cli("inspect", not_a_zip, "--json"), "inspect", 1, "hostile_archive")


def test_verify_package(work, tmp_path, session_key):
    document = one_document(run_cli("verify", work["package"], *trusted(session_key), "--json"), "verify")
    assert document["mode"] == "package" and document["signature"] == "valid"
    assert all(e["sha256"] for e in document["entries"] if e["name"] != "model.sig")
    untrusted = failed(run_cli("verify", work["package"], "--json"), "verify", 1, "untrusted_signer")
    assert untrusted["signature"] == "untrusted" and untrusted["problems"]  # the report is still there
    failed(run_cli("verify", tmp_path / "none.zip", "--json"), "verify", 3, "environment_problem")


def test_install_and_verify_the_installed_folder(work, tmp_path, session_key):
    results = tmp_path / "results"
    document = one_document(run_cli("install", work["package"], "--results", results, *trusted(session_key),
                                    "--json"), "install")
    assert document["models"] == [str(results.resolve() / MODEL)]
    assert document["package_bytes"] == work["package"].stat().st_size and "dropped" not in document
    again = one_document(run_cli("install", work["package"], "--results", results, *trusted(session_key), "--json"),
                         "install")
    assert again["already_installed"] == [str(results.resolve() / MODEL)]
    installed = results / MODEL
    document = one_document(run_cli("verify", installed, "--json"), "verify")
    assert document["mode"] == "installed_folder" and document["problems"] == []
    listed = one_document(run_cli("list", "--results", results, "--json"), "list")
    assert [m["status"] for m in listed["models"]] == ["ok"]
    assert one_document(run_cli("verify", "--all", "--results", results, "--json"), "verify")["mode"] == "all"
    (installed / "plans.json").write_text("{}")
    document = failed(run_cli("verify", installed, "--json"), "verify", 1, "modified_file")
    assert document["modified"] == ["plans.json"]
    failed(run_cli("verify", "--all", "--results", results, "--json"), "verify", 1, "drifted")
    failed(run_cli("install", work["package"], "--results", results, *trusted(session_key), "--json"),
           "install", 1, "would_overwrite")
    failed(run_cli("uninstall", installed, "--json"), "uninstall", 1, "refused")
    removed = one_document(run_cli("uninstall", installed, "--force", "--json"), "uninstall")
    assert removed["removed"] == [str(installed.resolve())] and not installed.exists()
    failed(run_cli("uninstall", installed, "--json"), "uninstall", 3, "environment_problem")


def test_sign_and_verify_a_signed_folder(tmp_path, session_key, toy_results_session):
    folder = tmp_path / "model"
    shutil.copytree(toy_results_session / MODEL, folder)
    document = one_document(run_cli("sign", folder, "--key", session_key.private_path, "--json"), "sign")
    assert document["files"] > 0 and document["files_bytes"] > 0 and document["signer_fingerprint"]
    failed(run_cli("sign", folder, "--key", session_key.private_path, "--json"), "sign", 1, "would_overwrite")
    document = one_document(run_cli("verify", folder, *trusted(session_key), "--json"), "verify")
    assert document["mode"] == "signed_folder" and document["files_bytes"] > 0
    (folder / "dataset.json").write_text("{}")
    failed(run_cli("verify", folder, *trusted(session_key), "--json"), "verify", 1, "modified_file")


def test_download(work, tmp_path, session_key):
    url = work["package"].resolve().as_uri()
    document = one_document(run_cli("download", url, "--results", tmp_path / "r", *trusted(session_key),
                                    "--no-cache", "--json"), "download")
    assert document["package_bytes"] == work["package"].stat().st_size
    assert document["download"]["url"] == url
    failed(run_cli("download", url, "--results", tmp_path / "s", "--no-cache", "--json"), "download", 1,
           "signature_error")
    failed(run_cli("download", (tmp_path / "none.zip").as_uri(), "--results", tmp_path / "t", "--no-cache",
                   "--json"), "download", 3, "environment_problem")


def test_install_of_a_url_prints_the_download_document(work, tmp_path, session_key):
    document = one_document(run_cli("install", work["package"].resolve().as_uri(), "--results", tmp_path / "r",
                                    *trusted(session_key), "--no-cache", "--json"), "install")
    assert document["download"]["from_cache"] is False


def test_trust_commands(tmp_path, session_key):
    from pki import build_pki

    env = {"NNSEAL_TRUSTED_KEYS": str(tmp_path / "trust")}
    document = one_document(run_cli("trust", "add", session_key.public_path, "--name", "lab", "--json", env=env),
                            "trust add")
    assert document["key"]["name"] == "lab"
    not_a_key = tmp_path / "x.pub"
    not_a_key.write_text("no key")
    failed(run_cli("trust", "add", not_a_key, "--json", env=env), "trust add", 1, "bad_key")
    files = build_pki().write(tmp_path / "pki")
    document = one_document(run_cli("trust", "add-ca", files["root"], "--name", "root", "--identity",
                                    "email:a@example.org", "--json", env=env), "trust add-ca")
    assert document["ca"]["identities"] == ["email:a@example.org"]
    failed(run_cli("trust", "add-ca", not_a_key, "--name", "bad", "--identity", "email:a@b", "--json", env=env),
           "trust add-ca", 1, "bad_key")
    document = one_document(run_cli("trust", "add-sigstore", "--name", "ci", "--identity", "a@example.org",
                                    "--issuer", "https://accounts.google.com", "--json", env=env),
                            "trust add-sigstore")
    assert document["sigstore"]["issuer"] == "https://accounts.google.com"
    failed(run_cli("trust", "add-sigstore", "--name", "ci", "--identity", "a@example.org", "--issuer",
                   "https://accounts.google.com", "--json", env=env), "trust add-sigstore", 1, "would_overwrite")
    document = one_document(run_cli("trust", "list", "--json", env=env), "trust list")
    assert [k["name"] for k in document["keys"]] == ["lab"] and len(document["cas"]) == len(document["sigstore"]) == 1
    (tmp_path / "trust" / "stray.pub").write_text("not written by trust add")
    failed(run_cli("trust", "list", "--json", env=env), "trust list", 1, "bad_key")
    (tmp_path / "trust" / "stray.pub").unlink()
    document = one_document(run_cli("trust", "remove", "lab", "--json", env=env), "trust remove")
    assert document["removed"]["fingerprint"] and document["removed"]["name"] == "lab"
    document = one_document(run_cli("trust", "remove", "ci", "--json", env=env), "trust remove")
    assert document["removed"]["fingerprint"] is None
    failed(run_cli("trust", "remove", "lab", "--json", env=env), "trust remove", 3, "environment_problem")


def test_scan(work, tmp_path, session_key):
    document = one_document(run_cli("scan", work["package"], *trusted(session_key), "--json"), "scan")
    assert document["format"] == "nnseal-scan" and document["failed"] is False
    unsafe = tmp_path / "evil.pkl"
    unsafe.write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    document = failed(run_cli("scan", unsafe, "--format", "json"), "scan", 1, "findings")
    assert document["failed"] is True and document["findings"]
    failed(run_cli("scan", tmp_path / "none", "--json"), "scan", 3, "environment_problem")
    failed(run_cli("scan", unsafe, "--json", "--format", "sarif"), "scan", 2, "usage_error")
    # --json with --output: the file gets --format (SARIF untouched), stdout the JSON report.
    sarif = tmp_path / "out.sarif"
    document = failed(run_cli("scan", unsafe, "--json", "--format", "sarif", "--output", sarif), "scan", 1, "findings")
    assert json.loads(sarif.read_text())["version"] == "2.1.0" and "command" not in json.loads(sarif.read_text())


def test_doctor(tmp_path, toy_results_session):
    result = run_cli("doctor", toy_results_session / MODEL, "--json")
    document = one_document(result, "doctor")
    assert [c["ok"] for c in document["checks"]].count(False) == (0 if result.exit_code == 0 else
                                                                  len(document["error"]["reason"].split(";")))
    failed(run_cli("doctor", tmp_path / "none", "--json"), "doctor", 3, "environment_problem")


def test_demo(tmp_path, monkeypatch):
    # nnU-Net's predictor is the one slow stage; the rest of the demo runs for real.
    monkeypatch.setattr("nnseal.demo._compare_predictions", lambda original, installed: "prediction skipped")
    document = one_document(run_cli("demo", "--keep", tmp_path / "demo", "--json"), "demo")
    assert document["kept"] and Path(document["package"]).is_file() and "demo finished: every stage worked" in \
        document["log"]
    a_file = tmp_path / "file"
    a_file.write_text("")
    failed(run_cli("demo", "--keep", a_file, "--json"), "demo", 2, "usage_error")


# --- interruptions and bugs are documents too -----------------------------------------------------------


def test_sigterm_under_json_is_one_document(work, monkeypatch):
    from nnseal.interrupt import Interrupted

    def interrupted(*args, **kwargs):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr("nnseal.verify.report.verify_package", interrupted)
    document = failed(run_cli("verify", work["package"], "--json"), "verify", 143, "interrupted")
    assert "SIGTERM" in document["error"]["reason"]


def test_an_unexpected_exception_under_json_is_one_document(work, monkeypatch):
    def bug(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr("nnseal.verify.report.inspect_package", bug)
    document = failed(run_cli("inspect", work["package"], "--json"), "inspect", 1, "unexpected_error")
    assert document["error"]["exception"] == "ValueError"


# --- sizes ----------------------------------------------------------------------------------------------


def test_one_package_has_one_size_in_every_command(work, tmp_path, session_key):
    package = work["package"]
    on_disk = package.stat().st_size
    documents = {
        "export": work["export"],
        "inspect": one_document(run_cli("inspect", package, "--json"), "inspect"),
        "verify": one_document(run_cli("verify", package, *trusted(session_key), "--json"), "verify"),
        "install": one_document(run_cli("install", package, "--results", tmp_path / "a", *trusted(session_key),
                                         "--json"), "install"),
        "download": one_document(run_cli("download", package.resolve().as_uri(), "--results", tmp_path / "b",
                                         *trusted(session_key), "--no-cache", "--json"), "download"),
    }
    assert {name: d["package_bytes"] for name, d in documents.items()} == dict.fromkeys(documents, on_disk)
    with zipfile.ZipFile(package) as archive:
        uncompressed = {info.filename: info.file_size for info in archive.infolist()}
    for name in ("export", "inspect", "verify"):
        entries = documents[name]["entries"]
        assert {e["name"]: e["bytes"] for e in entries} == uncompressed, name
        assert documents[name]["entries_bytes"] == sum(uncompressed.values()), name
    # The person reading the text sees the same size, in the same unit.
    assert format_bytes(on_disk) in run_cli("inspect", package).stdout


@pytest.mark.parametrize(("size", "text"), [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
                                            ((1 << 20) - 1, "1.0 MiB"), (5 << 30, "5.0 GiB")])
def test_format_bytes_is_iec_with_one_decimal(size, text):
    assert format_bytes(size) == text
