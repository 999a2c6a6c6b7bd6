"""Retrieved motions as a prior on MoMask's base-layer decoding (generate.token_prior), with the
tiny MoMask model: strength 0 is plain MoMask draw for draw, higher strengths move the generated
tokens toward the references' time-aligned tokens, and bad references are refused by name."""
import numpy as np
import pytest
import torch

from motionrag_suite.common.errors import InputError
from motionrag_suite.models.momask import load_momask
from motionrag_suite.models.momask.generate import PRIOR_UNIFORM, align_tokens, token_prior

from . import momask_tiny as tiny


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.set_num_threads(1)
    return load_momask(tiny.write_folder(tmp_path_factory.mktemp("momask") / "t2m"))


@pytest.fixture(scope="module")
def cond():
    return torch.randn(512, generator=torch.Generator().manual_seed(3)) * 0.5


@pytest.fixture(scope="module")
def references(model, cond):
    """Two motions the model itself made for another text, as a database would hand them over."""
    other = torch.randn(512, generator=torch.Generator().manual_seed(4)) * 0.5
    return [model.generate(other, length_frames=frames, seed=s, steps=4).features
            for frames, s in ((48, 21), (32, 22))]


def test_align_tokens_stretches_and_squeezes_in_time():
    ref = torch.tensor([5, 6, 7, 8])
    assert align_tokens(ref, 8).tolist() == [5, 5, 6, 6, 7, 7, 8, 8]
    assert align_tokens(ref, 2).tolist() == [6, 8]
    assert align_tokens(ref, 4).tolist() == ref.tolist()


def test_token_prior_is_a_scaled_log_share():
    refs = [torch.tensor([1, 2]), torch.tensor([1, 3])]
    bias = token_prior(refs, 2, 4, 2.0)
    assert bias.shape == (2, 4)
    e = PRIOR_UNIFORM
    expected = [[e / 4, (1 - e) + e / 4, e / 4, e / 4],
                [e / 4, e / 4, (1 - e) / 2 + e / 4, (1 - e) / 2 + e / 4]]
    torch.testing.assert_close(bias, 2.0 * torch.log(torch.tensor(expected)))
    assert token_prior(refs, 2, 4, 0.0) is None and token_prior([], 2, 4, 1.0) is None


def test_strength_zero_is_plain_momask_exactly(model, cond, references):
    plain = model.generate(cond, length_frames=40, seed=5, steps=6)
    off = model.generate(cond, length_frames=40, seed=5, steps=6, reference_features=references,
                         retrieval_strength=0.0)
    np.testing.assert_array_equal(off.tokens, plain.tokens)
    np.testing.assert_array_equal(off.features, plain.features)


def _agreement(model, references, tokens) -> float:
    """Share of base-layer slots equal to a reference's time-aligned token."""
    n = len(tokens)
    aligned = [align_tokens(t, n).cpu().numpy() for t in model.reference_tokens(references)]
    return float(np.mean([any(tokens[i, 0] == a[i] for a in aligned) for i in range(n)]))


def test_higher_strength_moves_tokens_toward_the_references(model, cond, references):
    def mean_agreement(strength):
        return np.mean([_agreement(model, references, model.generate(
            cond, length_frames=40, seed=seed, steps=6, reference_features=references,
            retrieval_strength=strength).tokens) for seed in range(6)])

    plain, mild, strong = mean_agreement(0.0), mean_agreement(1.0), mean_agreement(8.0)
    assert plain < mild < strong, (plain, mild, strong)
    assert strong > 0.9, strong            # a strong prior copies the references' tokens
    assert plain < 0.5, plain              # 32 codes: the text alone rarely lands on them


def test_prior_applies_to_the_generated_frames_when_editing(model, cond, references):
    prefix = references[0][:16]
    out = model.generate(cond, length_frames=40, seed=2, steps=6, prefix=prefix, reference_features=references,
                         retrieval_strength=8.0)
    assert out.features.shape == (40, 263)
    # the generated slots (after the 4 kept tokens) follow the references
    aligned = [align_tokens(t, 10).cpu().numpy() for t in model.reference_tokens(references)]
    new = range(4, 10)
    assert np.mean([any(out.tokens[i, 0] == a[i] for a in aligned) for i in new]) > 0.8


@pytest.mark.parametrize("kwargs,needle", [
    (dict(reference_features=None, retrieval_strength=1.0), "reference_features"),
    (dict(reference_features=[np.zeros((3, 263))], retrieval_strength=1.0), "reference_features"),
    (dict(reference_features=[np.zeros((20, 251))], retrieval_strength=1.0), "reference_features"),
    (dict(reference_features=[np.full((20, 263), np.nan)], retrieval_strength=1.0), "reference_features"),
    (dict(reference_features=[np.zeros((20, 263))], retrieval_strength=-1.0), "retrieval_strength"),
    (dict(reference_features=[np.zeros((20, 263))], retrieval_strength=float("inf")), "retrieval_strength"),
])
def test_bad_references_are_refused_by_name(model, cond, kwargs, needle):
    with pytest.raises(InputError) as e:
        model.generate(cond, length_frames=24, seed=0, steps=2, **kwargs)
    assert e.value.input == needle
