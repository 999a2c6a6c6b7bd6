"""A per-database cache of what each entry's captions say (its motion words, the moves they name),
read from SQLite the first time a search meets the entry and kept while the database is open."""
from __future__ import annotations

import threading
import weakref
from typing import Callable


class EntryFacts:
    """entry id -> read(its captions), per database; `read` takes the captions as a list of strings."""

    def __init__(self, read: Callable[[list], object]):
        self._read = read
        self._cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every database's entries (benchmarks time the first reading)."""
        with self._lock:
            self._cache.clear()

    def get(self, db, entry_ids) -> dict:
        with self._lock:
            known = self._cache.setdefault(db, {})
            missing = sorted({int(e) for e in entry_ids} - known.keys())
        if missing:
            got: dict[int, list[str]] = {e: [] for e in missing}
            marks = ",".join("?" * len(missing))
            for eid, text in db.sql.execute(f"SELECT entry_id, text FROM captions WHERE entry_id IN ({marks})",
                                            missing):
                got[int(eid)].append(text)
            read = {e: self._read(texts) for e, texts in got.items()}
            with self._lock:
                known.update(read)
        return {int(e): known[int(e)] for e in entry_ids}
