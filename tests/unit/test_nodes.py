"""Node functions called directly (no ComfyUI running): the thin layer between
ComfyUI's values and the library. The real-server tests are in tests/integration."""
import numpy as np
import pytest

from motionrag_suite.models.motion import Motion, MotionError
from motionrag_suite.models.motion.motiondiff_compat import MOTION_DATA_KEY, from_motion_data
from motionrag_suite.nodes.motion_nodes import LoadMotion, SaveMotion
from motionrag_suite.nodes.render_nodes import RenderSkeleton


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    # Without ComfyUI the nodes read and write relative to the working directory.
    monkeypatch.chdir(tmp_path)


def test_load_builtin_clip_gives_motion_data_motiondiff_can_read():
    data, caption, frames = LoadMotion().load("walk")
    assert isinstance(data[MOTION_DATA_KEY], Motion) and caption and frames == data["joints"].shape[0]
    # ComfyUI-MotionDiff's visualiser and SMPLify read data["joints"] as (T, 22, 3).
    assert data["joints"].shape == (frames, 22, 3)


def test_motiondiff_style_inputs_are_accepted():
    data, _, _ = LoadMotion().load("walk")
    joints_only = {"joints": data["joints"].copy()}
    assert np.allclose(from_motion_data(joints_only).joints, data["joints"])
    with pytest.raises(MotionError, match="only zeros"):
        from_motion_data({"motion": np.zeros((1, 30, 263), np.float32)})
    with pytest.raises(MotionError, match="neither"):
        from_motion_data({"something": 1})


def test_save_then_load_each_format(tmp_path):
    data, _, frames = LoadMotion().load("cartwheel")
    for fmt in ("npz", "bvh", "bvh_mixamo", "humanml3d_vecs_npy", "humanml3d_joints_npy"):
        out = SaveMotion().save(data, "MotionRAG/test", fmt)
        path = out["result"][0]
        again, _, n = LoadMotion().load("cartwheel", path=path)
        # HumanML3D vecs hold one row fewer than frames; the loader rebuilds the last frame.
        assert n == frames, fmt
        assert np.abs(again[MOTION_DATA_KEY].joints[:5, 0, 1] - data["joints"][:5, 0, 1]).max() < 0.01, fmt


def test_save_never_overwrites(tmp_path):
    data, _, _ = LoadMotion().load("walk")
    first = SaveMotion().save(data, "keep", "npz")["result"][0]
    before = open(first, "rb").read()
    second = SaveMotion().save(data, "keep", "npz")["result"][0]
    assert first != second and open(first, "rb").read() == before


def test_load_validates_path_before_running(tmp_path):
    assert "no file" in LoadMotion.VALIDATE_INPUTS(path="missing.npz")
    assert "not a motion file" in LoadMotion.VALIDATE_INPUTS(path="notes.txt")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    assert LoadMotion.VALIDATE_INPUTS(path=str(tmp_path / "broken.npz")) is True
    with pytest.raises(MotionError, match="broken.npz"):
        LoadMotion().load("walk", path=str(tmp_path / "broken.npz"))


@pytest.mark.parametrize("mode", ["3d", "openpose"])
def test_render_outputs_image_batch(mode):
    data, _, frames = LoadMotion().load("walk")
    images, keypoints, fps = RenderSkeleton().render(data, mode, 128, 96, 30.0, 15.0, 4.0, "follow", 0.0, True, True)
    assert tuple(images.shape) == (frames, 96, 128, 3) and fps == 20.0
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert len(keypoints) == frames and keypoints[0]["canvas_width"] == 128
    assert float((images[0] - images[-1]).abs().max()) > 0.1, "motion does not change the picture"


def test_render_resamples_to_requested_fps():
    data, _, frames = LoadMotion().load("walk")
    images, _, fps = RenderSkeleton().render(data, "3d", 64, 64, 0.0, 0.0, 4.0, "fixed", 40.0, False, False)
    assert fps == 40.0 and abs(images.shape[0] - (2 * frames - 1)) <= 1


def test_render_refuses_nan_motion():
    bad = {"joints": np.full((10, 22, 3), np.nan, np.float32)}
    with pytest.raises(MotionError, match="NaN"):
        RenderSkeleton().render(bad, "3d", 64, 64, 0.0, 0.0, 4.0, "fixed", 0.0, True, True)
