"""Sanitize one nnU-Net checkpoint: check it, load it the restricted way, keep what inference needs.

Order matters: the file is inspected statically (nnseal.readers.torch_archive) before torch sees it, loaded
with ``torch.load(weights_only=True, mmap=True)`` plus the numpy allowlist, and every
tensor is checked from its metadata (tensors.py) before any of its bytes are copied.
There is no fallback: whatever fails is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import numbers
import os
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnseal.errors import EnvironmentProblem, NnsealError, UnsafeCheckpoint, from_os_error
from nnseal.format.checkpoint_meta import build_metadata
from nnseal.format.strict_json import show
from nnseal.fsutil import ByteSink, HashingWriter, atomic_output, sha256_file
from nnseal.readers.torch_archive import ArchiveInfo, inspect_checkpoint
from nnseal.sanitize import tensors as tensor_checks
from nnseal.sanitize.safetensors_io import safetensors_dtype, write_safetensors

if TYPE_CHECKING:
    import torch

# Top-level keys of nnUNetTrainer.save_checkpoint that survive; current_epoch is kept
# only as metadata (a later stage puts it back into the rebuilt checkpoint).
KEPT_KEYS = ("network_weights", "trainer_name", "init_args", "inference_allowed_mirroring_axes", "current_epoch")
KEPT_INIT_ARGS = ("configuration", "fold")
MAX_CONFIGURATION_CHARS = 128


@dataclass
class SanitizeReport:
    """What sanitizing kept, dropped and saved; ``to_json`` is the ``--json`` output."""

    source: str
    source_sha256: str
    source_bytes: int
    tensors: int  # stored once each
    names: int  # every network_weights name
    aliases: int  # names stored as a reference to another
    tensor_bytes: int
    dropped_keys: list[str]
    kept_metadata: dict[str, Any]
    stripped_prefix: str | None
    dtypes: dict[str, int] = field(default_factory=dict)  # safetensors dtype -> stored tensors
    output: str | None = None
    output_sha256: str | None = None
    output_bytes: int = 0

    @property
    def bytes_saved(self) -> int:
        return self.source_bytes - self.output_bytes if self.output is not None else 0

    def to_json(self) -> dict:
        data = asdict(self)
        data["bytes_saved"] = self.bytes_saved
        # Folds are text in every JSON output (nnU-Net's folder suffix: "0", "all"); the checkpoint stores an int.
        fold = data["kept_metadata"].get("fold")
        if fold is not None:
            data["kept_metadata"]["fold"] = str(fold)
        return data


@dataclass
class SanitizedCheckpoint:
    tensors: dict[str, torch.Tensor]  # unique, contiguous, CPU, in first-occurrence order
    aliases: dict[str, str]  # alias -> stored name
    names: list[str]  # every network_weights name, original order, prefixes stripped
    meta: dict[str, Any]  # trainer_name, configuration, fold, inference_allowed_mirroring_axes, current_epoch
    report: SanitizeReport


# --- loading -------------------------------------------------------------------------


def _first_line(err: Exception) -> str:
    text = str(err)
    # torch's weights-only refusal buries the reason after a long preamble.
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__)[:300]


def check_torch_reads_the_same(path: Path, info: ArchiveInfo) -> None:
    """Refuse unless torch's own zip reader sees the archive nnseal checked: same records, same data
    offsets and sizes, same data.pkl bytes.

    nnseal's reader refuses every archive it knows to have a second reading (docs/FORMAT.md section 1),
    so on an accepted file this never fires. It exists because that rule set is a model of miniz, torch's
    reader, written from its source: if a torch release reads some corner differently, the static checks
    would have passed on bytes torch does not load. This compares what torch itself reports, so sanitize
    loads what it checked even then (tests/test_zip_agreement.py shows it refusing a hidden archive on its own).
    """
    import torch

    prefix = f"{info.prefix}/"
    expected = {name[len(prefix):]: where for name, where in info.records.items()}
    try:
        reader = torch._C.PyTorchFileReader(str(path))
        # get_record_offset is where torch's loader (with mmap=True) maps storages from; torch's stubs omit it.
        seen = {name: (reader.get_record_offset(name), reader.get_record_size(name))  # type: ignore[attr-defined]
                for name in reader.get_all_records()}
        data_pkl = reader.get_record("data.pkl") if "data.pkl" in seen else b""
    except OSError as err:
        raise from_os_error(err, path) from err
    except Exception as err:  # torch cannot read what nnseal accepted: the readers disagree
        raise UnsafeCheckpoint(f"torch's zip reader disagrees with nnseal's: {_first_line(err)} "
                               "(nothing was loaded)", path=path) from None
    if seen != expected:
        differ = sorted(set(seen) ^ set(expected)) or sorted(n for n in seen if seen[n] != expected[n])
        raise UnsafeCheckpoint(f"torch's zip reader sees other records than nnseal checked (first: "
                               f"{differ[0]!r:.80}; a second archive hidden in the file?); nothing was loaded",
                               path=path)
    if hashlib.sha256(data_pkl).hexdigest() != info.data_pkl_sha256:
        raise UnsafeCheckpoint("torch's zip reader reads another data.pkl than nnseal checked; nothing was loaded",
                               path=path)


def _restricted_load(path: Path) -> Any:
    import torch

    from nnseal.readers.allowlist import safe_globals

    try:
        with safe_globals(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's hints suggest the unrestricted loader: never what we want
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except OSError as err:
        raise from_os_error(err, path) from err
    except Exception as err:  # every other failure is about the content: refuse it, never retry
        raise UnsafeCheckpoint(f"torch.load(weights_only=True) refused it: {_first_line(err)}", path=path) from None


def _is_integral(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _inference_metadata(obj: dict, path: Path) -> dict[str, Any]:
    trainer = obj.get("trainer_name")
    if not isinstance(trainer, str) or not trainer.isidentifier():
        raise UnsafeCheckpoint(f"trainer_name must be a Python class name, got {show(trainer)}", path=path)
    init_args = obj.get("init_args")
    if not isinstance(init_args, dict):
        raise UnsafeCheckpoint("init_args is missing or not a dict (not an nnU-Net checkpoint?)", path=path)
    configuration = init_args.get("configuration")
    # The configuration becomes part of a folder name when installed: no separators, no dot-dot.
    if (not isinstance(configuration, str) or not configuration or len(configuration) > MAX_CONFIGURATION_CHARS
            or not all(c.isalnum() or c in "_.-" for c in configuration) or configuration.startswith(".")
            or not configuration.isascii()):
        raise UnsafeCheckpoint(f"init_args['configuration'] must be a plain configuration name such as "
                               f"3d_fullres, got {show(configuration)}", path=path)
    fold = init_args.get("fold")
    if fold is not None and fold != "all" and not (_is_integral(fold) and int(fold) >= 0):
        raise UnsafeCheckpoint(f"init_args['fold'] must be a non-negative integer or 'all', got {show(fold, 40)}",
                               path=path)
    axes = obj.get("inference_allowed_mirroring_axes")
    if axes is not None and not (isinstance(axes, (tuple, list))
                                 and all(_is_integral(a) and int(a) >= 0 for a in axes)):
        raise UnsafeCheckpoint(f"inference_allowed_mirroring_axes must be a tuple of axes, got {show(axes, 60)}",
                               path=path)
    epoch = obj.get("current_epoch")
    if epoch is not None and not (_is_integral(epoch) and int(epoch) >= 0):
        raise UnsafeCheckpoint(f"current_epoch must be a non-negative integer, got {show(epoch, 40)}", path=path)
    return {
        "trainer_name": trainer,
        "configuration": configuration,
        "fold": fold if fold is None or fold == "all" else int(fold),
        "inference_allowed_mirroring_axes": None if axes is None else [int(a) for a in axes],
        "current_epoch": None if epoch is None else int(epoch),
    }


def _dropped_keys(obj: dict) -> list[str]:
    dropped = [str(key) for key in obj if key not in KEPT_KEYS]
    init_args = obj.get("init_args")
    if isinstance(init_args, dict):
        dropped += [f"init_args.{key}" for key in init_args if key not in KEPT_INIT_ARGS]
    return dropped


def _network_weights(obj: dict, path: Path) -> dict[str, torch.Tensor]:
    import torch

    weights = obj.get("network_weights")
    if not isinstance(weights, dict) or not weights:
        raise UnsafeCheckpoint("network_weights is missing, empty or not a dict (not an nnU-Net checkpoint?)",
                               path=path)
    tensor_checks.check_names(list(weights), path)
    for name, value in weights.items():
        if not isinstance(value, torch.Tensor):
            raise UnsafeCheckpoint(f"network_weights[{name!r}] is a {type(value).__name__}, not a tensor", path=path)
    return dict(weights)


@contextlib.contextmanager
def _one_opening(path: Path) -> Iterator[Path]:
    """A name for one open file that every check and the load then use.

    Opened once, read everywhere through ``/proc/self/fd/N`` (Linux): a path swapped for
    another file between the static checks and ``torch.load`` cannot make torch load bytes
    nnseal did not check. Where /proc is missing, the path itself is used.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        yield path  # inspect_checkpoint words this case
        return
    except OSError as err:
        raise from_os_error(err, path) from err
    try:
        pinned = Path(f"/proc/self/fd/{fd}")
        yield pinned if pinned.exists() else path
    finally:
        os.close(fd)


def load_sanitized(path: str | os.PathLike) -> SanitizedCheckpoint:
    """Check, load and reduce a checkpoint; raise UnsafeCheckpoint/HostileArchive on any refusal."""
    path = Path(path)
    with _one_opening(path) as opened:
        try:
            info = inspect_checkpoint(opened)  # static: nothing is loaded unless this passes
            check_torch_reads_the_same(opened, info)
            source_sha256 = sha256_file(opened)
            obj = _restricted_load(opened)
        except NnsealError as err:  # name the file the caller gave, not the descriptor's path
            raise err.with_path(path) from None
        except OSError as err:
            raise from_os_error(err, path) from err
    if not isinstance(obj, dict):
        raise UnsafeCheckpoint(f"holds a {type(obj).__name__}, not the dict nnU-Net saves", path=path)
    weights = _network_weights(obj, path)
    meta = _inference_metadata(obj, path)

    for name, tensor in weights.items():
        tensor_checks.check_tensor(name, tensor, path)
    renamed, stripped = tensor_checks.strip_wrapper_prefixes(list(weights))
    weights = {renamed[name]: tensor for name, tensor in weights.items()}
    groups = tensor_checks.group_aliases(weights)
    total = tensor_checks.check_total(groups.stored, info.file_size, path)
    stored = {name: tensor_checks.materialize(tensor) for name, tensor in groups.stored.items()}

    dtypes: dict[str, int] = {}
    for tensor in stored.values():
        key = safetensors_dtype(tensor.dtype) or str(tensor.dtype)
        dtypes[key] = dtypes.get(key, 0) + 1
    report = SanitizeReport(
        source=str(path), source_sha256=source_sha256, source_bytes=info.file_size,
        tensors=len(stored), names=len(weights), aliases=len(groups.aliases), tensor_bytes=total,
        dropped_keys=_dropped_keys(obj), kept_metadata=dict(meta), stripped_prefix=stripped, dtypes=dtypes)
    return SanitizedCheckpoint(tensors=stored, aliases=groups.aliases, names=list(weights), meta=meta,
                               report=report)


# --- writing -------------------------------------------------------------------------


def safetensors_metadata(ck: SanitizedCheckpoint) -> dict[str, str]:
    """The ``__metadata__`` a later stage rebuilds the nnU-Net checkpoint from (docs/FORMAT.md)."""
    return build_metadata(ck.names, ck.aliases, ck.meta)


def write_sanitized(ck: SanitizedCheckpoint, fileobj: ByteSink) -> None:
    """Stream the checkpoint's safetensors bytes into ``fileobj``."""
    write_safetensors(fileobj, ck.tensors, safetensors_metadata(ck))


def sanitize_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, force: bool = False) -> SanitizeReport:
    """Sanitize ``src`` into the safetensors file ``dst``, which appears whole or not at all."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        if not src.exists():
            raise EnvironmentProblem("no such file", path=src)
        raise EnvironmentProblem("not a regular file", path=src)
    # Opened first: an existing output is refused before the (possibly long) load.
    with atomic_output(dst, force=force) as handle:
        ck = load_sanitized(src)
        writer = HashingWriter(handle)
        write_sanitized(ck, writer)
    report = ck.report
    report.output = str(dst)
    report.output_sha256 = writer.hexdigest()
    report.output_bytes = writer.size
    return report
