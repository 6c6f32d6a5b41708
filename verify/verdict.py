"""Whether a package is acceptable: the one decision `verify`, `scan` and `install` share.

``judge_package`` reads a package's signature, entry names, layout, card, JSON entries and
checkpoint headers (each checkpoint's trainer, configuration and fold must be its folder's,
and the folder's plans and configuration plans.json's), and returns every problem it finds.
``verify_package`` reports them (and adds each entry's hash against the signed manifest),
scan maps their kinds to rules, and install refuses on the first one, raising the error that check raised, before it
extracts a byte. So a package verify or scan passes is one install takes, apart from the
destination, and the other way round. Torch-free.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from nnseal.errors import NnsealError, Refused, SignatureError, TamperedPackage, UnsafeJson, UntrustedSigner
from nnseal.format.card import parse_card
from nnseal.format.layout import CARD_NAME, EntryKind, PackageEntry, classify, classify_all
from nnseal.format.limits import MAX_BUNDLE_BYTES, MAX_CARD_BYTES, MAX_JSON_BYTES
from nnseal.format.oms import SIGNATURE_NAME, SignedManifest
from nnseal.format.trust import TrustAnchors
from nnseal.readers.folder_archive import PackageReader
from nnseal.verify.problems import Problem, ProblemKind

# find_best_configuration's JSON (docs/FORMAT.md, "The nnU-Net pipeline"), checked like the model JSON.
PIPELINE_KINDS = (EntryKind.POSTPROCESSING, EntryKind.SUMMARY, EntryKind.INFERENCE)


class SignatureStatus(str, Enum):
    VALID = "valid"  # verified by a trusted key
    UNTRUSTED = "untrusted"  # signed by a key that is not trusted
    INVALID = "invalid"  # the bundle or its signature is broken or altered
    MISSING = "missing"  # no model.sig

    def __str__(self) -> str:
        return self.value


@dataclass
class Verdict:
    """What ``judge_package`` found. ``manifest`` is the verified one when ``signature`` is
    VALID, else the bundle's unverified claim (for reporting), or None."""

    signature: SignatureStatus = SignatureStatus.MISSING
    manifest: SignedManifest | None = None
    entries: list[PackageEntry] = field(default_factory=list)  # classified; empty when the layout is broken
    card: dict | None = None
    json: dict[str, Any] = field(default_factory=dict)  # entry name -> parsed JSON (signed bytes only)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.signature is SignatureStatus.VALID and not self.problems

    def add(self, kind: ProblemKind, error: NnsealError, subject: str | None = None, *,
            message: str | None = None) -> None:
        self.problems.append(Problem(kind, message or error.reason, subject, error))


def judge_package(archive: PackageReader, trusted_keys: Sequence[ec.EllipticCurvePublicKey],
                  anchors: TrustAnchors | None = None) -> Verdict:
    """Every reason ``archive`` (an nnseal package: a zip or a folder) is not acceptable, in the order
    install meets them.

    ``anchors`` (trusted CAs and Sigstore identities) verify the certificate and Sigstore methods."""
    from nnseal.verify.signature import read_bundle_unverified, verify_bundle

    verdict = Verdict()
    names = [n for n in archive.names() if n != SIGNATURE_NAME]
    signature = archive.get(SIGNATURE_NAME)
    if signature is None:
        verdict.add(ProblemKind.UNSIGNED, SignatureError(f"no {SIGNATURE_NAME}: the package is not signed"))
    else:
        # One byte over the limit, so that the parser says "larger than" rather than the zip reader.
        bundle = archive.read(signature, max_size=MAX_BUNDLE_BYTES + 1)
        try:
            verdict.manifest = verify_bundle(bundle, trusted_keys, anchors=anchors)
            verdict.signature = SignatureStatus.VALID
        except UntrustedSigner as err:
            verdict.signature = SignatureStatus.UNTRUSTED
            verdict.add(ProblemKind.UNTRUSTED_SIGNER, err, message=f"unknown signer: {err.reason}")
        except SignatureError as err:
            verdict.signature = SignatureStatus.INVALID
            verdict.add(ProblemKind.BAD_SIGNATURE, err, message=f"bad signature: {err.reason}")
        if verdict.manifest is None:
            try:  # still compare names and hashes, so a report shows everything that is wrong
                verdict.manifest = read_bundle_unverified(bundle)
            except SignatureError:
                pass
    resources = verdict.manifest.resources if verdict.manifest is not None else None
    if resources is not None:
        for name in sorted(set(names) - set(resources)):
            verdict.add(ProblemKind.EXTRA_ENTRY, TamperedPackage(f"extra entry not in the signed manifest: {name}"),
                        name)
        for name in sorted(set(resources) - set(names)):
            verdict.add(ProblemKind.MISSING_ENTRY, TamperedPackage(f"missing entry: {name}"), name)
    _judge_layout(verdict, names)
    for entry in verdict.entries:
        if entry.kind is EntryKind.CARD:
            _judge_card(verdict, archive, resources)
        elif entry.kind is EntryKind.JSON:
            _judge_json(verdict, archive, entry, resources)
            if entry.filename == "plans.json":
                _judge_plans(verdict, entry)
        elif entry.kind in PIPELINE_KINDS:
            _judge_json(verdict, archive, entry, resources)
    for entry in verdict.entries:
        if entry.kind is EntryKind.INFERENCE:
            _judge_inference(verdict, entry)
    for entry in verdict.entries:
        if entry.kind is EntryKind.CHECKPOINT:
            _judge_checkpoint(verdict, archive, entry)
    return verdict


def json_entry_data(entry: PackageEntry, data: bytes) -> Any:
    """A package JSON entry, parsed; refused (UnsafeJson) unless export's cleaning would leave it
    exactly as it is: a package's JSON needs no cleaning (no paths, no foreign classes)."""
    from nnseal.sanitize.jsonclean import KIND_BY_FILE_NAME, PIPELINE_KIND_BY_FILE_NAME, clean_json_file

    kinds = PIPELINE_KIND_BY_FILE_NAME if entry.kind in PIPELINE_KINDS else KIND_BY_FILE_NAME
    cleaned = clean_json_file(kinds[entry.filename or ""], data, name=entry.name)
    if cleaned.findings:
        finding = cleaned.findings[0]
        raise UnsafeJson(f"entry '{entry.name}': {finding.path}: {finding.detail} (a package's JSON must "
                         "need no cleaning)")
    return cleaned.data


def check_checkpoint_header(fileobj, size: int, *, name: str) -> dict:
    """A checkpoint entry's safetensors header and nnseal metadata, checked as install reads them;
    returns the checkpoint metadata (trainer_name, configuration, fold, ...)."""
    from nnseal.errors import InvalidSafetensors
    from nnseal.format.checkpoint_meta import read_metadata
    from nnseal.readers.safetensors_header import read_header

    try:
        header = read_header(fileobj, size, source=name)
        return read_metadata(header.metadata, path=name, stored=header.tensors)[2]
    except InvalidSafetensors as err:
        raise InvalidSafetensors(f"entry '{name}': {err.reason}") from None


# --- the checks ----------------------------------------------------------------------------


def _judge_layout(verdict: Verdict, names: list[str]) -> None:
    layout_ok = True
    for name in names:
        try:
            classify(name)
        except Refused as err:
            verdict.add(ProblemKind.LAYOUT, err, name)
            layout_ok = False
    if layout_ok:
        try:  # one dataset, plans.json, dataset.json and a checkpoint per model folder
            verdict.entries = classify_all(names)
        except Refused as err:
            verdict.add(ProblemKind.LAYOUT, err)


def _signed_bytes(verdict: Verdict, archive: PackageReader, entry: Any, resources: dict[str, str] | None,
                  limit: int) -> bytes | None:
    """The entry's bytes when they are what the manifest signs (hashing reports the rest)."""
    if entry.size > limit:
        verdict.add(ProblemKind.CONTENT, TamperedPackage(
            f"entry '{entry.name}' is over {limit} bytes, too large for a JSON file"), entry.name)
        return None
    data = archive.read(entry, max_size=limit)
    if resources is None or resources.get(entry.name) != hashlib.sha256(data).hexdigest():
        return None
    return data


def _judge_card(verdict: Verdict, archive: PackageReader, resources: dict[str, str] | None) -> None:
    data = _signed_bytes(verdict, archive, archive.entry(CARD_NAME), resources, MAX_CARD_BYTES)
    if data is None:
        return
    try:
        verdict.card = parse_card(data, path=CARD_NAME)
    except Refused as err:
        verdict.add(ProblemKind.FORMAT, err, CARD_NAME)


def _judge_json(verdict: Verdict, archive: PackageReader, entry: PackageEntry,
                resources: dict[str, str] | None) -> None:
    data = _signed_bytes(verdict, archive, archive.entry(entry.name), resources, MAX_JSON_BYTES)
    if data is None:
        return
    try:
        verdict.json[entry.name] = json_entry_data(entry, data)
    except Refused as err:
        verdict.add(ProblemKind.CONTENT, err, entry.name)


def _judge_checkpoint(verdict: Verdict, archive: PackageReader, entry: PackageEntry) -> None:
    from nnseal.verify.consistency import check_checkpoint_matches_model

    member = archive.entry(entry.name)
    try:
        meta = check_checkpoint_header(_HeaderReader(archive, member), member.size, name=entry.name)
        # nnU-Net runs a checkpoint as its folder says, never as the checkpoint says: they must agree.
        check_checkpoint_matches_model(meta, entry.model or "", entry.fold or "", name=entry.name)
    except Refused as err:
        verdict.add(ProblemKind.CONTENT, err, entry.name)


def _judge_plans(verdict: Verdict, entry: PackageEntry) -> None:
    """The folder's plans identifier and configuration must be plans.json's (signed bytes only)."""
    from nnseal.verify.consistency import check_plans_match_model

    if entry.name not in verdict.json:
        return  # unsigned, altered or refused bytes: reported already
    try:
        check_plans_match_model(verdict.json[entry.name], entry.model or "", name=entry.name)
    except Refused as err:
        verdict.add(ProblemKind.CONTENT, err, entry.name)


def _judge_inference(verdict: Verdict, entry: PackageEntry) -> None:
    """inference_information.json recommends what the package holds: its models, its postprocessing, its plans."""
    if entry.name not in verdict.json:
        return  # unsigned, altered or refused bytes: reported already
    try:
        check_inference_references(verdict.json[entry.name], {e.name for e in verdict.entries}, name=entry.name)
    except Refused as err:
        verdict.add(ProblemKind.CONTENT, err, entry.name)


def check_inference_references(data: Any, names: set[str], *, name: str) -> None:
    """Refuse (UnsafeJson) a cleaned inference_information.json that names a file or model outside ``names``."""
    from nnseal.sanitize.pipeline_json import selected_models

    best = data["best_model_or_ensemble"]
    dataset = name.split("/")[0]
    pp_json = best["postprocessing_file"].removesuffix(".pkl") + ".json"
    if not pp_json.startswith(dataset + "/") or pp_json not in names:
        raise UnsafeJson(f"entry '{name}': postprocessing_file names {best['postprocessing_file']!r}, whose "
                         "postprocessing.json the package lacks")
    if not best["some_plans_file"].startswith(dataset + "/") or best["some_plans_file"] not in names:
        raise UnsafeJson(f"entry '{name}': some_plans_file names {best['some_plans_file']!r}, which the package lacks")
    for model in selected_models(data):
        if f"{dataset}/{model}/plans.json" not in names:
            raise UnsafeJson(f"entry '{name}': recommends model folder {model!r}, which the package lacks")


class _HeaderReader(io.RawIOBase):
    """``read(n)`` over the first bytes of an entry: enough for a safetensors header, no more."""

    def __init__(self, archive: PackageReader, entry: Any):
        self._chunks = archive.stream(entry)
        self._buffer = bytearray()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        taken = bytes(self._buffer if size < 0 else self._buffer[:size])
        del self._buffer[:len(taken)]
        return taken
