"""The pack inside a real ComfyUI server: import, /object_info, every shipped
workflow through /prompt, /history and /view, and bad inputs.

The server (tests/harness/comfy_server.py) runs with its own temporary
output/, input/ and models/ folders; the pack is a symlinked custom node."""
from __future__ import annotations

import hashlib
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.comfy_server import (PACK_FOLDER_NAME, REPO_ROOT, ComfyExecutionError, ComfyPromptError,
                                  output_files)
from harness.workflow_convert import ui_to_api

WORKFLOWS = sorted((REPO_ROOT / "workflows").glob("*.json"))
LOAD, SAVE, RENDER = "MotionRAGLoadMotion", "MotionRAGSaveMotion", "MotionRAGRenderSkeleton"
IMAGE_SUFFIXES = (".webp", ".gif", ".png", ".apng")


def expected_nodes() -> dict:
    import motionrag_suite.nodes as pack_nodes  # must import without ComfyUI

    return pack_nodes.NODE_CLASS_MAPPINGS


def display_names() -> dict:
    import motionrag_suite.nodes as pack_nodes

    return getattr(pack_nodes, "NODE_DISPLAY_NAME_MAPPINGS", {})


def traceback_blocks(log: str) -> list[str]:
    """Each 'Traceback ...' block up to and including its exception line."""
    blocks, current = [], None
    for line in log.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            current = [line]
            continue
        if current is not None:
            current.append(line)
            if line and not line[0].isspace():
                blocks.append("\n".join(current))
                current = None
    if current:
        blocks.append("\n".join(current))
    return blocks


def mentions_pack(text: str) -> bool:
    # The venv and the ComfyUI copies live inside the clone too (.venv/, .cache/): a traceback of
    # ComfyUI's own nodes through them (v0.3.64's upscale nodes need torchvision) is not the pack's.
    for inside in (".venv", ".cache"):
        text = text.replace(str(REPO_ROOT / inside), "<outside the pack>")
    return PACK_FOLDER_NAME in text or str(REPO_ROOT) in text


# ---------------------------------------------------------------- import
def test_pack_imports_cleanly(comfy, object_info, record_property):
    entry = comfy.pack_import()
    log = comfy.log_text()
    assert entry is not None, f"{PACK_FOLDER_NAME} not in 'Import times for custom nodes':\n{comfy.log_tail()}"
    seconds, ok = entry
    assert ok, f"ComfyUI reports IMPORT FAILED for the pack:\n{comfy.log_tail(120)}"
    failed = [l for l in log.splitlines() if "IMPORT FAILED" in l and mentions_pack(l)]
    assert not failed, failed
    # Start-up and the /object_info call (INPUT_TYPES of every node) logged no pack traceback.
    bad = [b for b in traceback_blocks(log) if mentions_pack(b)]
    assert not bad, "traceback from the pack in the ComfyUI log:\n" + "\n\n".join(bad)
    assert not re.search(r"error occurred while retrieving information for the '[^']*MotionRAG", log), \
        comfy.log_tail(80)
    record_property("comfyui_pack_import_seconds", seconds)
    record_property("comfyui_startup_seconds", round(comfy.startup_seconds, 2))
    print(f"\npack import time reported by ComfyUI: {seconds} s; server start {comfy.startup_seconds:.1f} s")


# ----------------------------------------------------------- object_info
def test_object_info_lists_exactly_the_pack_nodes(object_info):
    mapping = expected_nodes()
    assert mapping, "NODE_CLASS_MAPPINGS is empty"
    assert {LOAD, SAVE, RENDER} <= set(mapping)
    missing = sorted(set(mapping) - set(object_info))
    assert not missing, f"/object_info lacks {missing}"
    ours = {name for name, info in object_info.items() if str(info.get("category", "")).startswith("MotionRAG")}
    assert ours == set(mapping), f"MotionRAG-category nodes {sorted(ours)} != NODE_CLASS_MAPPINGS {sorted(mapping)}"


@pytest.mark.parametrize("node_id", sorted(expected_nodes()))
def test_object_info_inputs_and_outputs_match_the_class(object_info, node_id):
    cls = expected_nodes()[node_id]
    info = object_info[node_id]
    declared = cls.INPUT_TYPES()
    for section in ("required", "optional"):
        want = list((declared.get(section) or {}).keys())
        got = list(((info.get("input") or {}).get(section) or {}).keys())
        assert got == want, f"{node_id} {section} inputs: server {got} vs class {want}"
    assert info["output"] == list(cls.RETURN_TYPES)
    if hasattr(cls, "RETURN_NAMES"):
        assert info["output_name"] == list(cls.RETURN_NAMES)
    assert info["output_node"] == bool(getattr(cls, "OUTPUT_NODE", False))
    if node_id in display_names():
        assert info["display_name"] == display_names()[node_id]
    for name, spec in ((info.get("input") or {}).get("required") or {}).items():
        if isinstance(spec[0], list):
            assert spec[0], f"{node_id}.{name}: empty choice list"


def test_load_motion_lists_builtin_clips(object_info):
    choices = object_info[LOAD]["input"]["required"]["clip"][0]
    for clip in ("cartwheel", "walk", "M_walk"):
        assert clip in choices, f"{clip!r} not offered by {LOAD}.clip: {choices[:20]}"


# ------------------------------------------------------------- helpers
def run_ok(comfy, graph: dict, timeout: float = 600) -> dict:
    return comfy.wait(comfy.queue(graph), timeout)


def run_failing(comfy, graph: dict) -> str:
    """The error text of a graph that must fail, at validation or execution."""
    try:
        entry = run_ok(comfy, graph)
    except ComfyPromptError as exc:
        return str(exc) + " " + json.dumps(exc.payload)
    except ComfyExecutionError as exc:
        return str(exc)
    raise AssertionError(f"graph should have failed but ran: {json.dumps(entry.get('outputs'))[:500]}")


def default_clip(object_info) -> str:
    spec = object_info[LOAD]["input"]["required"]["clip"]
    return (spec[1] if len(spec) > 1 else {}).get("default") or spec[0][0]


def load_and_save(clip: str, path: str = "", fmt: str = "npz", prefix: str = "MotionRAG/motion") -> dict:
    return {
        "1": {"class_type": LOAD, "inputs": {"clip": clip, "path": path, "fps_override": 0.0}},
        "2": {"class_type": SAVE, "inputs": {"motion": ["1", 0], "filename_prefix": prefix, "format": fmt}},
    }


def saved_files(comfy, entry: dict, suffix: str) -> list[dict]:
    return [f for _, f in output_files(entry) if f["filename"].lower().endswith(suffix)]


def npz_joints(raw: bytes) -> tuple[np.ndarray, float | None]:
    with np.load(io.BytesIO(raw), allow_pickle=False) as data:
        joints = None
        if "joints" in data.files:
            joints = data["joints"]
        else:
            for k in data.files:
                if data[k].ndim == 3 and data[k].shape[1:] == (22, 3):
                    joints = data[k]
                    break
        fps = float(data["fps"]) if "fps" in data.files else None
    assert joints is not None and joints.ndim == 3, "saved npz has no (T, 22, 3) joints array"
    return joints, fps


def parse_bvh(text: str) -> dict:
    """Minimal strict BVH reader: joint names, channel count, frames, frame time, values."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    assert lines[0] == "HIERARCHY", lines[:2]
    joints, channels, i, depth = [], 0, 1, 0
    while lines[i] != "MOTION":
        tok = lines[i].split()
        if tok[0] in ("ROOT", "JOINT"):
            joints.append(tok[1])
        elif tok[0] == "CHANNELS":
            n = int(tok[1])
            assert len(tok) == 2 + n, lines[i]
            channels += n
        elif tok[0] == "OFFSET":
            assert len(tok) == 4 and all(math.isfinite(float(v)) for v in tok[1:]), lines[i]
        elif tok[0] == "{":
            depth += 1
        elif tok[0] == "}":
            depth -= 1
        i += 1
        assert i < len(lines), "BVH has no MOTION section"
    assert depth == 0, "unbalanced braces in BVH hierarchy"
    frames = int(lines[i + 1].split(":", 1)[1]) if lines[i + 1].startswith("Frames:") else None
    assert frames is not None, lines[i + 1]
    assert lines[i + 2].startswith("Frame Time:"), lines[i + 2]
    frame_time = float(lines[i + 2].split(":", 1)[1])
    values = np.array([[float(v) for v in l.split()] for l in lines[i + 3:]], dtype=np.float64)
    assert values.shape == (frames, channels), f"BVH motion block {values.shape} != ({frames}, {channels})"
    assert np.isfinite(values).all()
    return {"joints": joints, "channels": channels, "frames": frames, "frame_time": frame_time, "values": values}


def upstream(graph: dict, node_id: str, input_name: str) -> str | None:
    link = graph[node_id]["inputs"].get(input_name)
    return link[0] if isinstance(link, list) else None


def check_animation(raw: bytes, width: int, height: int, frames: int | None, fps: float | None,
                    animated: bool = True) -> int:
    with Image.open(io.BytesIO(raw)) as im:
        n = getattr(im, "n_frames", 1)
        assert (im.width, im.height) == (width, height), f"animation is {im.size}, expected {(width, height)}"
        if not animated:  # a still image (SaveImage writes one file per frame)
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
            assert arr.std() > 2.0, f"image is blank (std {arr.std():.2f})"
            return n
        if frames is not None:
            assert n == frames, f"animation has {n} frames, expected {frames}"
        assert n >= 2, "not an animation"
        hashes, arrays = set(), []
        for k in range(n):
            im.seek(k)
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
            assert arr.std() > 2.0, f"frame {k} is blank (std {arr.std():.2f})"
            hashes.add(hashlib.sha1(arr.tobytes()).hexdigest())
            if k in (0, n // 2, n - 1):
                arrays.append(arr.astype(np.int16))
            if fps and k == 0 and im.info.get("duration"):
                assert abs(im.info["duration"] - 1000.0 / fps) <= 1.5, im.info
        assert len(hashes) >= max(2, n // 4), f"only {len(hashes)} distinct frames of {n}"
        assert np.abs(arrays[0] - arrays[1]).mean() > 0.5, "first and middle frames are nearly identical"
    return n


# ------------------------------------------------------------ workflows
def missing_requirements(comfy, ui: dict) -> list[str]:
    """Files a workflow declares in its "extra" (motionrag_requires_models under models/motionrag,
    motionrag_requires_inputs under input/) that this server lacks. Workflows naming real
    multi-GB models run with tiny stand-ins in their own tests (test_i2v_graph.py)."""
    extra = ui.get("extra") or {}
    models = comfy.models_dir / "motionrag"

    def present(path: Path) -> bool:       # a released .ckpt may already be converted to .safetensors
        return path.exists() or (path.suffix == ".ckpt" and path.with_suffix(".safetensors").exists())

    missing = [f"models/motionrag/{p}" for p in extra.get("motionrag_requires_models", []) if not present(models / p)]
    missing += [f"models/{p}" for p in extra.get("motionrag_requires_comfy_models", [])
                if not (comfy.models_dir / p).exists()]
    # ComfyUI's own nodes that only newer versions have (Preview 3D - Animation: v0.3.x)
    known = comfy.object_info()
    missing += [f"ComfyUI node {t} (a newer ComfyUI has it)" for t in extra.get("motionrag_requires_comfy_nodes", [])
                if t not in known]
    return missing + [f"input/{p}" for p in extra.get("motionrag_requires_inputs", [])
                      if not (comfy.input_dir / p).exists()]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w.stem for w in WORKFLOWS])
def test_workflow_runs_and_outputs_check(comfy, object_info, workflow):
    ui = json.loads(workflow.read_text(encoding="utf-8"))
    if (ui.get("extra") or {}).get("motionrag_demo_assets"):
        from harness import i2v_demo_assets           # the image-to-video mechanics demo's tiny stand-ins

        i2v_demo_assets.write(comfy.models_dir, comfy.input_dir)
    missing = missing_requirements(comfy, ui)
    if missing:
        pytest.skip(f"{workflow.name} needs what this test server lacks: {', '.join(missing)}")
    graph = ui_to_api(ui, object_info)
    # Probe: save every rendered motion as npz too, to know its frame count.
    probes = {}
    for nid, node in list(graph.items()):
        if node["class_type"] == RENDER and isinstance(node["inputs"].get("motion"), list):
            pid = f"probe{nid}"
            graph[pid] = {"class_type": SAVE, "inputs": {"motion": node["inputs"]["motion"],
                                                         "filename_prefix": f"probe/{nid}", "format": "npz"}}
            probes[nid] = pid
    entry = run_ok(comfy, graph)
    outputs = entry["outputs"]
    checked = 0
    for nid, node in graph.items():
        node_out = outputs.get(nid) or {}
        files = [f for f in node_out.get("images", []) if isinstance(f, dict)]
        animated = bool((node_out.get("animated") or [False])[0]) or node["class_type"].startswith("SaveAnimated")
        anims = [f for f in files if f["filename"].lower().endswith(IMAGE_SUFFIXES)]
        if not anims:
            continue
        src = upstream(graph, nid, "images")
        assert src is not None, f"node {nid} has images but no image input"
        width = height = frames = None
        if graph[src]["class_type"] == RENDER:
            r = graph[src]["inputs"]
            width, height = r["width"], r["height"]
            probe_raw = comfy.view(saved_files(comfy, {"outputs": {probes[src]: outputs[probes[src]]}}, ".npz")[0])
            joints, motion_fps = npz_joints(probe_raw)
            if not r.get("fps") or (motion_fps and abs(r["fps"] - motion_fps) < 1e-6):
                frames = len(joints)
        for f in anims:
            raw = comfy.view(f)
            assert raw == comfy.local_path(f).read_bytes(), "/view differs from the file on disk"
            with Image.open(io.BytesIO(raw)) as im:
                w, h = im.size
            n = check_animation(raw, width or w, height or h, frames,
                                node["inputs"].get("fps") if node["class_type"] == "SaveAnimatedWEBP" else None,
                                animated=animated)
            checked += 1
            print(f"\n{workflow.name}: {f['subfolder']}/{f['filename']} {n} frames {w}x{h}")
    for nid, node in graph.items():
        if node["class_type"] != SAVE or nid in probes.values():
            continue
        saved = [f for _, f in output_files({"outputs": {nid: outputs.get(nid, {})}})]
        assert saved, f"Save Motion node {nid} reported no file: {outputs.get(nid)}"
        text = [t for t in (outputs[nid].get("text") or [])]
        assert text and all(Path(t).name == saved[0]["filename"] for t in text[:1]), outputs[nid]
        raw = comfy.view(saved[0])
        fmt = node["inputs"]["format"]
        if fmt == "bvh":
            bvh = parse_bvh(raw.decode("utf-8"))
            assert len(bvh["joints"]) >= 20 and bvh["frames"] >= 2, bvh["joints"]
            assert 0 < bvh["frame_time"] < 1
            assert bvh["values"][:, :3].std(axis=0).max() > 1e-3, "root never moves"
            src = upstream(graph, nid, "motion")
            for pnid, pid in probes.items():
                if upstream(graph, pid, "motion") == src:
                    joints, _ = npz_joints(comfy.view(saved_files(comfy, {"outputs": {pid: outputs[pid]}}, ".npz")[0]))
                    assert bvh["frames"] == len(joints), "BVH and npz of the same motion differ in length"
        elif fmt == "npz":
            npz_joints(raw)
        checked += 1
    assert checked, f"{workflow.name} produced nothing the test could check: {json.dumps(outputs)[:800]}"


def test_every_save_format_round_trips_through_load(comfy, object_info):
    clip = default_clip(object_info)
    formats = object_info[SAVE]["input"]["required"]["format"][0]
    assert "npz" in formats and "bvh" in formats
    lengths = {}
    for fmt in formats:
        entry = run_ok(comfy, load_and_save(clip, fmt=fmt, prefix=f"roundtrip/{fmt}"))
        saved = [f for _, f in output_files(entry)]
        assert len(saved) == 1, entry["outputs"]
        path = comfy.local_path(saved[0])
        assert path.is_file() and path.stat().st_size > 0
        if fmt == "humanml3d_vecs_npy":
            continue  # features alone do not carry the skeleton's bone lengths
        if fmt.startswith("glb"):
            # Load Motion does not read GLB (an export for other tools): read it back directly and
            # compare with the clip saved as npz
            from motionrag_suite.models.motion.gltf import read_glb_joints

            glb_joints, _, _ = read_glb_joints(path)
            ref = run_ok(comfy, load_and_save(clip, prefix=f"roundtrip/ref_{fmt}"))
            ref_joints, _ = npz_joints(comfy.view(saved_files(comfy, ref, ".npz")[0]))
            assert np.abs(glb_joints - ref_joints).max() < 1e-3
            lengths[fmt] = len(glb_joints)
            continue
        # Load it back through the path input (absolute path), save as npz, compare length.
        back = run_ok(comfy, load_and_save(clip, path=str(path), prefix=f"roundtrip/back_{fmt}"))
        joints, _ = npz_joints(comfy.view(saved_files(comfy, back, ".npz")[0]))
        lengths[fmt] = len(joints)
    assert len(set(lengths.values())) == 1, f"frame counts differ between formats: {lengths}"


def test_motion_file_in_models_folder_is_offered_and_loads(comfy, object_info):
    clip = default_clip(object_info)
    entry = run_ok(comfy, load_and_save(clip, prefix="models_probe/m"))
    src = comfy.local_path(saved_files(comfy, entry, ".npz")[0])
    motions = comfy.models_dir / "motionrag" / "motions"
    motions.mkdir(parents=True, exist_ok=True)
    (motions / "my_probe_clip.npz").write_bytes(src.read_bytes())
    choices = comfy.object_info(LOAD)["input"]["required"]["clip"][0]
    mine = [c for c in choices if c.endswith("my_probe_clip.npz")]
    assert mine, f"file in {motions} not offered: {choices[-10:]}"
    back = run_ok(comfy, load_and_save(mine[0], prefix="models_probe/back"))
    assert len(npz_joints(comfy.view(saved_files(comfy, back, ".npz")[0]))[0]) == len(npz_joints(src.read_bytes())[0])


# ------------------------------------------------------------ bad inputs
def _digest(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_bad_inputs_fail_clearly_and_leave_the_server_working(comfy, object_info):
    clip = default_clip(object_info)
    inp = comfy.input_dir
    (inp / "empty_motion.npz").write_bytes(b"")
    (inp / "corrupt_motion.npz").write_bytes(b"PK\x03\x04 this is not really a zip archive" * 8)
    nan = np.zeros((30, 22, 3), dtype=np.float32)
    nan[7, 3, 1] = np.nan
    np.save(inp / "nan_motion.npy", nan)
    # A file the user already has where the next save would go must survive.
    user_file = comfy.output_dir / "MotionRAG" / "motion_00001_.npz"
    user_file.parent.mkdir(parents=True, exist_ok=True)
    user_file.write_bytes(b"the user's own file")
    before_in, before_out = _digest(inp), _digest(comfy.output_dir)

    cases = {
        "missing": (load_and_save(clip, path="no_such_motion.npz"), ["no_such_motion.npz"]),
        "empty": (load_and_save(clip, path="empty_motion.npz"), ["empty_motion.npz"]),
        "corrupt": (load_and_save(clip, path="corrupt_motion.npz"), ["corrupt_motion.npz"]),
        "nan": (load_and_save(clip, path="nan_motion.npy"), ["nan_motion.npy", "nan"]),
        "unknown clip": (load_and_save("no_such_clip_xyz"), ["clip", "no_such_clip_xyz"]),
    }
    render = {
        "1": {"class_type": LOAD, "inputs": {"clip": clip, "path": "", "fps_override": 0.0}},
        "2": {"class_type": RENDER, "inputs": {
            "motion": ["1", 0], "mode": "3d", "width": 100000, "height": 64, "azimuth": 30.0, "elevation": 15.0,
            "distance": 4.0, "camera": "follow", "fps": 0.0, "grid": True, "trail": True}},
        "3": {"class_type": "SaveAnimatedWEBP", "inputs": {
            "images": ["2", 0], "filename_prefix": "bad/render", "fps": 20.0, "lossless": False,
            "quality": 80, "method": "default"}},
    }
    cases["absurd resolution"] = (render, ["width"])
    failures = []
    for name, (graph, needles) in cases.items():
        text = run_failing(comfy, graph)
        low = text.lower()
        if name != "unknown clip" and name != "absurd resolution":
            needles = needles + ["path"]
        missing = [n for n in needles if n.lower() not in low]
        if missing:
            failures.append(f"{name}: error does not name {missing}: {text[:600]}")
        assert comfy.is_alive(), f"server died after the {name} case:\n{comfy.log_tail()}"
    assert not failures, "\n".join(failures)

    # The server still runs a good graph, and saves beside (not over) the user's file.
    entry = run_ok(comfy, load_and_save(clip))
    new = comfy.local_path(saved_files(comfy, entry, ".npz")[0])
    assert new != user_file and new.parent == user_file.parent
    assert user_file.read_bytes() == b"the user's own file"
    assert _digest(inp) == before_in, "input folder changed"
    after_out = _digest(comfy.output_dir)
    assert all(after_out.get(k) == v for k, v in before_out.items()), "an existing output file changed"


def test_example_query_image_is_in_the_input_folder_for_load_image(comfy):
    """The image-to-video workflows' Load Image names motionrag_query.png: the pack places the one it
    ships (workflows/input/) in ComfyUI's input folder when the server starts, so Load Image lists it."""
    shipped = REPO_ROOT / "workflows" / "input" / "motionrag_query.png"
    placed = comfy.input_dir / "motionrag_query.png"
    assert placed.is_file(), sorted(p.name for p in comfy.input_dir.iterdir())
    assert placed.read_bytes() == shipped.read_bytes()
    choices = comfy.object_info("LoadImage")["input"]["required"]["image"][0]
    assert "motionrag_query.png" in choices, choices
