import numpy as np
import pytest

from motionrag_suite.models.motion import Motion, MotionError, skeleton


def _walk(frames=30):
    t = np.arange(frames)[:, None, None]
    joints = np.zeros((frames, 22, 3), np.float32) + skeleton.rest_offsets().cumsum(0)[None] * 0
    joints = joints + np.random.default_rng(0).normal(scale=0.2, size=(1, 22, 3)) + t * np.array([0, 0, 0.05])
    return joints.astype(np.float32)


def test_valid_motion_properties():
    m = Motion(_walk(40), fps=20, caption="walks forward")
    assert m.num_frames == 40 and m.duration == pytest.approx(2.0)
    assert m.joints.dtype == np.float32


@pytest.mark.parametrize(
    "joints,needle",
    [
        (np.zeros((0, 22, 3)), "empty"),
        (np.zeros((10, 21, 3)), "(frames, 22, 3)"),
        (np.zeros((10, 22)), "(frames, 22, 3)"),
        (np.full((10, 22, 3), np.nan), "NaN"),
        (np.full((10, 22, 3), 1e7), "metres"),
        ("not an array", "numeric array"),
    ],
)
def test_bad_joints_are_named(joints, needle):
    with pytest.raises(MotionError) as err:
        Motion(joints)
    assert "joints" in str(err.value) and needle in str(err.value)


@pytest.mark.parametrize("fps", [0, -5, 1e6, "fast"])
def test_bad_fps(fps):
    with pytest.raises(MotionError, match="fps"):
        Motion(_walk(), fps=fps)


def test_mirror_twice_is_identity_and_swaps_sides():
    m = Motion(_walk(), name="walk")
    mm = m.mirrored()
    assert mm.name == "M_walk" and mm.provenance["mirrored"] is True
    assert np.allclose(mm.joints[:, 1, 0], -m.joints[:, 2, 0])
    back = mm.mirrored()
    assert np.allclose(back.joints, m.joints) and back.name == "walk" and back.provenance["mirrored"] is False


def test_resample_keeps_duration_and_endpoints():
    m = Motion(_walk(61), fps=60)
    r = m.resampled(20)
    assert r.num_frames == 21 and r.fps == 20
    assert np.allclose(r.joints[0], m.joints[0]) and np.allclose(r.joints[-1], m.joints[-1], atol=1e-5)
    assert np.allclose(r.joints[5], m.joints[15], atol=1e-5)


def test_slice_bounds_checked():
    m = Motion(_walk(30))
    assert m.sliced(5, 15).num_frames == 10
    with pytest.raises(MotionError, match="outside"):
        m.sliced(20, 40)


def test_absurd_frame_count_is_refused_by_name():
    from motionrag_suite.models.motion.motion import MAX_FRAMES

    with pytest.raises(MotionError, match=r"joints: .*frames is more than"):
        Motion(np.zeros((MAX_FRAMES + 1, 22, 3), np.float32))


def test_absurd_render_size_is_refused_before_allocating():
    from motionrag_suite.models.render import skeleton3d

    with pytest.raises(MotionError, match="4096x4096"):
        skeleton3d.render_3d(np.zeros((5000, 22, 3), np.float32), width=4096, height=4096)
