"""The pack's front-end extension in headless Chromium, against the real ComfyUI.

Written against window.app / app.graph / LiteGraph node APIs that both the
legacy 2024 front end and the pip comfyui-frontend-package offer, so the same
tests run on a newer ComfyUI given through COMFYUI_PATH.
"""
from __future__ import annotations

import io
import json
import re
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from motionrag_suite.models.motion import library
from motionrag_suite.models.motion.preview import decode_payload, preview_payload

from harness.comfy_server import comfyui_version, has_vue_frontend

from .conftest import PACK_ROOT, WORKFLOWS

SCREENSHOTS = PACK_ROOT / "output" / "browser-tests"   # gitignored; .ci/run lists what is there


def keep_screenshot(name: str, png: bytes) -> None:
    # one folder per ComfyUI (2024, 0.3.64, ...), so that the runs against each keep their own
    folder = SCREENSHOTS / comfyui_version()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(png)
    print(f"\nscreenshot: {folder / name}")

RENDER_WORKFLOW = PACK_ROOT / "workflows" / "motionrag_render_builtin_clip.json"
BACKGROUND = np.array([0x20, 0x22, 0x26])  # the viewer's clear colour (web/js/motionrag_viewer.mjs)
FRONTEND_ONLY_TYPES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
PACK_URL = "/extensions/MotionRAG-Suite"
VIEWER_URL = f"{PACK_URL}/js/motionrag_viewer.mjs"


def skip_without_declared_comfy_nodes(page, workflow: dict) -> None:
    """Skip a workflow that declares ComfyUI nodes only newer versions have (extra.
    motionrag_requires_comfy_nodes, e.g. Preview 3D - Animation) on a ComfyUI without them;
    the Vue frontend's ComfyUI (v0.3.64) must have them."""
    needed = (workflow.get("extra") or {}).get("motionrag_requires_comfy_nodes", [])
    absent = page.evaluate("(types) => types.filter((t) => !__mr.liteGraph().registered_node_types[t])", needed)
    if absent:
        assert not has_vue_frontend(), f"ComfyUI {comfyui_version()} lacks {absent}"
        pytest.skip(f"this ComfyUI ({comfyui_version()}) has no {absent}: the workflow needs v0.3.x")


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def _drawn_fraction(img: np.ndarray) -> float:
    """Share of pixels that differ clearly from the viewer's background."""
    return float((np.abs(img - BACKGROUND).max(axis=-1) > 40).mean())


def _limb_pixels(img: np.ndarray) -> tuple[int, int]:
    """(blue-ish, red-ish) pixel counts: left limbs are blue, right limbs red."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    blue = int(((b > r + 60) & (b > 120)).sum())
    red = int(((r > b + 60) & (r > g + 60) & (r > 120)).sum())
    return blue, red


def _motion_node_ids(workflow: dict) -> list[int]:
    return [n["id"] for n in workflow["nodes"] if n["type"] == "MotionRAGLoadMotion"]


def test_page_loads_the_extension_without_errors(comfy_page):
    info = comfy_page.page.evaluate("""() => ({
        extensions: app.extensions.map((e) => e.name),
        globals: Object.keys(window).filter((k) => /motionrag/i.test(k) && k !== "__mr"),
        three: window.__THREE__ ?? null,
    })""")
    assert "MotionRAG.Preview" in info["extensions"]
    assert info["globals"] == [], "the pack put something on window"
    # three.js's own marker: the Vue frontend's bundled copy sets it; the legacy UI has none (the
    # pack brings no three.js at all)
    assert info["three"] == ("170" if has_vue_frontend() else None)
    ours = [u for u in comfy_page.requests if "/MotionRAG-Suite/" in u]
    assert any(u.endswith("/js/motionrag_preview.js") for u in ours), ours
    # the viewer module is imported when a preview first shows a motion, not with the page
    assert not any(u.endswith(VIEWER_URL) for u in ours), ours
    assert comfy_page.external_requests() == [], "the page fetched from outside the ComfyUI server (a CDN?)"
    assert comfy_page.our_errors() == []


def test_viewer_is_served_as_javascript_but_not_listed_as_an_extension_and_needs_no_three_js(browser_comfy):
    """ComfyUI loads every *.js under WEB_DIRECTORY as an extension; the viewer is a module the
    extension imports, so it is shipped as .mjs, which /extensions does not list but the static
    route still serves with a JavaScript type (module scripts need one). It draws on a 2D canvas
    and imports nothing: the pack ships no three.js."""
    listed = browser_comfy.get_json("/extensions")
    ours = sorted(u for u in listed if u.startswith(PACK_URL + "/"))
    assert ours == [f"{PACK_URL}/js/motionrag_preview.js"], ours
    with urllib.request.urlopen(browser_comfy.url + VIEWER_URL, timeout=30) as r:
        content_type = r.headers.get("Content-Type", "")
        source = r.read().decode()
    assert content_type.split(";")[0].strip() in ("text/javascript", "application/javascript"), content_type
    assert "export class MotionViewer" in source
    assert not re.search(r"^\s*import\b|\bimport\(", source, re.MULTILINE), "the viewer imports something"
    shipped = [p.relative_to(PACK_ROOT).as_posix() for p in (PACK_ROOT / "web").rglob("*") if p.is_file()]
    assert not [p for p in shipped if "three" in p.lower() or "vendor" in p.lower()], shipped


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_shipped_workflow_loads_without_missing_nodes_or_widget_errors(comfy_page, path):
    workflow = json.loads(path.read_text())
    skip_without_declared_comfy_nodes(comfy_page.page, workflow)
    comfy_page.load_workflow(workflow)
    report = comfy_page.page.evaluate("""(wf) => {
        const LG = __mr.liteGraph();
        const nodes = __mr.nodes();
        const missing = wf.nodes.map((n) => n.type).filter((t) => !LG.registered_node_types[t]);
        const widgetErrors = [];
        for (const node of nodes) {
            for (const w of node.widgets ?? []) {
                const values = w.options?.values;
                if (Array.isArray(values) && !values.includes(w.value)) {
                    widgetErrors.push(`${node.type}.${w.name}: ${JSON.stringify(w.value)} not in its list`);
                }
                if (w.type === "number" && !Number.isFinite(w.value)) {
                    widgetErrors.push(`${node.type}.${w.name}: ${w.value} is not a number`);
                }
            }
        }
        return {
            missing, widgetErrors,
            loaded: nodes.map((n) => n.type).sort(),
            previews: nodes.filter((n) => n.widgets?.some((w) => w.name === "motionrag_preview")).map((n) => n.id),
        };
    }""", workflow)
    assert report["missing"] == [], f"node types the server does not know: {report['missing']}"
    assert report["widgetErrors"] == []
    assert report["loaded"] == sorted(n["type"] for n in workflow["nodes"])
    # Every node that outputs a motion carries the preview widget from the start.
    motion_nodes = [n["id"] for n in workflow["nodes"]
                    if any(o.get("type") == "MOTION_DATA" for o in n.get("outputs", []))]
    assert set(motion_nodes) <= set(report["previews"])
    # The front end turns it into a prompt the server accepts (no widget error on /prompt).
    prompt = comfy_page.page.evaluate("async () => (await app.graphToPrompt()).output")
    expected = {str(n["id"]) for n in workflow["nodes"] if n["type"] not in FRONTEND_ONLY_TYPES and n.get("mode", 0) == 0}
    assert set(prompt) == expected
    assert comfy_page.our_errors() == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_shipped_workflow_has_a_thumbnail_for_the_template_browser(path):
    # .jpg: what the Vue frontend's Templates browser asks for; .webp: the animated one the README shows
    for suffix, fmt in ((".jpg", "JPEG"), (".webp", "WEBP")):
        thumb = path.with_suffix(suffix)
        assert thumb.is_file(), f"{thumb.name} is missing (the template browser shows it next to {path.name})"
        with Image.open(thumb) as img:
            assert img.format == fmt and min(img.size) >= 64, (img.format, img.size)


def _counter(root) -> tuple[int, int]:
    frame, total = root.query_selector(".mr-counter").inner_text().split("/")
    return int(frame), int(total)


def wait_for_motion(page, node_id: int, frames: int) -> None:
    """Until the widget's frame counter reads 'n / frames' (the motion is loaded and shown)."""
    page.wait_for_function("""([id, n]) => {
        const el = __mr.element(id);
        return !!el?.querySelector(".mr-stage canvas")
            && el.querySelector(".mr-counter").textContent.trim().endsWith(`/ ${n}`);
    }""", arg=[node_id, frames])


def test_queued_workflow_shows_the_3d_preview_and_scrubbing_changes_it(comfy_page):
    workflow = json.loads(RENDER_WORKFLOW.read_text())
    (node_id,) = _motion_node_ids(workflow)
    comfy_page.load_workflow(workflow)
    entry = comfy_page.queue_and_wait()
    (payload,) = entry["outputs"][str(node_id)]["motionrag_motion"]

    page = comfy_page.page
    total = payload["frames"]
    wait_for_motion(page, node_id, total)
    root = page.evaluate_handle("(id) => __mr.element(id)", node_id).as_element()
    stage = root.query_selector(".mr-stage")
    play = root.query_selector(".mr-play")
    slider = root.query_selector(".mr-scrub")
    counter = root.query_selector(".mr-counter")
    # It plays on arrival: the pause state shows on the button and the counter moves.
    assert play.get_attribute("aria-pressed") == "true"
    first = _counter(root)[0]
    page.wait_for_function("([id, f]) => !__mr.element(id).querySelector('.mr-counter').textContent"
                           ".startsWith(`${f} /`)", arg=[node_id, first])
    assert root.query_selector(".mr-empty").is_hidden()
    # The module's own decoder gives the same metres as models/motion/preview.py.
    in_page = np.array(page.evaluate("""async ([url, payload]) => {
        const { decodePayload } = await import(url);
        return Array.from(decodePayload(payload).positions);
    }""", [f"{PACK_URL}/js/motionrag_viewer.mjs", payload]))
    assert np.allclose(in_page, decode_payload(payload).reshape(-1), atol=1e-5)

    box = stage.bounding_box()
    assert box["width"] >= 200 and box["height"] >= 150, box

    # Pause with the widget's own button, then scrub by clicking the slider.
    play.click()
    assert play.get_attribute("aria-pressed") == "false"
    paused_at = counter.inner_text()
    page.wait_for_timeout(300)
    assert counter.inner_text() == paused_at, "the counter still moves after pause"
    sbox = slider.bounding_box()
    shots, counters = [], []
    for share in (0.1, 0.75):
        page.mouse.click(sbox["x"] + sbox["width"] * share, sbox["y"] + sbox["height"] / 2)
        page.wait_for_timeout(100)
        counters.append(counter.inner_text())
        shots.append(stage.screenshot())
    keep_screenshot("motionrag_preview_widget.png", shots[0])
    keep_screenshot("motionrag_preview_page.png", page.screenshot())

    a, b = pixels(shots[0]), pixels(shots[1])
    assert _drawn_fraction(a) > 0.02, "the widget area is (nearly) blank"
    blue, red = _limb_pixels(a)
    assert blue > 30 and red > 30, f"left (blue) and right (red) limbs not both drawn: {blue}, {red}"
    assert counters[0] != counters[1] and all(c.endswith(f"/ {total}") for c in counters), counters
    frame_a, frame_b = (int(c.split("/")[0]) for c in counters)
    assert frame_a < total // 3 < 2 * total // 3 < frame_b, counters
    changed = float((np.abs(a - b).max(axis=-1) > 40).mean())
    assert changed > 0.003, f"scrubbing did not change the picture ({changed:.4%} pixels changed)"

    # Orbit: dragging on the stage turns the camera (same frame, different picture) and leaves
    # the node where it is (the view uses that drag; it is not passed on to the graph).
    node_pos = page.evaluate("(id) => [...app.graph.getNodeById(id).pos]", node_id)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 80, box["y"] + box["height"] / 2, steps=4)
    page.mouse.up()
    assert counter.inner_text() == counters[1]
    turned = pixels(stage.screenshot())
    assert float((np.abs(turned - b).max(axis=-1) > 40).mean()) > 0.003, "dragging did not orbit the view"
    assert page.evaluate("(id) => [...app.graph.getNodeById(id).pos]", node_id) == node_pos
    # Double-click resets the view: the same frame looks as it did before the orbit.
    page.mouse.dblclick(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_timeout(100)
    reset = pixels(stage.screenshot())
    assert float((np.abs(reset - b).max(axis=-1) > 40).mean()) < 0.001, "double-click did not reset the view"
    # The wheel over a shown motion zooms the view, not the graph.
    graph_scale = page.evaluate("() => app.canvas.ds.scale")
    page.mouse.wheel(0, -300)
    page.wait_for_timeout(100)
    zoomed = pixels(stage.screenshot())
    assert float((np.abs(zoomed - reset).max(axis=-1) > 40).mean()) > 0.003, "the wheel did not zoom the view"
    assert _drawn_fraction(zoomed) > _drawn_fraction(reset), "zooming in did not make the figure larger"
    assert page.evaluate("() => app.canvas.ds.scale") == graph_scale
    assert counter.inner_text() == counters[1]
    assert comfy_page.our_errors() == []


# Zoom and pan so that every node of the graph is on the page (DOM widgets off the page are hidden).
FIT_GRAPH = """() => {
    const nodes = __mr.nodes();
    const title = __mr.liteGraph().NODE_TITLE_HEIGHT ?? 30;
    const x0 = Math.min(...nodes.map((n) => n.pos[0])), y0 = Math.min(...nodes.map((n) => n.pos[1] - title));
    const x1 = Math.max(...nodes.map((n) => n.pos[0] + n.size[0])), y1 = Math.max(...nodes.map((n) => n.pos[1] + n.size[1]));
    const el = app.canvas.canvas, margin = 20;
    const scale = Math.min((el.clientWidth - 2 * margin) / (x1 - x0), (el.clientHeight - 2 * margin) / (y1 - y0), 1);
    app.canvas.ds.scale = scale;
    app.canvas.ds.offset[0] = margin / scale - x0;
    app.canvas.ds.offset[1] = margin / scale - y0;
    app.graph.setDirtyCanvas(true, true);
}"""


def _add_node(page, node_type: str, pos: list[int]) -> int:
    return page.evaluate("""([type, pos]) => {
        const node = __mr.liteGraph().createNode(type);
        node.pos = pos;
        app.graph.add(node);
        app.graph.setDirtyCanvas(true, true);
        return node.id;
    }""", [node_type, pos])


def _deliver_result(page, node_id: int, output: dict) -> None:
    """Hand the node a UI output the way the server's 'executed' message does."""
    page.evaluate("""([id, output]) => {
        if (window.__mrApi) {
            __mrApi.dispatchEvent(new CustomEvent("executed", { detail: { node: String(id), output } }));
        } else {
            app.graph.getNodeById(id).onExecuted(output);
        }
    }""", [node_id, output])


def _webgl(page) -> dict:
    """WebGL contexts the page has created and lost so far (conftest.WEBGL_COUNTER)."""
    return page.evaluate("() => ({...window.__mrWebGL})")


def test_canvas_is_made_on_the_first_motion_and_released_with_the_node(comfy_page):
    """A 2D canvas per preview, made with its first motion, reused by later ones, zeroed and
    removed with the node; no WebGL context at any point."""
    page = comfy_page.page
    page.evaluate("() => app.graph.clear()")
    start = _webgl(page)
    ids = [_add_node(page, "MotionRAGLoadMotion", [60 + 400 * i, 80]) for i in range(3)]
    page.wait_for_timeout(300)  # a few frames of the graph canvas: widgets laid out and drawn
    for node_id in ids:
        el = page.evaluate_handle("(id) => __mr.element(id)", node_id).as_element()
        assert el is not None and el.query_selector(".mr-stage") is not None
        assert el.query_selector("canvas") is None, "a fresh node already has a canvas"

    payload = preview_payload(library.load_clip("walk"), caption="a person walks")
    _deliver_result(page, ids[0], {"motionrag_motion": [payload]})
    wait_for_motion(page, ids[0], payload["frames"])
    canvas = page.evaluate_handle("(id) => __mr.element(id).querySelector('.mr-stage canvas')", ids[0])
    # a 2D canvas: asking it for a WebGL context gives none
    assert page.evaluate("(c) => c.getContext('2d') !== null && c.getContext('webgl') === null", canvas)
    assert page.evaluate("(id) => __mr.element(id).querySelectorAll('canvas').length", ids[0]) == 1
    for node_id in ids[1:]:  # the others still have none
        assert page.evaluate("(id) => __mr.element(id).querySelector('canvas')", node_id) is None
    # A second result reuses the node's canvas.
    _deliver_result(page, ids[0], {"motionrag_motion": [payload]})
    page.wait_for_timeout(100)
    assert page.evaluate("([id, c]) => __mr.element(id).querySelector('.mr-stage canvas') === c", [ids[0], canvas])

    # Removing the node removes its canvas and gives its pixels back at once (a 0 x 0 canvas holds none).
    page.evaluate("(id) => app.graph.remove(app.graph.getNodeById(id))", ids[0])
    page.wait_for_function("(c) => !c.isConnected", arg=canvas, timeout=5_000)
    assert page.evaluate("(c) => [c.width, c.height]", canvas) == [0, 0]
    assert page.evaluate("() => document.querySelectorAll('.motionrag-preview').length") == 2
    assert _webgl(page) == start, "the preview made WebGL contexts"
    assert comfy_page.our_errors() == []


def test_more_previews_than_a_page_has_webgl_contexts_all_draw(comfy_page):
    """Browsers keep about 16 WebGL contexts per page and drop the oldest beyond that; 2D canvases
    have no such limit: 20 previews showing motions at once all draw."""
    page = comfy_page.page
    page.evaluate("() => app.graph.clear()")
    start = _webgl(page)
    count, columns = 20, 5
    ids = [_add_node(page, "MotionRAGLoadMotion", [20 + 360 * (i % columns), 40 + 480 * (i // columns)])
           for i in range(count)]
    page.wait_for_timeout(300)   # the nodes take their widgets' sizes as they are drawn
    page.evaluate(FIT_GRAPH)
    page.wait_for_timeout(300)
    payload = preview_payload(library.load_clip("cartwheel"))
    for node_id in ids:
        _deliver_result(page, node_id, {"motionrag_motion": [payload]})
    for node_id in ids:
        wait_for_motion(page, node_id, payload["frames"])
    page.wait_for_timeout(300)
    # share of each canvas's pixels that differ clearly from the background, read from the canvas itself
    drawn = page.evaluate("""([ids, bg]) => ids.map((id) => {
        const c = __mr.element(id).querySelector('.mr-stage canvas');
        if (!c || !c.width || !c.height) return 0;
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < px.length; i += 4) {
            if (Math.max(Math.abs(px[i] - bg[0]), Math.abs(px[i + 1] - bg[1]), Math.abs(px[i + 2] - bg[2])) > 40) n++;
        }
        return n / (px.length / 4);
    })""", [ids, BACKGROUND.tolist()])
    keep_screenshot("motionrag_twenty_previews_page.png", page.screenshot())
    assert all(d > 0.01 for d in drawn), [round(d, 4) for d in drawn]
    assert _webgl(page) == start, "the previews made WebGL contexts"
    assert comfy_page.our_errors() == []


def test_pointer_input_the_widget_does_not_use_reaches_the_graph(comfy_page):
    """Dragging on the preview area of a node that has nothing to show moves the node."""
    page = comfy_page.page
    page.evaluate("() => app.graph.clear()")
    node_id = _add_node(page, "MotionRAGLoadMotion", [100, 100])
    page.wait_for_timeout(300)
    stage = page.evaluate_handle("(id) => __mr.element(id).querySelector('.mr-stage')", node_id).as_element()
    page.wait_for_function("(id) => __mr.element(id).querySelector('.mr-stage').getBoundingClientRect().width > 50",
                           arg=node_id)
    box = stage.bounding_box()
    before = page.evaluate("(id) => [...app.graph.getNodeById(id).pos]", node_id)
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 40, steps=5)
    page.mouse.up()
    after = page.evaluate("(id) => [...app.graph.getNodeById(id).pos]", node_id)
    # in both frontends (the Vue one hit-tests DOM widgets itself: see forwardUnusedInput)
    assert after[0] - before[0] > 30 and after[1] - before[1] > 20, (before, after)
    # the widget is not left disabled (the Vue frontend would draw it faded and let presses through)
    assert not page.evaluate("(id) => !!__mr.widget(id).computedDisabled", node_id)
    # The wheel there zooms the graph, as it does on the canvas around the node.
    box = stage.bounding_box()
    scale = page.evaluate("() => app.canvas.ds.scale")
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 200)
    page.wait_for_timeout(100)
    assert page.evaluate("() => app.canvas.ds.scale") < scale
    assert comfy_page.our_errors() == []


def test_text_retrieve_lists_references_and_previews_the_selected_one(comfy_page):
    page = comfy_page.page
    # Built in the page with the front end's own graph API, as a user would wire it.
    ids = page.evaluate("""() => {
        const LG = __mr.liteGraph();
        app.graph.clear();
        const add = (type, pos) => { const n = LG.createNode(type); n.pos = pos; app.graph.add(n); return n; };
        const db = add("MotionRAGLoadMotionDB", [40, 80]);
        const retrieve = add("MotionRAGTextRetrieve", [380, 80]);
        const preview = add("PreviewImage", [800, 80]);
        const set = (node, name, value) => { node.widgets.find((w) => w.name === name).value = value; };
        set(db, "database", "builtin");
        set(retrieve, "text", "a person does a cartwheel");
        set(retrieve, "top_k", 3);
        set(retrieve, "panel_size", 64);
        db.connect(0, retrieve, retrieve.inputs.findIndex((i) => i.name === "motion_db"));
        retrieve.connect(retrieve.outputs.findIndex((o) => o.name === "preview"), preview, 0);
        return {retrieve: retrieve.id};
    }""")
    node_id = ids["retrieve"]
    assert page.evaluate("(id) => !!__mr.element(id)", node_id), "Text Retrieve has no preview widget"
    entry = comfy_page.queue_and_wait(timeout=180)
    refs = entry["outputs"][str(node_id)]["motionrag_refs"]
    assert len(refs) == 3 and all("preview" in r for r in refs)

    wait_for_motion(page, node_id, refs[0]["preview"]["frames"])
    root = page.evaluate_handle("(id) => __mr.element(id)", node_id).as_element()
    assert refs[0]["name"] in root.query_selector(".mr-info").inner_text()
    rows = root.query_selector_all(".mr-ref")
    assert len(rows) == 3
    for row, ref in zip(rows, refs):
        text = row.inner_text()
        assert ref["caption"] in text and f"{ref['score']:.3f}" in text, (text, ref)
    assert "mr-selected" in rows[0].get_attribute("class")

    # Selecting another reference shows its motion in the viewer.
    stage = root.query_selector(".mr-stage")
    rows[2].click()
    page.wait_for_function("([id, name]) => __mr.element(id).querySelector('.mr-info').textContent.includes(name)",
                           arg=[node_id, refs[2]["name"]])
    wait_for_motion(page, node_id, refs[2]["preview"]["frames"])
    assert "mr-selected" in rows[2].get_attribute("class")
    assert refs[2]["name"] in root.query_selector(".mr-info").inner_text()
    shot = stage.screenshot()
    keep_screenshot("motionrag_retrieve_widget.png", shot)
    keep_screenshot("motionrag_retrieve_page.png", page.screenshot())
    assert _drawn_fraction(pixels(shot)) > 0.02
    assert comfy_page.our_errors() == []
