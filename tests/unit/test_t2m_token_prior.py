"""The retrieval token prior of the demo model (decoding.token_prior, T2MModel.generate's token_prior):
strength 0 decodes exactly as before it existed, a strong prior copies the reference's codes, a
moderate one pulls the draws toward them, and bad weights are refused."""
import math

import numpy as np
import pytest
import torch

from motionrag_suite.common.errors import InputError
from motionrag_suite.models.t2m import model as t2m_model
from motionrag_suite.models.t2m.decoding import PRIOR_FLOOR, iterative_decode, token_prior

from .test_t2m_fixtures import clip_features, one_thread, tiny_model  # noqa: F401

EMB = np.random.default_rng(1).normal(size=384).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_prior_is_none_without_strength_or_references():
    codes = torch.zeros(2, 5, 3, dtype=torch.long)
    assert token_prior(codes, 16, 0.0) is None
    assert token_prior(codes[:0], 16, 2.0) is None


def test_prior_follows_its_definition():
    K = 16
    codes = torch.tensor([[[1, 2], [3, 4], [5, 6]],          # reference 0: 3 slots, 2 layers
                          [[1, 7], [8, 4], [9, 6]]])         # reference 1
    bias = token_prior(codes, K, 2.0)
    assert bias.shape == (2, 3, K)

    def expected(share):
        return 2.0 * math.log((1 - PRIOR_FLOOR) * share + PRIOR_FLOOR / K)

    assert bias[0, 0, 1].item() == pytest.approx(expected(1.0))      # both references agree
    assert bias[0, 1, 3].item() == pytest.approx(expected(0.5))      # one of two
    assert bias[0, 1, 0].item() == pytest.approx(expected(0.0))      # none
    assert bias[1, 1, 4].item() == pytest.approx(expected(1.0))      # layers are separate
    weighted = token_prior(codes, K, 2.0, torch.tensor([3.0, 1.0]))
    assert weighted[0, 1, 3].item() == pytest.approx(expected(0.75))
    assert weighted[0, 1, 8].item() == pytest.approx(expected(0.25))
    only_first = token_prior(codes, K, 2.0, torch.tensor([1.0, 0.0]))
    assert only_first[0, 1, 8].item() == pytest.approx(expected(0.0))


@pytest.mark.parametrize("weights", [[1.0], [1.0, -1.0], [0.0, 0.0], [1.0, float("nan")]])
def test_prior_refuses_bad_weights(weights):
    with pytest.raises(InputError, match="weights"):
        token_prior(torch.zeros(2, 3, 1, dtype=torch.long), 8, 1.0, torch.tensor(weights))


def test_prior_pulls_draws_toward_the_reference():
    K, N = 32, 40
    target = torch.randint(0, K, (N,), generator=torch.Generator().manual_seed(0))
    logits = torch.randn(1, N, K, generator=torch.Generator().manual_seed(1)) * 2

    def agreement(strength):
        prior = token_prior(target[None, :, None], K, strength)
        fn = (lambda ids: logits) if prior is None else (lambda ids: logits + prior[0])
        shares = []
        for seed in range(5):
            ids = iterative_decode(fn, N, K, 4, torch.Generator().manual_seed(seed))
            shares.append((ids[0] == target).float().mean().item())
        return float(np.mean(shares))

    none, some, strong = agreement(0.0), agreement(1.0), agreement(20.0)
    assert none < 0.3
    assert some > none + 0.2
    assert strong == 1.0


def test_strength_zero_decodes_as_without_the_prior(model, monkeypatch):
    refs = [clip_features("kick"), clip_features("walk")]
    on = model.generate(EMB, refs, length_frames=41, seed=3, steps=4, token_prior=0.0)
    also_off = model.generate(EMB, refs, length_frames=41, seed=3, steps=4, token_prior=1.0, guidance_retrieval=0.0)
    with_prior = model.generate(EMB, refs, length_frames=41, seed=3, steps=4, token_prior=1.0)
    # The code path from before the prior existed: no prior function at all.
    monkeypatch.setattr(t2m_model, "token_prior", lambda *a, **k: None)
    before = model.generate(EMB, refs, length_frames=41, seed=3, steps=4)
    plain_off = model.generate(EMB, refs, length_frames=41, seed=3, steps=4, guidance_retrieval=0.0)
    np.testing.assert_array_equal(on.features, before.features)
    np.testing.assert_array_equal(also_off.features, plain_off.features)
    assert not np.allclose(with_prior.features, before.features)
    assert on.provenance["token_prior"] == 0.0 and with_prior.provenance["token_prior"] == 1.0


def base_codes_of(net, monkeypatch, *args, **kwargs):
    """The base-layer codes generate() decoded (iterative_decode's result, recorded on its way out)."""
    seen = []

    def recording(*a, **k):
        seen.append(iterative_decode(*a, **k))
        return seen[-1]

    monkeypatch.setattr(t2m_model, "iterative_decode", recording)
    net.generate(*args, **kwargs)
    monkeypatch.undo()
    return seen[0][0]


def test_a_strong_prior_copies_the_top_references_base_codes(model, monkeypatch):
    rows = 36
    a, b = clip_features("kick"), clip_features("spin")
    with torch.no_grad():
        first = model.reference_codes([a], rows)[0, :, 0]
        second = model.reference_codes([b], rows)[0, :, 0]
    assert not torch.equal(first, second)
    for seed in range(3):
        got = base_codes_of(model, monkeypatch, EMB, [a, b], length_frames=rows + 1, seed=seed, steps=4,
                            token_prior=200.0)
        assert torch.equal(got, first)
    free = base_codes_of(model, monkeypatch, EMB, [a, b], length_frames=rows + 1, seed=0, steps=4, token_prior=0.0)
    assert not torch.equal(free, first)


def test_the_shipped_models_seeds_still_differ_under_the_default_prior():
    """The prior pulls toward the reference but does not freeze the shipped model's draws."""
    from pathlib import Path

    from motionrag_suite.models.t2m.checkpoint import load_model

    shipped = load_model(Path(t2m_model.__file__).parent / "weights" / "motionrag-t2m-small")
    refs = [clip_features("cartwheel"), clip_features("spin")]
    emb = np.random.default_rng(2).normal(size=384).astype(np.float32)
    runs = [shipped.generate(emb, refs, length_frames=41, seed=s).features for s in range(3)]
    again = shipped.generate(emb, refs, length_frames=41, seed=0).features
    np.testing.assert_array_equal(runs[0], again)
    assert not np.allclose(runs[0], runs[1]) and not np.allclose(runs[0], runs[2])


def test_bad_token_prior_is_refused(model):
    with pytest.raises(InputError, match="token_prior"):
        model.generate(EMB, [], length_frames=20, token_prior=float("inf"))

