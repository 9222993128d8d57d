"""Read members of a foreign zip archive within fixed bounds, before anything is parsed.

A Stable-Baselines3 file is a zip of a few small members. The bounds below are checked
on the central directory first (file size, member count, every member's name, declared
sizes and compression ratio) and again while reading (a member may not inflate past its
declared size), so a zip bomb, a path-traversal name or a thousand-member archive is
refused before a byte is inflated.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

from pgdeploy.errors import ModelLoadError

#: Largest archive opened.
MAX_ARCHIVE_BYTES = 256 << 20
#: Most members (SB3 writes 6; a torch state dict a handful plus one per tensor).
MAX_MEMBERS = 4096
#: Largest inflated member.
MAX_MEMBER_BYTES = 256 << 20
#: Largest inflated size / stored size of one member (text and zeros compress well; a bomb
#: compresses ~1000x).
MAX_RATIO = 200
#: Members smaller than this are exempt from the ratio check (a 20-byte JSON may be 10x).
RATIO_FLOOR = 64 << 10
#: Member names: relative, forward slashes, no ``..`` component, printable ASCII.
MEMBER_NAME = re.compile(r"(?!/)(?!.*(?:^|/)\.\.(?:/|$))[A-Za-z0-9_.\-/]{1,200}", re.ASCII)


class Archive:
    """An opened, bounded zip: ``read(name)`` returns one member's bytes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.source = ascii(str(self.path))
        size = self.path.stat().st_size if self.path.is_file() else -1
        if size < 0:
            raise ModelLoadError(f"{self.source} is not a file")
        if size > MAX_ARCHIVE_BYTES:
            raise ModelLoadError(f"{self.source} is {size} bytes, more than {MAX_ARCHIVE_BYTES}")
        try:
            with zipfile.ZipFile(self.path) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise ModelLoadError(f"{self.source} is not a readable zip archive: {exc}") from exc
        if len(infos) > MAX_MEMBERS:
            raise ModelLoadError(f"{self.source} has {len(infos)} members, more than {MAX_MEMBERS}")
        for info in infos:
            self._check(info)
        self.members = {info.filename: info for info in infos}
        if len(self.members) != len(infos):
            raise ModelLoadError(f"{self.source} holds two members of the same name")

    def _check(self, info: zipfile.ZipInfo) -> None:
        name = info.filename
        if MEMBER_NAME.fullmatch(name) is None:
            raise ModelLoadError(
                f"{self.source} has a member named {ascii(name)[:80]}; expected a relative "
                "path of ASCII letters, digits and _ . - / without '..'"
            )
        if info.flag_bits & 0x1:
            raise ModelLoadError(f"{self.source}: member {name} is encrypted")
        if info.file_size > MAX_MEMBER_BYTES:
            raise ModelLoadError(
                f"{self.source}: member {name} inflates to {info.file_size} bytes, more than "
                f"{MAX_MEMBER_BYTES}"
            )
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise ModelLoadError(
                f"{self.source}: member {name} is compressed {info.file_size}:"
                f"{info.compress_size}, more than {MAX_RATIO}:1 (a zip bomb?)"
            )

    def names(self) -> list[str]:
        return list(self.members)

    def has(self, *names: str) -> bool:
        return all(name in self.members for name in names)

    def read(self, name: str, *, limit: int = MAX_MEMBER_BYTES) -> bytes:
        """One member's bytes; a member that inflates past its declared size is refused."""
        info = self.members.get(name)
        if info is None:
            raise ModelLoadError(f"{self.source} has no member {name!r}")
        cap = min(info.file_size, limit)
        if info.file_size > limit:
            raise ModelLoadError(
                f"{self.source}: member {name} is {info.file_size} bytes, more than {limit}"
            )
        try:
            with zipfile.ZipFile(self.path) as archive, archive.open(info) as handle:
                data = handle.read(cap + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError) as exc:
            raise ModelLoadError(f"{self.source}: member {name} is corrupt: {exc}") from exc
        if len(data) != info.file_size:
            raise ModelLoadError(
                f"{self.source}: member {name} holds {len(data)} bytes, its header says "
                f"{info.file_size}"
            )
        return data

    def read_all(self, names: Iterable[str]) -> dict[str, bytes]:
        return {name: self.read(name) for name in names}
