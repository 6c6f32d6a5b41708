"""Rebuild the checkpoint dict that unmodified nnU-Net loads, from sanitized weights.

The result holds only tensors, strings, numbers, lists, tuples and dicts: it loads in
nnU-Net's predictor and ``-pretrained_weights`` fine-tuning, and also under
``torch.load(weights_only=True)`` with no allowlist at all.
"""

from __future__ import annotations

import os
from collections import OrderedDict

from nnseal.errors import InvalidSafetensors
from nnseal.format.checkpoint_meta import read_metadata
from nnseal.fsutil import HashingWriter, open_new


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
    names, aliases, meta = read_metadata(header.metadata, path=path)
    tensors = {name: StoredTensor(source=path, offset=header.data_start + info.begin, nbytes=info.end - info.begin,
                                  dtype=info.dtype, shape=info.shape)
               for name, info in header.tensors.items()}
    return assemble(tensors, names, aliases, meta, plans, dataset_json)


def write_checkpoint(checkpoint: dict, path: str | os.PathLike) -> str:
    """Write the checkpoint into a new file (never through an existing one); return its sha256.

    Checkpoints from ``rebuild_from_safetensors`` are written without torch (pth_writer);
    ones holding torch tensors (the legacy path) go through torch.save.
    """
    from nnseal.verify import pth_writer

    with open_new(path) as handle:
        if pth_writer.can_write(checkpoint):
            digest = pth_writer.write_pth(checkpoint, handle, stem=pth_writer.stem_of(path))
        else:
            # Dtypes without a legacy storage class, or checkpoints past the writer's size:
            # torch writes them, from real tensors (never from nnseal's own objects).
            import torch

            writer = HashingWriter(handle)
            torch.save(_with_torch_tensors(checkpoint), writer)  # type: ignore[arg-type]  # any .write() will do
            digest = writer.hexdigest()
        handle.flush()
        os.fsync(handle.fileno())
    return digest


# safetensors dtype -> torch dtype name, for the torch.save fallback.
_TORCH_DTYPES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn",
    "I16": "int16", "U16": "uint16", "F16": "float16", "BF16": "bfloat16", "I32": "int32", "U32": "uint32",
    "F32": "float32", "I64": "int64", "U64": "uint64", "F64": "float64",
}


def _with_torch_tensors(checkpoint: dict) -> dict:
    """The checkpoint with every StoredTensor read into a torch tensor; aliases stay one tensor."""
    import torch

    from nnseal.verify.pth_writer import StoredTensor

    loaded: dict[int, torch.Tensor] = {}

    def load(stored: StoredTensor) -> torch.Tensor:
        if id(stored) not in loaded:
            with open(stored.source, "rb") as handle:
                handle.seek(stored.offset)
                raw = bytearray(handle.read(stored.nbytes))
            if len(raw) != stored.nbytes:
                raise InvalidSafetensors("tensor data ends early", path=stored.source)
            dtype = getattr(torch, _TORCH_DTYPES[stored.dtype])
            flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            loaded[id(stored)] = flat.reshape(stored.shape)
        return loaded[id(stored)]

    def convert(value):
        if isinstance(value, StoredTensor):
            return load(value)
        if isinstance(value, OrderedDict):
            return OrderedDict((k, convert(v)) for k, v in value.items())
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(convert(v) for v in value)
        return value

    return convert(checkpoint)
