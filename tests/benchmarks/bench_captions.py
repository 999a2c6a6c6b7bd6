"""Template captions and paraphrased queries for the retrieval benchmark, and a disk cache of
their real all-MiniLM-L6-v2 embeddings.

Captions are subject x action (with a body part where the action takes one) x direction x
speed x style: 15 * 112 * 10 * 7 * 9 = 1,058,400 distinct sentences, listed in a fixed
pseudo-random order so that the first n of them are a varied sample for any n. Queries use
other words for the same kinds of actions, so no query repeats a caption.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

SUBJECTS = ("a person", "a man", "a woman", "someone", "the person", "a child", "an old man", "a dancer",
            "an athlete", "the figure", "a young woman", "a soldier", "a boy", "a girl", "an elderly woman")
PLAIN_ACTIONS = ("walks", "runs", "jogs", "jumps", "hops", "crawls", "dances", "spins around", "turns around",
                 "steps", "skips", "shuffles", "stumbles", "sneaks", "limps", "marches")
PART_ACTIONS = ("kicks with {}", "swings {}", "stretches {}", "waves {}", "raises {}", "shakes {}", "bends {}",
                "punches with {}", "stomps with {}", "lifts {}", "rotates {}", "taps {}")
BODY_PARTS = ("the left leg", "the right leg", "the left arm", "the right arm", "both arms", "the left foot",
              "the right foot", "the head")
DIRECTIONS = ("", " forward", " backward", " to the left", " to the right", " in a circle", " diagonally",
              " in place", " up the stairs", " around an obstacle")
SPEEDS = ("", " slowly", " quickly", " at a steady pace", " very fast", " hesitantly", " while speeding up")
STYLES = ("", " like a zombie", " happily", " angrily", " as if tired", " with big exaggerated moves",
          " while carrying a box", " like a robot", " gracefully")

ACTIONS = PLAIN_ACTIONS + tuple(a.format(p) for a in PART_ACTIONS for p in BODY_PARTS)
SHAPE = (len(SUBJECTS), len(ACTIONS), len(DIRECTIONS), len(SPEEDS), len(STYLES))
TOTAL = int(np.prod(SHAPE))

QUERY_SUBJECTS = ("somebody", "a guy", "a lady", "a kid", "one person", "a fellow")
QUERY_ACTIONS = ("strolls ahead", "sprints around in a loop", "leaps across a barrier", "boots with the left foot",
                 "greets by waving the right hand", "gets up off the ground", "creeps on all fours",
                 "rotates leftwards", "goes up the steps", "moves in reverse", "boogies", "throws punches",
                 "reaches arms out wide", "jogs gently", "hops on one foot", "twirls on the spot",
                 "drags the left leg while walking", "nods the head", "stamps the right foot", "paces like a robot",
                 "staggers as if exhausted", "tiptoes sideways", "flaps both arms", "marches in a loop")
QUERY_MANNERS = ("", " slowly", " in a hurry", " cheerfully", " wearily", " toward the right", " to the left side")


def caption(i: int) -> str:
    s, a, d, v, st = np.unravel_index(int(i), SHAPE)
    return f"{SUBJECTS[s]} {ACTIONS[a]}{DIRECTIONS[d]}{SPEEDS[v]}{STYLES[st]}"


def caption_order(seed: int = 0) -> np.ndarray:
    """A fixed permutation of all template indices (the first n give a varied sample)."""
    return np.random.default_rng(seed).permutation(TOTAL)


def captions(n: int, seed: int = 0) -> list[str]:
    if n > TOTAL:
        raise ValueError(f"n: at most {TOTAL} distinct template captions, asked for {n}")
    return [caption(i) for i in caption_order(seed)[:n]]


def queries(n: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"{QUERY_SUBJECTS[rng.integers(len(QUERY_SUBJECTS))]} {QUERY_ACTIONS[rng.integers(len(QUERY_ACTIONS))]}"
            f"{QUERY_MANNERS[rng.integers(len(QUERY_MANNERS))]}" for _ in range(n)]


CHUNK = 20_000


def cached_embeddings(enc, n: int, cache_dir: Path | None, log=print, batch_size: int = 256) -> tuple[np.ndarray, float]:
    """Real embeddings of captions(n), read from / written to cache_dir in chunks of CHUNK.
    Returns (vectors, captions per second of the encoding done now, or nan if all were cached)."""
    texts = captions(n)
    out = np.empty((n, enc.dim), dtype=np.float32)
    encoded, seconds = 0, 0.0
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        path = cache_dir / f"minilm_{enc.fingerprint}_{lo:08d}_{CHUNK}.npy" if cache_dir else None
        if path is not None and path.is_file():
            chunk = np.load(path)
            if len(chunk) >= hi - lo:
                out[lo:hi] = chunk[: hi - lo]
                continue
        t = time.perf_counter()
        full_hi = lo + CHUNK if (path is not None and lo + CHUNK <= TOTAL) else hi
        vecs = enc.encode(texts[lo:hi] if full_hi == hi else captions(full_hi)[lo:full_hi], batch_size=batch_size)
        seconds += time.perf_counter() - t
        encoded += len(vecs)
        if path is not None and len(vecs) == CHUNK:
            cache_dir.mkdir(parents=True, exist_ok=True)
            np.save(path.with_suffix(".tmp.npy"), vecs)
            path.with_suffix(".tmp.npy").replace(path)
        out[lo:hi] = vecs[: hi - lo]
        log(f"  embedded captions {lo}..{lo + len(vecs)} ({encoded / seconds:.0f}/s)")
    return out, (encoded / seconds if encoded else float("nan"))
