"""`nnseal scan` report formats: SARIF 2.1.0 against the official schema, the documented JSON schema, docs in sync."""

from __future__ import annotations

import json
import re

import hostile_checkpoints as hostile
import hostile_scan_inputs as inputs
import jsonschema
import pytest
from helpers import REPO, run_cli

SARIF_SCHEMA = json.loads((REPO / "tests" / "sarif" / "sarif-schema-2.1.0.json").read_text())
REPORT_SCHEMA = json.loads((REPO / "docs" / "scan-report.schema.json").read_text())


@pytest.fixture()
def mixed_folder(tmp_path, canary, toy_package_session, toy_model_folder):
    """Findings of every level, at top level and inside archives, run from the folder (as CI does)."""
    models = tmp_path / "models"
    models.mkdir()
    hostile.make_reduce_os_system(models, canary)
    hostile.make_legacy_format(models, canary)
    (models / "with space.pth").write_bytes(b"")
    inputs.make_nnunet_zip(models, {
        "Dataset042_Toy/m/fold_0/checkpoint_final.pth": hostile.make_reduce_eval(tmp_path, canary).read_bytes()})
    (models / "package.zip").write_bytes(toy_package_session.read_bytes())
    (models / "link.pth").symlink_to(toy_model_folder / "fold_0" / "checkpoint_final.pth")
    return tmp_path


def test_sarif_validates_against_the_official_schema(mixed_folder):
    proc = run_cli("scan", "models", "--format", "sarif", cwd=mixed_folder)
    assert proc.exit_code == 1, proc.stderr
    sarif = json.loads(proc.stdout)
    jsonschema.Draft4Validator(SARIF_SCHEMA, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER).validate(sarif)

    run = sarif["runs"][0]
    assert sarif["version"] == "2.1.0" and run["tool"]["driver"]["name"] == "nnseal"
    rule_ids = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    levels = {result["level"] for result in run["results"]}
    assert levels == {"error", "warning", "note"}
    for result in run["results"]:
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert uri.startswith("models/") and "://" not in uri  # relative to the checkout, as GitHub wants
    assert "models/with%20space.pth" in {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                                         for r in run["results"]}
    member_results = [r for r in run["results"] if "logicalLocations" in r["locations"][0]]
    assert member_results
    for result in member_results:
        member = result["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]
        assert result["message"]["text"].startswith(member)
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "models/nnunet_export.zip"


def test_sarif_of_a_clean_scan_is_valid_and_empty(toy_results_session):
    fold = toy_results_session / "Dataset042_Toy" / "nnUNetTrainer__nnUNetPlans__2d" / "fold_0"
    proc = run_cli("scan", fold, "--format", "sarif")
    assert proc.exit_code == 0
    sarif = json.loads(proc.stdout)
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(sarif)
    assert sarif["runs"][0]["results"] == []
    from nnseal.scan.rules import RULES

    assert [rule["id"] for rule in sarif["runs"][0]["tool"]["driver"]["rules"]] == list(RULES)


def test_sarif_uri_outside_the_working_folder_is_an_absolute_file_uri(tmp_path, canary):
    from nnseal.scan import scan_paths
    from nnseal.scan.sarif import to_sarif

    target = hostile.make_reduce_eval(tmp_path, canary)
    sarif = to_sarif(scan_paths([target]), base=tmp_path / "elsewhere")
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(sarif)
    uri = sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == target.as_uri()


def test_json_report_matches_its_documented_schema(mixed_folder):
    proc = run_cli("scan", "models", "--format", "json", "--fail-on", "unsigned", cwd=mixed_folder)
    report = json.loads(proc.stdout)
    jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(report)
    assert report["fail_on"] == "unsigned" and report["failed"] is True
    levels = report["summary"]["levels"]
    assert sum(levels.values()) == report["summary"]["findings"] == len(report["findings"])
    # unsigned: the package by an unknown signer, and nnU-Net's export zip (no signature)
    assert levels["unsafe"] >= 3 and levels["unsigned"] == 2 and levels["warning"] == 1 and levels["note"] >= 1
    assert report["summary"]["files"] == 5  # the symlink is not read


def test_report_schema_rejects_what_it_should():
    validator = jsonschema.Draft202012Validator(REPORT_SCHEMA)
    good = {"format": "nnseal-scan", "format_version": 1, "tool": {"name": "nnseal", "version": "0"},
            "fail_on": "unsafe", "failed": False,
            "summary": {"files": 0, "findings": 0, "levels": {"note": 0, "warning": 0, "unsigned": 0, "unsafe": 0},
                        "kinds": {}},
            "findings": [], "scanned": []}
    validator.validate(good)
    bad_level = json.loads(json.dumps(good))
    bad_level["findings"] = [{"path": "a", "member": None, "rule": "x", "level": "critical", "message": "m"}]
    assert not validator.is_valid(bad_level)


def test_docs_rule_table_matches_the_code():
    from nnseal.scan.rules import RULES

    text = (REPO / "docs" / "SCAN.md").read_text()
    documented = dict(re.findall(r"^\| `([a-z-]+)` \| (note|warning|unsigned|unsafe) \|", text, re.MULTILINE))
    assert documented == {rule.id: rule.level for rule in RULES.values()}


def test_docs_list_every_dangerous_module():
    from nnseal.scan.dangerous import DANGEROUS_MODULES, DANGEROUS_NAMES

    text = (REPO / "docs" / "SCAN.md").read_text()
    missing = [name for name in [*DANGEROUS_MODULES, *DANGEROUS_NAMES] if f"`{name}`" not in text]
    assert missing == []


def test_pre_commit_hook_runs_the_gate_on_model_files():
    import yaml

    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    [hook] = [h for h in hooks if h["id"] == "nnseal-scan"]
    assert hook["entry"] == "nnseal scan" and hook["language"] == "python"
    pattern = re.compile(hook["files"])
    for name in ("fold_0/checkpoint_final.pth", "model.pt", "x.ckpt", "postprocessing.pkl", "a.npy", "b.npz",
                 "export.zip", "w.safetensors", "pytorch_model.bin", "m.pickle", "m.joblib"):
        assert pattern.search(name), name
    assert not pattern.search("train.py")


def test_ci_doc_workflow_uploads_sarif_even_when_the_gate_fails():
    import yaml

    text = (REPO / "docs" / "CI.md").read_text()
    [workflow_text] = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)[:1]
    workflow = yaml.safe_load(workflow_text)
    steps = workflow["jobs"]["nnseal-scan"]["steps"]
    scan = next(s for s in steps if "nnseal scan" in s.get("run", ""))
    assert "--format sarif" in scan["run"] and "--output nnseal.sarif" in scan["run"]
    upload = next(s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif@"))
    assert upload["if"] == "always()" and upload["with"]["sarif_file"] == "nnseal.sarif"
    assert workflow["permissions"]["security-events"] == "write"
