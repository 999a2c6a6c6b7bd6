"""ui_to_api: UI-format workflows -> /prompt's API format.

The object_info below is a copy of the shape ComfyUI's /object_info answers
with (the integration tests convert the real workflows with the real one)."""
import copy
import json
from pathlib import Path

import pytest

from harness.workflow_convert import WorkflowError, is_api_format, ui_to_api

OBJECT_INFO = {
    "Loader": {"input": {"required": {
        "clip": [["walk", "cartwheel"], {"default": "walk"}]},
        "optional": {"path": ["STRING", {"default": ""}], "fps_override": ["FLOAT", {"default": 0.0}]}},
        "output": ["MOTION_DATA", "STRING", "INT"]},
    "Render": {"input": {"required": {
        "motion": ["MOTION_DATA"],
        "width": ["INT", {"default": 512}],
        "grid": ["BOOLEAN", {"default": True}]}},
        "output": ["IMAGE", "FLOAT"]},
    "Sampler": {"input": {"required": {
        "model": ["MODEL"],
        "seed": ["INT", {"default": 0}],
        "steps": ["INT", {"default": 20}],
        "sampler_name": [["euler", "ddim"]]},
        "optional": {"extra": ["STRING", {"forceInput": True}], "cfg": ["FLOAT", {"default": 8.0}]}},
        "output": ["LATENT"]},
    "Picker": {"input": {"required": {
        "choice": [["a", "b"], {"control_after_generate": True}],
        "count": ["INT", {"default": 1}]}}, "output": ["STRING"]},
    "Model": {"input": {"required": {}}, "output": ["MODEL"]},
    "Blur": {"input": {"required": {"image": ["IMAGE"], "radius": ["INT", {"default": 1}]}},
             "output": ["IMAGE"]},
    "Save": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "x"}]},
                       "hidden": {"prompt": "PROMPT"}}, "output": [], "output_node": True},
}


def node(id, type, widgets=None, inputs=(), mode=0, **extra):
    d = {"id": id, "type": type, "mode": mode, "inputs": list(inputs), "outputs": [],
         "widgets_values": [] if widgets is None else widgets}
    d.update(extra)
    return d


def inp(name, type, link, widget=False):
    d = {"name": name, "type": type, "link": link}
    if widget:
        d["widget"] = {"name": name}
    return d


def basic_workflow():
    return {
        "nodes": [
            node(1, "Note", ["read me"]),
            node(2, "Loader", ["cartwheel", "", 0.0]),
            node(3, "Render", [640, False], [inp("motion", "MOTION_DATA", 1)]),
            node(4, "Save", ["MotionRAG/out"], [inp("images", "IMAGE", 2)], title="My save"),
        ],
        "links": [[1, 2, 0, 3, 0, "MOTION_DATA"], [2, 3, 0, 4, 0, "IMAGE"]],
    }


def test_widgets_map_in_order_and_links_become_pairs():
    api = ui_to_api(basic_workflow(), OBJECT_INFO)
    assert set(api) == {"2", "3", "4"}  # the Note is frontend-only
    assert api["2"] == {"class_type": "Loader", "_meta": {"title": "Loader"},
                        "inputs": {"clip": "cartwheel", "path": "", "fps_override": 0.0}}
    assert api["3"]["inputs"] == {"motion": ["2", 0], "width": 640, "grid": False}
    assert api["4"]["inputs"] == {"images": ["3", 0], "filename_prefix": "MotionRAG/out"}
    assert api["4"]["_meta"]["title"] == "My save"
    json.dumps(api)  # serialisable as /prompt needs


def test_seed_control_value_is_skipped():
    wf = {"nodes": [node(1, "Model"),
                    node(2, "Sampler", [42, "randomize", 7, "ddim", 3.5], [inp("model", "MODEL", 1)])],
          "links": [[1, 1, 0, 2, 0, "MODEL"]]}
    api = ui_to_api(wf, OBJECT_INFO)
    # forceInput 'extra' takes no widget value; cfg (optional) gets 3.5
    assert api["2"]["inputs"] == {"model": ["1", 0], "seed": 42, "steps": 7, "sampler_name": "ddim", "cfg": 3.5}


def test_seed_without_control_value_is_not_skipped():
    wf = {"nodes": [node(1, "Model"),
                    node(2, "Sampler", [42, 7, "ddim", 3.5], [inp("model", "MODEL", 1)])],
          "links": [[1, 1, 0, 2, 0, "MODEL"]]}
    assert ui_to_api(wf, OBJECT_INFO)["2"]["inputs"]["steps"] == 7


def test_declared_control_after_generate_is_skipped():
    wf = {"nodes": [node(1, "Picker", ["b", "fixed", 5])], "links": []}
    assert ui_to_api(wf, OBJECT_INFO)["1"]["inputs"] == {"choice": "b", "count": 5}


def test_widget_converted_to_input_takes_the_link():
    wf = basic_workflow()
    wf["nodes"].append(node(5, "Loader", ["walk", "", 0.0]))
    # Render.width is fed by Loader 5's INT output (frames)
    wf["nodes"][2]["inputs"].append(inp("width", "INT", 3, widget=True))
    wf["links"].append([3, 5, 2, 3, 1, "INT"])
    api = ui_to_api(wf, OBJECT_INFO)
    assert api["3"]["inputs"]["width"] == ["5", 2]
    assert api["3"]["inputs"]["grid"] is False  # later widget values still line up


def test_primitive_node_value_is_written_into_its_targets():
    wf = basic_workflow()
    wf["nodes"].append(node(6, "PrimitiveNode", [1024, "fixed"],
                            outputs=[{"name": "INT", "type": "INT", "links": [4]}]))
    wf["nodes"][2]["inputs"].append(inp("width", "INT", 4, widget=True))
    wf["links"].append([4, 6, 0, 3, 1, "INT"])
    api = ui_to_api(wf, OBJECT_INFO)
    assert "6" not in api
    assert api["3"]["inputs"]["width"] == 1024


def test_reroute_is_followed():
    wf = basic_workflow()
    wf["nodes"].append(node(7, "Reroute", inputs=[inp("", "*", 1)]))
    wf["links"] = [[1, 2, 0, 7, 0, "MOTION_DATA"], [5, 7, 0, 3, 0, "MOTION_DATA"], [2, 3, 0, 4, 0, "IMAGE"]]
    wf["nodes"][2]["inputs"][0]["link"] = 5
    api = ui_to_api(wf, OBJECT_INFO)
    assert "7" not in api
    assert api["3"]["inputs"]["motion"] == ["2", 0]


def test_bypassed_node_is_reconnected_through():
    wf = basic_workflow()
    # Render(3) -> Blur(8, bypassed) -> Save(4)
    wf["nodes"].append(node(8, "Blur", [3], [inp("image", "IMAGE", 2)], mode=4))
    wf["links"] = [[1, 2, 0, 3, 0, "MOTION_DATA"], [2, 3, 0, 8, 0, "IMAGE"], [6, 8, 0, 4, 0, "IMAGE"]]
    wf["nodes"][3]["inputs"][0]["link"] = 6
    api = ui_to_api(wf, OBJECT_INFO)
    assert "8" not in api
    assert api["4"]["inputs"]["images"] == ["3", 0]


def test_muted_node_is_dropped_with_its_links():
    wf = basic_workflow()
    wf["nodes"].append(node(8, "Blur", [3], [inp("image", "IMAGE", 2)], mode=2))
    wf["links"] = [[1, 2, 0, 3, 0, "MOTION_DATA"], [2, 3, 0, 8, 0, "IMAGE"], [6, 8, 0, 4, 0, "IMAGE"]]
    wf["nodes"][3]["inputs"][0]["link"] = 6
    api = ui_to_api(wf, OBJECT_INFO)
    assert "8" not in api
    assert "images" not in api["4"]["inputs"]  # the server will then report the missing input
    muted_output = copy.deepcopy(basic_workflow())
    muted_output["nodes"][3]["mode"] = 2
    assert "4" not in ui_to_api(muted_output, OBJECT_INFO)


def test_unknown_node_type_is_named():
    wf = basic_workflow()
    wf["nodes"].append(node(9, "NoSuchNode", [1]))
    with pytest.raises(WorkflowError, match=r"NoSuchNode.*node 9"):
        ui_to_api(wf, OBJECT_INFO)


def test_new_style_link_objects():
    wf = basic_workflow()
    wf["links"] = [{"id": l[0], "origin_id": l[1], "origin_slot": l[2], "target_id": l[3],
                    "target_slot": l[4], "type": l[5]} for l in wf["links"]]
    assert ui_to_api(wf, OBJECT_INFO) == ui_to_api(basic_workflow(), OBJECT_INFO)


def test_api_format_passes_through_and_garbage_is_refused():
    api = ui_to_api(basic_workflow(), OBJECT_INFO)
    assert is_api_format(api)
    assert ui_to_api(api, OBJECT_INFO) is api
    with pytest.raises(WorkflowError):
        ui_to_api({"foo": 1}, OBJECT_INFO)
    with pytest.raises(WorkflowError, match="no node"):
        ui_to_api({"nodes": [node(1, "Note", ["x"])], "links": []}, OBJECT_INFO)


def test_shipped_workflows_are_ui_format_with_known_frontend_nodes():
    """Every shipped workflow parses and links only nodes that exist in it."""
    files = sorted((Path(__file__).resolve().parents[2] / "workflows").glob("*.json"))
    assert files, "no workflows/*.json"
    for f in files:
        wf = json.loads(f.read_text(encoding="utf-8"))
        assert isinstance(wf.get("nodes"), list), f
        ids = {n["id"] for n in wf["nodes"]}
        for link in wf.get("links", []):
            assert link[1] in ids and link[3] in ids, (f.name, link)
