"""The held-out evaluation's motion metrics (models/t2m/metrics.py) on real library clips."""
import numpy as np
import pytest

from motionrag_suite.models.motion import library
from motionrag_suite.models.t2m import metrics


def _clip(name="kick"):
    return library.load_clip(name).joints.astype(np.float64)


def _turn(joints, degrees):
    t = np.radians(degrees)
    rot = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
    return joints @ rot.T


def test_dtw_mpjpe_of_a_clip_with_itself_is_zero():
    assert metrics.dtw_mpjpe(_clip(), _clip()) == pytest.approx(0.0, abs=1e-12)


def test_dtw_mpjpe_ignores_repeated_frames():
    j = _clip()
    stretched = np.repeat(j, 2, axis=0)          # the same motion at half speed
    assert metrics.dtw_mpjpe(j, stretched) == pytest.approx(0.0, abs=1e-12)


def test_dtw_mpjpe_of_a_linearly_resampled_copy_is_small():
    j = _clip()
    t = np.linspace(0, len(j) - 1, int(len(j) * 1.5))
    i0 = np.floor(t).astype(int)
    i1 = np.minimum(i0 + 1, len(j) - 1)
    w = (t - i0)[:, None, None]
    resampled = (1 - w) * j[i0] + w * j[i1]
    other = metrics.dtw_mpjpe(j, _clip("walk"))
    assert metrics.dtw_mpjpe(j, resampled) < 0.05 * other


def test_dtw_mpjpe_ignores_root_translation_and_start_heading():
    j = _clip("cartwheel")
    moved = _turn(j, 70) + np.array([3.0, 0.2, -1.5])
    assert metrics.dtw_mpjpe(j, moved) == pytest.approx(0.0, abs=1e-9)


def test_dtw_mpjpe_tells_different_actions_apart():
    j = _clip("kick")
    assert metrics.dtw_mpjpe(j, _clip("crawl")) > 0.2           # metres: lying vs standing
    assert metrics.dtw_mpjpe(j, _clip("M_kick")) > 0.02          # the other leg kicks


def test_dtw_path_on_a_known_matrix():
    cost = np.array([[0.0, 5.0, 5.0], [5.0, 1.0, 5.0], [5.0, 5.0, 2.0]])
    assert metrics.dtw(cost) == (3.0, 3)


def test_bone_length_variance_zero_for_library_clip_positive_when_stretched():
    j = _clip()
    assert metrics.bone_length_variance(j) < 1e-8
    bent = j.copy()
    bent[::2, 15] += np.array([0.0, 0.1, 0.0])   # the head jumps off its neck every other frame
    assert metrics.bone_length_variance(bent) > 5e-5      # one bone of 21 swinging by ~10 cm


def test_foot_skating_sees_sliding_planted_feet():
    j = _clip("walk")
    still = np.repeat(j[:1], 20, axis=0)
    assert metrics.foot_skating(still, 20) == 0.0
    slide = still + np.linspace(0, 1, 20)[:, None, None] * np.array([1.0, 0.0, 0.0])   # 1 m in 0.95 s
    assert metrics.foot_skating(slide, 20) == pytest.approx(20 / 19, rel=1e-6)


def test_jerk_zero_for_constant_velocity_positive_for_real_motion():
    j = _clip()
    line = j[:1] + np.arange(30)[:, None, None] * np.array([0.01, 0.0, 0.02])
    assert metrics.jerk(line, 20) == pytest.approx(0.0, abs=1e-6)
    assert metrics.jerk(j, 20) > 1.0


def test_diversity_zero_for_copies_and_positive_for_different_clips():
    assert metrics.diversity([_clip(), _clip()]) == pytest.approx(0.0, abs=1e-12)
    assert metrics.diversity([_clip(), _clip("walk"), _clip("crawl")]) > 0.1
    with pytest.raises(ValueError, match="at least 2"):
        metrics.diversity([_clip()])


def test_bad_shape_is_named():
    with pytest.raises(ValueError, match=r"a: expected joints of shape \(frames, 22, 3\)"):
        metrics.dtw_mpjpe(np.zeros((5, 21, 3)), _clip())
