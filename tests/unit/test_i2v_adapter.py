"""The motion adapter injected into tiny diffusers CogVideoX and SVD models built from configs."""
from __future__ import annotations

import pytest
import torch

from motionrag_suite.models.i2v.adapter import MotionInjection, inject_cogvideox, inject_svd
from motionrag_suite.models.i2v.cama import guidance_motion_tokens
from motionrag_suite.models.i2v.errors import CheckpointKeyError
from motionrag_suite.models.i2v.layouts import adapter_keys

from .test_i2v_fixtures import (MOTION_DIM, TINY_COG_ADAPTER, TINY_SVD_ADAPTER, cogvideox_inputs,  # noqa: F401
                                one_thread, run_cogvideox, run_svd, svd_inputs, take, tiny_cogvideox, tiny_svd_unet)

pytestmark = pytest.mark.usefixtures("one_thread")

HOSTS = {
    "cogvideox": (tiny_cogvideox, cogvideox_inputs, run_cogvideox, inject_cogvideox, TINY_COG_ADAPTER),
    "svd": (tiny_svd_unet, svd_inputs, run_svd, inject_svd, TINY_SVD_ADAPTER),
}


def _motion(batch, seed=3):
    return torch.randn(batch, 4, MOTION_DIM, generator=torch.Generator().manual_seed(seed))


def _stock_types(model):
    return {name: type(p) for name, p in model.attn_processors.items()}


@pytest.fixture(params=sorted(HOSTS))
def host(request):
    return HOSTS[request.param]


def test_strength_zero_equals_plain_model_and_positive_strength_changes_it(host):
    build, inputs_fn, run, inject, _ = host
    model, inputs = build(), inputs_fn()
    plain = run(model, inputs)
    with inject(model, motion_dim=MOTION_DIM, strength=0.0) as inj:
        inj.set_motion(_motion(2))
        off = run(model, inputs)
        inj.strength = 0.8
        on = run(model, inputs)
        inj.set_motion(_motion(2, seed=4))
        other = run(model, inputs)
    assert (off - plain).abs().max().item() <= 1e-6
    assert (on - plain).abs().max().item() > 1e-3
    assert (other - on).abs().max().item() > 1e-4          # the output depends on the motion tokens


def test_remove_restores_stock_processors_and_state_dict(host):
    build, inputs_fn, run, inject, _ = host
    model, inputs = build(), inputs_fn()
    stock, keys, plain = _stock_types(model), set(model.state_dict()), run(model, inputs)
    inj = inject(model, motion_dim=MOTION_DIM)
    assert set(model.state_dict()) - keys == set(inj.adapter_state_dict())
    inj.remove()
    assert _stock_types(model) == stock and set(model.state_dict()) == keys
    assert torch.equal(run(model, inputs), plain)
    inject(model, motion_dim=MOTION_DIM).remove()          # a second injection after removal is fine


def test_injected_layers_and_names_match_the_released_layout(host):
    build, _, _, inject, cfg = host
    model = build()
    with inject(model, motion_dim=MOTION_DIM) as inj:
        assert inj.layer_sizes() == cfg.layers()
        got = {k: tuple(v.shape) for k, v in inj.adapter_state_dict().items()}
        assert got == adapter_keys(cfg)
        # and they are the model's own state-dict names, so checkpoints map one to one
        assert set(got) <= set(model.state_dict())


def test_guidance_batch_pairs_each_row_with_its_motion(host):
    # CFG runs [uncond, cond] in one batch; each half must equal a single run with its own tokens
    # (for SVD this also checks that a video's frames get that video's tokens).
    # float64, so that batched and single runs agree to far below the branch's effect
    build, inputs_fn, run, inject, _ = host
    model = build().double()
    inputs = tuple(x.double() if isinstance(x, torch.Tensor) and x.is_floating_point() else x
                   for x in inputs_fn(batch=2))
    cond, uncond = _motion(1, seed=5), _motion(1, seed=6)
    with inject(model, motion_dim=MOTION_DIM) as inj:
        inj.set_motion(guidance_motion_tokens(cond, uncond))
        both = run(model, inputs)
        inj.set_motion(uncond)
        first = run(model, take(inputs, slice(0, 1)))
        inj.set_motion(cond)
        second = run(model, take(inputs, slice(1, 2)))
    assert torch.allclose(both[:1], first, atol=1e-9) and torch.allclose(both[1:], second, atol=1e-9)
    guided = both[:1] + 3.0 * (both[1:] - both[:1])
    assert torch.isfinite(guided).all() and (guided - both[1:]).abs().max() > 1e-4


def test_one_motion_row_is_broadcast_to_the_batch(host):
    build, inputs_fn, run, inject, _ = host
    model, inputs = build(), inputs_fn(batch=2)
    m = _motion(1)
    with inject(model, motion_dim=MOTION_DIM) as inj:
        inj.set_motion(m)
        one = run(model, inputs)
        inj.set_motion(m.expand(2, -1, -1))
        two = run(model, inputs)
    # One motion row folds the whole batch into one longer query, so float32 sums run in a
    # different order (differences ~6e-6 on values ~0.4); a wrong row pairing differs by far more.
    assert torch.allclose(one, two, atol=2e-5)


def test_misuse_gives_clear_errors(host):
    build, inputs_fn, run, inject, _ = host
    model = build()
    inj = inject(model, motion_dim=MOTION_DIM)
    with pytest.raises(RuntimeError, match="no motion tokens"):
        run(model, inputs_fn(batch=2))
    inj.set_motion(_motion(3))
    with pytest.raises(ValueError, match="one row per input row"):
        run(model, inputs_fn(batch=2))
    with pytest.raises(ValueError, match=f"tokens, {MOTION_DIM}"):
        inj.set_motion(torch.zeros(1, 4, MOTION_DIM + 1))
    with pytest.raises(ValueError, match="already carries a motion adapter"):
        inject(model, motion_dim=MOTION_DIM)
    inj.remove()


def test_adapter_state_dict_round_trip_and_key_errors():
    a, b = tiny_cogvideox(seed=0), tiny_cogvideox(seed=0)
    inputs = cogvideox_inputs()
    m = _motion(2)
    ia, ib = inject_cogvideox(a, motion_dim=MOTION_DIM), inject_cogvideox(b, motion_dim=MOTION_DIM)
    ia.set_motion(m)
    ib.set_motion(m)
    assert not torch.allclose(run_cogvideox(a, inputs), run_cogvideox(b, inputs))   # different random branches
    state = ia.adapter_state_dict()
    ib.load_adapter_state_dict(state)
    assert torch.equal(run_cogvideox(a, inputs), run_cogvideox(b, inputs))
    key = sorted(state)[0]
    broken = dict(state)
    del broken[key]
    broken["transformer_blocks.9.attn1.processor.to_q_ip.0.weight"] = state[key]
    with pytest.raises(CheckpointKeyError) as err:
        ib.load_adapter_state_dict(broken)
    assert key in str(err.value) and "transformer_blocks.9.attn1" in str(err.value)
    assert isinstance(ia, MotionInjection)


def inj_tokens(inj):
    return inj.state.tokens


def test_motion_keys_values_are_reused_only_at_inference(host):
    build, inputs_fn, run, inject, _ = host
    model, inputs = build(), inputs_fn(batch=2)
    with inject(model, motion_dim=MOTION_DIM) as inj:
        inj.set_motion(_motion(2))
        processor = next(p for p in model.attn_processors.values() if hasattr(p, "to_k_ip"))
        calls = []
        handle = processor.to_k_ip[0].register_forward_hook(lambda *a: calls.append(1))
        try:
            with torch.no_grad():
                first = run(model, inputs)
                after_first = len(calls)
                again = run(model, inputs)
            assert after_first >= 1 and len(calls) == after_first, "K/V recomputed although nothing changed"
            assert torch.equal(first, again)
            inj.set_motion(_motion(2) + 1.0)          # new tokens: projected afresh
            with torch.no_grad():
                changed = run(model, inputs)
            assert len(calls) > after_first and not torch.allclose(changed, first)
            tokens, w = inj_tokens(inj), processor.to_q_ip[0].weight
            heads, head_dim = 2, w.shape[0] // 2
            with torch.no_grad():
                k1, _ = processor._motion_keys_values(tokens, w, heads, head_dim)
                k2, _ = processor._motion_keys_values(tokens, w, heads, head_dim)
            assert k1 is k2
            with torch.enable_grad():
                k3, _ = processor._motion_keys_values(tokens, w, heads, head_dim)
            assert k3 is not k1 and k3.requires_grad, "the cache must not serve tensors to autograd"
        finally:
            handle.remove()
