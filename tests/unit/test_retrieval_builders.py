"""Builders: the built-in library, a HumanML3D-layout folder, a folder of motion files."""
import numpy as np
import pytest

from motionrag_suite.models.motion import humanml3d, library
from motionrag_suite.models.motion.bvh_write import save_bvh
from motionrag_suite.models.motion.files import save_humanml3d_npy, save_npz
from motionrag_suite.retrieval.builders import (add_from_source, build_from_folder, build_from_humanml3d,
                                                build_from_library, humanml3d_plan, parse_humanml3d_text)
from motionrag_suite.retrieval.database import open_database


def test_builtin_library_database_has_every_clip_caption_and_mirror(tmp_path):
    seen = []
    build_from_library(tmp_path, progress=lambda done, total: seen.append((done, total)))
    db = open_database(tmp_path, "builtin")
    names = library.list_clips(include_mirrored=True)
    assert db.entry_names() == names
    assert db.caption_count == sum(len(library.clip_captions(n)) for n in names)
    assert seen[-1] == (len(names), len(names))
    for name in ("kick", "M_kick"):
        info = db.entry(name)
        assert list(info.captions) == library.clip_captions(name)
        assert np.array_equal(db.load_payload(name, "joints"), library.load_clip(name).joints)
    assert db.entry("M_kick").mirror_of == db.entry_id("kick") and db.entry("M_kick").source_clip == "kick"
    assert db.search("somebody kicking with their left foot", 1)[0].name == "M_kick"
    # MiniLM barely tells left from right: "right foot" finds the kick clip, either side.
    assert db.search("somebody kicking with their right foot", 1)[0].source_clip == "kick"
    assert db.search("a person doing a backward somersault", 1)[0].source_clip == "backflip"


def test_parse_humanml3d_text_groups_captions_by_span(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("a man walks.#a/DET man/NOUN#0.0#0.0\n"
                 "person walking#person/NOUN#0.0#0.0\n"
                 "then he jumps#he/PRON#2.0#4.5\n"
                 "\n"
                 "he jumps high#x#2.0#4.5\n"
                 "caption with nan span#x#nan#nan\n")
    spans = parse_humanml3d_text(p)
    assert spans == {(0.0, 0.0): ["a man walks.", "person walking", "caption with nan span"],
                     (2.0, 4.5): ["then he jumps", "he jumps high"]}


@pytest.fixture()
def hml(tmp_path):
    """A miniature HumanML3D folder made from real library clips (features computed by the pack)."""
    src = tmp_path / "HumanML3D"
    (src / "new_joint_vecs").mkdir(parents=True)
    (src / "texts").mkdir()
    clips = {"000001": "run", "000002": "cartwheel", "000003": "walk", "000004": "backflip"}
    for cid, clip in clips.items():
        m = library.load_clip(clip)
        m = m.replace(joints=np.concatenate([m.joints] * 4))      # long enough for sub-clips
        for prefix, motion in (("", m), ("M", m.mirrored())):
            save_humanml3d_npy(motion, src / "new_joint_vecs" / f"{prefix}{cid}.npy")
    (src / "texts" / "000001.txt").write_text("a person runs forward#x#0.0#0.0\nsomeone jogs#x#0.0#0.0\n")
    (src / "texts" / "M000001.txt").write_text("a person runs forward#x#0.0#0.0\n")
    (src / "texts" / "000002.txt").write_text("a person does a cartwheel to the left#x#0.0#0.0\n"
                                              "a person raises hands#x#0.5#3.0\n"
                                              "too short#x#0.0#1.0\n")
    (src / "texts" / "M000002.txt").write_text("a person does a cartwheel to the right#x#0.0#0.0\n"
                                               "a person raises hands#x#0.5#3.0\n")
    (src / "texts" / "000003.txt").write_text("a person walks#x#0.0#0.0\n")
    (src / "texts" / "M000003.txt").write_text("a person walks#x#0.0#0.0\n")
    (src / "texts" / "000004.txt").write_text("a person does a backflip#x#0.0#0.0\n")
    (src / "texts" / "M000004.txt").write_text("a person does a backflip#x#0.0#0.0\n")
    (src / "train.txt").write_text("000001\nM000001\n000002\nM000002\n")
    (src / "val.txt").write_text("000003\nM000003\n")
    (src / "test.txt").write_text("000004\nM000004\n")
    return src


def test_humanml3d_split_subclips_and_mirrors(tmp_path, hml):
    build_from_humanml3d(tmp_path, "hml", hml, split="train")
    db = open_database(tmp_path, "hml")
    names = set(db.entry_names())
    # "too short" (20 rows < 40) is skipped, like HumanML3D's loader does.
    assert names == {"000001", "M000001", "000002", "M000002", "000002@10-60", "M000002@10-60"}
    sub = db.entry("000002@10-60")
    assert sub.source_clip == "000002" and sub.provenance["span_seconds"] == [0.5, 3.0]
    assert db.entry("M000002@10-60").mirror_of == sub.id and db.entry("M000002").mirror_of == db.entry_id("000002")
    feats = np.load(hml / "new_joint_vecs" / "000002.npy")
    assert np.array_equal(db.load_payload("000002@10-60", "features"), feats[10:60])
    assert sub.num_frames == 51                         # 50 feature rows -> 51 frames
    motion = db.load_motion("000002@10-60")
    assert motion.features is not None and np.allclose(
        motion.joints[:-1], humanml3d.features_to_joints(feats[10:60]), atol=1e-5)
    assert db.captions("000001") == ["a person runs forward", "someone jogs"]
    # One result per source clip: the whole cartwheel and its sub-clip are one source.
    hits = db.search("a person raises hands", 4, one_per_source=True)
    assert len({h.source_clip for h in hits}) == len(hits) == 2
    assert db.search("doing a cartwheel to the right", 1)[0].name == "M000002"


def test_humanml3d_other_splits_add_and_options(tmp_path, hml):
    build_from_humanml3d(tmp_path, "val", hml, split="val", source_options={"include_mirrored": False})
    assert open_database(tmp_path, "val").entry_names() == ["000003"]
    add_from_source(tmp_path, "val", "humanml3d", hml, source_options={"split": "test"})
    assert open_database(tmp_path, "val").entry_names() == ["000003", "000004", "M000004"]
    plan = humanml3d_plan(hml, "all", min_frames=1)
    assert plan.total == 11 and len(list(plan.entries)) == 11     # 8 clips, 3 extra spans


def test_folder_of_files_with_caption_sidecars(tmp_path):
    src = tmp_path / "mocap"
    src.mkdir()
    save_npz(library.load_clip("jump").replace(caption="a person leaps forward"), src / "leap.npz")
    save_humanml3d_npy(library.load_clip("roll"), src / "roll.npy")
    save_bvh(library.load_clip("punch"), src / "fight_move.bvh")
    (src / "roll.txt").write_text("a person rolls forward on the floor\nsomeone does a forward roll#x#0#0\n\n")
    (src / "notes.md").write_text("ignored")
    build_from_folder(tmp_path, "files", src, source_options={"include_mirrored": True})
    db = open_database(tmp_path, "files")
    assert sorted(db.entry_names()) == ["M_fight_move", "M_leap", "M_roll", "fight_move", "leap", "roll"]
    assert db.captions("roll") == ["a person rolls forward on the floor", "someone does a forward roll"]
    assert db.captions("leap") == ["a person leaps forward"]          # the file's own caption
    assert db.captions("fight_move") == ["fight move"]                # from the file name
    assert db.entry("M_roll").mirror_of == db.entry_id("roll")
    assert db.entry("roll").provenance["file"] == "roll.npy"
    assert db.search("forward roll", 1)[0].source_clip == "roll"
    np.testing.assert_allclose(db.load_payload("leap", "joints"), library.load_clip("jump").joints, atol=1e-6)
