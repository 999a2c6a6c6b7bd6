"""`python -m retrieval` from the pack folder, as a user runs it."""
import json
import os
import subprocess
import sys

from motionrag_suite.models.motion import library
from motionrag_suite.models.motion.files import save_npz
from motionrag_suite.retrieval import db_format as fmt

from common.standalone import PACK_ROOT


def cli(*args, root):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "retrieval", "--root", str(root), *args],
                          capture_output=True, text=True, cwd=str(PACK_ROOT), env=env, timeout=300)


def test_build_info_query_verify_and_errors(tmp_path):
    src = tmp_path / "clips"
    src.mkdir()
    for clip, caption in (("cartwheel", "a person does a cartwheel"), ("crawl", "a person crawls on the floor"),
                          ("run", "a person runs forward")):
        save_npz(library.load_clip(clip), src / f"{clip}.npz")
        (src / f"{clip}.txt").write_text(caption + "\n")
    root = tmp_path / "models"

    r = cli("build", "--from", "folder", "--source", str(src), "--name", "mine", "--mirror", root=root)
    assert r.returncode == 0, r.stderr
    assert "built 'mine': 6 entries, 6 captions, flat index" in r.stdout

    r = cli("info", "--name", "mine", "--json", root=root)
    info = json.loads(r.stdout)
    assert info["entries"] == 6 and info["source_clips"] == 3 and info["mirrored"] == 3
    assert cli("info", root=root).stdout.split() == ["mine"]

    r = cli("query", "--name", "mine", "--text", "someone crawling along the ground", "--top-k", "2", "--json",
            "--exclude", "run", "--length", "40", root=root)
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)
    assert hits[0]["source_clip"] == "crawl" and len(hits) == 2 and hits[0]["score"] >= hits[1]["score"]
    assert "run" not in {h["source_clip"] for h in hits}                  # excluded with its mirrored copy
    r = cli("query", "--name", "mine", "--text", "someone crawling along the ground", "--top-k", "2", "--json",
            "--exclude", "run", root=root)
    free = {h["entry_id"]: h["score"] for h in json.loads(r.stdout)}
    assert hits[0]["score"] < free[hits[0]["entry_id"]]                   # length re-ranking applied

    r = cli("query", "--name", "mine", "--text", "the a of", root=root)       # nothing to search for
    assert r.returncode == 2 and r.stderr.startswith("error: text: ") and "names no motion" in r.stderr

    assert "ok: 'mine' generation 0" in cli("verify", "--name", "mine", root=root).stdout

    folder = root / "databases" / "mine"
    shard = folder / fmt.read_manifest(folder)["payload_shards"][0]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    r = cli("verify", "--name", "mine", root=root)
    assert r.returncode == 2 and "fails its checksum" in r.stderr

    r = cli("query", "--name", "../escape", "--text", "x", root=root)
    assert r.returncode == 2 and "database name" in r.stderr
    r = cli("query", "--name", "missing", "--text", "x", root=root)
    assert r.returncode == 2 and "not found" in r.stderr and "mine" in r.stderr
    r = cli("build", "--from", "folder", "--source", str(tmp_path / "nowhere"), "--name", "x", root=root)
    assert r.returncode == 2 and "does not exist" in r.stderr
    assert not (root / "databases" / "x").exists()

    r = cli("delete", "--name", "mine", root=root)
    assert r.returncode == 0 and not folder.exists()
