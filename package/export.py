"""Export: trained nnU-Net model folders -> one signed nnseal package (a zip, or a folder).

Each checkpoint is sanitized and streamed into the zip as safetensors, hashed as it is
written; JSON files are cleaned; the card and the OMS signature close the archive. The
zip appears under its final name only when complete and signed. The folder form
(``as_folder``) runs the same pipeline into files instead of entries (``folderwriter.py``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from nnseal import __version__
from nnseal.errors import ModelLayoutError, from_os_error
from nnseal.format.card import (
    METADATA_FIELDS,
    CheckpointRecord,
    ModelRecord,
    build_card,
    card_bytes,
    format_created,
)
from nnseal.format.layout import CARD_NAME
from nnseal.fsutil import atomic_folder, atomic_output
from nnseal.package import model_folder as layout
from nnseal.package.folderwriter import FolderWriter
from nnseal.package.zipwriter import DeterministicZipWriter
from nnseal.progress import CountingWriter, overall_bar

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from nnseal.package.sigstore_signing import SigstoreSigner

T = TypeVar("T")
R = TypeVar("R")



@dataclass
class ExportReport:
    output: str
    entries: list[dict] = field(default_factory=list)  # {name, bytes, sha256}, in the zip's order
    models: list[dict] = field(default_factory=list)
    signer_fingerprint: str = ""
    source_bytes: int = 0
    package_bytes: int = 0
    removed_bytes: int = 0  # sources minus sanitized checkpoints: what sanitizing saved
    # What the model folders hold and the package does not (another fold or checkpoint, a fold
    # without a checkpoint, a name nnU-Net does not write), one note each: nothing is dropped silently.
    notes: list[layout.Note] = field(default_factory=list)
    pipeline: list[str] = field(default_factory=list)  # find_best_configuration's files shipped (package/pipeline.py)
    skipped: list[str] = field(default_factory=list)  # "path: why" for those not shipped
    method: str = "key"  # the OMS method: "key", "certificate" or "sigstore"
    signer: str = ""  # who signed, in words

    def to_json(self) -> dict:
        """In the vocabulary every command's JSON shares (docs/JSON.md): ``entries`` a list, folds as
        text, a checkpoint's dropped keys as ``dropped_keys`` (the card itself says ``removed``)."""
        return {
            "package": self.output, "signer_fingerprint": self.signer_fingerprint, "signer_name": None,
            "method": self.method, "signer": self.signer,
            "source_bytes": self.source_bytes, "package_bytes": self.package_bytes,
            "entries_bytes": sum(e["bytes"] for e in self.entries),
            "bytes_saved": self.removed_bytes, "entries": self.entries,
            "models": [_model_json(m) for m in self.models],
            "notes": [str(note) for note in self.notes],
            "pipeline": self.pipeline, "skipped": self.skipped,
        }


def _model_json(record: dict) -> dict:
    def checkpoint(c: dict) -> dict:
        out = {k: v for k, v in c.items() if k != "removed"}
        out["dropped_keys"] = c.get("removed", [])
        kept = dict(c.get("kept") or {})
        if kept.get("fold") is not None:
            kept["fold"] = str(kept["fold"])
        out["kept"] = kept
        return out

    return {**record, "checkpoints": [checkpoint(c) for c in record.get("checkpoints", [])]}


def export_model_to_zip(input_folder: str | os.PathLike | Sequence[str | os.PathLike], output_file: str | os.PathLike,
                        *, key: str | os.PathLike | ec.EllipticCurvePrivateKey | None = None,
                        passphrase: bytes | None = None,
                        folds: Sequence[str | int] | None = None, checkpoints: Sequence[str] | None = None,
                        metadata: dict | None = None, include_progress: bool = False, force: bool = False,
                        progress: bool = False, created: datetime | int | float | None = None,
                        certificate: str | os.PathLike | x509.Certificate | None = None,
                        certificate_chain: Sequence[str | os.PathLike | x509.Certificate] = (),
                        as_folder: bool = False, sigstore: SigstoreSigner | None = None) -> ExportReport:
    """Sanitize, package and sign one or more model folders of one dataset into ``output_file``.

    ``as_folder``: write the package as a folder (``output_file`` is its path) instead of a zip:
    the same entries as files of the same names and bytes, ``model.sig`` among them, the form
    OpenSSF Model Signing verifies as it is and a model hub stores file by file. The folder
    appears complete or not at all; an existing one that is not empty is replaced only with ``force``.

    ``key`` is a PEM private key path (``passphrase`` unlocks an encrypted one) or a loaded
    ECDSA private key. ``folds`` defaults to every fold folder present, ``checkpoints`` to
    checkpoint_final and checkpoint_best (``nnseal.format.layout.DEFAULT_CHECKPOINTS``);
    whatever is left out is listed in the report's ``notes``. A cascade stage is exported only
    with its previous stage's model folder. ``metadata`` overrides name/description/licence/reference/release,
    which otherwise come from dataset.json. ``created`` (an aware datetime, or seconds since the
    epoch as in SOURCE_DATE_EPOCH) is the card's ``model.created``; by default the newest
    exported checkpoint's mtime, never the clock, so exporting the same files again gives
    the same bytes. Install compares it (after the release) to refuse rollbacks.

    With ``certificate`` (PEM path or loaded) the package is signed by the OMS certificate
    method: the bundle carries that certificate, which must be for ``key``, and the
    certificates of ``certificate_chain`` (PEM files, intermediates first). ``key`` may also be
    a PKCS#11 key from ``nnseal.package.pkcs11_signing.open_pkcs11_key``. With ``sigstore``
    (``nnseal.package.sigstore_signing.open_sigstore_signer``) the package is signed by the OMS
    Sigstore method and ``key`` is unused.
    """
    from nnseal.format.keys import fingerprint, signing_key
    from nnseal.format.oms import SIGNATURE_NAME, build_statement
    from nnseal.package.pipeline import collect_pipeline_files
    from nnseal.package.signing import sign_manifest
    from nnseal.sanitize.checkpoint import load_sanitized, write_sanitized
    from nnseal.sanitize.jsonclean import KIND_BY_FILE_NAME, clean_json_file

    # Unlock the key first: a wrong passphrase should cost nothing.
    private_key = signing_key(key, passphrase) if sigstore is None else None
    certificates: list[x509.Certificate] = []
    if certificate is not None and private_key is not None:
        from nnseal.package.signing import check_certificate_matches, load_signing_certificates

        certificates = load_signing_certificates(certificate, certificate_chain)
        check_certificate_matches(certificates[0], private_key)
    models = _collect_models(input_folder, folds, checkpoints)
    # Before the zip exists: a refused postprocessing.json costs nothing.
    pipeline = collect_pipeline_files(models[0].path.parent, [m.relative.split("/")[1] for m in models])
    created_text = format_created(created if created is not None else _newest_mtime(models))
    dataset = models[0].dataset
    output = Path(output_file)
    report = ExportReport(output=str(output), notes=[note for m in models for note in m.notes])
    if sigstore is not None:
        report.method = "sigstore"
    elif certificates:
        report.method = "certificate"
        report.signer_fingerprint = certificates[0].fingerprint(hashes.SHA256()).hex()
        report.signer = (f"certificate {certificates[0].subject.rfc4514_string()} "
                         f"issued by {certificates[0].issuer.rfc4514_string()}")
    elif private_key is not None:
        report.signer_fingerprint = fingerprint(private_key.public_key())
        report.signer = f"key {report.signer_fingerprint}"
    records: list[ModelRecord] = []
    card_metadata: dict = {}

    sources = [c.source for m in models for c in m.checkpoints]
    loads = _prefetched(load_sanitized, sources)
    # The overall display counts source bytes, known before anything is read.
    shown = overall_bar(progress, sum(source.stat().st_size for source in sources), len(sources), "export",
                        item_bars=True)
    with _package_output(output, force=force, as_folder=as_folder) as target, contextlib.closing(loads), \
            shown as overall:
        with _package_writer(target, as_folder=as_folder) as writer:
            for model in models:
                record = ModelRecord(folder=model.relative, trainer=model.trainer, plans=model.plans,
                                     configuration=model.configuration, folds=model.folds)
                for json_name, kind in KIND_BY_FILE_NAME.items():
                    source = model.path / json_name
                    if not source.is_file():
                        continue  # plans.json and dataset.json were checked by parse_model_folder
                    cleaned = clean_json_file(kind, source.read_bytes(), name=str(source))
                    writer.add_bytes(f"{model.relative}/{json_name}", cleaned.to_bytes(), compress=True)
                    record.json_findings[json_name] = [vars(f) for f in cleaned.findings]
                    if kind == "dataset" and not card_metadata:
                        card_metadata = {k: cleaned.data.get(k) for k in METADATA_FIELDS
                                         if isinstance(cleaned.data, dict) and isinstance(cleaned.data.get(k), str)}
                for checkpoint in model.checkpoints:
                    entry = layout.checkpoint_entry(model, checkpoint)
                    sanitized = next(loads)
                    _check_matches_folder(sanitized.meta, model, checkpoint)
                    source_bytes = sanitized.report.source_bytes
                    label = f"{checkpoint.fold_dir}/{checkpoint.name}"
                    expected = sum(t.numel() * t.element_size() for t in sanitized.tensors.values())
                    with overall.item(label, checkpoint.source.stat().st_size, expected) as bar:
                        with writer.entry(entry, compress=False) as sink:
                            write_sanitized(sanitized, CountingWriter(sink, bar))
                    size = writer.sizes[entry]
                    record.checkpoints.append(CheckpointRecord(
                        entry=entry, fold=checkpoint.fold, checkpoint=checkpoint.name,
                        source_sha256=sanitized.report.source_sha256, source_bytes=source_bytes, bytes=size,
                        tensors=len(sanitized.tensors), names=len(sanitized.names),
                        removed=list(sanitized.report.dropped_keys), kept=dict(sanitized.meta)))
                    report.source_bytes += source_bytes
                    report.removed_bytes += max(source_bytes - size, 0)
                    del sanitized  # at most one checkpoint in memory
                    if include_progress:
                        png = model.path / checkpoint.fold_dir / "progress.png"
                        png_entry = f"{model.relative}/{checkpoint.fold_dir}/progress.png"
                        if png.is_file() and png_entry not in writer.digests:
                            writer.add_bytes(png_entry, png.read_bytes(), compress=False)
                records.append(record)

            for name, data in pipeline.entries:
                writer.add_bytes(name, data, compress=True)
            report.pipeline = [name for name, _ in pipeline.entries]
            report.skipped = list(pipeline.skipped)

            merged = dict(card_metadata)
            merged.update({k: v for k, v in (metadata or {}).items() if v is not None})
            card = build_card(dataset=dataset, metadata=merged, models=records, versions=_versions(),
                              created=created_text, trained_with=_trained_with(models))
            writer.add_bytes(CARD_NAME, card_bytes(card), compress=True)
            if sigstore is not None:
                bundle = sigstore.sign_statement(build_statement(dataset, dict(writer.digests)))
                report.signer_fingerprint, report.signer = sigstore.fingerprint, sigstore.description
            else:
                bundle = sign_manifest(dataset, dict(writer.digests), cast("ec.EllipticCurvePrivateKey", private_key),
                                       certificates=certificates)
            writer.add_bytes(SIGNATURE_NAME, bundle, compress=True)
            report.entries = [{"name": name, "bytes": writer.sizes[name], "sha256": digest}
                              for name, digest in writer.digests.items()]
    report.package_bytes = sum(writer.sizes.values()) if as_folder else output.stat().st_size
    report.models = [r.to_json() for r in records]
    return report


def export_model_to_folder(input_folder: str | os.PathLike | Sequence[str | os.PathLike],
                           output_folder: str | os.PathLike, **options) -> ExportReport:
    """``export_model_to_zip(..., as_folder=True)``: the package as a folder of files plus ``model.sig``."""
    return export_model_to_zip(input_folder, output_folder, as_folder=True, **options)


@contextlib.contextmanager
def _package_output(output: Path, *, force: bool, as_folder: bool) -> Iterator[Any]:
    """Where the package goes: a file handle (zip) or an empty folder, published whole when the block ends."""
    with atomic_folder(output, force=force) if as_folder else atomic_output(output, force=force) as target:
        yield target


def _package_writer(target: Any, *, as_folder: bool) -> DeterministicZipWriter | FolderWriter:
    """The same entries, in the same order, into a deterministic zip or into files."""
    return FolderWriter(target) if as_folder else DeterministicZipWriter(target)


def _prefetched(function: Callable[[T], R], items: list[T]) -> Generator[R, None, None]:
    """Yield ``function(item)`` in order, computing the next item's result in a thread meanwhile.

    Loading a checkpoint is mostly hashing and reading its source, which release the GIL:
    checkpoint k+1 loads on a second core while checkpoint k is written. At most two
    are held at once; an error surfaces when its item is reached, as without prefetching.
    """
    if not items:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nnseal-load") as pool:
        upcoming: Future[R] | None = pool.submit(function, items[0])
        try:
            for following in [*items[1:], None]:
                current, upcoming = cast("Future[R]", upcoming), None
                if current.exception() is not None:  # waits; a refusal stops here, nothing more is loaded
                    current.result()
                if following is not None:
                    upcoming = pool.submit(function, following)
                yield current.result()
        finally:
            if upcoming is not None:
                upcoming.cancel()


def _collect_models(input_folder, folds, checkpoints) -> list[layout.ModelFolder]:
    folders = [input_folder] if isinstance(input_folder, (str, os.PathLike)) else list(input_folder)
    if not folders:
        raise ModelLayoutError("no model folder given")
    models = [layout.select_checkpoints(layout.parse_model_folder(f), list(folds or []), list(checkpoints or []))
              for f in folders]
    datasets = sorted({m.dataset for m in models})
    if len(datasets) > 1:
        raise ModelLayoutError(f"one package holds one dataset; got {', '.join(datasets)}")
    seen = set()
    for m in models:
        if m.relative in seen:
            raise ModelLayoutError("model folder given twice", path=m.path)
        seen.add(m.relative)
    layout.check_cascades(models)
    return models


def _newest_mtime(models: list[layout.ModelFolder]) -> int:
    """The default ``model.created``: when the newest exported checkpoint was written."""
    try:
        return max(int(c.source.stat().st_mtime) for m in models for c in m.checkpoints)
    except OSError as err:
        raise from_os_error(err) from err


def _check_matches_folder(meta: dict, model: layout.ModelFolder, checkpoint: layout.Checkpoint) -> None:
    """A checkpoint must belong where it lies: nnU-Net builds the network from the folder's plans."""
    if meta.get("configuration") != model.configuration:
        raise ModelLayoutError(f"checkpoint says configuration {meta.get('configuration')!r} but lies in a "
                               f"{model.configuration!r} model folder", path=checkpoint.source)
    if meta.get("trainer_name") != model.trainer:
        raise ModelLayoutError(f"checkpoint says trainer {meta.get('trainer_name')!r} but lies in a "
                               f"{model.trainer!r} model folder", path=checkpoint.source)
    if str(meta.get("fold")) != checkpoint.fold:  # install refuses the same (verify/consistency.py)
        raise ModelLayoutError(f"checkpoint says fold {meta.get('fold')!r} but lies in {checkpoint.fold_dir}",
                               path=checkpoint.source)


def _versions() -> dict[str, str]:
    import torch

    return {"nnseal": __version__, "torch": torch.__version__.split("+")[0]}


def _trained_with(models: list[layout.ModelFolder]) -> dict[str, dict[str, str]]:
    """What the exported folds were trained with: their debug.json where it says, else this environment."""
    from nnseal.compat import training_versions

    return training_versions(sorted({c.source.parent for m in models for c in m.checkpoints}))
