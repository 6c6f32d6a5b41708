"""Rebuild the checkpoint dict that unmodified nnU-Net loads, from sanitized weights.

The result holds only tensors, strings, numbers, lists, tuples and dicts: it loads in
nnU-Net's predictor and ``-pretrained_weights`` fine-tuning, and also under
``torch.load(weights_only=True)`` with no allowlist at all.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

from nnseal.errors import InvalidSafetensors
from nnseal.format.checkpoint_meta import read_metadata
from nnseal.fsutil import open_new


def assemble(tensors: dict, names: list[str], aliases: dict[str, str], meta: dict, plans: dict,
             dataset_json: dict) -> dict:
    """nnU-Net's checkpoint dict; every alias is the same tensor object as its stored name."""
    weights = OrderedDict()
    for name in names:
        stored = aliases.get(name, name)
        if stored not in tensors:
            raise InvalidSafetensors(f"weight '{name}' refers to '{stored}', which is not stored")
        weights[name] = tensors[stored]
    axes = meta.get("inference_allowed_mirroring_axes")
    fold = meta.get("fold")
    checkpoint = {
        "network_weights": weights,
        "trainer_name": meta["trainer_name"],
        "init_args": {"plans": plans, "configuration": meta["configuration"], "fold": fold,
                      "dataset_json": dataset_json},
        "inference_allowed_mirroring_axes": tuple(axes) if axes is not None else None,
    }
    if meta.get("current_epoch") is not None:
        checkpoint["current_epoch"] = meta["current_epoch"]
    return checkpoint


def rebuild_from_safetensors(path: str | os.PathLike, plans: dict, dataset_json: dict) -> dict:
    """nnU-Net's dict for a package's safetensors checkpoint, with tensors left in the file.

    Torch-free: the header is validated (as strictly as the Rust loader) and each tensor
    becomes a ``StoredTensor`` pointing at its bytes; ``write_checkpoint`` copies them.
    """
    from nnseal.readers.safetensors_header import read_header
    from nnseal.verify.pth_writer import StoredTensor

    path = str(path)
    with open(path, "rb") as handle:
        header = read_header(handle, os.fstat(handle.fileno()).st_size, source=path)
    names, aliases, meta = read_metadata(header.metadata, path=path, stored=header.tensors)
    tensors = {name: StoredTensor(source=path, offset=header.data_start + info.begin, nbytes=info.end - info.begin,
                                  dtype=info.dtype, shape=info.shape)
               for name, info in header.tensors.items()}
    return assemble(tensors, names, aliases, meta, plans, dataset_json)


def write_checkpoint(checkpoint: dict, path: str | os.PathLike) -> str:
    """Write the checkpoint into a new file (never through an existing one); return its sha256.

    Always torch-free (pth_writer), whatever the dtypes and size. Torch tensors (the legacy
    path, which has loaded them already) are written from their own memory.
    """
    from nnseal.verify import pth_writer

    with open_new(path) as handle:
        digest = pth_writer.write_pth(_stored(checkpoint), handle, stem=pth_writer.stem_of(path))
        handle.flush()
        os.fsync(handle.fileno())
    return digest


def rebuild_checkpoint_from_entry(archive, entry_name: str, expected_sha256: str, plans: dict, dataset_json: dict,
                                  target_path: str | os.PathLike, *, bar=None) -> str:
    """Stream a package's safetensors entry straight into nnU-Net's ``.pth`` at ``target_path``.

    One pass, one write: the header is parsed from the entry's first bytes (as strictly as
    the Rust loader), then each tensor's bytes are copied into its storage record as they
    pass (safetensors keeps tensors in offset order; the records follow it), while the
    entry's bytes are hashed. Memory stays flat at any size. ``archive`` is an open
    ``nnseal.readers.zip_archive.SafeZip``; ``bar`` (optional) gets ``update(n)`` per entry byte read.

    Returns the sha256 of the written ``.pth``. If the entry's sha256 is not
    ``expected_sha256`` (TamperedPackage), its header is invalid (InvalidSafetensors), the
    zip disagrees with itself (HostileArchive) or anything else fails, ``target_path``
    does not exist afterwards. It must not exist before (it is never written through).
    """
    import hashlib

    from nnseal.errors import TamperedPackage
    from nnseal.readers.safetensors_header import read_header
    from nnseal.verify.pth_writer import StoredTensor, stem_of, write_pth

    entry = archive.entry(entry_name)
    entry_digest = hashlib.sha256()
    reader = _EntryReader(archive.stream(entry), entry_digest, bar)

    def tampered() -> TamperedPackage:
        return TamperedPackage(f"entry '{entry_name}' does not match the signed manifest")

    target = Path(target_path)
    handle = open_new(target)  # raises before anything is created if the path is taken
    try:
        with handle:
            try:
                header = read_header(reader, entry.size, source=entry_name)
                names, aliases, meta = read_metadata(header.metadata, path=entry_name, stored=header.tensors)
                tensors = {name: StoredTensor(source=None, offset=header.data_start + info.begin,
                                              nbytes=info.end - info.begin, dtype=info.dtype, shape=info.shape)
                           for name, info in header.tensors.items()}
                checkpoint = assemble(tensors, names, aliases, meta, plans, dataset_json)
            except InvalidSafetensors as err:
                reader.drain()  # a changed entry is reported as tampering, not as whatever it now holds
                if entry_digest.hexdigest() != expected_sha256:
                    raise tampered() from None
                raise InvalidSafetensors(f"entry '{entry_name}': {err.reason}") from None
            digest = write_pth(checkpoint, handle, stem=stem_of(target),
                               read_storage=lambda t: reader.take(t.offset, t.nbytes))
            reader.drain()  # the zip's own size and CRC checks run after its last byte
            if entry_digest.hexdigest() != expected_sha256:
                raise tampered()
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return digest


class _EntryReader:
    """A zip entry's byte stream read front to back, hashed as it passes; never more than a chunk held."""

    def __init__(self, chunks, digest, bar):
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self._digest, self._bar = digest, bar
        self.position = 0

    def _fill(self) -> bool:
        block = next(self._chunks, None)
        if block is None:
            return False
        self._digest.update(block)
        if self._bar is not None:
            self._bar.update(len(block))
        self._pending = memoryview(block)
        return True

    def _pieces(self, nbytes: int):
        while nbytes:
            if not self._pending and not self._fill():
                raise InvalidSafetensors(f"tensor data ends {nbytes} bytes early")
            piece = self._pending[:nbytes]
            self._pending = self._pending[len(piece):]
            self.position += len(piece)
            nbytes -= len(piece)
            yield piece

    def read(self, nbytes: int = -1, /) -> bytes:
        """Up to ``nbytes`` (fewer only at the end), like a file's read: what read_header uses."""
        parts = []
        try:
            for piece in self._pieces(nbytes):
                parts.append(bytes(piece))
        except InvalidSafetensors:
            pass
        return b"".join(parts)

    def take(self, offset: int, nbytes: int):
        """The ``nbytes`` at ``offset`` (never behind the current position); bytes before it are skipped."""
        if offset < self.position:
            raise InvalidSafetensors(f"tensor at byte {offset} is behind the stream (at {self.position})")
        for _ in self._pieces(offset - self.position):
            pass
        yield from self._pieces(nbytes)

    def drain(self) -> None:
        self._pending = memoryview(b"")
        while self._fill():
            self.position += len(self._pending)
            self._pending = memoryview(b"")


def _stored(checkpoint: dict) -> dict:
    """The checkpoint with every torch tensor replaced by a StoredTensor over its own memory.

    Aliases stay one object. Torch is imported only if a torch tensor is there (legacy path).
    """
    from nnseal.verify.pth_writer import SAFETENSORS_BY_TORCH, StoredTensor

    converted: dict[int, StoredTensor] = {}

    def store(tensor) -> StoredTensor:
        if id(tensor) not in converted:
            import torch

            dtype = SAFETENSORS_BY_TORCH.get(str(tensor.dtype).removeprefix("torch."))
            if dtype is None:
                raise InvalidSafetensors(f"dtype {tensor.dtype} cannot be written into a checkpoint")
            flat = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
            converted[id(tensor)] = StoredTensor(source=flat.numpy(), offset=0, nbytes=flat.numel(), dtype=dtype,
                                                 shape=tuple(tensor.shape))
        return converted[id(tensor)]

    def convert(value):
        if isinstance(value, OrderedDict):
            return OrderedDict((k, convert(v)) for k, v in value.items())
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(convert(v) for v in value)
        if type(value).__module__.startswith("torch") and hasattr(value, "untyped_storage"):
            return store(value)
        return value

    return convert(checkpoint)
