"""The offline motion model (flow + Lite0 tokens -> CAMA), its data helpers and its training, on small
synthetic clips (the real data run is in tests/benchmarks/eval_i2v_offline.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from motionrag_suite.models.i2v.offline import data as od
from motionrag_suite.models.i2v.errors import CheckpointError, CheckpointKeyError
from motionrag_suite.models.i2v.offline.model import OfflineConfig, OfflineMotionModel, load_model, save_model
from motionrag_suite.models.i2v.offline.train import TrainSettings, flow_scale, train

SMALL = OfflineConfig(d_model=32, heads=2, layers=1, feedforward=64, resampler_depth=1, decoder_hidden=32,
                      tokens=4, appearance_dim=16, max_references=4)


class BagOfWordsEncoder:
    """A deterministic caption encoder for the retrieval mechanics (the real runs use MiniLM)."""

    VOCAB = ["left", "right", "up", "down", "slow", "fast", "car", "rabbit"]

    def encode(self, texts):
        # direction words weigh more than speed words, so the nearest caption shares the direction
        weight = {"left": 2.0, "right": 2.0, "up": 2.0, "down": 2.0}
        return np.array([[weight.get(w, 1.0) * (w in t.split()) for w in self.VOCAB] + [1e-3] for t in texts],
                        np.float32)


def synthetic_clips(n_videos: int = 10, clips_per_video: int = 3, seed: int = 0) -> od.OfflineClips:
    """Each video moves its whole picture one way at its own speed; captions say which way."""
    rng = np.random.default_rng(seed)
    dirs = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
    names, videos, captions, flow, app = [], [], [], [], []
    for v in range(n_videos):
        word = list(dirs)[v % 4]
        speed = 1.0 + v % 3
        for c in range(clips_per_video):
            dx, dy = dirs[word]
            f = np.zeros((15, 2, 8, 8), np.float32)
            f[:, 0] = dx * speed
            f[:, 1] = dy * speed
            flow.append(f.reshape(15, 128) + rng.normal(0, 0.05, (15, 128)).astype(np.float32))
            app.append(rng.normal(0, 1, (49, 16)).astype(np.float32) + v)
            names.append(f"v{v}@{c}")
            videos.append(f"v{v}")
            captions.append([f"the picture moves {word} {'fast' if speed > 2 else 'slow'}"])
    return od.OfflineClips(names, videos, captions, np.stack(flow), np.stack(app))


def test_shapes_and_flow_check():
    model = OfflineMotionModel(SMALL)
    tokens = model.motion_tokens(torch.zeros(3, 15, 128))
    assert tokens.shape == (3, SMALL.tokens, SMALL.d_model)
    assert model.decode_flow(tokens).shape == (3, 15, 128)
    with pytest.raises(ValueError, match=r"flow: expected flow features \(batch, 15, 128\)"):
        model.motion_tokens(torch.zeros(3, 16, 128))
    pred = model.predict(torch.zeros(2, 3, 15, 128), torch.zeros(2, 3, 49, 16), torch.zeros(2, 49, 16))
    assert pred.shape == (2, SMALL.tokens, SMALL.d_model)


PLAIN = OfflineConfig(**{**SMALL.__dict__, "appearance": 1, "reference_skip": 0})


def test_prediction_is_block_causal_in_the_query():
    """The query's prediction reads its references: changing one reference's flow changes it."""
    torch.manual_seed(0)
    model = OfflineMotionModel(PLAIN).eval()
    flow = torch.randn(1, 3, 15, 128)
    app, q = torch.randn(1, 3, 49, 16), torch.randn(1, 49, 16)
    a = model.predict(flow, app, q)
    flow2 = flow.clone()
    flow2[0, 1] += 1.0
    assert not torch.allclose(a, model.predict(flow2, app, q))
    assert torch.allclose(a, model.predict(flow, app, q))


def test_reference_skip_starts_at_the_prior_and_gates_to_the_references_mean():
    torch.manual_seed(0)
    model = OfflineMotionModel(SMALL).eval()
    model.skip.prior.copy_(torch.randn(SMALL.tokens, SMALL.d_model))
    flow, app, q = torch.randn(2, 3, 15, 128), torch.randn(2, 3, 49, 16), torch.randn(2, 49, 16)
    with torch.no_grad():
        # gate 0 and correction 0 at initialisation: the training clips' mean tokens, whatever the references
        assert torch.allclose(model.predict(flow, app, q), model.skip.prior.expand(2, -1, -1))
        model.skip.gate.fill_(1.0)
        refs_mean = model.motion_tokens(flow.flatten(0, 1)).view(2, 3, SMALL.tokens, -1).mean(1)
        assert torch.allclose(model.predict(flow, app, q), refs_mean, atol=1e-6)
        # every block's skip reads only the clips before it: the full forward's last block is predict's
        motion = model.motion_tokens(flow.flatten(0, 1)).view(2, 3, SMALL.tokens, -1).flip(1)
        appearance = torch.cat([app.flip(1), q[:, None]], 1)
        blocks = model.context_blocks(motion, appearance)
        assert torch.allclose(blocks[:, -1], model.predict(flow, app, q), atol=1e-5)
        assert torch.allclose(blocks[:, 1], motion[:, 0], atol=1e-6)         # block 1: clip 0 alone
        assert torch.allclose(blocks[:, 0], torch.zeros_like(blocks[:, 0]))  # block 0: no clip before it


def test_appearance_switch():
    """appearance=0: the query image cannot change the prediction; appearance=1: it does."""
    flow, app = torch.randn(1, 3, 15, 128), torch.randn(1, 3, 49, 16)
    q1, q2 = torch.randn(1, 49, 16), torch.randn(1, 49, 16)
    for switch in (0, 1):
        torch.manual_seed(0)
        model = OfflineMotionModel(OfflineConfig(**{**PLAIN.__dict__, "appearance": switch})).eval()
        with torch.no_grad():
            same = torch.allclose(model.predict(flow, app, q1), model.predict(flow, app, q2))
        assert same == (switch == 0)
    with pytest.raises(ValueError, match="appearance must be 0 or 1"):
        OfflineConfig(appearance=2)


def test_configs_without_switches_load_as_the_plain_model(tmp_path):
    torch.manual_seed(2)
    model = OfflineMotionModel(PLAIN).eval()
    save_model(tmp_path, model)
    meta = json.loads((tmp_path / "config.json").read_text())
    for key in ("appearance", "reference_skip"):
        del meta["config"][key]
    (tmp_path / "config.json").write_text(json.dumps(meta))
    loaded, _ = load_model(tmp_path)
    assert loaded.config == PLAIN


def test_save_load_round_trip_and_refusals(tmp_path):
    torch.manual_seed(1)
    model = OfflineMotionModel(SMALL).eval()
    model.flow_scale.fill_(2.0)
    save_model(tmp_path / "m", model, {"note": "test"})
    loaded, meta = load_model(tmp_path / "m")
    x = torch.randn(2, 15, 128)
    assert torch.equal(loaded.motion_tokens(x), model.motion_tokens(x))
    assert meta["made"] == {"note": "test"} and meta["config"]["d_model"] == SMALL.d_model

    # a config that names other sizes than the tensors hold
    cfg_path = tmp_path / "m" / "config.json"
    meta = json.loads(cfg_path.read_text())
    meta["config"]["tokens"] = 5
    cfg_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointKeyError, match="shape mismatch"):
        load_model(tmp_path / "m")

    # half of another save: the tensor file's size disagrees with the config's record
    save_model(tmp_path / "n", model)
    meta = json.loads((tmp_path / "n" / "config.json").read_text())
    meta["model_bytes"] += 1
    (tmp_path / "n" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="parts of two different saves"):
        load_model(tmp_path / "n")
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(tmp_path / "missing")


def test_mirror_helpers():
    f = np.zeros((15, 2, 8, 8), np.float32)
    f[:, 0, 2, 1] = 3.0        # dx at row 2, column 1
    f[:, 1, 2, 1] = -1.0
    m = od.mirror_flow(f.reshape(15, 128)).reshape(15, 2, 8, 8)
    assert m[0, 0, 2, 6] == -3.0 and m[0, 1, 2, 6] == -1.0 and np.count_nonzero(m[0]) == 2
    assert np.array_equal(od.mirror_flow(od.mirror_flow(f.reshape(15, 128))), f.reshape(15, 128))
    a = np.arange(49 * 2, dtype=np.float32).reshape(49, 2)
    ma = od.mirror_appearance(a)
    assert np.array_equal(ma[0], a[6]) and np.array_equal(od.mirror_appearance(ma), a)


def test_split_and_retrieval_exclude_own_video():
    clips = synthetic_clips()
    train_idx, test_idx = od.split(clips, every=5)
    assert {clips.videos[i] for i in train_idx}.isdisjoint({clips.videos[i] for i in test_idx})
    assert len(test_idx) == 2 * 3                          # 2 of 10 videos, 3 clips each
    first, vecs = od.caption_vectors(clips, BagOfWordsEncoder())
    refs = od.retrieve(first, clips.videos, vecs, clips.videos, 4)
    for q, row in enumerate(refs):
        assert all(clips.videos[r] != clips.videos[q] for r in row)
        # the best reference moves the same way as the query (its caption shares the direction word)
        assert clips.captions[row[0]][0].split()[3] == clips.captions[q][0].split()[3]
    with pytest.raises(od.OfflineDataError, match="fewer than 4 candidates"):
        od.retrieve(first[:1], ["v0"], vecs[:5], ["v0", "v0", "v0", "v1", "v1"], 4)


def test_training_learns_and_repeats_exactly():
    clips = synthetic_clips()
    s = TrainSettings(stage1_steps=120, stage2_steps=120, batch_size=8, refs=3, seed=3)
    torch.set_num_threads(1)
    m1, made = train(clips, BagOfWordsEncoder(), s, SMALL)
    m2, _ = train(clips, BagOfWordsEncoder(), s, SMALL)
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    assert made["train_videos"] == 8 and made["held_out_clips"] == 6
    # stage 1 reconstructs better than predicting zero (the flow's mean is far from zero here)
    x = torch.from_numpy(clips.flow)
    with torch.no_grad():
        err = torch.mean((m1.decode_flow(m1.motion_tokens(x)) - m1.normalise_flow(x)) ** 2)
    assert err < 0.5 * torch.mean(m1.normalise_flow(x) ** 2)
    m3, _ = train(clips, BagOfWordsEncoder(), TrainSettings(**{**s.__dict__, "seed": 4}), SMALL)
    assert not torch.equal(m1.cama.sos_token, m3.cama.sos_token)


def test_flow_scale_is_mirror_symmetric():
    clips = synthetic_clips()
    sc = flow_scale(clips.flow)
    assert np.allclose(od.mirror_flow(sc[None])[0] * np.r_[-np.ones(64), np.ones(64)], sc)
    assert (sc > 0).all()


def test_evaluation_reports_every_method_and_rewards_a_trained_model():
    from motionrag_suite.models.i2v.offline.eval import METHODS, evaluate

    clips = synthetic_clips(n_videos=15)
    torch.set_num_threads(1)
    model, _ = train(clips, BagOfWordsEncoder(), TrainSettings(stage1_steps=150, stage2_steps=150, batch_size=8,
                                                               refs=3), SMALL)
    report = evaluate(model, clips, BagOfWordsEncoder(), refs=3, random_draws=2)
    assert set(METHODS) <= set(report["tokens"]) and report["queries"] == 9
    assert all(np.isfinite(v) and v >= 0 for v in report["tokens"].values())
    # captions name the motion here, so retrieved references beat random ones
    assert report["tokens"]["mean_of_refs"] < report["tokens"]["train_mean"]
