"""Motion words as structure: side, facing, direction and count, parsed from a query and from
captions, so that a result that contradicts what the query asks for ranks below one that agrees.

A sentence encoder places "kicks with the left leg" and "kicks with the right leg" close together;
these words decide which clip is meant, so they are read here as facts and compared:

* side: left / right, in one of three roles, because one clip often names several sides (a
  kick with the right leg that turns the body to the left): the *limb* ("the left leg",
  "right-handed", "a left jab"), the *turn* (a side after turn, spin, twirl, veer, ... or before
  "turn"; clockwise counts as a turn to the right) and the *travel* (any other side: "moving to
  the left", "sideways to the right");
* facing: face up (on the back, supine) / face down (on the stomach, belly or front, prone);
* direction: forward / backward (a back flip is backward), and the sense of rotation
  (clockwise / counterclockwise, which is the same fact as a turn to the right / left);
* count: how many times (once, twice, "two spins", a 360 = one turn, a 720 = two, double, triple).

An entry's facts are those of all its captions together (captions of a mirrored copy already
read with left and right swapped). A fact contradicts when the query states exactly one value
and the entry states values that exclude it; a query that states both values of a fact
("turns left to the right") says nothing about it. Each contradicted fact costs `weight` off
the entry's score and each agreeing fact adds `bonus`; silence costs nothing. Bonuses lift
entries among the search's candidate pool only (search.RERANK_POOL).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, fields

from ..common.errors import InputError
from .entry_facts import EntryFacts

# The parts of structure a search may use; "action" (names of moves) lives in motion_actions.py.
PARTS = ("side", "facing", "direction", "count", "action")
DEFAULT_WEIGHT = 0.1          # cosine points off per contradicted fact (chosen on the development set)
# Cosine points added per agreeing fact: 0 when only the development set was there to choose on
# (one query gained), 0.05 since the names of moves (motion_actions.py) came in, chosen with them on the
# four query sets seen by then (0.05 and 0.1 gain two queries, 0.02 none).
DEFAULT_BONUS = 0.05

_EMPTY = frozenset()


@dataclass(frozen=True)
class MotionWords:
    """The facts one text states; every field is a (usually empty) frozenset."""

    limb: frozenset = _EMPTY        # {"left", "right"}: the side of the leg, arm, hand, foot used
    turn: frozenset = _EMPTY        # {"left", "right"}: which way the body turns (clockwise = right)
    travel: frozenset = _EMPTY      # {"left", "right"}: which way the body moves
    facing: frozenset = _EMPTY      # {"up", "down"}: lying face up (on the back) / face down
    heading: frozenset = _EMPTY     # {"forward", "backward"}
    count: frozenset = _EMPTY       # ints: how many times / turns

    def __or__(self, other: "MotionWords") -> "MotionWords":
        return MotionWords(**{f.name: getattr(self, f.name) | getattr(other, f.name) for f in fields(self)})

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


# ---------------------------------------------------------------------------------- parsing

_LIMB_NOUNS = {"leg", "legs", "foot", "feet", "arm", "arms", "hand", "hands", "fist", "fists", "knee", "knees",
               "elbow", "elbows", "shoulder", "shoulders", "heel", "toe", "toes", "hip", "handed", "footed",
               "legged", "armed", "hander", "footer", "punch", "punches", "jab", "jabs", "hook", "hooks", "cross",
               "uppercut", "kick", "kicks", "palm", "wrist", "ankle", "shin", "thigh"}
_TURN_NOUNS = {"turn", "turns", "turning", "spin", "spins", "twist", "twists", "rotation", "rotations", "bend",
               "bends", "curve", "curves", "pivot", "pivots", "twirl", "twirls", "circle", "circles", "loop",
               "u-turn"}
# Words that make a following side word a turn / a way of travelling (prefixes of at least 4 letters,
# whole words otherwise).
_TURN_CUES = ("turn", "spin", "spun", "twirl", "rotat", "pivot", "whirl", "twist", "veer", "curv", "bend", "bent",
              "circl", "pirouet", "swivel", "swerv", "revolv", "around", "round")
_TRAVEL_CUES = ("mov", "travel", "step", "walk", "run", "ran", "go", "goes", "went", "head", "lean", "shuffl",
                "slid", "hop", "jump", "leap", "lung", "strid", "stroll", "drift", "shift", "sideways", "toward",
                "towards", "across", "cartwheel", "wheel", "roll", "crawl", "dash", "sprint", "jog", "skip",
                "march", "strafe", "sidestep", "side-step", "dance", "danc", "wander", "amble", "tumbl", "flip")
_STOP_CLAUSE = {"while", "then", "as", "before", "after", "and", "but", "whilst", "when", "until"}
_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_CLAUSE_RE = re.compile(r"[,;:.!?()\[\]/]+")

_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
            "ten": 10, "once": 1, "twice": 2, "thrice": 3, "single": 1, "double": 2, "triple": 3, "quadruple": 4}
_COUNTED = {"times", "time", "turns", "turn", "spins", "spin", "rotations", "rotation", "revolutions", "revolution",
            "circles", "circle", "flips", "flip", "twirls", "twirl", "loops", "loop", "somersaults", "somersault",
            "backflips", "backflip", "cartwheels", "cartwheel", "pirouettes", "pirouette"}
_DEGREES = {"180": None, "360": 1, "540": None, "720": 2, "900": None, "1080": 3}
_FULL_TURN = {"turn", "circle", "rotation", "revolution", "spin", "twirl", "360"}

_POSSESSIVE = r"(?:(?:his|her|their|its|one's|the|a|your|my)\s+)?"
_FACE_DOWN = re.compile(r"\b(?:face\s*down(?:wards?)?|prone|(?:belly|stomach|chest|nose)\s+down|face\s+first|"
                        r"on\s+" + _POSSESSIVE + r"(?:stomach|belly|front|chest|tummy|face)s?)\b")
_FACE_UP = re.compile(r"\b(?:face\s*up(?:wards?)?|supine|(?:belly|chest)\s+up|on\s+" + _POSSESSIVE + r"backs?|"
                      r"(?:looking|staring|gazing|facing)\s+(?:up\s+)?(?:at\s+|towards?\s+)?the\s+(?:ceiling|sky))"
                      r"\b(?!\s+(?:foot|of)\b)")
_FORWARD = re.compile(r"\b(?:forwards?|ahead|frontwards?|front\s*(?:flip|tuck|somersault|roll|handspring)s?)\b")
_BACKWARD = re.compile(r"\b(?:backwards?|in\s+reverse|reversing|"
                       r"back\s*(?:flip|tuck|somersault|roll|handspring|walk|pedal)(?:s|ping|ped|ing)?)\b")
_CW = re.compile(r"\bclockwise\b")
_CCW = re.compile(r"\b(?:counter\s*clockwise|anti\s*clockwise|contra\s*clockwise)\b")


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("\u2019", "'")
    return re.sub(r"[-_]", " ", text)


def _cue_kind(word: str) -> str | None:
    for kind, cues in (("turn", _TURN_CUES), ("travel", _TRAVEL_CUES)):
        for cue in cues:
            if word == cue or (len(cue) >= 4 and word.startswith(cue)):
                return kind
    return None


def _side_role(words: list[str], i: int) -> str:
    """'limb', 'turn' or 'travel' for the side word at words[i] (a clause's words)."""
    after = words[i + 1] if i + 1 < len(words) else ""
    after2 = words[i + 2] if i + 2 < len(words) else ""
    if after == "hand" and after2 in _TURN_NOUNS | {"side"}:
        return "turn" if after2 in _TURN_NOUNS else "travel"           # "a left-hand bend"
    if after in _LIMB_NOUNS or (after in {"side", "and"} and after2 in _LIMB_NOUNS):
        return "limb"
    if after in _TURN_NOUNS:
        return "turn"
    before = words[max(0, i - 3):i]
    if before[-2:] in (["with", "the"], ["with", "his"], ["with", "her"], ["with", "their"], ["with", "one's"],
                       ["using", "the"], ["using", "his"], ["using", "her"], ["using", "their"]):
        return "limb"                                                   # "kicks with the left"
    for w in reversed(words[:i]):                                      # the nearest cue before it
        kind = _cue_kind(w)
        if kind:
            return kind
    for w in words[i + 1:]:                                            # or after it ("to the left he turns")
        kind = _cue_kind(w)
        if kind:
            return kind
    return "travel"


def _clauses(text: str) -> list[list[str]]:
    out = []
    for part in _CLAUSE_RE.split(text):
        clause: list[str] = []
        for w in _WORD_RE.findall(part):
            if w in _STOP_CLAUSE and clause:
                out.append(clause)
                clause = []
            else:
                clause.append(w)
        if clause:
            out.append(clause)
    return out


def _counts(words: list[str]) -> set[int]:
    out = set()
    for i, w in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if w in ("once", "twice", "thrice"):
            out.add(_NUMBERS[w])
        elif w in _NUMBERS and nxt in _COUNTED:
            out.add(_NUMBERS[w])
        elif w.isdigit() and w in _DEGREES:
            if _DEGREES[w]:
                out.add(_DEGREES[w])
        elif w.isdigit() and nxt in _COUNTED and 0 < int(w) <= 20:
            out.add(int(w))
        elif w == "full" and nxt in _FULL_TURN and i > 0 and words[i - 1] in ("a", "one"):
            out.add(1)
    return out


def parse(text: str) -> MotionWords:
    """The facts `text` states (see the module docstring)."""
    norm = _normalise(text)
    roles: dict[str, set] = {"limb": set(), "turn": set(), "travel": set()}
    for clause in _clauses(norm):
        for i, w in enumerate(clause):
            side = "left" if w in ("left", "leftward", "leftwards", "lefty") else \
                "right" if w in ("right", "rightward", "rightwards", "righty") else None
            if side is None:
                continue
            if w == "right" and i + 1 < len(clause) and clause[i + 1] in ("away", "now", "after", "before", "there"):
                continue                                               # "right away": not a side
            roles[_side_role(clause, i)].add(side)
    if _CCW.search(norm):
        roles["turn"].add("left")
    if _CW.search(_CCW.sub(" ", norm)):
        roles["turn"].add("right")
    facing = ({"down"} if _FACE_DOWN.search(norm) else set()) | ({"up"} if _FACE_UP.search(norm) else set())
    heading = ({"forward"} if _FORWARD.search(norm) else set()) | ({"backward"} if _BACKWARD.search(norm) else set())
    count: set[int] = set()
    for clause in _clauses(norm):
        count |= _counts(clause)
    return MotionWords(limb=frozenset(roles["limb"]), turn=frozenset(roles["turn"]),
                       travel=frozenset(roles["travel"]), facing=frozenset(facing), heading=frozenset(heading),
                       count=frozenset(count))


def merge(words) -> MotionWords:
    out = MotionWords()
    for w in words:
        out = out | w
    return out


# ---------------------------------------------------------------------------------- comparing

# fact -> the part of the ablation it belongs to. The turn fact is fed by side words ("turns
# left") and by rotation words ("counterclockwise"); it counts once when both parts are on.
_FACTS = {"limb": ("side",), "travel": ("side",), "turn": ("side", "direction"), "facing": ("facing",),
          "heading": ("direction",), "count": ("count",)}


def _conflict(q: frozenset, e: frozenset) -> bool:
    return len(q) == 1 and bool(e) and not (q & e)


def contradictions(query: MotionWords, entry: MotionWords, parts=PARTS) -> list[str]:
    """The facts on which `entry` contradicts `query`, among those the enabled parts cover."""
    on = set(parts)
    out = []
    for fact, owners in _FACTS.items():
        if not on.intersection(owners):
            continue
        if _conflict(getattr(query, fact), getattr(entry, fact)):
            out.append(fact)
    return out


def normalise_parts(parts) -> tuple[str, ...]:
    """The parts to use: True / None = all, False / () = none, else a subset of PARTS."""
    if parts is None or parts is True:
        return PARTS
    if parts is False:
        return ()
    if isinstance(parts, str):
        parts = [parts]
    parts = tuple(parts)
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise InputError("structure", f"unknown part(s) {', '.join(map(repr, bad))}; expected some of {', '.join(PARTS)}")
    return parts


# Each entry's facts: those of all its captions together.
ENTRY_WORDS = EntryFacts(lambda captions: merge(parse(t) for t in captions))


def agreements(query: MotionWords, entry: MotionWords, parts=PARTS) -> list[str]:
    """The facts the query states one value of and `entry` states too, among the enabled parts."""
    on = set(parts)
    return [fact for fact, owners in _FACTS.items() if on.intersection(owners)
            and len(getattr(query, fact)) == 1 and getattr(query, fact) <= getattr(entry, fact)]


def adjustments(db, query: MotionWords, entries, parts=PARTS, weight: float = DEFAULT_WEIGHT,
                bonus: float = 0.0):
    """Per entry id in `entries` (a numpy array), float64: bonus per agreeing fact less weight per
    contradicted fact."""
    import numpy as np

    out = np.zeros(len(entries), dtype=np.float64)
    if not query or not parts or (weight == 0 and bonus == 0):
        return out
    facts = ENTRY_WORDS.get(db, entries)
    for i, e in enumerate(entries):
        f = facts[int(e)]
        out[i] = bonus * len(agreements(query, f, parts)) - weight * len(contradictions(query, f, parts))
    return out


# ---------------------------------------------------------------------------------- bad queries

_STOP_WORDS = frozenset("""
a an the and or but if then so of to in on at by for with from as is are was were be been being am do does did
doing done have has had having i me my we our you your he him his she her it its they them their this that these
those there here what which who whom whose when where why how all any both each few more most other some such no
nor not only own same than too very can will just should now also again ever please pls thing things something
anything stuff like let lets one ones someone somebody person people man woman guy show find give want need make
search query motion clip
""".split())
_ENGLISH_ONLY = {"all-MiniLM-L6-v2", "all-mpnet-base-v2"}


def _letters_by_script(text: str) -> tuple[int, int]:
    latin = other = 0
    for ch in text:
        if ch.isalpha():
            if ch.isascii() or unicodedata.name(ch, "").startswith("LATIN"):
                latin += 1
            else:
                other += 1
    return latin, other


def check_query(text: str, encoder_id: str | None = None, input_name: str = "text") -> None:
    """Raise InputError for a query no search can answer: no letters at all, only stop-words
    ("the a of"), or, for an English-only encoder, text mostly in a non-Latin script. Latin-script
    text in another language is searched (shared words and names of moves still match); so is a
    query that contradicts itself (the contradicted fact is then ignored)."""
    latin, other = _letters_by_script(text)
    if latin + other == 0:
        raise InputError(input_name, f"{text!r} has no words; describe a motion, e.g. 'a person walks forward'")
    if encoder_id in _ENGLISH_ONLY and other > latin:
        raise InputError(input_name, f"{text!r} is not in English, and text encoder {encoder_id!r} reads English "
                                     "only; write the query in English (e.g. 'a person walks forward') or use a "
                                     "database built with a multilingual encoder")
    words = _WORD_RE.findall(_normalise(text))
    if words and all(w in _STOP_WORDS for w in words):
        raise InputError(input_name, f"{text!r} names no motion (only words such as 'the', 'a', 'someone'); "
                                     "describe what the body does, e.g. 'a person kicks with the left leg'")
