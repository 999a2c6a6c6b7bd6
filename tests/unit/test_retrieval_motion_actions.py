"""Names of moves as structure (retrieval/motion_actions.py): parsing, profiles, the score they add
and what it does to a search."""
import numpy as np
import pytest

from motionrag_suite.retrieval import motion_actions as ma
from motionrag_suite.retrieval.database import open_database
from motionrag_suite.retrieval.writer import EntrySpec, build_database

from .test_retrieval_fixtures import make_motion


@pytest.mark.parametrize("text, actions", [
    ("busts a move", {"dance"}),
    ("dancin", {"dance"}),
    ("grooving to the beat", {"dance"}),
    ("cutting a rug", {"dance"}),
    ("socks somebody", {"punch"}),
    ("a quick right cross", {"punch"}),
    ("throws a blow", {"punch"}),
    ("hopping on one foot", {"jump"}),
    ("a spinning kick", {"spin", "kick"}),
    ("turns all the way around", {"spin"}),
    ("doing a 360", {"spin"}),
    ("moving ahead on all fours", {"crawl"}),
    ("veers to the right while strolling", {"veer", "walk"}),
    ("takes a left at the corner", {"veer"}),
    ("a back tuck", {"flip"}),
    ("rotates all the way over backwards", {"flip"}),
    ("gets back up to his feet", {"getup"}),
    ("jogging", {"run"}),
])
def test_names_of_moves(text, actions):
    assert ma.parse(text) == actions


@pytest.mark.parametrize("text, actions", [
    ("a somersault on the floor", {"roll"}),        # not a flip
    ("a somersault", {"flip"}),
    ("rolls up to standing", {"getup"}),            # not a roll
    ("rolls forward", {"roll"}),
])
def test_a_phrase_can_name_another_move_than_its_word(text, actions):
    assert ma.parse(text) == actions


@pytest.mark.parametrize("text", ["a horizontal aerial twist", "a person", "the boxes on the shelf", "lies to me",
                                  "the right answer", "pacing myself", "turns around", ""])
def test_words_of_other_senses_name_no_move(text):
    # "turns around" alone is as often a half turn as a spin: only "all the way", "in place" ... make it a spin
    assert ma.parse(text) == frozenset()


def test_inflections():
    for word in ("kicks", "kicked", "kicking", "kickin", "danced", "dancing", "hopped", "hopping", "running",
                 "runnin", "spun", "twirls", "crawled", "stumbles"):
        assert ma.parse(word), word
    assert "crawling" in ma.vocabulary() and "running" in ma.vocabulary() and "spun" not in ma.vocabulary()


def test_profile_and_agreement():
    prof = ma.profile(["a spinning kick", "a high kick", "kicks while turning in place", "a martial arts move"])
    assert prof == {"kick": 0.75, "spin": 0.5}
    norm = np.sqrt(0.75 ** 2 + 0.5 ** 2)
    assert ma.agreement(frozenset({"kick"}), prof) == pytest.approx(0.75 / norm)
    assert ma.agreement(frozenset({"kick", "spin"}), prof) == pytest.approx(1.25 / (np.sqrt(2) * norm))
    assert ma.agreement(frozenset({"walk"}), prof) == 0.0
    assert ma.agreement(frozenset(), prof) == 0.0 and ma.agreement(frozenset({"kick"}), {}) == 0.0
    assert ma.agreement(frozenset({"kick"}), {"kick": 1.0}) == pytest.approx(1.0)


# Entries whose captions the encoder reads near the slang below, and the ones that name the move.
SPECS = [
    ("sprint", ["someone sprints forward"]),
    ("dance", ["a woman dances to the music", "a dancer moves to the beat"]),
    ("kick", ["a high kick with the left foot"]),
    ("punch", ["a person punches forward"]),
    ("spin", ["a person spins around twice"]),
    ("dance_spin", ["a dance spin"]),
]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion_actions")
    build_database(root, "ma", [EntrySpec(motion=make_motion(n, 30 + 5 * i, i), captions=c)
                                for i, (n, c) in enumerate(SPECS)])
    d = open_database(root, "ma")
    yield d
    d.close()


@pytest.mark.parametrize("query, semantic_first, with_actions", [
    ("busts a move", "sprint", "dance"),
    ("slugs a guy", "sprint", "punch"),
    ("jabs", "kick", "punch"),
    ("a roundhouse", "dance_spin", "kick"),
])
def test_the_named_move_ranks_first(db, query, semantic_first, with_actions):
    # the encoder alone prefers another entry (else this test could not fail) ...
    assert db.search(query, 1, structure=["side", "facing", "direction", "count"])[0].name == semantic_first
    # ... the names of moves put the entry that names the asked-for move first
    hit = db.search(query, 1)[0]
    assert hit.name == with_actions
    prof = ma.profile(dict(SPECS)[with_actions])
    assert hit.score == pytest.approx(hit.semantic_score + ma.DEFAULT_BONUS * ma.agreement(ma.parse(query), prof),
                                      abs=1e-6)


def test_the_action_part_can_be_switched_off(db):
    assert db.search("busts a move", 1, action_bonus=0)[0].name == "sprint"
    assert db.search("busts a move", 1, structure=["action"])[0].name == "dance"


def test_a_query_naming_no_move_is_searched_unchanged(db):
    hit = db.search("someone sprints", 1, structure=["action"])[0]
    assert hit.name == "sprint"                 # its one caption names running, as the query does
    assert hit.score == pytest.approx(hit.semantic_score + ma.DEFAULT_BONUS, abs=1e-6)
    hit = db.search("a person at rest, eyes closed", 1, structure=["action"])[0]
    assert hit.score == pytest.approx(hit.semantic_score, abs=1e-6)


def test_bonuses_lift_the_candidate_pool_only(tmp_path, monkeypatch):
    """An entry that names the asked-for move is lifted when its caption is among the search's candidate
    pool (at least search.RERANK_POOL captions by cosine), and not when it lies beyond it."""
    from motionrag_suite.retrieval import search

    specs = [(f"move{i}", [f"someone moves quickly, take {i}"]) for i in range(100)] + [("jog", ["a jogger"])]
    build_database(tmp_path, "pool", [EntrySpec(motion=make_motion(n, 30, i), captions=c)
                                      for i, (n, c) in enumerate(specs)])
    db = open_database(tmp_path, "pool")
    try:
        query = "someone sprints quickly"
        cos = db.index.reconstruct_n(0, db.caption_count) @ db.encode_query(query)
        rank = int((cos > cos[100]).sum())
        assert 32 <= rank < search.RERANK_POOL        # beyond the smallest pool, inside the re-rank pool
        hit = db.search(query, 1)[0]
        assert hit.name == "jog" and hit.score == pytest.approx(cos[100] + ma.DEFAULT_BONUS, abs=1e-5)
        monkeypatch.setattr(search, "RERANK_POOL", 0)    # the pool of a search without bonuses: 32 captions
        assert db.search(query, 1)[0].name != "jog"
    finally:
        db.close()
