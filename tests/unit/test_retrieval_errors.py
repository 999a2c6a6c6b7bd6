"""Bad input and damaged databases: each gives a RetrievalError that says what is wrong."""
import json
import os

import numpy as np
import pytest

from motionrag_suite.retrieval import db_format as fmt
from motionrag_suite.retrieval import vector_index as vi
from motionrag_suite.retrieval.builders import folder_plan, humanml3d_plan
from motionrag_suite.retrieval.database import open_database
from motionrag_suite.common.errors import InputError
from motionrag_suite.retrieval.entry_spec import EntrySpec
from motionrag_suite.retrieval.errors import (DatabaseCorruptError, DatabaseNotFoundError, RetrievalError)
from motionrag_suite.retrieval.writer import add_entries, build_database

from .test_retrieval_fixtures import CLIPS, build_small, clip_specs, make_motion


@pytest.fixture()
def small(tmp_path):
    build_small(tmp_path, clips=CLIPS[:4])
    return tmp_path


def _rewrite_manifest(folder, edit):
    m = json.loads((folder / "manifest.json").read_text())
    edit(m)
    (folder / "manifest.json").write_text(json.dumps(m))


def test_retrieval_error_is_a_value_error():
    assert issubclass(RetrievalError, ValueError) and issubclass(DatabaseCorruptError, RetrievalError)


def test_every_error_names_the_input_it_is_about(small, tmp_path):
    """Each library error is an InputError whose `.input` is the argument that carried the bad value
    (or "motion_db" for the state of a database), and whose message starts with that name."""
    assert issubclass(RetrievalError, InputError)
    db = open_database(small, "small")

    def raised(fn, *args, **kw) -> RetrievalError:
        with pytest.raises(RetrievalError) as info:
            fn(*args, **kw)
        assert str(info.value).startswith(f"{info.value.input}: ")
        return info.value

    assert raised(db.search, "  ").input == "text"
    assert raised(db.search, "walk", top_k=0).input == "top_k"
    assert raised(db.search, "walk", top_k=1, target_length=-3).input == "target_length"
    assert raised(db.search, "walk", top_k=1, exclude=["no_such_clip"]).input == "exclude"
    assert raised(open_database, small, "nope").input == "name"
    assert raised(open_database, small, "../x").input == "name"
    assert raised(folder_plan, tmp_path / "missing").input == "source_folder"
    assert raised(humanml3d_plan, tmp_path / "missing").input == "source_folder"
    assert raised(build_database, small, "small", clip_specs(CLIPS[:1])).input == "name"
    assert raised(build_database, small, "other", [EntrySpec(make_motion("x", 30), [])]).input == "entries"


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_query_text(small, text):
    db = open_database(small, "small")
    with pytest.raises(RetrievalError, match="query text 0: is empty"):
        db.search(text)


@pytest.mark.parametrize("k, message", [(0, "at least 1"), (-3, "at least 1"), (5, "more than the 4 entries"),
                                        (2.5, "expected an integer"), (True, "expected an integer")])
def test_bad_top_k(small, k, message):
    db = open_database(small, "small")
    with pytest.raises(RetrievalError, match=message):
        db.search("a person walks", k)


def test_bad_query_options(small):
    db = open_database(small, "small")
    with pytest.raises(RetrievalError, match="target_length"):
        db.search("walk", 1, target_length=0)
    with pytest.raises(RetrievalError, match="target_length"):
        db.search("walk", 1, target_length="long")
    with pytest.raises(RetrievalError, match="no entry named 'nobody'"):
        db.search("walk", 1, exclude=["nobody"])
    with pytest.raises(RetrievalError, match="no entry id 99"):
        db.search("walk", 1, exclude=[99])
    with pytest.raises(RetrievalError, match="expected 384 values"):
        db.search_vector(np.ones(10), 1)
    with pytest.raises(RetrievalError, match="non-zero"):
        db.search_vector(np.zeros(384), 1)


def test_missing_database(tmp_path):
    with pytest.raises(DatabaseNotFoundError, match="'nope': not found"):
        open_database(tmp_path, "nope")
    with pytest.raises(DatabaseNotFoundError):
        add_entries(tmp_path, "nope", clip_specs(CLIPS[:1]))


@pytest.mark.parametrize("name", ["../outside", "a/b", ".hidden", "", "..", "/abs"])
def test_database_names_that_leave_the_models_folder(tmp_path, name):
    with pytest.raises(RetrievalError, match="database name"):
        build_database(tmp_path, name, clip_specs(CLIPS[:1]))
    with pytest.raises(RetrievalError, match="database name"):
        open_database(tmp_path, name)
    assert not (tmp_path / "outside").exists()


def test_truncated_index(small):
    folder = small / "databases" / "small"
    m = fmt.read_manifest(folder)
    path = folder / m["index"]["file"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatabaseCorruptError, match="truncated or replaced"):
        open_database(small, "small")
    # Even when the manifest is made to agree with the short file, faiss' failure is reported clearly.
    _rewrite_manifest(folder, lambda m: m["files"][m["index"]["file"]].update(bytes=len(data) // 2))
    with pytest.raises(DatabaseCorruptError, match="cannot be read"):
        open_database(small, "small")


def test_manifest_and_index_that_disagree(small):
    folder = small / "databases" / "small"
    m = fmt.read_manifest(folder)
    db = open_database(small, "small")
    vectors = db.index.reconstruct_n(0, db.caption_count - 1)
    path = folder / m["index"]["file"]
    vi.write_index(vi.new_index("flat", 384, vectors, {}), path)
    _rewrite_manifest(folder, lambda m: m["files"][m["index"]["file"]].update(fmt.file_record(path)))
    with pytest.raises(DatabaseCorruptError, match="manifest and index disagree"):
        open_database(small, "small")


def test_manifest_counts_that_disagree_with_sqlite(small):
    folder = small / "databases" / "small"
    _rewrite_manifest(folder, lambda m: m.update(entry_count=m["entry_count"] + 1))
    with pytest.raises(DatabaseCorruptError, match="lookup array|entries"):
        open_database(small, "small")


def test_checksum_failure(small):
    folder = small / "databases" / "small"
    m = fmt.read_manifest(folder)
    shard = folder / m["payload_shards"][0]
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF                       # same size, one byte of joint data changed
    shard.write_bytes(bytes(data))
    db = open_database(small, "small")     # opening checks sizes only, so it is cheap
    with pytest.raises(DatabaseCorruptError, match="fails its checksum"):
        db.verify()


def test_missing_data_file_and_bad_manifest(small):
    folder = small / "databases" / "small"
    m = fmt.read_manifest(folder)
    os.unlink(folder / m["lookup_file"])
    with pytest.raises(DatabaseCorruptError, match="is missing"):
        open_database(small, "small")
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(DatabaseCorruptError, match="not valid JSON"):
        open_database(small, "small")
    (folder / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DatabaseCorruptError, match="not a motionrag-motion-db manifest"):
        open_database(small, "small")
    (folder / "manifest.json").write_text(json.dumps({"format": fmt.FORMAT, "format_version": 99}))
    with pytest.raises(DatabaseCorruptError, match="format version 99"):
        open_database(small, "small")


def test_bad_entries(tmp_path, small):
    m = make_motion("x", 10)
    cases = [
        ([EntrySpec(motion=m, captions=[])], "has no captions"),
        ([EntrySpec(motion=m, captions=["  "])], "caption 0: is empty"),
        ([EntrySpec(motion=m.replace(name=""), captions=["a"])], "has no name"),
        ([EntrySpec(motion=m, captions=["a"]), EntrySpec(motion=m, captions=["b"])], "appears twice"),
        ([EntrySpec(motion=np.zeros((3, 22, 3)), captions=["a"])], "must be a Motion"),
        (["not a spec"], "expected an EntrySpec"),
        ([EntrySpec(motion=m, captions=["a"], payloads={"bad kind": np.ones(2)})], "payload kind"),
        ([EntrySpec(motion=m, captions=["a"], payloads={"tokens": np.array([np.nan])})], "NaN"),
        ([EntrySpec(motion=m, captions=["a"], payloads={"tokens": np.array(["a", "b"])})], "dtype"),
        ([EntrySpec(motion=m, captions=["a"], payloads={"joints": np.ones(3)})], "comes from the motion"),
        ([], "gave no entries"),
    ]
    for entries, message in cases:
        with pytest.raises(RetrievalError, match=message):
            build_database(tmp_path, "bad", entries)
        assert not (tmp_path / "databases" / "bad").exists()
    assert [p.name for p in (tmp_path / "databases").iterdir() if p.name.startswith(".bad")] == []
    with pytest.raises(RetrievalError, match="already has an entry of that name"):
        add_entries(small, "small", clip_specs(CLIPS[:1]))
    with pytest.raises(RetrievalError, match="no entries to add"):
        add_entries(small, "small", [])


def test_bad_build_options(small):
    with pytest.raises(RetrievalError, match="already exists"):
        build_small(small, clips=CLIPS[:1])
    with pytest.raises(RetrievalError, match="index type 'kd-tree'"):
        build_small(small, name="other", index_type="kd-tree")
    with pytest.raises(RetrievalError, match="batch_size"):
        build_small(small, name="other", batch_size=0)


def test_empty_missing_and_unreadable_sources(tmp_path):
    with pytest.raises(RetrievalError, match="does not exist"):
        folder_plan(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RetrievalError, match="holds no .npz, .npy, .bvh files"):
        folder_plan(tmp_path / "empty")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RetrievalError, match="is not a folder"):
        folder_plan(tmp_path / "afile")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "clip.npz").write_bytes(b"this is not a zip archive")
    plan = folder_plan(tmp_path / "broken")
    with pytest.raises(RetrievalError, match="cannot load clip.npz"):
        build_database(tmp_path, "broken", plan.entries, total=plan.total)
    assert not (tmp_path / "databases" / "broken").exists()
    with pytest.raises(RetrievalError, match="has no new_joint_vecs/ folder"):
        humanml3d_plan(tmp_path / "empty")
    with pytest.raises(RetrievalError, match="no source folder"):
        folder_plan("")
    if os.geteuid() != 0:              # root can read anything; the permission check cannot fail
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o000)
        try:
            with pytest.raises(RetrievalError, match="permission denied"):
                folder_plan(locked)
        finally:
            locked.chmod(0o755)
