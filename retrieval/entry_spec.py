"""What one database entry is made of: EntrySpec (the caller's motion, captions and payloads) and
its checked, normalised form (EntryRow) as the generation writer stores it."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..models.motion.motion import Motion
from . import db_format as fmt
from .errors import RetrievalError
from .payloads import as_payload_array
from .text_encoder import check_texts

MAX_CAPTIONS_PER_ENTRY = 1000


@dataclass
class EntrySpec:
    """One motion to store, with the captions it is found by.

    name: unique in the database (default motion.name). source_clip: what the entry was cut
    from; search returns one result per source clip (default: the name, or the twin's for a
    mirrored entry). mirrored / mirror_of: whether this is a left-right mirrored copy and the
    name of its unmirrored twin (defaults from motion.provenance["mirrored"] and an "M_" or
    HumanML3D "M" name prefix). payloads: extra arrays by kind; "joints" always comes from
    the motion and "features" from motion.features when present.
    """

    motion: Motion
    captions: Sequence[str]
    payloads: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    source_clip: str | None = None
    mirrored: bool | None = None
    mirror_of: str | None = None
    provenance: Mapping[str, Any] | None = None


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, set, tuple)):
        return str(value) if isinstance(value, Path) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


@dataclass
class EntryRow:
    """One entry checked and ready to store: name, grouping, captions and payload arrays."""

    name: str
    source_clip: str
    mirrored: bool
    mirror_of_name: str | None
    num_frames: int
    fps: float
    provenance: str
    captions: list[str]
    payloads: dict[str, np.ndarray]


def normalise_entry(spec: Any, position: int) -> EntryRow:
    """Check one EntrySpec (the `position`-th of a build) and fill in its defaults."""
    if not isinstance(spec, EntrySpec):
        raise RetrievalError("entries", f"entry {position}: expected an EntrySpec, got {type(spec).__name__}")
    if not isinstance(spec.motion, Motion):
        raise RetrievalError("entries", f"entry {position}: motion must be a Motion, got {type(spec.motion).__name__}")
    motion = spec.motion
    name = spec.name if spec.name is not None else motion.name
    if not isinstance(name, str) or not name.strip():
        raise RetrievalError("entries", f"entry {position}: has no name (set EntrySpec.name or Motion.name)")
    name = name.strip()
    what = f"entry {name!r}"
    captions = check_texts(list(spec.captions) if not isinstance(spec.captions, str) else [spec.captions],
                           what=f"{what}: caption", input="entries")
    if not captions:
        raise RetrievalError("entries", f"{what}: has no captions; every entry needs at least one to be found by text")
    if len(captions) > MAX_CAPTIONS_PER_ENTRY:
        raise RetrievalError("entries", f"{what}: {len(captions)} captions is more than {MAX_CAPTIONS_PER_ENTRY}")
    captions = list(dict.fromkeys(captions))          # the same caption twice adds nothing to search
    prov = dict(motion.provenance)
    if spec.provenance:
        prov.update(spec.provenance)
    prov.pop("captions", None)                         # the captions table holds them
    mirrored = bool(spec.mirrored if spec.mirrored is not None else prov.get("mirrored", False))
    mirror_of = spec.mirror_of
    if mirrored and mirror_of is None:
        if name.startswith("M_"):
            mirror_of = name[2:]
        elif name.startswith("M") and name[1:2].isdigit():     # HumanML3D's M000123
            mirror_of = name[1:]
    source = spec.source_clip or (mirror_of if mirrored and mirror_of else name)
    try:
        provenance = json.dumps(prov, default=_json_default, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise RetrievalError("entries", f"{what}: provenance is not JSON-serialisable ({exc})") from None
    payloads = {fmt.JOINTS_KIND: motion.joints}
    if motion.features is not None:
        payloads[fmt.FEATURES_KIND] = motion.features
    for kind, value in dict(spec.payloads).items():
        fmt.validate_kind(kind)
        if kind == fmt.JOINTS_KIND:
            raise RetrievalError("entries", f"{what}: payload 'joints' comes from the motion; do not pass it separately")
        payloads[kind] = value
    payloads = {k: as_payload_array(v, k, what) for k, v in payloads.items()}
    return EntryRow(name=name, source_clip=str(source), mirrored=mirrored, mirror_of_name=mirror_of,
                    num_frames=motion.num_frames, fps=float(motion.fps), provenance=provenance,
                    captions=captions, payloads=payloads)


__all__ = ["EntrySpec", "EntryRow", "normalise_entry", "MAX_CAPTIONS_PER_ENTRY"]
