"""Typed reports: status enums, Problem kinds, to_json shapes, and the card's format-version check."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from helpers import run_cli, signed_package

from nnseal.format.oms import SIGNATURE_NAME

CHECKPOINT = "fold_0/checkpoint_final.safetensors"


def _zip(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """``entries`` as they are (model.sig included, unchanged): for packages whose signature no longer fits."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries:
            z.writestr(name, data)
    return path




def _with_card(entries, **changes) -> list[tuple[str, bytes]]:
    card = json.loads(dict(entries)["nnseal-card.json"])
    card.update(changes)
    data = json.dumps(card).encode()
    return [(n, data if n == "nnseal-card.json" else d) for n, d in entries]


def _kinds(report) -> list:
    return [p.kind for p in report.problems]


# --- verify: signature status and problem kinds --------------------------------------


def test_valid_package_has_no_problems_and_json_keeps_its_shape(toy_package_session, session_key):
    from nnseal.verify.report import SignatureStatus, verify_package

    report = verify_package(toy_package_session, [session_key.public_path])
    assert report.ok and report.signature is SignatureStatus.VALID and report.problems == []
    data = report.to_json()
    assert set(data) == {"package", "ok", "signature", "signer_fingerprint", "signer_name", "method", "signer",
                         "package_bytes", "entries", "entries_bytes", "problems"}
    assert type(data["signature"]) is str and data["signature"] == "valid"
    assert json.loads(json.dumps(data)) == data


def test_modified_entry_is_a_modified_entry_problem(package_entries, session_key, tmp_path):
    from nnseal.verify.problems import Problem, ProblemKind
    from nnseal.verify.report import SignatureStatus, verify_package

    name = next(n for n, _ in package_entries if n.endswith(CHECKPOINT))
    changed = [(n, d[:-1] + bytes([d[-1] ^ 1]) if n == name else d) for n, d in package_entries]
    report = verify_package(_zip(tmp_path / "t.zip", changed), [session_key.public_path])
    assert report.signature is SignatureStatus.VALID  # the signature is intact; the entry is not
    assert report.problems == [Problem(ProblemKind.MODIFIED_ENTRY, f"modified entry: {name}", name)]
    assert report.to_json()["problems"] == [f"modified entry: {name}"]
    assert not report.ok


def test_extra_and_missing_entries(package_entries, session_key, tmp_path):
    from nnseal.verify.problems import ProblemKind
    from nnseal.verify.report import verify_package

    dropped = next(n for n, _ in package_entries if n.endswith("dataset_fingerprint.json"))
    extra = dropped.rsplit("/", 1)[0] + "/fold_0/progress.png"
    entries = [(n, d) for n, d in package_entries if n != dropped] + [(extra, b"png")]
    report = verify_package(_zip(tmp_path / "t.zip", entries), [session_key.public_path])
    by_kind = {p.kind: p.subject for p in report.problems}
    assert by_kind == {ProblemKind.EXTRA_ENTRY: extra, ProblemKind.MISSING_ENTRY: dropped}


def test_unsigned_untrusted_and_bad_signature(package_entries, session_key, tmp_path):
    from nnseal.verify.problems import ProblemKind
    from nnseal.verify.report import SignatureStatus, verify_package

    unsigned = verify_package(_zip(tmp_path / "u.zip", [(n, d) for n, d in package_entries if n != SIGNATURE_NAME]),
                              [session_key.public_path])
    assert unsigned.signature is SignatureStatus.MISSING and _kinds(unsigned) == [ProblemKind.UNSIGNED]
    assert unsigned.to_json()["signature"] == "missing"

    untrusted = verify_package(_zip(tmp_path / "t.zip", package_entries), [])
    assert untrusted.signature is SignatureStatus.UNTRUSTED and _kinds(untrusted) == [ProblemKind.UNTRUSTED_SIGNER]

    bundle = json.loads(dict(package_entries)[SIGNATURE_NAME])
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = "AAAA" + bundle["dsseEnvelope"]["signatures"][0]["sig"][4:]
    broken = [(n, json.dumps(bundle).encode() if n == SIGNATURE_NAME else d) for n, d in package_entries]
    bad = verify_package(_zip(tmp_path / "b.zip", broken), [session_key.public_path])
    assert bad.signature is SignatureStatus.INVALID and _kinds(bad) == [ProblemKind.BAD_SIGNATURE]
    assert bad.problems[0].message.startswith("bad signature: ")


def test_layout_problem(package_entries, session_key, tmp_path):
    from nnseal.verify.problems import ProblemKind
    from nnseal.verify.report import verify_package

    entries = [*package_entries, ("stray.txt", b"x")]
    package = signed_package(tmp_path / "l.zip", entries, session_key.private_path)
    report = verify_package(package, [session_key.public_path])
    assert [(p.kind, p.subject) for p in report.problems] == [(ProblemKind.LAYOUT, "stray.txt")]


# --- scan: one table from problem kinds to rules -------------------------------------


@pytest.mark.parametrize("kind, rule", [
    ("UNSIGNED", "unsigned-package"), ("UNTRUSTED_SIGNER", "unknown-signer"), ("BAD_SIGNATURE", "bad-signature"),
    ("FORMAT", "tampered-package"), ("LAYOUT", "tampered-package"), ("EXTRA_ENTRY", "tampered-package"),
    ("MISSING_ENTRY", "tampered-package"), ("MODIFIED_ENTRY", "tampered-package"),
])
def test_scan_maps_each_problem_kind_to_its_rule(kind, rule, monkeypatch, tmp_path):
    from nnseal.scan import package_check
    from nnseal.scan.findings import Location
    from nnseal.verify.problems import ProblemKind
    from nnseal.verify.report import VerifyReport

    report = VerifyReport(package="p.zip", signer_fingerprint="ab" * 32)
    report.add(ProblemKind[kind], "what verify said", "some/entry")
    monkeypatch.setattr(package_check, "verify_package", lambda path, keys, trust_folder=None: report)
    found = package_check.package_findings(tmp_path / "p.zip", Location("p.zip"), [])
    assert [f.rule for f in found] == [rule]


def test_every_package_problem_kind_has_a_scan_rule():
    from nnseal.scan.package_check import RULE_BY_KIND
    from nnseal.scan.rules import RULES
    from nnseal.verify.problems import ProblemKind

    drift_kinds = {ProblemKind.MODIFIED_FILE, ProblemKind.MISSING_FILE, ProblemKind.EXTRA_FILE}
    assert set(RULE_BY_KIND) == set(ProblemKind) - drift_kinds
    assert all(rule in RULES for rule in RULE_BY_KIND.values())


# --- the card's format version -------------------------------------------------------


def test_parse_card_accepts_this_version_and_refuses_others():
    from nnseal.errors import Refused, TamperedPackage
    from nnseal.format.card import FORMAT_VERSION, parse_card
    from nnseal.format.limits import MAX_CARD_BYTES

    assert parse_card(b'{"format": "nnseal-package", "format_version": 1}')["format_version"] == FORMAT_VERSION == 1
    with pytest.raises(Refused, match=r"^card format_version 2 is newer than this nnseal understands \(1\); "
                                      r"upgrade nnseal$"):
        parse_card(b'{"format": "nnseal-package", "format_version": 2}')
    for bad, needle in [(b"[1]", "not a JSON object"), (b'{"format": "other", "format_version": 1}', "format is"),
                        (b'{"format": "nnseal-package", "format_version": "1"}', "not a positive integer"),
                        (b'{"format": "nnseal-package", "format_version": true}', "not a positive integer"),
                        (b'{"format": "nnseal-package", "format_version": 0}', "not a positive integer"),
                        (b'{"format": "nnseal-package", "format": "nnseal-package", "format_version": 1}',
                         "duplicate key"),
                        (b" " * (MAX_CARD_BYTES + 1), "larger than")]:
        with pytest.raises(TamperedPackage, match=needle):
            parse_card(bad)


@pytest.fixture(scope="module")
def future_package(package_entries, session_key, tmp_path_factory) -> Path:
    """Correctly signed, but its card says format_version 2."""
    return signed_package(tmp_path_factory.mktemp("future") / "v2.zip", _with_card(package_entries, format_version=2),
                   session_key.private_path)


NEWER = "card format_version 2 is newer than this nnseal understands (1); upgrade nnseal"


def test_install_refuses_a_newer_card_before_extracting(future_package, session_key, tmp_path):
    from nnseal.errors import Refused
    from nnseal.verify.install import install_model_from_zip

    results = tmp_path / "results"
    with pytest.raises(Refused, match=r"upgrade nnseal") as caught:
        install_model_from_zip(future_package, results, trusted_keys=[session_key.public_path])
    assert caught.value.reason == NEWER
    assert not results.exists()  # a refused install does not even create the results folder


def test_verify_reports_a_newer_card_as_a_format_problem(future_package, session_key):
    from nnseal.verify.problems import Problem, ProblemKind
    from nnseal.verify.report import SignatureStatus, verify_package

    report = verify_package(future_package, [session_key.public_path])
    assert report.signature is SignatureStatus.VALID and not report.ok
    assert report.problems == [Problem(ProblemKind.FORMAT, NEWER, "nnseal-card.json")]
    assert report.to_json()["problems"] == [NEWER]


def test_inspect_notes_a_newer_card_and_still_shows_it(future_package, session_key):
    from nnseal.verify.report import InspectReport, inspect_package

    info = inspect_package(future_package, [session_key.public_path])
    assert isinstance(info, InspectReport)
    assert info.notes == [NEWER] and info.card["format_version"] == 2 and info.signer_trusted


def test_inspect_json_keeps_its_shape(toy_package_session, session_key):
    from nnseal.verify.report import inspect_package

    data = inspect_package(toy_package_session, [session_key.public_path]).to_json()
    assert list(data) == ["package", "verified", "card", "signer_fingerprint", "signer_trusted", "signer_name",
                          "method", "signer", "models", "entries", "entries_bytes", "package_bytes", "notes",
                          "metrics"]
    assert data["verified"] is False and data["notes"] == [] and data["card"]["format_version"] == 1
    (model,) = data["models"]
    assert set(model) == {"folder", "folds", "checkpoints", "entries_bytes"} and model["folds"] == ["0", "1"]
    assert json.loads(json.dumps(data)) == data


# --- install provenance and drift problems -------------------------------------------


def test_install_report_and_drift_problems(toy_package_session, session_key, tmp_path):
    from nnseal.verify.install import install_model_from_zip
    from nnseal.verify.problems import ProblemKind
    from nnseal.verify.receipt import Provenance, check_installed

    report = install_model_from_zip(toy_package_session, tmp_path / "r", trusted_keys=[session_key.public_path])
    assert report.provenance is Provenance.SIGNED
    data = report.to_json()
    assert list(data) == ["package", "results", "provenance", "signer_fingerprint", "signer_name", "method", "signer",
                          "package_bytes", "package_sha256", "models", "replaced", "checkpoints", "dropped_entries",
                          "warnings", "pipeline", "already_installed"]
    assert type(data["provenance"]) is str and data["provenance"] == "signed"

    folder = Path(report.models[0])
    (folder / "plans.json").write_text("{}")
    (folder / "dataset_fingerprint.json").unlink()
    (folder / "notes.txt").write_text("added later")
    drift = check_installed(folder)
    assert drift.provenance == "signed"
    assert [(p.kind, p.subject) for p in drift.problems()] == [
        (ProblemKind.MODIFIED_FILE, "plans.json"), (ProblemKind.MISSING_FILE, "dataset_fingerprint.json"),
        (ProblemKind.EXTRA_FILE, "notes.txt")]
    assert drift.to_json() == {"folder": str(folder), "ok": False, "provenance": "signed",
                               "signer_fingerprint": session_key.fingerprint, "signer_name": None, "method": "key",
                               "signer": f"key {session_key.fingerprint}", "modified": ["plans.json"],
                               "missing": ["dataset_fingerprint.json"], "extra": ["notes.txt"],
                               "problems": ["modified: plans.json", "missing: dataset_fingerprint.json",
                                            "extra: notes.txt"]}


def test_status_enums_print_as_their_values():
    from nnseal.verify.problems import ProblemKind
    from nnseal.verify.receipt import Provenance
    from nnseal.verify.report import SignatureStatus

    for member in [*SignatureStatus, *Provenance, *ProblemKind]:
        assert str(member) == f"{member}" == member.value and json.dumps(member) == f'"{member.value}"'
    assert [s.value for s in SignatureStatus] == ["valid", "untrusted", "invalid", "missing"]
    assert [p.value for p in Provenance] == ["signed", "unsigned"]


def test_verify_json_problem_names_the_remedy_as_the_text_output_does(toy_package_session):
    """The library's problem names no flag; the CLI adds the remedy to --json as to the text line."""
    proc = run_cli("verify", toy_package_session, "--json")
    assert proc.exit_code == 1
    problems = json.loads(proc.stdout)["problems"]
    assert any("nnseal trust add KEY.pub" in p and "--trusted-key" in p for p in problems), problems
    text = run_cli("verify", toy_package_session)
    assert problems[0] in text.stderr
