"""Masked token transformer: guidance over text and retrieval, independent condition dropout,
MoMask masking, confidence-based iterative decoding, residual transformer shapes."""
import math

import numpy as np
import pytest
import torch

from motionrag_suite.models.t2m.decoding import iterative_decode, mask_schedule, top_k_filter
from motionrag_suite.models.t2m.transformer import combine_guidance, condition_masks, mask_tokens

from .test_t2m_fixtures import clip_features, one_thread, tiny_model  # noqa: F401


@pytest.fixture(scope="module")
def model():
    m = tiny_model()
    # The fusion attention's output projection starts at zero (training starts from plain
    # MoMask); give it weights so retrieval visibly changes the logits.
    torch.manual_seed(1)
    for block in m.masked.blocks:
        torch.nn.init.normal_(block.cross_attn.out_proj.weight, std=0.2)
    return m


def _inputs(model, T=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.masked.num_codes + 1, (1, T), generator=g)
    text = torch.randn(1, 384, generator=g)
    lat = model.retrieval_latents([clip_features("kick"), clip_features("spin")])
    mem, pad, _ = model.masked.encode_retrieval([lat])
    return tokens, text, mem, pad


def test_guidance_with_both_scales_zero_is_the_unconditional_logits(model):
    tokens, text, mem, pad = _inputs(model)
    off = torch.tensor([False])
    with torch.no_grad():
        uncond = model.masked(tokens, text, off, mem, pad, off)
        guided = model.masked.guided_logits(tokens, text, mem, pad, True, 0.0, 0.0)
        text_only = model.masked(tokens, text, ~off, mem, pad, off)
        both = model.masked(tokens, text, ~off, mem, pad, ~off)
        full = model.masked.guided_logits(tokens, text, mem, pad, True, 1.0, 1.0)
        no_retr = model.masked.guided_logits(tokens, text, mem, pad, True, 1.0, 0.0)
        other_text = model.masked(tokens, torch.randn(1, 384), off, mem, pad, off)
    torch.testing.assert_close(guided, uncond, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(full, both, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(no_retr, text_only, rtol=1e-5, atol=1e-5)
    # The three passes really differ, so the checks above can tell them apart.
    assert (uncond - text_only).abs().max() > 1e-3
    assert (text_only - both).abs().max() > 1e-3
    # Unconditional logits ignore the sentence.
    torch.testing.assert_close(other_text, uncond)


def test_combine_guidance_formula():
    u, t, tr = torch.tensor([1.0]), torch.tensor([3.0]), torch.tensor([4.0])
    assert combine_guidance(u, t, tr, 2.0, 3.0).item() == 1 + 2 * 2 + 3 * 1
    assert combine_guidance(u, t, None, 2.0, 3.0).item() == 5.0


def test_text_and_retrieval_dropout_are_independent():
    n, p_text, p_retr = 200_000, 0.3, 0.2
    text_on, retr_on = condition_masks(n, p_text, p_retr, torch.Generator().manual_seed(0))
    t_off, r_off = (~text_on).double(), (~retr_on).double()
    assert t_off.mean().item() == pytest.approx(p_text, abs=0.005)
    assert r_off.mean().item() == pytest.approx(p_retr, abs=0.005)
    # Joint frequencies match the product of the marginals (all four combinations occur).
    for a, pa in ((t_off, p_text), (1 - t_off, 1 - p_text)):
        for b, pb in ((r_off, p_retr), (1 - r_off, 1 - p_retr)):
            assert (a * b).mean().item() == pytest.approx(pa * pb, abs=0.004)
    corr = np.corrcoef(t_off.numpy(), r_off.numpy())[0, 1]
    assert abs(corr) < 0.01


def test_mask_tokens_masks_a_cosine_share_and_labels_only_chosen():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 32, (512, 20), generator=g)
    inputs, labels = mask_tokens(tokens, 32, 32, g)
    chosen = labels >= 0
    assert (chosen.sum(1) >= 1).all()
    assert torch.equal(labels[chosen], tokens[chosen])
    assert torch.equal(inputs[~chosen], tokens[~chosen])
    # E[cos(pi/2 u)] = 2/pi of the tokens are chosen; most of them become [MASK].
    assert chosen.double().mean().item() == pytest.approx(2 / math.pi, abs=0.03)
    share_mask = (inputs[chosen] == 32).double().mean().item()
    assert share_mask == pytest.approx(0.9 * 0.88, abs=0.03)


def test_top_k_filter_keeps_the_top_share():
    logits = torch.arange(20.0)[None]
    kept = torch.isfinite(top_k_filter(logits, 0.9))
    assert kept.sum().item() == 2 and kept[0, -2:].all()


@pytest.mark.parametrize("steps", [1, 4, 10])
@pytest.mark.parametrize("length", [1, 7, 30])
def test_iterative_decoding_fills_every_token_on_the_cosine_schedule(model, steps, length):
    masked_counts = []

    def logits_fn(ids):
        masked_counts.append(int((ids == model.masked.mask_id).sum()))
        text = torch.randn(1, 384, generator=torch.Generator().manual_seed(3))
        return model.masked.guided_logits(ids, text, None, None, False, 2.0, 1.0)

    seen = []
    ids = iterative_decode(logits_fn, length, model.masked.mask_id, steps, torch.Generator().manual_seed(0),
                           on_step=seen.append)
    assert ids.shape == (1, length)
    assert (ids >= 0).all() and (ids < model.masked.num_codes).all()
    assert seen == list(range(steps))
    assert masked_counts == [length] + [mask_schedule(s, steps, length) for s in range(1, steps)]
    assert all(a >= b for a, b in zip(masked_counts, masked_counts[1:]))


def test_residual_transformer_predicts_the_asked_layer(model):
    B, T = 3, 6
    code_sum = torch.randn(1, T, model.config.tokenizer.code_dim).expand(B, -1, -1)
    layer = torch.tensor([1, 2, 1])
    text = torch.randn(1, 384).expand(B, -1)
    out = model.residual(code_sum, layer, text, torch.tensor([True, True, False]))
    assert out.shape == (B, T, model.config.tokenizer.num_codes)
    # Sample 0 and 2 differ only in the text switch; 0 and 1 only in the layer head and embedding.
    assert not torch.allclose(out[0], out[1])
    assert not torch.allclose(out[0], out[2])
