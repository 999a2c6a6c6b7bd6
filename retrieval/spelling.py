"""Misspelt query words, put right against the database's own caption words and the names of moves
(motion_actions.py) before the query is encoded and its motion words are read ("a cartweel to the
rigth" -> "a cartwheel to the right", "crwaling" -> "crawling").

A sentence encoder splits an unknown word into sub-word pieces that rarely mean the same thing, and
a misspelt side word ("rigth") hides the side. A query word is corrected only when all of these hold:
it is alphabetic and at least 4 letters long; neither it nor a form it may be inflected from
("sprinting": "sprint") is a word of the database's captions, a name of a move or a whole word of the
encoder's vocabulary (so real English words are left alone); and such a word lies within one edit
(two, keeping the first letter, for words of 9 letters or more; a swap of neighbouring letters is one
edit). Among the nearest, the most frequent caption word wins (names of moves no caption uses count
0). A three-letter word that is no known word only gets a dropped letter put back ("kik" -> "kick").
The caption vocabulary is read once per database (the first MAX_CAPTIONS captions) and kept; lookups
use a table of deletions (SymSpell), so a query costs microseconds.
"""
from __future__ import annotations

import re
import threading
import weakref
from collections import Counter

from . import motion_actions

MAX_CAPTIONS = 200_000          # captions read for the vocabulary of a very large database
MIN_LENGTH = 4
_WORD_RE = re.compile(r"[A-Za-z]+")


def _deletes(word: str, depth: int) -> set[str]:
    out, frontier = set(), {word}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1:] for w in frontier for i in range(len(w))}
        out |= frontier
    return out


def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein (optimal string alignment): a swap of neighbouring letters is one edit."""
    prev2, prev = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def allowed_edits(word: str) -> int:
    return 2 if len(word) >= 9 else 1


_SUFFIXES = ("ing", "ed", "es", "s", "er", "ers", "ly", "ies", "ied")


def _stems(word: str):
    """Forms an inflected word may come from: sprinting -> sprint, hopping -> hop, tumbles -> tumble."""
    for suf in _SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 3:
            base = word[:-len(suf)]
            yield base
            yield base + "e"
            if suf in ("ies", "ied"):
                yield base + "y"
            if len(base) >= 2 and base[-1] == base[-2]:
                yield base[:-1]


class Speller:
    """Corrections against one vocabulary (word -> frequency) and `extra` words (frequency 0), plus words
    known to be right."""

    def __init__(self, counts: Counter, known=(), extra=()):
        self.counts = counts
        self.known = set(known) | set(counts) | set(extra)
        self._table: dict[str, set[str]] = {}
        for w in set(counts) | set(extra):
            if len(w) >= MIN_LENGTH - 1:
                for key in _deletes(w, 2) | {w}:
                    self._table.setdefault(key, set()).add(w)

    def correct_word(self, word: str) -> str:
        low = word.lower()
        if len(low) < MIN_LENGTH - 1 or not low.isalpha() or low in self.known or any(
                st in self.known for st in _stems(low)):
            return word
        if len(low) < MIN_LENGTH:       # three letters that are no word: only a dropped letter is put back
            cands = {c for c in self._table.get(low, ()) if len(c) == len(low) + 1}
            return min(cands, key=lambda c: (-self.counts[c], c)) if cands else word
        limit = allowed_edits(low)
        cands = set()
        for key in _deletes(low, limit) | {low}:
            cands |= self._table.get(key, set())
        best = None
        for c in cands:
            d = edit_distance(low, c)
            if d > 1 and c[0] != low[0]:
                continue                    # two edits only keeping the first letter
            if d <= limit and (best is None or (d, -self.counts[c], c) < best):
                best = (d, -self.counts[c], c)
        return word if best is None else best[2]

    def correct(self, text: str) -> str:
        return _WORD_RE.sub(lambda m: self.correct_word(m.group(0)), text)


_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _encoder_words(encoder) -> set[str]:
    tok = getattr(encoder, "_tokenizer", None)
    try:
        vocab = tok.get_vocab() if tok is not None else {}
    except Exception:  # noqa: BLE001 - a tokenizer without a vocabulary: no whole words known
        vocab = {}
    return {w for w in vocab if w.isalpha() and w.islower()}


def speller_for(db, encoder=None) -> Speller:
    """The database's speller (its caption words; the encoder's whole words count as right), built once."""
    with _lock:
        sp = _cache.get(db)
    if sp is None:
        counts: Counter = Counter()
        for (text,) in db.sql.execute("SELECT text FROM captions LIMIT ?", (MAX_CAPTIONS,)):
            counts.update(w.lower() for w in _WORD_RE.findall(text))
        # The names of moves of motion_actions count as caption words that no caption used yet
        # (count 0: a caption word at the same distance wins), so "crwaling" finds "crawling".
        sp = Speller(counts, _encoder_words(encoder) if encoder is not None else (), motion_actions.vocabulary())
        with _lock:
            _cache[db] = sp
    return sp


def correct_query(db, text: str, encoder=None) -> str:
    return speller_for(db, encoder).correct(text)
