"""TEST-ONLY custom node (never shipped in the pack): a tiny ComfyUI SVD built in-process.

MotionRAGTestTinySVD outputs what Image Only Checkpoint Loader outputs (MODEL, CLIP_VISION, VAE), made
with ComfyUI's own classes from small configs (comfy.supported_models.SVD_img2vid -> model_base ->
ModelPatcher; ClipVisionModel from a tiny JSON config; VAE from a tiny AutoencoderKL config), with
seeded random weights (ComfyUI's layers skip weight initialisation, so every parameter is filled
here). So a test graph is ComfyUI's own nodes end to end, only with this loader swapped in.
Random weights: the frames show mechanics, never quality.
"""
from __future__ import annotations

import json
import os
import tempfile

import torch

CONTEXT_DIM = 16                   # CLIP vision projection = the UNet's cross-attention width


def _fill(module: torch.nn.Module, seed: int, scale: float = 1.0) -> None:
    """Every parameter from one seeded generator, in name order: weights ~ N(0, 1/fan_in), norm scales
    1, biases small."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters(), key=lambda item: item[0]):
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if p.ndim >= 2:
                value = noise * (scale / (p[0].numel() ** 0.5))
            elif name.endswith("weight"):
                value = 1.0 + 0.05 * noise
            else:
                value = 0.02 * noise
            p.copy_(value.to(p.dtype))


def tiny_unet_config(model_channels: int, channel_mult: list[int], num_res_blocks: int, head_channels: int) -> dict:
    """The unet_config comfy.model_detection would read from an SVD checkpoint of these widths."""
    levels = len(channel_mult)
    return {
        "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
        "num_classes": "sequential", "adm_in_channels": 768, "in_channels": 8, "out_channels": 4,
        "model_channels": model_channels, "num_res_blocks": [num_res_blocks] * levels, "channel_mult": channel_mult,
        "transformer_depth": [1] * (num_res_blocks * (levels - 1)) + [0] * num_res_blocks,
        "transformer_depth_output": [1] * ((num_res_blocks + 1) * (levels - 1)) + [0] * (num_res_blocks + 1),
        "transformer_depth_middle": 1, "use_linear_in_transformer": True, "context_dim": CONTEXT_DIM,
        "extra_ff_mix_layer": True, "use_spatial_context": True, "merge_strategy": "learned_with_images",
        "merge_factor": 0.0, "video_kernel_size": [3, 1, 1], "use_temporal_resblock": True,
        "use_temporal_attention": True, "num_heads": -1, "num_head_channels": head_channels,
    }


def build_model(unet_config: dict, seed: int):
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    config = comfy.supported_models.SVD_img2vid(dict(unet_config))
    config.unet_config.update(num_heads=-1, num_head_channels=unet_config["num_head_channels"])  # BASE overrides
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({}, "", device=torch.device("cpu"))
    _fill(model.diffusion_model, seed)
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def build_clip_vision(seed: int):
    import comfy.clip_vision

    cfg = {"hidden_size": 32, "image_size": 224, "intermediate_size": 64, "num_attention_heads": 2,
           "num_channels": 3, "num_hidden_layers": 2, "patch_size": 32, "projection_dim": CONTEXT_DIM,
           "hidden_act": "gelu", "layer_norm_eps": 1e-5, "model_type": "clip_vision_model"}
    fd, path = tempfile.mkstemp(suffix=".json", prefix="tiny_clip_vision_")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(cfg, f)
        clip = comfy.clip_vision.ClipVisionModel(path)
    finally:
        os.unlink(path)
    _fill(clip.model, seed + 1)
    return clip


def build_vae(seed: int):
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL

    params = {"embed_dim": 4, "ddconfig": {"double_z": True, "z_channels": 4, "resolution": 64, "in_channels": 3,
                                           "out_ch": 3, "ch": 32, "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1,
                                           "attn_resolutions": [], "dropout": 0.0}}
    ae = AutoencoderKL(**params)
    _fill(ae, seed + 2)
    return comfy.sd.VAE(sd=ae.state_dict(), config={"params": params})


class MotionRAGTestTinySVD:
    CATEGORY = "_for_testing"
    FUNCTION = "build"
    RETURN_TYPES = ("MODEL", "CLIP_VISION", "VAE")
    DESCRIPTION = "TEST ONLY: a tiny random SVD (MODEL, CLIP_VISION, VAE) built in-process from configs."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_channels": ("INT", {"default": 32, "min": 32, "max": 512, "step": 32}),
            "channel_mult": ("STRING", {"default": "1,1,2,2"}),
            "num_res_blocks": ("INT", {"default": 1, "min": 1, "max": 3}),
            "head_channels": ("INT", {"default": 16, "min": 8, "max": 128}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31}),
        }}

    def build(self, model_channels, channel_mult, num_res_blocks, head_channels, seed):
        mult = [int(x) for x in str(channel_mult).split(",") if x.strip()]
        cfg = tiny_unet_config(int(model_channels), mult, int(num_res_blocks), int(head_channels))
        return (build_model(cfg, int(seed)), build_clip_vision(int(seed)), build_vae(int(seed)))


NODE_CLASS_MAPPINGS = {"MotionRAGTestTinySVD": MotionRAGTestTinySVD}
NODE_DISPLAY_NAME_MAPPINGS = {"MotionRAGTestTinySVD": "Tiny SVD (MotionRAG test only)"}
