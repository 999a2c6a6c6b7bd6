"""Motion files (.npz, HumanML3D .npy, dispatch) and atomic writes."""
import contextlib
import os
import stat
import zipfile

import numpy as np
import pytest

from motionrag_suite.common import atomic
from motionrag_suite.models.motion import files as F
from motionrag_suite.models.motion import humanml3d as H
from motionrag_suite.models.motion.bvh_write import save_bvh
from motionrag_suite.models.motion.motion import Motion, MotionError

from .test_humanml3d import max_error, rigid_walk_joints, walk_joints


@pytest.fixture
def motion():
    joints = walk_joints(60, 0)
    return Motion(joints=joints, fps=20.0, features=H.joints_to_features(joints), caption="a person walks in a circle ☺",
                  name="walk_01", provenance={"source": "test", "mirrored": False, "tags": ["a", "b"], "n": 3})


# ----------------------------------------------------------------------------- atomic_write

def test_atomic_write_replaces_and_creates_folders(tmp_path):
    path = tmp_path / "a" / "b" / "out.txt"
    with atomic.atomic_write(path, "w") as f:
        f.write("héllo\n")
    assert path.read_bytes() == "héllo\n".encode()
    with atomic.atomic_write(path) as f:
        f.write(b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "keep.bin"
    path.write_bytes(b"old content")
    with pytest.raises(RuntimeError):
        with atomic.atomic_write(path) as f:
            f.write(b"new partial")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.bin"]


def test_atomic_write_permissions(tmp_path):
    fresh = tmp_path / "fresh.txt"
    with atomic.atomic_write(fresh, "w") as f:
        f.write("x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask      # like open(), not mkstemp's 0600
    os.chmod(fresh, 0o640)
    with atomic.atomic_write(fresh, "w") as f:
        f.write("y")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o640                 # an existing file keeps its mode


def test_atomic_write_rejects_read_modes(tmp_path):
    with pytest.raises(ValueError):
        with atomic.atomic_write(tmp_path / "x", "r"):
            pass


# ----------------------------------------------------------------------------- .npz

def test_npz_round_trip(tmp_path, motion):
    path = F.save_npz(motion, tmp_path / "m.npz")
    back = F.load_npz(path)
    assert np.array_equal(back.joints, motion.joints) and np.array_equal(back.features, motion.features)
    assert (back.fps, back.caption, back.name, back.provenance) == (motion.fps, motion.caption, motion.name, motion.provenance)
    plain = F.load_motion_file(F.save_npz(motion.replace(features=None, fps=60.0), tmp_path / "p.npz"))
    assert plain.features is None and plain.fps == 60.0
    assert F.load_npz(path, fps=25.0).fps == 25.0
    with np.load(path, allow_pickle=False) as data:      # loadable without pickles, documented keys
        assert set(data.files) == {"format_version", "joints", "fps", "caption", "name", "provenance", "features"}
        assert data["joints"].dtype == np.float32 and int(data["format_version"]) == F.FORMAT_VERSION


def test_npz_save_failure_mid_write_keeps_the_old_file(tmp_path, motion, monkeypatch):
    path = F.save_npz(motion, tmp_path / "m.npz")
    before = path.read_bytes()

    def half_then_fail(f, **arrays):
        f.write(before[: len(before) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(F.np, "savez", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        F.save_npz(motion.replace(caption="changed"), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


GOOD = dict(format_version=np.array(1), joints=np.zeros((4, 22, 3), np.float32), fps=np.array(20.0))


@pytest.mark.parametrize("label,arrays,needle", [
    ("missing joints", {k: v for k, v in GOOD.items() if k != "joints"}, "missing joints"),
    ("missing version", {k: v for k, v in GOOD.items() if k != "format_version"}, "missing format_version"),
    ("future version", dict(GOOD, format_version=np.array(99)), "format_version 99"),
    ("wrong joints shape", dict(GOOD, joints=np.zeros((4, 21, 3))), "(frames, 22, 3)"),
    ("NaN joints", dict(GOOD, joints=np.full((4, 22, 3), np.nan)), "NaN"),
    ("empty joints", dict(GOOD, joints=np.zeros((0, 22, 3))), "empty"),
    ("features length", dict(GOOD, features=np.zeros((4, 263))), "one fewer"),
    ("features width", dict(GOOD, features=np.zeros((3, 200))), "(frames, 263)"),
    ("text joints", dict(GOOD, joints=np.array("abc")), "numeric"),
    ("fps array", dict(GOOD, fps=np.array([20.0, 30.0])), "single value"),
    ("bad fps", dict(GOOD, fps=np.array(0.0)), "fps"),
    ("bad provenance", dict(GOOD, provenance=np.array("{not json")), "JSON"),
    ("object array", dict(GOOD, joints=np.array([{"a": 1}], dtype=object)), "allow_pickle"),
])
def test_npz_bad_contents(tmp_path, label, arrays, needle):
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(MotionError) as err:
        F.load_npz(path)
    assert str(path) in str(err.value) and needle in str(err.value), (label, str(err.value))


def test_npz_truncated_and_corrupt(tmp_path, motion):
    data = F.save_npz(motion, tmp_path / "m.npz").read_bytes()
    for label, blob in [("truncated", data[: len(data) // 2]), ("tail cut", data[:-10]), ("empty", b""),
                        ("junk", b"PK\x03\x04" + b"\xff" * 200)]:
        path = tmp_path / f"{label}.npz"
        path.write_bytes(blob)
        with pytest.raises(MotionError, match=str(path).replace(".", r"\.")):
            F.load_npz(path)
    # a bit flipped inside the stored joints: the zip CRC catches it
    with zipfile.ZipFile(tmp_path / "m.npz") as z:
        offset = z.getinfo("joints.npy").header_offset + 200
    flipped = bytearray(data)
    flipped[offset] ^= 0xFF
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    with pytest.raises(MotionError, match="flipped.npz"):
        F.load_npz(tmp_path / "flipped.npz")


# ----------------------------------------------------------------------------- HumanML3D .npy

def test_humanml3d_features_npy_round_trip(tmp_path, motion):
    path = F.save_humanml3d_npy(motion, tmp_path / "000001.npy")
    raw = np.load(path, allow_pickle=False)
    assert raw.shape == (59, 263) and raw.dtype == np.float32
    back = F.load_humanml3d_npy(path)
    assert back.num_frames == 60 and back.fps == 20.0 and back.name == "000001"
    assert np.array_equal(back.features, motion.features)
    assert max_error(back.joints, H.canonicalize(motion.joints)) < 1e-3
    assert back.provenance["kind"] == "features"


def test_humanml3d_joints_npy_round_trip(tmp_path, motion):
    path = F.save_humanml3d_npy(motion, tmp_path / "j.npy", kind="joints")
    assert np.load(path).shape == (60, 22, 3)
    back = F.load_motion_file(path)
    assert np.array_equal(back.joints, motion.joints) and back.features is None
    flat = tmp_path / "flat.npy"
    np.save(flat, motion.joints.reshape(60, 66))
    assert np.array_equal(F.load_humanml3d_npy(flat, fps=30.0).joints, motion.joints)


def test_humanml3d_npy_is_saved_at_20_fps(tmp_path):
    fast = Motion(joints=walk_joints(81, 1, fps=40.0), fps=40.0)
    path = F.save_humanml3d_npy(fast, tmp_path / "f.npy")
    assert np.load(path).shape == (40, 263)      # 81 frames at 40 fps = 41 frames at 20 fps
    back = F.load_motion_file(path)
    assert back.duration == pytest.approx(fast.duration, abs=0.06)
    with pytest.raises(MotionError, match="kind"):
        F.save_humanml3d_npy(fast, tmp_path / "x.npy", kind="rotations")


@pytest.mark.parametrize("label,array,needle", [
    ("wrong shape", np.zeros((10, 20, 3), np.float32), "got shape (10, 20, 3)"),
    ("1-d", np.zeros(263, np.float32), "got shape (263,)"),
    ("NaN features", np.full((10, 263), np.nan, np.float32), "NaN"),
    ("NaN joints", np.full((10, 22, 3), np.nan, np.float32), "NaN"),
    ("strings", np.array(["a", "b"]), "numeric"),
])
def test_humanml3d_npy_bad_arrays(tmp_path, label, array, needle):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(MotionError) as err:
        F.load_humanml3d_npy(path)
    assert str(path) in str(err.value) and needle in str(err.value), (label, str(err.value))


def test_humanml3d_npy_refuses_pickles_and_truncation(tmp_path, motion):
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"joints": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(MotionError, match="allow_pickle"):
        F.load_humanml3d_npy(pickled)
    data = F.save_humanml3d_npy(motion, tmp_path / "ok.npy").read_bytes()
    for label, blob in [("truncated", data[: len(data) // 2]), ("header only", data[:60]), ("empty", b"")]:
        path = tmp_path / f"{label}.npy"
        path.write_bytes(blob)
        with pytest.raises(MotionError, match="cannot be read"):
            F.load_humanml3d_npy(path)


def test_npy_save_failure_mid_write_keeps_the_old_file(tmp_path, motion, monkeypatch):
    path = F.save_humanml3d_npy(motion, tmp_path / "m.npy")
    before = path.read_bytes()

    def half_then_fail(f, array, allow_pickle=False):
        f.write(before[:100])
        raise OSError("disk full")

    monkeypatch.setattr(F.np, "save", half_then_fail)
    with pytest.raises(OSError):
        F.save_humanml3d_npy(motion.replace(features=None), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.npy"]


# ----------------------------------------------------------------------------- dispatch

def test_load_motion_file_dispatches(tmp_path, motion):
    assert F.SUPPORTED_EXTENSIONS == (".npz", ".npy", ".bvh")
    npz = F.load_motion_file(F.save_npz(motion, tmp_path / "a.NPZ"))
    assert np.array_equal(npz.joints, motion.joints)
    npy = F.load_motion_file(F.save_humanml3d_npy(motion, tmp_path / "b.npy"), fps=30.0)
    assert npy.fps == 30.0 and npy.features is not None
    rigid = Motion(joints=rigid_walk_joints(40, 2), fps=24.0)
    bvh = F.load_motion_file(save_bvh(rigid, tmp_path / "c.bvh"))
    assert bvh.fps == pytest.approx(24.0) and max_error(bvh.joints, rigid.joints) < 1e-3


def test_load_motion_file_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "folder.npz").mkdir()
    cases = [(tmp_path / "notes.txt", "unsupported extension '.txt'"),
             (tmp_path / "missing.npz", "no such file"),
             (tmp_path / "missing.bvh", "no such file"),
             (tmp_path / "folder.npz", "is a folder"),
             (tmp_path, "is a folder")]
    for path, needle in cases:
        with pytest.raises(MotionError) as err:
            F.load_motion_file(path)
        assert str(path) in str(err.value) and needle in str(err.value), str(err.value)


def test_everything_saved_is_loadable_without_pickle(tmp_path, motion):
    """np.load(..., allow_pickle=False) reads every array we write."""
    F.save_npz(motion, tmp_path / "a.npz")
    F.save_humanml3d_npy(motion, tmp_path / "b.npy")
    F.save_humanml3d_npy(motion, tmp_path / "c.npy", kind="joints")
    with contextlib.ExitStack() as stack:
        npz = stack.enter_context(np.load(tmp_path / "a.npz", allow_pickle=False))
        assert all(npz[k].dtype != object for k in npz.files)
    assert np.load(tmp_path / "b.npy", allow_pickle=False).dtype == np.float32
    assert np.load(tmp_path / "c.npy", allow_pickle=False).dtype == np.float32
