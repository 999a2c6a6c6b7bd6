"""A start pose from a picture: what Pose from Image and Text-to-Motion RAG's start_pose cost.

Run: OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/bench_image_pose.py [rounds]   (default 5)

Prints, on the real picture the tests use (tests/unit/image_pose_assets.py, 350x350):
  - pose_from_image: the first call (BlazePose's graph built, the model read from the wheel) and the
    median of the next `rounds` (each builds the graph again: one picture, one detector);
  - start_from_pose: splicing a 196-frame motion after the pose (turn, blend, HumanML3D features);
  - how far the pose is from the generated motion's first frame before the blend: the largest joint
    distance between the pose and the built-in demo model's first generated frame (turned and moved
    to the pose), for a few texts, i.e. how much the 8-frame blend has to hide for a model that cannot
    inpaint.
Needs the optional mediapipe extra and comfyui-workflow-templates-media-video.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent))  # the pack root: common.standalone
from common.standalone import load_pack  # noqa: E402

load_pack()

import numpy as np  # noqa: E402

from motionrag_suite.models.motion import image_pose as ip  # noqa: E402
from motionrag_suite.models.motion import library  # noqa: E402
from unit import image_pose_assets as assets  # noqa: E402

TEXTS = ("a person walks forward", "a person jumps up and down", "a person does a cartwheel")


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(rounds: int = 5) -> None:
    if not assets.detector_ready():
        sys.exit("needs the mediapipe extra and comfyui-workflow-templates-media-video (run .ci/setup)")
    picture = assets.person_picture()
    first = seconds(lambda: ip.pose_from_image(picture))
    again = statistics.median(seconds(lambda: ip.pose_from_image(picture)) for _ in range(rounds))
    print(f"pose_from_image {picture.shape[1]}x{picture.shape[0]}: first call {first * 1000:.0f} ms, "
          f"then median {again * 1000:.0f} ms over {rounds}")

    pose = ip.pose_from_image(picture).joints[0]
    walk = library.load_clip("walk_forward").resampled(20.0)
    motion = walk.replace(joints=np.resize(walk.joints, (196, 22, 3)), features=None)
    splice = statistics.median(seconds(lambda: ip.start_from_pose(pose, motion, hold_frames=4))
                               for _ in range(rounds))
    print(f"start_from_pose, 196 frames: median {splice * 1000:.1f} ms over {rounds}")

    import torch

    from motionrag_suite.models.t2m.checkpoint import load_model
    from motionrag_suite.models.t2m.folders import BUILTIN_FOLDER
    from motionrag_suite.retrieval.text_encoder import get_text_encoder

    torch.set_num_threads(1)
    net = load_model(BUILTIN_FOLDER, "cpu")
    encoder = get_text_encoder(net.config.text_encoder)
    for text in TEXTS:
        gen = net.generate(encoder.encode([text])[0], (), length_frames=60, seed=0)
        moved = ip.start_from_pose(pose, gen, hold_frames=4, blend_frames=0).joints[4]
        gap = np.linalg.norm(moved - pose, axis=-1).max()
        print(f"demo model, {text!r}: pose to first generated frame, largest joint gap {gap * 100:.0f} cm")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
