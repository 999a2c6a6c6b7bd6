"""Tiny random stand-ins for every file the image-to-video nodes read, written in the real layouts:

    <motionrag>/encoders/tiny-videomae, tiny-dinov2          transformers save_pretrained folders
    <motionrag>/checkpoints/<base>/{motion_proj,motion_transformer,Motion-Adapter}.ckpt (+ 17_frames for
        CogVideoX), in the released key layouts (raw / Lightning 'state_dict', bf16), plus
        motionrag_sizes.json giving the tiny sizes
    <motionrag>/diffusers/tiny-cogvideox-i2v, tiny-svd-img2vid   diffusers save_pretrained pipeline folders
    videos (mp4 / animated webp / gif) with caption sidecars

Random weights: whatever they generate is mechanics only, never quality.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

VIDEO_ENCODER = "tiny-videomae"
IMAGE_ENCODER = "tiny-dinov2"
COG_BACKBONE = "tiny-cogvideox-i2v"
SVD_BACKBONE = "tiny-svd-img2vid"
COG_SIZE = (9, 32, 32)             # frames, width, height the tiny CogVideoX generates
SVD_SIZE = (4, 48, 32)

# caption -> grey-level pattern per frame (moving bar direction) for the test videos
VIDEOS = {
    "bar_right": ("a bright bar slides to the right", "mp4"),
    "bar_down": ("a bright bar falls down the frame", "webp"),
    "pulse": ("the whole picture pulses between dark and light", "gif"),
}


def _frame(kind: str, t: int, w: int = 48, h: int = 40) -> np.ndarray:
    img = np.full((h, w, 3), 30, np.uint8)
    if kind == "bar_right":
        x = (t * 2) % (w - 6)
        img[:, x:x + 6] = (230, 200, 40)
    elif kind == "bar_down":
        y = (t * 2) % (h - 6)
        img[y:y + 6, :] = (40, 200, 230)
    else:
        img[:] = 40 + int(180 * (0.5 + 0.5 * np.sin(t / 3.0)))
    return img


def write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> None:
    import cv2

    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert out.isOpened(), f"OpenCV cannot write {path}"
    for f in frames:
        out.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out.release()


def write_animated(path: Path, frames: list[np.ndarray], fps: float) -> None:
    from PIL import Image

    ims = [Image.fromarray(f) for f in frames]
    kw = {"lossless": True} if path.suffix == ".webp" else {}
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=int(round(1000 / fps)), loop=0, **kw)


def write_videos(folder: Path, frames: int = 40, fps: float = 16.0) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind, (caption, ext) in VIDEOS.items():
        clip = [_frame(kind, t) for t in range(frames)]
        path = folder / f"{kind}.{ext}"
        (write_mp4 if ext == "mp4" else write_animated)(path, clip, fps)
        (folder / f"{kind}.txt").write_text(caption + "\n", encoding="utf-8")
        out[kind] = path
    return out


def tiny_encoders(seed: int = 0):
    import torch
    from transformers import Dinov2Config, Dinov2Model, VideoMAEConfig, VideoMAEModel

    from .test_i2v_fixtures import TINY_CAMA, TINY_MOTION_PROJ

    torch.manual_seed(seed)
    videomae = VideoMAEModel(VideoMAEConfig(image_size=32, patch_size=16, num_frames=4, tubelet_size=2,
                                            hidden_size=TINY_MOTION_PROJ.embedding_dim, num_hidden_layers=1,
                                            num_attention_heads=2, intermediate_size=32)).eval()
    dino = Dinov2Model(Dinov2Config(image_size=28, patch_size=14, hidden_size=TINY_CAMA.appearance.embedding_dim,
                                    num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)).eval()
    return videomae, dino


def write_encoders(root: Path) -> None:
    videomae, dino = tiny_encoders()
    videomae.save_pretrained(root / "encoders" / VIDEO_ENCODER)
    dino.save_pretrained(root / "encoders" / IMAGE_ENCODER)


def _bf16(state):
    import torch

    return {k: v.detach().to(torch.bfloat16).contiguous() for k, v in state.items()}


def write_checkpoints(root: Path, bases=("CogVideoX", "SVD"), seed: int = 0) -> None:
    import torch

    from motionrag_suite.models.i2v.adapter import inject_cogvideox, inject_svd
    from motionrag_suite.models.i2v.cama import MotionContextTransformer
    from motionrag_suite.models.i2v.layouts import HOST_PREFIX
    from motionrag_suite.models.i2v.resampler import Resampler

    from .test_i2v_fixtures import TINY_CAMA, TINY_COG_ADAPTER, TINY_MOTION_PROJ, TINY_SVD_ADAPTER, tiny_cogvideox, \
        tiny_svd_unet

    for i, base in enumerate(bases):
        folder = root / "checkpoints" / base
        folder.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed + 10 * i)
        proj = Resampler(TINY_MOTION_PROJ)
        torch.save(_bf16(proj.state_dict()), folder / "motion_proj.ckpt")              # raw state dict, as released
        cama = MotionContextTransformer(TINY_CAMA).state_dict()
        cama.pop("sos_token")                                                            # never saved upstream
        torch.save({"state_dict": _bf16(cama), "epoch": 1}, folder / "motion_transformer.ckpt")
        host = tiny_cogvideox(seed) if base == "CogVideoX" else tiny_svd_unet(seed)
        inj = (inject_cogvideox if base == "CogVideoX" else inject_svd)(host, motion_dim=TINY_CAMA.d_model)
        adapter = {HOST_PREFIX[base] + k: v for k, v in inj.adapter_state_dict().items()}
        # Make the branch matter: the random init is small, a test must see strength change the output.
        adapter = {k: v * 4.0 for k, v in adapter.items()}
        adapter.update({"action_proj_model." + k: v for k, v in proj.state_dict().items()})
        torch.save({"state_dict": _bf16(adapter)}, folder / "Motion-Adapter.ckpt")
        inj.remove()
        cfg = TINY_COG_ADAPTER if base == "CogVideoX" else TINY_SVD_ADAPTER
        if base == "CogVideoX":
            frames17 = {}
            for name, p in host.named_parameters():
                if ".attn1.to_q." in name or ".attn1.to_k." in name or ".attn1.to_v." in name:
                    frames17["transformer." + name] = p.detach() * 0.9
            torch.save({"state_dict": _bf16(frames17)}, folder / "17_frames.ckpt")
        c = asdict(TINY_CAMA)
        c.pop("motion")
        sizes = {"motion_projector": asdict(TINY_MOTION_PROJ), "cama": c, "adapter": asdict(cfg)}
        (folder / "motionrag_sizes.json").write_text(json.dumps(sizes, indent=1), encoding="utf-8")


def tiny_cog_pipeline(seed: int = 0, head_dim: int = 16):
    import torch
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXDPMScheduler, CogVideoXImageToVideoPipeline,
                           CogVideoXTransformer3DModel)
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    torch.manual_seed(seed)
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)] + \
        [(chr(c), -2.0) for c in range(97, 123)]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
    text = T5EncoderModel(T5Config(vocab_size=len(vocab), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2))
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=head_dim, in_channels=8, out_channels=4, time_embed_dim=8,
        text_embed_dim=16, num_layers=2, sample_width=8, sample_height=8, sample_frames=9, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=226, use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=False)
    vae = AutoencoderKLCogVideoX(in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 3,
                                 up_block_types=("CogVideoXUpBlock3D",) * 3, block_out_channels=(8, 8, 8),
                                 latent_channels=4, layers_per_block=1, norm_num_groups=2,
                                 temporal_compression_ratio=4)
    return CogVideoXImageToVideoPipeline(tokenizer=tokenizer, text_encoder=text, vae=vae, transformer=transformer,
                                         scheduler=CogVideoXDPMScheduler())


def tiny_svd_pipeline(seed: int = 0):
    import torch
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from .test_i2v_fixtures import tiny_svd_unet

    torch.manual_seed(seed)
    vae = AutoencoderKLTemporalDecoder(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                                       block_out_channels=(32, 32), latent_channels=4, layers_per_block=1)
    # SVD's pipeline always resizes the image to 224 for CLIP
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(image_size=224, patch_size=32, hidden_size=16,
                                                             projection_dim=12, num_hidden_layers=1,
                                                             num_attention_heads=2, intermediate_size=32))
    scheduler = EulerDiscreteScheduler(prediction_type="v_prediction", timestep_spacing="leading",
                                       use_karras_sigmas=True, sigma_min=0.002, sigma_max=700.0,
                                       interpolation_type="linear", beta_schedule="scaled_linear",
                                       beta_start=0.00085, beta_end=0.012, timestep_type="continuous", steps_offset=1)
    return StableVideoDiffusionPipeline(vae=vae, image_encoder=encoder, unet=tiny_svd_unet(seed), scheduler=scheduler,
                                        feature_extractor=CLIPImageProcessor(crop_size=224,
                                                                             size={"shortest_edge": 224}))


def write_backbones(root: Path) -> None:
    tiny_cog_pipeline().save_pretrained(root / "diffusers" / COG_BACKBONE)
    tiny_svd_pipeline().save_pretrained(root / "diffusers" / SVD_BACKBONE)


def write_all(root: Path) -> None:
    write_encoders(root)
    write_checkpoints(root)
    write_backbones(root)


def query_image(width: int = 40, height: int = 32, seed: int = 0) -> np.ndarray:
    """An RGB uint8 picture with some structure (a mechanics test input)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None]
    img[..., 1] = np.linspace(255, 0, height, dtype=np.uint8)[:, None]
    img[..., 2] = rng.integers(0, 256, (height, width), dtype=np.uint8)
    return img
