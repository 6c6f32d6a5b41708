"""Running `nnseal scan` from tests and reading its JSON report."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import CliResult, run_cli


def scan_json(*paths, extra=(), cwd=None) -> tuple[CliResult, dict]:
    proc = run_cli("scan", *paths, "--format", "json", *extra, cwd=cwd)
    assert proc.exit_code in (0, 1), (proc.exit_code, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, json.loads(proc.stdout)


def rules_for(report: dict, path: Path | str | None = None, member: str | None = None) -> set[str]:
    """Rule ids of the findings on ``path`` (by file name) and ``member``."""
    name = None if path is None else Path(path).name
    return {f["rule"] for f in report["findings"]
            if (name is None or Path(f["path"]).name == name) and (member is None or f["member"] == member)}


def levels_for(report: dict, path: Path | str) -> set[str]:
    return {f["level"] for f in report["findings"] if Path(f["path"]).name == Path(path).name}
