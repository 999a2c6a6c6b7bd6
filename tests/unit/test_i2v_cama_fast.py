"""CAMA's query-only last layer (what predict() uses) against the full block-causal forward."""
from __future__ import annotations

import pytest
import torch

from motionrag_suite.models.i2v.cama import MotionContextTransformer
from motionrag_suite.models.i2v.configs import CamaConfig, ResamplerConfig

from .test_i2v_fixtures import one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")

PROJ = ResamplerConfig(dim=32, depth=1, dim_head=8, heads=2, num_queries=5, embedding_dim=20, output_dim=64, ff_mult=2)
CFG = CamaConfig(d_model=64, num_heads=4, num_layers=3, dim_feedforward=128, max_sequence=60, appearance_pe_length=64,
                 appearance=PROJ, motion=ResamplerConfig(num_queries=5, output_dim=64, embedding_dim=24))


@pytest.mark.parametrize("refs,batch", [(9, 1), (3, 2), (1, 1)])
def test_last_block_only_equals_the_full_forward(refs, batch):
    torch.manual_seed(refs)
    cama = MotionContextTransformer(CFG).eval()
    motion = torch.randn(batch, refs, 5, 64)
    appearance = torch.randn(batch, refs + 1, 7, 20)
    with torch.no_grad():
        full = cama(motion, appearance)
        fast = cama(motion, appearance, last_block_only=True)
        predicted = cama.predict(motion.flip(1), appearance[:, :-1].flip(1), appearance[:, -1], last_block_only=True)
    assert fast.shape == (batch, 1, 5, 64)
    torch.testing.assert_close(fast[:, 0], full[:, -1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(predicted, full[:, -1], rtol=1e-5, atol=1e-5)
    # the shortcut must not ignore the context: another reference changes the query's tokens
    other = motion.clone()
    other[:, 0] += 1.0
    with torch.no_grad():
        moved = cama(other, appearance, last_block_only=True)
    assert (moved - fast).abs().max() > 1e-3
