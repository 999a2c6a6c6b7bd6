"""The paraphrase sets that measure retrieval quality on the built-in library (this folder's
retrieval_queries_*.txt): reading them, without the benchmark's heavy imports."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
SETS = ("dev", "test", "test2", "test3", "test4")   # dev may be tuned on; the test sets are held out
HELD_OUT = ("test", "test2", "test3", "test4")


def query_set_path(name: str) -> Path:
    return HERE / f"retrieval_queries_{name}.txt"


def load_queries(path: Path) -> list[tuple[str, set, set | None]]:
    """`query | sources | entries or -` lines (see the files' headers)."""
    out = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{Path(path).name}: expected 'query | sources | entries or -', got {raw!r}")
        out.append((parts[0], set(parts[1].split(",")), None if parts[2] == "-" else set(parts[2].split(","))))
    return out
