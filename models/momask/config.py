"""MoMask's sizes as frozen dataclasses, and the one place where its `opt.txt` files are read.

A released model folder carries one `opt.txt` per network (argparse dumps, `key: value` lines). They
are translated here, once, into the configs below; nothing else in the package sees an opt.txt.
Only the fields that decide the layout of the weights or the inference are kept.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from ...common.errors import InputError

# The datasets MoMask was released for: feature width, joints, frames per second.
DATASETS = {
    "t2m": {"dim_pose": 263, "joints": 22, "fps": 20.0},
    "kit": {"dim_pose": 251, "joints": 21, "fps": 12.5},
}
CLIP_DIM = 512            # CLIP ViT-B/32 text feature width (the condition of every network)
CLIP_TEXT_ENCODER = "openai/clip-vit-base-patch32"
LENGTH_CLASSES = 50       # the length estimator's classes: c tokens, 0..49
FRAMES_PER_TOKEN = 4      # 2 stride-2 convolutions in the released tokenizer
MAX_TOKENS = 49           # longest training motion: 196 frames
ACTIVATIONS = ("relu", "silu", "gelu")


@dataclass(frozen=True)
class RVQConfig:
    """The residual VQ-VAE (tokenizer)."""
    dim_pose: int = 263
    nb_code: int = 512
    code_dim: int = 512
    num_quantizers: int = 6
    down_t: int = 2
    stride_t: int = 2
    width: int = 512
    depth: int = 3
    dilation_growth_rate: int = 3
    activation: str = "relu"

    @property
    def frames_per_token(self) -> int:
        return self.stride_t ** self.down_t


@dataclass(frozen=True)
class TransformerConfig:
    """The masked (base-layer) or residual transformer; `num_tokens` and `code_dim` are the tokenizer's."""
    num_tokens: int = 512
    code_dim: int = 512
    latent_dim: int = 384
    ff_size: int = 1024
    n_layers: int = 8
    n_heads: int = 6
    dropout: float = 0.2
    clip_dim: int = CLIP_DIM
    max_len: int = 5000       # rows of the stored positional-encoding buffer


@dataclass(frozen=True)
class ResidualConfig(TransformerConfig):
    num_quantizers: int = 6


@dataclass(frozen=True)
class MoMaskConfig:
    dataset: str = "t2m"
    rvq: RVQConfig = dataclasses.field(default_factory=RVQConfig)
    masked: TransformerConfig = dataclasses.field(default_factory=TransformerConfig)
    residual: ResidualConfig = dataclasses.field(default_factory=ResidualConfig)
    # The text features the networks were trained on: MoMask's CLIP ViT-B/32 (512 values), or, for a
    # model written by the pack's trainer (opt.txt `text_encoder`, `text_feature_dim`), another
    # encoder's features zero-padded to clip_dim.
    text_encoder: str = CLIP_TEXT_ENCODER
    text_feature_dim: int = CLIP_DIM

    @property
    def fps(self) -> float:
        return DATASETS[self.dataset]["fps"]

    @property
    def joints(self) -> int:
        return DATASETS[self.dataset]["joints"]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MoMaskConfig":
        return cls(dataset=data["dataset"], rvq=RVQConfig(**data["rvq"]),
                   masked=TransformerConfig(**data["masked"]), residual=ResidualConfig(**data["residual"]),
                   text_encoder=data.get("text_encoder", CLIP_TEXT_ENCODER),
                   text_feature_dim=data.get("text_feature_dim", CLIP_DIM))


# ------------------------------------------------------------------------------------------- opt.txt

_FLOAT = re.compile(r"^[-+]?[0-9]+\.[0-9]+$")


def read_opt(path: str | Path) -> dict:
    """The `key: value` pairs of an opt.txt, typed as MoMask types them: True/False as bools,
    `digits.digits` as floats, digit strings as ints, anything else (including 'None') as strings."""
    path = Path(path)
    if not path.is_file():
        raise InputError("folder", f"{path}: missing; every MoMask network folder has the opt.txt it was trained with")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("folder", f"{path}: cannot be read as text ({exc})") from None
    opt: dict = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("---"):          # the "---- Options ----" / "---- End ----" banners
            continue
        key, sep, value = line.partition(": ")
        if not sep:
            raise InputError("folder", f"{path}: line {line[:60]!r} is not 'key: value'; not a MoMask opt.txt")
        if value in ("True", "False"):
            opt[key] = value == "True"
        elif _FLOAT.match(value.lstrip("+-")):
            opt[key] = float(value)
        elif value.lstrip("+-").isdigit():
            opt[key] = int(value)
        else:
            opt[key] = value
    return opt


SANE_LIMITS = {"nb_code": 65536, "code_dim": 8192, "num_quantizers": 64, "down_t": 8, "stride_t": 8, "width": 8192,
               "depth": 64, "dilation_growth_rate": 16, "latent_dim": 8192, "ff_size": 65536, "n_layers": 128,
               "n_heads": 256}


def _need(opt: dict, path: Path, key: str, kind: type):
    if key not in opt:
        raise InputError("folder", f"{path}: has no {key!r}; expected a MoMask opt.txt")
    value = opt[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InputError("folder", f"{path}: {key} is {value!r}; expected a {kind.__name__}")
    # Sizes build modules before any weight is read: bounded, so a damaged opt.txt cannot allocate without end.
    if kind is int and not 1 <= value <= SANE_LIMITS.get(key, 65536):
        raise InputError("folder", f"{path}: {key} is {value}; expected 1..{SANE_LIMITS.get(key, 65536)} "
                                   "(the released models use a few hundred at most)")
    return value


def dataset_of(opt: dict, path: Path) -> str:
    name = opt.get("dataset_name", "t2m")
    if name not in DATASETS:
        raise InputError("folder", f"{path}: dataset_name {name!r}; MoMask was released for {sorted(DATASETS)}")
    return name


def text_encoder_of(opt: dict, path: Path) -> tuple[str, int]:
    """(text encoder, feature width) a transformer's opt.txt records; MoMask's own files record none
    (CLIP ViT-B/32). Written by the pack's trainer (models/momask/export.py) for other encoders."""
    name = opt.get("text_encoder", CLIP_TEXT_ENCODER)
    dim = opt.get("text_feature_dim", CLIP_DIM)
    if not isinstance(name, str) or isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= CLIP_DIM:
        raise InputError("folder", f"{path}: text_encoder {name!r} / text_feature_dim {dim!r}; expected a name and "
                                   f"a width in 1..{CLIP_DIM}")
    return name, dim


def rvq_config(opt: dict, path: Path) -> RVQConfig:
    """The tokenizer's config from its opt.txt (the RVQ folder's)."""
    path = Path(path)
    if opt.get("shared_codebook", False):
        raise InputError("folder", f"{path}: shared_codebook is True; only the released layout (one codebook "
                                   f"per quantizer layer) is supported")
    norm = opt.get("vq_norm", "None")
    if norm not in ("None", None):
        raise InputError("folder", f"{path}: vq_norm {norm!r}; only the released layout (no normalisation) "
                                   f"is supported")
    act = opt.get("vq_act", "relu")
    if act not in ACTIVATIONS:
        raise InputError("folder", f"{path}: vq_act {act!r}; expected one of {ACTIVATIONS}")
    code_dim = _need(opt, path, "code_dim", int)
    if opt.get("output_emb_width", code_dim) != code_dim:
        raise InputError("folder", f"{path}: output_emb_width {opt['output_emb_width']} differs from code_dim "
                                   f"{code_dim}; MoMask's RVQ-VAE needs them equal")
    return RVQConfig(dim_pose=DATASETS[dataset_of(opt, path)]["dim_pose"], nb_code=_need(opt, path, "nb_code", int),
                     code_dim=code_dim, num_quantizers=_need(opt, path, "num_quantizers", int),
                     down_t=_need(opt, path, "down_t", int), stride_t=_need(opt, path, "stride_t", int),
                     width=_need(opt, path, "width", int), depth=_need(opt, path, "depth", int),
                     dilation_growth_rate=_need(opt, path, "dilation_growth_rate", int), activation=act)


def transformer_config(opt: dict, path: Path, rvq: RVQConfig, residual: bool):
    """The masked (residual=False) or residual transformer's config from its opt.txt; the token count
    and code width come from the tokenizer, as MoMask's loaders copy them."""
    path = Path(path)
    sizes = dict(num_tokens=rvq.nb_code, code_dim=rvq.code_dim, latent_dim=_need(opt, path, "latent_dim", int),
                 ff_size=_need(opt, path, "ff_size", int), n_layers=_need(opt, path, "n_layers", int),
                 n_heads=_need(opt, path, "n_heads", int), dropout=_need(opt, path, "dropout", float))
    if sizes["latent_dim"] % sizes["n_heads"]:
        raise InputError("folder", f"{path}: latent_dim {sizes['latent_dim']} is not a multiple of n_heads "
                                   f"{sizes['n_heads']}")
    if not residual:
        return TransformerConfig(**sizes)
    if not opt.get("share_weight", False):
        raise InputError("folder", f"{path}: share_weight is False; only the released residual-transformer layout "
                                   f"(share_weight True) is supported")
    return ResidualConfig(**sizes, num_quantizers=rvq.num_quantizers)


# What MoMask's download keeps beside the weights; the safetensors copies the loader writes are left
# out, so converting a folder on its first load does not make it look changed.
SOURCE_SUFFIXES = (".tar", ".txt", ".npy")


def is_momask_folder(folder: str | Path) -> bool:
    """True for a folder laid out as MoMask's download unzips (network folders, each with an opt.txt),
    without reading any weights; the pack's own model folders (model.safetensors + config.json) are not."""
    folder = Path(folder)
    if (folder / "model.safetensors").is_file() or not folder.is_dir():
        return False
    try:
        return any(d.is_dir() and (d / "opt.txt").is_file() for d in folder.iterdir())
    except OSError:
        return False


def source_files(folder: str | Path) -> list[str]:
    """The MoMask folder's own files (relative, sorted): what a cache key or a change check stamps."""
    folder = Path(folder)
    try:
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                      if p.is_file() and p.suffix in SOURCE_SUFFIXES)
    except OSError:
        return []


__all__ = ["is_momask_folder", "source_files", "SOURCE_SUFFIXES", "DATASETS", "CLIP_DIM", "LENGTH_CLASSES",
           "FRAMES_PER_TOKEN", "MAX_TOKENS", "RVQConfig", "TransformerConfig", "ResidualConfig", "MoMaskConfig",
           "read_opt", "rvq_config", "transformer_config", "dataset_of", "text_encoder_of", "CLIP_TEXT_ENCODER"]
