"""Text-to-Motion RAG with a MoMask-layout model folder, the node called directly (no ComfyUI running):
the tiny MoMask model (tests/unit/momask_tiny.py) in models/motionrag/t2m/t2m and a tiny random CLIP in
models/motionrag/clip/clip-vit-base-patch32 stand in for the released files. Checked: the dropdowns
list them, generation with and without retrieval (strength 0 is the library's plain MoMask draw for
draw), kept frames, ownership, and a clear error per bad input. The real-server run is
tests/integration/test_t2m_momask_graph.py."""
from __future__ import annotations

import numpy as np
import pytest

from motionrag_suite.common.errors import InputError
from motionrag_suite.models.motion.motiondiff_compat import from_motion_data, to_motion_data
from motionrag_suite.nodes import t2m_momask
from motionrag_suite.nodes import t2m_nodes as tn
from motionrag_suite.nodes.model_owner import drop_group
from motionrag_suite.retrieval import build_from_library, get_database

from . import momask_tiny as tiny
from .test_t2m_fixtures import one_thread  # noqa: F401

MODEL = "t2m"                    # the folder name MoMask's download unzips to
CLIP = t2m_momask.CLIP_DEFAULT


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("momask_node_root")
    build_from_library(root, "builtin")
    tiny.write_folder(root / "t2m" / MODEL)
    tiny.write_clip(root / "clip" / CLIP)
    return root


@pytest.fixture(autouse=True)
def _models_dir(models_root, monkeypatch):
    monkeypatch.setenv("MOTIONRAG_MODELS_DIR", str(models_root))
    yield
    drop_group(t2m_momask.GROUP)
    drop_group(t2m_momask.CLIP_GROUP)


@pytest.fixture(scope="module")
def db(models_root):
    return get_database(models_root, "builtin")


def run(db, node=None, **kw):
    args = dict(text="a person does a cartwheel", motion_db=db, model=MODEL, length=40, seed=0,
                guidance_text=4.0, guidance_retrieval=1.0, references=2, steps=3)
    args.update(kw)
    return (node or tn.TextToMotionRAG()).generate(**args)


def test_dropdowns_list_the_momask_folder_and_the_clip_folder(models_root):
    spec = tn.TextToMotionRAG.INPUT_TYPES()
    assert MODEL in spec["required"]["model"][0]
    assert spec["optional"]["clip"][0][0] == CLIP
    assert {"clip", "download", "keep_motion", "keep_start_frames", "keep_end_frames"} <= set(spec["optional"])


def test_generates_with_retrieved_references_as_a_prior(db):
    out = run(db)
    motion = from_motion_data(out["result"][0])
    refs = out["result"][1]
    assert motion.num_frames == 41 and motion.joints.shape == (41, 22, 3)      # 40 feature rows + 1
    assert np.isfinite(motion.joints).all()
    assert len(refs) == 2 and "cartwheel" in refs[0].caption
    (summary,) = out["ui"]["text"]
    assert "MoMask t2m" in summary and "strength 1" in summary
    a = from_motion_data(run(db, seed=5)["result"][0]).joints
    np.testing.assert_array_equal(a, from_motion_data(run(db, seed=5)["result"][0]).joints)
    assert np.abs(from_motion_data(run(db, seed=5, guidance_retrieval=8.0)["result"][0]).joints - a).max() > 1e-3


def test_strength_zero_is_plain_momask_without_retrieval(db, models_root):
    from motionrag_suite.models.momask import load_clip_text, load_momask

    out = run(db, guidance_retrieval=0.0, seed=3)
    assert len(out["result"][1]) == 0 and "no retrieval" in out["ui"]["text"][0]
    model = load_momask(models_root / "t2m" / MODEL)
    emb = load_clip_text(models_root / "clip" / CLIP).encode(["a person does a cartwheel"])[0]
    plain = model.generate(emb, length_frames=40, seed=3, steps=3)
    np.testing.assert_allclose(from_motion_data(out["result"][0]).features, plain.features, atol=1e-5)
    # length 0 without retrieval: MoMask's length estimator draws it (whole tokens)
    free = from_motion_data(run(db, guidance_retrieval=0.0, length=0)["result"][0])
    assert (free.num_frames - 1) % 4 == 0


def test_length_zero_with_references_takes_their_mean_length(db):
    out = run(db, length=0)
    refs = out["result"][1]
    mean = sum(r.duration for r in refs) / len(refs) * 20
    frames = from_motion_data(out["result"][0]).num_frames - 1
    assert frames == min(int(round(mean)) // 4 * 4, 196)


def test_kept_frames_inpaint_between_them(db):
    source = run(db, length=48, seed=1)["result"][0]
    out = run(db, length=0, seed=2, keep_motion=source, keep_start_frames=16, keep_end_frames=8)
    motion = from_motion_data(out["result"][0])
    kept = from_motion_data(source)
    assert motion.num_frames == kept.num_frames == 49
    assert "kept 16 start / 8 end frames" in out["ui"]["text"][0]
    # kept tokens come back re-decoded: near the source, far nearer than a fresh motion's
    fresh = from_motion_data(run(db, length=48, seed=2)["result"][0])
    near = np.abs(motion.features[:12] - kept.features[:12]).mean()
    assert near < np.abs(fresh.features[:12] - kept.features[:12]).mean()


def test_the_node_owns_both_models_and_keep_loaded_off_frees_them(db):
    node = tn.TextToMotionRAG()
    run(db, node=node)
    held, text_held = node._held
    first = held.get()
    run(db, node=node)
    assert node._held[0].get() is first
    run(db, node=node, keep_loaded=False)
    assert node._held is None


@pytest.mark.parametrize("inputs,name,needle", [
    (dict(length=2), "length", "4"),
    (dict(length=400), "length", "196"),
    (dict(keep_start_frames=8), "keep_motion", "link one"),
    (dict(clip="no-such-clip"), "clip", "huggingface-cli download openai/clip-vit-base-patch32"),
])
def test_bad_inputs_are_refused_by_name(db, inputs, name, needle):
    with pytest.raises(InputError) as e:
        run(db, **inputs)
    assert e.value.input == name and needle in str(e.value), str(e.value)


def test_keep_frames_of_the_whole_motion_and_on_the_demo_model_are_refused(db):
    source = run(db, length=24)["result"][0]
    with pytest.raises(InputError) as e:
        run(db, keep_motion=source, keep_start_frames=20, keep_end_frames=8)
    assert e.value.input == "keep_start_frames"
    with pytest.raises(InputError) as e:
        run(db, model=tn.BUILTIN_MODEL, keep_motion=source, keep_start_frames=8)
    assert e.value.input == "keep_start_frames" and "MoMask" in str(e.value)


def test_a_broken_momask_folder_names_the_model_input(db, models_root):
    import shutil

    broken = models_root / "t2m" / "broken-momask"
    shutil.copytree(models_root / "t2m" / MODEL, broken)
    (broken / tiny.VQ_NAME / "meta" / "std.npy").unlink()
    with pytest.raises(InputError) as e:
        run(db, model="broken-momask")
    assert e.value.input == "model" and "std.npy" in str(e.value)


def test_to_motion_data_round_trip_keeps_the_features(db):
    motion = from_motion_data(run(db)["result"][0])
    assert from_motion_data(to_motion_data(motion)).features.shape == (40, 263)


def test_a_kit_ml_model_is_refused_naming_the_model(db, models_root):
    tiny.write_folder(models_root / "t2m" / "kit", dataset="kit")
    with pytest.raises(InputError) as e:
        run(db, model="kit")
    assert e.value.input == "model" and "KIT-ML" in str(e.value)


# ------------------------------------------------------------------ Text-to-Motion Chain
def chain_run(node=None, **kw):
    from motionrag_suite.nodes import t2m_chain_nodes as tc

    args = dict(segments="a person walks | 1.2\na person jumps | 1", model=MODEL, seed=0, guidance_text=4.0,
                steps=2, overlap_frames=8)
    args.update(kw)
    return (node or tc.TextToMotionChain()).generate(**args)


def test_chain_lists_momask_folders_only_and_joins_the_segments(models_root):
    from motionrag_suite.nodes import t2m_chain_nodes as tc

    choices = tc.TextToMotionChain.INPUT_TYPES()["required"]["model"][0]
    assert choices[0] == "t2m" and tn.BUILTIN_MODEL not in choices
    out = chain_run()
    motion = from_motion_data(out["result"][0])
    assert motion.num_frames == 24 + 20 + 1             # 1.2 s -> 24 frames, 1 s -> 20, + the last frame
    assert np.isfinite(motion.joints).all()
    assert "'a person jumps' 20 frames" in out["ui"]["text"][0]


def test_chain_starts_from_a_start_pose(models_root):
    from motionrag_suite.models.motion import image_pose as ip
    from motionrag_suite.models.motion import library

    pose = library.load_clip("dance_a").joints[30]
    out = chain_run(start_pose=to_motion_data(ip.held(pose, 2)))
    motion = from_motion_data(out["result"][0])
    assert motion.num_frames == 4 + 24 + 20 + 1          # the held pose's token comes before the segments
    np.testing.assert_array_equal(motion.joints[:4], np.repeat(pose[None].astype(np.float32), 4, axis=0))
    with pytest.raises(InputError) as e:
        chain_run(start_pose={"neither": 1})
    assert e.value.input == "start_pose"


@pytest.mark.parametrize("segments,needle", [
    ("", "empty"),
    ("a person walks", "text | seconds"),
    ("a person walks | 0", "segment 0"),
    ("a person walks | 2\na person runs | 9.8", "segment 1"),
])
def test_chain_bad_segments_are_refused_by_name(segments, needle):
    from motionrag_suite.nodes import t2m_chain_nodes as tc

    assert tc.TextToMotionChain.VALIDATE_INPUTS(segments="a | 1") is True
    with pytest.raises(InputError) as e:
        chain_run(segments=segments)
    assert e.value.input == "segments" and needle in str(e.value), str(e.value)


def test_chain_refuses_a_model_that_is_not_momask(models_root):
    (models_root / "t2m" / "not-momask").mkdir(exist_ok=True)
    with pytest.raises(InputError) as e:
        chain_run(model="not-momask")
    assert e.value.input == "model" and "MoMask" in str(e.value)


def test_progress_reports_every_decoding_pass_and_cancel_stops(db, monkeypatch):
    from motionrag_suite.nodes import comfy_env

    totals, seen = [], []

    def fake_progress(total):       # stands in for ComfyUI's bar, which this process does not have
        totals.append(total)
        return lambda i: seen.append(i)

    monkeypatch.setattr(comfy_env, "progress", fake_progress)
    run(db, steps=4)
    assert totals == [4] and seen == [1, 2, 3, 4]
    chain_run(steps=3)              # two segments: one bar over both
    assert totals[1:] == [6] and seen[4:] == [1, 2, 3, 4, 5, 6]

    class Cancelled(Exception):
        pass

    def cancelling(_total):
        def step(i):
            if i == 2:
                raise Cancelled()
        return step

    monkeypatch.setattr(comfy_env, "progress", cancelling)
    with pytest.raises(Cancelled):
        run(db, steps=4)


# ------------------------------------------- a MoMask-layout model of the pack's own trainer (MiniLM)
@pytest.fixture(scope="module")
def ours(models_root):
    """A tiny model trained by models/momask/train.py on MiniLM features (opt.txt text_encoder), briefly."""
    from motionrag_suite.models.momask.export import write_momask_folder
    from motionrag_suite.models.momask.train import TrainingSet, TrainSettings, pad_text_features, train_momask
    from motionrag_suite.models.motion import humanml3d as h3d
    from motionrag_suite.models.motion import library
    from motionrag_suite.retrieval import get_text_encoder
    from motionrag_suite.training.momask import PRESETS

    config, _ = PRESETS["tiny"]
    clips = ("walk", "jump")
    feats = [h3d.joints_to_features(library.load_clip(n).joints) for n in clips]
    text = pad_text_features(get_text_encoder("all-MiniLM-L6-v2", models_root).encode(
        ["a person walks", "a person jumps"]), 512)
    mean, std = np.concatenate(feats).mean(0), np.maximum(np.concatenate(feats).std(0), 1e-2)
    settings = TrainSettings(seed=1, rvq_steps=4, masked_steps=4, residual_steps=4, length_steps=4, batch_size=2,
                             warmup=1)
    states = train_momask(config, TrainingSet(feats, np.arange(2), text), mean, std, settings, log=lambda s: None).states
    write_momask_folder(models_root / "t2m" / "ours", config, states, mean, std,
                        steps={"rvq": 4, "masked": 4, "residual": 4, "length": 4},
                        record={"text_encoder": "all-MiniLM-L6-v2", "text_feature_dim": 384, "seed": 1})
    return models_root / "t2m" / "ours"


def test_a_model_of_our_trainer_is_prompted_with_its_own_encoder_not_clip(db, models_root, ours):
    from motionrag_suite.models.momask import load_momask
    from motionrag_suite.models.momask.train import pad_text_features
    from motionrag_suite.retrieval import get_text_encoder

    # no CLIP folder of that name exists: the model's own encoder (MiniLM) is used, CLIP is not asked for
    out = run(db, model="ours", guidance_retrieval=0.0, seed=2, clip="no-such-clip")
    motion = from_motion_data(out["result"][0])
    model = load_momask(ours)
    emb = pad_text_features(get_text_encoder("all-MiniLM-L6-v2", models_root).encode(["a person does a cartwheel"]),
                            512)[0]
    raw = model.generate(emb, length_frames=40, seed=2, guidance=4.0, steps=3)
    np.testing.assert_allclose(motion.features, raw.features, atol=1e-5)
    chained = from_motion_data(chain_run(model="ours", clip="no-such-clip")["result"][0])
    assert chained.num_frames == 24 + 20 + 1
    # a released folder (CLIP) still needs its CLIP folder
    with pytest.raises(InputError) as e:
        run(db, clip="no-such-clip")
    assert e.value.input == "clip"
