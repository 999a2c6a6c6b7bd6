"""Shared tiny models for the test_i2v_* modules (random weights built from configs, CPU, milliseconds)."""
from __future__ import annotations

import pytest
import torch

from motionrag_suite.models.i2v.configs import CamaConfig, CogVideoXAdapterConfig, ResamplerConfig, SVDAdapterConfig

MOTION_DIM = 16
TINY_MOTION_PROJ = ResamplerConfig(dim=32, depth=2, dim_head=8, heads=2, num_queries=4, embedding_dim=24,
                                   output_dim=MOTION_DIM, ff_mult=2)
TINY_APPEARANCE_PROJ = ResamplerConfig(dim=32, depth=1, dim_head=8, heads=2, num_queries=4, embedding_dim=20,
                                       output_dim=MOTION_DIM, ff_mult=2)
TINY_CAMA = CamaConfig(d_model=MOTION_DIM, num_heads=2, num_layers=2, dim_feedforward=32, max_sequence=16,
                       appearance_pe_length=64, appearance=TINY_APPEARANCE_PROJ, motion=TINY_MOTION_PROJ)
# 2 heads x 16 (rotary needs a head dim that is a multiple of 16), 2 blocks
TINY_COG_ADAPTER = CogVideoXAdapterConfig(num_layers=2, hidden_size=32, motion_dim=MOTION_DIM)
TINY_SVD_ADAPTER = SVDAdapterConfig(block_out_channels=(32, 32, 64, 64), layers_per_block=1, motion_dim=MOTION_DIM)


def tiny_cogvideox(seed: int = 0):
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(seed)
    return CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=8, out_channels=4, time_embed_dim=8,
        text_embed_dim=16, num_layers=TINY_COG_ADAPTER.num_layers, sample_width=8, sample_height=8,
        sample_frames=9, patch_size=2, temporal_compression_ratio=4, max_text_seq_length=4,
        use_rotary_positional_embeddings=True, use_learned_positional_embeddings=False).eval()


def cogvideox_inputs(batch: int = 2, seed: int = 1):
    """9 frames (4k+1) -> 3 latent frames of 8x8, 4 text tokens, with the rotary table."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 3, 8, 8, 8, generator=g)
    text = torch.randn(batch, 4, 16, generator=g)
    rope = get_3d_rotary_pos_embed(embed_dim=16, crops_coords=((0, 0), (4, 4)), grid_size=(4, 4), temporal_size=3)
    return latents, text, torch.full((batch,), 500), rope


def run_cogvideox(model, inputs):
    latents, text, t, rope = inputs
    with torch.no_grad():
        return model(latents, text, t, image_rotary_emb=rope).sample


def tiny_svd_unet(seed: int = 0):
    from diffusers import UNetSpatioTemporalConditionModel

    torch.manual_seed(seed)
    c = TINY_SVD_ADAPTER
    return UNetSpatioTemporalConditionModel(
        sample_size=8, in_channels=8, out_channels=4, block_out_channels=c.block_out_channels,
        layers_per_block=c.layers_per_block, cross_attention_dim=12, num_attention_heads=(2, 2, 2, 2),
        addition_time_embed_dim=4, projection_class_embeddings_input_dim=12).eval()


def svd_inputs(batch: int = 2, frames: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, frames, 8, 8, 8, generator=g)
    image_embedding = torch.randn(batch, 1, 12, generator=g)
    added_time_ids = torch.tensor([[6.0, 127.0, 0.02]]).repeat(batch, 1)
    return latents, image_embedding, torch.full((batch,), 0.5), added_time_ids


def run_svd(model, inputs):
    latents, image_embedding, t, ids = inputs
    with torch.no_grad():
        return model(latents, t, image_embedding, ids).sample


def take(inputs, rows):
    """The same inputs restricted to some batch rows (tensors with a batch dimension only)."""
    out = []
    for x in inputs:
        if isinstance(x, torch.Tensor) and x.ndim >= 1 and x.shape[0] == inputs[0].shape[0]:
            out.append(x[rows])
        else:
            out.append(x)
    return tuple(out)


@pytest.fixture
def one_thread():
    """Tiny models are overhead-bound: on a shared 2-core machine several intra-op threads make them
    10-50x slower, so these tests run single-threaded and restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
