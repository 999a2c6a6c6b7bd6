"""Command-line option types shared by the training commands."""
from __future__ import annotations

import argparse
from typing import Callable


def step_counts(names: str) -> Callable[[str], tuple]:
    """An argparse type for three or four comma-separated step counts >= 0, named in its messages by
    `names` (e.g. "TOK,MASKED,RESIDUAL[,REFINER]")."""
    def parse(text: str) -> tuple:
        try:
            parts = tuple(int(p) for p in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected integers {names}, got {text!r}") from None
        if len(parts) not in (3, 4) or min(parts) < 0:
            raise argparse.ArgumentTypeError(f"expected three or four integers >= 0 {names}, got {text!r}")
        return parts
    return parse


__all__ = ["step_counts"]
