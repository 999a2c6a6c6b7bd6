"""The retrieval adapter for a frozen MoMask-layout model (models/momask/adapter.py, option b of issue
15): zero-initialised it changes nothing, fine-tuning moves only the adapter and lowers its loss, it is
saved and read back key for key, bad folders are refused by name."""
import json

import numpy as np
import pytest
import torch

from motionrag_suite.common.errors import InputError
from motionrag_suite.models.momask import load_momask
from motionrag_suite.models.momask.adapter import RetrievalAdapter, attach, detach, load_adapter, save_adapter
from motionrag_suite.models.momask.train import TrainingSet, train_adapter
from motionrag_suite.models.motion import humanml3d as h3d
from motionrag_suite.models.motion import library

from . import momask_tiny as tiny

CLIPS = ("walk", "jump", "punch", "roll")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.set_num_threads(1)
    return load_momask(tiny.write_folder(tmp_path_factory.mktemp("momask") / "t2m"), convert=False)


@pytest.fixture(scope="module")
def data():
    feats = [h3d.joints_to_features(library.load_clip(n).joints) for n in CLIPS]
    text = np.random.default_rng(0).standard_normal((8, 512)).astype(np.float32) * 0.3
    neighbours = [[(c // 2 + 1) % 4, (c // 2 + 2) % 4] for c in range(8)]     # other clips only
    return TrainingSet(features=feats, caption_entry=np.repeat(np.arange(4), 2), text_features=text), neighbours


def test_zero_initialised_adapter_changes_nothing(model, data):
    ts, _ = data
    cond = ts.text_features[0]
    plain = model.generate(cond, length_frames=32, seed=3, steps=4)
    adapter = RetrievalAdapter.for_model(model)
    head = attach(model, adapter)
    try:
        head.memory = adapter.memory(model.masked, model.reference_tokens([ts.features[1], ts.features[2]]))
        with_refs = model.generate(cond, length_frames=32, seed=3, steps=4)
    finally:
        detach(model)
    np.testing.assert_array_equal(with_refs.tokens, plain.tokens)
    assert type(model.masked.output_process).__name__ == "_OutputHead"


def test_fine_tuning_moves_only_the_adapter_and_round_trips(model, data, tmp_path):
    ts, neighbours = data
    base = {k: v.clone() for k, v in model.masked.state_dict().items()}
    torch.manual_seed(0)
    adapter = RetrievalAdapter.for_model(model)
    losses = train_adapter(model, adapter, ts, neighbours, steps=40, batch_size=8, lr=3e-3, seed=1,
                           log=lambda s: None)
    assert np.mean(losses[-10:]) < np.mean(losses[:10]), losses
    after = model.masked.state_dict()
    assert sorted(after) == sorted(base) and all(torch.equal(after[k], base[k]) for k in base)
    assert float(adapter.out.weight.detach().abs().sum()) > 0                      # it did move from zero
    save_adapter(tmp_path / "a", adapter, {"steps": 40})
    loaded = load_adapter(tmp_path / "a", model)
    for k, v in adapter.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    torch.manual_seed(0)
    again = RetrievalAdapter.for_model(model)
    train_adapter(model, again, ts, neighbours, steps=40, batch_size=8, lr=3e-3, seed=1, log=lambda s: None)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in adapter.state_dict().items())   # seeded


def test_bad_adapter_folders_and_options_are_refused(model, data, tmp_path):
    ts, neighbours = data
    with pytest.raises(InputError) as e:
        load_adapter(tmp_path / "missing", model)
    assert e.value.input == "adapter"
    save_adapter(tmp_path / "b", RetrievalAdapter(64, 16, 4), {})
    with pytest.raises(InputError) as e:
        load_adapter(tmp_path / "b", model)                                   # another latent width
    assert e.value.input == "adapter"
    meta = json.loads((tmp_path / "b" / "adapter.json").read_text())
    (tmp_path / "b" / "adapter.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(InputError):
        load_adapter(tmp_path / "b", model)
    for kwargs, name in ((dict(steps=0), "steps"), (dict(batch_size=-1), "batch_size")):
        with pytest.raises(InputError) as e:
            train_adapter(model, RetrievalAdapter.for_model(model), ts, neighbours, **kwargs)
        assert e.value.input == name
    with pytest.raises(InputError) as e:
        train_adapter(model, RetrievalAdapter.for_model(model), ts, neighbours[:3])
    assert e.value.input == "neighbours"
