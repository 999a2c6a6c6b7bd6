import numpy as np
import pytest

from motionrag_suite.models.motion import rotations as R


@pytest.fixture
def quats():
    return R.normalize(np.random.default_rng(0).normal(size=(500, 4)))


def test_matrix_quat_round_trip(quats):
    back = R.matrix_to_quat(R.quat_to_matrix(quats))
    assert np.allclose(np.abs(np.sum(back * quats, -1)), 1.0, atol=1e-12)


def test_qrot_matches_matrix(quats):
    v = np.random.default_rng(1).normal(size=(500, 3))
    assert np.allclose(R.qrot(quats, v), np.einsum("nij,nj->ni", R.quat_to_matrix(quats), v), atol=1e-12)


def test_cont6d_round_trip(quats):
    m = R.quat_to_matrix(quats)
    assert np.allclose(R.cont6d_to_matrix(R.matrix_to_cont6d(m)), m, atol=1e-12)


@pytest.mark.parametrize("order", ["XYZ", "ZXY", "ZYX", "YXZ", "XZY", "YZX"])
def test_euler_round_trip(quats, order):
    m = R.quat_to_matrix(quats)
    assert np.allclose(R.euler_to_matrix(R.matrix_to_euler(m, order), order), m, atol=1e-9)


def test_qbetween_including_opposite():
    rng = np.random.default_rng(2)
    a = R.normalize(rng.normal(size=(200, 3)))
    b = R.normalize(rng.normal(size=(200, 3)))
    assert np.allclose(R.qrot(R.qbetween(a, b), a), b, atol=1e-12)
    assert np.allclose(R.qrot(R.qbetween(a, -a), a), -a, atol=1e-12)


def test_qfix_removes_sign_flips(quats):
    flipped = quats.copy()
    flipped[1::2] *= -1
    fixed = R.qfix(np.repeat(quats[:1], 10, 0) * np.where(np.arange(10) % 2, -1, 1)[:, None])
    assert (np.sum(fixed[1:] * fixed[:-1], -1) > 0).all()
