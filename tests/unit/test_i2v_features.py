"""Encoder inputs (VideoMAE / DINOv2 preprocessing) and clips -> CAMA prediction with tiny encoders."""
from __future__ import annotations

import pytest
import torch

from motionrag_suite.models.i2v import features as fx
from motionrag_suite.models.i2v.cama import MotionContextTransformer
from motionrag_suite.models.i2v.resampler import Resampler

from .test_i2v_fixtures import TINY_CAMA, TINY_MOTION_PROJ, one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def test_frame_sampling_spreads_over_the_clip_ends_included():
    video = torch.arange(17, dtype=torch.float32).view(1, 17, 1, 1, 1)
    picked = fx.sample_frames(video, 16).flatten().tolist()
    assert len(picked) == 16 and picked[0] == 0 and picked[-1] == 16
    assert all(b > a for a, b in zip(picked, picked[1:]))


def test_dino_pixels_resize_crop_and_normalise():
    # 480x720, left third black, middle white, right third black: the 224 crop of the 256x384 resize
    # keeps the middle (white) and a little of each black side.
    img = -torch.ones(1, 3, 480, 720)
    img[..., 240:480] = 1.0
    x = fx.dino_pixels(img)
    assert x.shape == (1, 3, 224, 224)
    white = (1.0 - torch.tensor(fx.IMAGENET_MEAN)) / torch.tensor(fx.IMAGENET_STD)
    black = (0.0 - torch.tensor(fx.IMAGENET_MEAN)) / torch.tensor(fx.IMAGENET_STD)
    assert torch.allclose(x[0, :, 112, 112], white, atol=1e-3)
    assert torch.allclose(x[0, :, 112, 0], black, atol=1e-3)          # 256x384 -> crop starts at column 80
    assert fx.resize_short_side(img, 256, "bicubic").shape[-2:] == (256, 384)


def test_videomae_pixels_shape_and_range_mapping():
    clip = torch.zeros(2, 17, 3, 240, 320)                              # mid-grey
    x = fx.videomae_pixels(clip)
    assert x.shape == (2, 16, 3, 224, 224)
    expected = (0.5 - torch.tensor(fx.IMAGENET_MEAN)) / torch.tensor(fx.IMAGENET_STD)
    assert torch.allclose(x[0, 3, :, 100, 100], expected, atol=1e-5)
    with pytest.raises(ValueError, match="video must be"):
        fx.videomae_pixels(torch.zeros(2, 3, 32, 32))


def _tiny_encoders():
    from transformers import Dinov2Config, Dinov2Model, VideoMAEConfig, VideoMAEModel

    torch.manual_seed(0)
    videomae = VideoMAEModel(VideoMAEConfig(image_size=32, patch_size=16, num_frames=4, tubelet_size=2,
                                            hidden_size=TINY_MOTION_PROJ.embedding_dim, num_hidden_layers=1,
                                            num_attention_heads=2, intermediate_size=32)).eval()
    dino = Dinov2Model(Dinov2Config(image_size=28, patch_size=14, hidden_size=TINY_CAMA.appearance.embedding_dim,
                                    num_hidden_layers=1, num_attention_heads=2)).eval()
    return videomae, dino


def test_predict_query_motion_composes_encoders_projector_and_cama():
    videomae, dino = _tiny_encoders()
    projector = Resampler(TINY_MOTION_PROJ).eval()
    cama = MotionContextTransformer(TINY_CAMA).eval()
    g = torch.Generator().manual_seed(1)
    refs = torch.rand(1, 2, 5, 3, 36, 48, generator=g) * 2 - 1
    query = torch.rand(1, 3, 36, 48, generator=g) * 2 - 1
    got = fx.predict_query_motion(cama, videomae, projector, dino, refs, query, dino_resize=32, dino_crop=28)
    assert got.shape == (1, TINY_CAMA.tokens_per_clip, TINY_CAMA.d_model)
    with torch.no_grad():
        motion = torch.stack([fx.motion_tokens(videomae, projector, refs[:, i]) for i in range(2)], 1)
        ref_app = torch.stack([fx.appearance_features(dino, refs[:, i, 0], resize=32, crop=28) for i in range(2)], 1)
        query_app = fx.appearance_features(dino, query, resize=32, crop=28)
        manual = cama(motion.flip(1), torch.cat([ref_app.flip(1), query_app[:, None]], 1))[:, -1]
    assert torch.allclose(got, manual, atol=1e-5)
    uncond = fx.unconditional_motion_tokens(videomae, projector, frames=4, height=32, width=32)
    assert uncond.shape == (1, TINY_CAMA.tokens_per_clip, TINY_CAMA.d_model) and torch.isfinite(uncond).all()
    assert (uncond - got).abs().max() > 1e-3


def test_light_modules_import_without_torch():
    import json
    import subprocess
    import sys
    from pathlib import Path

    pack_root = str(Path(__file__).resolve().parents[2])
    code = ("import sys, json; sys.path.insert(0, %r); from common.standalone import load_pack; load_pack()\n"
            "import motionrag_suite.models.i2v, motionrag_suite.models.i2v.configs, "
            "motionrag_suite.models.i2v.layouts, motionrag_suite.models.i2v.checkpoints, "
            "motionrag_suite.models.i2v.errors\n"
            "print(json.dumps(sorted(m for m in ('torch', 'diffusers', 'transformers', 'safetensors') "
            "if m in sys.modules)))") % pack_root
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
