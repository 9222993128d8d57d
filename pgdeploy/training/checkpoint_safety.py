"""Checks on a ``model.pt`` before and after ``torch.load``: a checkpoint is data to bound.

``torch.load(weights_only=True)`` runs no code, but a small file can still ask for a lot:
a 2 MB archive holding a deflated 2 GiB record is inflated in full, a dict nested 10,000
deep makes every later walk over it raise RecursionError, and a ``state_dict`` keyed by
tuples or holding complex weights fails deep inside torch. Each is a CheckpointError here.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pgdeploy.errors import CheckpointError

#: Larger checkpoints are refused before they are read (``max_bytes`` changes it).
MAX_CHECKPOINT_BYTES = 256 << 20
#: Deepest nesting of dicts/lists in a checkpoint (pgdeploy writes about 5).
MAX_NESTING = 32
#: Containers plus values in the whole checkpoint, tensors counted as one each.
MAX_ITEMS = 1_000_000
#: Tensor elements in the whole checkpoint (as many float32s as the size limit holds).
MAX_ELEMENTS = MAX_CHECKPOINT_BYTES // 4


def read_checkpoint_bytes(path: Path, *, max_bytes: int = MAX_CHECKPOINT_BYTES) -> bytes:
    """The file's bytes, after its size and its zip records' declared sizes are checked.

    ``torch.save`` stores every record uncompressed, so a compressed record (which the
    loader would inflate to its declared size) or one whose declared size differs from
    its stored size is refused, as is a total above ``max_bytes``.
    """
    size = path.stat().st_size
    if size > max_bytes:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is {size} bytes, more than the limit of {max_bytes}; "
            "pass max_bytes=N if you expect a checkpoint this large"
        )
    with path.open("rb") as handle:
        raw = handle.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise CheckpointError(f"checkpoint {str(path)!r} is more than {max_bytes} bytes")
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        return raw  # the caller names the format problem
    try:
        records = zipfile.ZipFile(io.BytesIO(raw)).infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is a corrupt zip archive: {exc}") from exc
    total = 0
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED or record.file_size != record.compress_size:
            raise CheckpointError(
                f"checkpoint {str(path)!r} has a compressed record {record.filename[:80]!r} "
                f"(declared {record.file_size} bytes); torch.save writes records uncompressed, "
                "so this file was not written by pgdeploy"
            )
        total += record.file_size
    if total > max_bytes:
        raise CheckpointError(
            f"checkpoint {str(path)!r} declares {total} bytes of records, more than {max_bytes}"
        )
    return raw


def check_plain_data(data: Any, *, source: str) -> None:
    """Refuse nesting deeper than MAX_NESTING and more than MAX_ITEMS values, iteratively
    (a recursive walk is exactly what a deep file breaks), and any tensor whose declared
    shape and strides ask for more than its stored bytes (:func:`check_tensor_layout`)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    items = 0
    elements = 0
    while stack:
        value, depth = stack.pop()
        items += 1
        if items > MAX_ITEMS:
            raise CheckpointError(f"{source} holds more than {MAX_ITEMS} values")
        if isinstance(value, torch.Tensor):
            elements += check_tensor_layout(value, source=source)
            if elements > MAX_ELEMENTS:
                raise CheckpointError(
                    f"{source} holds more than {MAX_ELEMENTS} tensor elements in all"
                )
            continue
        if isinstance(value, Mapping):
            children: Any = value.values()
        elif isinstance(value, (list, tuple, set)):
            children = value
        else:
            continue
        if depth >= MAX_NESTING:
            raise CheckpointError(
                f"{source} is nested more than {MAX_NESTING} levels deep; not a pgdeploy checkpoint"
            )
        if items + len(children) > MAX_ITEMS:  # refused by its length, before a walk
            raise CheckpointError(f"{source} holds more than {MAX_ITEMS} values")
        stack.extend((child, depth + 1) for child in children)


def check_tensor_layout(tensor: torch.Tensor, *, source: str) -> int:
    """A tensor as ``torch.save`` writes one: dense, contiguous, its elements all in its
    stored bytes. A zero-stride view (a ``(2**25, 11)`` history over 11 stored floats) or any
    other strided trick would make every later read of it build what the file never held;
    its element count is returned, checked from the metadata alone, before any value is read."""
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_meta:
        raise CheckpointError(f"{source} holds a {tensor.layout} tensor; expected dense tensors")
    numel = tensor.numel()
    if numel > MAX_ELEMENTS:
        raise CheckpointError(
            f"{source} holds a tensor of shape {tuple(tensor.shape)}, more than "
            f"{MAX_ELEMENTS} elements"
        )
    needed = (tensor.storage_offset() + numel) * tensor.element_size()
    if numel and (not tensor.is_contiguous() or needed > tensor.untyped_storage().nbytes()):
        raise CheckpointError(
            f"{source} holds a tensor of shape {tuple(tensor.shape)} with strides "
            f"{tensor.stride()} over {tensor.untyped_storage().nbytes()} stored bytes; "
            "pgdeploy writes contiguous tensors that hold every element they declare"
        )
    return numel


def check_training_section(training: Mapping[Any, Any], *, source: str) -> None:
    """The summary is JSON-like data that reports and ``inspect`` print: string keys and
    str, bool, int, float or None values in lists and dicts, never a tensor."""
    stack: list[Any] = [training]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            bad = [k for k in value if not isinstance(k, str)]
            if bad:
                raise CheckpointError(f"{source}: 'training' has a key {shown(bad[0])}")
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif value is not None and not isinstance(value, (str, bool, int, float)):
            raise CheckpointError(
                f"{source}: 'training' holds {shown(value)}; expected plain values"
            )


def shown(value: Any) -> str:
    """A short, escaped description of a value from a file, safe to print (huge ints and
    long strings are summarised, not rendered)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr(value) if abs(value) < 2**64 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return ascii(value[:60]) + ("..." if len(value) > 60 else "")
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple, dict)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


def check_state_dict(state: Mapping[Any, Any], *, source: str) -> None:
    """String keys and real floating-point tensors only (complex or integer weights would
    be cast silently by ``load_state_dict``: the imaginary part or the meaning lost)."""
    for key, tensor in state.items():
        if not isinstance(key, str):
            raise CheckpointError(
                f"{source}: state_dict key {key!r} is a {type(key).__name__}, expected a string"
            )
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{source}: state_dict[{key!r}] is not a tensor")
        if not tensor.dtype.is_floating_point or tensor.dtype.is_complex:
            raise CheckpointError(
                f"{source}: state_dict[{key!r}] has dtype {tensor.dtype}, expected a real "
                "floating-point tensor (float32 or float64)"
            )


def non_finite_weights(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the tensors holding NaN or infinity (a diverged run)."""
    return [name for name, tensor in state.items() if not bool(torch.isfinite(tensor).all())]
