"""HumanML3D 263-d features: IK/FK, joints -> features -> joints, layout sanity."""
from pathlib import Path

import numpy as np
import pytest

from motionrag_suite.models.motion import humanml3d as H
from motionrag_suite.models.motion import rotations as R
from motionrag_suite.models.motion import skeleton as S
from motionrag_suite.models.motion.motion import Motion, MotionError

MM = 1e-3
LIBRARY_FILE = Path(__file__).resolve().parents[2] / "models" / "motion" / "data" / "builtin_motions.npz"
Y = np.array([0.0, 1.0, 0.0])
X = np.array([1.0, 0.0, 0.0])


def smooth_noise(rng, frames, shape, scale, width=8.0):
    """Gaussian-filtered white noise with standard deviation `scale`, smooth over ~`width` frames."""
    pad = int(4 * width)
    x = rng.normal(size=(frames + 2 * pad,) + tuple(shape)).reshape(frames + 2 * pad, -1)
    k = np.exp(-0.5 * (np.arange(-pad, pad + 1) / width) ** 2)
    out = np.stack([np.convolve(x[:, i], k / k.sum(), mode="valid") for i in range(x.shape[1])], -1)
    return (out / out.std() * scale).reshape((frames,) + tuple(shape))


def walk_quats(frames=160, seed=0, *, fps=20.0, turns=1.5, speed=1.3, noise=0.3):
    """Root positions (T,3) and local quats (T,22,4) of a walk-like clip: smooth random joint
    rotations, legs and arms swinging, a root moving along a curve and turning `turns` circles."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / fps
    yaw = 2 * np.pi * turns * t / max(t[-1], 1e-9) + 0.7
    if noise:
        yaw = yaw + smooth_noise(rng, frames, (), 0.2)
    heading = np.stack([np.sin(yaw), np.zeros(frames), np.cos(yaw)], -1)
    root = np.cumsum(heading * speed / fps, axis=0) + [0.4, 0.0, -1.1]
    root[:, 1] = 0.93 + 0.02 * np.sin(2 * np.pi * 1.8 * t)
    if noise:
        aa = smooth_noise(rng, frames, (S.NUM_JOINTS, 3), noise)
        quats = R.quat_from_axis_angle(aa, np.linalg.norm(aa, axis=-1))
    else:
        quats = np.zeros((frames, S.NUM_JOINTS, 4))
        quats[..., 0] = 1.0
    quats[:, 0] = R.qmul(R.quat_from_axis_angle(Y, yaw), quats[:, 0])
    phase = 2 * np.pi * 0.9 * t
    for joint, sign in ((4, 1), (5, -1), (18, -1), (19, 1)):     # thighs and upper arms swing
        swing = R.quat_from_axis_angle(X, 0.5 * sign * np.sin(phase))
        quats[:, joint] = R.qmul(quats[:, joint], swing)
    return root, quats


def walk_joints(frames=160, seed=0, **kw):
    root, quats = walk_quats(frames, seed, **kw)
    return H.forward_kinematics(root, quats, S.DEFAULT_BONE_LENGTHS)


def rigid_walk_joints(frames=160, seed=0, **kw):
    """Like walk_joints, but the pelvis's and spine3's children move rigidly together, so a
    BVH (one rotation per joint) can reproduce the clip exactly."""
    root, quats = walk_quats(frames, seed, **kw)
    quats[:, 1] = quats[:, 3]
    quats[:, 2] = quats[:, 3]
    spine = R.qmul(R.qmul(quats[:, 3], quats[:, 6]), R.qmul(quats[:, 9], quats[:, 12]))
    quats[:, 13] = spine
    quats[:, 14] = spine
    return H.forward_kinematics(root, quats, S.DEFAULT_BONE_LENGTHS)


def max_error(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1).max())


# ----------------------------------------------------------------------------- IK / FK

def test_fk_builds_the_default_skeleton():
    joints = walk_joints()
    lengths = S.bone_lengths(joints)
    assert np.allclose(lengths, S.DEFAULT_BONE_LENGTHS, atol=1e-9)
    # legs below the pelvis, head above it: it looks like a person, not a tangle
    assert (joints[:, 7, 1] < joints[:, 0, 1]).all() and (joints[:, 15, 1] > joints[:, 0, 1]).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ik_then_fk_reproduces_joints(seed):
    joints = walk_joints(seed=seed)
    quats = H.inverse_kinematics(joints)
    assert quats.shape == (len(joints), 22, 4)
    back = H.forward_kinematics(joints[:, 0], quats, S.bone_lengths(joints)[0])
    assert max_error(back, joints) < 1e-9
    per_frame = H.forward_kinematics(joints[:, 0], quats, S.bone_lengths(joints))
    assert max_error(per_frame, joints) < 1e-9


def test_ik_root_is_a_yaw_that_faces_forward():
    joints = walk_joints()
    root = H.inverse_kinematics(joints)[:, 0]
    assert np.allclose(root[:, [1, 3]], 0.0, atol=1e-12)
    r_hip, l_hip, r_sh, l_sh = S.FACE_JOINTS
    across = (joints[:, r_hip] - joints[:, l_hip]) + (joints[:, r_sh] - joints[:, l_sh])
    forward = R.normalize(np.cross(Y, across))
    unsmoothed = H.inverse_kinematics(joints, smooth_sigma=0)[:, 0]
    assert np.allclose(R.qrot(unsmoothed, forward), [0, 0, 1], atol=1e-9)


def test_rotations_round_trip_through_fk_and_ik():
    """quats from IK -> FK -> IK gives the same rotations (up to quaternion sign)."""
    joints = walk_joints(seed=3)
    quats = H.inverse_kinematics(joints)
    again = H.inverse_kinematics(H.forward_kinematics(joints[:, 0], quats, S.DEFAULT_BONE_LENGTHS))
    assert np.allclose(np.abs(np.sum(quats * again, axis=-1)), 1.0, atol=1e-9)


def test_fk_rejects_bad_shapes():
    with pytest.raises(MotionError, match="quats"):
        H.forward_kinematics(np.zeros((3, 3)), np.zeros((3, 21, 4)), S.DEFAULT_BONE_LENGTHS)
    with pytest.raises(MotionError, match="bone_lengths"):
        H.forward_kinematics(np.zeros((3, 3)), np.ones((3, 22, 4)), np.ones(21))


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("seed,turns", [(0, 1.5), (1, -2.25), (2, 0.0), (3, 4.0)])
def test_joints_features_joints_ric_and_rot(seed, turns):
    joints = walk_joints(200, seed, turns=turns)
    feats = H.joints_to_features(joints)
    assert feats.shape == (199, 263) and feats.dtype == np.float32
    target = H.canonicalize(joints)[:-1]
    assert max_error(H.features_to_joints(feats), target) < MM
    assert max_error(H.features_to_joints(feats, method="rot"), target) < MM
    assert max_error(H.features_to_joints(feats, method="rot", bone_lengths="ric"), target) < MM


def test_round_trip_with_other_bone_lengths_and_a_fast_spin():
    """A person of other proportions spinning 180 degrees in 4 frames; rot uses lengths from ric."""
    root, quats = walk_quats(120, 5, turns=12.0)
    lengths = S.DEFAULT_BONE_LENGTHS * np.random.default_rng(5).uniform(0.8, 1.2, 22)
    joints = H.forward_kinematics(root, quats, lengths)
    feats = H.joints_to_features(joints, smooth_sigma=0)
    target = H.canonicalize(joints, smooth_sigma=0)[:-1]
    assert max_error(H.features_to_joints(feats), target) < MM
    assert max_error(H.features_to_joints(feats, method="rot", bone_lengths="ric"), target) < MM
    assert max_error(H.features_to_joints(feats, method="rot", bone_lengths=lengths), target) < MM
    # with the wrong (default) lengths the rot route is off: the option matters
    assert max_error(H.features_to_joints(feats, method="rot"), target) > 1e-2


def test_features_are_invariant_to_where_the_clip_starts():
    joints = walk_joints(seed=4)
    turn = R.quat_from_axis_angle(Y, 2.1)
    moved = R.qrot(turn, joints) + np.array([5.0, 0.0, -3.0])
    assert np.allclose(H.joints_to_features(joints), H.joints_to_features(moved), atol=2e-5)


def test_features_to_motion_rebuilds_the_last_frame():
    joints = walk_joints(90, 6)
    feats = H.joints_to_features(joints)
    motion = H.features_to_motion(feats, fps=20.0)
    assert motion.num_frames == 90 and motion.features.shape == (89, 263)
    assert max_error(motion.joints, H.canonicalize(joints)) < MM


def test_with_features():
    motion = Motion(joints=walk_joints(50, 7), fps=20.0, name="w")
    out = H.with_features(motion)
    assert out.features.shape == (49, 263) and out.name == "w"
    assert np.array_equal(out.features, H.joints_to_features(motion.joints))
    with pytest.raises(MotionError, match="at least 2 frames"):
        H.with_features(Motion(joints=motion.joints[:1]))


# ----------------------------------------------------------------------------- layout

def test_canonicalize_puts_the_first_frame_at_the_origin_facing_z():
    joints = walk_joints(seed=8)
    canon = H.canonicalize(joints)
    assert np.allclose(canon[0, 0, [0, 2]], 0.0, atol=1e-6)
    assert abs(H.facing_yaw(canon)[0]) < 1e-6
    assert np.allclose(canon[..., 1], joints[..., 1], atol=1e-6)        # no floor shift by default
    floored = H.canonicalize(joints, floor=True)
    assert abs(floored[:, list(H.FOOT_CONTACT_JOINTS), 1].min()) < 1e-6
    # the recovered root rotation of frame 0 is the identity
    quats, _ = H.recover_root(H.joints_to_features(joints))
    assert np.allclose(quats[0], [1, 0, 0, 0])


def test_root_height_is_the_pelvis_height():
    joints = walk_joints(seed=9)
    feats = H.joints_to_features(joints)
    assert np.allclose(feats[:, 3], joints[:-1, 0, 1], atol=1e-6)
    ric = feats[:, H.RIC].reshape(-1, 21, 3)
    assert np.allclose(ric[..., 1], joints[:-1, 1:, 1], atol=1e-5)     # ric keeps absolute Y


def test_a_straight_walk_has_no_angular_velocity():
    fps, speed = 20.0, 1.3
    joints = walk_joints(120, 0, turns=0.0, noise=0.0, speed=speed, fps=fps)
    feats = H.joints_to_features(joints)
    assert np.abs(feats[:, 0]).max() < 1e-6
    assert np.allclose(feats[:, 1], 0.0, atol=1e-6)                    # no sideways drift
    assert np.allclose(feats[:, 2], speed / fps, atol=1e-6)            # forward, per frame
    # a steady turn gives a steady half-angle per frame, HumanML3D's convention
    turning = walk_joints(120, 0, turns=1.0, noise=0.0, fps=fps)
    feats = H.joints_to_features(turning, smooth_sigma=0)
    per_frame_yaw = 2 * np.pi / 119
    assert np.allclose(feats[:, 0], -per_frame_yaw / 2, atol=1e-5)


def test_foot_contacts_are_binary_and_follow_the_feet():
    still = np.repeat(walk_joints(2, 0, noise=0.0)[:1], 30, axis=0)
    feats = H.joints_to_features(still)
    assert (feats[:, H.FOOT_CONTACTS] == 1).all()
    sliding = still + np.arange(30)[:, None, None] * np.array([0.0, 0.0, 0.1])   # 2 m/s at 20 fps
    assert (H.joints_to_features(sliding)[:, H.FOOT_CONTACTS] == 0).all()
    feats = H.joints_to_features(walk_joints(seed=10))
    assert set(np.unique(feats[:, H.FOOT_CONTACTS])) <= {0.0, 1.0}


def test_local_velocity_and_rotation_blocks():
    joints = walk_joints(seed=11)
    feats = H.joints_to_features(joints)
    canon = H.canonicalize(joints).astype(np.float64)
    quats = H.inverse_kinematics(canon)
    vel = R.qrot(quats[:-1, :1], canon[1:] - canon[:-1])
    assert np.allclose(feats[:, H.LOCAL_VELOCITY].reshape(-1, 22, 3), vel, atol=1e-6)
    assert np.allclose(feats[:, H.ROT].reshape(-1, 21, 6), R.quat_to_cont6d(quats[:-1, 1:]), atol=1e-5)


def test_errors_are_clear():
    with pytest.raises(MotionError, match="at least 2 frames"):
        H.joints_to_features(np.zeros((1, 22, 3)))
    with pytest.raises(MotionError, match="joints"):
        H.joints_to_features(np.zeros((5, 21, 3)))
    feats = H.joints_to_features(walk_joints(10))
    bad = feats.copy()
    bad[3, 7] = np.nan
    with pytest.raises(MotionError, match="features.*NaN"):
        H.features_to_joints(bad)
    with pytest.raises(MotionError, match="features"):
        H.features_to_joints(feats[:, :262])
    with pytest.raises(MotionError, match="method"):
        H.features_to_joints(feats, method="euler")
    with pytest.raises(MotionError, match="bone_lengths"):
        H.features_to_joints(feats, method="rot", bone_lengths=np.ones(5))


# ----------------------------------------------------------------------------- real clips

@pytest.mark.skipif(not LIBRARY_FILE.exists(), reason="models/motion/data/builtin_motions.npz is not built yet")
def test_round_trips_on_every_builtin_clip():
    from motionrag_suite.models.motion import library

    names = list(library.list_clips())
    assert names
    worst = {}
    for name in names:
        clip = library.load_clip(name)
        joints = np.asarray(getattr(clip, "joints", clip), dtype=np.float64)
        quats = H.inverse_kinematics(joints)
        assert max_error(H.forward_kinematics(joints[:, 0], quats, S.bone_lengths(joints)), joints) < 1e-6, name
        feats = H.joints_to_features(joints)
        target = H.canonicalize(joints)[:-1]
        ric = max_error(H.features_to_joints(feats), target)
        lengths = S.bone_lengths(target)
        rot = max_error(H.features_to_joints(feats, method="rot", bone_lengths=lengths), target)
        worst[name] = (ric, rot)
        assert ric < MM and rot < MM, (name, ric, rot)
