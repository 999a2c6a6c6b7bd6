"""GLB export of a 196-frame motion (HumanML3D's longest, 9.8 s at 20 fps): file size and write time.

    .venv/bin/python tests/benchmarks/bench_glb.py [repeats]

The motion is the built-in cartwheel stretched in time to 196 frames (a real motion-capture clip,
so the rotations are realistic); the time is for motion -> bytes on disk through save_glb, median
and best of the repeats, after one warm-up (pygltflib's import is not counted). The file is read back
to check that the joints come back within 1 mm.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import conftest  # noqa: E402,F401  (tests/conftest.py: loads the pack as motionrag_suite)

import numpy as np  # noqa: E402

from motionrag_suite.models.motion import gltf, library  # noqa: E402

FRAMES = 196


def motion_196():
    clip = library.load_clip("cartwheel")
    stretched = clip.resampled(clip.fps * (FRAMES - 1) / (clip.num_frames - 1))
    assert stretched.num_frames == FRAMES, stretched.num_frames
    return stretched.replace(fps=20.0)


def main(repeats: int = 20) -> None:
    motion = motion_196()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "motion.glb"
        gltf.save_glb(motion, path)   # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            gltf.save_glb(motion, path)
            times.append(time.perf_counter() - t0)
        size = path.stat().st_size
        joints, fps, _ = gltf.read_glb_joints(path)
    err = float(np.abs(joints - motion.joints).max())
    print(f"{FRAMES} frames at {motion.fps:g} fps: {size:,} bytes ({size / 1024:.1f} KiB); "
          f"write median {statistics.median(times) * 1000:.1f} ms, best {min(times) * 1000:.1f} ms "
          f"({repeats} writes); read back: max joint error {err * 1000:.4f} mm, {fps:.3f} fps")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
