"""Frozen encoders' inputs and the path from clips to CAMA's prediction.

Videos are (B, T, C, H, W) and images (B, C, H, W), RGB in [-1, 1], as in MotionRAG. The encoders are
the transformers models the caller loads (VideoMAE-B ssv2: `VideoMAEModel`; DINOv2-L: `Dinov2Model`);
their sizes are read from the model configs, so tiny test models work the same way.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_short_side(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Resize (..., C, H, W) so the short side is `size` (the long side truncated, as torchvision does)."""
    h, w = x.shape[-2:]
    if h <= w:
        out = (size, int(size * w / h))
    else:
        out = (int(size * h / w), size)
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    flat = F.interpolate(flat, size=out, mode=mode, align_corners=False, antialias=True)
    return flat.reshape(*lead, *flat.shape[-3:])


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if h < height or w < width:
        raise ValueError(f"cannot crop {height}x{width} from {h}x{w}")
    top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
    return x[..., top:top + height, left:left + width]


def _normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - m) / s


def sample_frames(video: torch.Tensor, num_frames: int) -> torch.Tensor:
    """`num_frames` frames spread uniformly over (B, T, ...), ends included."""
    idx = torch.linspace(0, video.shape[1] - 1, num_frames).round().long().to(video.device)
    return video[:, idx]


def videomae_pixels(video: torch.Tensor, *, num_frames: int = 16, size: int = 224) -> torch.Tensor:
    if video.ndim != 5 or video.shape[2] != 3:
        raise ValueError(f"video must be (batch, frames, 3, height, width) in [-1, 1], got {tuple(video.shape)}")
    x = (sample_frames(video.float(), num_frames) + 1.0) / 2.0
    x = center_crop(resize_short_side(x, size, "bilinear"), size, size)
    return _normalize(x, IMAGENET_MEAN, IMAGENET_STD)


def dino_pixels(images: torch.Tensor, *, resize: int = 256, crop: int = 224) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (batch, 3, height, width) in [-1, 1], got {tuple(images.shape)}")
    x = (images.float() + 1.0) / 2.0
    x = center_crop(resize_short_side(x, resize, "bicubic"), crop, crop)
    return _normalize(x, IMAGENET_MEAN, IMAGENET_STD)


def _param(model):
    return next(model.parameters())


@torch.no_grad()
def motion_tokens(videomae, projector, videos: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, H, W) clips -> (B, num_queries, output_dim) motion tokens."""
    cfg = videomae.config
    p = _param(videomae)
    pixels = videomae_pixels(videos, num_frames=cfg.num_frames, size=cfg.image_size).to(p.device, p.dtype)
    return projector(videomae(pixel_values=pixels).last_hidden_state)


@torch.no_grad()
def unconditional_motion_tokens(videomae, projector, *, frames: int = 16, height: int = 224,
                                width: int = 224) -> torch.Tensor:
    """MotionRAG's guidance tokens: the projector on VideoMAE features of an all-zero (mid-grey) clip."""
    p = _param(projector)
    return motion_tokens(videomae, projector, torch.zeros(1, frames, 3, height, width, device=p.device))


@torch.no_grad()
def appearance_features(dino, images: torch.Tensor, *, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """(B, 3, H, W) -> DINOv2 last_hidden_state (B, 1 + patches, hidden), with the DINOv2 processor's
    short-side resize 256 and centre crop 224 (the model interpolates its position table)."""
    p = _param(dino)
    return dino(pixel_values=dino_pixels(images, resize=resize, crop=crop).to(p.device, p.dtype)).last_hidden_state


@torch.no_grad()
def predict_query_motion(cama, videomae, projector, dino, ref_videos: torch.Tensor, query_image: torch.Tensor,
                         *, most_similar_first: bool = True, dino_resize: int = 256,
                         dino_crop: int = 224) -> torch.Tensor:
    """The query image's motion tokens from retrieved clips.

    ref_videos: (B, K, T, 3, H, W), most similar first (a search result's order) unless told otherwise;
    query_image: (B, 3, H, W). Each reference contributes its motion tokens and its first frame's appearance.
    """
    if ref_videos.ndim != 6:
        raise ValueError(f"ref_videos must be (batch, refs, frames, 3, height, width), got {tuple(ref_videos.shape)}")
    b, k = ref_videos.shape[:2]
    motion = motion_tokens(videomae, projector, ref_videos.flatten(0, 1)).reshape(b, k, *cama_tokens(cama))
    ref_app = appearance_features(dino, ref_videos[:, :, 0].flatten(0, 1), resize=dino_resize, crop=dino_crop)
    ref_app = ref_app.reshape(b, k, *ref_app.shape[1:])
    query_app = appearance_features(dino, query_image, resize=dino_resize, crop=dino_crop)
    return cama.predict(motion, ref_app, query_app, most_similar_first=most_similar_first)


def cama_tokens(cama) -> tuple[int, int]:
    return cama.config.tokens_per_clip, cama.config.d_model
