"""Re-space the shipped workflows so that no node covers another in the frontend that draws them
largest: ComfyUI v0.3.64's Vue frontend, whose widgets are taller than the 2024 web UI's.

    .venv/bin/python -m tests.harness.layout_workflows [--comfyui new] [workflows/x.json ...]

Starts the ComfyUI (default: the newer one .ci/setup provisions), opens each workflow in headless
Chromium, reads every node's size after its widgets have laid out (never less than what the node
asks for), and moves nodes apart: taken in reading order (top to bottom, then left to right), a node
that overlaps one already placed is pushed right when that is the shorter way out (it sits mostly to
the right of the other), else down. Sizes and positions are written back into the JSON;
tests/browser/test_workflows_in_the_frontend.py checks the result on both ComfyUIs after a run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

import conftest  # noqa: E402,F401  (tests/conftest.py: loads the pack as motionrag_suite)
from harness.comfy_server import ComfyServer  # noqa: E402

GAP = 40      # px between nodes
SLACK = 20    # px of room added below each node, for widgets that grow a little after a run


def measure(page, workflow: dict) -> tuple[dict[int, tuple[float, float]], float]:
    """Node id -> (width, height without the title bar): the size the workflow gives the node, or
    more where the frontend's widgets need more (then with SLACK to spare), so a rerun changes nothing."""
    from browser.test_workflows_in_the_frontend import NODE_BOXES

    page.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)
    title = page.evaluate("() => __mr.liteGraph().NODE_TITLE_HEIGHT ?? 30")
    given = {n["id"]: n["size"] for n in workflow["nodes"]}
    sizes = {}
    for b in page.evaluate(NODE_BOXES):
        w, h = given.get(b["id"], (0, 0))
        sizes[b["id"]] = (max(w, b["min"][0]), h if h >= b["h"] - title else max(h, b["min"][1] + SLACK))
    return sizes, title


def relayout(workflow: dict, sizes: dict[int, tuple[float, float]], title: float) -> dict:
    nodes = sorted(workflow["nodes"], key=lambda n: (n["pos"][1], n["pos"][0]))
    placed: list[list[float]] = []   # x, y, w, h of the boxes placed so far (title included)
    for node in nodes:
        w, h = sizes.get(node["id"], node["size"])
        w, h = float(w), float(h)
        x, y = float(node["pos"][0]), float(node["pos"][1]) - title
        moved = True
        while moved:
            moved = False
            for px, py, pw, ph in placed:
                if x < px + pw + GAP and px < x + w + GAP and y < py + ph + GAP and py < y + h + GAP:
                    if x >= px + pw / 2:        # mostly to the right of it: move right
                        x = px + pw + GAP
                    else:
                        y = py + ph + GAP
                    moved = True
        placed.append([x, y, w, h + title])
        node["pos"] = [round(x), round(y + title)]
        node["size"] = [round(w), round(h)]
    return workflow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comfyui", default="new", choices=("2024", "new"))
    parser.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args()
    os.environ["MOTIONRAG_COMFYUI"] = args.comfyui
    paths = args.paths or sorted((REPO / "workflows").glob("*.json"))

    from playwright.sync_api import sync_playwright

    from browser.conftest import (APP_READY, CHROMIUM_ARGS, PAGE_HELPERS, VIEWPORT, _place_declared_inputs,
                                  find_chromium, first_run_settings)

    with ComfyServer() as server, sync_playwright() as pw:
        _place_declared_inputs(server)
        first_run_settings(server)
        browser = pw.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(server.url)
        page.wait_for_function(APP_READY, timeout=60_000)
        page.evaluate(PAGE_HELPERS)
        for path in paths:
            workflow = json.loads(path.read_text())
            sizes, title = measure(page, workflow)
            before = {n["id"]: (list(n["pos"]), list(n["size"])) for n in workflow["nodes"]}
            relayout(workflow, sizes, title)
            changed = [n["id"] for n in workflow["nodes"] if before[n["id"]] != (n["pos"], n["size"])]
            path.write_text(json.dumps(workflow, indent=2, ensure_ascii=False))
            print(f"{path.name}: {len(changed)} of {len(workflow['nodes'])} nodes moved or resized")
        browser.close()


if __name__ == "__main__":
    main()
