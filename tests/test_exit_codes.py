"""README's "Exit codes" table, walked: for each row, a case for each command it applies to.

The table is read from README.md, so a row added there without cases here fails, and so does a
case whose code the table does not list. Every failure is checked for its form as well: one
`nnseal: refused:` or `nnseal: error:` line (a malformed command line adds click's "Try 'nnseal
CMD -h' for help." line), no traceback.
"""

from __future__ import annotations

import re
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import REPO, run_cli, run_on_terminal

from nnseal import toy_model
from nnseal.cli import COMMANDS


def readme_exit_codes() -> dict[int, str]:
    """code -> meaning, from README's table (a row may list several codes: 130, 143, 129)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    codes: dict[int, str] = {}
    for cells in re.findall(r"^\| ([0-9][0-9, ]*) \| (.+) \|$", section, re.M):
        for code in cells[0].split(","):
            codes[int(code)] = cells[1]
    return codes


@dataclass
class World:
    """What the cases run against; built once (the toy model, its signed package, keys)."""

    root: Path
    package: Path
    key: object  # KeyFiles, unencrypted
    encrypted: object  # KeyFiles, passphrase "secret"
    model: Path  # a trained nnU-Net model folder (toy)
    checkpoint: Path
    nnunet_zip: Path
    installed: Path  # a model folder installed from the package
    signed_folder: Path
    results: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory, toy_package_session, toy_results_session, session_key) -> World:
    import zipfile

    from nnseal.format.keys import generate_key_pair
    from nnseal.package.sign_folder import sign_folder
    from nnseal.verify.install import install_model_from_zip

    root = tmp_path_factory.mktemp("exit_codes")
    model = toy_results_session / toy_model.DATASET / toy_model.model_folder_name("2d")
    nnunet_zip = root / "nnunet_export.zip"
    with zipfile.ZipFile(nnunet_zip, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("plans.json", "dataset.json", "fold_0/checkpoint_final.pth"):
            archive.write(model / name, f"{toy_model.DATASET}/{model.name}/{name}")
    results = root / "installed"
    install_model_from_zip(toy_package_session, results, trusted_keys=[session_key.public_path])
    signed = root / "signed"
    signed.mkdir()
    (signed / "weights.bin").write_bytes(b"\0" * 64)
    sign_folder(signed, session_key.private_path)
    return World(root=root, package=toy_package_session, key=session_key,
                 encrypted=generate_key_pair(root / "enc", b"secret"), model=model,
                 checkpoint=model / "fold_0" / "checkpoint_final.pth", nnunet_zip=nnunet_zip,
                 installed=results / toy_model.DATASET / model.name, signed_folder=signed, results=toy_results_session)


@dataclass
class Case:
    code: int
    command: str
    what: str
    args: Callable[[World, Path], list]
    env: dict = field(default_factory=dict)
    at_prompt: bytes | int | None = None  # run on a terminal: type these bytes, or send this signal
    report: str | None = None  # a gate that failed (scan): its report on stdout names this, stderr is empty


def _export(w: World, tmp: Path, *more) -> list:
    return ["export", "-i", w.model, "-o", tmp / "out.zip", "--key", w.key.private_path, "-f", "0", "-chk", "final",
            *more]


def _export_d(w: World, tmp: Path, *more) -> list:
    return ["export", "-o", tmp / "out.zip", "--key", w.key.private_path, *more]


def _signable(tmp: Path) -> Path:
    folder = tmp / "to_sign"
    folder.mkdir(exist_ok=True)
    (folder / "weights.bin").write_bytes(b"\1" * 32)
    return folder


def _installed_copy(w: World, tmp: Path) -> Path:
    """A results folder of our own holding the installed toy model; its model folder."""
    results = tmp / "installed"
    shutil.copytree(w.installed.parents[1], results)
    return results / w.installed.relative_to(w.installed.parents[1])


def _trained_copy(w: World, tmp: Path) -> Path:
    """A copy of the trained toy model folder (no receipt: nnseal did not install it)."""
    target = tmp / "trained" / toy_model.DATASET / w.model.name
    shutil.copytree(w.model, target)
    return target


def _url(path: Path) -> str:
    return path.resolve().as_uri()


RESULTS = "nnUNet_results"

CASES = [
    # --- 0 success --------------------------------------------------------------------------------
    Case(0, "sanitize", "a checkpoint", lambda w, t: ["sanitize", w.checkpoint, "-o", t / "w.safetensors"]),
    Case(0, "keygen", "a new key pair", lambda w, t: ["keygen", "-o", t / "keys" / "lab.pem"]),
    Case(0, "sign", "a folder", lambda w, t: ["sign", _signable(t), "--key", w.key.private_path]),
    Case(0, "export", "a model folder", lambda w, t: _export(w, t)),
    Case(0, "verify", "a package by a trusted key",
         lambda w, t: ["verify", w.package, "--trusted-key", w.key.public_path]),
    Case(0, "inspect", "a package", lambda w, t: ["inspect", w.package]),
    Case(0, "install", "a package by a trusted key",
         lambda w, t: ["install", w.package, "--results", t / "r", "--trusted-key", w.key.public_path]),
    Case(0, "trust", "list", lambda w, t: ["trust", "list"]),
    Case(0, "download", "a file URL by a trusted key",
         lambda w, t: ["download", _url(w.package), "--results", t / "r", "--trusted-key", w.key.public_path,
                       "--no-cache"]),
    Case(0, "scan", "a package (default gate)", lambda w, t: ["scan", w.package]),
    Case(0, "doctor", "an installed model folder", lambda w, t: ["doctor", w.installed]),
    Case(0, "list", "a results folder", lambda w, t: ["list", "--results", w.installed.parents[1]]),
    Case(0, "uninstall", "an installed model", lambda w, t: ["uninstall", _installed_copy(w, t)]),
    # --- 1 refused --------------------------------------------------------------------------------
    Case(1, "sanitize", "a package, not a checkpoint", lambda w, t: ["sanitize", w.package, "-o", t / "w.st"]),
    Case(1, "keygen", "over an existing key", lambda w, t: ["keygen", "-o", w.key.private_path]),
    Case(1, "sign", "over an existing signature", lambda w, t: ["sign", w.signed_folder, "--key", w.key.private_path]),
    Case(1, "export", "over an existing file",
         lambda w, t: _export(w, t)[:4] + [w.package] + _export(w, t)[5:]),
    Case(1, "verify", "an unknown signer", lambda w, t: ["verify", w.package]),
    Case(1, "verify", "a checkpoint, not a package", lambda w, t: ["verify", w.checkpoint]),
    Case(1, "inspect", "a checkpoint, not a package", lambda w, t: ["inspect", w.checkpoint]),
    Case(1, "install", "an unknown signer", lambda w, t: ["install", w.package, "--results", t / "r"]),
    Case(1, "install", "an nnU-Net zip without --unsigned",
         lambda w, t: ["install", w.nnunet_zip, "--results", t / "r"]),
    Case(1, "trust", "add a private key", lambda w, t: ["trust", "add", w.key.private_path]),
    Case(1, "download", "an unknown signer",
         lambda w, t: ["download", _url(w.package), "--results", t / "r", "--no-cache"]),
    Case(1, "scan", "--fail-on unsigned, an nnU-Net zip",
         lambda w, t: ["scan", w.nnunet_zip, "--fail-on", "unsigned"], report="nnunet-export-zip"),
    Case(1, "doctor", "a checkpoint, not a model folder", lambda w, t: ["doctor", w.checkpoint]),
    Case(1, "uninstall", "a folder nnseal did not install", lambda w, t: ["uninstall", _trained_copy(w, t)]),
    # --- 2 usage error ----------------------------------------------------------------------------
    *[Case(2, name, "an unknown option", lambda w, t, name=name: [name, "--no-such-option"]) for name in COMMANDS],
    Case(2, "keygen", "no -o", lambda w, t: ["keygen"]),
    Case(2, "export", "a fold that cannot exist", lambda w, t: _export(w, t, "-f", "x")),
    Case(2, "export", "-i and -d", lambda w, t: _export(w, t, "-d", "42")),
    Case(2, "export", "a passphrase for an unencrypted key", lambda w, t: _export(w, t, "--passphrase-env", "PW"),
         env={"PW": "secret"}),
    Case(2, "export", "an encrypted key, no passphrase, no terminal",
         lambda w, t: _export(w, t)[:6] + [w.encrypted.private_path] + _export(w, t)[7:]),
    Case(2, "sign", "a passphrase for an unencrypted key (environment)",
         lambda w, t: ["sign", _signable(t), "--key", w.key.private_path], env={"NNSEAL_KEY_PASSPHRASE": "x"}),
    Case(2, "scan", "an unknown --fail-on", lambda w, t: ["scan", w.package, "--fail-on", "bogus"]),
    Case(2, "download", "a malformed --max-size", lambda w, t: ["download", _url(w.package), "--max-size", "lots"]),
    Case(2, "install", "a malformed --sha256", lambda w, t: ["install", w.package, "--sha256", "abc"]),
    Case(2, "trust", "no key", lambda w, t: ["trust", "add"]),
    Case(2, "nnseal", "an unknown command", lambda w, t: ["frobnicate"]),
    Case(2, "nnseal", "-q and -v", lambda w, t: ["-q", "-v", "trust", "list"]),
    # --- 3 environment or I/O error ---------------------------------------------------------------
    Case(3, "sanitize", "a missing file", lambda w, t: ["sanitize", t / "missing.pth", "-o", t / "w.st"]),
    Case(3, "keygen", "under a file", lambda w, t: ["keygen", "-o", w.key.public_path / "lab"]),
    Case(3, "sign", "a missing folder", lambda w, t: ["sign", t / "missing", "--key", w.key.private_path]),
    Case(3, "sign", "a missing key", lambda w, t: ["sign", _signable(t), "--key", t / "missing.pem"]),
    Case(3, "export", "a missing model folder", lambda w, t: ["export", "-i", t / "missing", "-o", t / "o.zip",
                                                               "--key", w.key.private_path]),
    Case(3, "export", "a missing dataset", lambda w, t: _export_d(w, t, "-d", "999", "-c", "2d"),
         env={RESULTS: "{results}"}),
    Case(3, "export", "a missing configuration", lambda w, t: _export_d(w, t, "-d", "42", "-c", "3d_fullres"),
         env={RESULTS: "{results}"}),
    Case(3, "export", "a missing trainer", lambda w, t: _export_d(w, t, "-d", "42", "-tr", "OtherTrainer"),
         env={RESULTS: "{results}"}),
    Case(3, "export", "a missing fold", lambda w, t: _export(w, t)[:7] + ["-f", "7"]),
    Case(3, "export", "a missing checkpoint", lambda w, t: _export(w, t)[:9] + ["-chk", "latest"]),
    Case(3, "export", "$nnUNet_results not set", lambda w, t: _export_d(w, t, "-d", "42"), env={RESULTS: None}),
    Case(3, "verify", "a missing file", lambda w, t: ["verify", t / "missing.zip"]),
    Case(3, "inspect", "a missing file", lambda w, t: ["inspect", t / "missing.zip"]),
    Case(3, "install", "a missing file", lambda w, t: ["install", t / "missing.zip", "--results", t / "r"]),
    Case(3, "install", "$nnUNet_results not set",
         lambda w, t: ["install", w.package, "--trusted-key", w.key.public_path], env={RESULTS: None}),
    Case(3, "trust", "add a missing key", lambda w, t: ["trust", "add", t / "missing.pub"]),
    Case(3, "download", "a missing file URL", lambda w, t: ["download", _url(t / "missing.zip"), "--results",
                                                            t / "r", "--no-cache", "--retries", "0"]),
    Case(3, "scan", "a missing path", lambda w, t: ["scan", t / "missing"]),
    Case(3, "doctor", "a missing folder", lambda w, t: ["doctor", t / "missing"]),
    Case(3, "list", "$nnUNet_results not set", lambda w, t: ["list"], env={RESULTS: None}),
    Case(3, "uninstall", "a missing model folder",
         lambda w, t: ["uninstall", f"{toy_model.DATASET}/nnUNetTrainer__nnUNetPlans__3d_fullres", "--results",
                       w.installed.parents[1]]),
    Case(3, "demo", "a work folder under a file", lambda w, t: ["demo", "--keep", w.key.public_path / "demo"]),
    # --- 130, 143, 129 interrupted: at the passphrase prompt, a point every run reaches ---------
    Case(130, "sign", "Ctrl-C at the passphrase prompt",
         lambda w, t: ["sign", _signable(t), "--key", w.encrypted.private_path], at_prompt=b"\x03"),
    Case(130, "export", "SIGINT at the passphrase prompt",
         lambda w, t: _export(w, t)[:6] + [w.encrypted.private_path] + _export(w, t)[7:], at_prompt=signal.SIGINT),
    Case(143, "export", "SIGTERM at the passphrase prompt",
         lambda w, t: _export(w, t)[:6] + [w.encrypted.private_path] + _export(w, t)[7:], at_prompt=signal.SIGTERM),
    Case(129, "sign", "SIGHUP at the passphrase prompt",
         lambda w, t: ["sign", _signable(t), "--key", w.encrypted.private_path], at_prompt=signal.SIGHUP),
]

# Where a row does not apply to a command (each with why).
NOT_APPLICABLE = {
    (0, "demo"): "its success runs every stage and nnU-Net's predictor: tests/test_nnunet_e2e.py",
    (1, "demo"): "it builds its own inputs: there is nothing to refuse",
    (1, "list"): "it exits 0 whatever the status (`verify --all` is the gate)",
}
INTERRUPT_CODES = {130, 143, 129}


def _case_id(case: Case) -> str:
    return f"{case.code}-{case.command}-{case.what.replace(' ', '_')}"


def test_the_cases_walk_the_whole_table():
    table = readme_exit_codes()
    assert set(table) == {0, 1, 2, 3, 130, 143, 129}, table
    covered = {(case.code, case.command) for case in CASES}
    assert {case.code for case in CASES} == set(table)
    for code in set(table) - INTERRUPT_CODES:
        missing = {name for name in COMMANDS if (code, name) not in covered and (code, name) not in NOT_APPLICABLE}
        assert not missing, (code, sorted(missing))


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_exit_code(case: Case, world: World, tmp_path):
    args = case.args(world, tmp_path)
    env = {k: (v.format(results=world.results) if isinstance(v, str) else v) for k, v in case.env.items()}
    if case.at_prompt is not None:
        result = run_on_terminal(*args, env=env,
                                 answer=case.at_prompt if isinstance(case.at_prompt, bytes) else None,
                                 signal_at_prompt=case.at_prompt if isinstance(case.at_prompt, int) else None)
        assert result.exit_code == case.code, result
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        # The prompt, then one line: "nnseal: interrupted" (with the signal's name for SIGTERM and SIGHUP).
        assert lines[0].startswith("Passphrase") and len(lines) == 2, lines
        assert lines[1].startswith("nnseal: interrupted"), lines
        assert not (tmp_path / "out.zip").exists()
        return
    result = run_cli(*args, env=env)
    assert result.exit_code == case.code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("nnseal: note:")
             and not line.startswith("nnseal: warning:")]
    if case.code == 0 or case.report:
        assert not lines, result.stderr
        assert case.report is None or case.report in result.stdout, result.stdout
        return
    kind = "refused" if case.code == 1 else "error"
    assert lines and lines[0].startswith(f"nnseal: {kind}: "), result.stderr
    if len(lines) == 2:  # a malformed command line: where help is
        assert case.code == 2 and re.fullmatch(r"Try 'nnseal( [a-z]+)* -h' for help\.", lines[1]), lines
    else:
        assert len(lines) == 1, lines


def test_a_missing_dataset_and_a_missing_configuration_agree(world: World, tmp_path):
    """Both name something on the command line that is not in the results folder: a missing file (3)."""
    dataset = run_cli(*_export_d(world, tmp_path, "-d", "999", "-c", "2d"), env={RESULTS: str(world.results)})
    configuration = run_cli(*_export_d(world, tmp_path, "-d", "42", "-c", "3d_fullres"),
                            env={RESULTS: str(world.results)})
    assert dataset.exit_code == configuration.exit_code == 3
    assert "Dataset999_" in dataset.stderr and "3d_fullres" in configuration.stderr


def test_an_ambiguous_dataset_id_is_a_usage_error(world: World, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(world.results, results)
    (results / "Dataset042_Other").mkdir()
    proc = run_cli(*_export_d(world, tmp_path, "-d", "42", "-c", "2d"), env={RESULTS: str(results)})
    assert proc.exit_code == 2
    assert proc.stderr.count("\n") == 1 and "Dataset042_Other" in proc.stderr and "Dataset042_Toy" in proc.stderr
