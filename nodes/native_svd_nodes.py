"""Apply Motion to SVD Model: MotionRAG's motion branch on ComfyUI's own SVD MODEL (from Image Only
Checkpoint Loader), as attn2 replace patches on a clone of the ModelPatcher, so the stock KSampler
(with VideoLinearCFGGuidance and the rest of ComfyUI's video nodes) samples with it.

Nothing of ComfyUI is replaced or wrapped: the patches live in the clone's model_options, the input
MODEL stays as it was, and ComfyUI's model manager moves the UNet as usual. The adapter's weights
(about 38M parameters at paper size) are cast once to the sampling device and dtype and kept by the
patches of this MODEL output.
"""
from __future__ import annotations

from ..models.i2v import runtime as rt
from ..common.errors import InputError
from . import comfy_env
from .i2v_links import ADAPTER_TYPE, TOKENS_TYPE
from .model_owner import Held


def _comfy_attention(q, k, v, heads):
    """ComfyUI's attention, looked up at call time (it picks it at start-up from its arguments, and
    the stock cross-attention calls the same function), so strength 0 reproduces the plain model
    exactly. Outside ComfyUI: plain SDPA."""
    try:
        from comfy.ldm.modules import attention as comfy_attention
    except ImportError:
        from ..models.i2v.native_svd import sdpa_attention

        return sdpa_attention(q, k, v, heads)
    return comfy_attention.optimized_attention(q, k, v, heads)


def _existing_attn2(model, key):
    """A replace patch another node already put where ours goes (full key or block key, the two forms
    BasicTransformerBlock looks up), so ours can wrap it."""
    replace = model.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
    return replace.get(key, replace.get(key[:2]))


class ApplyMotionSVDModel:
    DESCRIPTION = ("Adds MotionRAG's motion branch to the spatial cross-attention layers of ComfyUI's own SVD "
                   "model (from Image Only Checkpoint Loader), as attention patches on a copy of the MODEL, so "
                   "the stock KSampler runs it. Connect SVD_img2vid_Conditioning's outputs to the KSampler as "
                   "usual; the uncond half of guidance gets MotionRAG's guidance motion tokens.")
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The SVD model with the motion branch (the input MODEL is not changed); connect it to "
                       "VideoLinearCFGGuidance or KSampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "An SVD image-to-video MODEL, e.g. from Image Only Checkpoint Loader "
                                           "(svd.safetensors)."}),
            "motion_tokens": (TOKENS_TYPE, {"tooltip": "From CAMA Adapt, with CAMA loaded for SVD."}),
            "adapter": (ADAPTER_TYPE, {"tooltip": "The SVD Motion-Adapter from Load Motion Adapter."}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05, "tooltip":
                         "Scale of the motion branch in every adapted layer; 1 = as trained, 0 = the plain model."}),
        }}

    def apply(self, model, motion_tokens, adapter, strength):
        from ..models.i2v.native_svd import make_patches, module_layers     # torch: only when run

        if not hasattr(model, "clone") or not hasattr(model, "set_model_attn2_replace"):
            raise InputError("model", f"expected a ComfyUI MODEL, got {type(model).__name__}")
        if not isinstance(motion_tokens, rt.MotionTokens):
            raise InputError("motion_tokens", f"expected {TOKENS_TYPE} from CAMA Adapt, got {type(motion_tokens).__name__}")
        if motion_tokens.base != "SVD":
            raise InputError("motion_tokens", f"made with the {motion_tokens.base} CAMA; load CAMA with base SVD")
        if not isinstance(adapter, Held) or adapter.group != "adapter":
            raise InputError("adapter", f"expected {ADAPTER_TYPE} from Load Motion Adapter, got {type(adapter).__name__}")
        if adapter.base != "SVD":
            raise InputError("adapter", f"the {adapter.base} Motion-Adapter; load the SVD one (base SVD)")
        strength = float(strength)
        if not (0.0 <= strength <= 10.0):
            raise InputError("strength", f"expected 0..10, got {strength}")
        unet = getattr(getattr(model, "model", None), "diffusion_model", None)
        layers = module_layers(unet) if unet is not None else {}
        if not layers:
            raise InputError("model", f"{type(getattr(model, 'model', model)).__name__} is not an SVD video UNet "
                             "(no spatial-temporal transformer layers); load svd.safetensors with Image Only "
                             "Checkpoint Loader")
        weights = adapter.get()
        # CPU references: ComfyUI may move the adapter's own module later; the patches cast their copies
        state = {k: v.detach().to("cpu") for k, v in weights.state().items()}
        m = model.clone()
        existing = {key: p for key in layers if (p := _existing_attn2(m, key)) is not None}
        patches = make_patches(state, weights.config.layers_per_block, {k: w for k, (w, _) in layers.items()},
                               motion_tokens.cond.float(), motion_tokens.uncond.float(), strength,
                               attention=_comfy_attention, existing=existing,
                               adapter_what=f"adapter ({adapter.label})",
                               model_what=f"the MODEL ({type(model.model).__name__})",
                               levels=len(getattr(unet, "channel_mult", ())) or None)
        for (block, number, index), patch in patches.items():
            m.set_model_attn2_replace(patch, block, number, index)
        return (m,)


NODE_CLASS_MAPPINGS = {"MotionRAGApplyMotionSVDModel": ApplyMotionSVDModel}
NODE_DISPLAY_NAME_MAPPINGS = {"MotionRAGApplyMotionSVDModel": "Apply Motion to SVD Model (MotionRAG)"}
