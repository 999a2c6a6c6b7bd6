"""Inputs that pointed elsewhere or were reported under the wrong name (issue 14, items 8, 9, 11, 12):
source folders read only what they hold, Save Motion stays in its output folder, HumanML3D spans that
are no rows, and errors name the input that is wrong."""
import os
from pathlib import Path

import pytest

from motionrag_suite.common.errors import InputError
from motionrag_suite.models.motion import library
from motionrag_suite.models.motion.files import save_humanml3d_npy
from motionrag_suite.nodes import t2m_nodes as tn
from motionrag_suite.nodes.motion_nodes import LoadMotion, SaveMotion
from motionrag_suite.nodes.retrieval_nodes import TextRetrieve
from motionrag_suite.retrieval.builders import build_from_folder, humanml3d_plan, parse_humanml3d_text
from motionrag_suite.retrieval.database import open_database
from motionrag_suite.retrieval.errors import RetrievalError

from .test_retrieval_fixtures import build_small

SECRET = "TOP-SECRET-CONTENT"


def _hml(tmp_path):
    src = tmp_path / "HumanML3D"
    (src / "new_joint_vecs").mkdir(parents=True)
    (src / "texts").mkdir()
    save_humanml3d_npy(library.load_clip("walk"), src / "new_joint_vecs" / "000001.npy")
    (src / "texts" / "000001.txt").write_text("a person walks#x#0.0#0.0\n")
    (src / "train.txt").write_text("000001\n")
    return src


# ------------------------------------------------------------------------- 11: paths leave the source
def test_humanml3d_split_lines_that_are_paths_are_refused(tmp_path):
    src = _hml(tmp_path)
    outside = tmp_path / "elsewhere"
    (outside / "texts").mkdir(parents=True)
    (outside / "texts" / "x.txt").write_text(f"{SECRET}#x#0.0#0.0\n")
    (src / "train.txt").write_text("000001\n../../elsewhere/texts/x\n")
    with pytest.raises(RetrievalError) as e:
        humanml3d_plan(src, split="train")
    assert e.value.input == "source_folder" and "line 2" in e.value.message and SECRET not in str(e.value)


def test_humanml3d_folders_linked_elsewhere_are_refused(tmp_path):
    src = _hml(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "000001.txt").write_text(f"{SECRET}#x#0.0#0.0\n")
    (src / "texts" / "000001.txt").unlink()
    (src / "texts" / "000001.txt").symlink_to(outside / "000001.txt")
    with pytest.raises(RetrievalError, match="leaves the source folder") as e:
        humanml3d_plan(src, split="train")
    assert SECRET not in str(e.value)


def test_a_motion_file_linked_outside_the_folder_is_refused_and_never_quoted(tmp_path):
    src = tmp_path / "clips"
    src.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET + "\nmore\n")
    (src / "walk.bvh").symlink_to(secret)
    with pytest.raises(RetrievalError, match="leaves the source folder") as e:
        build_from_folder(tmp_path / "models", "mine", src)
    assert SECRET not in str(e.value)
    # inside the folder but not a BVH: the parser says so without quoting the file
    (src / "walk.bvh").unlink()
    (src / "walk.bvh").write_text(SECRET + "\n")
    with pytest.raises(Exception) as e:
        build_from_folder(tmp_path / "models", "mine", src)
    assert SECRET not in str(e.value) and "HIERARCHY" in str(e.value)


# ------------------------------------------------------------------------- 8: spans that are no rows
@pytest.mark.parametrize("span", ["0.0#inf", "-2.0#1.0", "1.0#-inf"])
def test_humanml3d_spans_that_are_no_rows_are_reported(tmp_path, span):
    path = tmp_path / "000001.txt"
    path.write_text(f"a person walks#x#{span}\n")
    with pytest.raises(RetrievalError) as e:
        parse_humanml3d_text(path)
    assert e.value.input == "source_folder" and "line 1" in e.value.message


# ------------------------------------------------------------------------- 12: Save Motion's output folder
@pytest.mark.parametrize("prefix", ["../../escaped", "sub/../../escaped", "/tmp/motionrag-escaped"])
def test_save_motion_never_leaves_its_output_folder(tmp_path, monkeypatch, prefix):
    (tmp_path / "deep").mkdir()
    monkeypatch.chdir(tmp_path / "deep")          # without ComfyUI the output folder is ./output
    data, _, _ = LoadMotion().load("walk")
    with pytest.raises(InputError) as e:
        SaveMotion().save(data, prefix, "npz")
    assert e.value.input == "filename_prefix"
    written = [p for p in tmp_path.rglob("*escaped*")] + [p for p in os.scandir("/tmp") if "motionrag-escaped" in p.name]
    assert written == []
    ok = SaveMotion().save(data, "MotionRAG/kept", "npz")["result"][0]
    assert (tmp_path / "deep" / "output").resolve() in Path(ok).resolve().parents


# ------------------------------------------------------------------------- 9: the input named
def test_a_huge_text_is_reported_as_text():
    assert tn.TextToMotionRAG.VALIDATE_INPUTS(text="walk " * 20000).startswith("text:")


def test_panel_size_1_is_reported_as_panel_size(tmp_path):
    build_small(tmp_path)
    db = open_database(tmp_path, "small")
    with pytest.raises(InputError) as e:
        TextRetrieve().retrieve("a person walks", db, 1, 0, "", panel_size=1)
    assert e.value.input == "panel_size"


# ------------------------------------------------------------------------- 8: pickled weights refused
class _Tripwire:
    """Unpickling this writes a file: proof that the weights were (or were not) unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pickled_folder(folder, config, tripwire):
    import json
    import pickle

    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": _Tripwire(str(tripwire))}))
    return folder


def test_a_text_encoder_folder_holding_pickles_is_refused(tmp_path):
    from motionrag_suite.retrieval.text_encoder import get_text_encoder

    root = tmp_path / "models"
    _pickled_folder(root / "text_encoders" / "evil", {"model_type": "bert", "hidden_size": 8}, tmp_path / "ran")
    with pytest.raises(RetrievalError) as e:
        get_text_encoder("evil", root)
    assert e.value.input == "encoder" and "refused" in e.value.message
    assert not (tmp_path / "ran").exists()


def test_a_dinov2_folder_holding_pickles_is_refused(tmp_path):
    from motionrag_suite.models.i2v.errors import CheckpointError
    from motionrag_suite.models.i2v.runtime import load_encoder

    folder = _pickled_folder(tmp_path / "dinov2-large", {"model_type": "dinov2"}, tmp_path / "ran")
    with pytest.raises(CheckpointError) as e:
        load_encoder(folder, "image")
    assert "refused" in e.value.message and not (tmp_path / "ran").exists()


# ------------------------------------------------------------------------- 6: Render Skeleton's real memory
def test_render_skeleton_limit_counts_the_float32_copy(monkeypatch):
    import numpy as np

    from motionrag_suite.models.motion import MotionError
    from motionrag_suite.models.render import skeleton3d
    from motionrag_suite.nodes.render_nodes import RenderSkeleton

    data, _, _ = LoadMotion().load("walk")
    data = {"joints": data["joints"][:10]}
    size = 10 * 256 * 256 * 3                              # the uint8 frames alone
    monkeypatch.setattr(skeleton3d, "MAX_OUTPUT_BYTES", 2 * size)   # they fit; with the float32 copy they do not
    with pytest.raises(MotionError, match="GiB"):
        RenderSkeleton().render(data, "3d", 256, 256, 30.0, 20.0, 3.0, "follow", 0, True, True)
    monkeypatch.setattr(skeleton3d, "MAX_OUTPUT_BYTES", 5 * size)
    images, _, _ = RenderSkeleton().render(data, "3d", 256, 256, 30.0, 20.0, 3.0, "follow", 0, True, True)
    frames = skeleton3d.render_3d(data["joints"], width=256, height=256, azimuth=30.0, elevation=20.0, distance=3.0,
                                  follow=True)
    assert images.dtype.is_floating_point and np.array_equal((images.numpy() * 255).round().astype(np.uint8), frames)
