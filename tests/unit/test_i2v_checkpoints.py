"""Reading released-layout checkpoints: weights_only loading, key checks, safetensors conversion, messages."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from motionrag_suite.models.i2v import checkpoints as ck
from motionrag_suite.models.i2v import layouts
from motionrag_suite.models.i2v.adapter import inject_cogvideox, inject_svd
from motionrag_suite.models.i2v.cama import MotionContextTransformer
from motionrag_suite.models.i2v.errors import CheckpointError, CheckpointKeyError, CheckpointNotFoundError
from motionrag_suite.models.i2v.resampler import Resampler

from .test_i2v_fixtures import (MOTION_DIM, TINY_CAMA, TINY_COG_ADAPTER, TINY_MOTION_PROJ,  # noqa: F401
                                TINY_SVD_ADAPTER, cogvideox_inputs, one_thread, run_cogvideox, run_svd, svd_inputs,
                                tiny_cogvideox, tiny_svd_unet)

pytestmark = pytest.mark.usefixtures("one_thread")


def _lightning(state):
    """The shape of a Lightning checkpoint: the weights under 'state_dict' beside training bookkeeping."""
    return {"epoch": 3, "global_step": 5000, "pytorch-lightning_version": "2.2.1", "state_dict": state,
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 4}}}},
            "optimizer_states": [], "lr_schedulers": []}


def _place(root: Path, base: str, stem: str, obj) -> Path:
    path = ck.checkpoint_path(root, base, stem)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def _bf16(state):
    return {k: v.detach().to(torch.bfloat16) for k, v in state.items()}


def test_motion_proj_loads_converts_once_and_then_reads_safetensors(tmp_path):
    torch.manual_seed(0)
    src = Resampler(TINY_MOTION_PROJ).eval()
    ckpt = _place(tmp_path, "SVD", "motion_proj", _bf16(src.state_dict()))   # a raw state dict, as released
    model, report = ck.load_motion_projector(tmp_path, "SVD", config=TINY_MOTION_PROJ)
    assert report.source == "ckpt" and report.converted_to == ckpt.with_suffix(".safetensors")
    assert report.converted_to.is_file()
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v.to(torch.bfloat16).float())
    ckpt.unlink()                                        # from now on the safetensors file is enough
    again, report2 = ck.load_motion_projector(tmp_path, "SVD", config=TINY_MOTION_PROJ)
    assert report2.source == "safetensors"
    x = torch.randn(2, 9, TINY_MOTION_PROJ.embedding_dim)
    assert torch.equal(model(x), again(x))
    from safetensors.torch import load_file
    assert load_file(str(report.converted_to))["latents"].dtype == torch.bfloat16   # stored dtype kept


def test_motion_transformer_from_a_lightning_checkpoint(tmp_path):
    torch.manual_seed(0)
    src = MotionContextTransformer(TINY_CAMA).eval()
    state = {k: v for k, v in src.state_dict().items() if k != "sos_token"}   # as upstream saved it
    _place(tmp_path, "CogVideoX", "motion_transformer", _lightning(state))
    cama, report = ck.load_cama(tmp_path, "CogVideoX", config=TINY_CAMA)
    assert any("sos_token is not in the checkpoint" in n for n in report.notes)
    assert torch.equal(cama.transformer.layers[1].linear1.weight, src.transformer.layers[1].linear1.weight)
    cama_b, _ = ck.load_cama(tmp_path, "CogVideoX", config=TINY_CAMA)
    assert torch.equal(cama.sos_token, cama_b.sos_token)          # the substitute is reproducible
    # a file that does carry a start block uses it
    other = tmp_path / "with_sos"
    _place(other, "CogVideoX", "motion_transformer", _lightning(dict(src.state_dict())))
    cama_c, report_c = ck.load_cama(other, "CogVideoX", config=TINY_CAMA)
    assert report_c.optional_present == ["sos_token"] and torch.equal(cama_c.sos_token, src.sos_token)


@pytest.mark.parametrize("damage", ["missing", "unexpected", "shape"])
def test_key_errors_name_the_keys(tmp_path, damage):
    state = dict(MotionContextTransformer(TINY_CAMA).state_dict())
    if damage == "missing":
        del state["transformer.layers.1.norm2.bias"]
        needle = "missing key(s): 'transformer.layers.1.norm2.bias'"
    elif damage == "unexpected":
        state["vision_proj.latents"] = torch.zeros(1)
        needle = "unexpected key(s): 'vision_proj.latents'"
    else:
        state["condition_proj.proj_in.weight"] = torch.zeros(3, 3)
        needle = "condition_proj.proj_in.weight expected"
    path = _place(tmp_path, "SVD", "motion_transformer", _lightning(state))
    with pytest.raises(CheckpointKeyError) as err:
        ck.load_cama(tmp_path, "SVD", config=TINY_CAMA)
    assert needle in str(err.value) and str(path) in str(err.value)
    assert not path.with_suffix(".safetensors").exists()          # nothing converted from a bad file


def test_a_pickled_object_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    state = dict(Resampler(TINY_MOTION_PROJ).state_dict())
    path = _place(tmp_path, "SVD", "motion_proj", {"state_dict": state, "hyper_parameters": Payload()})
    with pytest.raises(CheckpointError, match="refused to load") as err:
        ck.load_motion_projector(tmp_path, "SVD", config=TINY_MOTION_PROJ)
    assert "pathlib" in str(err.value) or "Path" in str(err.value) or "GLOBAL" in str(err.value)
    assert not marker.exists() and not path.with_suffix(".safetensors").exists()


def test_unreadable_file_and_non_tensor_entries(tmp_path):
    path = ck.checkpoint_path(tmp_path, "SVD", "motion_proj")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        ck.read_ckpt(path)
    torch.save({"latents": [1, 2, 3]}, path)
    with pytest.raises(CheckpointError, match="not name -> tensor"):
        ck.read_ckpt(path)


def test_missing_file_says_exactly_where_to_put_it(tmp_path):
    with pytest.raises(CheckpointNotFoundError) as err:
        ck.load_checkpoint(tmp_path, "CogVideoX", "Motion-Adapter")
    msg = str(err.value)
    expected = tmp_path / "checkpoints" / "CogVideoX" / "Motion-Adapter.ckpt"
    assert str(expected) in msg and "https://huggingface.co/MCG-NJU/MotionRAG" in msg
    assert "'checkpoints/CogVideoX/Motion-Adapter.ckpt'" in msg and "downloading is off" in msg
    with pytest.raises(ValueError, match="unknown MotionRAG checkpoint SVD/17_frames"):
        ck.checkpoint_path(tmp_path, "SVD", "17_frames")


def test_failed_download_falls_back_to_the_same_message(tmp_path):
    # A real hf_hub_download in offline mode (this machine has no route to the hub anyway).
    code = ("import sys; sys.path.insert(0, %r); from common.standalone import load_pack; load_pack()\n"
            "from motionrag_suite.models.i2v import checkpoints as ck\n"
            "try:\n    ck.load_checkpoint(%r, 'SVD', 'motion_proj', download=True)\n"
            "except ck.CheckpointNotFoundError as e:\n    print('MSG', e)\n") % (
        str(Path(__file__).resolve().parents[2]), str(tmp_path))
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "MSG" in out.stdout and "the download failed" in out.stdout
    assert str(tmp_path / "checkpoints" / "SVD" / "motion_proj.ckpt") in out.stdout


@pytest.mark.parametrize("base", ["CogVideoX", "SVD"])
def test_motion_adapter_checkpoint_loads_into_the_injected_model(tmp_path, base):
    build, inputs_fn, run, inject, cfg = {
        "CogVideoX": (tiny_cogvideox, cogvideox_inputs, run_cogvideox, inject_cogvideox, TINY_COG_ADAPTER),
        "SVD": (tiny_svd_unet, svd_inputs, run_svd, inject_svd, TINY_SVD_ADAPTER)}[base]
    trained, fresh = build(seed=0), build(seed=0)
    inputs = inputs_fn()
    motion = torch.randn(2, 4, MOTION_DIM)
    with inject(trained, motion_dim=MOTION_DIM) as src:
        src.set_motion(motion)
        expected = run(trained, inputs)
        # the released file: host-prefixed processor weights plus the stage-1 projector copy
        state = {layouts.HOST_PREFIX[base] + k: v for k, v in src.adapter_state_dict().items()}
        state.update({"action_proj_model." + k: v for k, v in Resampler(TINY_MOTION_PROJ).state_dict().items()})
        _place(tmp_path, base, "Motion-Adapter", _lightning(state))
    with inject(fresh, motion_dim=MOTION_DIM) as inj:
        report = ck.load_motion_adapter(inj, tmp_path, config=cfg, projector=TINY_MOTION_PROJ)
        inj.set_motion(motion)
        assert torch.equal(run(fresh, inputs), expected)
    assert report.optional_present == ["action_proj_model"] and report.converted_to.is_file()


def test_adapter_file_for_another_model_size_is_refused(tmp_path):
    model = tiny_cogvideox()
    with inject_cogvideox(model, motion_dim=MOTION_DIM) as inj:
        state = {"transformer." + k: v for k, v in inj.adapter_state_dict().items()}
        state["transformer.transformer_blocks.1.attn1.processor.to_k_ip.0.weight"] = torch.zeros(32, 8)
        _place(tmp_path, "CogVideoX", "Motion-Adapter", {"state_dict": state})
        with pytest.raises(CheckpointKeyError, match="transformer_blocks.1.attn1.processor.to_k_ip.0.weight"):
            ck.load_motion_adapter(inj, tmp_path, config=TINY_COG_ADAPTER, projector=TINY_MOTION_PROJ)


def test_cogvideox_17_frames_fine_tune_is_applied(tmp_path):
    tuned, base_model = tiny_cogvideox(seed=1), tiny_cogvideox(seed=2)
    state = {"transformer." + k: v.clone() for k, v in tuned.state_dict().items()
             if ".attn1.to_" in k and ".to_out" not in k}
    assert len(state) == 6 * TINY_COG_ADAPTER.num_layers
    _place(tmp_path, "CogVideoX", "17_frames", _lightning(state))
    untouched = base_model.norm_final.weight.clone()
    ck.load_cogvideox_17_frames(base_model, tmp_path, config=TINY_COG_ADAPTER)
    sd = base_model.state_dict()
    assert all(torch.equal(sd[k[len("transformer."):]], v) for k, v in state.items())
    assert torch.equal(base_model.norm_final.weight, untouched)


def test_safetensors_writer_round_trips_dtypes(tmp_path):
    from safetensors.torch import load_file

    tensors = {"b": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3), "a": torch.randn(4, 1),
               "i": torch.tensor([1, -2], dtype=torch.int64), "flag": torch.tensor([True, False]),
               "empty": torch.zeros(0, 3)}
    path = tmp_path / "x.safetensors"
    ck.write_safetensors(path, tensors, {"source": "test"})
    back = load_file(str(path))
    assert set(back) == set(tensors)
    assert all(back[k].dtype == v.dtype and torch.equal(back[k], v) for k, v in tensors.items())
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
    assert header_len % 8 == 0
