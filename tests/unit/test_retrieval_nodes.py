"""Load Motion DB, Build Motion DB and Text Retrieve called directly (no ComfyUI running), on
real databases (faiss, SQLite, the real MiniLM encoder) in a temporary motionrag folder.
The same nodes inside a real ComfyUI: tests/integration/test_retrieval_graph.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from motionrag_suite.models.motion import library
from motionrag_suite.models.motion.humanml3d import joints_to_features
from motionrag_suite.models.render import contact_sheet
from motionrag_suite.nodes import comfy_env
from motionrag_suite.nodes import retrieval_nodes as rn
from motionrag_suite.retrieval import db_format as fmt
from motionrag_suite.retrieval.builtin_db import FINGERPRINT_TAG, ensure_builtin_database, library_fingerprint
from motionrag_suite.retrieval.database import MotionDatabase, forget_databases
from motionrag_suite.retrieval.errors import DatabaseCorruptError, DatabaseNotFoundError, RetrievalError
from motionrag_suite.retrieval.refs import MotionRefs

from .test_retrieval_fixtures import build_small

TESTS_DIR = Path(__file__).resolve().parents[1]

# HumanML3D-layout clips made from built-in ones (each at least HumanML3D's 40 frames).
HUMANML3D_CLIPS = {
    "000001": ("cartwheel", ["a person does a cartwheel", "someone turns a cartwheel to the side"]),
    "000002": ("crawl", ["a person crawls forward on hands and knees"]),
    "000003": ("spin", ["a person spins around twice"]),
    "000004": ("getup_faceup", ["a person lying on their back gets up"]),
}


def write_humanml3d_folder(folder: Path, clips: dict = HUMANML3D_CLIPS, mirrored: bool = True) -> Path:
    """A small HumanML3D-layout dataset: new_joint_vecs/<id>.npy, texts/<id>.txt, train.txt."""
    (folder / "new_joint_vecs").mkdir(parents=True, exist_ok=True)
    (folder / "texts").mkdir(exist_ok=True)
    ids = []
    for cid, (clip, captions) in clips.items():
        variants = [(cid, clip, captions)]
        if mirrored:
            variants.append(("M" + cid, library.MIRROR_PREFIX + clip, [library.mirror_caption(c) for c in captions]))
        for vid, name, caps in variants:
            np.save(folder / "new_joint_vecs" / f"{vid}.npy", joints_to_features(library.load_clip(name).joints))
            # caption#tokens#start#end, as HumanML3D writes them (0.0 0.0 = the whole clip)
            lines = [f"{c}#{'/'.join(c.split()[:1])}/NOUN#0.0#0.0" for c in caps]
            (folder / "texts" / f"{vid}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
            ids.append(vid)
    (folder / "train.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("motionrag_models")
    old = os.environ.get("MOTIONRAG_MODELS_DIR")
    os.environ["MOTIONRAG_MODELS_DIR"] = str(root)
    forget_databases()
    yield root
    forget_databases()
    if old is None:
        os.environ.pop("MOTIONRAG_MODELS_DIR", None)
    else:
        os.environ["MOTIONRAG_MODELS_DIR"] = old


@pytest.fixture(scope="module")
def builtin_db(models_root):
    (db,) = rn.LoadMotionDB().load("builtin")
    return db


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    # Without ComfyUI, relative source folders are read from the working directory.
    monkeypatch.chdir(tmp_path)


def retrieve(db, text="a person does a cartwheel", top_k=3, target_length=0, exclude="", panel_size=96):
    return rn.TextRetrieve().retrieve(text, db, top_k, target_length, exclude, panel_size=panel_size)


# ------------------------------------------------------------------ Load Motion DB / the built-in database
def test_builtin_database_is_built_once_in_the_first_models_folder(models_root, builtin_db):
    assert comfy_env.models_roots()[0] == models_root
    folder = models_root / "databases" / "builtin"
    assert builtin_db.folder == folder and builtin_db.entry_count == len(library.list_clips())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert f"{FINGERPRINT_TAG}{library_fingerprint()}" in manifest["description"]
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    (again,) = rn.LoadMotionDB().load("builtin")
    assert again.folder == folder and (folder / "manifest.json").stat().st_mtime_ns == stamp, "rebuilt needlessly"
    assert rn.LoadMotionDB.INPUT_TYPES()["required"]["database"][0][0] == "builtin"
    assert rn.LoadMotionDB.IS_CHANGED("builtin") == rn.LoadMotionDB.IS_CHANGED("builtin")


def test_builtin_database_is_rebuilt_when_the_library_fingerprint_differs(models_root, builtin_db):
    folder = models_root / "databases" / "builtin"
    manifest = fmt.read_manifest(folder)
    before = rn.LoadMotionDB.IS_CHANGED("builtin")
    manifest["description"] = f"built-in motion library; {FINGERPRINT_TAG}0000000000000000"
    fmt.write_manifest(folder, manifest)
    assert rn.LoadMotionDB.IS_CHANGED("builtin") != before
    (db,) = rn.LoadMotionDB().load("builtin")
    assert f"{FINGERPRINT_TAG}{library_fingerprint()}" in fmt.read_manifest(folder)["description"]
    assert db.verify()["ok"] and db.entry_count == len(library.list_clips())


def test_damaged_builtin_database_is_rebuilt(models_root, builtin_db):
    folder = models_root / "databases" / "builtin"
    index = folder / fmt.read_manifest(folder)["index"]["file"]
    index.write_bytes(index.read_bytes()[:100])
    forget_databases()
    (db,) = rn.LoadMotionDB().load("builtin")
    assert db.verify()["ok"]


def test_two_processes_racing_to_build_the_builtin_database_leave_one_good_copy(tmp_path):
    root = tmp_path / "race"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from common.standalone import load_pack; load_pack(); "
            "from pathlib import Path; from motionrag_suite.retrieval.builtin_db import ensure_builtin_database; "
            "ensure_builtin_database(Path(sys.argv[2])); print('ok')")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(TESTS_DIR.parent), str(root)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and "ok" in out, err[-2000:]
    dbs = root / "databases"
    assert sorted(p.name for p in dbs.iterdir() if p.is_dir()) == ["builtin"], "a build folder was left behind"
    with MotionDatabase(dbs / "builtin", root=root) as db:
        assert db.verify()["ok"] and db.generation == 0
        assert db.entry_count == len(library.list_clips())


def test_cancelled_builtin_build_leaves_nothing(tmp_path):
    from motionrag_suite.retrieval.errors import BuildCancelled

    root = tmp_path / "cancel_root"
    with pytest.raises(BuildCancelled):
        ensure_builtin_database(root, cancel=lambda: True)
    assert [p.name for p in (root / "databases").iterdir() if p.is_dir()] == []


def test_retrieving_from_a_database_deleted_after_loading_names_motion_db(models_root):
    from motionrag_suite.retrieval.writer import delete_database

    build_small(models_root, "short_lived")
    (db,) = rn.LoadMotionDB().load("short_lived")
    forget_databases()
    delete_database(models_root, "short_lived")
    with pytest.raises(DatabaseNotFoundError, match=r"^motion_db: .*short_lived"):
        retrieve(db, text="a person walks", top_k=1)


def test_load_lists_databases_of_every_motionrag_folder(models_root, tmp_path, monkeypatch):
    second = tmp_path / "second_root"
    build_small(second, "extra_db")
    build_small(models_root, "first_db")
    monkeypatch.setattr(comfy_env, "models_roots", lambda: [models_root, second])
    names = rn.LoadMotionDB.INPUT_TYPES()["required"]["database"][0]
    assert names[0] == "builtin" and "extra_db" in names and "first_db" in names
    assert names.count("builtin") == 1
    (db,) = rn.LoadMotionDB().load("extra_db")
    assert db.folder == second / "databases" / "extra_db"


def test_load_missing_or_corrupt_database_names_the_input(models_root):
    with pytest.raises(DatabaseNotFoundError, match=r"^database: .*'no_such_db'"):
        rn.LoadMotionDB().load("no_such_db")
    build_small(models_root, "to_corrupt")
    folder = models_root / "databases" / "to_corrupt"
    sqlite = folder / fmt.read_manifest(folder)["metadata_file"]
    sqlite.write_bytes(sqlite.read_bytes()[:-10])
    forget_databases()
    with pytest.raises(DatabaseCorruptError, match=r"^database: .*to_corrupt"):
        rn.LoadMotionDB().load("to_corrupt")


# ------------------------------------------------------------------ Text Retrieve
def test_text_retrieve_returns_refs_preview_summary_and_ui(builtin_db):
    out = retrieve(builtin_db, panel_size=96)
    refs, images, summary = out["result"]
    assert isinstance(refs, MotionRefs) and len(refs) == 3
    assert refs.query == "a person does a cartwheel" and refs.database == "builtin"
    assert refs[0].source_clip == "cartwheel", refs.as_dicts()
    assert [r.score for r in refs] == sorted((r.score for r in refs), reverse=True)
    assert len({r.source_clip for r in refs}) == 3, "one result per source clip"
    # Preview: three panels side by side, as long as the longest clip.
    _, _, width, height = contact_sheet.sheet_layout(3, 96, 96)
    assert tuple(images.shape) == (max(r.num_frames for r in refs), height, width, 3)
    assert width == 3 * 96 + 2 * contact_sheet.GAP
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    lines = summary.splitlines()
    assert len(lines) == 3
    for line, r in zip(lines, refs):
        assert r.name in line and r.caption in line and f"{r.score:.3f}" in line
    ui = out["ui"]["motionrag_refs"]
    assert [u["name"] for u in ui] == [r.name for r in refs]
    assert all(u["caption"] and isinstance(u["score"], float) for u in ui)
    json.dumps(out["ui"])          # goes to the browser as JSON
    assert out["ui"]["text"] == [summary]
    try:
        from motionrag_suite.models.motion.preview import decode_payload
    except ImportError:                # the browser viewer's payload is not in this tree: no key
        assert all("preview" not in u for u in ui)
    else:
        for u, r in zip(ui, refs):
            assert u["preview"]["caption"] == r.caption and u["preview"]["score"] == r.score
            assert np.abs(decode_payload(u["preview"]) - r.motion.joints).max() < 0.01
    # Payloads by kind: joints and features for every reference.
    joints = refs.payloads("joints")
    assert all(j.shape == (r.num_frames, 22, 3) for j, r in zip(joints, refs))
    feats = refs.payloads("features")
    assert all(f.shape == (r.num_frames - 1, 263) for f, r in zip(feats, refs))
    with pytest.raises(RetrievalError, match="motion_tokens"):
        refs.payloads("motion_tokens")
    assert refs.payloads("motion_tokens", required=False) == [None, None, None]


def test_exclude_removes_the_clip_and_its_mirrored_copy(builtin_db):
    refs = retrieve(builtin_db, exclude="cartwheel")["result"][0]
    assert "cartwheel" not in {r.source_clip for r in refs} and len(refs) == 3
    by_id = retrieve(builtin_db, exclude=str(builtin_db.entry_id("M_cartwheel")))["result"][0]
    assert "cartwheel" not in {r.source_clip for r in by_id}
    with pytest.raises(RetrievalError, match=r"^exclude: .*'no_such_clip'"):
        retrieve(builtin_db, exclude="cartwheel, no_such_clip")


def test_target_length_re_ranks_by_length(builtin_db):
    plain = {r.name: r.score for r in retrieve(builtin_db, text="a person spins", top_k=3)["result"][0]}
    long = retrieve(builtin_db, text="a person spins", top_k=3, target_length=400)["result"][0]
    shared = [r for r in long if r.name in plain]
    assert shared and all(r.score < plain[r.name] for r in shared)      # every clip is far shorter than 400
    assert long.target_length == 400


def test_text_retrieve_errors_name_the_input(builtin_db):
    assert rn.TextRetrieve.VALIDATE_INPUTS(text="   \n ").startswith("text:")
    assert rn.TextRetrieve.VALIDATE_INPUTS(text="a person walks") is True
    with pytest.raises(RetrievalError, match=r"^text: is empty"):
        retrieve(builtin_db, text="  ")
    with pytest.raises(RetrievalError, match=r"^top_k: .*at least 1"):
        retrieve(builtin_db, top_k=0)
    clips = len(library.list_clips(include_mirrored=False))
    with pytest.raises(RetrievalError, match=rf"^top_k: {clips + 1} is more than the {clips} distinct source clips"):
        retrieve(builtin_db, top_k=clips + 1)
    with pytest.raises(RetrievalError, match=r"^text: query text 0: 10001 characters"):
        retrieve(builtin_db, text="a" * 10001)
    with pytest.raises(RetrievalError, match=r"^motion_db: expected a MOTION_DB"):
        rn.TextRetrieve().retrieve("a person walks", {"joints": 1}, 3, 0, "")


# ------------------------------------------------------------------ Build Motion DB
def test_build_from_humanml3d_folder_then_add_then_retrieve(models_root, tmp_path):
    first = write_humanml3d_folder(tmp_path / "hml_a", dict(list(HUMANML3D_CLIPS.items())[:2]))
    assert rn.BuildMotionDB.VALIDATE_INPUTS(source_folder="hml_a", kind="humanml3d", name="hml", mode="create") is True
    out = rn.BuildMotionDB().build("hml_a", "humanml3d", "hml", "create")
    db, summary = out["result"]
    assert db.entry_count == 4 and db.folder == models_root / "databases" / "hml"
    assert "4 entries" in summary and out["ui"]["text"] == [summary]
    rest = write_humanml3d_folder(tmp_path / "hml_b", dict(list(HUMANML3D_CLIPS.items())[2:]))
    db2, summary2 = rn.BuildMotionDB().build(str(rest), "humanml3d", "hml", "add")["result"]
    assert db2.entry_count == 8 and summary2.startswith("added 4 entries")
    refs = retrieve(db2, text="somebody crawling on all fours", top_k=2)["result"][0]
    assert refs[0].source_clip == "000002" and refs.database == "hml"
    assert all(f.shape == (r.num_frames - 1, 263) for f, r in zip(refs.payloads("features"), refs))
    # A payload kind added to the database after the query is read through the references.
    from motionrag_suite.retrieval.writer import add_payloads

    add_payloads(models_root, "hml", "motion_tokens", [(n, np.arange(3) + i) for i, n in enumerate(db2.entry_names())])
    tokens = refs.payloads("motion_tokens")
    assert [t.tolist() for t in tokens] == [(np.arange(3) + r.entry_id).tolist() for r in refs]
    # Numeric HumanML3D names are names first, not entry ids.
    assert "000002" not in {r.source_clip for r in retrieve(db2, text="a person crawls", exclude="000002")["result"][0]}
    with pytest.raises(RetrievalError, match=r"^name: a motion database 'hml' already exists"):
        rn.BuildMotionDB().build("hml_a", "humanml3d", "hml", "create")
    with pytest.raises(RetrievalError, match=r"^source_folder: .*already has an entry"):
        rn.BuildMotionDB().build("hml_a", "humanml3d", "hml", "add")


def test_build_from_motion_files_and_from_the_library(models_root, tmp_path):
    from motionrag_suite.models.motion.files import save_npz

    folder = tmp_path / "my_files"
    folder.mkdir()
    for clip in ("kick", "walk", "backflip"):
        save_npz(library.load_clip(clip), folder / f"{clip}.npz")
    (folder / "kick.txt").write_text("a martial artist kicks high\n", encoding="utf-8")
    db, summary = rn.BuildMotionDB().build(str(folder), "motion_files", "files_db", "create", mirrored=False)["result"]
    assert db.entry_count == 3 and "files_db" in summary
    refs = retrieve(db, text="a high kick", top_k=1)["result"][0]
    assert refs[0].name == "kick" and refs[0].caption == "a martial artist kicks high"
    lib, _ = rn.BuildMotionDB().build("", "builtin", "library_copy", "create")["result"]
    assert lib.entry_count == len(library.list_clips())


def test_build_refuses_bad_inputs_before_running(models_root, tmp_path):
    v = rn.BuildMotionDB.VALIDATE_INPUTS
    assert v(name="../escape", kind="builtin", source_folder="", mode="create").startswith("name:")
    assert v(name="a/b", kind="builtin", source_folder="", mode="create").startswith("name:")
    assert v(name="builtin", kind="builtin", source_folder="", mode="create").startswith("name:")
    assert v(name="  ", kind="builtin", source_folder="", mode="create").startswith("name:")
    assert "does not exist" in v(source_folder=str(tmp_path / "nope"), kind="humanml3d", name="x", mode="create")
    (tmp_path / "empty").mkdir()
    assert v(source_folder="empty", kind="humanml3d", name="x", mode="create") == \
        f"source_folder: {tmp_path / 'empty'} is empty"
    (tmp_path / "not_hml").mkdir()
    (tmp_path / "not_hml" / "readme.txt").write_text("x")
    assert "new_joint_vecs/" in v(source_folder="not_hml", kind="humanml3d", name="x", mode="create")
    assert "holds no" in v(source_folder="not_hml", kind="motion_files", name="x", mode="create")
    assert v(source_folder="", kind="humanml3d", name="x", mode="create").startswith("source_folder:")
    assert v(kind="nonsense").startswith("kind:")
    assert v(source_folder=None, kind="builtin", name="fine_name", mode="add") is True
    if os.geteuid() != 0:             # root reads any folder
        locked = tmp_path / "locked"
        locked.mkdir()
        (locked / "a.npz").write_bytes(b"x")
        locked.chmod(0)
        try:
            assert "cannot be read" in v(source_folder=str(locked), kind="motion_files", name="x", mode="create")
        finally:
            locked.chmod(0o755)
    # The same checks run again at execution time (for linked inputs).
    with pytest.raises(RetrievalError, match=r"^source_folder: .*is empty"):
        rn.BuildMotionDB().build("empty", "humanml3d", "x", "create")
    with pytest.raises(RetrievalError, match=r"^name: there is no motion database 'never_built'"):
        rn.BuildMotionDB().build("", "builtin", "never_built", "add")
    # A source whose clip files are broken fails naming the source; no database is left behind.
    broken = write_humanml3d_folder(tmp_path / "broken", dict(list(HUMANML3D_CLIPS.items())[:1]), mirrored=False)
    (broken / "new_joint_vecs" / "000001.npy").write_bytes(b"not numpy")
    with pytest.raises(RetrievalError, match=r"^source_folder: .*000001"):
        rn.BuildMotionDB().build(str(broken), "humanml3d", "broken_db", "create")
    assert not (models_root / "databases" / "broken_db").exists()


# ------------------------------------------------------------------ the contact sheet
def test_contact_sheet_panels_loop_their_own_clips_under_their_captions():
    clips = [library.load_clip(n) for n in ("cartwheel", "walk", "spin")]
    sheet = contact_sheet.render_contact_sheet([c.joints for c in clips], ["1. a", "2. b", "3. c"],
                                               ["first caption", "second", "third"], panel_width=80, panel_height=80)
    T = max(c.num_frames for c in clips)
    head = contact_sheet.header_height(80)
    assert sheet.shape == (T, head + 80, 3 * 80 + 2 * contact_sheet.GAP, 3)
    for k, clip in enumerate(clips):
        x0 = k * (80 + contact_sheet.GAP)
        body = sheet[:, head:, x0:x0 + 80].astype(np.int16)
        n = clip.num_frames
        if n < T:
            assert np.array_equal(body[n], body[0]), f"panel {k} does not loop its own clip"
        assert np.abs(body[0] - body[n // 2]).mean() > 0.1, f"panel {k} does not move"
        header = sheet[0, :head, x0:x0 + 80]
        assert (header < 200).any(), f"panel {k} has no text in its header"
    gap = sheet[:, :, 80:80 + contact_sheet.GAP]
    assert (gap == contact_sheet.GAP_COLOUR).all()
