"""The shipped MoMask workflow (workflows/motionrag_momask_text_to_motion.json: Load Motion DB ->
Text-to-Motion RAG with a MoMask model -> Render Skeleton -> Save Animated WEBP, and Save Motion as
BVH) run as it is in a real ComfyUI. No released weights exist on a test machine, so the tiny MoMask
model in the released layout (tests/unit/momask_tiny.py) and a tiny random CLIP are written into the
server's models folder under other names, and only those names are swapped in the graph (as
test_i2v_graph.py does). Outputs say the mechanics work, nothing about quality.

Checked: the model and CLIP dropdowns list the folders; with retrieval the references come back and
the length is theirs; the WEBP and the BVH have the motion's frames; at strength 0 the motion equals
the library's plain MoMask generation for the same CLIP text feature (the server adds nothing of its
own); a second Text-to-Motion RAG node keeps the first one's start (temporal inpainting); a missing
CLIP folder fails naming the input and giving the download command."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from harness.comfy_server import REPO_ROOT, output_files
from harness.workflow_convert import ui_to_api
from integration.test_comfy_pack import check_animation, npz_joints, parse_bvh, saved_files
from unit import momask_tiny as tiny

WORKFLOW = REPO_ROOT / "workflows" / "motionrag_momask_text_to_motion.json"
T2M, SAVE, RENDER = "MotionRAGTextToMotion", "MotionRAGSaveMotion", "MotionRAGRenderSkeleton"
RELEASED_MODEL, RELEASED_CLIP = "t2m", "clip-vit-base-patch32"     # what the workflow names
MODEL, CLIP = "tiny-momask", "tiny-clip"                            # the stand-ins written here


@pytest.fixture(scope="module")
def stand_ins(comfy):
    return tiny.write_stand_ins(comfy.models_dir / "motionrag", MODEL, CLIP)


@pytest.fixture(scope="module")
def info(comfy, stand_ins):
    return comfy.object_info()           # after the folders exist, so the dropdowns list them


def workflow_graph(info, **t2m_inputs) -> tuple[dict, str]:
    ui = json.loads(WORKFLOW.read_text(encoding="utf-8"))
    graph = ui_to_api(ui, info)
    (t2m,) = [nid for nid, n in graph.items() if n["class_type"] == T2M]
    assert graph[t2m]["inputs"]["model"] == RELEASED_MODEL and graph[t2m]["inputs"]["clip"] == RELEASED_CLIP
    graph[t2m]["inputs"].update(model=MODEL, clip=CLIP, **t2m_inputs)
    graph["probe"] = {"class_type": SAVE, "inputs": {"motion": [t2m, 0], "filename_prefix": "momask/probe",
                                                     "format": "npz"}}
    return graph, t2m


def probe_joints(comfy, entry, probe="probe") -> np.ndarray:
    (f,) = saved_files(comfy, {"outputs": {probe: entry["outputs"][probe]}}, ".npz")
    joints, fps = npz_joints(comfy.view(f))
    assert fps == 20.0
    return joints


def test_the_workflow_declares_the_released_files_it_needs():
    extra = json.loads(WORKFLOW.read_text(encoding="utf-8"))["extra"]
    needs = extra["motionrag_requires_models"]
    assert any(p.startswith(f"t2m/{RELEASED_MODEL}/") and p.endswith("latest.tar") for p in needs)
    assert f"clip/{RELEASED_CLIP}/model.safetensors" in needs


def test_workflow_retrieves_generates_renders_and_saves(comfy, info):
    spec = info[T2M]["input"]
    assert MODEL in spec["required"]["model"][0] and CLIP in spec["optional"]["clip"][0]
    graph, t2m = workflow_graph(info)
    entry = comfy.run(graph, timeout=600)
    out = entry["outputs"]
    joints = probe_joints(comfy, entry)
    frames = len(joints)

    (summary,) = out[t2m]["text"]
    assert f"MoMask {MODEL}" in summary and "strength 1" in summary, summary
    lengths = [int(n) for n in re.findall(r"\((\d+) frames @ 20 fps\)", summary)]
    assert len(lengths) == graph[t2m]["inputs"]["references"], summary
    # length 0: the references' mean length, floored to MoMask's 4-frame tokens (+1: features -> frames)
    assert frames - 1 == min(round(sum(lengths) / len(lengths)) // 4 * 4, 196), (frames, summary)
    assert np.isfinite(joints).all() and joints.shape[1:] == (22, 3)
    (payload,) = out[t2m]["motionrag_motion"]
    assert payload["frames"] == frames

    (render,) = [nid for nid, n in graph.items() if n["class_type"] == RENDER]
    (webp,) = [f for _, f in output_files(entry) if f["filename"].endswith(".webp")]
    r = graph[render]["inputs"]
    check_animation(comfy.view(webp), r["width"], r["height"], frames, 20.0)
    (bvh_node,) = [nid for nid, n in graph.items() if n["class_type"] == SAVE and n["inputs"]["format"] == "bvh"]
    (bvh_file,) = [f for nid, f in output_files(entry) if nid == bvh_node]
    bvh = parse_bvh(comfy.view(bvh_file).decode("utf-8"))
    assert len(bvh["joints"]) == 22 and bvh["frames"] == frames


def test_strength_zero_is_the_library_s_plain_momask_and_kept_frames_edit(comfy, info, stand_ins):
    from motionrag_suite.models.momask import load_clip_text, load_momask
    from motionrag_suite.models.motion.humanml3d import features_to_motion

    text = "a person walks forward"
    graph, t2m = workflow_graph(info, text=text, guidance_retrieval=0.0, length=40, seed=7)
    # a second generator that keeps the first motion's first 16 frames and makes the rest
    graph["edit"] = {"class_type": T2M, "inputs": dict(graph[t2m]["inputs"], keep_motion=[t2m, 0], length=48,
                                                        keep_start_frames=16, seed=8, text="a person jumps")}
    graph["probe_edit"] = {"class_type": SAVE, "inputs": {"motion": ["edit", 0], "filename_prefix": "momask/edit",
                                                          "format": "npz"}}
    entry = comfy.run(graph, timeout=600)
    assert "no retrieval" in entry["outputs"][t2m]["text"][0]
    joints = probe_joints(comfy, entry)

    model = load_momask(stand_ins / "t2m" / MODEL)
    emb = load_clip_text(stand_ins / "clip" / CLIP).encode([text])[0]
    plain = features_to_motion(model.generate(emb, length_frames=40, seed=7, steps=10).features)
    np.testing.assert_allclose(joints, plain.joints, atol=1e-4)

    edited = probe_joints(comfy, entry, "probe_edit")
    assert len(edited) == 49 and "kept 16 start / 0 end frames" in entry["outputs"]["edit"]["text"][0]


def test_missing_clip_fails_naming_the_input_with_the_download_command(comfy, info):
    graph, t2m = workflow_graph(info)
    graph[t2m]["inputs"]["clip"] = RELEASED_CLIP           # listed by default, absent on this server
    text = comfy.failure_message(graph)
    assert "clip" in text and "huggingface-cli download openai/clip-vit-base-patch32" in text, text[:800]
    assert RELEASED_CLIP in text


def test_chain_node_makes_one_motion_through_its_prompts(comfy, info):
    spec = info["MotionRAGTextToMotionChain"]["input"]
    assert MODEL in spec["required"]["model"][0]
    graph = {
        "chain": {"class_type": "MotionRAGTextToMotionChain",
                  "inputs": {"segments": "a person walks forward | 1.6\na person jumps | 1.2\na person sits | 1",
                             "model": MODEL, "seed": 0, "guidance_text": 4.0, "steps": 3, "overlap_frames": 8,
                             "clip": CLIP}},
        "probe": {"class_type": SAVE, "inputs": {"motion": ["chain", 0], "filename_prefix": "momask/chain",
                                                 "format": "npz"}},
    }
    entry = comfy.run(graph, timeout=600)
    joints = probe_joints(comfy, entry)
    assert len(joints) == 32 + 24 + 20 + 1 and np.isfinite(joints).all()
    assert entry["outputs"]["chain"]["motionrag_motion"][0]["frames"] == len(joints)


def test_models_stay_between_runs_and_free_model_and_node_cache_frees_them(comfy, info):
    """The node object owns the MoMask model and its CLIP: a second run reuses them; 'Free model and
    node cache' drops ComfyUI's node objects and both are garbage-collected (their finalizers log)."""
    import time

    def run(seed):
        mark = len(comfy.log_text())
        comfy.run(workflow_graph(info, length=24, seed=seed, steps=2)[0], timeout=600)
        return comfy.log_text()[mark:]

    run(31)
    log = run(32)
    assert f"t2m MoMask {MODEL} loaded from disk" not in log and f"t2m_clip CLIP {CLIP} loaded from disk" not in log, \
        log[-2000:]
    mark = len(comfy.log_text())
    status, raw = comfy._request("POST", "/free", {"unload_models": True, "free_memory": True})
    assert status == 200, (status, raw[:500])
    deadline = time.monotonic() + 60
    wanted = [f"MotionRAG: t2m MoMask {MODEL} freed", f"MotionRAG: t2m_clip CLIP {CLIP} freed"]
    while not all(w in comfy.log_text()[mark:] for w in wanted):
        assert time.monotonic() < deadline, f"still held 60 s after /free:\n{comfy.log_text()[mark:][-2000:]}"
        time.sleep(0.2)
    assert f"t2m MoMask {MODEL} loaded from disk" in run(33)
