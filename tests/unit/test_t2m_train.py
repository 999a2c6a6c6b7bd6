"""Training from the command line on the built-in library database: safetensors + JSON outputs,
bit-identical resume, refusal to overwrite, self/mirror exclusion in training retrieval,
sub-clip batches."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from motionrag_suite.models.t2m.checkpoint import load_model, load_tensors
from motionrag_suite.models.t2m.data import (TrainingDataError, check_exclusion, load_training_data,
                                             tokenizer_batch, transformer_batch)
from motionrag_suite.models.t2m.model import T2MModel
from motionrag_suite.training.t2m import main
from motionrag_suite.retrieval import build_from_library, open_database

from .test_t2m_fixtures import one_thread  # noqa: F401

PACK = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def db_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("t2m_db")
    build_from_library(root, "builtin")
    return root


def _args(root, out, *extra):
    return ["--db-root", str(root), "--db", "builtin", "--out", str(out), "--config", "tiny", "--seed", "3",
            "--steps", "4,4,2", "--threads", "1", "--no-progress", *extra]


@pytest.fixture(scope="module")
def uninterrupted(db_root, tmp_path_factory):
    """One full run through `python -m training t2m`, as a user would start it."""
    out = tmp_path_factory.mktemp("t2m_a") / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "training", "t2m", *_args(db_root, out)], cwd=PACK, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished" in proc.stdout
    return out


def _mirror(name):
    return name[2:] if name.startswith("M_") else "M_" + name


def test_cli_writes_safetensors_and_json_only(uninterrupted):
    files = sorted(p.name for p in uninterrupted.iterdir())
    assert files == ["config.json", "model.safetensors", "retrieval_neighbours.json", "train_state.json",
                     "train_state.safetensors"]
    cfg = json.loads((uninterrupted / "config.json").read_text())
    assert cfg["format"] == "motionrag-t2m"
    assert cfg["trained"]["tokenizer"] == 4 and cfg["trained"]["masked"] == 4 and cfg["trained"]["residual"] == 2
    assert cfg["trained"]["refiner"] == 2        # the tiny preset's refiner steps (--steps gave three counts)
    state = json.loads((uninterrupted / "train_state.json").read_text())
    assert state["stage"] == "done" and state["seed"] == 3
    model = load_model(uninterrupted)
    # The tokenizer stage stored real feature statistics with the weights.
    assert not torch.allclose(model.tokenizer.norm_std, torch.ones(263))
    motion = model.generate(np.ones(384, np.float32) / 384 ** 0.5, [], length_frames=24, seed=0, steps=2)
    assert motion.num_frames == 24


def test_resume_continues_exactly(db_root, uninterrupted, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(db_root, out, "--stop-at", "6")) == 0
    state = json.loads((out / "train_state.json").read_text())
    assert (state["stage"], state["step"]) == ("masked", 2)
    assert state["done"] == {"tokenizer": 4, "masked": 2, "residual": 0, "refiner": 0}
    assert load_tensors(out / "train_state.safetensors"), "optimizer moments were not saved"
    capsys.readouterr()
    assert main(_args(db_root, out, "--resume")) == 0
    assert "resuming at masked step 2" in capsys.readouterr().out
    a = load_tensors(uninterrupted / "model.safetensors")
    b = load_tensors(out / "model.safetensors")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
    # Training changed the weights, so equality above is not trivially true.
    fresh = T2MModel(load_model(out).config).state_dict()
    assert not torch.equal(fresh["masked.head.weight"], b["masked.head.weight"])


def test_refuses_to_overwrite_or_resume_with_other_settings(db_root, uninterrupted, capsys):
    assert main(_args(db_root, uninterrupted)) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    args = _args(db_root, uninterrupted, "--resume")
    args[args.index("--seed") + 1] = "4"
    assert main(args) == 2
    assert "seed=3" in capsys.readouterr().err
    assert main(_args(db_root, uninterrupted, "--resume", "--batch-size", "2")) == 2
    assert "batch_size=4" in capsys.readouterr().err
    assert main(_args(db_root, uninterrupted.parent / "nothing", "--resume")) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_training_retrieval_excludes_the_sample_and_its_mirror(db_root, uninterrupted):
    record = json.loads((uninterrupted / "retrieval_neighbours.json").read_text())["captions"]
    db = open_database(db_root, "builtin")
    assert len(record) == db.caption_count
    vectors = db.encoder().encode([item["caption"] for item in record])
    self_hits = 0
    for item, vector in zip(record, vectors):
        banned = {item["entry"], _mirror(item["entry"])}
        assert len(item["retrieved"]) == 2
        assert not banned & set(item["retrieved"]), item
        # Without the exclusion the caption usually finds its own clip: the check is not vacuous.
        self_hits += db.search_vector(vector, 1)[0].name in banned
    assert self_hits > len(record) // 2


@pytest.fixture(scope="module")
def data(db_root):
    db = open_database(db_root, "builtin")
    return load_training_data(db, fps=20.0, num_retrieved=2, min_rows=4, log=lambda s: None)


def test_check_exclusion_catches_self_and_mirror(data):
    check_exclusion(data)
    e = int(data.caption_entry[0])
    saved = data.neighbours[0]
    try:
        data.neighbours[0] = [e]
        with pytest.raises(TrainingDataError, match="itself or its mirrored copy"):
            check_exclusion(data)
        twin = data.names.index(_mirror(data.names[e]))
        data.neighbours[0] = [twin]
        with pytest.raises(TrainingDataError, match="mirrored"):
            check_exclusion(data)
    finally:
        data.neighbours[0] = saved


def _is_slice_of(crop, feats):
    n = len(crop)
    return any(np.array_equal(crop, feats[s:s + n]) for s in range(len(feats) - n + 1))


def test_batches_are_random_sub_clips(data):
    rng = np.random.default_rng(0)
    widths = set()
    for _ in range(10):
        batch = tokenizer_batch(data, rng, 4, 48, 4)
        assert batch.shape[1] % 4 == 0 and batch.shape[1] <= 48
        widths.add(batch.shape[1])
        assert all(any(_is_slice_of(c, f) for f in data.features) for c in batch)
    lengths = set()
    longest = max(len(f) for f in data.features)
    for _ in range(30):
        b = transformer_batch(data, rng, 4, 4, 8, 80, 20)
        lengths.add(b.features.shape[1])
        for crop, cap in zip(b.features, b.captions):
            assert _is_slice_of(crop, data.features[data.caption_entry[cap]])
            assert b.features.shape[1] % 4 == 0 and b.features.shape[1] <= 80
    assert len(lengths) > 3
    # Lengths are not capped by the shortest clip drawn: long crops occur (clips are 15-88 rows).
    assert max(lengths) > 40 and max(lengths) <= min(80, longest)
