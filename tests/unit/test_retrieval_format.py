"""The on-disk database format: manifest, SQLite metadata, payload shards, index, adds."""
import json
import sqlite3

import numpy as np
import pytest

from motionrag_suite.retrieval import db_format as fmt
from motionrag_suite.retrieval.database import get_database, open_database
from motionrag_suite.retrieval.errors import RetrievalError
from motionrag_suite.retrieval.text_encoder import get_text_encoder
from motionrag_suite.retrieval.entry_spec import EntrySpec
from motionrag_suite.retrieval.writer import add_entries, add_payloads

from .test_retrieval_fixtures import CLIPS, build_small, clip_specs, file_hashes, make_motion


def test_manifest_records_encoder_counts_kinds_index_and_checksums(tmp_path):
    folder = build_small(tmp_path)
    assert folder == tmp_path / "databases" / "small"
    m = json.loads((folder / "manifest.json").read_text())
    assert m["format"] == fmt.FORMAT and m["format_version"] == fmt.FORMAT_VERSION and m["generation"] == 0
    assert m["text_encoder"]["id"] == "all-MiniLM-L6-v2" and m["text_encoder"]["dim"] == 384
    assert m["normalization"] == "l2" and m["metric"] == "inner_product"
    assert m["entry_count"] == len(CLIPS)
    assert m["caption_count"] == sum(len(c) for _, _, c in CLIPS)
    assert set(m["payload_kinds"]) == {"joints"}
    assert m["index"]["type"] == "flat" and m["index"]["choice"] == "auto"
    data_files = sorted(p.name for p in folder.iterdir() if p.name not in ("manifest.json", "writer.lock"))
    assert sorted(m["files"]) == data_files
    for name, rec in m["files"].items():
        assert rec["bytes"] == (folder / name).stat().st_size
        assert rec["sha256"] == fmt.sha256_file(folder / name)


def test_sqlite_holds_entries_captions_and_mirror_links(tmp_path):
    folder = build_small(tmp_path)
    m = fmt.read_manifest(folder)
    con = sqlite3.connect(folder / m["metadata_file"])
    rows = {r[0]: r for r in con.execute(
        "SELECT name, id, source_clip, mirrored, mirror_of, num_frames, fps, duration, provenance FROM entries")}
    assert set(rows) == {n for n, _, _ in CLIPS}
    walk, mwalk = rows["walk"], rows["M_walk"]
    assert mwalk[3] == 1 and mwalk[4] == walk[1] and mwalk[2] == "walk" and walk[3] == 0 and walk[4] is None
    assert rows["sit"][5] == 120 and rows["sit"][6] == 20.0 and rows["sit"][7] == pytest.approx(6.0)
    assert json.loads(rows["sit"][8])["source"] == "synthetic"
    caps = con.execute("SELECT c.text FROM captions c JOIN entries e ON e.id = c.entry_id "
                       "WHERE e.name = 'wave_right' ORDER BY c.id").fetchall()
    assert [c[0] for c in caps] == list(CLIPS[4][2])


def test_payloads_round_trip_exactly_and_motion_comes_back(tmp_path):
    specs = clip_specs()
    build_small(tmp_path)
    db = open_database(tmp_path, "small")
    assert db.payloads._open == {}          # shards are opened (memory-mapped) on first use only
    for spec in specs:
        joints = db.load_payload(spec.motion.name, "joints")
        assert joints.dtype == np.float32 and np.array_equal(joints, spec.motion.joints)
    motion = db.load_motion("wave_right")
    assert motion.name == "wave_right" and motion.fps == 20.0 and motion.num_frames == 90
    assert motion.provenance["captions"] == list(CLIPS[4][2]) and motion.provenance["database"] == "small"


def test_index_vectors_are_unit_caption_embeddings_in_caption_order(tmp_path):
    build_small(tmp_path)
    db = open_database(tmp_path, "small")
    vectors = db.index.reconstruct_n(0, db.caption_count)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    texts = [db.caption_text(i) for i in range(db.caption_count)]
    fresh = get_text_encoder().encode(texts)
    assert np.allclose(vectors, fresh, atol=1e-5)
    for cid in range(db.caption_count):
        assert texts[cid] in db.captions(int(db.caption_entry[cid]))


def test_custom_payload_kinds_through_entry_spec_and_add_payloads(tmp_path):
    spec = EntrySpec(motion=make_motion("tok", 30), captions=["a person bows"],
                     payloads={"motion_tokens": np.arange(7, dtype=np.int32), "appearance_tokens": np.ones((2, 3))})
    build_small(tmp_path, clips=CLIPS[:2])
    add_entries(tmp_path, "small", [spec])
    db = open_database(tmp_path, "small")
    assert set(db.payload_kinds) == {"joints", "motion_tokens", "appearance_tokens"}
    assert np.array_equal(db.load_payload("tok", "motion_tokens"), np.arange(7))
    assert db.load_payload("tok", "appearance_tokens").shape == (2, 3)
    with pytest.raises(RetrievalError, match="has no 'motion_tokens' payload"):
        db.load_payload("walk", "motion_tokens")

    before = file_hashes(db.folder)
    n = add_payloads(tmp_path, "small", "motion_tokens", [("walk", np.arange(4)), (1, np.arange(5))],
                     description="VQ codes")
    assert n == 2
    db2 = open_database(tmp_path, "small")
    assert np.array_equal(db2.load_payload("walk", "motion_tokens"), np.arange(4))
    assert np.array_equal(db2.load_payload("M_walk", "motion_tokens"), np.arange(5))
    assert db2.payload_kinds["motion_tokens"] == "VQ codes"
    # Only payloads changed: the same index and lookup files are reused, old shards untouched.
    assert db2.manifest["index"]["file"] == db.manifest["index"]["file"]
    for name in db.manifest["payload_shards"]:
        assert file_hashes(db2.folder)[name] == before[name]
    with pytest.raises(RetrievalError, match="already has a 'motion_tokens' payload"):
        add_payloads(tmp_path, "small", "motion_tokens", [("walk", np.arange(2))])
    add_payloads(tmp_path, "small", "motion_tokens", [("walk", np.arange(2))], replace=True)
    assert np.array_equal(open_database(tmp_path, "small").load_payload("walk", "motion_tokens"), np.arange(2))
    with pytest.raises(RetrievalError, match="kind"):
        add_payloads(tmp_path, "small", "Bad Kind", [("walk", np.arange(2))])


def test_add_keeps_old_files_and_vectors_and_extends_ids(tmp_path):
    build_small(tmp_path, clips=CLIPS[:4])
    old = open_database(tmp_path, "small")
    old_hashes = file_hashes(old.folder)
    old_vectors = old.index.reconstruct_n(0, old.caption_count)
    add_entries(tmp_path, "small", clip_specs(CLIPS[4:], seed0=4))
    new = open_database(tmp_path, "small")
    assert new.generation == 1 and new.entry_count == len(CLIPS)
    # Old generation's files are byte-identical; its payload shard is shared, not rewritten.
    now = file_hashes(new.folder)
    for name, digest in old_hashes.items():
        if name != "manifest.json":
            assert now[name] == digest, name
    assert set(old.manifest["payload_shards"]) < set(new.manifest["payload_shards"])
    assert np.array_equal(new.index.reconstruct_n(0, old.caption_count), old_vectors)
    assert new.entry_id("M_wave_right") == 5 and new.entry("M_wave_right").mirror_of == new.entry_id("wave_right")
    # The reader opened before the add still sees its own generation, consistently.
    assert old.entry_count == 4 and old.search("someone waving", 1)[0].name in {"walk", "run", "jump", "M_walk"}
    assert not old.is_current() and new.is_current()
    assert new.verify()["ok"]


def test_add_resolves_a_mirror_whose_twin_arrives_later(tmp_path):
    build_small(tmp_path, clips=[CLIPS[1], CLIPS[2]])          # M_walk before walk exists
    db = open_database(tmp_path, "small")
    assert db.entry("M_walk").mirror_of is None
    add_entries(tmp_path, "small", clip_specs([CLIPS[0]]))
    db = open_database(tmp_path, "small")
    assert db.entry("M_walk").mirror_of == db.entry_id("walk")


def test_get_database_reuses_until_the_manifest_changes(tmp_path):
    build_small(tmp_path, clips=CLIPS[:3])
    a = get_database(tmp_path, "small")
    assert get_database(tmp_path, "small") is a
    add_entries(tmp_path, "small", clip_specs(CLIPS[3:4], seed0=3))
    b = get_database(tmp_path, "small")
    assert b is not a and b.entry_count == 4


def test_payload_shards_roll_over_at_the_size_limit(tmp_path):
    build_small(tmp_path, max_shard_bytes=20_000)
    db = open_database(tmp_path, "small")
    assert len(db.manifest["payload_shards"]) > 3
    for name, frames, _ in CLIPS:
        assert db.load_payload(name, "joints").shape == (frames, 22, 3)
    assert db.verify()["ok"]
