"""Rollback protection: the card's release and creation time, recorded in the receipt, and an
older release of an installed model from the same signer refused unless --allow-downgrade."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from helpers import assert_one_line_refusal, run_cli, tree_listing

from nnseal import toy_model

MODEL = f"{toy_model.DATASET}/{toy_model.model_folder_name('2d')}"
T1, T2 = 1_700_000_000, 1_710_000_000
T1_TEXT, T2_TEXT = "2023-11-14T22:13:20Z", "2024-03-09T16:00:00Z"


def _export(model, out: Path, key, *, release: str | None, created=None) -> Path:
    from nnseal.package.export import export_model_to_zip

    export_model_to_zip(model, out, key=key.private_path, metadata={"release": release}, created=created)
    return out


def _card(package: Path) -> dict:
    with zipfile.ZipFile(package) as z:
        return json.loads(z.read("nnseal-card.json"))


def _install(package, results, key, *extra):
    return run_cli("install", package, "--results", results, "--trusted-key", key.public_path, "--quiet", *extra)


def _receipt(results: Path) -> dict:
    return json.loads((results / MODEL / "nnseal-receipt.json").read_text())


@pytest.fixture(scope="module")
def releases(toy_results_session, session_key, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("releases")
    model = toy_results_session / MODEL
    return {
        "v1": _export(model, folder / "v1.zip", session_key, release="1.0", created=T2),  # made later, older release
        "v2": _export(model, folder / "v2.zip", session_key, release="2.0", created=T1),
        "v2-rebuilt": _export(model, folder / "v2b.zip", session_key, release="2.0", created=T2),
        "v2.0.0": _export(model, folder / "v200.zip", session_key, release="v2.0.0", created=T1),
        "named": _export(model, folder / "named.zip", session_key, release="spring", created=T1),
    }


def test_card_inspect_and_receipt_show_release_and_creation_time(releases, session_key, tmp_path):
    card = _card(releases["v2"])
    assert card["model"]["release"] == "2.0" and card["model"]["created"] == T1_TEXT
    shown = run_cli("inspect", releases["v2"])
    assert shown.exit_code == 0, shown.stderr
    assert "release:   2.0" in shown.stdout and f"created:   {T1_TEXT}" in shown.stdout
    assert json.loads(run_cli("inspect", releases["v2"], "--json").stdout)["card"]["model"]["created"] == T1_TEXT
    results = tmp_path / "results"
    assert _install(releases["v2"], results, session_key).exit_code == 0
    receipt = _receipt(results)
    assert (receipt["release"], receipt["created"]) == ("2.0", T1_TEXT)
    assert receipt["model"]["release"] == "2.0"


def test_older_release_refused_over_newer_unless_allowed(releases, session_key, tmp_path):
    results = tmp_path / "results"
    assert _install(releases["v2"], results, session_key).exit_code == 0
    before = tree_listing(results)
    refused = _install(releases["v1"], results, session_key, "--force")
    assert_one_line_refusal(refused, "release '1.0'", "release '2.0'", "older than the installed", "same signer",
                            "--allow-downgrade")
    assert tree_listing(results) == before
    assert not list(results.glob(".nnseal-staging-*"))

    allowed = _install(releases["v1"], results, session_key, "--force", "--allow-downgrade")
    assert allowed.exit_code == 0, allowed.stderr
    assert _receipt(results)["release"] == "1.0"
    # And forward again: a newer release needs no permission.
    assert _install(releases["v2"], results, session_key, "--force").exit_code == 0
    assert _receipt(results)["release"] == "2.0"


def test_same_release_compares_creation_time(releases, session_key, tmp_path):
    results = tmp_path / "results"
    assert _install(releases["v2-rebuilt"], results, session_key).exit_code == 0
    assert_one_line_refusal(_install(releases["v2"], results, session_key, "--force"),
                            f"release '2.0' (created {T1_TEXT})", f"release '2.0' (created {T2_TEXT})")
    # v2.0.0 is the same version as 2.0 (PEP 440): the creation time decides again.
    assert_one_line_refusal(_install(releases["v2.0.0"], results, session_key, "--force"), "'v2.0.0'")
    assert _install(releases["v2-rebuilt"], results, session_key, "--force").exit_code == 0  # a reinstall


def test_releases_that_are_not_versions_fall_back_to_creation_time(releases, session_key, tmp_path):
    results = tmp_path / "results"
    assert _install(releases["v1"], results, session_key).exit_code == 0  # created T2
    assert_one_line_refusal(_install(releases["named"], results, session_key, "--force"), "'spring'", "'1.0'")


def test_another_signer_or_an_unsigned_install_is_not_compared(releases, toy_results_session, session_key,
                                                               tmp_path):
    from nnseal.format.keys import generate_key_pair

    other = generate_key_pair(tmp_path / "other")
    old_by_other = _export(toy_results_session / MODEL, tmp_path / "old.zip", other, release="0.1", created=T1)
    results = tmp_path / "results"
    assert _install(releases["v2"], results, session_key).exit_code == 0
    proc = run_cli("install", old_by_other, "--results", results, "--trusted-key", other.public_path, "--force",
                   "--quiet")
    assert proc.exit_code == 0, proc.stderr
    # A folder whose receipt says "unsigned" (or that has none) holds no release to protect.
    receipt = _receipt(results)
    receipt.update(provenance="unsigned", signer_fingerprint=None)
    (results / MODEL / "nnseal-receipt.json").write_text(json.dumps(receipt))
    assert _install(releases["v1"], results, session_key, "--force").exit_code == 0
    (results / MODEL / "nnseal-receipt.json").unlink()
    assert _install(releases["v1"], results, session_key, "--force").exit_code == 0


def test_a_receipt_from_before_release_fields_still_protects(releases, session_key, tmp_path):
    results = tmp_path / "results"
    assert _install(releases["v2"], results, session_key).exit_code == 0
    receipt = _receipt(results)
    del receipt["release"], receipt["created"]  # as nnseal 0.2 wrote it: the card's model only
    (results / MODEL / "nnseal-receipt.json").write_text(json.dumps(receipt))
    assert_one_line_refusal(_install(releases["v1"], results, session_key, "--force"), "release '2.0'")


def test_library_allow_downgrade(releases, session_key, tmp_path):
    from nnseal.errors import Downgrade, Hint
    from nnseal.verify.install import install_model_from_zip

    results = tmp_path / "results"
    install_model_from_zip(releases["v2"], results, trusted_keys=[session_key.public_path])
    with pytest.raises(Downgrade) as refused:
        install_model_from_zip(releases["v1"], results, trusted_keys=[session_key.public_path], force=True)
    assert refused.value.hint is Hint.ALLOW_DOWNGRADE and refused.value.path == str(results.resolve() / MODEL)
    report = install_model_from_zip(releases["v1"], results, trusted_keys=[session_key.public_path], force=True,
                                    allow_downgrade=True)
    assert report.replaced == [str(results.resolve() / MODEL)]


@pytest.mark.parametrize(("older", "newer"), [
    ("1.0", "2.0"), ("1.9", "1.10"), ("v1.2", "1.3"), ("1.0rc1", "1.0"), ("1.0a2", "1.0b1"), ("1.0.dev1", "1.0a1"),
    ("1.0", "1.0.post1"), ("1.0", "1.0-1"), ("2024.05", "2024.11"), ("1!0.1", "1!0.2"), ("9.9", "1!0.1"),
    ("1.0.post1.dev1", "1.0.post1"),
])
def test_version_order(older, newer):
    from nnseal.verify.rollback import Release, is_older, version_key

    assert version_key(older) < version_key(newer)
    assert is_older(Release(older, T2_TEXT), Release(newer, T1_TEXT))
    assert not is_older(Release(newer, T1_TEXT), Release(older, T2_TEXT))


@pytest.mark.parametrize("text", ["spring", "", "1.0+local", "1..0", "latest", None, "1.0 beta"])
def test_not_a_version(text):
    from nnseal.verify.rollback import Release, is_older, version_key

    assert version_key(text) is None
    assert is_older(Release(text, T1_TEXT), Release("1.0", T2_TEXT))  # the creation time decides
    assert not is_older(Release(text, T2_TEXT), Release("1.0", T1_TEXT))
    assert not is_older(Release(text, None), Release("1.0", T2_TEXT))  # unknown: nothing refused


def test_created_defaults_to_the_newest_checkpoint_mtime(toy_results_session, session_key, tmp_path):
    model = tmp_path / MODEL
    shutil.copytree(toy_results_session / MODEL, model)
    for i, pth in enumerate(sorted(model.rglob("*.pth"))):
        os.utime(pth, (T1, T1 + i))
    newest = T1 + len(list(model.rglob("*.pth"))) - 1
    (model / "plans.json").touch()  # only checkpoints count
    a = _export(model, tmp_path / "a.zip", session_key, release=None)
    assert _card(a)["model"]["created"] == datetime.fromtimestamp(newest, tz=timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    b = _export(model, tmp_path / "b.zip", session_key, release=None)
    assert a.read_bytes() == b.read_bytes()  # no clock in the card
    explicit = _export(model, tmp_path / "c.zip", session_key, release=None,
                       created=datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert _card(explicit)["model"]["created"] == "2025-01-02T03:04:05Z"


def test_cli_created_from_option_or_source_date_epoch(toy_model_folder, session_key, tmp_path):
    def export(out, *extra, env=None):
        proc = run_cli("export", "-i", toy_model_folder, "-o", out, "--key", session_key.private_path, "--quiet",
                       *extra, env=env)
        assert proc.exit_code == 0, proc.stderr
        return _card(out)["model"]["created"]

    assert export(tmp_path / "a.zip", env={"SOURCE_DATE_EPOCH": str(T1)}) == T1_TEXT
    assert export(tmp_path / "b.zip", "--created", T2_TEXT, env={"SOURCE_DATE_EPOCH": str(T1)}) == T2_TEXT
    assert export(tmp_path / "c.zip", "--created", str(T2)) == T2_TEXT
    bad = run_cli("export", "-i", toy_model_folder, "-o", tmp_path / "d.zip", "--key", session_key.private_path,
                  "--created", "yesterday")
    assert bad.exit_code == 2 and "--created" in bad.stderr
    bad_env = run_cli("export", "-i", toy_model_folder, "-o", tmp_path / "e.zip", "--key", session_key.private_path,
                      env={"SOURCE_DATE_EPOCH": "soon"})
    assert bad_env.exit_code == 2 and "SOURCE_DATE_EPOCH" in bad_env.stderr
    assert not (tmp_path / "d.zip").exists() and not (tmp_path / "e.zip").exists()


@pytest.mark.parametrize("created", ["2024-13-01T00:00:00Z", "2024-01-01 00:00:00", 1700000000, "yesterday"])
def test_a_card_with_an_unreadable_creation_time_is_refused(created, releases, session_key, tmp_path):
    """Install compares it, so a value it cannot read is refused rather than ignored."""
    from helpers import signed_package

    from nnseal.verify.problems import ProblemKind
    from nnseal.verify.report import verify_package

    with zipfile.ZipFile(releases["v2"]) as z:
        entries = [(i.filename, z.read(i)) for i in z.infolist()]
    card = _card(releases["v2"])
    card["model"]["created"] = created
    entries = [(n, json.dumps(card).encode() if n == "nnseal-card.json" else d) for n, d in entries]
    package = signed_package(tmp_path / "card.zip", entries, session_key.private_path)
    results = tmp_path / "results"
    results.mkdir()
    before = tree_listing(results)
    assert_one_line_refusal(_install(package, results, session_key), "model.created")
    assert tree_listing(results) == before
    assert [p.kind for p in verify_package(package, [session_key.public_path]).problems] == [ProblemKind.FORMAT]
