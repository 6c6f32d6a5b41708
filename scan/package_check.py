"""nnseal packages: the signature against the trusted keys and every entry's hash, via `nnseal verify`'s code."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nnseal.format.oms import SIGNATURE_NAME
from nnseal.format.trust import signer_label
from nnseal.scan.findings import Finding, Location, finding
from nnseal.verify.problems import ProblemKind
from nnseal.verify.report import verify_package

# Each kind of problem verify_package reports -> the scan rule it falls under.
RULE_BY_KIND: dict[ProblemKind, str] = {
    ProblemKind.UNSIGNED: "unsigned-package",
    ProblemKind.UNTRUSTED_SIGNER: "unknown-signer",
    ProblemKind.BAD_SIGNATURE: "bad-signature",
    ProblemKind.FORMAT: "tampered-package",
    ProblemKind.LAYOUT: "tampered-package",
    ProblemKind.EXTRA_ENTRY: "tampered-package",
    ProblemKind.MISSING_ENTRY: "tampered-package",
    ProblemKind.MODIFIED_ENTRY: "tampered-package",
    ProblemKind.CONTENT: "package-content",
}


def package_findings(path: Path, where: Location, trusted_keys: Sequence[Path],
                     trust_folder: Path | None = None) -> list[Finding]:
    report = verify_package(path, trusted_keys, trust_folder=trust_folder)
    found: list[Finding] = []
    for problem in report.problems:
        if problem.kind is ProblemKind.UNSIGNED:
            message = f"no {SIGNATURE_NAME}: nothing vouches for its contents"
        elif problem.kind is ProblemKind.UNTRUSTED_SIGNER:
            message = (f"signed by {signer_label(report.signer_fingerprint, full=True)} (OMS key method), "
                       "which is not among the trusted keys "
                       "(neither those given to the scan nor the trust folder's)")
        else:
            message = problem.message
        found.append(finding(where, RULE_BY_KIND[problem.kind], message))
    return found
