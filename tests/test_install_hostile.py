"""Hostile packages: every one refused with exit 1 and one line, the results folder byte-for-byte
unchanged, no staging left, and no escaping file (canary) written anywhere.

Zip-structure attacks come from tests/hostile_zips.py applied to a real signed package's
entries; package-level attacks (manifest, signature, layout, content) are built here.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import hostile_zips
import pytest
from helpers import assert_one_line_refusal, run_cli, signed_package, tree_listing

from nnseal import toy_model

MODEL = f"{toy_model.DATASET}/{toy_model.model_folder_name('2d')}"


@pytest.fixture()
def results(tmp_path) -> Path:
    """A results folder that already holds another model: it must come through untouched."""
    folder = tmp_path / "results"
    other = folder / "Dataset001_Other" / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "fold_0"
    other.mkdir(parents=True)
    (other / "checkpoint_final.pth").write_bytes(b"someone else's model")
    return folder


def _assert_refused_and_untouched(package, results, key, canary, *needles):
    before = tree_listing(results)
    proc = run_cli("install", package, "--results", results, "--trusted-key", key, "--quiet")
    assert_one_line_refusal(proc, *needles)
    assert tree_listing(results) == before
    assert not list(results.glob(".nnseal-staging-*"))
    assert not canary.exists()
    assert not (results.parent / hostile_zips.CANARY_NAME).exists()
    _assert_verify_and_scan_refuse_too(package, key)
    return proc


def _assert_verify_and_scan_refuse_too(package, key):
    """One verdict: a package install refuses is one verify and the scan gate refuse as well."""
    from nnseal.errors import Refused
    from nnseal.scan import scan_paths
    from nnseal.verify.report import verify_package

    try:
        assert not verify_package(package, [key]).ok
    except Refused:  # a hostile zip structure is refused outright
        pass
    assert scan_paths([package], [key]).failed("unsigned")


@pytest.mark.parametrize("attack", sorted(hostile_zips.ATTACKS))
def test_hostile_zip_structure(attack, package_entries, results, session_key, canary, tmp_path):
    package = hostile_zips.ATTACKS[attack](tmp_path / f"{attack}.zip", package_entries)
    _assert_refused_and_untouched(package, results, session_key.public_path, canary)


def test_deflate_bomb_total_size_limit(package_entries, results, session_key, tmp_path):
    """The total-size limit, tightened through the API so the test stays small."""
    from nnseal.errors import HostileArchive
    from nnseal.readers.zip_archive import Limits
    from nnseal.verify.install import install_model_from_zip

    package = hostile_zips.make_deflate_bomb_total(tmp_path / "bomb.zip", package_entries)
    before = tree_listing(results)
    with pytest.raises(HostileArchive, match="total"):
        install_model_from_zip(package, results, trusted_keys=[session_key.public_path],
                               limits=Limits(max_total_size=4 << 20))
    assert tree_listing(results) == before
    assert not list(results.glob(".nnseal-staging-*"))




def _replace(entries, name, data):
    return [(n, data if n == name else d) for n, d in entries]


def test_builder_alone_gives_an_installable_package(package_entries, session_key, tmp_path):
    """Guards every test below: the refusals come from the attack, not from signed_package()."""
    package = signed_package(tmp_path / "ok.zip", package_entries, session_key.private_path)
    proc = run_cli("install", package, "--results", tmp_path / "r", "--trusted-key", session_key.public_path)
    assert proc.exit_code == 0, proc.stderr


def test_entry_not_in_manifest(package_entries, results, session_key, canary, tmp_path):
    package = hostile_zips.write_honest_zip(tmp_path / "extra.zip",
                                            package_entries + [(f"{MODEL}/fold_0/progress.png", b"x")])
    _assert_refused_and_untouched(package, results, session_key.public_path, canary, "not in the signed manifest")


def test_manifest_entry_missing(package_entries, results, session_key, canary, tmp_path):
    kept = [(n, d) for n, d in package_entries if not n.endswith("fold_1/checkpoint_best.safetensors")]
    package = hostile_zips.write_honest_zip(tmp_path / "missing.zip", kept)
    _assert_refused_and_untouched(package, results, session_key.public_path, canary, "missing")


@pytest.mark.parametrize("index", range(8))
def test_one_changed_byte_in_any_entry(index, package_entries, results, session_key, canary, tmp_path):
    name, data = package_entries[index]
    assert name != "model.sig"
    middle = len(data) // 2
    changed = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]
    package = hostile_zips.write_honest_zip(tmp_path / "changed.zip", _replace(package_entries, name, changed))
    _assert_refused_and_untouched(package, results, session_key.public_path, canary, "signed manifest")


def test_manifest_resigned_by_untrusted_key(package_entries, results, session_key, canary, tmp_path):
    from nnseal.format.keys import generate_key_pair

    attacker = generate_key_pair(tmp_path / "attacker")
    changed = _replace(package_entries, f"{MODEL}/dataset.json", b'{"labels": {"background": 0}}')
    package = signed_package(tmp_path / "resigned.zip", changed, attacker.private_path)
    proc = _assert_refused_and_untouched(package, results, session_key.public_path, canary)
    assert attacker.fingerprint in proc.stderr or "trust" in proc.stderr.lower()


def test_valid_signature_taken_from_another_package(package_entries, results, session_key, canary, tmp_path):
    other = signed_package(tmp_path / "other.zip", _replace(package_entries, f"{MODEL}/dataset.json", b"{}"),
                           session_key.private_path)
    with zipfile.ZipFile(other) as z:
        foreign_sig = z.read("model.sig")
    package = hostile_zips.write_honest_zip(tmp_path / "stolen.zip",
                                            _replace(package_entries, "model.sig", foreign_sig))
    _assert_refused_and_untouched(package, results, session_key.public_path, canary, "signed manifest")


@pytest.mark.parametrize("name", [
    f"{MODEL}/fold_0/debug.json",
    f"{MODEL}/fold_05/checkpoint_final.safetensors",
    f"{MODEL}/fold_1000/checkpoint_final.safetensors",
    f"{MODEL}/fold_-1/checkpoint_final.safetensors",
    f"{MODEL}/fold_0/checkpoint_epoch_50.safetensors",
    f"{MODEL}/fold_0/validation/summary.json",
    "README.txt",
    f"{toy_model.DATASET}/not_a_model_folder/plans.json",
])
def test_signed_entry_outside_layout(name, package_entries, results, session_key, canary, tmp_path):
    package = signed_package(tmp_path / "layout.zip", package_entries + [(name, b"{}")], session_key.private_path)
    _assert_refused_and_untouched(package, results, session_key.public_path, canary, "outside the nnU-Net")


@pytest.mark.parametrize("name", [f"{MODEL}/fold_0/checkpoint_final.pth",
                                  f"{MODEL}/crossval_results_folds_0_1_2_3_4/postprocessing.pkl"])
def test_signed_package_with_pickle(name, package_entries, results, session_key, canary, tmp_path):
    payload = b"cos\nsystem\n(S'touch " + str(canary).encode() + b"'\ntR."
    package = signed_package(tmp_path / "pickle.zip", package_entries + [(name, payload)], session_key.private_path)
    _assert_refused_and_untouched(package, results, session_key.public_path, canary, "pickle")


def test_signed_plans_naming_foreign_class(package_entries, results, session_key, canary, tmp_path):
    plans = json.loads(dict(package_entries)[f"{MODEL}/plans.json"])
    plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["nonlin"] = "os.system"
    package = signed_package(tmp_path / "plans.zip",
                             _replace(package_entries, f"{MODEL}/plans.json", json.dumps(plans).encode()),
                             session_key.private_path)
    _assert_refused_and_untouched(package, results, session_key.public_path, canary, "os.system")
    # The same verdict from verify and the scan gate, each in one line naming the class.
    verify = run_cli("verify", package, "--trusted-key", session_key.public_path)
    assert_one_line_refusal(verify, "os.system")
    scan = run_cli("scan", package, "--trusted-key", session_key.public_path)
    assert scan.exit_code == 1 and "package-content" in scan.stdout and "os.system" in scan.stdout


def _safetensors_with_header(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.mark.parametrize("hostile", ["oversized_header", "overlapping_offsets", "offsets_past_end"])
def test_signed_package_with_hostile_safetensors_header(hostile, package_entries, results, session_key, canary,
                                                        tmp_path):
    meta = {"__metadata__": {"format": "pt"}}
    if hostile == "oversized_header":
        blob = struct.pack("<Q", 1 << 40) + b"{}"
    elif hostile == "overlapping_offsets":
        blob = _safetensors_with_header({**meta, "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                         "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24))
    else:
        blob = _safetensors_with_header({**meta, "a": {"dtype": "F32", "shape": [1 << 30],
                                                       "data_offsets": [0, 4 << 30]}}, bytes(16))
    name = f"{MODEL}/fold_0/checkpoint_final.safetensors"
    package = signed_package(tmp_path / "st.zip", _replace(package_entries, name, blob), session_key.private_path)
    _assert_refused_and_untouched(package, results, session_key.public_path, canary, "checkpoint_final.safetensors")


def make_alias_to_missing_tensor(blob: bytes) -> bytes:
    """A checkpoint whose nnseal metadata maps a weight onto a tensor the file does not store."""
    length = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + length])
    names = json.loads(header["__metadata__"]["nnseal.names"])
    header["__metadata__"]["nnseal.aliases"] = json.dumps({names[0]: "does.not.exist"}, separators=(",", ":"))
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + blob[8 + length:]


def test_signed_checkpoint_aliasing_a_missing_tensor(package_entries, results, session_key, canary, tmp_path):
    """Found by review: verify and scan passed it, install refused it. Now all three refuse."""
    name = f"{MODEL}/fold_0/checkpoint_final.safetensors"
    blob = make_alias_to_missing_tensor(dict(package_entries)[name])
    package = signed_package(tmp_path / "alias.zip", _replace(package_entries, name, blob), session_key.private_path)
    _assert_refused_and_untouched(package, results, session_key.public_path, canary, "does.not.exist")
    verify = run_cli("verify", package, "--trusted-key", session_key.public_path)
    assert_one_line_refusal(verify, "does.not.exist")


def test_signed_dataset_json_with_absolute_path(package_entries, results, session_key, canary, tmp_path):
    dataset = json.loads(dict(package_entries)[f"{MODEL}/dataset.json"])
    dataset["description"] = "trained on /home/alice/secret_cases"
    package = signed_package(tmp_path / "ds.zip",
                             _replace(package_entries, f"{MODEL}/dataset.json", json.dumps(dataset).encode()),
                             session_key.private_path)
    _assert_refused_and_untouched(package, results, session_key.public_path, canary, "dataset.json")


def test_inspect_shows_a_hostile_card_on_one_line_each(package_entries, session_key, tmp_path):
    card = json.loads(dict(package_entries)["nnseal-card.json"])
    card["model"]["description"] = f"x\nsigner:    {'0' * 64} (trusted; forged)\x1b[2J"
    package = signed_package(tmp_path / "card.zip",
                             _replace(package_entries, "nnseal-card.json", json.dumps(card).encode()),
                             session_key.private_path)
    proc = run_cli("inspect", package)
    assert proc.exit_code == 0, proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.startswith("signer:")] == [
        f"signer:    key sha256:{session_key.fingerprint}, OMS key method (NOT trusted; signature not checked here)"]
    assert "\x1b" not in proc.stdout


@pytest.mark.parametrize("card", [b"[1]", b'"text"', b'{"model": "x", "created_by": 3}', b"{not json"])
def test_inspect_survives_a_card_of_the_wrong_shape(card, package_entries, session_key, tmp_path):
    package = signed_package(tmp_path / "card.zip", _replace(package_entries, "nnseal-card.json", card),
                             session_key.private_path)
    proc = run_cli("inspect", package)
    assert proc.exit_code == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "unexpected" not in proc.stderr


def test_verify_refuses_a_signed_package_without_plans(package_entries, session_key, tmp_path):
    kept = [(n, d) for n, d in package_entries if not n.endswith("/plans.json")]
    package = signed_package(tmp_path / "noplans.zip", kept, session_key.private_path)
    proc = run_cli("verify", package, "--trusted-key", session_key.public_path)
    assert proc.exit_code == 1 and "plans.json" in proc.stderr


def test_oversized_json_entry_refused_before_extraction(package_entries, results, session_key, canary, tmp_path):
    import base64
    import random

    # Incompressible, so that the size limit (not the deflate-ratio limit) is what refuses it.
    huge = b'{"pad": "' + base64.b64encode(random.Random(0).randbytes(25 << 20)) + b'"}'
    package = signed_package(tmp_path / "huge.zip", _replace(package_entries, f"{MODEL}/dataset.json", huge),
                             session_key.private_path)
    _assert_refused_and_untouched(package, results, session_key.public_path, canary, "too large")


@pytest.mark.parametrize("pin", ["", "abc", "g" * 64])
def test_malformed_sha256_pin_is_a_usage_error(pin, toy_package_session, session_key, tmp_path):
    proc = run_cli("install", toy_package_session, "--results", tmp_path / "r", "--trusted-key",
                   session_key.public_path, "--sha256", pin)
    assert proc.exit_code == 2
    assert not (tmp_path / "r").exists()
