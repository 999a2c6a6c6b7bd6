"""The pack as ComfyUI and the Comfy Registry see it."""
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from common.standalone import PACK_ROOT

HEAVY = ("torch", "diffusers", "transformers", "faiss", "cv2", "matplotlib", "safetensors", "pybullet")


def _requirements():
    lines = (PACK_ROOT / "requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def test_pyproject_dependencies_equal_requirements():
    project = tomllib.loads((PACK_ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == _requirements()


def test_no_torch_pin_and_no_exact_pins():
    for req in _requirements():
        assert "==" not in req, f"exact pin in requirements: {req}"
    assert "torch" in _requirements()


def test_registry_metadata():
    data = tomllib.loads((PACK_ROOT / "pyproject.toml").read_text())
    project, comfy = data["project"], data["tool"]["comfy"]
    assert "comfyui" not in project["name"].lower()
    assert project["version"].count(".") == 2 and project["license"] and project["requires-python"]
    assert project["urls"]["Repository"].startswith("https://")
    for key in ("PublisherId", "DisplayName", "Icon", "includes"):
        assert key in comfy


def test_classifiers_claim_no_gpu_environment_the_pack_was_never_run_on():
    classifiers = tomllib.loads((PACK_ROOT / "pyproject.toml").read_text())["project"]["classifiers"]
    assert "Operating System :: OS Independent" in classifiers
    assert [c for c in classifiers if c.startswith("Environment :: GPU")] == [], classifiers


def test_import_is_registration_only_and_cheap():
    # A fresh interpreter imports the pack the way ComfyUI does (a folder with
    # __init__.py, loaded under its folder name) and must not pull heavy libraries.
    code = f"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("MotionRAG_Suite", {str(PACK_ROOT / '__init__.py')!r},
                                              submodule_search_locations=[{str(PACK_ROOT)!r}])
mod = importlib.util.module_from_spec(spec)
sys.modules["MotionRAG_Suite"] = mod
spec.loader.exec_module(mod)
print(json.dumps({{"nodes": sorted(mod.NODE_CLASS_MAPPINGS), "names": mod.NODE_DISPLAY_NAME_MAPPINGS,
                   "web": mod.WEB_DIRECTORY, "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["heavy"] == [], f"importing the pack loaded {info['heavy']}"
    assert info["nodes"] and all(n.startswith("MotionRAG") for n in info["nodes"])
    assert set(info["names"]) == set(info["nodes"])
    assert (PACK_ROOT / info["web"]).is_dir()


def test_node_classes_follow_the_classic_api():
    from motionrag_suite.nodes import NODE_CLASS_MAPPINGS

    for node_id, cls in NODE_CLASS_MAPPINGS.items():
        spec = cls.INPUT_TYPES()
        assert "required" in spec, node_id
        assert callable(getattr(cls, cls.FUNCTION)), node_id
        assert len(cls.RETURN_TYPES) == len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)), node_id
        assert cls.CATEGORY.startswith("MotionRAG") and cls.DESCRIPTION, node_id
        for section in spec.values():
            for name, entry in section.items():
                opts = entry[1] if len(entry) > 1 else {}
                assert opts.get("tooltip"), f"{node_id}.{name} has no tooltip"


@pytest.mark.parametrize("path", sorted((PACK_ROOT / "workflows").glob("*.json")), ids=lambda p: p.name)
def test_workflows_are_ui_format_with_known_nodes(path):
    from motionrag_suite.nodes import NODE_CLASS_MAPPINGS

    wf = json.loads(path.read_text())
    assert {"nodes", "links", "version"} <= set(wf), "not a UI-format workflow"
    ours = {n["type"] for n in wf["nodes"] if n["type"].startswith("MotionRAG")}
    assert ours <= set(NODE_CLASS_MAPPINGS)
    assert any(n["type"] in ("Note", "MarkdownNote") for n in wf["nodes"]), "workflow carries no note for users"
