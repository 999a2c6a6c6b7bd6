"""Headless Chromium (Debian's package, driven by Playwright) against the real ComfyUI.

One ComfyUI server and one browser per test module (torn down before the next
module starts its own server); a fresh page per test.
Playwright never downloads a browser here: it drives the system Chromium through
executable_path. Missing Chromium or Playwright fails the run under CI (CI=true,
where .ci/setup installs both) and skips elsewhere, with the reason.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from harness.comfy_server import REPO_ROOT, ComfyServer

PACK_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((PACK_ROOT / "workflows").glob("*.json"))
# Debian's Chromium in a container: no sandbox, no GPU (WebGL runs on SwiftShader),
# nothing fetched in the background, and Playwright gives it a fresh profile.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
]
VIEWPORT = {"width": 1400, "height": 900}
# Comfy Org's services the Vue frontend calls by itself (they fail here: no network).
FRONTEND_OWN_SERVICES = ("https://api.comfy.org/",)

# Frontend-agnostic helpers (legacy 2024 web/ and the pip comfyui-frontend-package), added to the
# page by the tests: the pack itself puts nothing on window. The tests look at our widget as a user
# does, through its DOM element (ComfyUI's widget.element) and screenshots of it.
PAGE_HELPERS = """
window.__mr = {
  nodes: () => app.graph._nodes ?? app.graph.nodes,
  liteGraph: () => window.LiteGraph ?? window.comfyAPI?.litegraph?.LiteGraph,
  widget: (id) => app.graph.getNodeById(id)?.widgets?.find((w) => w.name === "motionrag_preview"),
  element: (id) => __mr.widget(id)?.element ?? null,
};
"""
# The front end is up, our extension registered and the node types known.
APP_READY = """() => !!(window.app && app.graph && app.extensions?.some((e) => e.name === "MotionRAG.Preview")
    && (window.LiteGraph ?? window.comfyAPI?.litegraph?.LiteGraph)?.registered_node_types?.MotionRAGLoadMotion)"""
# Counts WebGL contexts the page creates and loses (an init script of the tests, not shipped code).
WEBGL_COUNTER = """(() => {
  const counts = { created: 0, lost: 0 };
  window.__mrWebGL = counts;
  const getContext = HTMLCanvasElement.prototype.getContext;
  const seen = new WeakSet();
  HTMLCanvasElement.prototype.getContext = function (type, ...rest) {
    const ctx = getContext.call(this, type, ...rest);
    if (ctx && /^(webgl|webgl2|experimental-webgl)$/.test(type) && !seen.has(ctx)) {
      seen.add(ctx);
      counts.created++;
      this.addEventListener("webglcontextlost", () => counts.lost++);
    }
    return ctx;
  };
})();"""


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI installs it through .ci/setup; this must not skip in CI)")
    pytest.skip(reason)


def find_chromium() -> str | None:
    env = os.environ.get("MOTIONRAG_CHROMIUM", "").strip()
    if env:
        return env
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser_comfy():
    if os.environ.get("MOTIONRAG_SKIP_COMFY") == "1":
        pytest.skip("MOTIONRAG_SKIP_COMFY=1: real-ComfyUI tests skipped on request")
    with ComfyServer() as server:
        _place_declared_inputs(server)
        first_run_settings(server)
        yield server


def first_run_settings(server) -> None:
    """A returning user's settings for the Vue frontend (ignored by the 2024 UI): without them its
    first start opens the Templates browser over the canvas, which would take the tests' clicks."""
    settings = Path(server.user_dir) / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False,
                                    # screenshots of whole workflows: full drawing down to 30 % zoom
                                    "LiteGraph.Canvas.LowQualityRenderingZoomThreshold": 0.3}))


def _place_declared_inputs(server) -> None:
    """Put into the server's input folder what each shipped workflow declares the
    user provides (extra.motionrag_requires_inputs; its note tells users so), so
    that dropdowns such as Load Image's list hold the workflow's values."""
    from PIL import Image

    for path in sorted((REPO_ROOT / "workflows").glob("*.json")):
        extra = json.loads(path.read_text()).get("extra", {})
        # ComfyUI's own model files a workflow names (e.g. svd.safetensors): empty stand-ins, so the
        # loaders' lists hold them; the page only loads the graphs, it never runs them
        for name in extra.get("motionrag_requires_comfy_models", []):
            target = Path(server.models_dir) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        # a text-to-motion model folder a workflow names (t2m/<name>/..., e.g. MoMask's download): the
        # folder only, empty, so the model list (every folder under t2m) holds its name
        for name in extra.get("motionrag_requires_models", []):
            parts = Path(name).parts
            if len(parts) > 2 and parts[0] == "t2m":
                (Path(server.models_dir) / "motionrag" / parts[0] / parts[1]).mkdir(parents=True, exist_ok=True)
        if extra.get("motionrag_demo_assets"):
            from harness import i2v_demo_assets

            i2v_demo_assets.write(server.models_dir, server.input_dir)
        for name in extra.get("motionrag_requires_inputs", []):
            target = Path(server.input_dir) / name
            if target.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
                if not target.exists():
                    Image.new("RGB", (64, 64), (120, 140, 160)).save(target)
            else:
                target.mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright; no browser download needed)")
    executable = find_chromium()
    if executable is None:
        _unavailable("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class ComfyPage:
    """A browser tab on the ComfyUI front end, recording what the page logs and fetches."""

    def __init__(self, page, server: ComfyServer):
        self.page = page
        self.server = server
        self.console: list[tuple[str, str, str]] = []   # (type, text, url)
        self.page_errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: self.console.append((m.type, m.text, (m.location or {}).get("url", ""))))
        page.on("pageerror", lambda e: self.page_errors.append(f"{e}\n{getattr(e, 'stack', '')}"))
        page.on("request", lambda r: self.requests.append(r.url))

    def open(self) -> "ComfyPage":
        self.page.goto(self.server.url)
        self.page.wait_for_function(APP_READY, timeout=60_000)
        self.page.evaluate(PAGE_HELPERS)
        # Results reach the widgets over the websocket: a prompt queued before it is open (and has
        # its client id) runs unseen by the page, so wait for it.
        self.page.evaluate(FIND_API)
        self.page.wait_for_function(SOCKET_READY, timeout=60_000, polling=100)
        return self

    def our_errors(self) -> list[str]:
        """Console errors and uncaught exceptions that come from this pack's files."""
        errors = [f"console.{kind}: {text} ({url})" for kind, text, url in self.console
                  if kind == "error" and ("MotionRAG" in text or "MotionRAG" in url)]
        errors += [e for e in self.page_errors if "MotionRAG" in e]
        return errors

    def external_requests(self) -> list[str]:
        """Requests that leave the ComfyUI server, except the Vue frontend's own calls to Comfy Org's
        API (release notes, node registry), which it makes on every page whatever packs are loaded."""
        local = (self.server.url, "data:", "blob:" + self.server.url)
        return [u for u in self.requests if not u.startswith(local)
                and not u.startswith(FRONTEND_OWN_SERVICES)]

    def load_workflow(self, workflow: dict) -> None:
        self.page.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)

    def queue_and_wait(self, timeout: float = 120) -> dict:
        """Press the front end's queue (app.queuePrompt) and wait for the new /history entry."""
        before = set(self.server.get_json("/history"))
        self.page.evaluate("async () => { await app.queuePrompt(0, 1); }")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = {k: v for k, v in self.server.get_json("/history").items() if k not in before}
            if new:
                (prompt_id, entry), = new.items()
                status = entry.get("status") or {}
                assert status.get("status_str") != "error", json.dumps(status)[:3000]
                return entry
            assert not self.our_errors(), self.our_errors()
            time.sleep(0.25)
        raise AssertionError(f"the queued workflow did not finish within {timeout:.0f} s; "
                             f"queue {self.server.get_json('/queue')}; log:\n{self.server.log_tail()}")


# the legacy front end's api module (the same instance the page uses); null under another front end
FIND_API = """async () => {
    try { window.__mrApi = (await import("/scripts/api.js")).api || null; } catch (e) { window.__mrApi = null; }
}"""
# wait_for_function does not await promises: the predicate is synchronous
SOCKET_READY = """() => window.__mrApi === null
    || (!!window.__mrApi.socket && window.__mrApi.socket.readyState === 1 && !!window.__mrApi.clientId)"""


@pytest.fixture
def comfy_page(browser, browser_comfy):
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(WEBGL_COUNTER)
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        yield ComfyPage(page, browser_comfy).open()
    finally:
        context.close()
