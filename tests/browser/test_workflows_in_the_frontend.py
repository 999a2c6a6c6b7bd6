"""What a user sees of the shipped workflows, in whichever frontend the ComfyUI under test serves
(the legacy 2024 web UI, or v0.3.64's Vue frontend): no node covers another after a load and a run,
the 3D preview shows its last result after a page reload and when the prompt was wholly cached,
and showing a preview brings no second three.js (the viewer draws on a 2D canvas) and plays. Screenshots of every shipped workflow
after its run go to output/browser-tests/<ComfyUI version>/.
"""
from __future__ import annotations

import json
import time

import numpy as np

import pytest

from harness.comfy_server import comfyui_version, has_vue_frontend

from .conftest import APP_READY, FIND_API, PACK_ROOT, PAGE_HELPERS, SOCKET_READY, WORKFLOWS
from .test_preview_widget import (BACKGROUND, FIT_GRAPH, VIEWER_URL, keep_screenshot, pixels,
                                  skip_without_declared_comfy_nodes, wait_for_motion)

# Workflows whose models the test server has (built in, shipped, or the demo's tiny random ones).
RUNNABLE = {"motionrag_render_builtin_clip.json", "motionrag_text_to_motion.json",
            "motionrag_text_retrieve.json", "motionrag_i2v_offline_demo.json",
            "motionrag_glb_preview_3d.json"}
RENDER_WORKFLOW = PACK_ROOT / "workflows" / "motionrag_render_builtin_clip.json"
GAP = 0  # boxes may touch, not overlap


def screenshot_dir():
    return PACK_ROOT / "output" / "browser-tests" / comfyui_version()


# Each node's box on the canvas, title bar included, after the widgets have laid themselves out:
# a few frames are drawn first (DOM widgets size themselves when drawn), and a node is never taken
# as smaller than the minimum its widgets ask for (computeSize).
NODE_BOXES = """async () => {
    const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
    for (let i = 0; i < 6; i++) { app.graph.setDirtyCanvas(true, true); await frame(); }
    const LG = __mr.liteGraph();
    const title = LG.NODE_TITLE_HEIGHT ?? 30;
    return __mr.nodes().map((n) => {
        const min = n.computeSize ? n.computeSize() : n.size;
        const w = Math.max(n.size[0], min[0]), h = Math.max(n.size[1], min[1]);
        return { id: n.id, type: n.type, title: n.title, x: n.pos[0], y: n.pos[1] - title, w, h: h + title,
                 min: [min[0], min[1]], collapsed: !!n.flags?.collapsed };
    });
}"""


def overlaps(boxes: list[dict]) -> list[str]:
    found = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            dx = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
            dy = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
            if dx > GAP and dy > GAP:
                found.append(f"{a['title']} (#{a['id']}) and {b['title']} (#{b['id']}) overlap by "
                             f"{dx:.0f} x {dy:.0f} px")
    return found


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_node_covers_another_after_loading_and_running(comfy_page, path):
    workflow = json.loads(path.read_text())
    page = comfy_page.page
    skip_without_declared_comfy_nodes(page, workflow)
    comfy_page.load_workflow(workflow)
    problems = {"after loading": overlaps(page.evaluate(NODE_BOXES))}
    ran = path.name in RUNNABLE
    if ran:
        entry = comfy_page.queue_and_wait(timeout=400)
        assert entry["outputs"], "the run produced no output"
        for node in workflow["nodes"]:   # the previews got their motions (and so their final size)
            out = entry["outputs"].get(str(node["id"]), {})
            if out.get("motionrag_motion"):
                wait_for_motion(page, node["id"], out["motionrag_motion"][0]["frames"])
        page.wait_for_timeout(500)  # images from the run arrive in the image nodes
        problems["after running"] = overlaps(page.evaluate(NODE_BOXES))
    page.evaluate(FIT_GRAPH)
    page.wait_for_timeout(300)
    out = screenshot_dir()
    out.mkdir(parents=True, exist_ok=True)
    shot = out / f"{path.stem}{'' if ran else '_loaded'}.png"
    page.screenshot(path=str(shot))
    print(f"\nscreenshot: {shot}")
    assert problems == {k: [] for k in problems}, json.dumps(problems, indent=1)
    assert comfy_page.our_errors() == []


def _reopen(comfy_page) -> None:
    """Reload the page as a user does (F5): the frontend restores the open workflow itself."""
    page = comfy_page.page
    page.reload()
    page.wait_for_function(APP_READY, timeout=60_000)
    page.evaluate(PAGE_HELPERS)
    page.evaluate(FIND_API)
    page.wait_for_function(SOCKET_READY, timeout=60_000, polling=100)


def test_preview_shows_the_last_result_after_a_reload_and_when_the_prompt_is_cached(comfy_page):
    page = comfy_page.page
    workflow = json.loads(RENDER_WORKFLOW.read_text())
    (node_id,) = [n["id"] for n in workflow["nodes"] if n["type"] == "MotionRAGLoadMotion"]
    comfy_page.load_workflow(workflow)
    entry = comfy_page.queue_and_wait()
    frames = entry["outputs"][str(node_id)]["motionrag_motion"][0]["frames"]
    wait_for_motion(page, node_id, frames)

    # 1. A page reload: the workflow comes back with its preview showing the same motion.
    if not has_vue_frontend():
        # the 2024 web UI restores the open workflow from localStorage on load; make sure it saved
        page.evaluate("() => localStorage.setItem('workflow', JSON.stringify(app.graph.serialize()))")
    _reopen(comfy_page)
    assert page.evaluate("(id) => !!app.graph.getNodeById(id)", node_id), "the workflow did not come back"
    wait_for_motion(page, node_id, frames)

    # 2. The same workflow loaded fresh (nothing remembered in the node) and queued again: every
    # node comes from the server's cache, so no "executed" message reaches the preview.
    comfy_page.load_workflow(workflow)
    assert page.evaluate("(id) => __mr.element(id).querySelector('.mr-stage canvas')", node_id) is None
    before = time.monotonic()
    entry = comfy_page.queue_and_wait()
    status = entry.get("status") or {}
    cached = [m for m in status.get("messages", []) if m[0] == "execution_cached"]
    assert cached and str(node_id) in cached[0][1]["nodes"], "the second run was not served from the cache"
    wait_for_motion(page, node_id, frames)
    assert time.monotonic() - before < 60
    assert comfy_page.our_errors() == []


def test_a_shown_preview_brings_no_second_three_js_and_its_picture_changes_while_playing(comfy_page):
    """The Vue frontend bundles its own three.js; a second copy made three.js warn "Multiple instances
    of Three.js being imported" on every preview. The viewer now draws on a 2D canvas: after a
    preview has shown (and played) a motion the console has no such warning, the page fetched no
    three.js of ours, and the frontend's own copy is the only one (its revision marker unchanged)."""
    page = comfy_page.page
    warnings = lambda: [t for kind, t, _ in comfy_page.console if "Multiple instances of Three.js" in t]  # noqa: E731
    viewer = lambda: [u for u in comfy_page.requests if u.endswith(VIEWER_URL)]  # noqa: E731
    marker = page.evaluate("() => window.__THREE__ ?? null")
    assert viewer() == [], "the viewer module was fetched with the page, before any preview"
    workflow = json.loads(RENDER_WORKFLOW.read_text())
    (node_id,) = [n["id"] for n in workflow["nodes"] if n["type"] == "MotionRAGLoadMotion"]
    comfy_page.load_workflow(workflow)
    entry = comfy_page.queue_and_wait()
    frames = entry["outputs"][str(node_id)]["motionrag_motion"][0]["frames"]
    wait_for_motion(page, node_id, frames)
    assert len(viewer()) == 1

    # While it plays, the picture changes (a screenshot of the stage now and a moment later).
    root = page.evaluate_handle("(id) => __mr.element(id)", node_id).as_element()
    stage = root.query_selector(".mr-stage")
    assert root.query_selector(".mr-play").get_attribute("aria-pressed") == "true"
    shots = []
    for _ in range(2):
        shots.append(stage.screenshot())
        page.wait_for_timeout(400)
    keep_screenshot("motionrag_preview_playing.png", shots[0])
    a, b = pixels(shots[0]), pixels(shots[1])
    assert float((np.abs(a - BACKGROUND).max(axis=-1) > 40).mean()) > 0.02, "the preview is (nearly) blank"
    changed = float((np.abs(a - b).max(axis=-1) > 40).mean())
    assert changed > 0.003, f"the picture did not change while playing ({changed:.4%} pixels changed)"
    assert root.query_selector(".mr-play").get_attribute("aria-pressed") == "true"

    page.wait_for_timeout(500)   # a warning would come as the module loads; leave it time to arrive
    assert warnings() == [], warnings()
    assert not [u for u in comfy_page.requests if "/MotionRAG-Suite/" in u and "three" in u.lower()]
    assert page.evaluate("() => window.__THREE__ ?? null") == marker == ("170" if has_vue_frontend() else None)
    assert comfy_page.our_errors() == []


def test_templates_browser_shows_each_workflow_with_its_thumbnail(comfy_page):
    """The Vue frontend's Templates browser lists the pack's workflows/ under its folder name and
    shows <workflow>.jpg for each (it asks for exactly that name); the legacy UI has no such browser."""
    if not has_vue_frontend():
        pytest.skip("the 2024 web UI has no Templates browser")
    page = comfy_page.page
    listed = comfy_page.server.get_json("/workflow_templates")
    assert sorted(listed.get("MotionRAG-Suite", [])) == sorted(p.stem for p in WORKFLOWS), listed
    prefix = "/api/workflow_templates/MotionRAG-Suite/"
    fetched = {}   # the frontend fetches each picture and shows it from a blob: URL
    page.on("response", lambda r: fetched.__setitem__(r.url.split(prefix)[-1].split("?")[0],
                                                      (r.status, r.headers.get("content-type", "")))
            if prefix in r.url and not r.url.endswith(".json") else None)
    page.evaluate("() => app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    page.get_by_text("MotionRAG-Suite", exact=True).first.click()
    # the cards load their pictures lazily: bring each into view, as scrolling the list does
    for path in WORKFLOWS:
        page.get_by_text(path.stem, exact=True).first.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
    deadline = time.monotonic() + 30
    while len(fetched) < len(WORKFLOWS) and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert fetched == {f"{p.stem}.jpg": (200, "image/jpeg") for p in WORKFLOWS}, fetched
    # and the cards in view show them (decoded pictures, not placeholders)
    page.get_by_text(WORKFLOWS[0].stem, exact=True).first.scroll_into_view_if_needed()
    page.wait_for_function("""() => {
        const imgs = [...document.querySelectorAll('img')].filter((i) => i.src.startsWith('blob:'));
        return imgs.length >= 2 && imgs.every((i) => i.complete && i.naturalWidth >= 64);
    }""", timeout=30_000)
    out = screenshot_dir()
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / "templates_browser.png"))
    assert comfy_page.our_errors() == []


GLB_WORKFLOW = PACK_ROOT / "workflows" / "motionrag_glb_preview_3d.json"


def test_native_preview_3d_animation_plays_the_saved_glb(comfy_page):
    """Save Motion (glb) -> ComfyUI's own Preview 3D - Animation: the node fetches the file through
    /view, draws the body, and the picture changes while the animation plays (screenshots kept)."""
    import numpy as np

    from .test_preview_widget import pixels

    page = comfy_page.page
    workflow = json.loads(GLB_WORKFLOW.read_text())
    skip_without_declared_comfy_nodes(page, workflow)
    glb_responses = []
    page.on("response", lambda r: glb_responses.append(r.status) if ".glb" in r.url and "/view" in r.url else None)
    comfy_page.load_workflow(workflow)
    entry = comfy_page.queue_and_wait()
    (save_id,) = [n["id"] for n in workflow["nodes"] if n["type"] == "MotionRAGSaveMotion"]
    (path,) = entry["outputs"][str(save_id)]["text"]
    assert path.endswith(".glb")
    page.wait_for_function("() => !!document.querySelector('.comfy-load-3d canvas')")
    deadline = time.monotonic() + 60
    while not glb_responses and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert glb_responses == [200], f"the viewer's /view request for the .glb: {glb_responses}"
    page.evaluate(FIT_GRAPH)       # the whole node on the page
    canvas = page.locator(".comfy-load-3d canvas").first
    page.wait_for_timeout(1500)   # the model is parsed and framed
    still = pixels(canvas.screenshot())
    # the body is drawn: a clear share of the view differs from its flat background colour
    background = np.median(still.reshape(-1, 3), axis=0)
    assert float((np.abs(still - background).max(axis=-1) > 40).mean()) > 0.02, "the 3D view is (nearly) blank"
    widget = page.locator(".dom-widget", has=page.locator(".comfy-load-3d")).first
    widget.locator("button:has(i.pi-play)").first.click()
    # ComfyUI's viewer draws only while the pointer is over it (it saves the GPU otherwise): hover
    # it, as a user watching it does
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.7)
    shots = []
    for _ in range(4):
        page.wait_for_timeout(400)
        shots.append(canvas.screenshot())
    out = screenshot_dir()
    out.mkdir(parents=True, exist_ok=True)
    for i, png in enumerate([None] + shots):
        if png is not None:
            (out / f"preview_3d_animation_glb_{i}.png").write_bytes(png)
    page.screenshot(path=str(out / "preview_3d_animation_glb_page.png"))
    changed = lambda a, b: float((np.abs(a - b).max(axis=-1) > 40).mean())  # noqa: E731
    pictures = [pixels(s) for s in shots]
    # The cartwheel travels sideways and may leave the viewer's fixed camera for a moment, so the
    # playing pictures are compared with the still one and with each other, not pair by pair.
    assert changed(pictures[0], still) > 0.003, "playing did not change the still picture"
    between = [changed(a, b) for a, b in zip(pictures, pictures[1:])]
    assert max(between) > 0.003, f"the picture did not change while playing: {between}"
    assert comfy_page.our_errors() == []
