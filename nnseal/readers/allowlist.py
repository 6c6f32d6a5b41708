"""The one place that says which pickle globals a checkpoint may use.

Two lists:

* ``TORCH_DEFAULT_GLOBALS``: what ``torch.load(weights_only=True)`` already allows
  (``torch._weights_only_unpickler._get_allowed_globals()``), spelled out here so the
  static pre-load check needs no torch; a test compares it with the installed torch.
* ``NNUNET_EXTRA_GLOBALS``: what nnU-Net checkpoints need beyond that, and nothing more:
  numpy's scalar reconstructor (``logging`` holds numpy floats) and the dtype objects
  it rebuilds them with. Why each one cannot run code is written beside it and in
  SECURITY.md.

Importing this module imports neither torch nor numpy; ``safe_globals()`` does, lazily.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

# --- torch's own default allowlist (torch 2.10 .. 2.14) ------------------------

_TORCH_DTYPES = (
    "bfloat16 bool complex128 complex32 complex64 float16 float32 float64 float8_e4m3fn "
    "float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz float8_e8m0fnu float4_e2m1fn_x2 "
    "int8 int16 int32 int64 uint8 uint16 uint32 uint64 "
    "int1 int2 int3 int4 int5 int6 int7 uint1 uint2 uint3 uint4 uint5 uint6 uint7 "
    "bits16 bits1x8 bits2x4 bits4x2 bits8 bcomplex32 qint32 qint8 quint2x4 quint4x2 quint8"
).split()
_TORCH_QSCHEMES = ("per_tensor_affine per_tensor_symmetric per_channel_affine per_channel_symmetric "
                   "per_channel_affine_float_qparams").split()
_DENSE_KINDS = "BFloat16 Bool Byte Char Double Float Half Int Long Short".split()
_SPARSE_KINDS = "BFloat16 Byte Char Double Float Half Int Long Short".split()
_STORAGE_KINDS = _DENSE_KINDS + "ComplexDouble ComplexFloat".split()
_QUANTIZED_STORAGES = "QInt32 QInt8 QUInt2x4 QUInt4x2 QUInt8".split()
_REBUILD_FUNCTIONS = (
    "_rebuild_parameter _rebuild_parameter_with_state _rebuild_qtensor _rebuild_tensor _rebuild_tensor_v2 "
    "_rebuild_tensor_v3 _rebuild_sparse_tensor _rebuild_meta_tensor_no_storage _rebuild_nested_tensor "
    "_rebuild_wrapper_subclass _rebuild_device_tensor_from_numpy _rebuild_device_tensor_from_cpu_tensor"
).split()

TORCH_DEFAULT_GLOBALS: frozenset[str] = frozenset(
    [
        "collections.OrderedDict",
        "collections.Counter",
        "torch.nn.parameter.Parameter",
        "torch.serialization._get_layout",
        "torch.Size",
        "torch.Tensor",
        "torch.device",
        "_codecs.encode",
        "builtins.bytearray",
        "builtins.set",
        "builtins.complex",
        "torch._tensor._rebuild_from_type_v2",
        "torch.storage.TypedStorage",
        "torch.storage.UntypedStorage",
    ]
    + [f"torch.{d}" for d in _TORCH_DTYPES]
    + [f"torch.{q}" for q in _TORCH_QSCHEMES]
    + [f"torch.{k}Tensor" for k in _DENSE_KINDS]
    + [f"torch.cuda.{k}Tensor" for k in _DENSE_KINDS]
    + [f"torch.sparse.{k}Tensor" for k in _SPARSE_KINDS]
    + [f"torch.cuda.sparse.{k}Tensor" for k in _SPARSE_KINDS]
    + [f"torch.{k}Storage" for k in _STORAGE_KINDS + _QUANTIZED_STORAGES]
    + [f"torch.cuda.{k}Storage" for k in _STORAGE_KINDS]
    + [f"torch._utils.{f}" for f in _REBUILD_FUNCTIONS]
)

# --- what nnU-Net checkpoints need on top --------------------------------------

# Referenced by name in the pickle (GLOBAL opcodes), so the static check must know them.
NNUNET_EXTRA_GLOBALS: frozenset[str] = frozenset(
    {
        # scalar(dtype, raw_bytes) copies raw bytes into a numpy scalar of a given dtype
        # (C code, no attribute lookups on its arguments). Files written under numpy 2
        # spell it numpy._core...; files written under numpy 1 spell it numpy.core....
        "numpy._core.multiarray.scalar",
        "numpy.core.multiarray.scalar",
        # numpy.dtype(spec, align, copy) parses a type code such as "f8"; dtype strings
        # name built-in types only and are never imported.
        "numpy.dtype",
    }
)

# Never named in the pickle: BUILD on a rebuilt dtype checks type(dtype) against the
# allowlist, and under numpy 2 that type is one of these classes. They construct dtype
# objects and nothing else. Only the numeric kinds training logs contain (losses,
# Dice scores, learning rates, epoch counters, flags); object, string and void dtypes
# stay out.
NUMPY_DTYPE_CLASSES: tuple[str, ...] = (
    "Float16DType", "Float32DType", "Float64DType", "LongDoubleDType",
    "Int8DType", "Int16DType", "Int32DType", "Int64DType", "LongDType", "LongLongDType",
    "ByteDType", "ShortDType", "IntDType",
    "UInt8DType", "UInt16DType", "UInt32DType", "UInt64DType", "ULongDType", "ULongLongDType",
    "UByteDType", "UShortDType", "UIntDType",
    "BoolDType",
)


def allowed_global_names() -> frozenset[str]:
    """Every global name a sanitizable checkpoint may reference: torch's defaults plus ours."""
    return TORCH_DEFAULT_GLOBALS | NNUNET_EXTRA_GLOBALS


def _numpy_safe_globals() -> list:
    import numpy
    import numpy.dtypes

    # numpy 2 keeps the numpy.core alias; the function object is the same either way,
    # registered under both spellings so files from either numpy major load.
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    entries: list = [
        (scalar, "numpy._core.multiarray.scalar"),
        (scalar, "numpy.core.multiarray.scalar"),
        numpy.dtype,
    ]
    for name in NUMPY_DTYPE_CLASSES:
        cls = getattr(numpy.dtypes, name, None)
        if cls is not None:  # LongDType etc. exist only on some numpy versions/platforms
            entries.append(cls)
    return entries


@contextlib.contextmanager
def safe_globals() -> Iterator[None]:
    """Context in which ``torch.load(weights_only=True)`` also accepts NNUNET_EXTRA_GLOBALS."""
    import torch

    with torch.serialization.safe_globals(_numpy_safe_globals()):
        yield
