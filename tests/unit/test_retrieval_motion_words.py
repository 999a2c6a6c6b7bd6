"""Motion words as structure (retrieval/motion_words.py): the parser, the comparison of a query's
facts with an entry's, their effect on search, and queries that cannot or can be answered."""
import numpy as np
import pytest

from motionrag_suite.common.errors import InputError
from motionrag_suite.models.motion.library import mirror_caption
from motionrag_suite.retrieval import motion_actions
from motionrag_suite.retrieval import motion_words as mw
from motionrag_suite.retrieval.database import open_database
from motionrag_suite.retrieval.writer import EntrySpec, build_database

from .test_retrieval_fixtures import make_motion


def facts(text):
    w = mw.parse(text)
    return {k: set(v) for k, v in w.__dict__.items() if v}


# ---------------------------------------------------------------------------------- parser

@pytest.mark.parametrize("text, expected", [
    ("a person kicks high with their right leg", {"limb": {"right"}}),
    ("a left-handed punch", {"limb": {"left"}}),
    ("kicks with the left", {"limb": {"left"}}),
    ("a boxer throws a left jab", {"limb": {"left"}}),
    ("walking and turning left", {"turn": {"left"}}),
    ("making a right turn while walking", {"turn": {"right"}}),
    ("a gentle left-hand bend while walking", {"turn": {"left"}}),
    ("strolling while veering to the right", {"turn": {"right"}}),
    ("a cartwheel to the left", {"travel": {"left"}}),
    ("someone heads off to the right as they walk", {"travel": {"right"}}),
    ("a dancer twirls around counterclockwise", {"turn": {"left"}}),
    ("a dance spin, turning clockwise once", {"turn": {"right"}, "count": {1}}),
    ("spinning anti-clockwise", {"turn": {"left"}}),
])
def test_sides_and_their_roles(text, expected):
    assert facts(text) == expected


def test_one_sentence_can_name_several_roles():
    got = facts("someone throws a high right-footed kick and turns to their left as they land")
    assert got == {"limb": {"right"}, "turn": {"left"}}
    got = facts("a person spins around to their left twice while moving sideways to the right")
    assert got == {"turn": {"left"}, "travel": {"right"}, "count": {2}}


@pytest.mark.parametrize("text, facing", [
    ("a person lying face down pushes up", {"down"}), ("from a face-down position", {"down"}),
    ("rising from a prone position", {"down"}), ("a man lying on his belly stands up", {"down"}),
    ("someone on their stomach", {"down"}), ("a person on their front pushes up to stand", {"down"}),
    ("lying on the back, the man gets up", {"up"}), ("getting up after lying supine", {"up"}),
    ("someone lying face up sits up", {"up"}), ("a person lying faceup", {"up"}),
])
def test_facing(text, facing):
    assert mw.parse(text).facing == facing


def test_back_as_an_adverb_is_no_facing():
    assert mw.parse("lands back on their feet").facing == set()
    assert mw.parse("steps out and back").heading == set()


@pytest.mark.parametrize("text, heading", [
    ("a person jumps forward", {"forward"}), ("sprinting straight ahead", {"forward"}),
    ("a front flip", {"forward"}), ("somersaults backwards", {"backward"}), ("a backflip", {"backward"}),
    ("a back tuck in place", {"backward"}), ("walking in reverse", {"backward"}),
])
def test_heading(text, heading):
    assert mw.parse(text).heading == heading


@pytest.mark.parametrize("text, count", [
    ("spins twice", {2}), ("turning once", {1}), ("three spins in a row", {3}), ("a 360 kick", {1}),
    ("a 720", {2}), ("a double backflip", {2}), ("turns 2 times", {2}), ("a full turn to the right", {1}),
    ("two quick strides", set()), ("one person walks", set()),
])
def test_count(text, count):
    assert mw.parse(text).count == count


def test_right_as_an_adverb_is_no_side():
    assert facts("he stands up right away") == {}


def test_a_mirrored_caption_states_the_other_sides():
    caption = "a person jumps and spins to their left, kicking high with their right leg, turning clockwise"
    a, b = mw.parse(caption), mw.parse(mirror_caption(caption))
    assert (a.limb, a.turn) == ({"right"}, {"left", "right"})
    assert (b.limb, b.turn) == ({"left"}, {"left", "right"})
    assert mw.parse(mirror_caption("a kick with the right foot")).limb == {"left"}


# ---------------------------------------------------------------------------------- comparing

def test_contradiction_agreement_and_silence():
    entry = mw.merge([mw.parse("a person kicks with the right leg and turns left"), mw.parse("a high kick")])
    assert mw.contradictions(mw.parse("a left kick"), entry) == ["limb"]
    assert mw.agreements(mw.parse("a right kick"), entry) == ["limb"]
    assert mw.contradictions(mw.parse("a right kick"), entry) == []
    assert mw.contradictions(mw.parse("a kick"), entry) == []                     # the query is silent
    assert mw.contradictions(mw.parse("a person lying face down"), entry) == []  # the entry is silent
    # a turn stated as a side and as a sense of rotation is one fact, from either part
    assert mw.contradictions(mw.parse("turning clockwise"), entry) == ["turn"]
    assert mw.contradictions(mw.parse("turning clockwise"), entry, parts=("direction",)) == ["turn"]
    assert mw.contradictions(mw.parse("turning clockwise"), entry, parts=("facing", "count")) == []


def test_a_query_that_contradicts_itself_constrains_nothing():
    q = mw.parse("turns left to the right")
    assert q.turn == {"left", "right"}
    entry = mw.parse("a person turns right")
    assert mw.contradictions(q, entry) == [] and mw.agreements(q, entry) == []


def test_parts_are_checked():
    assert mw.normalise_parts(True) == mw.PARTS and mw.normalise_parts(False) == ()
    assert mw.normalise_parts(["side"]) == ("side",)
    with pytest.raises(InputError) as err:
        mw.normalise_parts(["sides"])
    assert err.value.input == "structure"


# ---------------------------------------------------------------------------------- search

# Pairs whose captions differ in one fact, the contradicting one worded closer to the query below
# (cosine 0.99 against 0.96, 0.92 and 0.94 with all-MiniLM-L6-v2).
SPECS = [
    ("kick_r", ["a person kicks high with the right leg"]),
    ("kick_l", ["someone kicks high with the left leg"]),
    ("up", ["a person gets up from lying face up on the floor"]),
    ("down", ["a person gets up from lying on their front on the floor"]),
    ("spin2", ["twice, a dancer spins"]),
    ("spin1", ["a dancer spins once around"]),
    ("walk", ["a person walks forward"]),
    ("back", ["a person walks backward"]),
]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion_words")
    build_database(root, "mw", [EntrySpec(motion=make_motion(n, 30 + 5 * i, i), captions=c)
                                for i, (n, c) in enumerate(SPECS)])
    d = open_database(root, "mw")
    yield d
    d.close()


@pytest.mark.parametrize("query, semantic_first, structured_first", [
    ("a person kicks high with the left leg", "kick_r", "kick_l"),
    ("a person gets up from lying face down on the floor", "up", "down"),
    ("a dancer spins twice around", "spin1", "spin2"),
])
def test_a_contradiction_ranks_below_an_agreement(db, query, semantic_first, structured_first):
    # the semantic score alone prefers the contradicting entry (else this test could not fail) ...
    assert db.search(query, 1, structure=False)[0].name == semantic_first
    # ... the structure puts the agreeing one first
    assert db.search(query, 1)[0].name == structured_first


def test_each_part_acts_only_on_its_facts(db):
    q = "a person kicks high with the left leg"
    assert db.search(q, 1, structure=["facing", "direction", "count"])[0].name == "kick_r"
    assert db.search(q, 1, structure=["side"])[0].name == "kick_l"


def test_scores_are_cosine_plus_adjustments_for_every_entry(db):
    """Brute force over every caption: the ranking and scores db.search returns."""
    for query in ["a person kicks with the left leg", "lying face down, gets up", "walks backwards twice",
                  "a dancer spins"]:
        for weight, bonus, action_bonus in [(0.1, 0.0, 0.0), (0.3, 0.05, 0.0), (0.1, 0.05, 0.2), (0.0, 0.0, 0.5)]:
            hits = db.search(query, len(SPECS), structure_weight=weight, structure_bonus=bonus,
                             action_bonus=action_bonus, one_per_source=False)
            qv = db.encode_query(query)
            cos = db.index.reconstruct_n(0, db.caption_count) @ qv
            entries = db.caption_entry
            adj = mw.adjustments(db, mw.parse(query), entries, mw.PARTS, weight, bonus)
            adj = adj + motion_actions.adjustments(db, motion_actions.parse(query), entries, action_bonus)
            want = sorted(((float(c + a), int(e)) for c, a, e in zip(cos, adj, entries)), key=lambda x: -x[0])
            assert [h.entry_id for h in hits] == [e for _, e in want]
            np.testing.assert_allclose([h.score for h in hits], [s for s, _ in want], atol=1e-5)
            np.testing.assert_allclose([h.semantic_score for h in hits], cos[[h.caption_id for h in hits]], atol=1e-5)


def test_the_pool_grows_past_penalised_entries(db):
    """top_k 1 with a huge weight: every near caption is penalised, the answer lies beyond the first pool."""
    hit = db.search("a person walks backward", 1, structure_weight=5.0)[0]
    assert hit.name == "back"
    hit = db.search("a person walks forwards", 1, structure_weight=5.0)[0]
    assert hit.name == "walk"


# ---------------------------------------------------------------------------------- bad queries

@pytest.mark.parametrize("query", ["the a of", "someone", "  and the  ", "!!! ???", "12 34"])
def test_a_query_with_nothing_to_search_is_an_input_error(db, query):
    with pytest.raises(InputError) as err:
        db.search(query, 1)
    assert err.value.input == "text"
    assert str(err.value).startswith("text: ")


def test_a_non_latin_query_is_refused_by_an_english_encoder(db):
    for query in ("一个人向前走", "человек идёт вперёд"):
        with pytest.raises(InputError, match="English"):
            db.search(query, 1)
    mw.check_query("一个人向前走", "some-multilingual-encoder")       # another encoder may read it


def test_queries_that_have_an_answer_get_one(db):
    assert db.search("turns left to the right", 1)          # contradicts itself: no error, a result
    assert db.search("una persona camina hacia adelante", 1)   # Latin script, another language
    assert db.search("get up", 1) and db.search("the one who kicks", 1)
    assert db.search("a persn kiks wth teh left leg", 1)[0].name == "kick_l"   # misspelt
