"""The Motion-Adapter: an extra attention branch that lets every adapted attention layer of a frozen
image-to-video model read MotionRAG's motion tokens (IP-Adapter style, decoupled).

For each adapted layer, with h the layer's attention output before its output projection `to_out`:
    h <- h + strength * SDPA(to_q_ip(h), to_k_ip(motion), to_v_ip(motion))
using the layer's own head count, with no rotary embedding and no QK-norm on the branch. The host's
stock processor still computes the main attention (rotary, norms, masks unchanged); the branch is
added at the input of `to_out[0]`, exactly where the released processors add it.

Layers: CogVideoX `transformer_blocks.N.attn1` (the joint text+video attention, so text tokens get the
branch too) and the SVD UNet's spatial cross-attentions `...transformer_blocks.0.attn2`. Processor
parameter names match Motion-Adapter.ckpt: `<layer>.processor.{to_q_ip,to_k_ip,to_v_ip}.0.weight`.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointKeyError

_COG_LAYER = re.compile(r"^transformer_blocks\.\d+\.attn1$")
# spatial blocks only: `temporal_transformer_blocks` has no '.' right before 'transformer_blocks'
_SVD_LAYER = re.compile(r"^(down_blocks|up_blocks|mid_block)\..*\.transformer_blocks\.\d+\.attn2$")


class MotionState:
    """What every processor of one injection reads at call time: the motion tokens and the strength."""

    def __init__(self, strength: float = 1.0):
        self.tokens: torch.Tensor | None = None
        self.strength = float(strength)


def _version(t: torch.Tensor) -> int:
    """In-place modification counter; tensors made under torch.inference_mode have none
    (they cannot be modified in place outside it), so identity and data pointer key them."""
    try:
        return t._version
    except RuntimeError:
        return -1


class _MotionBranch(nn.Module):
    def __init__(self, hidden_size: int, motion_dim: int, state: MotionState, base, *, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype, "bias": False}
        self.to_q_ip = nn.ModuleList([nn.Linear(hidden_size, hidden_size, **kw)])
        self.to_k_ip = nn.ModuleList([nn.Linear(motion_dim, hidden_size, **kw)])
        self.to_v_ip = nn.ModuleList([nn.Linear(motion_dim, hidden_size, **kw)])
        # kept out of _modules so the stock processor adds nothing to the state dict
        self.__dict__["base_processor"] = base
        self.__dict__["motion_state"] = state

    def branch(self, attn, h: torch.Tensor) -> torch.Tensor:
        tokens = self.motion_state.tokens
        batch, n_motion = h.shape[0], tokens.shape[0]
        if batch % n_motion:
            raise ValueError(f"motion tokens have batch {n_motion}, which does not divide the attention batch "
                             f"{batch} (for guidance pass [uncond, cond] tokens, one row per prompt row)")
        w = self.to_q_ip[0].weight
        heads = attn.heads
        head_dim = h.shape[-1] // heads
        k, v = self._motion_keys_values(tokens, w, heads, head_dim)
        # Rows of one video (its frames, for SVD's spatial layers) are consecutive and share
        # their motion tokens. Query rows attend independently, so folding a video's rows into
        # the query length is exact and spares projecting the tokens once per frame.
        q = self.to_q_ip[0](h.to(w.dtype))
        length = q.shape[1]
        q = q.reshape(n_motion, (batch // n_motion) * length, heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(1, 2).reshape(batch, length, heads * head_dim).to(h.dtype)

    def _motion_keys_values(self, tokens: torch.Tensor, w: torch.Tensor, heads: int, head_dim: int):
        """K and V of the motion tokens, (n_motion, heads, tokens, head_dim). The tokens and
        weights stay the same over a whole sampling run, so at inference the projection is
        reused across denoising steps until either changes."""
        key = (_version(tokens), tokens.data_ptr(), w.data_ptr(), _version(w), w.dtype, w.device,
               _version(self.to_k_ip[0].weight), _version(self.to_v_ip[0].weight), heads)
        use_cache = not torch.is_grad_enabled()   # never hand cached tensors to autograd
        cached = self.__dict__.get("_kv_cache")
        if use_cache and cached is not None and cached[0] is tokens and cached[1] == key:
            return cached[2], cached[3]
        t = tokens.to(device=w.device, dtype=w.dtype)

        def split(x):
            return x.view(x.shape[0], -1, heads, head_dim).transpose(1, 2)

        k, v = split(self.to_k_ip[0](t)), split(self.to_v_ip[0](t))
        if use_cache:
            self.__dict__["_kv_cache"] = (tokens, key, k, v)
        else:
            self.__dict__.pop("_kv_cache", None)
        return k, v

    def _run(self, attn, call):
        strength = self.motion_state.strength
        if strength == 0.0:
            return call()
        if self.motion_state.tokens is None:
            raise RuntimeError("the motion adapter is active but no motion tokens are set: call "
                               "MotionInjection.set_motion(tokens) first, or set strength to 0")
        fired = []

        def add_branch(module, args):
            fired.append(True)
            return (args[0] + strength * self.branch(attn, args[0]),) + tuple(args[1:])

        handle = attn.to_out[0].register_forward_pre_hook(add_branch)
        try:
            out = call()
        finally:
            handle.remove()
        if len(fired) != 1:
            raise RuntimeError(f"{type(self.base_processor).__name__} called to_out[0] {len(fired)} times "
                               "(expected once); this diffusers version is not supported by the motion adapter")
        return out


class CogVideoXMotionAttnProcessor(_MotionBranch):
    """Wraps CogVideoX's stock joint-attention processor (same call signature, so diffusers passes
    the rotary embedding through)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None):
        return self._run(attn, lambda: self.base_processor(
            attn, hidden_states, encoder_hidden_states, attention_mask=attention_mask,
            image_rotary_emb=image_rotary_emb))


class SpatialMotionAttnProcessor(_MotionBranch):
    """Wraps the stock processor of an SVD spatial cross-attention."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        return self._run(attn, lambda: self.base_processor(
            attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs))


class MotionInjection:
    """A motion adapter installed on one model; `remove()` (or leaving a `with` block) puts the stock
    processors back. Motion tokens and strength can change between calls without re-injecting."""

    def __init__(self, model: nn.Module, kind: str, layer_pattern, processor_cls, motion_dim: int,
                 strength: float):
        self.model = model
        self.kind = kind
        self.motion_dim = motion_dim
        self.state = MotionState(strength)
        self.processors: dict[str, _MotionBranch] = {}
        self._originals: dict[str, object] = {}
        targets = [(name, m) for name, m in model.named_modules() if layer_pattern.match(name)]
        if not targets:
            raise ValueError(f"{type(model).__name__} has no {kind} attention layers to adapt")
        for name, attn in targets:
            if isinstance(attn.processor, _MotionBranch):
                raise ValueError(f"{type(model).__name__}.{name} already carries a motion adapter; "
                                 "remove() the first injection before injecting again")
        for name, attn in targets:
            w = attn.to_out[0].weight
            proc = processor_cls(attn.to_out[0].in_features, motion_dim, self.state, attn.processor,
                                 device=w.device, dtype=w.dtype)
            self._originals[name] = attn.processor
            self.processors[name] = proc
            attn.set_processor(proc)
        self._hook = model.register_forward_pre_hook(self._check_batch, with_kwargs=True)
        self._removed = False

    def _check_batch(self, module, args, kwargs):
        """Motion rows must be one per video (or one for all): a divisor of SVD's frame-expanded
        batch is not enough, as 3 rows for 2 videos of 3 frames would pair frames wrongly."""
        tokens = self.state.tokens
        if tokens is None or self.state.strength == 0.0:
            return None
        x = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
        if isinstance(x, torch.Tensor) and tokens.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"motion tokens have batch {tokens.shape[0]} but the model input has batch "
                             f"{x.shape[0]}: give one row per input row (for guidance [uncond, cond]) or one row")
        return None

    @property
    def strength(self) -> float:
        return self.state.strength

    @strength.setter
    def strength(self, value: float) -> None:
        self.state.strength = float(value)

    def set_motion(self, tokens: torch.Tensor | None, strength: float | None = None) -> None:
        """tokens: (B, L, motion_dim); B = 1, the model's batch, or a divisor of it (rows are
        repeated consecutively). For guidance give [uncond, cond] in the batch order of the model."""
        if tokens is not None and (tokens.ndim != 3 or tokens.shape[-1] != self.motion_dim):
            raise ValueError(f"motion tokens must be (batch, tokens, {self.motion_dim}), got {tuple(tokens.shape)}")
        self.state.tokens = tokens
        if strength is not None:
            self.strength = strength

    def layer_sizes(self) -> dict[str, int]:
        return {name: p.to_q_ip[0].in_features for name, p in self.processors.items()}

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Keys relative to the host model, as in Motion-Adapter.ckpt without its `transformer.`/`unet.` prefix."""
        out = {}
        for name, proc in self.processors.items():
            for key, value in proc.state_dict().items():
                out[f"{name}.processor.{key}"] = value
        return out

    def load_adapter_state_dict(self, state: dict[str, torch.Tensor], *, what: str = "motion adapter") -> None:
        """Load exactly this injection's weights: every key present, nothing else, shapes equal."""
        expected = {k: tuple(v.shape) for k, v in self.adapter_state_dict().items()}
        missing = set(expected) - set(state)
        unexpected = set(state) - set(expected)
        mismatched = [(k, expected[k], tuple(state[k].shape)) for k in set(expected) & set(state)
                      if tuple(state[k].shape) != expected[k]]
        if missing or unexpected or mismatched:
            raise CheckpointKeyError(what, missing, unexpected, mismatched)
        with torch.no_grad():
            for name, proc in self.processors.items():
                prefix = f"{name}.processor."
                proc.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})

    def remove(self) -> None:
        if self._removed:
            return
        self._hook.remove()
        modules = dict(self.model.named_modules())
        for name, original in self._originals.items():
            modules[name].set_processor(original)
        self._removed = True

    def __enter__(self) -> "MotionInjection":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def inject_cogvideox(transformer: nn.Module, *, motion_dim: int = 1024, strength: float = 1.0) -> MotionInjection:
    """Adapt every `transformer_blocks.N.attn1` of a diffusers CogVideoXTransformer3DModel."""
    return MotionInjection(transformer, "CogVideoX", _COG_LAYER, CogVideoXMotionAttnProcessor, motion_dim, strength)


def inject_svd(unet: nn.Module, *, motion_dim: int = 1024, strength: float = 1.0) -> MotionInjection:
    """Adapt the spatial cross-attentions of a diffusers UNetSpatioTemporalConditionModel."""
    return MotionInjection(unet, "SVD", _SVD_LAYER, SpatialMotionAttnProcessor, motion_dim, strength)
