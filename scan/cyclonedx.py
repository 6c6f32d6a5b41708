"""CycloneDX 1.6 ML-BOM output: one ``machine-learning-model`` component per model found.

Built with ``cyclonedx-python-lib`` (the optional extra ``nnseal[bom]``), imported only here and
only when a BOM is asked for. What a model is (docs/SCAN.md, "CycloneDX ML-BOM"):

- an nnseal package (zip or folder): its files are the signed entries, with the digests the
  signed manifest records (an unsigned package's entries are hashed as they are);
- an installed model folder (one with ``nnseal-receipt.json``): the receipt's files and digests;
- an nnU-Net model folder (``Trainer__Plans__configuration``) holding fold checkpoints: every
  file the scan read in it, hashed;
- any other checkpoint (a file named like one ``torch.load`` reads) or nnU-Net export zip.

Each file is a nested ``file`` component with its SHA-256. The card's fields, the signer and the
provenance are component properties in the ``nnseal:`` namespace; the versions the model was
trained with are ``framework``/``library`` components the model depends on (and properties).
The library (11.x) has no model-card classes, so the card's fields are properties, not a
``modelCard``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnseal import __version__
from nnseal.errors import EnvironmentProblem, NnsealError, Refused
from nnseal.format.card import METADATA_FIELDS
from nnseal.format.layout import CARD_NAME, MODEL_RE
from nnseal.format.oms import SIGNATURE_NAME
from nnseal.scan.classify import in_model_folder, is_model_name
from nnseal.scan.findings import LEVELS
from nnseal.verify.receipt import RECEIPT_NAME

if TYPE_CHECKING:
    from nnseal.scan.report import ScanReport

BOM_EXTRA = "bom"
SPEC_VERSION = "1.6"
# Property names: nnseal's namespace (docs/SCAN.md lists them).
NS = "nnseal"
# Distributions whose version a card records that are frameworks rather than libraries.
_FRAMEWORKS = frozenset({"torch", "nnunetv2"})


@dataclass
class FoundModel:
    """A model, as the BOM describes it; nothing in it is verified here (the scan verdict says that)."""

    kind: str  # "nnseal-package", "installed-model", "model-folder", "checkpoint" or "nnunet-zip"
    path: str
    name: str
    files: dict[str, str] = field(default_factory=dict)  # name relative to the model -> sha256
    sha256: str | None = None  # the model's own file (a zip package, a checkpoint), when it is one
    card: dict[str, Any] = field(default_factory=dict)  # the card's "model" fields
    dataset: str | None = None
    folders: list[dict] = field(default_factory=list)  # {folder, trainer, plans, configuration, folds}
    provenance: str | None = None  # "signed" or "unsigned"
    signer_fingerprint: str | None = None
    method: str | None = None
    signer: str | None = None
    trained_with: dict[str, dict[str, str]] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)  # further nnseal: properties (scan verdict)


def require_library() -> None:
    try:
        import cyclonedx  # noqa: F401
    except ImportError:
        raise EnvironmentProblem("CycloneDX output needs cyclonedx-python-lib: "
                                 f"pip install 'nnseal[{BOM_EXTRA}]'") from None


# --- what a model is, read from disk -------------------------------------------------------------


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _folders_from_card(models: object) -> list[dict]:
    out = []
    for model in models if isinstance(models, list) else []:
        if isinstance(model, dict) and isinstance(model.get("folder"), str):
            folds = model.get("folds")
            out.append({"folder": model["folder"], "trainer": _text(model.get("trainer")),
                        "plans": _text(model.get("plans")), "configuration": _text(model.get("configuration")),
                        "folds": [str(f) for f in folds] if isinstance(folds, list) else []})
    return out


def _folder_from_name(name: str) -> dict:
    match = MODEL_RE.match(name)
    trainer, plans, configuration = match.groups() if match else (None, None, None)
    return {"folder": name, "trainer": trainer, "plans": plans, "configuration": configuration, "folds": []}


def package_model(path: str | os.PathLike) -> FoundModel:
    """An nnseal package (zip or folder): card, signer and the signed manifest's digests, unverified."""
    from nnseal.compat import read_trained_with
    from nnseal.format.card import parse_card
    from nnseal.format.limits import MAX_BUNDLE_BYTES, MAX_CARD_BYTES
    from nnseal.fsutil import sha256_file
    from nnseal.readers.folder_archive import open_package
    from nnseal.verify.signature import read_bundle_unverified

    path = Path(path)
    found = FoundModel(kind="nnseal-package", path=str(path), name=path.name)
    with open_package(path) as archive:
        if archive.get(CARD_NAME) is not None:
            try:
                card = parse_card(archive.read(CARD_NAME, max_size=MAX_CARD_BYTES + 1))
            except Refused:
                card = {}
            model = _dict(card.get("model"))
            found.card = {k: v for k, v in model.items() if isinstance(v, str) and v}
            found.dataset = _text(card.get("dataset"))
            found.folders = _folders_from_card(card.get("models"))
            found.trained_with = read_trained_with(card.get("trained_with"))
        manifest = None
        if archive.get(SIGNATURE_NAME) is not None:
            try:
                manifest = read_bundle_unverified(archive.read(SIGNATURE_NAME, max_size=MAX_BUNDLE_BYTES + 1))
            except Refused:
                manifest = None
        if manifest is not None:
            found.provenance = "signed"
            found.files = dict(sorted(manifest.resources.items()))
            found.signer_fingerprint, found.method = manifest.signer_fingerprint, manifest.method
            found.signer = manifest.signer or None
        else:
            found.provenance = "unsigned"
            found.files = dict(sorted(archive.sha256_all([n for n in archive.names() if n != SIGNATURE_NAME])
                                      .items()))
    if path.is_file():
        found.sha256 = sha256_file(path)
    found.name = found.card.get("name") or path.name
    return found


def installed_model(folder: str | os.PathLike) -> FoundModel:
    """An installed model folder, as its receipt records it (unverified: `nnseal verify FOLDER` checks drift)."""
    from nnseal.compat import read_trained_with
    from nnseal.verify.receipt import read_receipt

    folder = Path(folder)
    receipt = read_receipt(folder)
    model = _dict(receipt.get("model"))
    found = FoundModel(kind="installed-model", path=str(folder), name=folder.name,
                       files=dict(sorted(receipt["files"].items())),
                       card={k: v for k, v in model.items() if isinstance(v, str) and v},
                       dataset=folder.parent.name or None, folders=[_folder_from_name(folder.name)],
                       provenance=_text(receipt.get("provenance")),
                       signer_fingerprint=_text(receipt.get("signer_fingerprint")),
                       method=_text(receipt.get("method")), signer=_text(receipt.get("signer")),
                       trained_with=read_trained_with(receipt.get("trained_with")))
    for key in ("package", "package_sha256", "content_sha256"):
        if _text(receipt.get(key)):
            found.extra[f"{NS}:receipt:{key}"] = receipt[key]
    return found


def model_folder(folder: str | os.PathLike, files: Iterable[str | os.PathLike]) -> FoundModel:
    """An nnU-Net model folder (not installed by nnseal): ``files`` (paths inside it) hashed as they are."""
    from nnseal.fsutil import sha256_file

    folder = Path(folder)
    hashed = {Path(f).relative_to(folder).as_posix(): sha256_file(f) for f in files}
    return FoundModel(kind="model-folder", path=str(folder), name=folder.name, files=dict(sorted(hashed.items())),
                      dataset=folder.parent.name or None, folders=[_folder_from_name(folder.name)])


def single_file_model(path: str | os.PathLike, kind: str) -> FoundModel:
    from nnseal.fsutil import sha256_file

    path = Path(path)
    digest = sha256_file(path)
    return FoundModel(kind=kind, path=str(path), name=path.name, files={path.name: digest}, sha256=digest)


# --- the models a scan found -------------------------------------------------------------------


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _model_folder_of(path: Path) -> Path | None:
    """The ``Trainer__Plans__configuration`` folder a fold checkpoint lies in, if it does."""
    for parent in path.parents:
        if MODEL_RE.match(parent.name):
            return parent
    return None


def models_in_scan(report: ScanReport) -> list[FoundModel]:
    """The models among what ``report`` scanned (files on disk), each with the scan's verdict on it."""
    on_disk = [s for s in report.scanned if s.member is None]
    paths = [s.path for s in on_disk]
    found: list[FoundModel] = []
    roots: list[str] = []

    def claimed(path: str) -> bool:
        return any(_under(path, root) for root in roots)

    for scanned in on_disk:  # packages and installed folders first: they say what their files are
        path = Path(scanned.path)
        try:
            if scanned.kind == "nnseal-package":
                found.append(package_model(path))
            elif path.name == CARD_NAME and str(path.parent / SIGNATURE_NAME) in paths:
                found.append(package_model(path.parent))
            elif path.name == RECEIPT_NAME:
                found.append(installed_model(path.parent))
            else:
                continue
        except NnsealError as err:  # not readable as one: the scan's findings say why
            found.append(FoundModel(kind="unreadable", path=scanned.path, name=path.name,
                                    extra={f"{NS}:error": err.reason}))
        roots.append(found[-1].path)
    folders = {folder for s in on_disk if not claimed(s.path) and in_model_folder(s.path)
               and (folder := _model_folder_of(Path(s.path))) is not None}
    for scanned in on_disk:
        path = Path(scanned.path)
        if claimed(scanned.path) or any(_under(scanned.path, str(folder)) for folder in folders):
            continue
        if scanned.kind == "nnunet-zip":
            found.append(single_file_model(path, "nnunet-zip"))
        elif is_model_name(path.name):
            found.append(single_file_model(path, "checkpoint"))
    for folder in sorted(folders):  # every file the scan read in the folder, checkpoints and JSON alike
        found.append(model_folder(folder, [p for p in paths if _under(p, str(folder)) and not claimed(p)]))
    for model in found:
        findings = [f for f in report.findings if _under(f.path, model.path)]
        worst = max((LEVELS.index(f.level) for f in findings), default=None)
        model.extra[f"{NS}:scan:verdict"] = "clean" if worst is None else str(LEVELS[worst])
        model.extra[f"{NS}:scan:findings"] = str(len(findings))
    return found


# --- the BOM ---------------------------------------------------------------------------------


def _properties(model: FoundModel) -> dict[str, str]:
    props: dict[str, str] = {f"{NS}:kind": model.kind, f"{NS}:path": model.path}
    for key in (*METADATA_FIELDS, "created"):
        if key in model.card:
            props[f"{NS}:card:{key}"] = model.card[key]
    if model.dataset:
        props[f"{NS}:card:dataset"] = model.dataset
    for i, folder in enumerate(model.folders):
        for key in ("folder", "trainer", "plans", "configuration"):
            if folder.get(key):
                props[f"{NS}:model:{i}:{key}"] = folder[key]
        if folder.get("folds"):
            props[f"{NS}:model:{i}:folds"] = ",".join(folder["folds"])
    for key, value in (("provenance", model.provenance), ("signer:fingerprint", model.signer_fingerprint),
                       ("signer:method", model.method), ("signer", model.signer)):
        if value:
            props[f"{NS}:{key}"] = value
    for name, entry in sorted(model.trained_with.items()):
        props[f"{NS}:trained_with:{name}"] = entry["version"]
        props[f"{NS}:trained_with:{name}:source"] = entry["source"]
    props.update(model.extra)
    return props


def build_bom(models: Iterable[FoundModel]) -> Any:
    """A ``cyclonedx.model.bom.Bom`` of ``models`` (EnvironmentProblem without ``nnseal[bom]``)."""
    require_library()
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.license import DisjunctiveLicense
    from packageurl import PackageURL

    bom = Bom()
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="nnseal", version=__version__,
                                                 bom_ref="nnseal-tool"))
    frameworks: dict[tuple[str, str], Any] = {}
    for index, model in enumerate(models):
        ref = f"model-{index}"
        files = [Component(type=ComponentType.FILE, name=name, bom_ref=f"{ref}/file:{name}",
                           hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest)])
                 for name, digest in model.files.items()]
        licence = model.card.get("licence")
        component = Component(
            type=ComponentType.MACHINE_LEARNING_MODEL, name=model.name, bom_ref=ref,
            version=model.card.get("release"), description=model.card.get("description"),
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=model.sha256)] if model.sha256 else None,
            licenses=[DisjunctiveLicense(name=licence)] if licence else None,
            properties=[Property(name=k, value=v) for k, v in _properties(model).items()],
            components=files)
        bom.components.add(component)
        used = []
        for name, entry in sorted(model.trained_with.items()):
            key = (name, entry["version"])
            if key not in frameworks:
                purl = PackageURL(type="pypi", name=name, version=entry["version"])
                frameworks[key] = Component(
                    type=ComponentType.FRAMEWORK if name in _FRAMEWORKS else ComponentType.LIBRARY,
                    name=name, version=entry["version"], purl=purl, bom_ref=purl.to_string())
                bom.components.add(frameworks[key])
            used.append(frameworks[key])
        bom.register_dependency(component, used)
    for framework in frameworks.values():
        bom.register_dependency(framework, [])
    return bom


def bom_json(models: Iterable[FoundModel]) -> str:
    """The CycloneDX 1.6 JSON document of ``models``."""
    bom = build_bom(models)
    from cyclonedx.output.json import JsonV1Dot6

    return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"
