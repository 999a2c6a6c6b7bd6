"""The in-browser 3D preview: payload size and frames per second for a 196-frame motion.

Run: .venv/bin/python tests/benchmarks/bench_preview.py [rounds]   (from the pack folder; default 3)

Starts the real ComfyUI with the pack, opens it in Debian's headless Chromium
(Playwright; the viewer draws on a 2D canvas), loads the
shipped render workflow with Load Motion resampled to 196 frames, queues it
from the page and measures on the Load Motion node's widget:
  - the preview payload (JSON bytes as /history holds it and the websocket carries it);
  - decoding it in the page (base64 int16 -> Float32Array);
  - playback fps: frames drawn per second while playing (requestAnimationFrame,
    so capped by the page's frame rate, 60 Hz headless);
  - render ceiling: frames per second scrubbing back to back (the slider's input
    event, which draws at once), waiting for each frame to finish (a one-pixel
    read), i.e. the viewer's own cost per frame.
The pack puts no hooks on the page: this script observes from outside, through an
init script (below, not shipped) that counts fillRect() calls on the viewer's 2D
canvas (the viewer fills its background once per drawn frame) and keeps that
context for the pixel read, and through the widget's DOM (play button, slider,
frame counter, canvas).
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent))  # the pack root: common.standalone
from common.standalone import load_pack  # noqa: E402

load_pack()

from browser.conftest import APP_READY, CHROMIUM_ARGS, PAGE_HELPERS, VIEWPORT, find_chromium  # noqa: E402
from harness.comfy_server import ComfyServer  # noqa: E402
from motionrag_suite.models.motion import library  # noqa: E402

FRAMES = 196
# Benchmark instrumentation, injected before the page's scripts run.
COUNT_FRAMES = """(() => {
  const bench = { frames: 0, ctx: null };
  window.__mrBench = bench;
  const fillRect = CanvasRenderingContext2D.prototype.fillRect;
  CanvasRenderingContext2D.prototype.fillRect = function (...args) {
    // only the viewer's canvas (inside the widget's stage), not the graph canvas
    if (this.canvas.parentElement?.classList.contains("mr-stage")) {
      bench.frames++;
      bench.ctx = this;
    }
    return fillRect.apply(this, args);
  };
})();"""
# Frames drawn per second over `ms` of playback.
PLAYBACK_FPS = """async (ms) => {
  const f0 = __mrBench.frames, t0 = performance.now();
  await new Promise((resolve) => setTimeout(resolve, ms));
  return (__mrBench.frames - f0) / ((performance.now() - t0) / 1000);
}"""
# Scrub through `count` frames with the slider as fast as possible, one-pixel read after each.
RENDER_CEILING = """([id, count]) => {
  const slider = __mr.element(id).querySelector(".mr-scrub");
  const ctx = __mrBench.ctx;
  const frames = Number(slider.max) + 1;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    slider.value = String(i % frames);
    slider.dispatchEvent(new Event("input"));
    ctx.getImageData(0, 0, 1, 1);
  }
  return count / ((performance.now() - t0) / 1000);
}"""
CLIP = "cartwheel"
WORKFLOW = TESTS.parent / "workflows" / "motionrag_render_builtin_clip.json"


def fps_for_frames(clip: str, frames: int) -> float:
    """The Load Motion fps_override that resamples the clip to exactly `frames` frames."""
    motion = library.load_clip(clip)
    fps = motion.fps * (frames - 1) / (motion.num_frames - 1)
    got = motion.resampled(fps).num_frames
    if got != frames:
        raise SystemExit(f"resampling {clip} at {fps} fps gives {got} frames, not {frames}")
    return fps


def main(rounds: int) -> None:
    from playwright.sync_api import sync_playwright

    fps = fps_for_frames(CLIP, FRAMES)
    workflow = json.loads(WORKFLOW.read_text())
    for node in workflow["nodes"]:
        if node["type"] == "MotionRAGLoadMotion":
            node["widgets_values"] = [CLIP, "", round(fps, 6)]
            node_id = node["id"]
        if node["type"] == "MotionRAGRenderSkeleton":
            render_id = node["id"]
    executable = find_chromium()
    if executable is None:
        raise SystemExit("chromium not found (apt-get install chromium)")
    print(f"load average before: {os.getloadavg()}")
    with ComfyServer() as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.add_init_script(COUNT_FRAMES)
        page.goto(server.url)
        page.wait_for_function(APP_READY)
        page.evaluate(PAGE_HELPERS)
        page.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)
        before = set(server.get_json("/history"))
        t0 = time.perf_counter()
        page.evaluate("async () => { await app.queuePrompt(0, 1); }")
        page.wait_for_function("""([id, n]) => {
            const el = __mr.element(id);
            return !!el?.querySelector(".mr-stage canvas")
                && el.querySelector(".mr-counter").textContent.trim().endsWith(`/ ${n}`);
        }""", arg=[node_id, FRAMES], timeout=120_000)
        shown = time.perf_counter() - t0
        while not (new := [k for k in server.get_json("/history") if k not in before]):
            time.sleep(0.1)
        entry = server.history(new[0])
        payload = entry["outputs"][str(node_id)]["motionrag_motion"][0]
        frames = payload["frames"]
        assert frames == FRAMES, frames
        payload_bytes = len(json.dumps(payload).encode())
        ui_bytes = len(json.dumps(entry["outputs"][str(node_id)]).encode())
        data_bytes = len(payload["data"]) * 3 // 4
        raw_float32 = FRAMES * 22 * 3 * 4

        decode_ms = page.evaluate("""async ([payload, n]) => {
            const mod = await import("/extensions/MotionRAG-Suite/js/motionrag_viewer.mjs");
            const t0 = performance.now();
            for (let i = 0; i < n; i++) mod.decodePayload(payload);
            return (performance.now() - t0) / n;
        }""", [payload, 50])

        playback, ceiling = [], []
        play = page.evaluate_handle("(id) => __mr.element(id).querySelector('.mr-play')", node_id).as_element()
        for _ in range(rounds):
            if play.get_attribute("aria-pressed") != "true":
                play.click()  # it plays on arrival; later rounds start it again
            playback.append(page.evaluate(PLAYBACK_FPS, 3000))
            play.click()  # pause, then scrub flat out
            ceiling.append(page.evaluate(RENDER_CEILING, [node_id, 2 * FRAMES]))
        size = page.evaluate("""(id) => {
            const c = __mr.element(id).querySelector(".mr-stage canvas"); return [c.width, c.height]; }""",
                             node_id)
        browser.close()

    print(f"motion: {CLIP} resampled to {FRAMES} frames ({fps:.3f} fps); render node {render_id} ran too")
    print(f"payload: {payload_bytes} bytes JSON ({payload_bytes / FRAMES:.0f} B/frame); joint data "
          f"{data_bytes} bytes int16 (float32 would be {raw_float32}); node UI output {ui_bytes} bytes")
    print(f"queue -> Load Motion widget showing the motion: {shown:.2f} s (Load Motion runs first in the graph)")
    print(f"decode in the page: {decode_ms:.2f} ms")
    print(f"viewer canvas: {size[0]}x{size[1]} px, 2D canvas (headless Chromium, --disable-gpu)")
    print(f"playback fps (rAF, {rounds} x 3 s): median {statistics.median(playback):.1f}, "
          f"all {[round(v, 1) for v in playback]}")
    print(f"render ceiling fps ({2 * FRAMES} frames back to back): median {statistics.median(ceiling):.0f}, "
          f"all {[round(v) for v in ceiling]}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
