"""Motion databases and text retrieval inside a real ComfyUI: Load Motion DB -> Text Retrieve ->
Save Animated WEBP, Build Motion DB from a HumanML3D-layout folder in the server's input
folder, and bad inputs. The server has its own temporary models folder, where the built-in
database is built on first use."""
from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.comfy_server import ComfyExecutionError, output_files
from motionrag_suite.models.motion import library
from motionrag_suite.models.motion.humanml3d import joints_to_features
from unit.test_retrieval_nodes import HUMANML3D_CLIPS, write_humanml3d_folder

LOAD_DB, BUILD_DB, RETRIEVE = "MotionRAGLoadMotionDB", "MotionRAGBuildMotionDB", "MotionRAGTextRetrieve"
PANEL = 128
GAP_COLOUR = (60, 62, 70)           # models/render/contact_sheet.GAP_COLOUR, read back from the image


def retrieve_graph(db_node: dict, text: str = "a person does a cartwheel", top_k: int = 3, exclude: str = "",
                   target_length: int = 0, prefix: str = "retrieval/preview") -> dict:
    return {
        "1": db_node,
        "2": {"class_type": RETRIEVE, "inputs": {"text": text, "motion_db": ["1", 0], "top_k": top_k,
                                                 "target_length": target_length, "exclude": exclude,
                                                 "panel_size": PANEL}},
        "3": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["2", 1], "filename_prefix": prefix,
                                                           "fps": 20.0, "lossless": True, "quality": 90,
                                                           "method": "default"}},
    }


def load_db(name: str = "builtin") -> dict:
    return {"class_type": LOAD_DB, "inputs": {"database": name}}


def build_db(source: str, name: str, kind: str = "humanml3d", mode: str = "create") -> dict:
    return {"class_type": BUILD_DB, "inputs": {"source_folder": source, "kind": kind, "name": name, "mode": mode,
                                               "split": "train", "mirrored": True}}


def gap_runs(frame: np.ndarray) -> list[tuple[int, int]]:
    """Column ranges that are entirely the contact sheet's gap colour (panel separators)."""
    is_gap = (frame == np.array(GAP_COLOUR, dtype=np.uint8)).all(axis=2).all(axis=0)
    runs, start = [], None
    for x, g in enumerate(list(is_gap) + [False]):
        if g and start is None:
            start = x
        elif not g and start is not None:
            runs.append((start, x))
            start = None
    return runs


def check_preview(comfy, entry: dict, top_k: int) -> tuple[int, int]:
    files = [f for nid, f in output_files(entry) if nid == "3" and f["filename"].endswith(".webp")]
    assert len(files) == 1, entry["outputs"]
    with Image.open(io.BytesIO(comfy.view(files[0]))) as im:
        n = getattr(im, "n_frames", 1)
        frames = []
        for k in (0, n // 2):
            im.seek(k)
            frames.append(np.asarray(im.convert("RGB")))
    assert n >= 2, "the preview is not animated"
    first = frames[0]
    runs = gap_runs(first)
    assert len(runs) == top_k - 1, f"{len(runs) + 1} panels, expected {top_k}: separators at {runs}"
    edges = [0] + [x for r in runs for x in r] + [first.shape[1]]
    widths = [b - a for a, b in zip(edges[::2], edges[1::2])]
    assert widths == [PANEL] * top_k, widths
    for a, b in zip(edges[::2], edges[1::2]):
        panel = first[:, a:b].astype(np.int16)
        assert panel.std() > 5, "a blank panel"
        assert (panel[:20] < 120).any(), "no caption text at the top of a panel"
        assert np.abs(frames[1][:, a:b].astype(np.int16) - panel).mean() > 0.05, "a panel does not move"
    return n, first.shape[1]


def test_load_builtin_and_retrieve_cartwheel(comfy, object_info):
    choices = object_info[LOAD_DB]["input"]["required"]["database"][0]
    assert choices[0] == "builtin", choices
    entry = comfy.run(retrieve_graph(load_db()), timeout=600)
    # Built inside the server's temporary models folder.
    assert (comfy.models_dir / "motionrag" / "databases" / "builtin" / "manifest.json").is_file()
    check_preview(comfy, entry, 3)
    out = entry["outputs"]["2"]
    refs = out["motionrag_refs"]
    assert len(refs) == 3, out
    top = refs[0]["name"]
    assert top.removeprefix("M_") == "cartwheel", refs
    assert [r["score"] for r in refs] == sorted((r["score"] for r in refs), reverse=True)
    if (Path(__file__).resolve().parents[2] / "models" / "motion" / "preview.py").is_file():
        # The browser viewer's payload for each reference (models/motion/preview.py).
        for r in refs:
            assert r["preview"]["caption"] == r["caption"] and r["preview"]["frames"] == r["num_frames"], r
    (summary,) = out["text"]
    lines = summary.splitlines()
    assert len(lines) == 3
    for line, ref in zip(lines, refs):
        assert ref["name"] in line and ref["caption"] in line and f"{ref['score']:.3f}" in line
    # Excluding the cartwheel drops its mirrored copy too.
    again = comfy.run(retrieve_graph(load_db(), exclude="cartwheel", prefix="retrieval/excl"), timeout=300)
    names = [r["name"] for r in again["outputs"]["2"]["motionrag_refs"]]
    assert not {"cartwheel", "M_cartwheel"} & set(names), names


def test_build_from_humanml3d_folder_then_retrieve(comfy):
    write_humanml3d_folder(comfy.input_dir / "hml_small")
    graph = retrieve_graph({"class_type": BUILD_DB, "inputs": build_db("hml_small", "hml_test")["inputs"]},
                           text="a person crawls on hands and knees", top_k=2, prefix="retrieval/hml")
    entry = comfy.run(graph, timeout=600)
    db_dir = comfy.models_dir / "motionrag" / "databases" / "hml_test"
    assert (db_dir / "manifest.json").is_file()
    (built_summary,) = entry["outputs"]["1"]["text"]
    assert f"{2 * len(HUMANML3D_CLIPS)} entries" in built_summary, built_summary
    refs = entry["outputs"]["2"]["motionrag_refs"]
    assert refs[0]["name"].lstrip("M") == "000002", refs
    check_preview(comfy, entry, 2)
    # The new database is offered by Load Motion DB and loads from there.
    choices = comfy.object_info(LOAD_DB)["input"]["required"]["database"][0]
    assert "hml_test" in choices, choices
    loaded = comfy.run(retrieve_graph(load_db("hml_test"), text="someone spinning around", top_k=1,
                                      prefix="retrieval/hml_load"), timeout=300)
    assert loaded["outputs"]["2"]["motionrag_refs"][0]["name"].lstrip("M") == "000003"


def test_bad_inputs_fail_naming_the_input_and_the_server_lives_on(comfy):
    (comfy.input_dir / "empty_source").mkdir(exist_ok=True)
    # A real database, then a damaged copy of it.
    comfy.run({"1": build_db("", "lib_copy", kind="builtin")}, timeout=600)
    dbs = comfy.models_dir / "motionrag" / "databases"
    shutil.copytree(dbs / "lib_copy", dbs / "damaged_db", ignore=shutil.ignore_patterns("writer.lock"))
    sqlite = next((dbs / "damaged_db").glob("entries.g*.sqlite"))
    sqlite.write_bytes(sqlite.read_bytes()[: sqlite.stat().st_size // 2])
    assert "damaged_db" in comfy.object_info(LOAD_DB)["input"]["required"]["database"][0]

    cases = {
        "empty text": (retrieve_graph(load_db(), text="  "), ["text", "empty"]),
        "top_k 0": (retrieve_graph(load_db(), top_k=0), ["top_k"]),
        "top_k too large": (retrieve_graph(load_db(), top_k=60), ["top_k", "60"]),
        "unknown exclusion": (retrieve_graph(load_db(), exclude="no_such_clip"), ["exclude", "no_such_clip"]),
        "missing database": (retrieve_graph(load_db("no_such_db")), ["database", "no_such_db"]),
        "corrupt database": (retrieve_graph(load_db("damaged_db")), ["database", "damaged_db"]),
        "name leaves the folder": ({"1": build_db("", "../escape", kind="builtin")}, ["name", "escape"]),
        "missing source": ({"1": build_db("no_such_folder", "x1")}, ["source_folder", "no_such_folder"]),
        "empty source": ({"1": build_db("empty_source", "x2")}, ["source_folder", "empty"]),
        "existing name": ({"1": build_db("", "lib_copy", kind="builtin")}, ["name", "already exists"]),
    }
    problems = []
    for label, (graph, needles) in cases.items():
        text = comfy.failure_message(graph)
        missing = [n for n in needles if n.lower() not in text.lower()]
        if missing:
            problems.append(f"{label}: error does not name {missing}: {text[:500]}")
        assert comfy.is_alive(), f"server died after {label}:\n{comfy.log_tail()}"
    assert not problems, "\n".join(problems)
    for name in ("x1", "x2", "escape"):
        assert not (dbs / name).exists() and not (dbs.parent / name).exists()
    # Still answers a good query.
    entry = comfy.run(retrieve_graph(load_db(), text="a person walks forward", top_k=1, prefix="retrieval/after"))
    assert entry["outputs"]["2"]["motionrag_refs"][0]["name"].removeprefix("M_").startswith("walk")


def write_many_spans(folder: Path, count: int) -> None:
    """A HumanML3D folder whose one clip has `count` captioned sub-clips: `count` entries to build
    from a few kilobytes of files."""
    (folder / "new_joint_vecs").mkdir(parents=True)
    (folder / "texts").mkdir()
    np.save(folder / "new_joint_vecs" / "000100.npy", np.tile(joints_to_features(library.load_clip("spin").joints), (5, 1)))
    lines = []
    for k in range(count):
        start, frames = k % 300, 40 + 10 * (k // 300)
        lines.append(f"a person spins in place, take {k}#a/DET#{start / 20:.2f}#{(start + frames) / 20:.2f}")
    (folder / "texts" / "000100.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "train.txt").write_text("000100\n", encoding="utf-8")


def test_cancel_stops_a_build_and_leaves_nothing_behind(comfy):
    write_many_spans(comfy.input_dir / "many_spans", 1200)
    prompt_id = comfy.queue({"1": build_db("many_spans", "cancelled_db")})
    deadline = time.monotonic() + 120
    while not comfy.get_json("/queue").get("queue_running"):
        assert time.monotonic() < deadline, "the build never started"
        time.sleep(0.05)
    time.sleep(1.0)                      # inside the build (1200 entries take well over 10 s here)
    status, _ = comfy._request("POST", "/interrupt")
    assert status == 200
    with pytest.raises(ComfyExecutionError) as info:
        comfy.wait(prompt_id, timeout=300)
    events = [m[0] for m in (info.value.payload.get("status") or {}).get("messages", [])]
    assert "execution_interrupted" in events, events
    dbs = comfy.models_dir / "motionrag" / "databases"
    assert not (dbs / "cancelled_db").exists(), "the cancelled build finished anyway"
    assert not [p.name for p in dbs.iterdir() if p.name.startswith(".cancelled_db")], "a half-written build was left"
    assert comfy.is_alive()
