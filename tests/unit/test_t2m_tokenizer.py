"""RVQ-VAE motion tokenizer: shapes, normalisation statistics, EMA codebooks with dead-code reset,
quantiser dropout, and that a few optimisation steps on real library clips lower the loss."""
import numpy as np
import pytest
import torch

from motionrag_suite.models.motion import humanml3d as h3d
from motionrag_suite.models.motion import library
from motionrag_suite.models.t2m.config import TINY
from motionrag_suite.models.t2m.normalization import GROUPS, MIN_STD, feature_stats
from motionrag_suite.models.t2m.quantizer import EMAQuantizer, ResidualVQ
from motionrag_suite.models.t2m.tokenizer import MotionTokenizer

from .test_t2m_fixtures import one_thread  # noqa: F401

CLIPS = ("spin", "run", "kick", "punch", "jump", "dance_a", "M_walk", "crawl")   # spin: 89 frames, run: 16


@pytest.fixture(scope="module")
def feats():
    return [h3d.joints_to_features(library.load_clip(n).joints) for n in CLIPS]


def _tokenizer(feats, **changes):
    torch.manual_seed(0)
    cfg = TINY.tokenizer if not changes else type(TINY.tokenizer)(**{**TINY.tokenizer.__dict__, **changes})
    tok = MotionTokenizer(cfg)
    tok.set_stats(*feature_stats(feats))
    return tok


def test_feature_stats_average_std_per_group(feats):
    mean, std = feature_stats(feats)
    data = np.concatenate(feats).astype(np.float64)
    assert mean.shape == std.shape == (263,)
    np.testing.assert_allclose(mean, data.mean(0), rtol=1e-5, atol=1e-6)
    for group in GROUPS:
        expected = max(data[:, group].std(0).mean(), MIN_STD)
        np.testing.assert_allclose(std[group], expected, rtol=1e-5)
    # The groups tile all 263 features.
    covered = np.zeros(263, bool)
    for group in GROUPS:
        covered[group] = True
    assert covered.all()


@pytest.mark.parametrize("rows", [4, 17, 36, 61])
def test_encode_decode_shapes(feats, rows):
    tok = _tokenizer(feats).eval()
    x = tok.normalize(torch.from_numpy(feats[0][:rows])[None])
    idx = tok.encode(x)
    tokens = -(-rows // 4)
    assert idx.shape == (1, tokens, TINY.tokenizer.num_quantizers)
    assert idx.min() >= 0 and idx.max() < TINY.tokenizer.num_codes
    assert tok.decode(idx).shape == (1, tokens * 4, 263)
    assert tok.decode(idx[..., :1]).shape == (1, tokens * 4, 263)
    assert tok.latents(x).shape == (1, tokens, TINY.tokenizer.code_dim)


def test_forward_reconstructs_a_batch_and_drops_tail_layers(feats):
    tok = _tokenizer(feats, quantize_dropout=0.9).train()
    x = tok.normalize(torch.from_numpy(np.stack([f[:12] for f in feats])))
    active = set()
    for _ in range(20):
        out = tok(x)
        assert out["recon"].shape == x.shape
        assert torch.isfinite(out["loss"])
        used = (out["indices"][0, 0] >= 0).sum().item()
        active.add(used)
        # Layers are dropped from the tail only.
        assert (out["indices"][..., :used] >= 0).all() and (out["indices"][..., used:] == -1).all()
    assert len(active) > 1


def test_ema_codebook_initialises_from_data_and_resets_dead_codes():
    torch.manual_seed(0)
    q = EMAQuantizer(num_codes=16, dim=4, decay=0.5).train()
    data = torch.randn(64, 4)
    q(data)
    assert bool(q.initialized)
    # Codes start from batch vectors (then move by one EMA step towards their assigned means),
    # so they are distinct and inside the data's range, not zero.
    assert len(torch.unique(q.codebook, dim=0)) == 16
    assert (q.codebook.abs().sum(-1) > 0).all()
    assert (q.codebook >= data.min(0).values - 1e-6).all() and (q.codebook <= data.max(0).values + 1e-6).all()
    # A batch that sits near one point leaves most codes unused; those are re-seeded from it.
    cluster = torch.randn(1, 4) * 0.01 + 10.0 + torch.randn(64, 4) * 0.01
    for _ in range(3):
        q(cluster)
    dead = q.code_count < 1.0
    assert dead.any()
    dist = torch.cdist(q.codebook[dead], cluster).min(-1).values
    assert (dist < 0.1).all()


def test_residual_layers_reduce_error(feats):
    torch.manual_seed(0)
    rvq = ResidualVQ(3, 32, 8, quantize_dropout=0.0).train()
    x = torch.randn(2, 50, 8)
    for _ in range(5):
        rvq(x)
    rvq.eval()
    idx = rvq.encode(x)
    errors = [(rvq.decode(idx[..., :n]) - x).pow(2).mean().item() for n in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]


def test_a_few_steps_lower_the_loss_on_library_clips(feats):
    tok = _tokenizer(feats, quantize_dropout=0.0).train()
    x = tok.normalize(torch.from_numpy(np.stack([f[:12] for f in feats])))
    opt = torch.optim.Adam(tok.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        out = tok(x)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["rec"].item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3]), losses
