"""The result of a scan, and the gate's verdict on it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from nnseal import __version__
from nnseal.scan.findings import FAIL_ON, LEVELS, Finding, level_at_least

REPORT_FORMAT = "nnseal-scan"
REPORT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Scanned:
    """One thing that was classified: a file on disk or a member of an archive."""

    path: str
    member: str | None
    kind: str


@dataclass
class ScanReport:
    findings: list[Finding] = field(default_factory=list)
    scanned: list[Scanned] = field(default_factory=list)
    files: int = 0  # regular files on disk that were read

    def counts(self) -> dict[str, int]:
        by_level = Counter(f.level for f in self.findings)
        return {level: by_level.get(level, 0) for level in LEVELS}

    def kinds(self) -> dict[str, int]:
        return dict(sorted(Counter(s.kind for s in self.scanned).items()))

    def failed(self, fail_on: str = "unsafe") -> bool:
        threshold = FAIL_ON[fail_on]
        return any(level_at_least(f.level, threshold) for f in self.findings)

    def summary_line(self) -> str:
        counts = self.counts()
        return (f"{self.files} files scanned, {len(self.findings)} findings "
                f"({counts['unsafe']} unsafe, {counts['unsigned']} unsigned)")

    def to_json(self, fail_on: str = "unsafe") -> dict:
        """The documented JSON report (docs/SCAN.md, docs/scan-report.schema.json)."""
        return {
            "format": REPORT_FORMAT,
            "format_version": REPORT_FORMAT_VERSION,
            "tool": {"name": "nnseal", "version": __version__},
            "fail_on": fail_on,
            "failed": self.failed(fail_on),
            "summary": {"files": self.files, "findings": len(self.findings), "levels": self.counts(),
                        "kinds": self.kinds()},
            "findings": [f.to_json() for f in self.findings],
            "scanned": [{"path": s.path, "member": s.member, "kind": s.kind} for s in self.scanned],
        }

    def to_text(self) -> str:
        return "\n".join([f.text_line() for f in self.findings] + [self.summary_line()]) + "\n"
