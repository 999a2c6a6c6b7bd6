"""The native SVD route in a real ComfyUI: the shipped workflow motionrag_i2v_svd_native.json, with a
test-only node (comfy_test_nodes/motionrag_tiny_svd.py, copied into this server's custom_nodes only)
building a tiny SVD from configs in place of Image Only Checkpoint Loader, so the rest is ComfyUI's
own SVD_img2vid_Conditioning, VideoLinearCFGGuidance, KSampler, VAEDecode and SaveAnimatedWEBP around
Apply Motion to SVD Model. Random weights: mechanics only."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.comfy_server import REPO_ROOT, ComfyServer, find_comfyui, output_files
from harness.workflow_convert import ui_to_api
from unit import i2v_tiny_assets as assets
from unit.test_i2v_fixtures import TINY_SVD_ADAPTER

WORKFLOW = REPO_ROOT / "workflows" / "motionrag_i2v_svd_native.json"
TEST_NODE = Path(__file__).resolve().parent / "comfy_test_nodes" / "motionrag_tiny_svd.py"
NODE = "MotionRAGApplyMotionSVDModel"
FRAMES, WIDTH, HEIGHT = 4, 48, 32
CH = TINY_SVD_ADAPTER.block_out_channels
TINY = {"model_channels": CH[0], "channel_mult": ",".join(str(c // CH[0]) for c in CH),
        "num_res_blocks": TINY_SVD_ADAPTER.layers_per_block, "head_channels": 16, "seed": 0}


@pytest.fixture(scope="module")
def server():
    if os.environ.get("MOTIONRAG_SKIP_COMFY") == "1":
        pytest.skip("MOTIONRAG_SKIP_COMFY=1: real-ComfyUI tests skipped on request")
    import torch

    with ComfyServer(extra_nodes=(TEST_NODE,)) as comfy:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            root = comfy.models_dir / "motionrag"
            assets.write_encoders(root)
            assets.write_checkpoints(root)
        finally:
            torch.set_num_threads(before)
        assets.write_videos(comfy.input_dir / "videos")
        Image.fromarray(assets.query_image(40, 32)).save(comfy.input_dir / "motionrag_query.png")
        yield comfy


@pytest.fixture(scope="module")
def info(server):
    info = server.object_info()
    assert "MotionRAGTestTinySVD" in info, "the test-only tiny SVD node did not load:\n" + server.log_tail()
    if NODE not in info:
        pytest.fail(f"{NODE} is not registered by the pack: add to nodes/__init__.py\n"
                    "    from . import native_svd_nodes\n"
                    "and merge native_svd_nodes.NODE_CLASS_MAPPINGS / NODE_DISPLAY_NAME_MAPPINGS into the pack's "
                    "mappings")
    return info


def graph(info, *, strength: float | None = None, plain: bool = False, prefix: str = "native", seed: int = 7,
          tiny: dict | None = None, adapter_base: str | None = None) -> dict:
    """The shipped workflow in API form with the tiny model swapped in for the checkpoint loader."""
    api = ui_to_api(json.loads(WORKFLOW.read_text(encoding="utf-8")), info)
    kinds = {node["class_type"]: nid for nid, node in api.items()}
    for kind in ("ImageOnlyCheckpointLoader", "SVD_img2vid_Conditioning", NODE, "VideoLinearCFGGuidance",
                 "KSampler", "VAEDecode", "SaveAnimatedWEBP", "MotionRAGCAMAAdapt"):
        assert kind in kinds, f"the shipped workflow lost its {kind} node"
    loader = api[kinds["ImageOnlyCheckpointLoader"]]
    assert loader["inputs"] == {"ckpt_name": "svd.safetensors"}
    loader.update(class_type="MotionRAGTestTinySVD", inputs=dict(tiny or TINY))
    for nid, node in api.items():
        inputs, kind = node["inputs"], node["class_type"]
        if kind in ("MotionRAGBuildVideoDB", "MotionRAGLoadCAMA"):
            assert inputs["video_encoder"] == "videomae-base-finetuned-ssv2"
            assert inputs["image_encoder"] == "dinov2-large"
            inputs.update(video_encoder=assets.VIDEO_ENCODER, image_encoder=assets.IMAGE_ENCODER)
        elif kind == "MotionRAGTextRetrieve":
            assert inputs["top_k"] == 9
            inputs["top_k"] = len(assets.VIDEOS)                # the test database holds 3 clips
        elif kind == "SVD_img2vid_Conditioning":
            inputs.update(width=WIDTH, height=HEIGHT, video_frames=FRAMES)
        elif kind == "KSampler":
            inputs.update(steps=2, seed=seed)
        elif kind == "SaveAnimatedWEBP":
            inputs.update(lossless=True, filename_prefix=prefix)
        elif kind == NODE and strength is not None:
            inputs["strength"] = strength
        elif kind == "MotionRAGLoadMotionAdapter" and adapter_base is not None:
            inputs["base"] = adapter_base
    if plain:                                       # the same graph without our node
        guidance = api[kinds["VideoLinearCFGGuidance"]]["inputs"]
        guidance["model"] = api[kinds[NODE]]["inputs"]["model"]
        del api[kinds[NODE]]
    return api


def frames_of(server, entry: dict) -> np.ndarray:
    files = [f for _, f in output_files(entry) if f["filename"].endswith(".webp")]
    assert len(files) == 1, entry["outputs"]
    with Image.open(io.BytesIO(server.view(files[0]))) as im:
        out = []
        for k in range(getattr(im, "n_frames", 1)):
            im.seek(k)
            out.append(np.asarray(im.convert("RGB")))
    return np.stack(out)


def test_workflow_runs_with_the_stock_ksampler(server, info):
    video = frames_of(server, server.run(graph(info, prefix="run"), timeout=600))
    assert video.shape == (FRAMES, HEIGHT, WIDTH, 3), video.shape
    assert video.std() > 1.0, "blank frames"
    spec = info[NODE]
    assert spec["output"] == ["MODEL"] and spec["category"] == "MotionRAG"
    assert spec["display_name"] == "Apply Motion to SVD Model (MotionRAG)"


def test_strength_zero_is_the_plain_model_strength_one_is_not_and_the_input_model_stays_plain(server, info):
    plain = frames_of(server, server.run(graph(info, plain=True, prefix="plain"), timeout=600))
    zero = frames_of(server, server.run(graph(info, strength=0.0, prefix="zero"), timeout=600))
    full = frames_of(server, server.run(graph(info, strength=1.0, prefix="full"), timeout=600))
    # ComfyUI re-runs KSampler (its model input changed back) on the loader's cached MODEL: had our node
    # changed that MODEL, the motion branch would show up here
    again = frames_of(server, server.run(graph(info, plain=True, prefix="again"), timeout=600))
    assert np.array_equal(zero, plain), np.abs(zero.astype(int) - plain.astype(int)).max()
    diff = np.abs(full.astype(int) - plain.astype(int))
    assert diff.max() >= 1, "strength 1 left every pixel unchanged"
    assert np.array_equal(again, plain), "the input MODEL was changed by Apply Motion to SVD Model"
    print(f"\nstrength 1 vs plain: mean |diff| {diff.mean():.2f}, max {diff.max()} (0..255)")


def test_adapters_that_do_not_fit_fail_with_a_clear_message(server, info):
    wide = dict(TINY, channel_mult="1,2,2,2")                  # widths 32, 64, 64, 64: one level differs
    msg = server.failure_message(graph(info, tiny=wide, prefix="wide"), timeout=600)
    assert "does not fit the MODEL" in msg and "hidden size(s) [32, 64]" in msg, msg
    assert "down_blocks.1.attentions.0.transformer_blocks.0.attn2" in msg and "adapter 32, model 64" in msg, msg
    msg = server.failure_message(graph(info, adapter_base="CogVideoX", prefix="cog"), timeout=600)
    assert "the CogVideoX Motion-Adapter; load the SVD one" in msg, msg


_PROBE = r"""
import json, sys, importlib.util
sys.argv = ["probe", "--cpu"]
tests, node_file = sys.stdin.readline().strip(), sys.stdin.readline().strip()
sys.path.insert(0, tests)
from common.standalone import load_pack
load_pack()
from motionrag_suite.models.i2v import native_svd as ns
sys.path.insert(0, ".")
import comfy.options
comfy.options.enable_args_parsing()
import torch, comfy.supported_models
spec = importlib.util.spec_from_file_location("tiny_svd_node", node_file)
node = importlib.util.module_from_spec(spec); spec.loader.exec_module(node)
out = {}
for name, cfg in (("tiny", node.tiny_unet_config(32, [1, 1, 2, 2], 1, 16)),
                  ("paper", dict(node.tiny_unet_config(320, [1, 2, 4, 4], 2, 64), context_dim=1024))):
    mc = comfy.supported_models.SVD_img2vid(dict(cfg))
    mc.unet_config.update(num_heads=-1, num_head_channels=cfg["num_head_channels"])   # as the test node does
    mc.set_inference_dtype(torch.float32, None)
    unet = mc.get_model({}, "", device=torch.device("meta")).diffusion_model
    out[name] = {"module": [[*k, *v] for k, v in ns.module_layers(unet).items()],
                 "config": [[*k, v] for k, v in ns.unet_layers(mc.unet_config).items()]}
print("PROBE" + json.dumps(out))
"""


def test_layer_map_matches_comfyuis_own_unets():
    """ComfyUI's VideoUNet, built from the tiny config and from the paper SVD config (on the meta device):
    the layers found in its modules equal those derived from the config, and the released adapter's
    diffusers layer names map onto exactly them, with diffusers' head counts (5, 10, 20 at paper size)."""
    from motionrag_suite.models.i2v import native_svd as ns
    from motionrag_suite.models.i2v.configs import PAPER_SVD_ADAPTER

    comfyui = find_comfyui()
    proc = subprocess.run([sys.executable, "-c", _PROBE], cwd=comfyui, capture_output=True, text=True, timeout=300,
                          input=f"{REPO_ROOT}\n{TEST_NODE}\n")
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE")), None)
    assert line is not None, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(line[5:])
    for name, cfg in (("tiny", TINY_SVD_ADAPTER), ("paper", PAPER_SVD_ADAPTER)):
        module = {tuple(row[:3]): tuple(row[3:]) for row in result[name]["module"]}
        config = {tuple(row[:3]): row[3] for row in result[name]["config"]}
        assert {k: w for k, (w, _) in module.items()} == config
        mapped = {ns.comfy_key(n, cfg.layers_per_block): w for n, w in cfg.layers().items()}
        assert mapped == config, name
        if name == "paper":
            assert len(module) == 16
            assert {w: h for w, h in module.values()} == {320: 5, 640: 10, 1280: 20}
