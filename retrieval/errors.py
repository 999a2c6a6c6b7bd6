"""Errors raised by the motion database and retrieval code."""
from __future__ import annotations


class RetrievalError(ValueError):
    """Bad input to, or a bad state of, a motion database; the message says which and what was expected."""


class DatabaseNotFoundError(RetrievalError):
    """No database of that name under the models folder."""


class DatabaseCorruptError(RetrievalError):
    """A database's files disagree with its manifest (missing, truncated, wrong checksum or counts)."""


class EncoderMismatchError(RetrievalError):
    """A query used a text encoder other than the one the database was built with."""


class BuildCancelled(RetrievalError):
    """A build or add stopped because its cancellation check asked it to; nothing was changed."""
