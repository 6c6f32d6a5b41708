"""SARIF 2.1.0 output, shaped for GitHub code scanning (github/codeql-action/upload-sarif).

Locations are files relative to the folder the scan ran in (where the repository is
checked out in CI). A finding inside an archive points at the archive; the member is
named in the message and as a logical location, since SARIF has no physical location
for "a file inside a zip".
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from nnseal import __version__
from nnseal.scan.findings import Finding
from nnseal.scan.report import ScanReport
from nnseal.scan.rules import RULES

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SARIF_VERSION = "2.1.0"
SARIF_LEVEL = {"unsafe": "error", "unsigned": "warning", "warning": "warning", "note": "note"}
# GitHub ranks alerts by this property (0.0 - 10.0).
SECURITY_SEVERITY = {"unsafe": "9.0", "unsigned": "5.0", "warning": "3.0", "note": "1.0"}


def artifact_uri(path: str, base: Path) -> str:
    """``path`` relative to ``base`` as a URI reference, or an absolute file URI when it lies outside."""
    absolute = Path(os.path.abspath(path))
    try:
        relative = absolute.relative_to(base)
        return quote(relative.as_posix())
    except ValueError:
        return absolute.as_uri()


def _result(item: Finding, rule_index: dict[str, int], base: Path) -> dict:
    text = item.message if item.member is None else f"{item.member}: {item.message}"
    location: dict = {"physicalLocation": {"artifactLocation": {"uri": artifact_uri(item.path, base)}}}
    if item.member is not None:
        location["logicalLocations"] = [{"name": item.member.rsplit("/", 1)[-1],
                                         "fullyQualifiedName": item.member, "kind": "member"}]
    return {
        "ruleId": item.rule,
        "ruleIndex": rule_index[item.rule],
        "level": SARIF_LEVEL[item.level],
        "message": {"text": text},
        "locations": [location],
        "properties": {"nnseal-level": item.level},
    }


def to_sarif(report: ScanReport, base: str | os.PathLike | None = None) -> dict:
    base_path = Path(os.path.abspath(base if base is not None else os.getcwd()))
    rules = list(RULES.values())
    rule_index = {rule.id: i for i, rule in enumerate(rules)}
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [{
            "tool": {"driver": {
                "name": "nnseal",
                "version": __version__,
                "rules": [{
                    "id": rule.id,
                    "name": "".join(part.capitalize() for part in rule.id.split("-")),
                    "shortDescription": {"text": rule.summary.split(": ")[0].rstrip(".")[:120]},
                    "fullDescription": {"text": rule.summary},
                    "defaultConfiguration": {"level": SARIF_LEVEL[rule.level]},
                    "properties": {"nnseal-level": rule.level, "security-severity": SECURITY_SEVERITY[rule.level],
                                   "tags": ["security"]},
                } for rule in rules],
            }},
            "results": [_result(item, rule_index, base_path) for item in report.findings],
            "columnKind": "unicodeCodePoints",
        }],
    }
