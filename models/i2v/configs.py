"""Sizes of the MotionRAG modules as plain dataclasses (no torch), so the same code builds the
released paper-size models on a GPU and tiny ones in tests."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ResamplerConfig:
    """A perceiver resampler: `num_queries` learned latents read a token sequence of width
    `embedding_dim` and come out as `num_queries x output_dim`."""
    dim: int = 1024
    depth: int = 4
    dim_head: int = 64
    heads: int = 12
    num_queries: int = 25
    embedding_dim: int = 768
    output_dim: int = 1024
    ff_mult: int = 4

    def __post_init__(self):
        for name in ("dim", "depth", "dim_head", "heads", "num_queries", "embedding_dim", "output_dim", "ff_mult"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ResamplerConfig.{name} must be a positive int, got {value!r}")

    @property
    def inner_dim(self) -> int:
        return self.dim_head * self.heads


# VideoMAE-B (ssv2) last_hidden_state, 1568 x 768 -> 25 motion tokens of 1024 (motion_proj.ckpt).
MOTION_PROJECTOR = ResamplerConfig()
# DINOv2-L last_hidden_state, 257 x 1024 -> 25 appearance tokens of 1024 (CAMA's condition_proj).
APPEARANCE_PROJECTOR = ResamplerConfig(embedding_dim=1024)


@dataclass(frozen=True)
class CamaConfig:
    """CAMA, the motion context transformer (a post-norm torch TransformerEncoder).

    `max_sequence` is the length of the released motion position table (256): it allows
    max_sequence // tokens_per_clip clips, i.e. 9 references plus the query at paper size.
    """
    d_model: int = 1024
    num_heads: int = 16
    num_layers: int = 4
    dim_feedforward: int = 4096
    max_sequence: int = 256
    appearance_pe_length: int = 2560
    appearance: ResamplerConfig = field(default_factory=lambda: APPEARANCE_PROJECTOR)
    motion: ResamplerConfig = field(default_factory=lambda: MOTION_PROJECTOR)

    def __post_init__(self):
        if self.d_model % self.num_heads:
            raise ValueError(f"CamaConfig: d_model {self.d_model} is not divisible by num_heads {self.num_heads}")
        if self.appearance.output_dim != self.d_model or self.motion.output_dim != self.d_model:
            raise ValueError(
                f"CamaConfig: appearance.output_dim ({self.appearance.output_dim}) and motion.output_dim "
                f"({self.motion.output_dim}) must both equal d_model ({self.d_model})")
        if self.appearance.num_queries != self.motion.num_queries:
            raise ValueError(
                f"CamaConfig: appearance.num_queries ({self.appearance.num_queries}) must equal "
                f"motion.num_queries ({self.motion.num_queries}): one appearance token per motion token")
        if self.max_sequence < 2 * self.tokens_per_clip:
            raise ValueError(f"CamaConfig: max_sequence {self.max_sequence} holds fewer than 2 clips")

    @property
    def tokens_per_clip(self) -> int:
        return self.motion.num_queries

    @property
    def max_references(self) -> int:
        return self.max_sequence // self.tokens_per_clip - 1


PAPER_CAMA = CamaConfig()


@dataclass(frozen=True)
class CogVideoXAdapterConfig:
    """Motion adapter on every joint text+video self-attention (`transformer_blocks.N.attn1`)."""
    num_layers: int = 42
    hidden_size: int = 3072      # 48 heads x 64
    motion_dim: int = 1024

    def layers(self) -> dict[str, int]:
        """Attention module name inside the transformer -> width of its attention output."""
        return {f"transformer_blocks.{i}.attn1": self.hidden_size for i in range(self.num_layers)}


@dataclass(frozen=True)
class SVDAdapterConfig:
    """Motion adapter on the spatial cross-attentions (`...transformer_blocks.0.attn2`) of the
    SVD UNet: cross-attention in every down block but the last, every up block but the first,
    and the mid block; up blocks have one more layer than down blocks."""
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    motion_dim: int = 1024

    def layers(self) -> dict[str, int]:
        ch = tuple(self.block_out_channels)
        n = len(ch)
        out: dict[str, int] = {}
        for b in range(n - 1):
            for j in range(self.layers_per_block):
                out[f"down_blocks.{b}.attentions.{j}.transformer_blocks.0.attn2"] = ch[b]
        rev = tuple(reversed(ch))
        for b in range(1, n):
            for j in range(self.layers_per_block + 1):
                out[f"up_blocks.{b}.attentions.{j}.transformer_blocks.0.attn2"] = rev[b]
        out["mid_block.attentions.0.transformer_blocks.0.attn2"] = ch[-1]
        return out


PAPER_COGVIDEOX_ADAPTER = CogVideoXAdapterConfig()
PAPER_SVD_ADAPTER = SVDAdapterConfig()
