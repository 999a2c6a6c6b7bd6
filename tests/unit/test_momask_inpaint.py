"""Temporal inpainting (against edit_t2m.py's outputs) and chaining, with the tiny MoMask model."""
from pathlib import Path

import numpy as np
import pytest
import torch

from motionrag_suite.common.errors import InputError
from motionrag_suite.models.momask import chain, inpaint_motion, load_momask

from . import momask_tiny as tiny

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "momask" / "reference_outputs.safetensors"


@pytest.fixture(scope="module")
def ref():
    from safetensors.torch import load_file

    return load_file(str(FIXTURE))


@pytest.fixture(scope="module")
def cond():
    g = torch.Generator().manual_seed(7)
    torch.randint(0, 34, (2, 12), generator=g)                     # the draws the fixture script made first
    return torch.randn(2, 512, generator=g) * 0.5


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.set_num_threads(1)
    return load_momask(tiny.write_folder(tmp_path_factory.mktemp("momask") / "t2m"))


@pytest.mark.parametrize("name,span,seed", [("middle", (8, 24), 10), ("after_prefix", (20, 40), 11),
                                            ("before_suffix", (0, 16), 12)])
def test_inpaint_matches_edit_t2m(ref, cond, model, name, span, seed):
    source = ref["full_features"][0, :40].numpy()
    out = inpaint_motion(model, cond[0], source, [span], seed=seed, steps=10, guidance=4.0)
    assert np.array_equal(out.tokens, ref[f"edit_t2m_{name}_ids"][0, :10].numpy())
    np.testing.assert_allclose(out.features, ref[f"edit_t2m_{name}_features"].numpy(), rtol=1e-4, atol=1e-4)
    kept = np.ones(10, dtype=bool)
    kept[span[0] // 4: span[1] // 4] = False
    source_tokens = model.rvq.encode(torch.from_numpy(np.concatenate(
        [model.normalise(source), np.zeros((156, 263))]).astype(np.float32))[None])[0, :10, 0].numpy()
    assert np.array_equal(out.tokens[kept, 0], source_tokens[kept])        # kept base tokens never re-masked


def test_prefix_and_suffix_keep_their_tokens(cond, model):
    rng = np.random.default_rng(0)
    prefix = model.denormalise(rng.standard_normal((20, 263)))
    suffix = model.denormalise(rng.standard_normal((12, 263)))
    out = model.generate(cond[0], length_frames=60, seed=3, steps=6, prefix=prefix, suffix=suffix)
    assert out.features.shape == (60, 263) and out.tokens.shape == (15, 4)
    padded = np.zeros((196, 263), dtype=np.float32)
    padded[:20] = model.normalise(prefix)
    padded[48:60] = model.normalise(suffix)
    source = model.rvq.encode(torch.from_numpy(padded)[None])[0, :15, 0].numpy()
    assert np.array_equal(out.tokens[:5, 0], source[:5]) and np.array_equal(out.tokens[12:, 0], source[12:])
    again = model.generate(cond[0], length_frames=60, seed=3, steps=6, prefix=prefix, suffix=suffix)
    assert np.array_equal(again.features, out.features)                       # seeded: reproducible


def test_chain_lengths_and_continuation(cond, model):
    segs = [(cond[0], 40), (cond[1], 36), (cond[0].numpy(), 24)]
    out = chain(model, segs, seed=5, overlap_frames=16, steps=4)
    assert out.features.shape == (100, 263) and out.joints.shape == (100, 22, 3) and out.tokens is None
    first = model.generate(cond[0], length_frames=40, seed=5, steps=4)
    np.testing.assert_array_equal(out.features[:40], first.features)
    # segment 1 was generated from segment 0's last 16 frames: its kept tokens are their encoding
    second = model.generate(cond[1], length_frames=52, seed=6, steps=4, residual_guidance=5.0,
                            prefix=first.features[-16:])
    np.testing.assert_array_equal(out.features[40:76], second.features[16:])
    assert np.isfinite(out.joints).all()


def test_chain_from_a_start_prefix(cond, model):
    rng = np.random.default_rng(1)
    prefix = model.denormalise(rng.standard_normal((4, 263)))
    out = chain(model, [(cond[0], 40), (cond[1], 24)], seed=2, overlap_frames=16, steps=3, prefix=prefix)
    assert out.features.shape == (4 + 40 + 24, 263)
    # segment 0 is the inpainting of 44 frames with the prefix kept; the next continues from its end
    first = model.generate(cond[0], length_frames=44, seed=2, steps=3, residual_guidance=5.0, prefix=prefix)
    np.testing.assert_array_equal(out.features[:44], first.features)
    plain = chain(model, [(cond[0], 40), (cond[1], 24)], seed=2, overlap_frames=16, steps=3)
    assert plain.features.shape == (64, 263) and np.abs(plain.features[:40] - out.features[4:44]).max() > 1e-3
    for bad in (model.denormalise(rng.standard_normal((6, 263))), np.zeros((4, 5))):
        with pytest.raises(InputError) as e:
            chain(model, [(cond[0], 40)], steps=2, prefix=bad)
        assert e.value.input == "prefix"
    with pytest.raises(InputError) as e:            # the prefix's frames count against segment 0's limit
        chain(model, [(cond[0], 196)], steps=2, prefix=prefix)
    assert e.value.input == "durations" and "start pose" in str(e.value)


def test_chain_with_short_first_segment(cond, model):
    out = chain(model, [(cond[0], 8), (cond[1], 40)], seed=0, overlap_frames=16, steps=3)
    assert out.features.shape == (48, 263)


@pytest.mark.parametrize("spans,needle", [
    ([(0, 44)], "0 <= start < end <= 40"),
    ([(-4, 8)], "0 <= start < end"),
    ([(12, 12)], "start < end"),
    ([(8.5, 20)], "whole frames"),
    ([], "no span"),
    ([(1, 2, 3)], "(start, end) pair"),
])
def test_edit_spans_outside_the_motion(ref, cond, model, spans, needle):
    with pytest.raises(InputError) as e:
        inpaint_motion(model, cond[0], ref["full_features"][0, :40].numpy(), spans, steps=2)
    assert e.value.input == "edit_spans" and needle in str(e.value)


def test_bad_source_and_kept_frames(cond, model):
    with pytest.raises(InputError, match="source_features"):
        inpaint_motion(model, cond[0], np.zeros((40, 251)), [(0, 8)])
    with pytest.raises(InputError, match="source_features"):
        inpaint_motion(model, cond[0], np.zeros((200, 263)), [(0, 8)])
    with pytest.raises(InputError) as e:
        model.generate(cond[0], length_frames=40, prefix=np.zeros((24, 263)), suffix=np.zeros((16, 263)))
    assert e.value.input == "length_frames" and "nothing to generate" in str(e.value)
    with pytest.raises(InputError, match="estimate"):
        model.generate(cond[0], length_frames=0, prefix=np.zeros((8, 263)))
    with pytest.raises(InputError, match="prefix"):
        model.generate(cond[0], length_frames=40, prefix=np.zeros((8, 200)))


@pytest.mark.parametrize("segments,overlap,field", [
    ([], 20, "segments"),
    ([("x", 40)], 20, "text_embedding"),
    ([(None, 40), (None, 10)], 20, "text_embedding"),
    ([(0, 0)], 20, "durations"),
    ([(0, 200)], 20, "durations"),
    ([(0, 40), (0, 180)], 20, "durations"),
    ([(0, 40), (0, 2)], 20, "durations"),
    ([(0, 40), (0, 40)], 18, "overlap_frames"),
    ([(0, 40), (0, 40)], 196, "overlap_frames"),
])
def test_chained_durations_out_of_range(cond, model, segments, overlap, field):
    segments = [(cond[0] if e == 0 else e, f) for e, f in segments]
    with pytest.raises(InputError) as e:
        chain(model, segments, overlap_frames=overlap, steps=2)
    assert e.value.input == field


def test_generate_input_checks(cond, model):
    for bad, field in ((dict(length_frames=200), "length_frames"), (dict(length_frames=3), "length_frames"),
                       (dict(length_frames=True), "length_frames"), (dict(steps=0), "steps"),
                       (dict(guidance=float("nan")), "guidance"), (dict(temperature=0.0), "temperature"),
                       (dict(topk_ratio=1.0), "topk_ratio")):
        with pytest.raises(InputError) as e:
            model.generate(cond[0], **{"length_frames": 40, **bad})
        assert e.value.input == field, bad
    with pytest.raises(InputError) as e:
        model.generate(torch.zeros(384), length_frames=40)
    assert e.value.input == "text_embedding"
