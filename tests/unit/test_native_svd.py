"""The native-SVD route's library part: diffusers <-> ComfyUI layer keys, the attn2 patch, its checks."""
from __future__ import annotations

import copy

import pytest
import torch

from motionrag_suite.models.i2v import native_svd as ns
from motionrag_suite.models.i2v.adapter import inject_svd
from motionrag_suite.models.i2v.configs import PAPER_SVD_ADAPTER, SVDAdapterConfig
from motionrag_suite.models.i2v.errors import CheckpointError

from .test_i2v_fixtures import MOTION_DIM, TINY_SVD_ADAPTER, tiny_svd_unet

# What ComfyUI's model_detection reads from svd.safetensors (comfy/model_detection.py detect_unet_config)
PAPER_COMFY_UNET = {"model_channels": 320, "channel_mult": [1, 2, 4, 4], "num_res_blocks": [2, 2, 2, 2],
                    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
                    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
                    "transformer_depth_middle": 1}


def comfy_config_for(cfg: SVDAdapterConfig) -> dict:
    """The ComfyUI unet_config of the SVD UNet whose diffusers twin has these block widths."""
    ch = cfg.block_out_channels
    n, lpb = len(ch), cfg.layers_per_block
    return {"model_channels": ch[0], "channel_mult": [c // ch[0] for c in ch], "num_res_blocks": [lpb] * n,
            "transformer_depth": [1] * (lpb * (n - 1)) + [0] * lpb,
            "transformer_depth_output": [1] * ((lpb + 1) * (n - 1)) + [0] * (lpb + 1),
            "transformer_depth_middle": 1}


def test_paper_layout_has_16_layers_that_map_onto_comfyui_keys():
    # 2 in each of the first 3 down blocks, 3 in each of the last 3 up blocks, 1 in the mid block
    model = ns.unet_layers(PAPER_COMFY_UNET)
    assert len(model) == len(PAPER_SVD_ADAPTER.layers()) == 16
    names = PAPER_SVD_ADAPTER.layers()
    mapped = {ns.comfy_key(name, PAPER_SVD_ADAPTER.layers_per_block): width for name, width in names.items()}
    assert mapped == model
    assert sorted(k for k in model if k[0] == "input") == [("input", n, 0) for n in (1, 2, 4, 5, 7, 8)]
    assert sorted(k for k in model if k[0] == "output") == [("output", n, 0) for n in range(3, 12)]
    assert model[("middle", 0, 0)] == 1280 and model[("input", 1, 0)] == 320 and model[("output", 11, 0)] == 320
    for name in names:
        assert ns.diffusers_name(ns.comfy_key(name, 2), 2) == name


def test_tiny_layout_matches_the_tiny_diffusers_unet():
    unet = tiny_svd_unet()
    inj = inject_svd(unet, motion_dim=MOTION_DIM)
    adapter = ns.adapter_layers(inj.adapter_state_dict())
    inj.remove()
    assert set(adapter) == set(TINY_SVD_ADAPTER.layers())
    mapping = ns.match_adapter(adapter, TINY_SVD_ADAPTER.layers_per_block, ns.unet_layers(comfy_config_for(TINY_SVD_ADAPTER)))
    assert len(mapping) == len(TINY_SVD_ADAPTER.layers()) == 10


def test_bad_names_and_blocks_are_refused():
    with pytest.raises(ValueError, match="not a spatial cross-attention"):
        ns.comfy_key("down_blocks.0.attentions.0.transformer_blocks.0.attn1", 2)
    with pytest.raises(ValueError, match="does not exist"):
        ns.comfy_key("down_blocks.0.attentions.2.transformer_blocks.0.attn2", 2)
    with pytest.raises(ValueError, match="downsampler"):
        ns.diffusers_name(("input", 3, 0), 2)


def _state(cfg: SVDAdapterConfig, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for layer, h in cfg.layers().items():
        p = f"{layer}.processor."
        out[p + "to_q_ip.0.weight"] = torch.randn(h, h, generator=g) / h ** 0.5
        out[p + "to_k_ip.0.weight"] = torch.randn(h, cfg.motion_dim, generator=g)
        out[p + "to_v_ip.0.weight"] = torch.randn(h, cfg.motion_dim, generator=g)
    return out


def test_hidden_size_mismatch_names_both_sizes():
    other = SVDAdapterConfig(block_out_channels=(32, 64, 96, 96), layers_per_block=1, motion_dim=MOTION_DIM)
    state = _state(other)
    model = ns.unet_layers(comfy_config_for(TINY_SVD_ADAPTER))
    with pytest.raises(CheckpointError) as exc:
        ns.make_patches(state, 1, model, torch.zeros(1, 4, MOTION_DIM), torch.zeros(1, 4, MOTION_DIM), 1.0,
                        adapter_what="adapter X", model_what="model Y")
    msg = str(exc.value)
    assert "adapter X does not fit model Y" in msg
    assert "[32, 64, 96]" in msg and "[32, 64]" in msg, msg
    # the paper adapter on the tiny model: layer count and widths differ
    with pytest.raises(CheckpointError, match=r"\[320, 640, 1280\] over 16 layers.*\[32, 64\] over 10 layers"):
        ns.match_adapter({n: (w, 1024) for n, w in PAPER_SVD_ADAPTER.layers().items()}, 2, model)
    # right widths, wrong motion width
    with pytest.raises(CheckpointError, match="motion tokens are 8-d"):
        ns.make_patches(_state(TINY_SVD_ADAPTER), 1, model, torch.zeros(1, 4, 8), torch.zeros(1, 4, 8), 1.0)


def _patch(strength: float, hidden: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = [torch.randn(hidden, hidden, generator=g) / hidden ** 0.5, torch.randn(hidden, MOTION_DIM, generator=g),
         torch.randn(hidden, MOTION_DIM, generator=g)]
    cond, uncond = torch.randn(1, 4, MOTION_DIM, generator=g), torch.randn(1, 4, MOTION_DIM, generator=g)
    return ns.MotionAttn2Patch(*w, cond, uncond, strength, layer="test"), w, cond, uncond


def _qkv(rows: int = 6, length: int = 10, hidden: int = 32, ctx: int = 1, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, length, hidden, generator=g), torch.randn(rows, ctx, hidden, generator=g),
            torch.randn(rows, ctx, hidden, generator=g))


def test_strength_zero_is_plain_attention_and_strength_one_is_not():
    q, k, v = _qkv()
    opts = {"n_heads": 2, "cond_or_uncond": [1, 0]}
    plain = ns.sdpa_attention(q, k, v, 2)
    zero, _, _, _ = _patch(0.0)
    one, _, _, _ = _patch(1.0)
    assert torch.equal(zero(q, k, v, opts), plain)
    assert (one(q, k, v, opts) - plain).abs().max() > 1e-2


def test_branch_equals_the_diffusers_processor_branch():
    """The same weights and tokens give the same branch as the diffusers route (adapter.py)."""
    unet = tiny_svd_unet()
    inj = inject_svd(unet, motion_dim=MOTION_DIM)
    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn2"
    attn = dict(unet.named_modules())[name]
    proc = inj.processors[name]
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for lin in (proc.to_q_ip[0], proc.to_k_ip[0], proc.to_v_ip[0]):
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g))
    cond, uncond = torch.randn(1, 4, MOTION_DIM, generator=g), torch.randn(1, 4, MOTION_DIM, generator=g)
    h = torch.randn(6, 10, 32, generator=g)                          # 2 chunks x 3 frames
    inj.set_motion(torch.cat([uncond, cond]))                        # diffusers' [uncond, cond] order
    with torch.no_grad():
        want = proc.branch(attn, h)
    inj.remove()
    patch = ns.MotionAttn2Patch(proc.to_q_ip[0].weight.detach(), proc.to_k_ip[0].weight.detach(),
                                proc.to_v_ip[0].weight.detach(), cond, uncond, 1.0)
    got = patch.branch(h, attn.heads, [ns.UNCOND, ns.COND])
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_cond_and_uncond_chunks_get_their_own_tokens():
    patch, w, cond, uncond = _patch(1.0)
    h = torch.randn(6, 10, 32, generator=torch.Generator().manual_seed(5))
    mixed = patch.branch(h, 2, [ns.COND, ns.UNCOND])
    only_cond = ns.MotionAttn2Patch(*w, cond, cond, 1.0).branch(h, 2, [ns.COND, ns.COND])
    only_uncond = ns.MotionAttn2Patch(*w, uncond, uncond, 1.0).branch(h, 2, [ns.COND, ns.COND])
    assert torch.allclose(mixed[:3], only_cond[:3], atol=1e-6)
    assert torch.allclose(mixed[3:], only_uncond[3:], atol=1e-6)
    assert (mixed[3:] - only_cond[3:]).abs().max() > 1e-3
    swapped = patch.branch(h, 2, [ns.UNCOND, ns.COND])
    assert torch.allclose(swapped[:3], only_uncond[:3], atol=1e-6)
    # no cond_or_uncond (one chunk): everything is cond
    assert torch.allclose(patch.branch(h, 2, None), only_cond, atol=1e-6)
    with pytest.raises(ValueError, match="do not split"):
        patch.branch(h[:5], 2, [0, 1])


def test_casts_and_kv_are_made_once_per_device_dtype_and_deepcopy_shares_the_patch():
    patch, _, _, _ = _patch(1.0)
    q, k, v = _qkv()
    opts = {"n_heads": 2, "cond_or_uncond": [1, 0]}
    first = patch(q, k, v, opts)
    cached = patch._cache[("cpu", torch.float32, 2)]
    second = patch(q, k, v, opts)
    assert torch.equal(first, second) and patch._cache[("cpu", torch.float32, 2)] is cached
    out16 = patch(q.double(), k.double(), v.double(), opts)
    assert out16.dtype == torch.float64 and len(patch._cache) == 2
    assert copy.deepcopy({"p": patch})["p"] is patch


def test_an_existing_replace_patch_is_wrapped():
    calls = []

    def other(q, k, v, extra):
        calls.append(extra["n_heads"])
        return ns.sdpa_attention(q, k, v, extra["n_heads"]) * 2

    _, w, cond, uncond = _patch(0.0)
    patch = ns.MotionAttn2Patch(*w, cond, uncond, 0.0, base=other)
    q, k, v = _qkv()
    assert torch.equal(patch(q, k, v, {"n_heads": 2}), ns.sdpa_attention(q, k, v, 2) * 2) and calls == [2]


def test_calls_from_temporal_blocks_get_plain_attention():
    """Should a ComfyUI version hand its time-mix blocks the transformer options, their attn2 calls
    (pixels as rows, frames as tokens) reach the same key; the branch must stay out of them."""
    _, w, cond, uncond = _patch(1.0)
    state = {}
    for t, name in zip(w, ("to_q_ip", "to_k_ip", "to_v_ip")):
        state[f"down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.{name}.0.weight"] = t
    key = ("input", 3, 0)
    patch = ns.make_patches(state, 1, {key: 32}, cond, uncond, 1.0, levels=4)[key]
    assert patch.downsamples == 1
    # latent 4 frames x 2 chunks of 9x12 -> 5x6 tokens after one stride-2 downsampling
    spatial = _qkv(rows=8, length=30)
    opts = {"n_heads": 2, "cond_or_uncond": [1, 0], "original_shape": [8, 8, 9, 12]}
    assert not torch.equal(patch(*spatial, opts), ns.sdpa_attention(*spatial, 2))
    temporal = _qkv(rows=2 * 30, length=4)
    assert torch.equal(patch(*temporal, opts), ns.sdpa_attention(*temporal, 2))
    assert torch.equal(patch(*spatial, dict(opts, temporal=True)), ns.sdpa_attention(*spatial, 2))
    assert [ns._downsamples(k, 2, 4) for k in [("input", 1, 0), ("input", 8, 0), ("middle", 0, 0),
                                               ("output", 3, 0), ("output", 11, 0)]] == [0, 2, 3, 2, 0]
