"""The paraphrase sets behind the retrieval-quality figures: well formed, naming real clips and
entries, and held out for real (no query is a library caption or appears in two sets)."""
from __future__ import annotations

import pytest

from benchmarks.retrieval_query_sets import SETS, load_queries, query_set_path
from motionrag_suite.models.motion import library

ORIGINALS = set(library.list_clips(include_mirrored=False))
ENTRIES = set(library.list_clips())
CAPTIONS = {c.lower() for name in ENTRIES for c in library.clip_captions(name)}


@pytest.mark.parametrize("name", SETS)
def test_query_set_names_real_clips_and_entries_of_those_clips(name):
    queries = load_queries(query_set_path(name))
    assert len(queries) >= 40
    for text, sources, entries in queries:
        assert sources <= ORIGINALS, (text, sources - ORIGINALS)
        if entries is not None:
            assert entries <= ENTRIES, (text, entries - ENTRIES)
            # a side-specific answer must be one of the acceptable clips or its mirrored copy
            assert {e.removeprefix(library.MIRROR_PREFIX) for e in entries} <= sources, text


@pytest.mark.parametrize("name", SETS)
def test_no_query_is_a_library_caption(name):
    copied = [t for t, _, _ in load_queries(query_set_path(name)) if t.lower() in CAPTIONS]
    assert copied == []


def test_no_query_is_in_two_sets():
    seen: dict[str, str] = {}
    for name in SETS:
        for text, _, _ in load_queries(query_set_path(name)):
            assert text.lower() not in seen, f"{text!r} is in {seen[text.lower()]} and {name}"
            seen[text.lower()] = name


def test_a_malformed_line_is_refused(tmp_path):
    p = tmp_path / "q.txt"
    p.write_text("# header\nsomeone walks | walk\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected 'query | sources | entries or -'"):
        load_queries(p)
