"""The key layouts of the released MotionRAG checkpoints (HF MCG-NJU/MotionRAG, `checkpoints/<base>/`),
as expected names and shapes computed from the configs. Plain Python: no torch needed."""
from __future__ import annotations

from dataclasses import dataclass, field

from .configs import (MOTION_PROJECTOR, PAPER_CAMA, PAPER_COGVIDEOX_ADAPTER, PAPER_SVD_ADAPTER, CamaConfig,
                      CogVideoXAdapterConfig, ResamplerConfig, SVDAdapterConfig)

Shape = tuple[int, ...]

# Released file stems, per base model folder (the HF repository's `checkpoints/<base>/<stem>.ckpt`).
MOTION_PROJ = "motion_proj"
MOTION_TRANSFORMER = "motion_transformer"
MOTION_ADAPTER = "Motion-Adapter"
COGVIDEOX_17_FRAMES = "17_frames"
BASES = ("CogVideoX", "SVD")
FILES = {"CogVideoX": (MOTION_PROJ, MOTION_TRANSFORMER, MOTION_ADAPTER, COGVIDEOX_17_FRAMES),
         "SVD": (MOTION_PROJ, MOTION_TRANSFORMER, MOTION_ADAPTER)}
# Prefix of the host model's weights inside Motion-Adapter.ckpt / 17_frames.ckpt (the Lightning
# module held the CogVideoX transformer as `transformer` and the SVD UNet as `unet`).
HOST_PREFIX = {"CogVideoX": "transformer.", "SVD": "unet."}


@dataclass(frozen=True)
class Layout:
    """What one checkpoint file must hold.

    `required`: every key must be present with this shape. `optional`: named groups of keys that
    are either all present or all absent (e.g. the stage-1 projector copy inside Motion-Adapter).
    """
    name: str
    required: dict[str, Shape]
    optional: dict[str, dict[str, Shape]] = field(default_factory=dict)

    def all_keys(self) -> dict[str, Shape]:
        out = dict(self.required)
        for group in self.optional.values():
            out.update(group)
        return out


def resampler_keys(cfg: ResamplerConfig, prefix: str = "") -> dict[str, Shape]:
    d, inner, hidden = cfg.dim, cfg.inner_dim, cfg.dim * cfg.ff_mult
    keys: dict[str, Shape] = {
        "latents": (1, cfg.num_queries, d),
        "proj_in.weight": (d, cfg.embedding_dim), "proj_in.bias": (d,),
        "proj_out.weight": (cfg.output_dim, d), "proj_out.bias": (cfg.output_dim,),
        "norm_out.weight": (cfg.output_dim,), "norm_out.bias": (cfg.output_dim,),
    }
    for i in range(cfg.depth):
        a, f = f"layers.{i}.0.", f"layers.{i}.1."
        keys.update({
            a + "norm1.weight": (d,), a + "norm1.bias": (d,), a + "norm2.weight": (d,), a + "norm2.bias": (d,),
            a + "to_q.weight": (inner, d), a + "to_kv.weight": (2 * inner, d), a + "to_out.weight": (d, inner),
            f + "0.weight": (d,), f + "0.bias": (d,), f + "1.weight": (hidden, d), f + "3.weight": (d, hidden),
        })
    return {prefix + k: v for k, v in keys.items()}


def transformer_encoder_keys(cfg: CamaConfig, prefix: str = "transformer.") -> dict[str, Shape]:
    d, ff = cfg.d_model, cfg.dim_feedforward
    keys: dict[str, Shape] = {}
    for i in range(cfg.num_layers):
        p = f"{prefix}layers.{i}."
        keys.update({
            p + "self_attn.in_proj_weight": (3 * d, d), p + "self_attn.in_proj_bias": (3 * d,),
            p + "self_attn.out_proj.weight": (d, d), p + "self_attn.out_proj.bias": (d,),
            p + "linear1.weight": (ff, d), p + "linear1.bias": (ff,),
            p + "linear2.weight": (d, ff), p + "linear2.bias": (d,),
            p + "norm1.weight": (d,), p + "norm1.bias": (d,), p + "norm2.weight": (d,), p + "norm2.bias": (d,),
        })
    return keys


def adapter_keys(cfg: CogVideoXAdapterConfig | SVDAdapterConfig, prefix: str = "") -> dict[str, Shape]:
    keys: dict[str, Shape] = {}
    for layer, hidden in cfg.layers().items():
        p = f"{prefix}{layer}.processor."
        keys[p + "to_q_ip.0.weight"] = (hidden, hidden)
        keys[p + "to_k_ip.0.weight"] = (hidden, cfg.motion_dim)
        keys[p + "to_v_ip.0.weight"] = (hidden, cfg.motion_dim)
    return keys


def motion_proj_layout(cfg: ResamplerConfig = MOTION_PROJECTOR) -> Layout:
    return Layout(MOTION_PROJ, resampler_keys(cfg))


def motion_transformer_layout(cfg: CamaConfig = PAPER_CAMA) -> Layout:
    required = transformer_encoder_keys(cfg)
    required.update(resampler_keys(cfg.appearance, "condition_proj."))
    # The released training never optimised or saved the start block (see the notes); accept it
    # when a file carries one.
    sos = {"sos_token": (1, cfg.tokens_per_clip, cfg.d_model)}
    return Layout(MOTION_TRANSFORMER, required, {"sos_token": sos})


def motion_adapter_layout(base: str, cfg: CogVideoXAdapterConfig | SVDAdapterConfig | None = None,
                          projector: ResamplerConfig = MOTION_PROJECTOR) -> Layout:
    if base not in HOST_PREFIX:
        raise ValueError(f"base must be one of {sorted(HOST_PREFIX)}, got {base!r}")
    if cfg is None:
        cfg = PAPER_COGVIDEOX_ADAPTER if base == "CogVideoX" else PAPER_SVD_ADAPTER
    # Stage 1 trained the projector next to the adapter and saved both; motion_proj.ckpt is that
    # projector extracted, so the copy here is recognised and otherwise unused.
    return Layout(MOTION_ADAPTER, adapter_keys(cfg, HOST_PREFIX[base]),
                  {"action_proj_model": resampler_keys(projector, "action_proj_model.")})


def cogvideox_17_frames_layout(cfg: CogVideoXAdapterConfig = PAPER_COGVIDEOX_ADAPTER) -> Layout:
    h = cfg.hidden_size
    keys: dict[str, Shape] = {}
    for i in range(cfg.num_layers):
        for proj in ("to_q", "to_k", "to_v"):
            p = f"transformer.transformer_blocks.{i}.attn1.{proj}."
            keys[p + "weight"] = (h, h)
            keys[p + "bias"] = (h,)
    return Layout(COGVIDEOX_17_FRAMES, keys)


def layout_for(base: str, stem: str, *, cama: CamaConfig = PAPER_CAMA,
               adapter: CogVideoXAdapterConfig | SVDAdapterConfig | None = None) -> Layout:
    """The layout of `checkpoints/<base>/<stem>.ckpt`."""
    if base not in FILES:
        raise ValueError(f"base must be one of {list(FILES)}, got {base!r}")
    if stem not in FILES[base]:
        raise ValueError(f"{base} has no checkpoint {stem!r}; it has {list(FILES[base])}")
    if stem == MOTION_PROJ:
        return motion_proj_layout(cama.motion)
    if stem == MOTION_TRANSFORMER:
        return motion_transformer_layout(cama)
    if stem == MOTION_ADAPTER:
        return motion_adapter_layout(base, adapter, cama.motion)
    if adapter is not None and not isinstance(adapter, CogVideoXAdapterConfig):
        raise ValueError("17_frames needs a CogVideoXAdapterConfig")
    return cogvideox_17_frames_layout(adapter or PAPER_COGVIDEOX_ADAPTER)


def parameter_count(keys: dict[str, Shape]) -> int:
    total = 0
    for shape in keys.values():
        n = 1
        for s in shape:
            n *= s
        total += n
    return total
