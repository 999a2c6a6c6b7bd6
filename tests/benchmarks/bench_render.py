"""Render speed: the pack's OpenCV renderers against a matplotlib stick-figure baseline.

Run: cd /work/main && .venv/bin/python tests/benchmarks/bench_render.py

The baseline draws the way matplotlib-based motion viewers (HumanML3D's
plot_3d_motion, ComfyUI-MotionDiff) do: one Agg figure with a 3D axes; per frame
the previous frame's artists are removed, a floor quad, the root trajectory and
each kinematic chain are plotted, the canvas is drawn and its RGB buffer copied.
Goal for render_3d: at least 20x the baseline's frames per second at 512x512.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))
from pack_loader import load_pack  # noqa: E402

load_pack()

import matplotlib  # noqa: E402

matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402

from motionrag_suite.models.motion import skeleton  # noqa: E402
from motionrag_suite.models.render.openpose import render_openpose  # noqa: E402
from motionrag_suite.models.render.skeleton3d import render_3d  # noqa: E402

FRAMES = 196
SIZE = 512
GOAL_RATIO = 20.0
PNG = Path("/tmp/motionrag_render_bench.png")


def benchmark_motion() -> tuple[np.ndarray, str]:
    """196 frames of the built-in default clip (looped if shorter); synthetic if the library is absent."""
    try:
        from motionrag_suite.models.motion import library
        clip = library.load_clip(library.DEFAULT_CLIP)
        joints = clip.joints
        if clip.fps != 20.0:
            joints = clip.resampled(20.0).joints
        index = np.arange(FRAMES) % len(joints)
        return joints[index], f"built-in clip '{library.DEFAULT_CLIP}' ({len(joints)} frames at 20 fps, looped)"
    except (ImportError, FileNotFoundError, OSError) as exc:
        from unit.test_render import synthetic_figure
        return synthetic_figure(FRAMES), f"synthetic walk (motion library unavailable: {exc})"


def render_matplotlib(joints: np.ndarray, width: int = SIZE, height: int = SIZE,
                      elevation: float = 15.0, azimuth: float = 30.0) -> np.ndarray:
    T = len(joints)
    # matplotlib's 3D axes are Z-up: plot world (x, -z, y), a proper rotation, so
    # azim = azimuth - 90 gives the same view as render_3d's camera.
    data = np.stack([joints[..., 0], -joints[..., 2], joints[..., 1]], axis=-1).astype(np.float64)
    radius = 1.2
    colours = ["#dc3228", "#2864dc", "#6e727c", "#dc3228", "#2864dc"]   # right leg, left leg, spine, arms
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, 1], projection="3d")
    ax.set_axis_off()
    ax.view_init(elev=elevation, azim=azimuth - 90)
    frames = np.empty((T, height, width, 3), dtype=np.uint8)
    artists = []
    for i in range(T):
        for a in artists:
            a.remove()
        artists = []
        cx, cy = data[i, 0, 0], data[i, 0, 1]
        ax.set_xlim3d(cx - radius, cx + radius)
        ax.set_ylim3d(cy - radius, cy + radius)
        ax.set_zlim3d(0, 2 * radius)
        floor = Poly3DCollection([[(cx - radius, cy - radius, 0), (cx - radius, cy + radius, 0),
                                   (cx + radius, cy + radius, 0), (cx + radius, cy - radius, 0)]])
        floor.set_facecolor((0.5, 0.5, 0.5, 0.3))
        ax.add_collection3d(floor)
        artists.append(floor)
        if i > 0:
            artists += ax.plot3D(data[:i + 1, 0, 0], data[:i + 1, 0, 1], np.zeros(i + 1), linewidth=1.5, color="orange")
        for chain, colour in zip(skeleton.KINEMATIC_CHAIN, colours):
            c = list(chain)
            artists += ax.plot3D(data[i, c, 0], data[i, c, 1], data[i, c, 2], linewidth=4.0, color=colour)
        canvas.draw()
        frames[i] = np.asarray(canvas.buffer_rgba())[..., :3]
    return frames


def timed(fn, repeats: int):
    """Best wall time of a few runs (other processes on the machine add noise)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> int:
    joints, source = benchmark_motion()
    print(f"motion: {source}; {len(joints)} frames at {SIZE}x{SIZE}")
    # Timings are wall clock on a single thread; other busy processes skew both sides.
    print(f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")

    t_mpl, mpl_frames = timed(lambda: render_matplotlib(joints), 2)
    t_follow, cv_frames = timed(lambda: render_3d(joints, width=SIZE, height=SIZE), 3)
    t_fixed, _ = timed(lambda: render_3d(joints, width=SIZE, height=SIZE, follow=False), 3)
    t_pose, (pose_frames, _) = timed(lambda: render_openpose(joints, width=SIZE, height=SIZE), 3)

    fps = {name: FRAMES / t for name, t in
           (("matplotlib baseline", t_mpl), ("render_3d follow", t_follow),
            ("render_3d fixed", t_fixed), ("render_openpose", t_pose))}
    for name, value in fps.items():
        print(f"{name:22s} {value:9.1f} fps")
    ratio = t_mpl / t_follow
    print(f"speed ratio render_3d (follow) / matplotlib: {ratio:.1f}x "
          f"(fixed camera: {t_mpl / t_fixed:.1f}x); goal >= {GOAL_RATIO:g}x: {'met' if ratio >= GOAL_RATIO else 'NOT met'}")

    import cv2
    k = FRAMES // 2
    side_by_side = np.concatenate([mpl_frames[k], cv_frames[k], pose_frames[k]], axis=1)
    cv2.imwrite(str(PNG), cv2.cvtColor(side_by_side, cv2.COLOR_RGB2BGR))
    print(f"frame {k}: matplotlib | render_3d | render_openpose written to {PNG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
