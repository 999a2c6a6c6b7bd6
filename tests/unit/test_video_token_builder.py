"""Video databases: decoding clips (OpenCV and Pillow), bad videos, stored motion / appearance tokens equal
to the encoders' output, placeholder skeletons, and text search over the captions (real MiniLM)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from motionrag_suite.models.i2v import features as fx
from motionrag_suite.models.i2v.resampler import Resampler
from motionrag_suite.retrieval import open_database
from motionrag_suite.retrieval import video_clips as vc
from motionrag_suite.retrieval import video_token_builder as vtb
from motionrag_suite.retrieval.errors import RetrievalError

from .i2v_tiny_assets import VIDEOS, tiny_encoders, write_animated, write_mp4, write_videos
from .test_i2v_fixtures import TINY_MOTION_PROJ, one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def _grey(n: int, w: int = 32, h: int = 24) -> list[np.ndarray]:
    """Frame i is uniformly grey level 5*i: the decoded level tells which source frame was picked."""
    return [np.full((h, w, 3), 5 * i, np.uint8) for i in range(n)]


@pytest.mark.parametrize("ext", ["mp4", "gif", "webp"])
def test_clip_samples_16_frames_at_8_fps_from_the_start(tmp_path, ext):
    path = tmp_path / f"v.{ext}"
    fps = 16.0 if ext == "mp4" else 20.0           # GIF and WebP store whole-millisecond (GIF: 10 ms) delays
    (write_mp4 if ext == "mp4" else write_animated)(path, _grey(50), fps)
    (clip,) = vc.decode_clips(path)
    assert clip.frames.shape == (16, 24, 32, 3) and clip.frames.dtype == np.uint8
    assert clip.start_frame == 0 and abs(clip.source_fps - fps) < 1e-3
    levels = clip.frames[:, 12, 16].astype(float).mean(axis=1) / 5.0
    picked = np.array([round(k * fps / 8.0) for k in range(16)])
    assert np.allclose(levels, picked, atol=0.8), levels      # mp4v is lossy, by a level or so


def test_several_clips_per_video_are_back_to_back(tmp_path):
    path = tmp_path / "long.mp4"
    write_mp4(path, _grey(50), 8.0)                  # 8 fps source: one frame per sample
    clips = vc.decode_clips(path, clips_per_video=5)
    assert [c.start_frame for c in clips] == [0, 16, 32]          # a 4th clip would need 64 frames
    assert np.allclose(clips[1].frames[:, 0, 0, 0] / 5.0, np.arange(16, 32), atol=0.8)


def test_big_frames_are_shrunk_on_decode(tmp_path):
    path = tmp_path / "big.gif"
    write_animated(path, [np.full((600, 800, 3), 9 * i, np.uint8) for i in range(24)], 10.0)
    (clip,) = vc.decode_clips(path)
    assert clip.frames.shape[1:3] == (256, 341)


def test_bad_videos_are_named_with_the_reason(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_text("this is not a video")
    with pytest.raises(vc.VideoDecodeError, match=r"junk\.mp4: cannot be opened or decoded"):
        vc.decode_clips(junk)
    short = tmp_path / "short.gif"
    write_animated(short, _grey(15), 10.0)
    with pytest.raises(vc.VideoDecodeError, match=r"short\.gif: 15 frames at 10 fps is shorter than one clip "
                                                 r"\(16 frames at 8 fps needs 20 source frames, 2\.00 s\)"):
        vc.decode_clips(short)
    import cv2

    empty = tmp_path / "empty.avi"                   # a valid container holding no frames
    w = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 8, (32, 24))
    w.release()
    with pytest.raises(vc.VideoDecodeError, match=r"empty\.avi: has no frames"):
        vc.decode_clips(empty)
    broken_gif = tmp_path / "broken.gif"
    broken_gif.write_bytes(b"GIF89a\x00")
    with pytest.raises(vc.VideoDecodeError, match=r"broken\.gif: cannot be decoded"):
        vc.decode_clips(broken_gif)


def _encoders():
    videomae, dino = tiny_encoders()
    torch.manual_seed(5)
    return vtb.VideoEncoders(videomae, dino, {"SVD": Resampler(TINY_MOTION_PROJ).eval(),
                                             "CogVideoX": Resampler(TINY_MOTION_PROJ).eval()},
                            "tiny-videomae", "tiny-dinov2")


def test_database_stores_the_encoders_tokens_and_is_searchable_by_caption(tmp_path):
    videos = write_videos(tmp_path / "videos")
    enc = _encoders()
    folder, skipped = vtb.build_from_videos(tmp_path / "models", "vids", tmp_path / "videos", enc)
    assert skipped == [] and folder.is_dir()
    db = open_database(tmp_path / "models", "vids")
    assert db.entry_count == len(VIDEOS)
    assert {"motion_tokens_svd", "motion_tokens_cogvideox", "appearance_tokens"} <= set(db.payload_kinds)
    for name, path in videos.items():
        (clip,) = vc.decode_clips(path)
        video = torch.from_numpy(clip.frames[None]).permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0
        for base in ("SVD", "CogVideoX"):
            want = fx.motion_tokens(enc.videomae, enc.projectors[base], video)[0].numpy()
            got = db.load_payload(name, vtb.motion_kind(base))
            assert got.dtype == np.float16 and got.shape == (4, 16)
            assert np.allclose(got.astype(np.float32), want, atol=2e-3 * (1 + np.abs(want).max()))
        want_app = fx.appearance_features(enc.dino, video[:, 0])[0].numpy()
        got_app = db.load_payload(name, vtb.APPEARANCE_KIND)
        assert got_app.shape == (257, 20)
        assert np.allclose(got_app.astype(np.float32), want_app, atol=2e-3 * (1 + np.abs(want_app).max()))
        # the two projectors differ, so do their tokens: the base is part of the kind for a reason
        assert not np.allclose(db.load_payload(name, "motion_tokens_svd"), db.load_payload(name, "motion_tokens_cogvideox"))
        motion = db.load_motion(name)
        assert motion.num_frames == 16 and motion.fps == 8.0
        assert motion.provenance["placeholder_joints"] is True and motion.provenance["video"] == path.name
        assert np.ptp(motion.joints, axis=0).max() == 0.0           # a still pose, not motion
        assert motion.joints[..., 1].min() == pytest.approx(0.0, abs=1e-6)
    hits = db.search("a bar moving to the right", top_k=1)
    assert hits[0].name == "bar_right"
    hits = db.search("brightness pulsing", top_k=1)
    assert hits[0].name == "pulse"


def test_a_bad_video_stops_the_build_or_is_skipped_and_reported(tmp_path):
    write_videos(tmp_path / "videos")
    (tmp_path / "videos" / "broken.mp4").write_text("not a video")
    enc = _encoders()
    with pytest.raises(vc.VideoDecodeError, match=r"broken\.mp4"):
        vtb.build_from_videos(tmp_path / "models", "vids", tmp_path / "videos", enc)
    assert not (tmp_path / "models" / "databases" / "vids").exists()        # nothing half-built is left
    _, skipped = vtb.build_from_videos(tmp_path / "models", "vids", tmp_path / "videos", enc, skip_bad=True)
    assert [p.endswith("broken.mp4") for p, _ in skipped] == [True]
    assert open_database(tmp_path / "models", "vids").entry_count == len(VIDEOS)


def test_more_videos_can_be_added_and_folders_without_videos_are_refused(tmp_path):
    write_videos(tmp_path / "a")
    enc = _encoders()
    vtb.build_from_videos(tmp_path / "models", "vids", tmp_path / "a", enc)
    (tmp_path / "b").mkdir()
    write_mp4(tmp_path / "b" / "fade.mp4", _grey(20), 8.0)
    added, _ = vtb.build_from_videos(tmp_path / "models", "vids", tmp_path / "b", enc, mode="add")
    assert added == 1
    db = open_database(tmp_path / "models", "vids")
    assert db.entry_count == len(VIDEOS) + 1 and db.captions("fade") == ["fade"]      # caption from the file name
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("hello")
    with pytest.raises(RetrievalError, match="holds no videos"):
        vtb.build_from_videos(tmp_path / "models", "other", tmp_path / "c", enc)
    with pytest.raises(RetrievalError, match="no motion projector"):
        vtb.build_from_videos(tmp_path / "models", "other", tmp_path / "a", vtb.VideoEncoders(enc.videomae, enc.dino, {}))
