"""What an importer hands to the export pipeline: spec + network + provenance + reference."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pgdeploy.importers.reference import SourceActor
from pgdeploy.runtime.network import PolicyNetwork
from pgdeploy.spec import FLOAT32_MAX, PolicySpec

#: Clip bounds that clip nothing: SB3 and CleanRL feed raw values to the network.
NO_CLIP = FLOAT32_MAX
#: Env id recorded when the source file names none (SB3 zips do not store their env).
UNKNOWN_ENV = "unknown-env"


@dataclass(frozen=True)
class ImportedPolicy:
    """A foreign policy as pgdeploy's one description, plus where it came from."""

    spec: PolicySpec
    network: PolicyNetwork
    #: source library and version, algorithm, policy class, input sha256, notes.
    provenance: Mapping[str, Any]
    #: the source's own computation, for verification (:meth:`SourceActor.module`).
    actor: SourceActor = field(repr=False)

    def metadata(self) -> dict[str, Any]:
        """The file metadata an export records (JSON-safe), in the ``training`` slot."""
        return {"provenance": dict(self.provenance), "network": self.network.description()}


def no_clip(n: int) -> tuple[np.ndarray[Any, np.dtype[np.float32]], ...]:
    return (np.full(n, -NO_CLIP, np.float32), np.full(n, NO_CLIP, np.float32))
