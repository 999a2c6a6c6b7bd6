"""Resampler and CAMA: released parameter names, block-causal context, reference order, paper sizes on meta."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from motionrag_suite.models.i2v import layouts
from motionrag_suite.models.i2v.cama import MotionContextTransformer, block_causal_mask, guidance_motion_tokens
from motionrag_suite.models.i2v.configs import (APPEARANCE_PROJECTOR, MOTION_PROJECTOR, PAPER_CAMA,
                                                PAPER_COGVIDEOX_ADAPTER, PAPER_SVD_ADAPTER, CamaConfig,
                                                ResamplerConfig)
from motionrag_suite.models.i2v.position import sinusoid_table
from motionrag_suite.models.i2v.resampler import Resampler

from .test_i2v_fixtures import MOTION_DIM, TINY_CAMA, TINY_MOTION_PROJ, one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def _shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _inputs(k=3, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    motion = torch.randn(batch, k, TINY_CAMA.tokens_per_clip, MOTION_DIM, generator=g)
    appearance = torch.randn(batch, k + 1, 7, TINY_CAMA.appearance.embedding_dim, generator=g)
    return motion, appearance


def test_resampler_names_shapes_and_output():
    torch.manual_seed(0)
    r = Resampler(TINY_MOTION_PROJ).eval()
    assert _shapes(r) == layouts.resampler_keys(TINY_MOTION_PROJ)
    x = torch.randn(3, 11, TINY_MOTION_PROJ.embedding_dim)
    out = r(x)
    assert out.shape == (3, TINY_MOTION_PROJ.num_queries, TINY_MOTION_PROJ.output_dim)
    # rows are independent, and the final LayerNorm normalises every token
    assert torch.allclose(r(x[1:2]), out[1:2], atol=1e-6)
    assert torch.allclose(out.mean(-1), torch.zeros(3, TINY_MOTION_PROJ.num_queries), atol=1e-5)
    with pytest.raises(ValueError, match="must be \\(batch, tokens, 24\\)"):
        r(torch.randn(1, 5, 7))


def test_cama_names_and_shapes_follow_motion_transformer_ckpt():
    cama = MotionContextTransformer(TINY_CAMA)
    assert _shapes(cama) == layouts.motion_transformer_layout(TINY_CAMA).all_keys()


def test_block_causal_mask():
    m = block_causal_mask(3, 2)
    expected = np.array([[0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1],
                         [0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=bool)
    assert m.dtype == torch.bool and np.array_equal(m.numpy(), expected)


@pytest.mark.parametrize("block", [1, 2, 3])
def test_changing_a_later_block_leaves_earlier_blocks_unchanged(block):
    torch.manual_seed(0)
    cama = MotionContextTransformer(TINY_CAMA).eval()
    motion, appearance = _inputs()
    with torch.no_grad():
        base = cama(motion, appearance)
        # block `block` carries clip block-1's motion and clip block's appearance: change each
        m2 = motion.clone()
        m2[:, block - 1] += 1.0
        a2 = appearance.clone()
        a2[:, block] += 1.0
        for changed in (cama(m2, appearance), cama(motion, a2)):
            diff = (changed - base).abs().amax(dim=(0, 2, 3))
            assert torch.all(diff[:block] == 0), diff
            assert diff[block] > 1e-3, diff


def test_predict_puts_the_most_similar_reference_next_to_the_query():
    torch.manual_seed(0)
    cama = MotionContextTransformer(TINY_CAMA).eval()
    motion, appearance = _inputs(k=3)
    refs_app, query_app = appearance[:, :3], appearance[:, 3]
    with torch.no_grad():
        got = cama.predict(motion, refs_app, query_app)                  # search order: best first
        manual = cama(motion.flip(1), torch.cat([refs_app.flip(1), query_app[:, None]], 1))[:, -1]
        as_given = cama.predict(motion, refs_app, query_app, most_similar_first=False)
    assert got.shape == (2, TINY_CAMA.tokens_per_clip, MOTION_DIM)
    assert torch.equal(got, manual)
    assert (got - as_given).abs().max() > 1e-4                           # the order matters


def test_cama_input_errors():
    cama = MotionContextTransformer(TINY_CAMA)
    motion, appearance = _inputs(k=TINY_CAMA.max_references + 1)
    with pytest.raises(ValueError, match="at most 3 reference clips"):
        cama(motion, appearance)
    motion, appearance = _inputs(k=2)
    with pytest.raises(ValueError, match="must hold 3 clips"):
        cama(motion, appearance[:, :2])
    with pytest.raises(ValueError, match="motion must be"):
        cama(motion[..., :3], appearance)


def test_sinusoid_table_is_the_interleaved_transformer_table():
    t = sinusoid_table(5, 6, max_length=8).numpy()
    for pos in range(5):
        for j in range(6):
            angle = pos / 10000 ** (2 * (j // 2) / 6)
            assert t[pos, j] == pytest.approx(math.sin(angle) if j % 2 == 0 else math.cos(angle), abs=1e-6)
    with pytest.raises(ValueError, match="longer than the position table"):
        sinusoid_table(9, 6, max_length=8)


def test_guidance_tokens_order_and_broadcast():
    cond, uncond = torch.ones(2, 4, 8), torch.zeros(1, 4, 8)
    both = guidance_motion_tokens(cond, uncond)
    assert both.shape == (4, 4, 8) and both[:2].eq(0).all() and both[2:].eq(1).all()
    with pytest.raises(ValueError):
        guidance_motion_tokens(cond, torch.zeros(1, 5, 8))


def test_configs_refuse_inconsistent_sizes():
    with pytest.raises(ValueError, match="must both equal d_model"):
        CamaConfig(d_model=512)
    with pytest.raises(ValueError, match="positive int"):
        ResamplerConfig(depth=0)
    assert PAPER_CAMA.max_references == 9 and PAPER_CAMA.tokens_per_clip == 25


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_paper_size_modules_on_meta_match_the_released_files():
    with torch.device("meta"):
        proj = Resampler(MOTION_PROJECTOR)
        appearance = Resampler(APPEARANCE_PROJECTOR)
        cama = MotionContextTransformer(PAPER_CAMA)
    assert all(p.is_meta for m in (proj, appearance, cama) for p in m.parameters())
    assert _count(proj) == 48_026_624                     # motion_proj.ckpt: 96.1 MB in bf16
    assert _count(appearance) == 48_288_768
    assert _count(cama) - cama.sos_token.numel() == 98_673_664   # motion_transformer.ckpt: 197 MB
    assert _shapes(proj) == layouts.motion_proj_layout().required
    assert _shapes(cama) == layouts.motion_transformer_layout().all_keys()
    assert proj.proj_in.weight.shape == (1024, 768) and cama.condition_proj.proj_in.weight.shape == (1024, 1024)


def test_paper_size_hosts_on_meta_give_the_released_adapter_layout():
    from diffusers import CogVideoXTransformer3DModel, UNetSpatioTemporalConditionModel

    from motionrag_suite.models.i2v.adapter import inject_cogvideox, inject_svd

    with torch.device("meta"):
        cog = CogVideoXTransformer3DModel(num_attention_heads=48, attention_head_dim=64, num_layers=42,
                                          in_channels=32)
        unet = UNetSpatioTemporalConditionModel()            # the defaults are SVD's
    for model, inject, cfg, base, count in (
            (cog, inject_cogvideox, PAPER_COGVIDEOX_ADAPTER, "CogVideoX", 660_602_880),
            (unet, inject_svd, PAPER_SVD_ADAPTER, "SVD", 37_949_440)):
        with inject(model) as inj:
            got = {layouts.HOST_PREFIX[base] + k: tuple(v.shape) for k, v in inj.adapter_state_dict().items()}
            assert all(v.is_meta for v in inj.adapter_state_dict().values())
        assert got == layouts.motion_adapter_layout(base).required
        assert layouts.parameter_count(got) == count
        if base == "CogVideoX":
            assert len(got) == 3 * 42
            frames17 = {"transformer." + k: tuple(p.shape) for k, p in model.named_parameters()
                        if ".attn1.to_" in k and ".to_out" not in k}
            assert frames17 == layouts.cogvideox_17_frames_layout().required
        else:
            assert len(got) == 3 * 16
