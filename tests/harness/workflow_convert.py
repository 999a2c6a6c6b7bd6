"""Convert a UI-format ComfyUI workflow (what users save and drag in) into the
API format that POST /prompt takes, using the server's /object_info.

UI format: ``nodes`` (id, type, mode, inputs[{name, type, link, widget?}],
outputs, widgets_values) and ``links`` ([id, from_node, from_slot, to_node,
to_slot, type] lists, or objects with origin_id/origin_slot/target_id/
target_slot in newer files).

Rules, following what ComfyUI's frontend does when it queues a workflow:
- widgets_values are matched in order to the node's widget inputs (required,
  then optional); an INT input named seed/noise_seed, or any input declared
  with control_after_generate, is followed by a frontend-only control value
  ("fixed", "increment", "decrement", "randomize") that is skipped;
- an input that has a link takes the linked value, widget or not;
- muted nodes (mode 2) are dropped with their links; bypassed nodes (mode 4)
  are dropped and each link out of them is reconnected to the bypassed node's
  input of the same type;
- frontend-only nodes (Note, MarkdownNote, Reroute, PrimitiveNode) are not
  sent: links through a Reroute are followed, and a PrimitiveNode's value is
  written into the inputs it feeds;
- a node type the server does not know is an error naming it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MODE_MUTED = 2
MODE_BYPASSED = 4
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
SEED_NAMES = {"seed", "noise_seed"}


class WorkflowError(ValueError):
    """The workflow cannot be converted; the message names the node and why."""


def is_api_format(workflow: Any) -> bool:
    return (isinstance(workflow, dict) and "nodes" not in workflow and bool(workflow)
            and all(isinstance(v, dict) and "class_type" in v for v in workflow.values()))


def _input_specs(info: dict) -> list[tuple[str, Any, dict]]:
    """(name, type, options) for the node's required then optional inputs."""
    specs = []
    inputs = info.get("input") or {}
    for section in ("required", "optional"):
        for name, spec in (inputs.get(section) or {}).items():
            if not isinstance(spec, (list, tuple)) or not spec:
                continue
            kind = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            specs.append((name, kind, opts))
    return specs


def _is_widget(kind: Any, opts: dict) -> bool:
    if opts.get("forceInput"):
        return False
    return isinstance(kind, list) or (isinstance(kind, str) and kind in WIDGET_TYPES)


def _has_control_value(name: str, kind: Any, opts: dict) -> bool:
    if opts.get("control_after_generate"):
        return True
    return kind == "INT" and name in SEED_NAMES


def _normalise_links(raw_links: Any) -> dict[int, tuple[int, int, int, int, Any]]:
    links = {}
    for link in raw_links or []:
        if isinstance(link, dict):
            lid = link["id"]
            entry = (link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                     link.get("type"))
        elif isinstance(link, (list, tuple)) and len(link) >= 5:
            lid = link[0]
            entry = (link[1], link[2], link[3], link[4], link[5] if len(link) > 5 else None)
        else:
            raise WorkflowError(f"malformed link entry: {link!r}")
        links[int(lid)] = entry
    return links


class _Converter:
    def __init__(self, workflow: dict, object_info: dict):
        if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
            raise WorkflowError("not a UI-format workflow: expected a 'nodes' list")
        self.object_info = object_info
        self.nodes = {}
        for node in workflow["nodes"]:
            if "id" not in node or "type" not in node:
                raise WorkflowError(f"node without id or type: {json.dumps(node)[:200]}")
            self.nodes[int(node["id"])] = node
        self.links = _normalise_links(workflow.get("links"))

    # A link's source, after walking through reroutes and bypassed nodes:
    # ("node", id, slot), ("value", v) for a PrimitiveNode, or None (dropped).
    def resolve(self, link_id: int | None, want_type: Any, seen: frozenset = frozenset()):
        if link_id is None:
            return None
        link = self.links.get(int(link_id))
        if link is None:
            return None  # dangling link: the frontend drops it too
        origin_id, origin_slot = int(link[0]), int(link[1])
        if (origin_id, origin_slot) in seen:
            raise WorkflowError(f"link cycle through node {origin_id}")
        seen = seen | {(origin_id, origin_slot)}
        origin = self.nodes.get(origin_id)
        if origin is None:
            raise WorkflowError(f"link {link_id} comes from node {origin_id}, which is not in the workflow")
        mode = origin.get("mode", 0)
        kind = origin["type"]
        if kind == "Reroute":
            inputs = origin.get("inputs") or []
            return self.resolve(inputs[0].get("link") if inputs else None, want_type, seen)
        if kind == "PrimitiveNode":
            values = origin.get("widgets_values") or []
            return ("value", values[0]) if values else None
        if mode == MODE_MUTED:
            return None
        if mode == MODE_BYPASSED:
            inputs = origin.get("inputs") or []
            order = ([origin_slot] if origin_slot < len(inputs) else []) + list(range(len(inputs)))
            link_type = want_type if want_type not in (None, "*") else link[4]
            for idx in order:
                inp = inputs[idx]
                if inp.get("link") is not None and (inp.get("type") == link_type or link_type in (None, "*")):
                    return self.resolve(inp["link"], want_type, seen)
            return None
        if kind in ("Note", "MarkdownNote"):
            return None
        return ("node", origin_id, origin_slot)

    def convert(self) -> dict:
        api: dict[str, dict] = {}
        for node_id, node in sorted(self.nodes.items()):
            kind = node["type"]
            if kind in FRONTEND_ONLY or node.get("mode", 0) in (MODE_MUTED, MODE_BYPASSED):
                continue
            info = self.object_info.get(kind)
            if info is None:
                raise WorkflowError(f"unknown node type {kind!r} (node {node_id}): the server has no such node; "
                                    "is the custom node pack that provides it installed and importable?")
            api[str(node_id)] = {
                "class_type": kind,
                "inputs": self._inputs(node_id, node, info),
                "_meta": {"title": node.get("title") or info.get("display_name") or kind},
            }
        if not api:
            raise WorkflowError("the workflow has no node to run")
        return api

    def _inputs(self, node_id: int, node: dict, info: dict) -> dict:
        specs = _input_specs(info)
        values: dict[str, Any] = {}
        widgets = node.get("widgets_values")
        if isinstance(widgets, dict):  # some packs save widgets by name
            for name, kind, opts in specs:
                if _is_widget(kind, opts) and name in widgets:
                    values[name] = widgets[name]
        elif isinstance(widgets, list):
            i = 0
            for name, kind, opts in specs:
                if not _is_widget(kind, opts):
                    continue
                if i >= len(widgets):
                    break
                values[name] = widgets[i]
                i += 1
                if (_has_control_value(name, kind, opts) and i < len(widgets)
                        and isinstance(widgets[i], str) and widgets[i] in CONTROL_VALUES):
                    i += 1
        spec_types = {name: kind for name, kind, _ in specs}
        for inp in node.get("inputs") or []:
            name = inp.get("name")
            if name is None:
                continue
            if inp.get("link") is None:
                continue
            source = self.resolve(inp["link"], inp.get("type") or spec_types.get(name))
            if source is None:
                continue  # source muted/missing: a widget keeps its own value, like the frontend
            if source[0] == "value":
                values[name] = source[1]
            else:
                values[name] = [str(source[1]), source[2]]
        return values


def ui_to_api(ui_workflow: dict, object_info: dict) -> dict:
    """API-format graph ({id: {class_type, inputs, _meta}}) for a UI-format workflow."""
    if is_api_format(ui_workflow):
        return ui_workflow
    return _Converter(ui_workflow, object_info).convert()


def load_workflow(path: str | Path, object_info: dict) -> dict:
    """Read a workflow file (UI or API format) and return the API format."""
    with open(path, encoding="utf-8") as f:
        workflow = json.load(f)
    return ui_to_api(workflow, object_info)
