"""What a builder hands to a distributed engine: a WorkPlan.

A plan is the list of its work items (one per source file, HumanML3D clip or video) and the code that
turns a batch of items into EntrySpecs on a worker, with the models loaded once per worker. The plan
object travels to the workers, so it holds only small, picklable things (paths as strings, options,
at most already-loaded encoders that the caller passed in). It is engine-free: nothing here imports Ray.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...common.stamps import file_stamp
from ..entry_spec import EntrySpec


@dataclass(frozen=True)
class WorkItem:
    """One unit of work. key: what identifies its result on resume (changes when the input file does);
    label: how messages name it (a file name, a clip id); args: JSON-able arguments for WorkPlan.run."""
    key: str
    label: str
    args: tuple = ()


def file_key(path: str | os.PathLike, *extra: Any) -> str:
    """A resume key for an item read from one file: its path and stamp (common/stamps.py: a file
    replaced since the last run is done again), plus anything else the item's result depends on."""
    return digest([str(Path(path)), *file_stamp(path), *extra])


def digest(value: Any) -> str:
    """A short hex digest of a JSON-able value (sorted keys, so equal options give equal digests)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class WorkPlan:
    """Base of the builders' plans. Subclasses set `kind` and implement items(), options() and run();
    those that hold neural models set uses_models and implement load()."""

    kind: str = ""
    uses_models: bool = False         # True: workers get GPUs when the cluster has them

    def items(self) -> list[WorkItem]:
        raise NotImplementedError

    def options(self) -> dict:
        """Everything the results depend on besides the items' own files (JSON-able): a resumed job
        must have the same options, or its finished shards would mix two different builds."""
        raise NotImplementedError

    def load(self, device: str) -> Any:
        """Run once per worker: load the models. The return value is passed to every run()."""
        return None

    def run(self, state: Any, items: Sequence[WorkItem]) -> list[list[EntrySpec]]:
        """The entries of each item, in order (an item may give none, one or several)."""
        raise NotImplementedError

    def skippable(self, error: BaseException) -> bool:
        """Whether an item that failed with `error` is skipped and listed (the builder's skip_bad
        policy for undecodable videos) rather than failing the job."""
        return False


__all__ = ["WorkItem", "WorkPlan", "file_key", "digest"]
