"""Render speed: the pack's OpenCV renderers against a matplotlib stick-figure baseline.

Run: .venv/bin/python tests/benchmarks/bench_render.py [rounds]   (from the pack folder; default 5 rounds)

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
sys.path.insert(0, str(TESTS.parent))  # the pack root: common.standalone
from common.standalone import load_pack  # noqa: E402

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


def interleaved(candidates: dict, rounds: int) -> dict:
    """Wall times of each candidate over `rounds` rounds, run in turn within a
    round, so noise from other processes falls on all of them alike."""
    times = {name: [] for name in candidates}
    results = {}
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return times, results


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    joints, source = benchmark_motion()
    print(f"motion: {source}; {len(joints)} frames at {SIZE}x{SIZE}; {rounds} interleaved rounds")
    # Timings are wall clock on a single thread; other busy processes skew both sides.
    print(f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")

    render_matplotlib(joints[:4])  # warm-up: fonts and the Agg backend load on first use
    times, results = interleaved({
        "matplotlib baseline": lambda: render_matplotlib(joints),
        "render_3d follow": lambda: render_3d(joints, width=SIZE, height=SIZE),
        "render_3d fixed": lambda: render_3d(joints, width=SIZE, height=SIZE, follow=False),
        "render_openpose": lambda: render_openpose(joints, width=SIZE, height=SIZE),
    }, rounds)
    median = {name: float(np.median(t)) for name, t in times.items()}
    best = {name: min(t) for name, t in times.items()}
    for name in times:
        print(f"{name:22s} median {FRAMES / median[name]:8.1f} fps   best {FRAMES / best[name]:8.1f} fps")
    base = "matplotlib baseline"
    for mode in ("follow", "fixed"):
        name = f"render_3d {mode}"
        r_med, r_best = median[base] / median[name], best[base] / best[name]
        verdict = "met" if min(r_med, r_best) >= GOAL_RATIO else "NOT met"
        print(f"speed ratio {name} / matplotlib: {r_med:.1f}x by median, {r_best:.1f}x by best; "
              f"goal >= {GOAL_RATIO:g}x: {verdict}")
    mpl_frames = results[base]
    cv_frames = results["render_3d follow"]
    pose_frames = results["render_openpose"][0]

    import cv2
    k = FRAMES // 2
    side_by_side = np.concatenate([mpl_frames[k], cv_frames[k], pose_frames[k]], axis=1)
    cv2.imwrite(str(PNG), cv2.cvtColor(side_by_side, cv2.COLOR_RGB2BGR))
    print(f"frame {k}: matplotlib | render_3d | render_openpose written to {PNG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
