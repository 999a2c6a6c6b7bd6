"""Reading a ComfyUI workflow (UI format, subgraphs included) for the prompts it runs with:
workflow_prompts(workflow) -> (positive prompts, negative prompts).

The built-in video database captions each template preview with its workflow's positive prompt.
The reader follows links from the samplers' "positive"/"negative" inputs back to the text encoders,
through subgraph boundaries, text primitives, switches and reroutes; text computed at run time (a
regex, an LLM's output) is not a prompt it can read, and is left out rather than guessed.
"""
from __future__ import annotations

from .errors import RetrievalError

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

# Conditioning nodes whose output no longer carries their input's text (Wan workflows make the
# negative by zeroing the positive: that text is not a negative prompt).
_ERASES_TEXT = {"ConditioningZeroOut"}
_WIDGET_TYPES = {"STRING", "INT", "FLOAT", "BOOLEAN", "COMBO"}



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
        raise RetrievalError("workflow", "expected a ComfyUI workflow object with a 'nodes' list")
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


__all__ = ["workflow_prompts", "API_PROMPT_WIDGET", "API_NEGATIVE_WIDGET"]
