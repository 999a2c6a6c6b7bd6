"""Text-to-Motion RAG inside a real ComfyUI: the shipped workflow (Load Motion DB -> Text-to-Motion
RAG -> Render Skeleton -> Save Animated WEBP, and Save Motion as BVH) on the shipped default
model, its outputs checked (frame counts agree, the BVH parses, the motion moves and follows the
text and seed), and bad inputs failing with errors that name the input.

Without the shipped weights (models/t2m/weights/motionrag-t2m-small) the graph runs on a tiny
model that this module trains for a few steps on the built-in database into the server's models
folder: real weights, never made-up ones."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from harness.comfy_server import REPO_ROOT, output_files
from harness.workflow_convert import ui_to_api
from integration.test_comfy_pack import check_animation, npz_joints, parse_bvh, saved_files

WORKFLOW = REPO_ROOT / "workflows" / "motionrag_text_to_motion.json"
SHIPPED = REPO_ROOT / "models" / "t2m" / "weights" / "motionrag-t2m-small"
T2M, SAVE, RENDER = "MotionRAGTextToMotion", "MotionRAGSaveMotion", "MotionRAGRenderSkeleton"
BUILTIN_MODEL = "motionrag-t2m-small (built-in)"
FALLBACK = "tiny-from-test"


@pytest.fixture(scope="module")
def model_name(comfy):
    """The shipped model, or a tiny one trained here when the pack has none."""
    if (SHIPPED / "model.safetensors").is_file():
        return BUILTIN_MODEL
    from motionrag_suite.training.t2m import train
    from motionrag_suite.retrieval import build_from_library

    root = comfy.models_dir / "motionrag"
    build_from_library(root, "t2m_train_db")
    train(root, "t2m_train_db", root / "t2m" / FALLBACK, config="tiny", seed=0, steps=(60, 60, 20), threads=1,
          progress=False, log=lambda _m: None)
    return FALLBACK


def workflow_graph(object_info, model_name: str, **t2m_inputs) -> tuple[dict, str]:
    ui = json.loads(WORKFLOW.read_text(encoding="utf-8"))
    graph = ui_to_api(ui, object_info)
    (t2m,) = [nid for nid, n in graph.items() if n["class_type"] == T2M]
    graph[t2m]["inputs"].update(model=model_name, **t2m_inputs)
    # A probe: the generated motion as .npz too, to read its joints.
    graph["probe"] = {"class_type": SAVE, "inputs": {"motion": [t2m, 0], "filename_prefix": "t2m/probe",
                                                     "format": "npz"}}
    return graph, t2m


def probe_joints(comfy, entry) -> np.ndarray:
    (f,) = saved_files(comfy, {"outputs": {"probe": entry["outputs"]["probe"]}}, ".npz")
    joints, fps = npz_joints(comfy.view(f))
    assert fps == 20.0
    return joints


def ref_lengths(summary: str) -> list[int]:
    return [int(n) for n in re.findall(r"\((\d+) frames @ 20 fps\)", summary)]


def test_workflow_generates_renders_and_saves(comfy, object_info, model_name):
    assert object_info[T2M]["input"]["required"]["model"][0][0] == BUILTIN_MODEL
    graph, t2m = workflow_graph(object_info, model_name)
    entry = comfy.run(graph, timeout=300)
    out = entry["outputs"]
    joints = probe_joints(comfy, entry)
    frames = len(joints)

    # length 0 in the workflow: the retrieved clips' mean length.
    (summary,) = out[t2m]["text"]
    lengths = ref_lengths(summary)
    assert len(lengths) == graph[t2m]["inputs"]["references"], summary
    assert frames == min(round(sum(lengths) / len(lengths)), 257), (frames, summary)
    assert "cartwheel" in summary.splitlines()[1], summary
    (payload,) = out[t2m]["motionrag_motion"]
    assert payload["frames"] == frames and payload["caption"] == "a person does a cartwheel"

    # The motion moves: the pelvis travels or the limbs swing, not a frozen pose.
    assert np.isfinite(joints).all() and joints.shape[1:] == (22, 3)
    assert joints.std(axis=0).max() > 0.05, "the generated motion barely moves"
    assert np.abs(np.diff(joints, axis=0)).mean() > 1e-3

    # Save Animated WEBP: one animation frame per motion frame at the render size.
    (render,) = [nid for nid, n in graph.items() if n["class_type"] == RENDER]
    webps = [f for nid, f in output_files(entry) if f["filename"].endswith(".webp")]
    assert len(webps) == 1
    r = graph[render]["inputs"]
    check_animation(comfy.view(webps[0]), r["width"], r["height"], frames, 20.0)

    # Save Motion's BVH: 22 joints, the same frame count, a moving root.
    (bvh_node,) = [nid for nid, n in graph.items() if n["class_type"] == SAVE and n["inputs"]["format"] == "bvh"]
    (bvh_file,) = [f for nid, f in output_files(entry) if nid == bvh_node]
    bvh = parse_bvh(comfy.view(bvh_file).decode("utf-8"))
    assert len(bvh["joints"]) == 22 and bvh["frames"] == frames
    assert abs(bvh["frame_time"] - 0.05) < 1e-6
    assert bvh["values"][:, :3].std(axis=0).max() > 1e-3, "root never moves"


def test_seed_and_text_change_the_motion_and_a_seed_repeats(comfy, object_info, model_name):
    def joints(**kw):
        graph, _ = workflow_graph(object_info, model_name, length=60, **kw)
        return probe_joints(comfy, comfy.run(graph, timeout=300))

    a = joints(seed=3)
    assert len(a) == 60
    np.testing.assert_allclose(joints(seed=3, references=2, steps=10), a, atol=1e-6)
    assert np.abs(joints(seed=4) - a).max() > 0.01
    walk = joints(seed=3, text="a person walks forward")
    assert np.abs(walk - a).max() > 0.01


def test_bad_inputs_fail_naming_the_input(comfy, object_info, model_name):
    import torch

    t2m_root = comfy.models_dir / "motionrag" / "t2m"
    source = SHIPPED if model_name == BUILTIN_MODEL else t2m_root / model_name
    # A model whose config.json does not describe its weights, and a pickle checkpoint.
    bad = t2m_root / "mismatched"
    bad.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "model.safetensors", bad)
    cfg = json.loads((source / "config.json").read_text())
    cfg["model"]["transformer"]["latent"] += 8
    (bad / "config.json").write_text(json.dumps(cfg))
    pickled = t2m_root / "pickled"
    pickled.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "config.json", pickled)
    torch.save({"weights": torch.zeros(3)}, pickled / "model.pt")
    choices = comfy.object_info(T2M)["input"]["required"]["model"][0]
    assert {"mismatched", "pickled"} <= set(choices), choices

    cases = {
        "empty text": ({"text": "   "}, ["text", "empty"]),
        "length too long": ({"length": 999}, ["length", "257"]),
        "length 1": ({"length": 1}, ["length", "2"]),
        "config mismatch": ({"model": "mismatched"}, ["model", "does not match"]),
        "pickle checkpoint": ({"model": "pickled"}, ["model", "pickle"]),
    }
    problems = []
    for label, (inputs, needles) in cases.items():
        graph, t2m = workflow_graph(object_info, model_name)
        graph[t2m]["inputs"].update(inputs)
        text = comfy.failure_message(graph)
        missing = [n for n in needles if n.lower() not in text.lower()]
        if missing:
            problems.append(f"{label}: error does not name {missing}: {text[:500]}")
        assert comfy.is_alive(), f"server died after {label}:\n{comfy.log_tail()}"
    assert not problems, "\n".join(problems)


def test_the_model_stays_between_runs_and_free_model_and_node_cache_frees_it(comfy, object_info, model_name):
    """The node object owns the model: a second run reuses it; 'Free model and node cache' drops
    ComfyUI's node objects, and the model is garbage-collected (a weak finalizer logs 'freed')."""
    import time

    def run(seed):
        mark = len(comfy.log_text())
        comfy.run(workflow_graph(object_info, model_name, length=40, seed=seed)[0], timeout=300)
        return comfy.log_text()[mark:]

    run(21)
    log = run(22)                                         # a new seed: the node runs again
    assert f"t2m model {model_name} loaded from disk" not in log, log[-2000:]

    mark = len(comfy.log_text())
    status, raw = comfy._request("POST", "/free", {"unload_models": True, "free_memory": True})
    assert status == 200, (status, raw[:500])
    deadline = time.monotonic() + 60
    while f"MotionRAG: t2m model {model_name} freed" not in comfy.log_text()[mark:]:
        assert time.monotonic() < deadline, f"still held 60 s after /free:\n{comfy.log_text()[mark:][-2000:]}"
        time.sleep(0.2)
    assert f"t2m model {model_name} loaded from disk" in run(23)
