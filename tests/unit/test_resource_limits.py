"""Sizes a file claims are checked against what it really holds before anything is allocated (issue 14,
items 4, 5 and the NaN weights of item 8): model configs against their weights file's header, .npy/.npz
headers and BVH 'Frames:' against the file's size."""
import json
import resource
import struct

import numpy as np
import pytest
import torch

from motionrag_suite.common.errors import InputError
from motionrag_suite.models import tensor_file
from motionrag_suite.models.i2v.offline.model import OfflineConfig, OfflineMotionModel
from motionrag_suite.models.i2v.offline.model import load_model as load_offline
from motionrag_suite.models.i2v.offline.model import save_model as save_offline
from motionrag_suite.models.motion import bvh_write
from motionrag_suite.models.motion.files import load_motion_file, save_npz
from motionrag_suite.models.motion.motion import MotionError
from motionrag_suite.models.t2m.checkpoint import CheckpointError, load_model, save_model
from motionrag_suite.models.t2m.config import TINY
from motionrag_suite.models.t2m.model import T2MModel

from .test_retrieval_fixtures import make_motion

SMALL_OFFLINE = OfflineConfig(d_model=32, heads=2, layers=1, feedforward=64, resampler_depth=1, decoder_hidden=32)


@pytest.fixture()
def memory_cap():
    """A 2 GB address-space cap for the body: a loader that trusts a size would fail with MemoryError
    (or a raw allocator error) instead of a clear refusal, and never take the machine down."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                used = int(line.split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (used + (2 << 30), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _t2m_folder(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "t2m"
    save_model(folder, T2MModel(TINY))
    return folder


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("field, value, named", [
    ("layers", 10 ** 6, "transformer.layers"),         # past any sane size: refused before reading the weights
    ("layers", 5, "transformer.layers"),               # sane, but the weights hold 1 layer
    ("latent", 64, "transformer.latent"),
    ("ff", 4096, "transformer.ff"),
])
def test_t2m_config_is_checked_against_bounds_and_weights_before_building(tmp_path, memory_cap, field, value, named):
    folder = _t2m_folder(tmp_path)
    _edit_json(folder / "config.json", lambda d: d["model"]["transformer"].__setitem__(field, value))
    with pytest.raises(InputError) as e:
        load_model(folder)
    assert e.value.input.endswith("config.json") and e.value.message.startswith(named + ":")


def test_t2m_config_tokenizer_and_refiner_sizes_are_checked(tmp_path):
    folder = _t2m_folder(tmp_path)
    _edit_json(folder / "config.json", lambda d: d["model"]["tokenizer"].__setitem__("width", 512))
    with pytest.raises(InputError) as e:
        load_model(folder)
    assert e.value.message.startswith("tokenizer.width:")
    folder = _t2m_folder(tmp_path / "b")
    _edit_json(folder / "config.json", lambda d: d["model"]["refiner"].__setitem__("depth", 40))
    with pytest.raises(InputError) as e:
        load_model(folder)
    assert e.value.message.startswith("refiner.depth:")
    assert load_model(_t2m_folder(tmp_path / "c")).config == TINY          # an untouched one loads


def test_t2m_weights_full_of_nan_are_refused_at_load(tmp_path):
    folder = _t2m_folder(tmp_path)
    model = T2MModel(TINY)
    with torch.no_grad():
        model.masked.head.weight.fill_(float("nan"))
    save_model(folder, model)
    with pytest.raises(CheckpointError) as e:
        load_model(folder)
    assert "masked.head.weight" in e.value.message and "NaN" in e.value.message


@pytest.mark.parametrize("field, value", [("layers", 10 ** 6), ("layers", 3), ("feedforward", 4096),
                                          ("resampler_depth", 7)])
def test_offline_config_is_checked_against_bounds_and_weights_before_building(tmp_path, memory_cap, field, value):
    save_offline(tmp_path, OfflineMotionModel(SMALL_OFFLINE))
    _edit_json(tmp_path / "config.json", lambda d: d["config"].__setitem__(field, value))
    with pytest.raises(InputError) as e:
        load_offline(tmp_path)
    assert field in e.value.message


def test_safetensors_header_is_read_without_the_tensors_and_checked_against_the_size(tmp_path):
    from safetensors.torch import save_file

    save_file({"a.0.w": torch.zeros(3, 4), "a.1.w": torch.zeros(3, 4)}, str(tmp_path / "m.safetensors"))
    h = tensor_file.read_header(tmp_path / "m.safetensors")
    assert h["a.0.w"] == ("F32", (3, 4)) and tensor_file.layer_count(h, "a.") == 2
    raw = (tmp_path / "m.safetensors").read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header["a.0.w"]["shape"] = [10 ** 6, 4]
    text = json.dumps(header).encode()
    (tmp_path / "big.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    with pytest.raises(InputError, match="does not fit"):
        tensor_file.read_header(tmp_path / "big.safetensors")


def _npy_claiming(path, shape, payload=b"\0" * 64):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': %r, }" % (shape,)
    header = header.ljust(118) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload)
    return path


def test_npy_and_npz_headers_claiming_huge_arrays_are_refused(tmp_path, memory_cap):
    bad = _npy_claiming(tmp_path / "walk.npy", (10 ** 12, 263))
    with pytest.raises(MotionError) as e:
        load_motion_file(bad)
    assert "declares shape" in e.value.message
    save_npz(make_motion("walk", 30), tmp_path / "ok.npz")
    import zipfile
    with zipfile.ZipFile(tmp_path / "ok.npz") as z, zipfile.ZipFile(tmp_path / "big.npz", "w") as out:
        for info in z.infolist():
            data = z.read(info)
            if info.filename == "joints.npy":
                data = _npy_claiming(tmp_path / "j.npy", (10 ** 12, 22, 3)).read_bytes()
            out.writestr(info.filename, data)
    with pytest.raises(MotionError) as e:
        load_motion_file(tmp_path / "big.npz")
    assert "joints" in e.value.message and "declares shape" in e.value.message


def test_humanml3d_npy_claiming_a_huge_array_is_refused_by_the_builder(tmp_path, memory_cap):
    from motionrag_suite.retrieval.builders import humanml3d_plan
    from motionrag_suite.retrieval.errors import RetrievalError

    src = tmp_path / "hml"
    (src / "new_joint_vecs").mkdir(parents=True)
    (src / "texts").mkdir()
    _npy_claiming(src / "new_joint_vecs" / "000001.npy", (10 ** 12, 263))
    (src / "texts" / "000001.txt").write_text("a person walks#a/DET person/NOUN#0.0#0.0\n")
    (src / "train.txt").write_text("000001\n")
    plan = humanml3d_plan(src, split="train")
    with pytest.raises(RetrievalError) as e:
        list(plan.entries)
    assert e.value.input == "source_folder" and "declares shape" in e.value.message


def test_bvh_frames_past_the_rows_in_the_file_allocate_nothing(tmp_path, memory_cap):
    path = tmp_path / "walk.bvh"
    bvh_write.save_bvh(make_motion("walk", 5), path)
    text = path.read_text()
    import re
    path.write_text(re.sub(r"Frames:\s*5", "Frames: 1000000000000", text))
    with pytest.raises(MotionError) as e:
        load_motion_file(path)
    assert "truncated" in e.value.message and "1000000000000" in e.value.message


@pytest.mark.parametrize("part, key", [("MASKED_NAME", "n_layers"), ("VQ_NAME", "nb_code"),
                                       ("MASKED_NAME", "latent_dim")])
def test_momask_opt_txt_sizes_are_bounded_before_building(tmp_path, memory_cap, part, key):
    import re

    from motionrag_suite.models.momask import load_momask

    from . import momask_tiny as tiny

    folder = tiny.write_folder(tmp_path / "t2m", tiny.tiny_states())
    opt = folder / getattr(tiny, part) / "opt.txt"
    opt.write_text(re.sub(rf"(?m)^{key}: \d+", f"{key}: 1000000000", opt.read_text()))
    with pytest.raises(InputError) as e:
        load_momask(folder)
    assert e.value.input == "folder" and f"{key} is 1000000000" in e.value.message
