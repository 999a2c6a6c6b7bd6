// MotionRAG Suite: interactive 3D skeleton preview inside nodes (drawn on a 2D canvas).
//
// Nodes send compact joint data in their UI output (models/motion/preview.py):
//   {"motionrag_motion": [payload]}                       Load Motion and other motion nodes
//   {"motionrag_refs": [{name, caption, score, preview}]}  Text Retrieve (a selectable list)
// Only window.app / LiteGraph node APIs that both the legacy (2024) and the
// current ComfyUI frontends offer are used: registerExtension,
// beforeRegisterNodeDef, onNodeCreated, onExecuted, onRemoved, addDOMWidget,
// app.canvas.canvas, and api's "executed" / "execution_cached" / "executing" events and
// /history. This file is the ComfyUI glue; the viewer knows nothing of ComfyUI.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

// The viewer module draws on a plain 2D canvas (no three.js, no WebGL) and is imported when the
// first motion is shown, not with the page: ComfyUI loads every .js file of the pack as an extension,
// so the viewer is an .mjs the extension imports itself.
let viewerModule = null;
const loadViewerModule = () => (viewerModule ??= import("./motionrag_viewer.mjs"));

// The last result each preview showed is kept as the id of the prompt that made it, in the node's
// properties (saved with the workflow, a few bytes); the result itself stays in ComfyUI's
// /history. So a page reload, or a run whose nodes all came from the cache (ComfyUI then sends no
// "executed" message for them), shows it again, as long as the server still has that prompt.
const LAST_RESULT = "MotionRAG last prompt";

const WIDGET_NAME = "motionrag_preview";
const RETRIEVE_NODE = "MotionRAGTextRetrieve";
const VIEWER_HEIGHT = 260;
const LIST_HEIGHT = 120;

// Run our handler after whatever the node type (or another extension) already had,
// instead of replacing it; our return value wins only when we return something.
function chainCallback(object, property, callback) {
    const original = object[property];
    object[property] = original
        ? function () {
            const result = original.apply(this, arguments);
            return callback.apply(this, arguments) ?? result;
        }
        : callback;
}

// A DOM widget floats above the graph canvas rather than inside it, so pointer input on it
// never reaches LiteGraph. What the widget does not use itself (anything outside the 3D view
// with a motion in it, the buttons, the slider and the reference rows) is passed on as a copy
// of the event, so the node can still be selected, dragged and right-clicked there.
function forwardUnusedInput(root, getWidget) {
    const graphCanvas = () => app.canvas?.canvas;
    const usedByWidget = (e) => e.defaultPrevented || !!e.target.closest?.("button, input, .mr-ref");
    root.addEventListener("pointerdown", (e) => {
        e.stopPropagation();
        if (usedByWidget(e)) return;
        // The Vue frontend's LiteGraph finds which widget is under a press itself and takes a press
        // on ours for a widget press, which starts no node drag. Its hit test passes over disabled
        // widgets (computedDisabled, which it sets afresh on every draw of the node), so ours is
        // marked so only while the copy is handled (synchronously, inside dispatchEvent): the press
        // then lands on the node's body, which selects and drags it. The 2024 UI reads no such flag.
        const widget = getWidget();
        const before = widget?.computedDisabled;
        if (widget) widget.computedDisabled = true;
        try {
            graphCanvas()?.dispatchEvent(new PointerEvent(e.type, e));
        } finally {
            if (widget) widget.computedDisabled = before;
        }
    });
    root.addEventListener("wheel", (e) => {
        e.stopPropagation();
        if (e.defaultPrevented) return;  // the 3D view zoomed
        const list = e.target.closest?.(".mr-refs");
        if (list && list.scrollHeight > list.clientHeight) return;  // the list scrolls itself
        e.preventDefault();
        const canvas = graphCanvas();
        // The 2024 LiteGraph listens for the old "mousewheel" name, which a synthetic "wheel" does
        // not reach; it is sent only when nothing took the "wheel" copy (dispatchEvent is true).
        if (canvas?.dispatchEvent(new WheelEvent("wheel", e))) {
            canvas.dispatchEvent(new WheelEvent("mousewheel", e));
        }
    }, { passive: false });
    // The node's menu comes from the forwarded right-button pointerdown; not the browser's too.
    root.addEventListener("contextmenu", (e) => {
        e.stopPropagation();
        if (!e.target.closest?.("input")) e.preventDefault();
    });
    root.addEventListener("dblclick", (e) => e.stopPropagation());
}

function injectStyle() {
    if (document.getElementById("motionrag-preview-style")) return;
    const style = document.createElement("style");
    style.id = "motionrag-preview-style";
    style.textContent = `
.motionrag-preview { display: flex; flex-direction: column; gap: 4px; box-sizing: border-box;
  font: 12px sans-serif; color: #ddd; overflow: hidden; }
.motionrag-preview .mr-stage { position: relative; flex: 1 1 auto; min-height: 80px;
  background: #202226; border-radius: 4px; overflow: hidden; touch-action: none; }
.motionrag-preview .mr-stage canvas { display: block; width: 100% !important; height: 100% !important;
  cursor: grab; }
.motionrag-preview .mr-info { position: absolute; left: 6px; top: 4px; right: 6px; pointer-events: none;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; color: #ccc; text-shadow: 0 0 3px #000; }
.motionrag-preview .mr-empty { position: absolute; inset: 0; display: flex; align-items: center;
  justify-content: center; text-align: center; padding: 8px; color: #999; }
.motionrag-preview .mr-bar { display: flex; align-items: center; gap: 6px; flex: 0 0 auto; }
.motionrag-preview .mr-bar button { width: 28px; height: 22px; padding: 0; cursor: pointer;
  background: #333; color: #eee; border: 1px solid #555; border-radius: 4px; }
.motionrag-preview .mr-bar input[type=range] { flex: 1 1 auto; min-width: 40px; margin: 0; }
.motionrag-preview .mr-counter { font-variant-numeric: tabular-nums; min-width: 64px; text-align: right; }
.motionrag-preview .mr-refs { flex: 0 0 auto; overflow-y: auto; border: 1px solid #444; border-radius: 4px; }
.motionrag-preview .mr-ref { display: flex; gap: 6px; padding: 2px 6px; cursor: pointer; white-space: nowrap; }
.motionrag-preview .mr-ref:hover { background: #2c2f35; }
.motionrag-preview .mr-ref.mr-selected { background: #3a4660; }
.motionrag-preview .mr-ref .mr-score { font-variant-numeric: tabular-nums; color: #9cf; }
.motionrag-preview .mr-ref .mr-caption { overflow: hidden; text-overflow: ellipsis; }
.motionrag-preview .mr-ref .mr-name { color: #888; }
`;
    document.head.appendChild(style);
}

function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
}

// The widget: a 3D stage, a play/pause button, a scrub slider and a frame
// counter; with a reference list above it on Text Retrieve.
function buildWidget(node, withRefs) {
    injectStyle();
    const root = el("div", "motionrag-preview");
    const refs = withRefs ? el("div", "mr-refs") : null;
    if (refs) {
        refs.style.maxHeight = `${LIST_HEIGHT}px`;
        refs.append(el("div", "mr-ref", "Run the workflow to see the retrieved motions."));
        root.append(refs);
    }
    const stage = el("div", "mr-stage");
    const info = el("div", "mr-info");
    const empty = el("div", "mr-empty", "Run the workflow to preview the motion in 3D.");
    stage.append(info, empty);
    const bar = el("div", "mr-bar");
    const playBtn = el("button", "mr-play", "\u25B6");
    playBtn.title = "Play / pause";
    const slider = el("input", "mr-scrub");
    slider.type = "range";
    slider.min = "0";
    slider.max = "0";
    slider.value = "0";
    slider.title = "Scrub through the frames";
    const counter = el("span", "mr-counter", "0 / 0");
    bar.append(playBtn, slider, counter);
    root.append(stage, bar);

    let viewer = null;        // made with the first motion (see loadViewerModule)
    let removed = false;
    const getViewer = async () => {
        const { MotionViewer } = await loadViewerModule();
        if (!viewer && !removed) {
            viewer = new MotionViewer(stage, {
                onFrame(frame, total, playing) {
                    counter.textContent = `${frame + 1} / ${total}`;
                    slider.max = String(Math.max(0, total - 1));
                    slider.value = String(frame);
                    playBtn.textContent = playing ? "\u275A\u275A" : "\u25B6";
                    playBtn.setAttribute("aria-pressed", String(playing));
                },
            });
        }
        return viewer;
    };

    playBtn.addEventListener("click", () => viewer?.toggle());
    slider.addEventListener("input", () => viewer?.seek(Number(slider.value)));
    let widget = null;
    forwardUnusedInput(root, () => widget);

    const minHeight = VIEWER_HEIGHT + (withRefs ? LIST_HEIGHT + 4 : 0) + 30;
    widget = node.addDOMWidget(WIDGET_NAME, "motionrag_preview", root, {
        serialize: false,
        hideOnZoom: false,
        getMinHeight: () => minHeight,
        getHeight: () => minHeight,
    });
    widget.serialize = false;
    Object.defineProperty(widget, "viewer", { get: () => viewer });
    widget.dispose = () => {
        removed = true;
        viewer?.dispose();
    };
    let shown = 0;  // a newer motion wins over one still waiting for the viewer module
    widget.showMotion = async (payload, label) => {
        const ticket = ++shown;
        const { decodePayload } = await loadViewerModule();
        const viewer = await getViewer();
        if (ticket !== shown || !viewer) return;
        let motion;
        try {
            motion = decodePayload(payload);
        } catch (err) {
            viewer.clear();
            empty.style.display = "";
            empty.textContent = `Cannot show this motion: ${err.message}`;
            console.warn("[MotionRAG] preview payload rejected:", err);
            return;
        }
        const parts = [label ?? payload.name, payload.caption].filter(Boolean);
        if (payload.decimated) {
            parts.push(`every ${payload.decimated.stride}th of ${payload.decimated.source_frames} frames`);
        }
        info.textContent = parts.join(" \u2014 ");
        info.title = payload.caption || "";
        viewer.load(motion);  // makes the canvas on the first motion
        empty.style.display = viewer.available ? "none" : "";
        if (!viewer.available) {
            empty.textContent = "This browser gives no 2D canvas: the 3D preview needs one.";
        }
        viewer.play();
    };
    widget.showRefs = (items) => {
        refs.replaceChildren();
        if (!items.length) {
            refs.append(el("div", "mr-ref", "No motion matched."));
            return;
        }
        const rows = items.map((ref, i) => {
            const row = el("div", "mr-ref");
            const score = typeof ref.score === "number" ? ref.score.toFixed(3) : "\u2013";
            row.append(el("span", "mr-rank", `${ref.rank ?? i + 1}.`), el("span", "mr-score", score),
                       el("span", "mr-caption", ref.caption || ""), el("span", "mr-name", ref.name || ""));
            row.title = `${ref.name || ""}\n${ref.caption || ""}`;
            row.addEventListener("click", () => select(i));
            refs.append(row);
            return row;
        });
        const select = (i) => {
            rows.forEach((r, j) => r.classList.toggle("mr-selected", i === j));
            if (items[i].preview) widget.showMotion(items[i].preview, `#${items[i].rank ?? i + 1} ${items[i].name || ""}`);
        };
        select(0);
    };

    // The legacy frontend grows the node to the widget's minimum height on its first draw.
    node.setSize([Math.max(node.size[0], 340), node.size[1]]);
    return widget;
}

function previewWidget(node, withRefs) {
    return node.widgets?.find((w) => w.name === WIDGET_NAME) ?? buildWidget(node, withRefs);
}

app.registerExtension({
    name: "MotionRAG.Preview",
    async beforeRegisterNodeDef(nodeType, nodeData) {
        if (!nodeData?.name?.startsWith("MotionRAG")) return;
        const outputsMotion = (nodeData.output ?? []).includes("MOTION_DATA");
        const isRetrieve = nodeData.name === RETRIEVE_NODE;

        chainCallback(nodeType.prototype, "onNodeCreated", function () {
            if (outputsMotion || isRetrieve) previewWidget(this, isRetrieve);
        });
        chainCallback(nodeType.prototype, "onExecuted", function (output) {
            showOutput(this, output);
        });
        // Give the canvas back when the node goes (deleted, or the graph cleared/reloaded).
        chainCallback(nodeType.prototype, "onRemoved", function () {
            this.widgets?.find((w) => w.name === WIDGET_NAME)?.dispose();
        });
    },
    // A node of a workflow being loaded (also after a page reload): show its last result again.
    loadedGraphNode(node) {
        const promptId = node.properties?.[LAST_RESULT];
        if (promptId && hasPreview(node)) restoreFromHistory(promptId, [node]);
    },
    setup() {
        // Nodes that ran in a prompt: remember it. Nodes taken from the cache get no "executed"
        // message; their output is in that prompt's /history entry once it has finished.
        const cached = new Map();   // prompt id -> node ids ComfyUI took from its cache
        api.addEventListener("executed", ({ detail }) => {
            const node = detail?.prompt_id && app.graph?.getNodeById(Number(detail.node) || detail.node);
            if (node && hasPreview(node)) rememberPrompt(node, detail.prompt_id);
        });
        api.addEventListener("execution_cached", ({ detail }) => {
            if (detail?.prompt_id && Array.isArray(detail.nodes)) cached.set(detail.prompt_id, detail.nodes);
        });
        const finished = (promptId) => {
            const ids = cached.get(promptId);
            cached.delete(promptId);
            const nodes = (ids ?? []).map((id) => app.graph?.getNodeById(Number(id) || id))
                .filter((n) => n && hasPreview(n));
            if (nodes.length) restoreFromHistory(promptId, nodes);
        };
        // "execution_success" on current ComfyUI; the 2024 one ends a prompt with "executing" null.
        api.addEventListener("execution_success", ({ detail }) => finished(detail?.prompt_id));
        let running = null;
        api.addEventListener("execution_start", ({ detail }) => { running = detail?.prompt_id ?? null; });
        api.addEventListener("executing", ({ detail }) => {
            const nodeId = detail && typeof detail === "object" ? detail.node : detail;
            if (nodeId == null && running) {
                const id = running;
                running = null;
                // on a current ComfyUI execution_success may still be on its way: look a bit later
                setTimeout(() => cached.has(id) && finished(id), 200);
            }
        });
    },
});

function rememberPrompt(node, promptId) {
    if (node.properties?.[LAST_RESULT] === promptId) return;
    // Bracketed as a graph change, so that the Vue frontend's change tracker sees it and keeps the
    // workflow it restores on reload up to date (the 2024 UI has no such hooks; it saves every second).
    app.canvas?.emitBeforeChange?.();
    node.properties ??= {};
    node.properties[LAST_RESULT] = promptId;
    app.canvas?.emitAfterChange?.();
}

function hasPreview(node) {
    return !!node.widgets?.some((w) => w.name === WIDGET_NAME);
}

function showOutput(node, output) {
    const refs = output?.motionrag_refs;
    const motion = output?.motionrag_motion?.[0];
    if (Array.isArray(refs)) {
        previewWidget(node, true).showRefs(refs);
    } else if (motion) {
        previewWidget(node, false).showMotion(motion);
    }
}

// Show what the given prompt produced for these nodes, from the server's /history (matching the
// node's type, so a different workflow's node with the same id is never shown).
async function restoreFromHistory(promptId, nodes) {
    let entry;
    try {
        const res = await api.fetchApi(`/history/${encodeURIComponent(promptId)}`);
        if (!res.ok) return;
        entry = (await res.json())?.[promptId];
    } catch (err) {
        console.warn("[MotionRAG] could not read /history for the last preview:", err);
        return;
    }
    if (!entry) return;   // the server no longer has it (restarted, or history cleared)
    const prompt = entry.prompt?.[2] ?? {};
    for (const node of nodes) {
        const output = entry.outputs?.[String(node.id)];
        const classType = prompt[String(node.id)]?.class_type;
        if (!output || (classType && classType !== node.type)) continue;
        rememberPrompt(node, promptId);
        showOutput(node, output);
    }
}
