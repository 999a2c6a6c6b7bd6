"""generate(): a valid Motion of the requested length, seeded, guided, cancellable; checkpoints
round-trip through safetensors + JSON and refuse mismatched weights with clear errors."""
import json

import numpy as np
import pytest
import torch

from motionrag_suite.models.motion import library
from motionrag_suite.models.motion.motion import Motion
from motionrag_suite.models.t2m.checkpoint import CheckpointError, load_model, load_tensors, save_model, save_tensors

from .test_t2m_fixtures import clip_features, one_thread, tiny_model  # noqa: F401

EMB = np.random.default_rng(0).normal(size=384).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize("frames", [2, 5, 37, 64, 120])
def test_generate_returns_a_valid_motion_of_the_requested_length(model, frames):
    retrieved = [library.load_clip("walk"), clip_features("M_kick")]
    calls = []
    motion = model.generate(EMB, retrieved, length_frames=frames, seed=1, steps=3,
                            progress=lambda i, n: calls.append((i, n)))
    assert isinstance(motion, Motion)
    assert motion.num_frames == frames and motion.joints.shape == (frames, 22, 3)
    assert motion.features.shape == (frames - 1, 263)
    assert motion.fps == 20.0
    assert np.isfinite(motion.joints).all()
    total = 3 + model.config.tokenizer.num_quantizers - 1
    assert calls == [(i, total) for i in range(1, total + 1)]
    assert motion.provenance["seed"] == 1 and motion.provenance["retrieved"][0] == "walk"


def test_generate_is_seeded(model):
    a = model.generate(EMB, [], length_frames=41, seed=7, steps=4)
    b = model.generate(EMB, [], length_frames=41, seed=7, steps=4)
    c = model.generate(EMB, [], length_frames=41, seed=8, steps=4)
    np.testing.assert_array_equal(a.joints, b.joints)
    assert not np.allclose(a.joints, c.joints)


def test_progress_callback_can_cancel(model):
    class Cancelled(Exception):
        pass

    def progress(i, n):
        if i == 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        model.generate(EMB, [], length_frames=30, seed=0, steps=5, progress=progress)


@pytest.mark.parametrize("kwargs, match", [
    (dict(length_frames=1), "length_frames"),
    (dict(length_frames=10_000), "length_frames"),
    (dict(length_frames=30.5), "length_frames"),
    (dict(steps=0), "steps"),
    (dict(guidance_text=float("nan")), "guidance_text"),
])
def test_generate_rejects_bad_arguments(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        model.generate(EMB, [], **{"length_frames": 20, **kwargs})


def test_generate_rejects_a_wrong_text_embedding(model):
    with pytest.raises(ValueError, match="text_embedding"):
        model.generate(np.zeros(512, np.float32), [], length_frames=20)
    with pytest.raises(ValueError, match="retrieved_motions\\[0\\]"):
        model.generate(EMB, [np.zeros((10, 200))], length_frames=20)


def test_checkpoint_round_trip(model, tmp_path):
    save_model(tmp_path / "m", model)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_model(tmp_path / "m")
    assert loaded.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    a = model.generate(EMB, [clip_features("spin")], length_frames=33, seed=2, steps=3)
    b = loaded.generate(EMB, [clip_features("spin")], length_frames=33, seed=2, steps=3)
    np.testing.assert_array_equal(a.joints, b.joints)


def test_loading_checks_keys_and_shapes(model, tmp_path):
    folder = tmp_path / "m"
    save_model(folder, model)
    tensors = load_tensors(folder / "model.safetensors")

    bad = dict(tensors)
    bad["masked.head.weight"] = torch.zeros(3, 3)
    save_tensors(folder / "model.safetensors", bad)
    with pytest.raises(CheckpointError, match=r"shape.*masked\.head\.weight"):
        load_model(folder)

    bad = {k: v for k, v in tensors.items() if k != "tokenizer.norm_std"}
    bad["masked.extra"] = torch.zeros(1)
    save_tensors(folder / "model.safetensors", bad)
    with pytest.raises(CheckpointError, match=r"missing key\(s\): tokenizer\.norm_std.*unexpected key\(s\): masked\.extra"):
        load_model(folder)

    save_tensors(folder / "model.safetensors", tensors)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"]["tokenizer"]["num_codes"] = 64
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"shape/dtype mismatch.*masked\.head\.bias: file \(32,\).*model \(64,\)"):
        load_model(folder)
    cfg["model"]["tokenizer"]["colour"] = 1
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown field.*colour"):
        load_model(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(folder)
    (folder / "model.safetensors").write_bytes(b"\x00" * 20)
    (folder / "config.json").write_text(json.dumps({**cfg, "model": model.config.to_dict()}))
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model(folder)
