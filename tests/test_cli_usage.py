"""The command line itself: usage errors, --version, python -m nnseal, -q/-v, completion, keygen's
paths, passphrases, nnU-Net's multi-value options, and the one-line answer to the wrong kind of file."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
from helpers import REPO, assert_one_line_refusal, process_env, run_cli, run_cli_process, run_on_terminal

from nnseal import __version__, toy_model

# --- usage errors, --version, python -m --------------------------------------------------------


@pytest.mark.parametrize("args, hint", [
    (["verify"], "Try 'nnseal verify -h' for help."),
    (["export", "-o", "x.zip", "-f"], "Try 'nnseal export -h' for help."),
    (["scan", ".", "--fail-on", "bogus"], "Try 'nnseal scan -h' for help."),
    (["trust", "add"], "Try 'nnseal trust add -h' for help."),
    (["no-such-command"], "Try 'nnseal -h' for help."),
    (["--no-such-option"], "Try 'nnseal -h' for help."),
])
def test_a_usage_error_is_one_error_line_and_where_help_is(args, hint):
    proc = run_cli(*args)
    assert proc.exit_code == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("nnseal: error: ") and lines[1] == hint, proc.stderr
    assert "Usage:" not in proc.stderr and proc.stdout == ""


def _expected_version_line() -> str:
    return f"nnseal {__version__} (torch {version('torch')}, nnunetv2 {version('nnunetv2')})"


def test_version_is_one_line_and_imports_no_torch():
    code = ("import sys\nfrom nnseal.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit as e:\n"
            "    assert e.code in (0, None), e.code\n"
            "assert 'torch' not in sys.modules and 'nnunetv2' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=process_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == _expected_version_line() + "\n"


@pytest.mark.parametrize("module", ["nnseal", "nnseal.cli"])
def test_python_dash_m(module, tmp_path):
    proc = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True,
                          env=process_env(), timeout=120)
    assert (proc.returncode, proc.stdout) == (0, _expected_version_line() + "\n"), proc.stderr
    # The program is "nnseal" in what it prints, however it was started.
    proc = subprocess.run([sys.executable, "-m", module, "verify"], capture_output=True, text=True,
                          env=process_env(), timeout=120)
    assert proc.returncode == 2 and proc.stderr.splitlines()[1] == "Try 'nnseal verify -h' for help."
    assert run_cli_process("--version").stdout == _expected_version_line() + "\n"


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o nosort -F _nnseal_completion nnseal"),
                                           ("zsh", "compdef _nnseal_completion nnseal"),
                                           ("fish", "complete --no-files --command nnseal")])
def test_shell_completion_script_is_produced(shell, marker):
    proc = run_cli_process(env={"_NNSEAL_COMPLETE": f"{shell}_source"})
    assert proc.exit_code == 0 and marker in proc.stdout, proc.stdout
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"_NNSEAL_COMPLETE={shell}_source nnseal" in readme


def test_completion_completes_commands_and_options():
    proc = run_cli_process(env={"_NNSEAL_COMPLETE": "bash_complete", "COMP_WORDS": "nnseal ins", "COMP_CWORD": "1"})
    assert proc.exit_code == 0
    assert {"plain,inspect", "plain,install"} <= set(proc.stdout.split())


# --- -q / -v -----------------------------------------------------------------------------------


def test_quiet_and_verbose(toy_model_folder, session_key, tmp_path):
    out = tmp_path / "p.zip"
    quiet = run_cli("-q", "export", "-i", toy_model_folder, "-o", out, "--key", session_key.private_path)
    assert quiet.exit_code == 0 and quiet.stdout == ""
    assert all(line.startswith("nnseal: note: ") for line in quiet.stderr.splitlines())  # notes are kept
    verbose = run_cli("-v", "export", "-i", toy_model_folder, "-o", out, "--key", session_key.private_path, "--force")
    entries = [line for line in verbose.stdout.splitlines() if line.startswith("entry:")]
    with zipfile.ZipFile(out) as archive:
        assert len(entries) == len(archive.namelist())
    normal = run_cli("export", "-i", toy_model_folder, "-o", out, "--key", session_key.private_path, "--force")
    assert normal.stdout and not any(line.startswith("entry:") for line in normal.stdout.splitlines())

    key = ("--trusted-key", session_key.public_path)
    assert run_cli("-q", "verify", out, *key).stdout == ""
    assert "OK" in run_cli("verify", out, *key).stdout
    installed = run_cli("-q", "install", out, "--results", tmp_path / "r", *key)
    assert installed.exit_code == 0 and installed.stdout == ""
    rebuilt = run_cli("-v", "install", out, "--results", tmp_path / "r2", *key).stdout
    assert rebuilt.count("rebuilt Dataset042_Toy/") == 4  # 2 folds x final, best

    # Refusals are still one line under -q.
    assert_one_line_refusal(run_cli("-q", "verify", out), "unknown signer")
    scanned = run_cli("-q", "scan", out)  # findings only: the package's unknown signer, no summary line
    assert scanned.exit_code == 0 and scanned.stdout.splitlines() == run_cli("scan", out).stdout.splitlines()[:-1]
    assert "unknown-signer" in scanned.stdout
    silent = run_cli("-q", "keygen", "-o", tmp_path / "k")
    assert silent.exit_code == 0 and silent.stdout == "" and (tmp_path / "k.pem").is_file()


# --- keygen's paths ----------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["lab", "lab.pem", "lab.pub"])
def test_keygen_does_not_double_the_suffix(given, tmp_path):
    proc = run_cli("keygen", "-o", tmp_path / given)
    assert proc.exit_code == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab.pem", "lab.pub"]


def test_keygen_creates_missing_folders_private(tmp_path):
    proc = run_cli("keygen", "-o", tmp_path / "keys" / "team" / "lab", "--json")
    assert proc.exit_code == 0, proc.stderr
    for folder in (tmp_path / "keys", tmp_path / "keys" / "team"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "keys" / "team" / "lab.pem").stat().st_mode) == 0o600


def test_keygen_expands_a_quoted_home(tmp_path):
    proc = run_cli("keygen", "-o", "~/keys/lab", env={"HOME": str(tmp_path)})
    assert proc.exit_code == 0, proc.stderr
    assert (tmp_path / "keys" / "lab.pem").is_file() and not Path("~").exists()


# --- passphrases -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encrypted_key(tmp_path_factory):
    from nnseal.format.keys import generate_key_pair

    return generate_key_pair(tmp_path_factory.mktemp("enc") / "enc", b"secret")


def _folder(tmp_path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\1" * 16)
    return folder


def test_an_encrypted_key_is_asked_for_on_a_terminal(encrypted_key, tmp_path):
    folder = _folder(tmp_path)
    proc = run_on_terminal("sign", folder, "--key", encrypted_key.private_path, answer=b"secret\n")
    assert proc.exit_code == 0, proc.stdout
    assert proc.stdout.startswith("Passphrase") and "secret" not in proc.stdout  # not echoed
    assert (folder / "model.sig").is_file()


def test_an_encrypted_key_without_a_passphrase_off_a_terminal_is_one_line(encrypted_key, toy_model_folder, tmp_path):
    for args in (["sign", _folder(tmp_path)],
                 ["export", "-i", toy_model_folder, "-o", tmp_path / "p.zip"]):
        proc = run_cli(*args, "--key", encrypted_key.private_path, env={"NNSEAL_KEY_PASSPHRASE": None})
        assert proc.exit_code == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("nnseal: error: ") and "--passphrase-env" in proc.stderr
    assert not (tmp_path / "model" / "model.sig").exists() and not (tmp_path / "p.zip").exists()


@pytest.mark.parametrize("how, env", [
    (["--passphrase-env", "PW"], {"PW": "secret"}),
    ([], {"NNSEAL_KEY_PASSPHRASE": "secret"}),
])
def test_a_passphrase_for_an_unencrypted_key_is_refused(how, env, session_key, tmp_path):
    folder = _folder(tmp_path)
    proc = run_cli("sign", folder, "--key", session_key.private_path, *how, env=env)
    assert proc.exit_code == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "not encrypted" in proc.stderr and (how[0] if how else "$NNSEAL_KEY_PASSPHRASE") in proc.stderr
    assert not (folder / "model.sig").exists()


def test_the_library_refuses_a_passphrase_for_an_unencrypted_key(session_key):
    from nnseal.errors import InvalidArgument
    from nnseal.format.keys import load_private_key

    with pytest.raises(InvalidArgument, match="not encrypted"):
        load_private_key(session_key.private_path, b"anything")


def test_ctrl_c_at_the_prompt_is_130_and_one_line(encrypted_key, tmp_path):
    proc = run_on_terminal("sign", _folder(tmp_path), "--key", encrypted_key.private_path, "--passphrase",
                           answer=b"\x03")
    assert proc.exit_code == 130
    assert [line for line in proc.stdout.splitlines() if line.strip()][1:] == ["nnseal: interrupted"]


def test_end_of_input_at_the_prompt_is_one_line(encrypted_key, tmp_path):
    proc = run_cli_process("keygen", "-o", tmp_path / "k", "--passphrase", input="")
    assert proc.exit_code == 2 and "nnseal: error: no passphrase read" in proc.stderr
    assert "Aborted" not in proc.stderr and not (tmp_path / "k.pem").exists()


# --- nnU-Net's multi-value options ---------------------------------------------------------------


def test_export_takes_several_model_folders_after_one_i(toy_results_session, session_key, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(toy_results_session, results)
    spec = toy_model.ToySpec(configuration="3d_fullres")
    second = toy_model.build_results(results, folds=(0,), spec=spec, checkpoints=("checkpoint_final",))
    first = results / toy_model.DATASET / toy_model.model_folder_name("2d")
    out = tmp_path / "p.zip"
    proc = run_cli("export", "-i", first, second, "-o", out, "--key", session_key.private_path, "-f", "0",
                   "-chk", "final", "--json")
    assert proc.exit_code == 0, proc.stderr
    with zipfile.ZipFile(out) as archive:
        folders = {name.split("/")[1] for name in archive.namelist() if name.count("/") >= 2}
    assert folders == {first.name, second.name}


# --- the wrong kind of file ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory, toy_package_session, toy_results_session):
    """One file (or folder) of each kind, and what the one-line answer must say of it."""
    root = tmp_path_factory.mktemp("kinds")
    model = toy_results_session / toy_model.DATASET / toy_model.model_folder_name("2d")
    shutil.copy(model / "fold_0" / "checkpoint_final.pth", root / "model.pth")
    nnunet_zip = root / "export.zip"
    with zipfile.ZipFile(nnunet_zip, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("plans.json", "dataset.json", "fold_0/checkpoint_final.pth", "fold_1/checkpoint_final.pth",
                     "fold_1/checkpoint_best.pth", "fold_0/debug.json"):
            archive.write(model / name, f"{toy_model.DATASET}/{model.name}/{name}")
    shutil.copy(toy_package_session, root / "package.zip")
    from nnseal.sanitize.checkpoint import sanitize_checkpoint

    sanitize_checkpoint(root / "model.pth", root / "weights.safetensors")
    (root / "random.bin").write_bytes(bytes(range(256)) * 4)
    (root / "folder").mkdir()
    return {"pth": (root / "model.pth", "is a PyTorch checkpoint", "`nnseal sanitize` or `nnseal scan`"),
            "nnunet": (nnunet_zip, "is an nnU-Net export zip (unsigned)", "`nnseal install --unsigned`"),
            "package": (root / "package.zip", "is an nnseal package", "`nnseal verify`"),
            "safetensors": (root / "weights.safetensors", "is a safetensors file", "`nnseal scan`"),
            "folder": (root / "folder", "is a folder", "`nnseal scan`"),
            "model-folder": (model, "is an nnU-Net model folder", "`nnseal export -i`"),
            "random": (root / "random.bin", "its content is no format nnseal knows", None)}


# command -> (the kinds it takes, what it says it wants)
TAKES = {
    "verify": ({"package", "folder", "model-folder"}, "not an nnseal package"),
    "inspect": ({"package", "nnunet"}, "not a package"),
    "install": ({"package"}, "not a package"),
    "sanitize": ({"pth"}, "not a checkpoint"),
    "doctor": ({"folder", "model-folder"}, "not a model folder"),
}
KINDS = ["pth", "nnunet", "package", "safetensors", "folder", "model-folder", "random"]


def _run(command: str, path: Path, tmp_path: Path):
    extra = {"sanitize": ["-o", tmp_path / "out.safetensors"], "install": ["--results", tmp_path / "r"]}
    return run_cli(command, path, *extra.get(command, []))


@pytest.mark.parametrize("command", sorted(TAKES))
@pytest.mark.parametrize("kind", KINDS)
def test_the_wrong_kind_of_file_is_one_line_saying_what_it_is(command, kind, files, tmp_path):
    taken, wanted = TAKES[command]
    if kind in taken or (command == "install" and kind == "nnunet"):
        return  # what the command takes: the other tests
    path, what, where = files[kind]
    proc = _run(command, path, tmp_path)
    assert_one_line_refusal(proc, str(path), what)
    line = proc.stderr.strip()
    assert wanted in line
    if where:
        assert where in line
    assert not (tmp_path / "r").exists() and not (tmp_path / "out.safetensors").exists()


def test_install_of_a_checkpoint_does_not_suggest_unsigned(files, tmp_path):
    path = files["pth"][0]
    proc = run_cli("install", path, "--results", tmp_path / "r")
    assert_one_line_refusal(proc, "PyTorch checkpoint", "`nnseal sanitize`")
    assert "--unsigned" not in proc.stderr
    proc = run_cli("install", path, "--results", tmp_path / "r", "--unsigned")
    assert_one_line_refusal(proc, "PyTorch checkpoint")


def test_install_of_an_nnunet_zip_without_unsigned_names_the_flag(files, tmp_path):
    proc = run_cli("install", files["nnunet"][0], "--results", tmp_path / "r")
    assert_one_line_refusal(proc, "nnU-Net export zip", "--unsigned")


def test_verify_of_a_checkpoint_is_one_line_not_a_hundred(files):
    proc = run_cli("verify", files["pth"][0])
    assert_one_line_refusal(proc, "is a PyTorch checkpoint, not an nnseal package")


def test_inspect_of_an_nnunet_zip_shows_what_it_holds(files):
    proc = run_cli("inspect", files["nnunet"][0])
    assert proc.exit_code == 0, proc.stderr
    text = proc.stdout
    model = f"{toy_model.DATASET}/{toy_model.model_folder_name('2d')}"
    assert "UNSIGNED" in text and "nnseal install --unsigned" in text
    assert f"model:     {model}: configuration 2d, folds 0, 1; 3 checkpoint(s) (checkpoint_best, checkpoint_final)" \
        in text
    assert "folds ;" not in text and "0 checkpoint(s)" not in text
    assert "1 other entries" in text  # debug.json: left out by an install
    document = run_cli("inspect", files["nnunet"][0], "--json")
    import json

    data = json.loads(document.stdout)
    assert [m["folder"] for m in data["models"]] == [model]
    assert data["models"][0]["folds"] == ["0", "1"]
    assert sorted((c["fold"], c["checkpoint"]) for c in data["models"][0]["checkpoints"]) == [
        ("0", "checkpoint_final"), ("1", "checkpoint_best"), ("1", "checkpoint_final")]
    assert data["card"] is None and data["signer_fingerprint"] is None and data["verified"] is False


def test_export_of_a_file_says_what_it_is(files, session_key, tmp_path):
    proc = run_cli("export", "-i", files["pth"][0], "-o", tmp_path / "p.zip", "--key", session_key.private_path)
    assert_one_line_refusal(proc, "is a PyTorch checkpoint, not a model folder")
