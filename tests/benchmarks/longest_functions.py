"""The longest functions of the pack (tests left out), by lines from `def` to the last line of the body.

    python3 tests/benchmarks/longest_functions.py [PACK_FOLDER] [--top 10]

The house issue measured the ten longest before and after its changes (the README's Development
section); any checkout can be measured, e.g. one made with `git worktree add /tmp/old <commit>`."""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

SKIP = ("tests", "web", "workflows")


def longest(root: Path, top: int) -> list[tuple[int, str]]:
    rows = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in SKIP or rel.parts[0].startswith("."):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                rows.append((node.end_lineno - node.lineno + 1, f"{rel.as_posix()}:{node.name}"))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    for lines, name in longest(args.root.resolve(), args.top):
        print(f"{lines:5d}  {name}")


if __name__ == "__main__":
    main()
