"""Atomicity and concurrency with real processes: builds and adds killed half way (kill -9)
leave the previous database byte-for-byte and query-for-query as it was, and readers in
other processes query consistently while a writer adds."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from motionrag_suite.retrieval.database import open_database
from motionrag_suite.retrieval.errors import BuildCancelled
from motionrag_suite.retrieval.folder_swap import remove_stale_builds
from motionrag_suite.retrieval.text_encoder import get_text_encoder
from motionrag_suite.retrieval.writer import add_entries

from common.standalone import PACK_ROOT

from .test_retrieval_fixtures import CLIPS, build_small, clip_specs, file_hashes

QUERIES = ("a person walks forward", "someone waving", "a person crawls", "kick", "sitting down")

PRELUDE = f"""
import os, sys, time, json
os.environ["HF_HUB_OFFLINE"] = "1"; os.environ["TRANSFORMERS_OFFLINE"] = "1"
sys.path.insert(0, {str(PACK_ROOT)!r})
from common.standalone import load_pack; load_pack()
import numpy as np
from motionrag_suite.retrieval.entry_spec import EntrySpec
from motionrag_suite.retrieval.writer import build_database, add_entries
from motionrag_suite.retrieval.database import open_database
from motionrag_suite.models.motion.motion import Motion
root = sys.argv[1]

def motion(name, frames, seed):
    rng = np.random.default_rng(seed)
    return Motion(joints=(rng.normal(0, 0.1, (frames, 22, 3)) + 1).astype(np.float32), fps=20, name=name)

def specs(prefix, n, seed0=100):
    return [EntrySpec(motion=motion(f"{{prefix}}{{i}}", 30 + i, seed0 + i),
                      captions=[f"a person does move number {{i}} of {{prefix}}", f"{{prefix}} motion {{i}}"])
            for i in range(n)]

def stall_after(batches):
    def progress(done, total):
        print("PROGRESS", done, total, flush=True)
        if done >= batches * 2:
            print("STALL", done, total, flush=True)
            time.sleep(120)          # the parent kills us here, half way through
    return progress
"""


def _snapshot(root):
    db = open_database(root, "small")
    out = [[(h.name, round(h.score, 6), h.caption) for h in db.search(q, 3)] for q in QUERIES]
    db.close()
    return out


def _start(code, *args):
    return subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(code), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(PACK_ROOT))


def _kill_when_stalled(proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("STALL"):
            time.sleep(0.2)                      # let it reach the sleep after printing
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            return line
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"the writer never reported progress: {proc.stderr.read()[-2000:]}")


def test_build_killed_half_way_leaves_the_previous_database_unchanged(tmp_path):
    build_small(tmp_path)
    folder = tmp_path / "databases" / "small"
    before_files, before_queries = file_hashes(folder), _snapshot(tmp_path)
    proc = _start("""
        build_database(root, "small", specs("new", 12), overwrite=True, batch_size=2, max_shard_bytes=2000,
                       progress=stall_after(3))
    """, tmp_path)
    line = _kill_when_stalled(proc)
    assert proc.returncode == -signal.SIGKILL and line.split()[1] == "6"
    assert file_hashes(folder) == before_files
    assert _snapshot(tmp_path) == before_queries
    assert open_database(tmp_path, "small").verify()["ok"]
    leftovers = [p.name for p in folder.parent.iterdir() if p.name.startswith(".small.build-")]
    assert len(leftovers) == 1                                     # the dead build's folder...
    assert any((folder.parent / leftovers[0]).glob("payload.*"))   # ...which had got as far as writing shards
    assert remove_stale_builds(tmp_path) == leftovers              # ...is cleaned up once its lock is free
    assert not (folder.parent / leftovers[0]).exists()


@pytest.mark.parametrize("stall", [2, 6])     # in the middle; after the last batch (12 entries)
def test_add_killed_half_way_leaves_the_previous_database_unchanged(tmp_path, stall):
    build_small(tmp_path)
    folder = tmp_path / "databases" / "small"
    before_files, before_queries = file_hashes(folder), _snapshot(tmp_path)
    proc = _start(f"""
        add_entries(root, "small", specs("new", 12), batch_size=2, max_shard_bytes=2000,
                    progress=stall_after({stall}))
    """, tmp_path)
    _kill_when_stalled(proc)
    now = file_hashes(folder)
    assert {k: now[k] for k in before_files} == before_files           # every old file, manifest included
    assert any(name.startswith("payload.g0001") for name in now)       # the add had written new files
    assert _snapshot(tmp_path) == before_queries
    assert open_database(tmp_path, "small").verify()["ok"]
    # The next writer clears the dead one's files and succeeds.
    add_entries(tmp_path, "small", clip_specs([("extra", 25, ("a person bows politely",))]))
    db = open_database(tmp_path, "small")
    assert db.entry_count == len(CLIPS) + 1 and db.search("bowing", 1)[0].name == "extra"
    assert db.verify()["ok"]
    left = {p.name for p in folder.iterdir()} - set(db.manifest["files"]) - {"manifest.json", "writer.lock"}
    assert all(".g0000." in name for name in left)          # only the previous generation is kept for readers


def test_cancel_stops_a_build_or_add_and_changes_nothing(tmp_path):
    build_small(tmp_path)
    folder = tmp_path / "databases" / "small"
    before = file_hashes(folder)
    calls = []

    def cancel_on_third():
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(BuildCancelled):
        add_entries(tmp_path, "small", clip_specs([(f"n{i}", 20, (f"move {i}",)) for i in range(8)]),
                    batch_size=2, cancel=cancel_on_third)
    assert len(calls) == 3 and file_hashes(folder) == before

    class Interrupted(Exception):
        pass

    def raise_at_once():
        raise Interrupted("processing interrupted")

    with pytest.raises(Interrupted):
        build_small(tmp_path, name="other", cancel=raise_at_once)
    assert not (tmp_path / "databases" / "other").exists()
    assert [p for p in (tmp_path / "databases").iterdir() if p.name.startswith(".other")] == []
    calls.clear()
    with pytest.raises(BuildCancelled):
        build_small(tmp_path, name="small", overwrite=True, batch_size=3, cancel=cancel_on_third)
    assert file_hashes(folder) == before


READER = """
vectors = np.load(sys.argv[2])
stop = sys.argv[3]
held = open_database(root, "small")            # one generation, held for the whole run
held_answers = [[h.name for h in held.search_vector(v, 3)] for v in vectors]
errors, generations, iterations = [], set(), 0
while not os.path.exists(stop) or iterations < 5:
    try:
        db = open_database(root, "small")
        generations.add(db.generation)
        names = set(db.entry_names())
        for v in vectors:
            hits = db.search_vector(v, min(5, db.entry_count))
            for h in hits:
                assert h.entry_id < db.entry_count and h.name in names, (h, db.entry_count)
                assert h.motion.num_frames == h.num_frames
        db.close()
        again = [[h.name for h in held.search_vector(v, 3)] for v in vectors]
        assert again == held_answers, "a held database changed under its reader"
    except Exception as exc:
        errors.append(repr(exc))
    iterations += 1
print(json.dumps({"errors": errors[:5], "generations": sorted(generations), "iterations": iterations}))
"""

WRITER = """
for k in range(4):
    add_entries(root, "small", specs(f"w{k}_", 3, seed0=10 * k))
    print("ADDED", k, flush=True)
"""


def test_two_readers_query_consistently_while_a_writer_adds(tmp_path):
    build_small(tmp_path)
    vectors = get_text_encoder().encode(list(QUERIES))
    np.save(tmp_path / "q.npy", vectors)
    stop = tmp_path / "stop"
    readers = [_start(READER, tmp_path, tmp_path / "q.npy", stop) for _ in range(2)]
    writer = _start(WRITER, tmp_path)
    out, err = writer.communicate(timeout=300)
    stop.touch()
    assert writer.returncode == 0, err[-3000:]
    assert out.count("ADDED") == 4
    for r in readers:
        rout, rerr = r.communicate(timeout=120)
        assert r.returncode == 0, rerr[-3000:]
        report = json.loads(rout.strip().splitlines()[-1])
        assert report["errors"] == []
        assert report["iterations"] >= 5
        assert len(report["generations"]) >= 2, report   # it really read while the writer was adding
    db = open_database(tmp_path, "small")
    assert db.generation == 4 and db.entry_count == len(CLIPS) + 12 and db.verify()["ok"]
