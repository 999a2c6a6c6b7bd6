"""Run example workflows on a real, headless ComfyUI and collect their outputs.

    .venv/bin/python -m tests.harness.main_job [--workflow workflows/X.json ...] [--out output]

By default it runs the text-to-motion workflow, the built-in clip render and the image-to-video
mechanics demo (built-in video database + the shipped offline CAMA + a TINY RANDOM SVD: its frames
show that the pipeline runs, nothing about quality).
Starts ComfyUI (see comfy_server.py) with this pack as a custom node, converts
each UI-format workflow with /object_info, queues it, waits for it, copies
every file it wrote into <repo>/output/ (never overwriting a file already
there) and prints each file's absolute path, frame count and size.
Exits non-zero, with the server's error, on any failure.
"""
from __future__ import annotations

import argparse
import io
import shutil
import sys
import time
from pathlib import Path

from .comfy_server import REPO_ROOT, ComfyError, ComfyExecutionError, ComfyServer, output_files
from .workflow_convert import WorkflowError, load_workflow

DEFAULT_WORKFLOWS = [REPO_ROOT / "workflows" / "motionrag_text_to_motion.json",
                     REPO_ROOT / "workflows" / "motionrag_render_builtin_clip.json",
                     REPO_ROOT / "workflows" / "motionrag_i2v_offline_demo.json"]


def prepare_demo_assets(workflow: Path, server: ComfyServer) -> None:
    """A workflow that declares extra.motionrag_demo_assets gets its stand-ins written first (the
    image-to-video mechanics demo: a tiny random SVD and adapter, see i2v_demo_assets.py)."""
    import json

    try:
        extra = json.loads(workflow.read_text(encoding="utf-8")).get("extra") or {}
    except (OSError, ValueError):
        return                                   # load_workflow reports unreadable files
    if extra.get("motionrag_demo_assets") is None:
        return
    from . import i2v_demo_assets

    if extra["motionrag_demo_assets"] != i2v_demo_assets.DEMO_KEY:
        raise ComfyError(f"{workflow.name}: unknown demo assets {extra['motionrag_demo_assets']!r}")
    for path in i2v_demo_assets.write(server.models_dir, server.input_dir):
        print(f"wrote demo stand-in {path}")


def describe(path: Path) -> str:
    """Frame count and size (images / animations), or frames of a BVH / array file."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".webp", ".gif", ".png", ".jpg", ".jpeg", ".apng"):
            from PIL import Image
            with Image.open(path) as im:
                return f"{getattr(im, 'n_frames', 1)} frames, {im.width}x{im.height}"
        if suffix == ".bvh":
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.strip().lower().startswith("frames:"):
                    return f"{int(line.split(':', 1)[1])} frames (BVH)"
            return "BVH without a Frames: line"
        if suffix in (".npz", ".npy"):
            import numpy as np
            data = np.load(path, allow_pickle=False)
            if isinstance(data, np.ndarray):
                return f"array {tuple(data.shape)}"
            with data:
                return ", ".join(f"{k} {tuple(data[k].shape)}" for k in data.files)
    except Exception as exc:  # describing is best-effort; the file is still reported
        return f"(could not read: {exc})"
    return ""


def unique_destination(dest: Path) -> Path:
    """dest, or dest with a counter before the suffix if a different file is there."""
    if not dest.exists():
        return dest
    stem, suffix = dest.stem, dest.suffix
    n = 1
    while True:
        candidate = dest.with_name(f"{stem}.{n}{suffix}")
        if not candidate.exists():
            return candidate
        n += 1


def output_snapshot(server: ComfyServer) -> set[Path]:
    return {p for p in server.output_dir.rglob("*") if p.is_file()}


def collect(server: ComfyServer, entry: dict, out_dir: Path, before: set[Path] = frozenset()) -> list[Path]:
    """Copy every file the run wrote into the server's output folder (those not
    there before it) to out_dir."""
    src_root = server.output_dir
    produced = sorted(output_snapshot(server) - set(before))
    listed = {server.local_path(f).resolve() for _, f in output_files(entry) if f.get("type", "output") == "output"}
    missing = [p for p in listed if not p.is_file()]
    if missing:
        raise ComfyError(f"history lists files that are not in the output folder: {missing}")
    copied = []
    for src in produced:
        dest = unique_destination(out_dir / src.relative_to(src_root))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
        copied.append(dest.resolve())
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflow", type=Path, action="append", dest="workflows",
                        help="UI- or API-format workflow JSON; repeat for several "
                             "(default: the text-to-motion and built-in clip workflows)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "output",
                        help="where to copy the outputs (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the run")
    args = parser.parse_args(argv)

    workflows = [w if w.is_absolute() else (Path.cwd() / w) for w in (args.workflows or DEFAULT_WORKFLOWS)]
    for workflow in workflows:
        if not workflow.is_file():
            print(f"main_job: workflow not found: {workflow}", file=sys.stderr)
            return 2
    t0 = time.monotonic()
    server = None
    try:
        with ComfyServer() as server:
            print(f"ComfyUI {server.comfyui} up on {server.url} in {server.startup_seconds:.1f} s")
            pack = server.pack_import()
            if pack is None or not pack[1]:
                raise ComfyError(f"the pack did not import into ComfyUI; log:\n{server.log_tail(80)}")
            copied = []
            for workflow in workflows:
                prepare_demo_assets(workflow, server)
                graph = load_workflow(workflow, server.object_info())
                t_run = time.monotonic()
                before = output_snapshot(server)
                prompt_id = server.queue(graph)
                entry = server.wait(prompt_id, timeout=args.timeout)
                print(f"ran {workflow.name} ({len(graph)} nodes) in {time.monotonic() - t_run:.1f} s")
                copied += collect(server, entry, args.out, before)
    except (ComfyError, WorkflowError) as exc:
        print(f"main_job FAILED: {exc}", file=sys.stderr)
        if server is not None and server.log_path is not None and not isinstance(exc, ComfyExecutionError):
            print(f"--- last lines of the ComfyUI log ---\n{server.last_log}", file=sys.stderr)
        return 1
    if not copied:
        print("main_job FAILED: the workflow wrote no output file", file=sys.stderr)
        return 1
    for path in copied:
        size = path.stat().st_size
        info = describe(path)
        print(f"{path}  {info}{', ' if info else ''}{size} bytes")
    print(f"main_job OK: {len(copied)} file(s) in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
