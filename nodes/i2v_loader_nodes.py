"""The image-to-video loaders: CAMA (paper and offline), the Motion-Adapter and a diffusers video backbone.

Each outputs a Held value (nodes/model_owner.py): the loader's output owns the model, so ComfyUI's
executor cache does; its modules sit in a ComfyUI ModelPatcher, so ComfyUI offloads them when it needs
room or is asked to unload, and "Free model and node cache" frees them. One model per kind stays in
memory: loading a different backbone, CAMA or adapter lets go of the previous one.
"""
from __future__ import annotations

from ..common.stamps import files_stamp
from ..models.i2v import runtime as rt
from ..models.i2v.adapter_weights import AdapterWeights
from ..models.i2v.checkpoints import load_checkpoint, load_cogvideox_17_frames, strip_prefix
from ..models.i2v.configs import PAPER_COGVIDEOX_ADAPTER, PAPER_SVD_ADAPTER
from ..models.i2v.layouts import HOST_PREFIX, motion_adapter_layout
from ..models.i2v.precision import PRECISIONS, cama_dtype, model_dtype
from . import comfy_env
from .i2v_links import ADAPTER_TYPE, BACKBONE_TYPE, CAMA_TYPE, DOWNLOAD_TOOLTIP, MECHANICS, Backbone
from .model_owner import Held


def encoder_choices(first: str) -> list[str]:
    """`first` (the paper's encoder for that input), then the transformers folders under
    models/motionrag/encoders."""
    return comfy_env.model_folders(rt.ENCODERS_SUBDIR, "config.json", [first])


def checkpoints_root(base: str):
    """The motionrag folder holding this base's checkpoints (the first one, when none does)."""
    roots = comfy_env.models_roots()
    for root in roots:
        if (root / "checkpoints" / base).is_dir():
            return root
    return roots[0]


def checkpoints_stamp(folder):
    """A key part that changes when the checkpoints in `folder` are replaced, leaving out the safetensors
    copies the loaders write beside each .ckpt: loading a model must not change its own key (a second loader
    of the same files would then read them again instead of sharing the model in memory)."""
    return tuple(s for s in files_stamp(folder)
                 if not (s[0].endswith(".safetensors") and (folder / s[0]).with_suffix(".ckpt").is_file()))


def _shipped():
    """(folder, name) of the offline CAMA that ships with the pack."""
    from ..models.i2v.offline import model     # torch behind it: not at pack import

    return model.SHIPPED_DIR, model.SHIPPED_NAME


def _notes(items) -> str:
    return "\n".join(items)


def _cama_modules(bundle) -> dict:
    return {"cama": bundle.cama, "image_encoder": bundle.image_encoder}


class LoadCAMA:
    DESCRIPTION = ("Loads MotionRAG's CAMA (motion context transformer) and motion projector for a base model "
                   "from models/motionrag/checkpoints/<base>/ (motion_transformer, motion_proj), the DINOv2 image "
                   "encoder, and computes the guidance motion tokens with VideoMAE once.")
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (CAMA_TYPE, "STRING")
    RETURN_NAMES = ("cama", "notes")
    OUTPUT_TOOLTIPS = ("CAMA for CAMA Adapt.", "Where each file came from and anything noticed while loading.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "base": (list(rt.BASES), {"default": "CogVideoX", "tooltip": "The video model the checkpoints were "
                                                                         "trained for."}),
            "image_encoder": (encoder_choices(rt.IMAGE_ENCODER), {
                "default": rt.IMAGE_ENCODER, "tooltip": "DINOv2 folder under models/motionrag/encoders "
                                                        "(facebook/dinov2-large)."}),
            "video_encoder": (encoder_choices(rt.VIDEO_ENCODER), {
                "default": rt.VIDEO_ENCODER, "tooltip": "VideoMAE folder under models/motionrag/encoders "
                                                        "(MCG-NJU/videomae-base-finetuned-ssv2); used once for the "
                                                        "guidance tokens."}),
        }, "optional": {
            "download": ("BOOLEAN", {"default": False, "tooltip": DOWNLOAD_TOOLTIP}),
            "precision": (list(PRECISIONS), {"default": "auto", "tooltip":
                          "Number format of CAMA and the encoders. auto: bf16 (as MotionRAG) on a GPU that has it "
                          "and on CPUs with native bf16 (AVX512-BF16 / AMX), else fp32."}),
        }}

    def load(self, base, image_encoder, video_encoder, precision="auto", download=False):
        root = checkpoints_root(base)
        img = comfy_env.find_model_folder(rt.ENCODERS_SUBDIR, image_encoder, what="image_encoder")
        vid = comfy_env.find_model_folder(rt.ENCODERS_SUBDIR, video_encoder, what="video_encoder")
        device = comfy_env.torch_device()
        dtype = cama_dtype(precision, device)
        key = ("cama", str(root), base, str(img), str(vid), checkpoints_stamp(root / "checkpoints" / base), str(device),
               str(dtype))

        def loader():
            # VideoMAE runs once on the fast device; the rest waits on the offload device until used
            bundle = rt.load_cama_bundle(root, base, img, vid, device=device, dtype=dtype, download=bool(download))
            for m in _cama_modules(bundle).values():
                m.to(comfy_env.offload_device())
            return bundle

        held = Held("cama", key, loader, base=base, label=f"{base} CAMA ({img.name})", modules=_cama_modules,
                    kind="MotionRAGCAMA")
        bundle = held.get()
        return (held, _notes(bundle.notes + [f"CAMA {held.how}"]))


def _offline_models() -> list[str]:
    return comfy_env.model_folders(rt.OFFLINE_SUBDIR, "config.json", [_shipped()[1]])


class LoadOfflineCAMA:
    DESCRIPTION = ("Loads the offline CAMA: MotionRAG's motion context transformer with a motion Resampler over "
                   "optical flow and EfficientNet-Lite0 appearance tokens, all of whose weights ship with the pack "
                   "(motionrag-offline-small, trained on the built-in video database) or come from "
                   "models/motionrag/offline/<name> (python -m training i2v). Use it with a video database "
                   "built with the offline encoders (e.g. builtin_videos). Its motion tokens fit a Motion-Adapter "
                   "trained for them, not the released ones (1024-d). The shipped model reads the references' "
                   "motion only (its appearance branch is off: with 60 training clips it memorised them); its notes "
                   "say which parts a model uses.")
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (CAMA_TYPE, "STRING")
    RETURN_NAMES = ("cama", "notes")
    OUTPUT_TOOLTIPS = ("CAMA for CAMA Adapt.", "Where the weights came from and what they were trained on.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (_offline_models(), {"tooltip": "motionrag-offline-small: the shipped model (trained on the "
                                                     "built-in video database; small data, see its PROVENANCE.md). "
                                                     "Others: folders under models/motionrag/offline."}),
            "base": (list(rt.BASES), {"default": "SVD", "tooltip": "The video model whose Motion-Adapter will read "
                                                                    "the motion tokens."}),
        }}

    def load(self, model, base):
        shipped_dir, shipped_name = _shipped()
        folder = shipped_dir if model == shipped_name else comfy_env.find_model_folder(rt.OFFLINE_SUBDIR, model, what="model")
        device = comfy_env.torch_device()
        key = ("cama", "offline", str(folder), base, files_stamp(folder), str(device))

        def loader():
            bundle = rt.load_offline_bundle(folder, base, name=model, device=device)
            for m in _offline_modules(bundle).values():
                m.to(comfy_env.offload_device())
            return bundle

        held = Held("cama", key, loader, base=base, label=f"offline CAMA {model}", modules=_offline_modules,
                    kind="MotionRAGCAMA")
        bundle = held.get()
        return (held, _notes(bundle.notes + [f"offline CAMA {held.how}"]))


def _offline_modules(bundle) -> dict:
    return {"cama": bundle.model, "image_encoder": bundle.image_encoder}


class LoadMotionAdapter:
    DESCRIPTION = ("Loads MotionRAG's Motion-Adapter weights for a base model from "
                   "models/motionrag/checkpoints/<base>/Motion-Adapter (.ckpt, converted once to .safetensors).")
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (ADAPTER_TYPE, "STRING")
    RETURN_NAMES = ("adapter", "notes")
    OUTPUT_TOOLTIPS = ("The adapter weights for Inject Motion.", "Where the file came from.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "base": (list(rt.BASES), {"default": "CogVideoX", "tooltip": "The video model the adapter was trained for."}),
        }, "optional": {
            "download": ("BOOLEAN", {"default": False, "tooltip": DOWNLOAD_TOOLTIP}),
        }}

    def load(self, base, download=False):
        root = checkpoints_root(base)
        motion_cfg, _, adapter_cfg = rt.read_sizes(root, base)
        key = ("adapter", str(root), base, checkpoints_stamp(root / "checkpoints" / base))
        def loader():
            state, report = load_checkpoint(root, base, "Motion-Adapter", download=bool(download),
                                            layout=motion_adapter_layout(base, adapter_cfg, motion_cfg))
            cfg = adapter_cfg or (PAPER_COGVIDEOX_ADAPTER if base == "CogVideoX" else PAPER_SVD_ADAPTER)
            notes = [f"{base} Motion-Adapter: {report.path} ({report.source})"] + report.notes
            return AdapterWeights(strip_prefix(state, HOST_PREFIX[base]), cfg, notes)

        held = Held("adapter", key, loader, base=base, label=f"{base} Motion-Adapter",
                    modules=lambda w: {"adapter": w.bag}, kind="MotionRAGMotionAdapter")
        weights = held.get()
        return (held, _notes(weights.notes + [f"Motion-Adapter {held.how}"]))


def _pipe_modules(pipe) -> dict:
    import torch

    return {name: m for name, m in pipe.components.items() if isinstance(m, torch.nn.Module)}


class LoadVideoBackbone:
    DESCRIPTION = ("Loads a diffusers image-to-video pipeline folder from models/motionrag/diffusers/<name> "
                   "(CogVideoX-5b-I2V or stable-video-diffusion-img2vid; the base is read from its "
                   "model_index.json). For CogVideoX, MotionRAG's 17-frame fine-tune is applied. " + MECHANICS)
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (BACKBONE_TYPE, "STRING", "STRING")
    RETURN_NAMES = ("backbone", "base", "notes")
    OUTPUT_TOOLTIPS = ("The video model for Inject Motion or Sample Video.", "CogVideoX or SVD.",
                       "Where the files came from.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "backbone": (comfy_env.model_folders(rt.DIFFUSERS_SUBDIR, "model_index.json", list(rt.BACKBONES.values())), {
                "default": rt.BACKBONES["CogVideoX"],
                "tooltip": "A diffusers pipeline folder under models/motionrag/diffusers."}),
            "cogvideox_17_frames": ("BOOLEAN", {"default": True, "tooltip":
                                    "CogVideoX only: apply checkpoints/CogVideoX/17_frames (the fine-tune MotionRAG's "
                                    "adapter was trained on). Off = the stock 49-frame model."}),
        }, "optional": {
            "download": ("BOOLEAN", {"default": False, "tooltip": DOWNLOAD_TOOLTIP}),
        }}

    def load(self, backbone, cogvideox_17_frames=True, download=False):
        folder = comfy_env.find_model_folder(rt.DIFFUSERS_SUBDIR, backbone, what="backbone")
        base = rt.backbone_base(folder)
        device = comfy_env.torch_device()
        dtype = model_dtype(device)
        apply = bool(cogvideox_17_frames) and base == "CogVideoX"
        root = checkpoints_root(base)
        key = ("backbone", str(folder), files_stamp(folder), apply, str(dtype))
        def loader():
            notes = [f"{base} backbone: {folder}"]
            pipe = rt.load_backbone(folder, dtype=dtype)
            pipe.motionrag_notes = notes              # read back on later (cached) loads
            if apply:
                cfg = rt.adapter_config_of(pipe, base, 1)
                report = load_cogvideox_17_frames(pipe.transformer, root, config=cfg, download=bool(download))
                notes.append(f"CogVideoX 17-frame fine-tune: {report.path} ({report.source})")
            if getattr(device, "type", "") == "cuda" and base == "CogVideoX":
                pipe.vae.enable_tiling()              # as MotionRAG's config; bounds decode memory
                pipe.vae.enable_slicing()
            return pipe

        held = Held("backbone", key, loader, base=base, label=backbone, modules=_pipe_modules,
                    kind="MotionRAGVideoBackbone")
        notes = list(getattr(held.get(), "motionrag_notes", [])) + [f"backbone {held.how}"]
        return (Backbone(held, base, backbone), base, _notes(notes))




NODE_CLASS_MAPPINGS = {
    "MotionRAGLoadCAMA": LoadCAMA,
    "MotionRAGLoadOfflineCAMA": LoadOfflineCAMA,
    "MotionRAGLoadMotionAdapter": LoadMotionAdapter,
    "MotionRAGLoadVideoBackbone": LoadVideoBackbone,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionRAGLoadCAMA": "Load CAMA (MotionRAG)",
    "MotionRAGLoadOfflineCAMA": "Load Offline CAMA (MotionRAG)",
    "MotionRAGLoadMotionAdapter": "Load Motion Adapter (MotionRAG)",
    "MotionRAGLoadVideoBackbone": "Load Video Backbone (MotionRAG)",
}
