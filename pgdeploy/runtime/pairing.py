"""Both files or neither: the pair id that ties an export's ``model.onnx`` and
``model.torchscript.pt`` together.

Export writes the two files with two renames; a crash between them can leave a new
``model.onnx`` beside an old ``model.torchscript.pt``. Each file carries the same
``pgdeploy.pair_id`` in its metadata (a sha256 over the ONNX graph and the checkpoint's
digest), so a mismatched pair is recognised wherever the two sit side by side:

- ``Agent.load(".../model.onnx")`` (and everything built on it: ``pgdeploy run``,
  ``bench``, export's own verification of the final files) refuses the file when a
  ``model.torchscript.pt`` in the same folder carries another pair id, or none;
- :func:`pgdeploy.export.formats.load_torchscript` does the same for ``model.torchscript.pt``
  with a ``model.onnx`` beside it;
- ``pgdeploy inspect`` reports the pair id and whether the sibling matches.

Only these fixed names are paired: a file renamed or copied on its own has no sibling
and loads alone. No torch and no onnx (the runtime, export and inspect all use it).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from pgdeploy.errors import ModelLoadError
from pgdeploy.runtime.onnx_graph import read_parts

ONNX_NAME = "model.onnx"
TORCHSCRIPT_NAME = "model.torchscript.pt"
#: Name of the metadata record inside TorchScript archives (``_extra_files``).
TORCHSCRIPT_METADATA = "pgdeploy.json"
#: Metadata record of a TorchScript archive larger than this is refused unread.
MAX_TORCHSCRIPT_METADATA_BYTES = 1 << 20
PAIR_KEY = "pgdeploy.pair_id"
#: A sibling ONNX file larger than this is not read for its pair id (the loader's own cap).
MAX_ONNX_BYTES = 256 << 20


def make_pair_id(onnx_without_pair_id: bytes, checkpoint_sha256: str) -> str:
    """The pair id of one export: sha256 of the ONNX bytes (written without the id) and the
    checkpoint's sha256. The same checkpoint exported twice by the same pgdeploy gives the
    same files, hence the same id; anything else gives another."""
    digest = hashlib.sha256(onnx_without_pair_id)
    digest.update(checkpoint_sha256.encode("ascii"))
    return digest.hexdigest()


def sibling(path: Path) -> Path | None:
    """The other file of ``path``'s pair, by name (None for a file of another name)."""
    if path.name == ONNX_NAME:
        return path.with_name(TORCHSCRIPT_NAME)
    if path.name == TORCHSCRIPT_NAME:
        return path.with_name(ONNX_NAME)
    return None


def check_pair(path: Path, pair_id: str | None) -> None:
    """Raise ModelLoadError when ``path``'s sibling exists and carries another pair id."""
    other = sibling(path)
    if other is None or not other.exists():
        return
    try:
        theirs = read_pair_id(other)
    except ModelLoadError as exc:
        theirs = f"unreadable ({exc})"
    if theirs != pair_id or pair_id is None:
        raise ModelLoadError(
            f"{str(path)!r} and {str(other)!r} are not one export (pair id {pair_id} vs "
            f"{theirs}); an export was interrupted or one file was replaced: re-export "
            "model.pt, or move the file you want to load away from the other"
        )


def read_pair_id(path: Path) -> str | None:
    """The pair id a model file carries (None if it has none); ModelLoadError if unreadable."""
    if path.name.endswith(".onnx"):
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_ONNX_BYTES + 1)
        except OSError as exc:
            raise ModelLoadError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from exc
        if len(data) > MAX_ONNX_BYTES:
            raise ModelLoadError(f"{str(path)!r} is more than {MAX_ONNX_BYTES} bytes")
        props = read_parts(data, source=repr(str(path))).metadata
    else:
        props = torchscript_metadata(path)
    value = props.get(PAIR_KEY)
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return "malformed"
    return parsed if isinstance(parsed, str) else "malformed"


def torchscript_metadata(path: Path) -> dict[str, str]:
    """The metadata record of a TorchScript archive, read from the zip: the module itself
    (a program) is never loaded."""
    source = repr(str(path))
    try:
        with zipfile.ZipFile(path) as archive:
            records = [
                r
                for r in archive.infolist()
                if r.filename.endswith(f"/extra/{TORCHSCRIPT_METADATA}")
            ]
            if len(records) != 1:
                raise ModelLoadError(
                    f"{source} is a TorchScript archive without pgdeploy metadata "
                    f"(extra/{TORCHSCRIPT_METADATA}); export it with 'pgdeploy export'"
                )
            (record,) = records
            if record.file_size > MAX_TORCHSCRIPT_METADATA_BYTES:
                raise ModelLoadError(
                    f"{source}: metadata record is {record.file_size} bytes, more than "
                    f"{MAX_TORCHSCRIPT_METADATA_BYTES}"
                )
            with archive.open(record) as handle:
                raw = handle.read(MAX_TORCHSCRIPT_METADATA_BYTES + 1)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ModelLoadError(f"{source} is a corrupt zip archive: {exc}") from exc
    try:
        props = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelLoadError(f"{source}: metadata record is not valid JSON: {exc}") from exc
    if not isinstance(props, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in props.items()
    ):
        raise ModelLoadError(f"{source}: metadata record is not a mapping of strings")
    return props
