"""Errors of the image-to-video part; every message names the file or input and what was expected."""
from __future__ import annotations

from ...common.errors import InputError


class CheckpointError(InputError):
    """A checkpoint file could not be read or does not hold what MotionRAG expects; `input` names the file,
    folder or model it is about."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A released checkpoint is neither in the models folder nor downloadable."""

    def __reduce__(self):
        # InputError's rebuild creates the object without arguments, which OSError subclasses refuse
        return (type(self), (self.input, self.message))


class CheckpointKeyError(CheckpointError):
    """The state dict's keys or shapes do not match the expected layout."""

    def __init__(self, what: str, missing=(), unexpected=(), mismatched=()):
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.mismatched = sorted(mismatched)     # (key, expected shape, found shape)
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {_few(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {_few(self.unexpected)}")
        if self.mismatched:
            shown = [f"{k} expected {tuple(e)} found {tuple(f)}" for k, e, f in self.mismatched]
            parts.append(f"{len(self.mismatched)} shape mismatch(es): {_few(shown)}")
        super().__init__(what, "; ".join(parts))


def _few(items, n: int = 8) -> str:
    items = list(items)
    shown = ", ".join(repr(i) if not isinstance(i, str) or " " not in i else i for i in items[:n])
    return shown + (f", ... ({len(items) - n} more)" if len(items) > n else "")
