// MotionRAG Suite: interactive 3D skeleton preview inside nodes.
//
// Nodes send compact joint data in their UI output (models/motion/preview.py):
//   {"motionrag_motion": [payload]}                       Load Motion and other motion nodes
//   {"motionrag_refs": [{name, caption, score, preview}]}  Text Retrieve (a selectable list)
// Only window.app / LiteGraph node APIs that both the legacy (2024) and the
// current ComfyUI frontends offer are used: registerExtension,
// beforeRegisterNodeDef, onNodeCreated, onExecuted, onRemoved, addDOMWidget,
// app.canvas.canvas. This file is the ComfyUI glue; the viewer knows nothing of ComfyUI.
import { app } from "../../../scripts/app.js";
import { MotionViewer, decodePayload } from "./motionrag_viewer.js";

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
function forwardUnusedInput(root) {
    const graphCanvas = () => app.canvas?.canvas;
    const usedByWidget = (e) => e.defaultPrevented || !!e.target.closest?.("button, input, .mr-ref");
    root.addEventListener("pointerdown", (e) => {
        e.stopPropagation();
        if (!usedByWidget(e)) graphCanvas()?.dispatchEvent(new PointerEvent(e.type, e));
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

    const viewer = new MotionViewer(stage, {
        onFrame(frame, total, playing) {
            counter.textContent = `${frame + 1} / ${total}`;
            slider.max = String(Math.max(0, total - 1));
            slider.value = String(frame);
            playBtn.textContent = playing ? "\u275A\u275A" : "\u25B6";
            playBtn.setAttribute("aria-pressed", String(playing));
        },
    });

    playBtn.addEventListener("click", () => viewer.toggle());
    slider.addEventListener("input", () => viewer.seek(Number(slider.value)));
    forwardUnusedInput(root);

    const minHeight = VIEWER_HEIGHT + (withRefs ? LIST_HEIGHT + 4 : 0) + 30;
    const widget = node.addDOMWidget(WIDGET_NAME, "motionrag_preview", root, {
        serialize: false,
        hideOnZoom: false,
        getMinHeight: () => minHeight,
        getHeight: () => minHeight,
    });
    widget.serialize = false;
    widget.viewer = viewer;
    widget.showMotion = (payload, label) => {
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
        viewer.load(motion);  // makes the WebGL renderer on the first motion
        empty.style.display = viewer.available ? "none" : "";
        if (!viewer.available) {
            empty.textContent = "WebGL is not available in this browser: the 3D preview needs it.";
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
            const refs = output?.motionrag_refs;
            const motion = output?.motionrag_motion?.[0];
            if (Array.isArray(refs)) {
                previewWidget(this, true).showRefs(refs);
            } else if (motion) {
                previewWidget(this, false).showMotion(motion);
            }
        });
        // Give the WebGL context back when the node goes (deleted, or the graph cleared/reloaded).
        chainCallback(nodeType.prototype, "onRemoved", function () {
            this.widgets?.find((w) => w.name === WIDGET_NAME)?.viewer?.dispose();
        });
    },
});
