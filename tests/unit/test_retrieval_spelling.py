"""Misspelt query words put right against a database's caption words (retrieval/spelling.py)."""
from collections import Counter

import pytest

from motionrag_suite.retrieval import spelling
from motionrag_suite.retrieval.database import open_database
from motionrag_suite.retrieval.writer import EntrySpec, build_database

from .test_retrieval_fixtures import make_motion


@pytest.mark.parametrize("a, b, d", [("kick", "kick", 0), ("kik", "kick", 1), ("rigth", "right", 1),
                                     ("cartweel", "cartwheel", 1), ("sprinting", "spinning", 2), ("", "abc", 3)])
def test_edit_distance_counts_a_swap_as_one(a, b, d):
    assert spelling.edit_distance(a, b) == d == spelling.edit_distance(b, a)


SP = spelling.Speller(Counter({"cartwheel": 3, "right": 9, "left": 9, "kicks": 4, "backflip": 2, "spinning": 2,
                               "person": 9, "jumps": 3, "jump": 1}),
                      known={"sprint", "boogie", "wheel", "cart", "kick"})


@pytest.mark.parametrize("text, want", [
    ("a cartweel to the rigth", "a cartwheel to the right"),
    ("someone does a backflp", "someone does a backflip"),
    ("a persn kiks", "a person kicks"),
    ("Rigth", "right"),
    ("a lft kick", "a left kick"),          # three letters that are no word: a dropped letter put back
])
def test_misspelt_words_are_put_right(text, want):
    assert SP.correct(text) == want


@pytest.mark.parametrize("text", [
    "sprinting ahead",      # an inflection of a known word, two edits from "spinning"
    "boogies",              # a known word, inflected
    "a kik",                # three letters: only a caption word one letter longer ("kick" is known, no caption word)
    "go rn",                # two letters
])
def test_real_words_and_short_ones_are_left_alone(text):
    assert SP.correct(text) == text


def test_the_nearest_then_the_most_frequent_caption_word_wins():
    assert SP.correct("jumpz") == "jumps"          # one edit from "jumps" (3 captions), two from "jump"
    assert spelling.Speller(Counter({"jumps": 1, "jumpy": 5})).correct("jumpz") == "jumpy"


def test_two_edits_only_for_long_words_keeping_the_first_letter():
    sp = spelling.Speller(Counter({"somersault": 1, "roll": 1}))
    assert sp.correct("somersalut") == "somersault"        # 10 letters, a swap and nothing else
    assert sp.correct("somrsalt") == "somrsalt"            # 8 letters, two edits: too far
    assert sp.correct("xomersaul") == "xomersaul"          # two edits changing the first letter


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    root = tmp_path_factory.mktemp("spelling")
    caps = [("cw_l", "a person does a cartwheel to the left"), ("cw_r", "a person does a cartwheel to the right"),
            ("flip", "someone does a backflip")]
    build_database(root, "sp", [EntrySpec(motion=make_motion(n, 30, i), captions=[c]) for i, (n, c) in enumerate(caps)])
    d = open_database(root, "sp")
    yield d
    d.close()


def test_search_reads_the_corrected_query(db):
    assert spelling.correct_query(db, "a cartweel to the rigth", db.encoder()) == "a cartwheel to the right"
    assert db.search("a cartweel to the rigth", 1)[0].name == "cw_r"
    assert db.search("someone does a backflp", 1)[0].name == "flip"
    # English words the captions lack are the encoder's to read, never "corrected" into caption words
    assert spelling.correct_query(db, "a person does a handstand", db.encoder()) == "a person does a handstand"


def test_names_of_moves_count_as_words_no_caption_used_yet(db):
    # none of the captions says crawling or kick: the names of moves (motion_actions) supply them
    assert spelling.correct_query(db, "crwaling on the floor", db.encoder()) == "crawling on the floor"
    assert spelling.correct_query(db, "a spining kik", db.encoder()) == "a spining kick"   # spin+ing: a form
    assert spelling.correct_query(db, "dancin all night", db.encoder()) == "dancin all night"     # a known form
    # a caption word at the same distance wins over a name of a move ("backflp": backflip, in a caption)
    assert spelling.correct_query(db, "a backflp", db.encoder()) == "a backflip"
