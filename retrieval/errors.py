"""Errors raised by the motion database and retrieval code.

Every one is an InputError: `.input` names the argument of the public function that carried the bad
value ("text", "top_k", "name", "source_folder", "mode", "exclude", ...), or "motion_db" where the
fault is the state of a database (damaged, changed since it was opened, built with another text
encoder, or not buildable here). The node layer maps these names to its own inputs.
"""
from __future__ import annotations

from ..common.errors import InputError


class RetrievalError(InputError):
    """Bad input to, or a bad state of, a motion database; the message says which and what was expected."""


class DatabaseNotFoundError(RetrievalError):
    """No database of that name under the models folder."""


class DatabaseCorruptError(RetrievalError):
    """A database's files disagree with its manifest (missing, truncated, wrong checksum or counts)."""


class EncoderMismatchError(RetrievalError):
    """A query used a text encoder other than the one the database was built with."""


class BuildCancelled(RetrievalError):
    """A build or add stopped because its cancellation check asked it to; nothing was changed."""
