"""nnseal packages: the signature against the trusted keys and every entry's hash, via `nnseal verify`'s code."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nnseal.format.oms import SIGNATURE_NAME
from nnseal.scan.findings import Finding, Location, finding
from nnseal.verify.report import verify_package

# verify_package words the signature's own problem with one of these; the rest are about the entries.
_SIGNATURE_PROBLEMS = (f"no {SIGNATURE_NAME}:", "unknown signer:", "bad signature:")


def package_findings(path: Path, where: Location, trusted_keys: Sequence[Path],
                     trust_folder: Path | None = None) -> list[Finding]:
    report = verify_package(path, trusted_keys, trust_folder=trust_folder)
    found: list[Finding] = []
    if report.signature == "missing":
        found.append(finding(where, "unsigned-package", f"no {SIGNATURE_NAME}: nothing vouches for its contents"))
    elif report.signature == "untrusted":
        found.append(finding(where, "unknown-signer",
                             f"signed by key {report.signer_fingerprint}, which is not trusted "
                             "(pass it with --trusted-key, or `nnseal trust add` it)"))
    elif report.signature == "invalid":
        reason = next((p for p in report.problems if p.startswith("bad signature:")), "bad signature")
        found.append(finding(where, "bad-signature", reason))
    for problem in report.problems:
        if not problem.startswith(_SIGNATURE_PROBLEMS):
            found.append(finding(where, "tampered-package", problem))
    return found
