"""The SVD Motion-Adapter on ComfyUI's own SVD UNet (its VideoUNet), as attn2 replace patches.

ComfyUI keys an attention patch by the UNet block it sits in: ("input", n, k), ("middle", 0, k) or
("output", n, k), n the index in input_blocks / output_blocks and k the transformer block inside that
block's SpatialVideoTransformer. The released adapter names its layers after diffusers'
UNetSpatioTemporalConditionModel (`down_blocks.b.attentions.j.transformer_blocks.k.attn2`, ...).
This module maps one onto the other and holds the patch callable. No ComfyUI import: the node passes
ComfyUI's attention function in, and the UNet's layers are read by duck typing.

Patch contract (comfy.ldm.modules.attention.BasicTransformerBlock): the patch gets q, k, v already
projected, (rows, tokens, heads * dim_head), and extra_options with n_heads and cond_or_uncond; what
it returns goes into to_out. So it returns attention(q, k, v) + strength * branch, which is where
the released processors add the branch (at the input of to_out[0]).
"""
from __future__ import annotations

import re
from typing import Callable

import torch
import torch.nn.functional as F

from .errors import CheckpointError

Key = tuple  # ("input" | "middle" | "output", block index, transformer index)

_DIFFUSERS = re.compile(r"^(down_blocks|up_blocks|mid_block)\.(?:(\d+)\.)?attentions\.(\d+)\."
                        r"transformer_blocks\.(\d+)\.attn2$")
COND, UNCOND = 0, 1            # ComfyUI's cond_or_uncond values


# ------------------------------------------------------------------------------ layer maps
def _per_level(value, levels: int, what: str) -> list[int]:
    if isinstance(value, int):
        return [value] * levels
    value = list(value)
    if len(value) != levels:
        raise ValueError(f"unet_config.{what}: expected one entry per level ({levels}), got {value}")
    return value


def unet_layers(unet_config: dict) -> dict[Key, int]:
    """ComfyUI patch key -> width (heads * dim_head) of every spatial cross-attention of a UNet made
    from this config (the rules of comfy's UNetModel.__init__: one input block per res block plus a
    downsampler per level but the last, res blocks + 1 output blocks per level, deepest first)."""
    try:
        mc = int(unet_config["model_channels"])
        mult = list(unet_config["channel_mult"])
        depth_in = list(unet_config["transformer_depth"])
        depth_out = list(unet_config.get("transformer_depth_output", depth_in))
        depth_mid = unet_config.get("transformer_depth_middle", depth_in[-1] if depth_in else 0)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"unet_config: not a UNet config ({type(exc).__name__}: {exc})") from None
    levels = len(mult)
    res = _per_level(unet_config.get("num_res_blocks", 2), levels, "num_res_blocks")
    if len(depth_in) != sum(res) or len(depth_out) != sum(r + 1 for r in res):
        raise ValueError(f"unet_config: transformer_depth {depth_in} / transformer_depth_output {depth_out} do not "
                         f"fit num_res_blocks {res}")
    attn_blocks = unet_config.get("num_attention_blocks")
    out: dict[Key, int] = {}
    n = 1                                           # input_blocks[0] is the input convolution
    for level, m in enumerate(mult):
        for nr in range(res[level]):
            d = depth_in.pop(0)
            if d > 0 and (attn_blocks is None or nr < attn_blocks[level]):
                out.update({("input", n, k): mc * m for k in range(d)})
            n += 1
        if level != levels - 1:
            n += 1                                  # the downsampler
    out.update({("middle", 0, k): mc * mult[-1] for k in range(max(int(depth_mid), 0))})
    n = 0
    for level in reversed(range(levels)):
        for i in range(res[level] + 1):
            d = depth_out.pop()
            if d > 0 and (attn_blocks is None or i < attn_blocks[level]):
                out.update({("output", n, k): mc * mult[level] for k in range(d)})
            n += 1
    return out


def module_layers(diffusion_model) -> dict[Key, tuple[int, int]]:
    """ComfyUI patch key -> (width, heads) of every spatial cross-attention of a built video UNet,
    read from its modules: blocks holding a transformer with a temporal `time_stack`."""
    out: dict[Key, tuple[int, int]] = {}
    groups = (("input", list(getattr(diffusion_model, "input_blocks", []) or [])),
              ("middle", [getattr(diffusion_model, "middle_block", None)]),
              ("output", list(getattr(diffusion_model, "output_blocks", []) or [])))
    for name, blocks in groups:
        for n, block in enumerate(blocks):
            if block is None:
                continue
            for layer in block.children():
                if not hasattr(layer, "time_stack") or not hasattr(layer, "transformer_blocks"):
                    continue
                for k, tb in enumerate(layer.transformer_blocks):
                    attn = getattr(tb, "attn2", None)
                    if attn is not None:
                        out[(name, n, k)] = (int(attn.to_out[0].in_features), int(attn.heads))
    return out


def comfy_key(name: str, layers_per_block: int) -> Key:
    """The ComfyUI patch key of a diffusers SVD layer name (`...transformer_blocks.k.attn2`)."""
    m = _DIFFUSERS.match(name)
    if m is None:
        raise ValueError(f"{name!r} is not a spatial cross-attention of a diffusers SVD UNet "
                         "(down_blocks.b.attentions.j.transformer_blocks.k.attn2, up_blocks..., mid_block...)")
    kind, b, j, k = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
    if kind == "mid_block":
        if b is not None or j != 0:
            raise ValueError(f"{name!r}: the mid block has one attention, attentions.0")
        return ("middle", 0, k)
    if b is None:
        raise ValueError(f"{name!r}: {kind} needs a block number")
    b = int(b)
    if j > layers_per_block - (kind == "down_blocks"):
        raise ValueError(f"{name!r}: attention {j} does not exist with layers_per_block {layers_per_block}")
    # each down block: layers_per_block res blocks then its downsampler; each up block: one more res block
    if kind == "down_blocks":
        return ("input", 1 + b * (layers_per_block + 1) + j, k)
    return ("output", b * (layers_per_block + 1) + j, k)


def diffusers_name(key: Key, layers_per_block: int) -> str:
    """Inverse of comfy_key."""
    kind, n, k = key
    step = layers_per_block + 1
    if kind == "middle":
        return f"mid_block.attentions.0.transformer_blocks.{k}.attn2"
    if kind == "input":
        b, j = divmod(n - 1, step)
        if n < 1 or j == layers_per_block:
            raise ValueError(f"{key}: input block {n} holds no attention (input convolution or downsampler)")
        return f"down_blocks.{b}.attentions.{j}.transformer_blocks.{k}.attn2"
    if kind == "output":
        b, j = divmod(n, step)
        return f"up_blocks.{b}.attentions.{j}.transformer_blocks.{k}.attn2"
    raise ValueError(f"{key}: unknown block kind {kind!r}")


def adapter_layers(state: dict) -> dict[str, tuple[int, int]]:
    """Diffusers layer name -> (hidden size, motion dim) of an SVD Motion-Adapter state dict whose keys
    are relative to the UNet (`<layer>.processor.to_q_ip.0.weight`, ...)."""
    out = {}
    for key, w in state.items():
        if key.endswith(".processor.to_k_ip.0.weight"):
            out[key[:-len(".processor.to_k_ip.0.weight")]] = (int(w.shape[0]), int(w.shape[1]))
    return out


def _sizes(layers) -> str:
    return str(sorted({w for w in layers}))


def match_adapter(adapter: dict[str, tuple[int, int]], layers_per_block: int, model: dict[Key, int], *,
                  adapter_what: str = "adapter", model_what: str = "model") -> dict[str, Key]:
    """Diffusers layer name -> ComfyUI patch key, after checking that the adapter adapts exactly the
    model's spatial cross-attentions with their widths. `adapter`: from adapter_layers; `model`:
    key -> width (unet_layers, or module_layers' widths). Raises CheckpointError naming both."""
    if not adapter:
        raise CheckpointError(adapter_what, f"holds no SVD motion-adapter layers")
    mapping: dict[str, Key] = {}
    wrong_names = []
    for name in adapter:
        try:
            mapping[name] = comfy_key(name, layers_per_block)
        except ValueError:
            wrong_names.append(name)
    widths = {key: adapter[name][0] for name, key in mapping.items()}
    missing = sorted(set(model) - set(widths))
    extra = sorted(set(widths) - set(model))
    differ = sorted(k for k in set(model) & set(widths) if model[k] != widths[k])
    if wrong_names or missing or extra or differ:
        details = []
        if wrong_names:
            details.append(f"layer names that are no SVD spatial cross-attention: {wrong_names[:3]}")
        if differ:
            details += [f"{diffusers_name(k, layers_per_block)} (ComfyUI {k}): adapter {widths[k]}, model {model[k]}"
                        for k in differ[:3]]
        if missing:
            details.append(f"model layers the adapter lacks: {missing[:3]}")
        if extra:
            details.append(f"adapter layers the model lacks: {extra[:3]}")
        raise CheckpointError(
            "adapter", f"{adapter_what} does not fit {model_what}: the adapter has hidden size(s) {_sizes(widths.values())} "
            f"over {len(adapter)} layers, the model's spatial cross-attentions have {_sizes(model.values())} over "
            f"{len(model)} layers ({'; '.join(details)}). Use the Motion-Adapter trained for this SVD model")
    return mapping


# ------------------------------------------------------------------------------ the patch
def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Plain multi-head attention on (rows, tokens, heads * dim_head) tensors."""
    b, lq, inner = q.shape
    d = inner // heads

    def split(t):
        return t.reshape(t.shape[0], t.shape[1], heads, d).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(b, lq, inner)


class MotionAttn2Patch:
    """An attn2 replace patch: the layer's attention plus strength x the motion branch.

    Immutable once made (weights, tokens, strength), so ComfyUI's deep copies of model_options on every
    ModelPatcher.clone() share it instead of copying its weights. Per (device, dtype, heads) it keeps
    to_q_ip cast once and the K/V of the motion tokens (cond row 0, uncond row 1) computed once.
    """

    def __init__(self, to_q: torch.Tensor, to_k: torch.Tensor, to_v: torch.Tensor, cond: torch.Tensor,
                 uncond: torch.Tensor, strength: float, *, attention: Callable | None = None,
                 base: Callable | None = None, layer: str = "", downsamples: int | None = None):
        hidden = to_q.shape[0]
        if to_q.shape != (hidden, hidden) or to_k.shape[0] != hidden or to_v.shape != to_k.shape:
            raise ValueError(f"{layer}: to_q_ip {tuple(to_q.shape)}, to_k_ip {tuple(to_k.shape)}, to_v_ip "
                             f"{tuple(to_v.shape)} are not (h, h), (h, m), (h, m)")
        for what, t in (("cond", cond), ("uncond", uncond)):
            if t.ndim != 3 or t.shape[0] != 1 or t.shape[-1] != to_k.shape[1]:
                raise ValueError(f"{layer}: {what} motion tokens must be (1, tokens, {to_k.shape[1]}), "
                                 f"got {tuple(t.shape)}")
        self.layer = layer
        self.hidden = int(hidden)
        self.strength = float(strength)
        self._w = (to_q, to_k, to_v)
        self._tokens = torch.cat([cond, uncond.to(cond.dtype)], dim=0)      # row COND, row UNCOND
        self._attention = attention or sdpa_attention
        self._base = base                         # a replace patch that was at this key before ours
        self.downsamples = downsamples            # the block's depth in the UNet, for spatial_call()
        self._cache: dict = {}

    def __deepcopy__(self, memo):
        return self

    def _prepared(self, device, dtype, heads: int):
        key = (str(device), dtype, heads)
        hit = self._cache.get(key)
        if hit is None:
            wq, wk, wv = (w.to(device=device, dtype=dtype) for w in self._w)
            tokens = self._tokens.to(device=device, dtype=dtype)
            d = self.hidden // heads

            def split(x):                        # (2, L, hidden) -> (2, heads, L, d)
                return x.reshape(x.shape[0], x.shape[1], heads, d).transpose(1, 2)

            hit = (wq, split(F.linear(tokens, wk)), split(F.linear(tokens, wv)))
            self._cache[key] = hit
        return hit

    def branch(self, h: torch.Tensor, heads: int, cond_or_uncond=None) -> torch.Tensor:
        """SDPA(to_q_ip(h), to_k_ip(motion), to_v_ip(motion)) with each chunk's motion tokens. Rows of
        one chunk (that chunk's frames) attend to the same tokens, so they are folded into the query
        length: one attention per chunk, exact because query rows are independent."""
        chunks = list(cond_or_uncond) if cond_or_uncond else [COND]
        rows, length, inner = h.shape
        if inner != self.hidden:
            raise ValueError(f"{self.layer}: attention width {inner}, but the adapter layer has {self.hidden}")
        if rows % len(chunks):
            raise ValueError(f"{self.layer}: {rows} rows do not split into {len(chunks)} cond/uncond chunks")
        if any(c not in (COND, UNCOND) for c in chunks):
            raise ValueError(f"{self.layer}: cond_or_uncond {chunks} holds values other than 0 (cond) / 1 (uncond)")
        wq, k_all, v_all = self._prepared(h.device, h.dtype, heads)
        n = len(chunks)
        d = inner // heads
        if chunks == [COND] * n:
            k, v = k_all[:1].expand(n, -1, -1, -1), v_all[:1].expand(n, -1, -1, -1)
        else:
            idx = torch.tensor(chunks, device=h.device)
            k, v = k_all.index_select(0, idx), v_all.index_select(0, idx)
        q = F.linear(h, wq).reshape(n, (rows // n) * length, heads, d).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(1, 2).reshape(rows, length, inner)

    def spatial_call(self, q: torch.Tensor, extra_options: dict) -> bool:
        """False when the call comes from the temporal block beside the spatial one. The March-2024
        ComfyUI gives its time-mix blocks no transformer_options, so they never reach a patch; forks and
        later versions that do would key them like the spatial block. Those calls are told apart by
        a 'temporal' flag where set, else by shape: spatial rows are the UNet's input rows (video frames)
        with the block's h x w tokens; temporal rows are pixels with frames as tokens."""
        if extra_options.get("temporal"):
            return False
        shape = extra_options.get("original_shape")
        if self.downsamples is None or not shape or len(shape) != 4:
            return True
        h, w = int(shape[2]), int(shape[3])
        for _ in range(self.downsamples):         # stride-2, padding-1 convolutions: ceil(x / 2)
            h, w = (h + 1) // 2, (w + 1) // 2
        return q.shape[0] == int(shape[0]) and q.shape[1] == h * w

    def __call__(self, q, k, v, extra_options):
        heads = int(extra_options["n_heads"])
        if self._base is not None:
            h = self._base(q, k, v, extra_options)
        else:
            h = self._attention(q, k, v, heads)
        if self.strength == 0.0 or not self.spatial_call(q, extra_options):
            return h
        return h + self.strength * self.branch(h, heads, extra_options.get("cond_or_uncond"))


def make_patches(state: dict, layers_per_block: int, model_layers: dict[Key, int], cond: torch.Tensor,
                 uncond: torch.Tensor, strength: float, *, attention: Callable | None = None,
                 existing: dict | None = None, adapter_what: str = "adapter", model_what: str = "model",
                 levels: int | None = None) -> dict[Key, MotionAttn2Patch]:
    """ComfyUI key -> patch for every adapted layer, after match_adapter's checks. `state`: adapter
    weights relative to the UNet; `existing`: attn2 replace patches already on the model, which
    ours then wrap instead of replacing; `levels`: the UNet's resolution levels (len(channel_mult)),
    which lets the patches tell spatial calls from temporal ones by shape."""
    layers = adapter_layers(state)
    mapping = match_adapter(layers, layers_per_block, model_layers, adapter_what=adapter_what,
                            model_what=model_what)
    motion_dims = {m for _, m in layers.values()}
    if motion_dims != {int(cond.shape[-1])}:
        raise CheckpointError("cond", f"motion tokens are {int(cond.shape[-1])}-d, but {adapter_what} reads "
                                      f"{sorted(motion_dims)}-d motion tokens")
    existing = existing or {}
    patches = {}
    for name, key in mapping.items():
        p = f"{name}.processor."
        patches[key] = MotionAttn2Patch(state[p + "to_q_ip.0.weight"], state[p + "to_k_ip.0.weight"],
                                        state[p + "to_v_ip.0.weight"], cond, uncond, strength,
                                        attention=attention, base=existing.get(key), layer=name,
                                        downsamples=_downsamples(key, layers_per_block, levels))
    return patches


def _downsamples(key: Key, layers_per_block: int, levels: int | None) -> int | None:
    if levels is None:
        return None
    kind, n, _ = key
    if kind == "input":
        return (n - 1) // (layers_per_block + 1)
    if kind == "output":
        return levels - 1 - n // (layers_per_block + 1)
    return levels - 1
