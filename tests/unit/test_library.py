"""The built-in motion library (models/motion/library.py) and its DeepMimic conversion."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from motionrag_suite.models.motion import deepmimic, library, skeleton
from motionrag_suite.models.motion.motion import Motion, MotionError

HAS_PYBULLET = importlib.util.find_spec("pybullet") is not None and importlib.util.find_spec("pybullet_data") is not None
needs_pybullet = pytest.mark.skipif(not HAS_PYBULLET, reason="pybullet (with pybullet_data) is not installed")

ORIGINALS = library.list_clips(include_mirrored=False)
ALL = library.list_clips()
FEET = list(skeleton.LEFT_FOOT_JOINTS + skeleton.RIGHT_FOOT_JOINTS)
J = {n: i for i, n in enumerate(skeleton.JOINT_NAMES)}


def _index() -> dict:
    return json.loads(library.INDEX_PATH.read_text(encoding="utf-8"))


def _forward(joints: np.ndarray) -> np.ndarray:
    """Horizontal facing per frame, written out here independently of deepmimic.py."""
    across = (joints[..., J["right_hip"], :] - joints[..., J["left_hip"], :]
              + joints[..., J["right_shoulder"], :] - joints[..., J["left_shoulder"], :])
    fwd = np.stack([across[..., 2], np.zeros(across.shape[:-1]), -across[..., 0]], axis=-1)  # +Y x across
    return fwd / np.linalg.norm(fwd, axis=-1, keepdims=True)


# ---------------------------------------------------------------- catalogue and API

def test_catalogue_names_and_order():
    assert len(ORIGINALS) == 20
    assert ORIGINALS == sorted(ORIGINALS)
    assert ALL == ORIGINALS + sorted("M_" + n for n in ORIGINALS)
    for name in ("cartwheel", "backflip", "walk", "walk_forward", "turn_left_a", "turn_left_b",
                 "turn_right_a", "turn_right_b", "crawl", "spinkick"):
        assert name in ORIGINALS
    assert library.DEFAULT_CLIP in ORIGINALS


def test_unknown_name_lists_valid_names():
    with pytest.raises(MotionError) as err:
        library.load_clip("moonwalk")
    assert "moonwalk" in str(err.value) and "cartwheel" in str(err.value) and "M_walk" in str(err.value)
    with pytest.raises(MotionError):
        library.clip_captions("moonwalk")


@pytest.mark.parametrize("name", ALL)
def test_every_clip_loads_and_is_well_formed(name):
    m = library.load_clip(name)
    info = library.clip_info(name)
    assert isinstance(m, Motion)
    assert m.fps == 20.0 and m.name == name
    assert m.joints.dtype == np.float32 and m.joints.shape[1:] == (22, 3)
    assert np.isfinite(m.joints).all()
    # 20 fps over the source's own duration, to within one frame
    assert abs(m.num_frames - info["source_duration"] * 20) <= 1.0
    assert m.num_frames == info["frames"]
    assert m.caption == library.clip_captions(name)[0]
    prov = m.provenance
    assert prov["source"] == "DeepMimic via pybullet_data"
    assert prov["source_file"].startswith("pybullet_data/data/motions/") and prov["source_file"].endswith(".txt")
    assert prov["licence"] == "MIT (DeepMimic); zlib (pybullet)"
    assert prov["captions"] == library.clip_captions(name)
    assert prov["mirrored"] is name.startswith("M_")


@pytest.mark.parametrize("name", ALL)
def test_bone_lengths_are_the_default_skeleton(name):
    lengths = skeleton.bone_lengths(library.load_clip(name).joints)
    err = np.abs(lengths - skeleton.DEFAULT_BONE_LENGTHS[None])[:, 1:]
    assert err.max() < 1e-4, f"{name}: bone length off by {err.max():.2e} m"


@pytest.mark.parametrize("name", ALL)
def test_canonical_placement(name):
    joints = library.load_clip(name).joints.astype(np.float64)
    assert abs(joints[..., 1].min()) < 1e-5                     # lowest joint on the floor
    assert np.abs(joints[0, 0, [0, 2]]).max() < 1e-5             # first pelvis over the origin
    assert np.allclose(_forward(joints[0]), [0.0, 0.0, 1.0], atol=1e-4)   # first frame faces +Z


@pytest.mark.parametrize("name", ORIGINALS)
def test_captions_are_written_per_clip(name):
    caps = library.clip_captions(name)
    assert len(caps) >= 4 and len(set(caps)) == len(caps)
    # Two words at least: short forms with the move's name ("a backflip") are there on purpose.
    assert all(c.strip() == c and len(c.split()) >= 2 for c in caps)
    mirrored = library.clip_captions("M_" + name)
    assert mirrored == [library.mirror_caption(c) for c in caps]


def test_mirror_caption_swaps_sides_and_spin():
    assert library.mirror_caption("a person turns left, then Right") == "a person turns right, then Left"
    assert library.mirror_caption("spins clockwise, then counterclockwise") == "spins counterclockwise, then clockwise"
    assert library.mirror_caption("kicks with the right-footed swing, stands upright") == \
        "kicks with the left-footed swing, stands upright"
    assert "to their right" in library.clip_captions("M_cartwheel")[0]


@pytest.mark.parametrize("name", ORIGINALS)
def test_mirrored_copy_is_exact_mirror(name):
    orig = library.load_clip(name)
    mir = library.load_clip("M_" + name)
    expected = orig.joints[:, list(skeleton.MIRROR_PERMUTATION)] * np.array([-1.0, 1.0, 1.0], dtype=np.float32)
    assert np.array_equal(mir.joints, expected)
    assert mir.provenance["mirrored"] is True and orig.provenance["mirrored"] is False
    assert mir.provenance["source_file"] == orig.provenance["source_file"]


def test_loaded_clips_do_not_share_memory():
    a = library.load_clip("walk")
    a.joints[:] = 0.0
    b = library.load_clip("walk")
    assert np.abs(b.joints).max() > 0.1


# ---------------------------------------------------------------- the motions are what they claim

def _bent_knee_offsets(joints, hip, knee, ankle):
    """Signed distance of the knee in front of the hip-ankle line, and the knee bend angle."""
    h, k, a = joints[:, hip], joints[:, knee], joints[:, ankle]
    axis = (a - h) / np.linalg.norm(a - h, axis=-1, keepdims=True)
    off = (k - h) - np.sum((k - h) * axis, axis=-1, keepdims=True) * axis
    fwd = _forward(joints)
    thigh, shin = k - h, a - k
    cos = np.sum(thigh * shin, -1) / (np.linalg.norm(thigh, axis=-1) * np.linalg.norm(shin, axis=-1))
    return np.sum(off * fwd, axis=-1), np.degrees(np.arccos(np.clip(cos, -1, 1)))


@pytest.mark.parametrize("name", ["walk", "walk_forward", "run", "M_walk"])
def test_knees_bend_backwards_in_gait(name):
    joints = library.load_clip(name).joints.astype(np.float64)
    for side in ("left", "right"):
        ahead, bend = _bent_knee_offsets(joints, J[f"{side}_hip"], J[f"{side}_knee"], J[f"{side}_ankle"])
        bent = bend > 15.0
        assert bent.sum() >= 3, f"{name} {side}: the knee never bends"
        assert (ahead[bent] > 0.0).all(), f"{name} {side}: a bent knee points backwards"
        assert bend.max() > 40.0   # swing-phase flexion is real, not noise


def test_walk_moves_forward_at_walking_speed():
    m = library.load_clip("walk")
    pelvis = m.joints[:, 0].astype(np.float64)
    dz = pelvis[-1, 2] - pelvis[0, 2]
    speed = dz / ((m.num_frames - 1) / m.fps)
    assert 0.5 <= speed <= 2.0, speed
    assert abs(pelvis[-1, 0] - pelvis[0, 0]) < 0.3 * dz      # mostly straight ahead
    assert np.ptp(pelvis[:, 1]) < 0.1                        # the pelvis stays at walking height


def test_cartwheel_goes_upside_down_and_to_the_left():
    joints = library.load_clip("cartwheel").joints
    inverted = joints[:, J["pelvis"], 1] > joints[:, J["head"], 1]
    assert inverted.sum() >= 3
    assert joints[-1, 0, 0] - joints[0, 0, 0] > 1.0          # travels towards +X, the performer's left
    hands_down = joints[:, [J["left_wrist"], J["right_wrist"]], 1].min()
    assert hands_down < 0.15


def test_kick_uses_the_right_leg_and_its_mirror_the_left():
    # Sides are easy to swap silently in a retarget; the kick is lopsided enough to tell.
    for name, kicking, standing in (("kick", "right", "left"), ("M_kick", "left", "right")):
        joints = library.load_clip(name).joints
        assert joints[:, J[f"{kicking}_foot"], 1].max() > 1.0, name
        assert joints[:, J[f"{standing}_foot"], 1].max() < 0.3, name


def _sagittal_rotation_deg(joints):
    """Cumulative rotation of the trunk (pelvis -> neck) about the X axis, degrees."""
    trunk = joints[:, J["neck"]] - joints[:, J["pelvis"]]
    angle = np.unwrap(np.arctan2(trunk[:, 2], trunk[:, 1]))
    in_plane = np.hypot(trunk[:, 1], trunk[:, 2]) / np.linalg.norm(trunk, axis=-1)
    return np.degrees(angle - angle[0]), in_plane


def test_backflip_turns_over_backwards_about_a_lateral_axis():
    joints = library.load_clip("backflip").joints.astype(np.float64)
    rotation, in_plane = _sagittal_rotation_deg(joints)
    assert in_plane.min() > 0.8              # the trunk stays near the Y-Z plane: the axis is lateral
    assert -420.0 < rotation.min() < -300.0  # about one full turn, head going backwards (-Z) first
    assert joints[-1, 0, 2] < joints[0, 0, 2] - 0.3   # lands behind where it started
    walk_rotation, _ = _sagittal_rotation_deg(library.load_clip("walk").joints.astype(np.float64))
    assert np.abs(walk_rotation).max() < 45.0         # the measure does not invent flips


def test_turn_clips_turn_the_way_they_are_named():
    def yaw_change(name):
        f = _forward(library.load_clip(name).joints.astype(np.float64))
        yaw = np.unwrap(np.arctan2(f[:, 0], f[:, 2]))   # + turns towards +X, the performer's left
        return np.degrees(yaw[-1] - yaw[0])
    for name in ("turn_left_a", "turn_left_b"):
        assert yaw_change(name) > 15.0 and yaw_change("M_" + name) < -15.0
    for name in ("turn_right_a", "turn_right_b"):
        assert yaw_change(name) < -15.0 and yaw_change("M_" + name) > 15.0


# ---------------------------------------------------------------- data files

def test_json_and_npz_agree():
    doc = _index()
    assert "DeepMimic" in doc["provenance"] and "build_library" in doc["regenerate"]
    entries = {c["name"]: c for c in doc["clips"]}
    assert sorted(entries) == sorted(ALL)
    with np.load(library.LIBRARY_PATH, allow_pickle=False) as npz:
        keys = set(npz.files)
        shapes = {k: npz[k].shape for k in keys}
        dtypes = {npz[k].dtype for k in keys}
    assert keys == set(ORIGINALS)
    assert dtypes == {np.dtype(np.float32)}
    for name, e in entries.items():
        base = e["mirror_of"] if e["mirrored"] else name
        assert e["mirrored"] == name.startswith("M_")
        assert shapes[base] == (e["frames"], 22, 3)
        assert e["duration"] == pytest.approx(e["frames"] / 20.0)
        assert e["fps"] == 20.0 and e["licence"] == library.LICENCE
        assert e["source_frames"] > 1 and e["source_fps"] > 0 and len(e["source_sha256"]) == 64
        assert len(e["captions"]) >= 4
    assert library.LIBRARY_PATH.stat().st_size < 1_000_000


def test_licence_file_names_the_sources():
    text = (library.DATA_DIR / "LICENSE-DATA.md").read_text(encoding="utf-8")
    for needle in ("MIT", "zlib", "DeepMimic", "pybullet", "CMU", "SFU", "build_library"):
        assert needle in text


# ---------------------------------------------------------------- conversion internals

def _synthetic_clip(dt, loop="none"):
    n = len(dt)
    ident = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))
    return deepmimic.DeepMimicClip(
        name="synthetic", loop=loop, dt=np.asarray(dt, dtype=np.float64),
        root_pos=np.stack([np.arange(n, dtype=np.float64), np.zeros(n), np.zeros(n)], -1),
        root_rot=ident, local_rots={"chest": ident.copy()},
    )


def test_resample_follows_each_frames_own_dt():
    # frames at t = 0, 0.1, 0.3, 0.35: uneven spacing must be honoured
    clip = _synthetic_clip([0.1, 0.2, 0.05, 0.0])
    out = deepmimic.resample(clip, fps=20.0)
    assert len(out.dt) == 8                            # t = 0 .. 0.35 every 0.05
    t = np.arange(8) * 0.05
    expected_x = np.interp(t, [0.0, 0.1, 0.3, 0.35], [0.0, 1.0, 2.0, 3.0])
    assert np.allclose(out.root_pos[:, 0], expected_x)


def test_resample_wrap_drops_the_duplicate_last_frame():
    clip = _synthetic_clip([0.1, 0.1, 0.1, 0.1], loop="wrap")
    out = deepmimic.resample(clip, fps=10.0)
    assert np.allclose(out.root_pos[:, 0], [0.0, 1.0, 2.0])   # the 4th frame starts the next cycle
    none = deepmimic.resample(_synthetic_clip([0.1, 0.1, 0.1, 0.1]), fps=10.0)
    assert np.allclose(none.root_pos[:, 0], [0.0, 1.0, 2.0, 3.0])


def test_resample_slerps_rotations():
    clip = _synthetic_clip([0.2, 0.0])
    half = np.array([np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0])   # 90 degrees about Y
    clip.local_rots["chest"][1] = half
    out = deepmimic.resample(clip, fps=10.0)
    q = out.local_rots["chest"][1]
    assert np.allclose(q, [np.cos(np.pi / 8), 0.0, np.sin(np.pi / 8), 0.0])


def test_canonicalize_places_a_rotated_shifted_body():
    rest = np.zeros((22, 3))
    for j in range(1, 22):
        rest[j] = rest[skeleton.PARENTS[j]] + skeleton.rest_offsets()[j]
    # turn the rest pose (facing +Z) by 120 degrees about Y and lift/shift it
    c, s = np.cos(np.radians(120)), np.sin(np.radians(120))
    rot_y = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    joints = np.stack([rest @ rot_y.T + [3.0, 2.0, -1.0]] * 2)
    out = deepmimic.canonicalize(joints)
    assert np.allclose(out[0, 0, [0, 2]], 0.0, atol=1e-9)
    assert out[..., 1].min() == pytest.approx(0.0, abs=1e-9)
    assert np.allclose(_forward(out[0]), [0, 0, 1], atol=1e-9)
    assert np.allclose(skeleton.bone_lengths(out), skeleton.bone_lengths(joints))


@needs_pybullet
def test_humanoid_fk_matches_pybullet():
    import pybullet as p
    import pybullet_data
    root = Path(pybullet_data.getDataPath())
    urdf = deepmimic.parse_urdf(root / "humanoid" / "humanoid.urdf")
    path = root / "data" / "motions" / "humanoid3d_cartwheel.txt"
    clip = deepmimic.read_clip(path, urdf)
    raw = np.asarray(json.loads(path.read_text())["Frames"])
    pos, wrot = deepmimic.humanoid_fk(clip, urdf)
    cid = p.connect(p.DIRECT)
    try:
        body = p.loadURDF(str(root / "humanoid" / "humanoid.urdf"), globalScaling=deepmimic.URDF_SCALE,
                          useFixedBase=True, flags=p.URDF_MAINTAIN_LINK_ORDER, physicsClientId=cid)
        links = {p.getJointInfo(body, i, physicsClientId=cid)[12].decode(): i
                 for i in range(p.getNumJoints(body, physicsClientId=cid))}
        assert set(links) == set(pos)
        for f in range(0, clip.num_frames, 20):
            q = clip.root_rot[f]
            p.resetBasePositionAndOrientation(body, clip.root_pos[f], [q[1], q[2], q[3], q[0]], physicsClientId=cid)
            for name, col, width in deepmimic.FRAME_LAYOUT:
                if width == 4:
                    lq = clip.local_rots[name][f]
                    p.resetJointStateMultiDof(body, links[name], [lq[1], lq[2], lq[3], lq[0]], physicsClientId=cid)
                else:
                    p.resetJointState(body, links[name], raw[f, col], physicsClientId=cid)
            for name, i in links.items():
                state = p.getLinkState(body, i, computeForwardKinematics=True, physicsClientId=cid)
                assert np.allclose(state[4], pos[name][f], atol=1e-5), (name, f)
                w = state[5]
                assert abs(abs(np.dot([w[3], w[0], w[1], w[2]], wrot[name][f])) - 1.0) < 1e-5, (name, f)
    finally:
        p.disconnect(cid)


@needs_pybullet
def test_rebuild_reproduces_the_shipped_data(tmp_path):
    # Arrays and JSON, not bytes: compressed bytes depend on the zlib build.
    from motionrag_suite.models.motion import build_library
    build_library.build(tmp_path)
    assert json.loads((tmp_path / library.INDEX_PATH.name).read_text()) == json.loads(library.INDEX_PATH.read_text())
    with np.load(tmp_path / library.LIBRARY_PATH.name) as rebuilt, np.load(library.LIBRARY_PATH) as shipped:
        assert sorted(rebuilt.files) == sorted(shipped.files)
        for key in shipped.files:
            assert np.array_equal(rebuilt[key], shipped[key]), f"{key} differs from a fresh build"
