"""Findings for one pickle stream: the globals it imports, the opcodes it uses, how it is built."""

from __future__ import annotations

from nnseal.errors import MalformedPickle
from nnseal.readers.pickle_stream import DEFAULT_MAX_BYTES, PickleScan, scan_pickle
from nnseal.readers.torch_archive import WEIGHTS_ONLY_OPCODES
from nnseal.scan.dangerous import classify_global, danger_of
from nnseal.scan.findings import Finding, Location, finding

# A pickle larger than this is not walked (a torch data.pkl is well under 1 MiB).
MAX_PICKLE_BYTES = DEFAULT_MAX_BYTES
# nnU-Net's postprocessing decision, (functions, kwargs): what nnUNetv2_apply_postprocessing unpickles.
POSTPROCESSING_PICKLE = "postprocessing.pkl"
# Opcodes that call or construct (or hand a value to a loader hook): a postprocessing pickle needs none.
_CALLING_OPCODES = frozenset({"REDUCE", "BUILD", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "PERSID", "BINPERSID",
                              "EXT1", "EXT2", "EXT4"})


def global_findings(where: Location, scan: PickleScan, label: str) -> list[Finding]:
    """One finding per dangerous global, one listing every other global outside the allowlist."""
    found: list[Finding] = []
    others: list[str] = []
    for name in scan.globals:
        kind = classify_global(name)
        if kind == "dangerous":
            found.append(finding(where, "dangerous-global",
                                 f"{label} imports {name}: {danger_of(name)} (nothing was loaded or run)"))
        elif kind == "not-allowlisted":
            others.append(name)
    if others:
        found.append(finding(where, "global-not-allowlisted",
                             f"{label} imports globals outside the weights_only allowlist: {', '.join(others)}"))
    return found


def structure_findings(where: Location, scan: PickleScan, label: str, *, torch_pickle: bool) -> list[Finding]:
    """Opcodes (only for pickles torch loads) and anomalies."""
    found: list[Finding] = []
    if torch_pickle:
        foreign = sorted(scan.opcodes - WEIGHTS_ONLY_OPCODES)
        if foreign:
            found.append(finding(where, "pickle-opcode",
                                 f"{label} uses pickle opcodes torch.save never writes "
                                 f"(protocol {scan.protocol}): {', '.join(foreign)}"))
    for anomaly in scan.anomalies:
        found.append(finding(where, "pickle-anomaly", f"{label}: {anomaly}"))
    return found


def pickle_findings(where: Location, data: bytes, label: str, *, torch_pickle: bool) -> list[Finding]:
    """Everything wrong with one pickle stream, read statically."""
    if len(data) > MAX_PICKLE_BYTES:
        return [finding(where, "not-checked", f"{label} is {len(data)} bytes, over the {MAX_PICKLE_BYTES}-byte "
                                              "scan limit for pickles")]
    try:
        scan = scan_pickle(data, max_bytes=MAX_PICKLE_BYTES)
    except MalformedPickle as err:
        return [finding(where, "malformed-pickle", f"{label}: {err.reason}")]
    return scan_findings(where, scan, label, torch_pickle=torch_pickle)


def scan_findings(where: Location, scan: PickleScan, label: str, *, torch_pickle: bool) -> list[Finding]:
    return global_findings(where, scan, label) + structure_findings(where, scan, label, torch_pickle=torch_pickle)


def postprocessing_pickle_findings(where: Location, data: bytes) -> list[Finding] | None:
    """A ``postprocessing.pkl`` that only names nnU-Net's own postprocessing functions and builds
    nothing but lists, tuples, dicts, strings and numbers (what ``nnseal install`` rebuilds, and
    what nnU-Net's determine_postprocessing writes): one note. None for any other pickle, which
    then gets the ordinary pickle checks."""
    from nnseal.sanitize.pipeline_json import POSTPROCESSING_FUNCTIONS

    allowed = {f"{module}.{function}" for function, module in POSTPROCESSING_FUNCTIONS.items()}
    try:
        scan = scan_pickle(data, max_bytes=MAX_PICKLE_BYTES)
    except MalformedPickle:
        return None
    if not set(scan.globals) <= allowed or scan.opcodes & _CALLING_OPCODES or scan.anomalies:
        return None
    named = ", ".join(sorted(set(scan.globals))) or "no function"
    return [finding(where, "nnunet-postprocessing",
                    f"nnU-Net postprocessing steps: names {named}, otherwise plain data (nothing is called "
                    "when it is loaded)")]
