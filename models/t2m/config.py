"""Sizes of the text-to-motion model and of its training, as dataclasses that round-trip through JSON.

Presets: "tiny" (unit tests, seconds), "small" (the shipped default, trains on a 2-core CPU),
"paper" (MoMask / ReMoMask sizes, for a GPU).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ...common.errors import InputError

FORMAT = "motionrag-t2m"
FORMAT_VERSION = 1


class ConfigError(InputError):
    """A bad configuration value; `input` names the field, the message what was expected."""


@dataclass(frozen=True)
class TokenizerConfig:
    width: int = 64               # conv channels
    code_dim: int = 64            # latent / codebook vector size
    num_codes: int = 128          # codebook entries per quantiser layer
    num_quantizers: int = 4       # residual layers; layer 0 is what the masked transformer predicts
    down_t: int = 2               # stride-2 steps: tokens = frames / 2**down_t
    depth: int = 2                # residual conv blocks per resolution
    dilation_growth: int = 3
    ema_decay: float = 0.99
    quantize_dropout: float = 0.2  # chance of keeping only the first n layers (n random) in a training step
    commit_weight: float = 0.02
    ric_weight: float = 0.5       # extra L1 on the rotation-invariant joint positions (MoMask)


@dataclass(frozen=True)
class TransformerConfig:
    latent: int = 128
    heads: int = 4
    layers: int = 3
    ff: int = 256
    dropout: float = 0.1
    text_dim: int = 384           # MiniLM all-MiniLM-L6-v2 sentence embeddings
    retrieval_layers: int = 1     # self-attention layers of the retrieved-motion encoder
    num_retrieved: int = 2        # neighbours used in training (generation accepts any number >= 0)
    max_tokens: int = 64          # longest token sequence (frames / 4); 196 frames -> 49 tokens
    max_retrieved_tokens: int = 64  # per retrieved motion; longer ones are centre-cropped
    residual_layers: int = 2      # layers of the residual-layer transformer
    text_drop: float = 0.1        # independent chances of dropping each condition in training
    retrieval_drop: float = 0.1


@dataclass(frozen=True)
class RefinerConfig:
    """The retrieval refiner (refiner.py): decoded tokens + time-aligned retrieved motions -> motion.

    Training draws, per sample, one of four cases (probabilities below, the rest is "both"):
    no references (RAG off: the refiner only cleans up the decoded motion); a faithful decoded
    motion with retrieved neighbours only (they must be ignored); a wrong decoded motion (another
    clip's) with a perturbed copy of the target among the references (it must be used); a faithful
    decoded motion with the perturbed target among the references (either may be used)."""
    width: int = 0                # conv channels; 0 = no refiner (checkpoints from before it existed)
    depth: int = 3                # dilated residual blocks per stack (dilations 1, 2, 4, ...)
    p_no_references: float = 0.15
    p_neighbours_only: float = 0.25
    p_wrong_base: float = 0.4
    p_positive_first: float = 0.8  # chance the perturbed target sits in the first (top-ranked) slot
    max_speed: float = 1.25       # perturbed target: speed in [1/max_speed, max_speed] ...
    max_shift: float = 0.15       # ... its window shifted by up to this share of the crop ...
    noise: float = 0.05           # ... plus Gaussian noise of this std in normalised feature units
    ric_weight: float = 0.5

    @property
    def enabled(self) -> bool:
        return self.width > 0


@dataclass(frozen=True)
class ModelConfig:
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    refiner: RefinerConfig = field(default_factory=lambda: RefinerConfig(width=64))
    text_encoder: str = "all-MiniLM-L6-v2"
    fps: float = 20.0

    @property
    def frames_per_token(self) -> int:
        return 2 ** self.tokenizer.down_t

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        if not isinstance(data, dict):
            raise ConfigError("model config", f"expected a JSON object, got {type(data).__name__}")
        tok = _build(TokenizerConfig, data.get("tokenizer", {}), "tokenizer")
        tr = _build(TransformerConfig, data.get("transformer", {}), "transformer")
        # A config written before the refiner existed has no "refiner": that model has none.
        ref = _build(RefinerConfig, data.get("refiner", {"width": 0}), "refiner")
        rest = {k: v for k, v in data.items() if k not in ("tokenizer", "transformer", "refiner")}
        cfg = _build(cls, rest, "model", extra=dict(tokenizer=tok, transformer=tr, refiner=ref))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        t, m = self.tokenizer, self.transformer
        for name, value in [("tokenizer.width", t.width), ("tokenizer.code_dim", t.code_dim),
                            ("tokenizer.num_codes", t.num_codes), ("tokenizer.num_quantizers", t.num_quantizers),
                            ("tokenizer.depth", t.depth), ("transformer.latent", m.latent),
                            ("transformer.heads", m.heads), ("transformer.layers", m.layers),
                            ("transformer.ff", m.ff), ("transformer.text_dim", m.text_dim),
                            ("transformer.max_tokens", m.max_tokens),
                            ("transformer.max_retrieved_tokens", m.max_retrieved_tokens)]:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(name, f"expected a positive integer, got {value!r}")
            # Sizes past these describe no model this pack trains, and would allocate without end.
            if value > SANE_LIMITS[name]:
                raise ConfigError(name, f"{value} is past the sane limit {SANE_LIMITS[name]}; the config is damaged")
        for name, value in [("transformer.residual_layers", m.residual_layers),
                            ("transformer.retrieval_layers", m.retrieval_layers),
                            ("transformer.num_retrieved", m.num_retrieved), ("refiner.width", self.refiner.width),
                            ("refiner.depth", self.refiner.depth)]:
            if isinstance(value, int) and value > SANE_LIMITS[name]:
                raise ConfigError(name, f"{value} is past the sane limit {SANE_LIMITS[name]}; the config is damaged")
        if not (isinstance(t.down_t, int) and 0 <= t.down_t <= 4):
            raise ConfigError("tokenizer.down_t", f"expected an integer 0..4, got {t.down_t!r}")
        if m.latent % m.heads:
            raise ConfigError("transformer.latent", f"{m.latent} must be divisible by transformer.heads ({m.heads})")
        for name, p in [("tokenizer.quantize_dropout", t.quantize_dropout), ("tokenizer.ema_decay", t.ema_decay),
                        ("transformer.dropout", m.dropout), ("transformer.text_drop", m.text_drop),
                        ("transformer.retrieval_drop", m.retrieval_drop)]:
            if not (0.0 <= float(p) < 1.0):
                raise ConfigError(name, f"expected a probability in [0, 1), got {p!r}")
        if m.residual_layers < 0 or m.retrieval_layers < 0 or m.num_retrieved < 0:
            raise ConfigError("transformer.residual_layers / retrieval_layers / num_retrieved", "expected >= 0")
        r = self.refiner
        for name, value, low in [("refiner.width", r.width, 0), ("refiner.depth", r.depth, 1)]:
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(name, f"expected an integer >= {low}, got {value!r}")
        for name, p in [("refiner.p_no_references", r.p_no_references),
                        ("refiner.p_neighbours_only", r.p_neighbours_only), ("refiner.p_wrong_base", r.p_wrong_base),
                        ("refiner.p_positive_first", r.p_positive_first), ("refiner.max_shift", r.max_shift)]:
            if not (0.0 <= float(p) <= 1.0):
                raise ConfigError(name, f"expected a probability in [0, 1], got {p!r}")
        if r.p_no_references + r.p_neighbours_only + r.p_wrong_base > 1.0 + 1e-9:
            raise ConfigError("refiner.p_no_references + p_neighbours_only + p_wrong_base", "expected at most 1")
        if not float(r.max_speed) >= 1.0 or not float(r.noise) >= 0.0 or not float(r.ric_weight) >= 0.0:
            raise ConfigError("refiner.max_speed (>= 1), noise, ric_weight (>= 0)", f"got {r.max_speed!r}, "
                              f"{r.noise!r}, {r.ric_weight!r}")


SANE_LIMITS = {
    "tokenizer.width": 8192, "tokenizer.code_dim": 8192, "tokenizer.num_codes": 65536, "tokenizer.num_quantizers": 32,
    "tokenizer.depth": 32, "transformer.latent": 8192, "transformer.heads": 256, "transformer.layers": 128,
    "transformer.ff": 65536, "transformer.text_dim": 8192, "transformer.max_tokens": 8192,
    "transformer.max_retrieved_tokens": 8192, "transformer.residual_layers": 128, "transformer.retrieval_layers": 128,
    "transformer.num_retrieved": 64, "refiner.width": 8192, "refiner.depth": 128,
}


@dataclass(frozen=True)
class TrainConfig:
    tokenizer_steps: int = 6000
    masked_steps: int = 6000
    residual_steps: int = 3000
    refiner_steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3              # tokenizer stage
    transformer_lr: float = 5e-4  # masked and residual stages
    warmup: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    window_frames: int = 64       # tokenizer crop (feature rows), HumanML3D/MoMask use 64
    min_crop_frames: int = 16     # shortest sub-clip the transformers train on
    max_crop_frames: int = 196
    save_every: int = 500

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return _build(cls, data, "train")


def _build(cls, data: dict, what: str, extra: dict | None = None):
    if not isinstance(data, dict):
        raise ConfigError(f"{what} config", f"expected a JSON object, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{what} config", f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    values = dict(data)
    for key, value in values.items():
        default = names[key].default
        if isinstance(default, bool) or default is dataclasses.MISSING:
            continue
        if isinstance(default, int) and not (isinstance(value, int) and not isinstance(value, bool)):
            raise ConfigError(f"{what}.{key}", f"expected an integer, got {value!r}")
        if isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{what}.{key}", f"expected a number, got {value!r}")
            values[key] = float(value)
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{what}.{key}", f"expected a string, got {value!r}")
    values.update(extra or {})
    return cls(**values)


TINY = ModelConfig(
    tokenizer=TokenizerConfig(width=32, code_dim=32, num_codes=32, num_quantizers=3, depth=1),
    transformer=TransformerConfig(latent=32, heads=2, layers=1, ff=64, dropout=0.0, retrieval_layers=1,
                                  residual_layers=1, max_tokens=64, max_retrieved_tokens=32),
    refiner=RefinerConfig(width=16, depth=1),
)
SMALL = ModelConfig()
PAPER = ModelConfig(
    tokenizer=TokenizerConfig(width=512, code_dim=512, num_codes=512, num_quantizers=6, depth=3),
    transformer=TransformerConfig(latent=384, heads=6, layers=8, ff=1024, dropout=0.2, retrieval_layers=2,
                                  residual_layers=8, max_tokens=50, max_retrieved_tokens=50),
    refiner=RefinerConfig(width=256, depth=4),
)
PRESETS = {"tiny": TINY, "small": SMALL, "paper": PAPER}

TRAIN_PRESETS = {
    "tiny": TrainConfig(tokenizer_steps=4, masked_steps=4, residual_steps=2, refiner_steps=2, batch_size=4, warmup=2,
                        window_frames=16, min_crop_frames=12, max_crop_frames=48, save_every=1000),
    "small": TrainConfig(),
    "paper": TrainConfig(tokenizer_steps=100_000, masked_steps=100_000, residual_steps=100_000,
                         refiner_steps=50_000, batch_size=64,
                         lr=2e-4, transformer_lr=2e-4, warmup=2000, window_frames=64, min_crop_frames=40, max_crop_frames=196, save_every=5000),
}


def preset(name: str) -> tuple[ModelConfig, TrainConfig]:
    if name not in PRESETS:
        raise ConfigError("config", f"expected one of {', '.join(PRESETS)}, got {name!r}")
    return PRESETS[name], TRAIN_PRESETS[name]
