"""Running MotionRAG image-to-video from files in the models folder: encoders, diffusers backbones,
CAMA bundles, motion tokens for a query, and sampling with the motion adapter in place.

Folders, relative to a motionrag models folder (ComfyUI's models/motionrag):
    encoders/<name>/        transformers folders: VideoMAE (videomae-base-finetuned-ssv2) and
                            DINOv2 (dinov2-large), read with from_pretrained, offline
    diffusers/<name>/       a diffusers pipeline folder: CogVideoX-5b-I2V or stable-video-diffusion-img2vid
    checkpoints/<base>/     the released MotionRAG checkpoints (see checkpoints.py)
    checkpoints/<base>/motionrag_sizes.json   optional: module sizes other than the paper's (tests,
                            retrained variants): {"motion_projector": {...}, "cama": {...,
                            "appearance": {...}}, "adapter": {...}} with the configs' field names

Who owns what is loaded, and for how long, is decided by the caller (inside ComfyUI: nodes/model_owner.py).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...common.errors import InputError
from .. import tensor_file
from .checkpoints import load_cama, load_motion_projector
from .configs import (MOTION_PROJECTOR, PAPER_CAMA, CamaConfig, CogVideoXAdapterConfig, ResamplerConfig,
                      SVDAdapterConfig)
from .errors import CheckpointError, CheckpointNotFoundError

# adapter, cama, features and offline.* import torch: they are imported inside the functions that need them,
# so that importing this module (and the pack) stays cheap.

ENCODERS_SUBDIR = "encoders"
DIFFUSERS_SUBDIR = "diffusers"
SIZES_FILE = "motionrag_sizes.json"
BASES = ("CogVideoX", "SVD")
VIDEO_ENCODER = "videomae-base-finetuned-ssv2"
IMAGE_ENCODER = "dinov2-large"
BACKBONES = {"CogVideoX": "CogVideoX-5b-I2V", "SVD": "stable-video-diffusion-img2vid"}
HF_IDS = {VIDEO_ENCODER: "MCG-NJU/videomae-base-finetuned-ssv2", IMAGE_ENCODER: "facebook/dinov2-large",
          "CogVideoX-5b-I2V": "THUDM/CogVideoX-5b-I2V",
          "stable-video-diffusion-img2vid": "stabilityai/stable-video-diffusion-img2vid"}
PIPELINE_CLASSES = {"CogVideoXImageToVideoPipeline": "CogVideoX", "StableVideoDiffusionPipeline": "SVD"}
# MotionRAG's inference settings: frames, width, height
NATIVE = {"CogVideoX": (17, 720, 480), "SVD": (16, 1024, 576)}


# ------------------------------------------------------------------------------ sizes

def read_sizes(models_dir: str | os.PathLike, base: str) -> tuple[ResamplerConfig, CamaConfig, Any]:
    """(motion projector, CAMA, adapter config or None) for `base`: the paper's unless
    checkpoints/<base>/motionrag_sizes.json says otherwise."""
    path = Path(models_dir) / "checkpoints" / base / SIZES_FILE
    if not path.is_file():
        return MOTION_PROJECTOR, PAPER_CAMA, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        motion = ResamplerConfig(**data["motion_projector"]) if "motion_projector" in data else MOTION_PROJECTOR
        cama = PAPER_CAMA
        if "cama" in data:
            c = dict(data["cama"])
            appearance = ResamplerConfig(**c.pop("appearance")) if "appearance" in c else PAPER_CAMA.appearance
            cama = CamaConfig(**c, appearance=appearance, motion=motion)
        adapter = None
        if "adapter" in data:
            a = dict(data["adapter"])
            if base == "SVD":
                a["block_out_channels"] = tuple(a.get("block_out_channels", SVDAdapterConfig().block_out_channels))
                adapter = SVDAdapterConfig(**a)
            else:
                adapter = CogVideoXAdapterConfig(**a)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(path, f"not a valid sizes file ({type(exc).__name__}: {exc})") from None
    return motion, cama, adapter


# ------------------------------------------------------------------------------ encoders and backbones

def download_hint(name: str, folder: Path) -> str:
    repo = HF_IDS.get(name)
    if repo is None:
        return f"put a folder saved with save_pretrained at {folder}"
    return f"huggingface-cli download {repo} --local-dir \"{folder}\""


def load_encoder(folder: str | os.PathLike, kind: str, *, device=None, dtype=None):
    """A frozen VideoMAEModel (kind 'video') or Dinov2Model (kind 'image') from a local folder."""
    folder = Path(folder)
    if kind not in ("video", "image"):
        raise ValueError(f"kind must be 'video' or 'image', got {kind!r}")
    if not (folder / "config.json").is_file():
        raise CheckpointNotFoundError(
            f"{'video' if kind == 'video' else 'image'} encoder {folder.name!r}", f"no config.json in {folder}. "
            f"Download it with: {download_hint(folder.name, folder)}")
    from transformers import AutoConfig, Dinov2Model, VideoMAEModel

    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    want = "videomae" if kind == "video" else "dinov2"
    if config.model_type != want:
        raise CheckpointError(folder, f"holds a {config.model_type!r} model; the {kind} encoder must be {want!r}")
    cls = VideoMAEModel if kind == "video" else Dinov2Model
    tensor_file.refuse_pickled_weights(folder, want, error=CheckpointError)
    try:
        model = cls.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(folder, f"the {want} weights cannot be loaded ({exc})") from None
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def backbone_base(folder: str | os.PathLike) -> str:
    """'CogVideoX' or 'SVD', from the pipeline folder's model_index.json."""
    folder = Path(folder)
    index = folder / "model_index.json"
    if not index.is_file():
        name = folder.name
        hint = download_hint(name, folder) if name in HF_IDS else \
            f"put a diffusers pipeline folder (with model_index.json) at {folder}"
        raise CheckpointNotFoundError(f"video backbone {name!r}", f"no model_index.json in {folder}. {hint}")
    try:
        cls = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
    except (OSError, ValueError) as exc:
        raise CheckpointError(index, f"cannot be read ({exc})") from None
    if cls not in PIPELINE_CLASSES:
        raise CheckpointError(folder, f"a {cls or 'unknown'} pipeline; MotionRAG needs one of "
                              f"{', '.join(PIPELINE_CLASSES)}")
    return PIPELINE_CLASSES[cls]


def load_backbone(folder: str | os.PathLike, *, dtype=None):
    """The diffusers pipeline in `folder` (on the CPU; sampling moves it)."""
    folder = Path(folder)
    base = backbone_base(folder)
    import diffusers

    cls = getattr(diffusers, next(c for c, b in PIPELINE_CLASSES.items() if b == base))
    import torch

    kwargs = {"local_files_only": True}
    if dtype is not None and dtype != torch.float32:
        kwargs["torch_dtype"] = dtype          # the name every diffusers release since 0.x knows
    try:
        pipe = cls.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"video backbone {folder}", f"cannot be loaded ({type(exc).__name__}: {exc})") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def adapter_config_of(pipe, base: str, motion_dim: int):
    """The adapter layout a backbone needs (its own layer widths)."""
    if base == "CogVideoX":
        c = pipe.transformer.config
        return CogVideoXAdapterConfig(num_layers=c.num_layers, hidden_size=c.num_attention_heads * c.attention_head_dim,
                                      motion_dim=motion_dim)
    c = pipe.unet.config
    return SVDAdapterConfig(block_out_channels=tuple(c.block_out_channels), layers_per_block=c.layers_per_block,
                            motion_dim=motion_dim)


def frame_rules(pipe, base: str) -> tuple[int, int]:
    """(multiple that width and height must be, frames rule: 4 for 4k+1 frames or 1)."""
    if base == "CogVideoX":
        return pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size, 4
    return pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1), 1


def check_request(pipe, base: str, frames: int, width: int, height: int) -> None:
    multiple, frame_step = frame_rules(pipe, base)
    if width % multiple or height % multiple or width < multiple or height < multiple:
        raise InputError("width/height", f"{width}x{height} must be positive multiples of {multiple} for this {base} "
                         f"backbone (MotionRAG uses {NATIVE[base][1]}x{NATIVE[base][2]})")
    if frames < 2 or (frame_step > 1 and (frames - 1) % frame_step):
        raise InputError("frames", f"{frames} does not suit {base}: it needs 4k+1 frames (MotionRAG's CogVideoX "
                         f"uses 17)" if frame_step > 1 else f"expected at least 2, got {frames}")


# ------------------------------------------------------------------------------ CAMA and motion tokens

@dataclass
class CamaBundle:
    """The paper's CAMA with DINOv2 (references: VideoMAE motion tokens through the motion projector).

    Both CAMA families (this and OfflineCamaBundle) answer `max_references` and `predict(...)`."""
    base: str
    cama: Any                      # MotionContextTransformer
    image_encoder: Any             # Dinov2Model
    uncond: Any                    # (1, L, D) guidance tokens: the projector on VideoMAE of an all-zero clip
    image_encoder_name: str
    video_encoder_name: str
    notes: list[str] = field(default_factory=list)

    @property
    def max_references(self) -> int:
        return self.cama.config.max_references

    def predict(self, ref_motion: list, ref_appearance: list, image, ref_names: list[str]) -> MotionTokens:
        """Motion tokens of the query image (IMAGE [1, H, W, 3]) from the references' stored motion tokens
        and DINOv2 appearance tokens (best first)."""
        import torch

        from .features import appearance_features

        cfg = self.cama.config
        want_m = (cfg.tokens_per_clip, cfg.d_model)
        for name, m, a in zip(ref_names, ref_motion, ref_appearance):
            if tuple(m.shape) != want_m:
                raise InputError(f"reference {name!r}", f"motion tokens {tuple(m.shape)} do not fit this CAMA, which "
                                 f"reads {want_m}; the database was built with another motion projector")
            if a.ndim != 2 or a.shape[1] != cfg.appearance.embedding_dim:
                raise InputError(f"reference {name!r}", f"appearance tokens {tuple(a.shape)} do not fit this CAMA, which "
                                 f"reads (tokens, {cfg.appearance.embedding_dim}); the database was built with another "
                                 f"image encoder")
        if len({a.shape for a in ref_appearance}) != 1:
            raise InputError("references", "their appearance tokens differ in shape "
                             f"({sorted({tuple(a.shape) for a in ref_appearance})}); rebuild the database with one "
                             f"image encoder")
        p = next(self.cama.parameters())
        motion = torch.from_numpy(np.stack(ref_motion).astype(np.float32))[None].to(p.device, p.dtype)
        app = torch.from_numpy(np.stack(ref_appearance).astype(np.float32))[None].to(p.device, p.dtype)
        with torch.no_grad():
            query_app = appearance_features(self.image_encoder, image_to_model_range(image).to(p.device))
            cond = self.cama.predict(motion, app, query_app.to(p.dtype), most_similar_first=True, last_block_only=True)
        return MotionTokens(self.base, cond.float().cpu(), self.uncond.clone(), list(ref_names))


def load_cama_bundle(models_dir, base: str, image_encoder: Path, video_encoder: Path, *, device=None,
                     dtype=None, download: bool = False) -> CamaBundle:
    """CAMA and the motion projector of `base`, the image encoder, and the guidance tokens (VideoMAE is
    loaded only for those and freed again)."""
    import torch

    from .features import unconditional_motion_tokens

    if base not in BASES:
        raise InputError("base", f"expected one of {BASES}, got {base!r}")
    motion_cfg, cama_cfg, _ = read_sizes(models_dir, base)
    projector, proj_report = load_motion_projector(models_dir, base, config=motion_cfg, download=download)
    cama, cama_report = load_cama(models_dir, base, config=cama_cfg, download=download)
    dino = load_encoder(image_encoder, "image", device=device, dtype=dtype)
    videomae = load_encoder(video_encoder, "video", device=device, dtype=dtype)
    if videomae.config.hidden_size != motion_cfg.embedding_dim:
        raise CheckpointError("video_encoder", f"video encoder {video_encoder.name!r} gives {videomae.config.hidden_size}-d features "
                              f"but the {base} motion projector reads {motion_cfg.embedding_dim}-d ones")
    if dino.config.hidden_size != cama_cfg.appearance.embedding_dim:
        raise CheckpointError("image_encoder", f"image encoder {image_encoder.name!r} gives {dino.config.hidden_size}-d features but "
                              f"the {base} CAMA reads {cama_cfg.appearance.embedding_dim}-d ones")
    projector = projector.to(device=device, dtype=dtype)
    with torch.no_grad():
        uncond = unconditional_motion_tokens(videomae, projector).float().cpu()
    del videomae, projector
    notes = []
    for what, rep in (("motion projector", proj_report), ("CAMA", cama_report)):
        notes.append(f"{base} {what}: {rep.path} ({rep.source}"
                     + (f", converted to {rep.converted_to.name}" if rep.converted_to else "") + ")")
        notes += [f"{base} {what}: {n}" for n in rep.notes]
    return CamaBundle(base, cama.to(device=device, dtype=dtype), dino, uncond, image_encoder.name,
                      video_encoder.name, notes)


@dataclass
class MotionTokens:
    """The query's motion tokens for one base, with their guidance counterpart."""
    base: str
    cond: Any                      # (1, L, D) float32, CPU
    uncond: Any                    # (1, L, D) float32, CPU
    references: list[str]

    @property
    def motion_dim(self) -> int:
        return int(self.cond.shape[-1])


def image_to_model_range(image) -> Any:
    """ComfyUI IMAGE [1, H, W, 3] in 0..1 -> (1, 3, H, W) in [-1, 1], MotionRAG's training range.
    (Upstream's CogVideoX inference passed [0, 1] here by mistake; we keep the training range.)"""
    return image.permute(0, 3, 1, 2).float() * 2.0 - 1.0


# ------------------------------------------------------------------------------ sampling

@dataclass
class MotionPlan:
    """What an inject node asks the sampler to do: motion tokens, adapter weights, strength."""
    tokens: MotionTokens
    adapter_state: dict            # Motion-Adapter keys relative to the host model
    strength: float


def to_pil(image):
    from PIL import Image

    import torch

    arr = image[0].clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return Image.fromarray(arr)


def sample_video(pipe, base: str, image, *, prompt: str, steps: int, guidance: float, seed: int, frames: int,
                 fps: float, width: int, height: int, plan: MotionPlan | None = None, device=None,
                 on_step: Callable[[int], None] | None = None):
    """Frames [T, H, W, 3] in 0..1 (float32, CPU) for one query image (IMAGE [1, H, W, 3])."""
    import torch

    from .adapter import inject_cogvideox, inject_svd
    from .cama import guidance_motion_tokens

    check_request(pipe, base, frames, width, height)
    if device is not None:
        pipe.to(device)
    gen_device = device if device is not None and str(device).startswith("cuda") else "cpu"
    generator = torch.Generator(device=gen_device).manual_seed(int(seed) % 2 ** 63)

    def callback(_pipe, i, _t, kwargs):
        if on_step is not None:
            on_step(i)
        return kwargs

    common = dict(image=to_pil(image), height=height, width=width, num_frames=frames, num_inference_steps=steps,
                  generator=generator, output_type="pt", callback_on_step_end=callback)
    if base == "CogVideoX":
        call = lambda: pipe(prompt=prompt, guidance_scale=guidance, **common)   # noqa: E731
        host, inject = pipe.transformer, inject_cogvideox
    else:
        call = lambda: pipe(max_guidance_scale=guidance, min_guidance_scale=min(1.0, guidance), fps=int(round(fps)),  # noqa: E731
                            decode_chunk_size=8, **common)
        host, inject = pipe.unet, inject_svd
    if plan is None:
        out = call()
    else:
        with inject(host, motion_dim=plan.tokens.motion_dim, strength=plan.strength) as injection:
            injection.load_adapter_state_dict(plan.adapter_state, what=f"MotionRAG {base}/Motion-Adapter")
            cond = plan.tokens.cond
            tokens = guidance_motion_tokens(cond, plan.tokens.uncond) if guidance > 1 else cond
            injection.set_motion(tokens)
            out = call()
    video = out.frames[0]                                  # (T, 3, H, W) in 0..1
    return video.permute(0, 2, 3, 1).float().clamp(0, 1).cpu().contiguous()


# ------------------------------------------------------------------------------ the offline family

OFFLINE_SUBDIR = "offline"           # <motionrag>/offline/<name>/ holds models trained with `python -m training i2v`


@dataclass
class OfflineCamaBundle:
    """The offline motion model (flow Resampler + CAMA) and EfficientNet-Lite0, for one base's tokens."""
    base: str
    model: Any                     # offline.model.OfflineMotionModel
    image_encoder: Any             # offline.encoders.EfficientNetLite0
    uncond: Any                    # (1, L, D) guidance tokens: the motion tokens of a still clip (zero flow)
    name: str
    notes: list[str] = field(default_factory=list)

    @property
    def cama(self):
        return self.model.cama

    @property
    def max_references(self) -> int:
        return self.model.cama.config.max_references

    def predict(self, ref_motion: list, ref_appearance: list, image, ref_names: list[str]) -> MotionTokens:
        """Motion tokens of the query image (IMAGE [1, H, W, 3]) from the references' stored flow features
        and Lite0 tokens (best first)."""
        import torch

        from .offline.encoders import appearance_tokens_lite0

        c = self.model.config
        for name, f, a in zip(ref_names, ref_motion, ref_appearance):
            if tuple(f.shape) != (c.flow_steps, c.flow_dim):
                raise InputError(f"reference {name!r}", f"flow features {tuple(f.shape)}, but this model reads "
                                 f"({c.flow_steps}, {c.flow_dim}); the database was built with other clip settings")
            if tuple(a.shape) != (c.appearance_tokens, c.appearance_dim):
                raise InputError(f"reference {name!r}", f"appearance tokens {tuple(a.shape)}, but this model reads "
                                 f"({c.appearance_tokens}, {c.appearance_dim}) from EfficientNet-Lite0")
        p = next(self.model.parameters())
        flow = torch.from_numpy(np.stack(ref_motion).astype(np.float32))[None].to(p.device, p.dtype)
        app = torch.from_numpy(np.stack(ref_appearance).astype(np.float32))[None].to(p.device, p.dtype)
        with torch.no_grad():
            query = appearance_tokens_lite0(self.image_encoder, image_to_model_range(image).to(p.device))
            cond = self.model.predict(flow, app, query.to(p.dtype), most_similar_first=True)
        return MotionTokens(self.base, cond.float().cpu(), self.uncond.clone(), list(ref_names))


def load_offline_bundle(folder: str | os.PathLike, base: str, *, name: str, device=None, dtype=None) -> OfflineCamaBundle:
    import torch

    from .offline.encoders import load_lite0, lite0_weights_path
    from .offline.model import load_model

    if base not in BASES:
        raise InputError("base", f"expected one of {BASES}, got {base!r}")
    model, meta = load_model(folder, device=device, dtype=dtype)
    lite0 = load_lite0(device=device, dtype=dtype)
    c = model.config
    p = next(model.parameters())
    with torch.no_grad():
        uncond = model.motion_tokens(torch.zeros(1, c.flow_steps, c.flow_dim, device=p.device, dtype=p.dtype))
    made = meta.get("made", {})
    notes = [f"offline motion model {name!r}: {Path(folder)} ({c.tokens} motion tokens of {c.d_model}; trained on "
             f"{made.get('train_clips', '?')} clips of {made.get('train_videos', '?')} videos of "
             f"{made.get('database', '?')!r}, seed {made.get('settings', {}).get('seed', '?')})",
             (f"appearance: EfficientNet-Lite0 ImageNet weights {lite0_weights_path()}" if c.appearance else
              "appearance: off in this model (it predicts from the references' motion alone; the query image is "
              "checked and encoded, but does not change the motion)"),
             *(["prediction: the references' mean gated towards the training clips' mean, plus CAMA's correction"]
               if c.reference_skip else []),
             f"tokens are for a {base} Motion-Adapter that reads {c.d_model}-d motion tokens (the released "
             "adapters read the paper's 1024-d ones)"]
    return OfflineCamaBundle(base, model, lite0, uncond.float().cpu(), name, notes)
