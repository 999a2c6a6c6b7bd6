"""The pack's own MoMask-layout training (models/momask/train.py, export.py, `python -m training momask`):
the folder it writes is read by the released-model loader with every key equal to what was trained,
training lowers the losses, the same seed gives byte-identical files, bad options are refused by name
before any work."""
import hashlib
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from motionrag_suite.common.errors import InputError
from motionrag_suite.models.momask import load_momask
from motionrag_suite.models.momask.checkpoint import find_parts, read_tar
from motionrag_suite.models.momask.config import read_opt
from motionrag_suite.models.momask.export import write_momask_folder
from motionrag_suite.models.momask.train import TrainingSet, TrainSettings, pad_text_features, train_momask
from motionrag_suite.models.motion import humanml3d as h3d
from motionrag_suite.models.motion import library
from motionrag_suite.retrieval import build_database, EntrySpec
from motionrag_suite.training.momask import PRESETS, train

PACK = Path(__file__).resolve().parents[2]
CONFIG, _ = PRESETS["tiny"]
SETTINGS = TrainSettings(seed=5, rvq_steps=40, masked_steps=40, residual_steps=30, length_steps=20, batch_size=8,
                         warmup=4, transformer_lr=2e-3)
CLIPS = ("walk", "jump", "punch", "roll")


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    feats = [h3d.joints_to_features(library.load_clip(n).joints) for n in CLIPS]
    rng = np.random.default_rng(0)
    text = pad_text_features(rng.standard_normal((8, 384)).astype(np.float32) * 0.1, 512)
    mean = np.concatenate(feats).mean(0)
    std = np.maximum(np.concatenate(feats).std(0), 1e-2)
    return TrainingSet(features=feats, caption_entry=np.repeat(np.arange(4), 2), text_features=text), mean, std


def _write(out, data, settings=SETTINGS, **kw):
    ts, mean, std = data
    trained = train_momask(CONFIG, ts, mean, std, settings, log=lambda s: None)
    steps = {"rvq": settings.rvq_steps, "masked": settings.masked_steps, "residual": settings.residual_steps,
             "length": settings.length_steps}
    write_momask_folder(out, CONFIG, trained.states, mean, std, steps=steps,
                        record={"text_encoder": "all-MiniLM-L6-v2", "text_feature_dim": 384, "seed": settings.seed},
                        **kw)
    return trained


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("mm") / "model"
    return out, _write(out, data)


def _digests(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_released_loader_reads_every_key_as_trained(trained):
    out, result = trained
    parts = find_parts(out)
    assert parts["length"] is not None
    assert read_opt(parts["masked"] / "opt.txt")["text_encoder"] == "all-MiniLM-L6-v2"
    model = load_momask(out, convert=False)
    assert model.config.rvq == CONFIG.rvq and model.config.masked == CONFIG.masked
    assert model.config.residual == CONFIG.residual
    assert (model.config.text_encoder, model.config.text_feature_dim) == ("all-MiniLM-L6-v2", 384)
    for role, net in (("rvq", model.rvq), ("masked", model.masked), ("residual", model.residual),
                      ("length", model.length_estimator)):
        loaded = net.state_dict()
        assert sorted(loaded) == sorted(result.states[role]), role
        for key, value in result.states[role].items():
            assert torch.equal(loaded[key], value), (role, key)
    # the files hold exactly the keys MoMask's code saves under (read as the loader reads them)
    state = read_tar(parts["rvq"] / "model" / "net_best_fid.tar", "rvq")
    assert any(k.startswith("quantizer.layers.3.codebook") for k in state)
    out_motion = model.generate(pad_text_features(np.ones((1, 384), np.float32) * 0.1, 512)[0], length_frames=32,
                                seed=1, steps=4)
    assert out_motion.features.shape == (32, 263) and np.isfinite(out_motion.joints).all()


def test_training_lowers_the_losses(trained):
    _, result = trained
    # mean of the first and last 10 steps (the batches differ from step to step: single steps are noisy)
    drops = {role: 1 - np.mean(result.losses[role][-10:]) / np.mean(result.losses[role][:10])
             for role in ("rvq", "masked", "residual", "length")}
    assert drops["rvq"] > 0.05 and drops["masked"] > 0.05 and drops["length"] > 0.1, drops
    # the residual layers' codes are the hardest target at this size (and q changes from batch to batch)
    assert drops["residual"] > 0.0, drops


def test_same_seed_same_bytes_other_seed_other_bytes(trained, data, tmp_path):
    out, _ = trained
    again = tmp_path / "again"
    _write(again, data)
    assert _digests(again) == _digests(out)
    other = tmp_path / "other"
    _write(other, data, replace(SETTINGS, seed=6))
    a, b = _digests(out), _digests(other)
    assert a.keys() == b.keys()
    changed = [k for k in a if a[k] != b[k] and k.endswith(".tar")]
    assert len(changed) == 4, changed


@pytest.mark.parametrize("change,name", [
    (dict(rvq_steps=-1), "rvq_steps"), (dict(batch_size=0), "batch_size"), (dict(seed=-2), "seed"),
    (dict(transformer_lr=0.0), "transformer_lr"), (dict(quantize_dropout=1.5), "quantize_dropout"),
    (dict(window_tokens=(5, 2)), "window_tokens"),
])
def test_bad_settings_are_refused_by_name(data, change, name):
    ts, mean, std = data
    with pytest.raises(InputError) as e:
        train_momask(CONFIG, ts, mean, std, replace(SETTINGS, **change))
    assert e.value.input == name


def test_bad_data_and_config_are_refused_before_training(data):
    ts, mean, std = data
    with pytest.raises(InputError) as e:
        train_momask(CONFIG, replace(ts, text_features=ts.text_features[:, :384]), mean, std, SETTINGS)
    assert e.value.input == "text_features"
    with pytest.raises(InputError) as e:
        train_momask(CONFIG, replace(ts, features=[f[:, :251] for f in ts.features]), mean, std, SETTINGS)
    assert e.value.input == "features"
    with pytest.raises(InputError) as e:
        train_momask(CONFIG, ts, mean, np.zeros_like(std), SETTINGS)
    assert e.value.input == "mean"
    two = replace(CONFIG, rvq=replace(CONFIG.rvq, num_quantizers=2),
                  residual=replace(CONFIG.residual, num_quantizers=2))
    with pytest.raises(InputError) as e:
        train_momask(two, ts, mean, std, SETTINGS)
    assert e.value.input == "config"
    with pytest.raises(InputError) as e:
        pad_text_features(np.zeros((2, 600)), 512)
    assert e.value.input == "text_features"


def test_existing_output_is_kept_unless_overwrite(trained, data, tmp_path):
    out, result = trained
    before = _digests(out)
    _, mean, std = data
    with pytest.raises(InputError) as e:
        write_momask_folder(out, CONFIG, result.states, mean, std, steps={"rvq": 1, "masked": 1, "residual": 1},
                            record={})
    assert e.value.input == "out" and _digests(out) == before
    copy = tmp_path / "copy"
    write_momask_folder(copy, CONFIG, result.states, mean, std, steps={"rvq": 1, "masked": 1, "residual": 1},
                        record={})
    write_momask_folder(copy, CONFIG, result.states, mean, std, steps={"rvq": 2, "masked": 2, "residual": 2},
                        record={}, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]          # no temporary or old folder left behind


@pytest.fixture(scope="module")
def small_db(tmp_path_factory):
    root = tmp_path_factory.mktemp("mmdb")
    specs = [EntrySpec(motion=library.load_clip(n), captions=library.clip_captions(n)[:2], name=n, source_clip=n)
             for n in CLIPS]
    build_database(root, "four", specs)
    return root


def test_command_line_trains_on_a_database_and_refuses_bad_options(small_db, tmp_path):
    out = tmp_path / "cli"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "training", "momask", "--db-root", str(small_db), "--db", "four",
                           "--out", str(out), "--preset", "tiny", "--steps", "6,6,4,2", "--threads", "1"],
                          cwd=PACK, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = load_momask(out, convert=False)
    assert model.config.text_feature_dim == 384 and model.config.text_encoder == "all-MiniLM-L6-v2"
    opt = read_opt(find_parts(out)["rvq"] / "opt.txt")
    assert opt["database"] == "four" and opt["seed"] == 0
    # refused by name, before the database is read or anything is trained
    for kwargs, name in ((dict(preset="huge"), "preset"), (dict(steps=(1, 2)), "steps"),
                         (dict(batch_size=0), "batch_size")):
        with pytest.raises(InputError) as e:
            train(small_db, "four", tmp_path / "x", **kwargs)
        assert e.value.input == name
    with pytest.raises(InputError) as e:
        train(small_db, "four", out, preset="tiny")
    assert e.value.input == "out"
    proc = subprocess.run([sys.executable, "-m", "training", "momask", "--db-root", str(small_db), "--db", "nothere",
                           "--out", str(tmp_path / "y"), "--preset", "tiny"], cwd=PACK, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "nothere" in proc.stderr


def test_a_released_folder_still_means_clip(tmp_path):
    """MoMask's own opt.txt files record no text encoder: the loader says CLIP ViT-B/32, 512 values."""
    from . import momask_tiny as tiny

    model = load_momask(tiny.write_folder(tmp_path / "t2m"), convert=False)
    assert (model.config.text_encoder, model.config.text_feature_dim) == ("openai/clip-vit-base-patch32", 512)
