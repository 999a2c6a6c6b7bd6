"""The retrieval refiner: time alignment of references, the per-frame blend (references masked out
weigh nothing; none = RAG off), its training batches (perturbed target, neighbours without self
or mirror, another clip as the wrong decoded motion), generate() with and without it, checkpoints
from before it existed (load without one; --resume trains only it, to the same weights as a run
from scratch)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from motionrag_suite.models.motion import library
from motionrag_suite.models.t2m.checkpoint import load_model, load_tensors, save_model, save_tensors
from motionrag_suite.models.t2m.config import TINY, RefinerConfig, ModelConfig
from motionrag_suite.models.t2m.data import load_training_data, refiner_batch
from motionrag_suite.models.t2m.model import T2MModel
from motionrag_suite.models.t2m.refiner import RetrievalRefiner, align_rows
from motionrag_suite.retrieval import build_from_library, open_database

from .test_t2m_fixtures import clip_features, one_thread, tiny_model  # noqa: F401

PACK = Path(__file__).resolve().parents[2]
EMB = np.random.default_rng(1).normal(size=384).astype(np.float32)


def test_align_rows_resamples_linearly_and_keeps_the_ends():
    f = np.arange(5, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    assert align_rows(f, 5) is not None and np.array_equal(align_rows(f, 5), f)
    up = align_rows(f, 9)
    np.testing.assert_allclose(up[:, 0], np.arange(9) / 2)
    down = align_rows(f, 3)
    np.testing.assert_allclose(down[:, 0], [0, 2, 4])
    assert align_rows(f, 1).shape == (1, 3)
    with pytest.raises(ValueError, match="reference features"):
        align_rows(np.zeros((0, 263)), 4)


@pytest.fixture
def refiner():
    torch.manual_seed(0)
    r = RetrievalRefiner(RefinerConfig(width=16, depth=2)).eval()
    with torch.no_grad():               # a non-zero correction, so the tests see the whole path
        r.out.weight.normal_(0, 0.01)
    return r


def test_refiner_without_references_sees_the_decoded_motion_only(refiner):
    base = torch.randn(2, 20, 263)
    out, w = refiner(base)
    assert out.shape == base.shape and torch.equal(w, torch.ones(2, 1, 20))
    out_empty, _ = refiner(base, torch.zeros(2, 0, 20, 263))
    torch.testing.assert_close(out, out_empty)


def test_a_reference_switched_off_weighs_nothing(refiner):
    base, refs = torch.randn(1, 12, 263), torch.randn(1, 2, 12, 263)
    out, w = refiner(base, refs, torch.tensor([[True, False]]))
    assert torch.all(w[:, 2] == 0) and torch.all(w[:, 1] > 0)
    torch.testing.assert_close(w.sum(1), torch.ones(1, 12))
    alone, _ = refiner(base, refs[:, :1])
    torch.testing.assert_close(out, alone)
    # Replacing the switched-off reference changes nothing; replacing the used one does.
    other = refs.clone()
    other[:, 1] = torch.randn(12, 263)
    torch.testing.assert_close(refiner(base, other, torch.tensor([[True, False]]))[0], out)
    other[:, 0] = torch.randn(12, 263)
    assert not torch.allclose(refiner(base, other, torch.tensor([[True, False]]))[0], out)


def test_untrained_refiner_is_the_weighted_blend():
    torch.manual_seed(0)
    r = RetrievalRefiner(RefinerConfig(width=8, depth=1))
    base, refs = torch.randn(1, 10, 263), torch.randn(1, 2, 10, 263)
    out, w = r(base, refs)
    blend = w[:, 0, :, None] * base + (w[:, 1:, :, None] * refs).sum(1)
    torch.testing.assert_close(out, blend)


@pytest.fixture(scope="module")
def db_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("t2m_refiner_db")
    build_from_library(root, "builtin")
    return root


@pytest.fixture(scope="module")
def data(db_root):
    return load_training_data(open_database(db_root, "builtin"), fps=20.0, num_retrieved=2, min_rows=4,
                              log=lambda s: None)


def _slice_start(crop, feats):
    n = len(crop)
    return [s for s in range(len(feats) - n + 1) if np.array_equal(crop, feats[s:s + n])]


def test_refiner_batches_draw_the_four_cases(data):
    rng = np.random.default_rng(0)
    cfg = RefinerConfig(width=8, noise=0.0)
    counts = {"none": 0, "neighbours": 0, "wrong": 0, "both": 0}
    first = 0
    for _ in range(40):
        b = refiner_batch(data, rng, 8, 4, 8, 80, 20, cfg, 2)
        L = b.target.shape[1]
        assert b.references.shape == (8, 2, L, 263) and L % 4 == 0
        for i in range(8):
            owners = [e for e in data.usable if _slice_start(b.target[i], data.features[e])]
            assert owners, "the target is a crop of a clip"
            e = owners[0]
            banned = {e, int(data.mirror_of[e])}
            for k in range(2):
                if b.reference_on[i, k] and not b.positive[i, k]:
                    # a neighbour: a whole retrieved clip (never the target's own or its mirror), aligned
                    nb = [n for n in data.usable
                          if np.allclose(align_rows(data.features[n], L), b.references[i, k])]
                    assert nb and not banned & set(nb)
                if not b.reference_on[i, k]:
                    assert not b.references[i, k].any()
            if b.wrong_base[i]:
                assert b.positive[i].any() and not np.array_equal(b.base[i], b.target[i])
                counts["wrong"] += 1
            else:
                assert np.array_equal(b.base[i], b.target[i])
                if not b.reference_on[i].any():
                    counts["none"] += 1
                elif b.positive[i].any():
                    counts["both"] += 1
                else:
                    counts["neighbours"] += 1
            if b.positive[i].any():
                first += bool(b.positive[i, 0])
                # the perturbed target is a window of the target's own clip, not always the crop itself
                assert b.positive[i].sum() == 1
    n = sum(counts.values())
    for case, p in (("none", cfg.p_no_references), ("neighbours", cfg.p_neighbours_only),
                    ("wrong", cfg.p_wrong_base)):
        assert abs(counts[case] / n - p) < 0.08, (case, counts)
    assert abs(first / (counts["wrong"] + counts["both"]) - cfg.p_positive_first) < 0.1


def test_perturbed_target_stays_close_to_the_target(data):
    """Speed and shift are bounded: the positive reference resembles its target far more than a neighbour."""
    rng = np.random.default_rng(3)
    cfg = RefinerConfig(width=8, noise=0.0)
    d_pos, d_nb = [], []
    for _ in range(20):
        b = refiner_batch(data, rng, 8, 4, 32, 80, 20, cfg, 2)
        for i in range(8):
            for k in range(2):
                if b.reference_on[i, k]:
                    d = np.abs(b.references[i, k] - b.target[i])[:, 4:67].mean()
                    (d_pos if b.positive[i, k] else d_nb).append(d)
    assert np.mean(d_pos) < 0.5 * np.mean(d_nb)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_generate_hands_references_to_the_refiner_unless_retrieval_is_off(model):
    assert model.refiner is not None
    refs = [library.load_clip("kick"), clip_features("spin")]
    on = model.generate(EMB, refs, length_frames=40, seed=3, steps=2)
    off = model.generate(EMB, [], length_frames=40, seed=3, steps=2, guidance_retrieval=0.0)
    zero = model.generate(EMB, refs, length_frames=40, seed=3, steps=2, guidance_retrieval=0.0)
    np.testing.assert_array_equal(zero.joints, off.joints)
    assert not np.allclose(on.joints, off.joints)
    assert on.provenance["refiner"] is True


def test_a_model_without_refiner_loads_from_a_config_that_predates_it(model, tmp_path):
    import dataclasses

    torch.manual_seed(0)
    old = T2MModel(dataclasses.replace(TINY, refiner=RefinerConfig(width=0)))
    assert old.refiner is None
    old.tokenizer.load_state_dict(model.tokenizer.state_dict())
    save_model(tmp_path / "old", old)
    cfg = json.loads((tmp_path / "old" / "config.json").read_text())
    del cfg["model"]["refiner"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(cfg))
    loaded = load_model(tmp_path / "old")
    assert loaded.refiner is None and not loaded.config.refiner.enabled
    assert not any(k.startswith("refiner.") for k in load_tensors(tmp_path / "old" / "model.safetensors"))
    assert loaded.generate(EMB, [clip_features("walk")], length_frames=20, seed=0, steps=2).num_frames == 20


def test_refiner_config_is_checked():
    from motionrag_suite.models.t2m.config import ConfigError

    data = TINY.to_dict()
    data["refiner"]["p_wrong_base"] = 0.9
    with pytest.raises(ConfigError, match="p_no_references"):
        ModelConfig.from_dict(data)
    data["refiner"] = {"width": -1}
    with pytest.raises(ConfigError, match="refiner.width"):
        ModelConfig.from_dict(data)


def _train(db_root, out, steps, *extra):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    args = [sys.executable, "-m", "training", "t2m", "--db-root", str(db_root), "--db", "builtin", "--out", str(out),
            "--config", "tiny", "--seed", "5", "--steps", steps, "--threads", "1", "--no-progress", *extra]
    proc = subprocess.run(args, cwd=PACK, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_resume_adds_the_refiner_to_a_model_from_before_it(db_root, tmp_path):
    """A finished three-stage checkpoint, as the code before the refiner wrote it, continued with
    --resume, ends with the same weights as a four-stage run from scratch."""
    full = tmp_path / "full"
    _train(db_root, full, "4,4,2,3")
    old = tmp_path / "old"
    _train(db_root, old, "4,4,2,0")
    # Make it what the earlier code wrote: no refiner weights, config or step count.
    tensors = {k: v for k, v in load_tensors(old / "model.safetensors").items() if not k.startswith("refiner.")}
    save_tensors(old / "model.safetensors", tensors, metadata={"format": "motionrag-t2m"})
    cfg = json.loads((old / "config.json").read_text())
    del cfg["model"]["refiner"], cfg["trained"]["refiner"]
    (old / "config.json").write_text(json.dumps(cfg))
    state = json.loads((old / "train_state.json").read_text())
    assert state["stage"] == "done"
    del state["train"]["refiner_steps"], state["done"]["refiner"]
    (old / "train_state.json").write_text(json.dumps(state))
    assert load_model(old).refiner is None

    out = _train(db_root, old, "4,4,2,3", "--resume")
    assert "training the refiner" in out and "resuming at refiner step 0" in out
    a, b = load_tensors(full / "model.safetensors"), load_tensors(old / "model.safetensors")
    assert a.keys() == b.keys() and any(k.startswith("refiner.") for k in a)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
    assert (full / "model.safetensors").read_bytes() == (old / "model.safetensors").read_bytes()
    # The refiner did train (its output layer starts at zero).
    assert b["refiner.out.weight"].abs().max() > 0
