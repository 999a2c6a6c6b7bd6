"""Training a small MoMask-layout model from scratch: the pack's own trainer, written for this pack after
reading MoMask's training code (EricGuo5513/momask-codes, MIT), not copied from it.

    from motionrag_suite.models.momask.train import TrainSettings, TrainingSet, train_momask
    trained = train_momask(config, TrainingSet(features, caption_entry, text_features), mean, std, settings)
    trained.states   {'rvq', 'masked', 'residual', 'length': state dict}   (checkpoint.py's keys)
    trained.losses   {'rvq': [...], 'masked': [...], ...}                   one value per step

`export.py` writes the result as MoMask's download is laid out, so `load_momask` reads it unchanged.

The stages, in MoMask's order:
1. RVQ-VAE: random crops of normalised features; loss = smooth-L1 reconstruction + 0.5 * smooth-L1 on
   the joint positions (RIC) + commitment * the layers' commitment losses. The codebooks are not
   trained by gradient: each layer's code is the exponential moving average of the residuals assigned
   to it, initialised from the first batch, and codes no residual reached lately are reset to random
   residuals of the batch (during the first RESET_SHARE of the steps only, so the codebooks settle
   before the end). Quantizer dropout: with probability `quantize_dropout` a batch uses only the
   first 1..Q layers.
2. Masked transformer on the base-layer tokens of every clip (encoded at the 4 frame offsets): a
   random crop, a caption of its clip, a share cos(pi u / 2) of the slots masked (u uniform; at least
   one), of which 10% get a random code and 88% of the others the mask id (BERT's corruption);
   cross-entropy with label smoothing on the masked slots; the condition dropped (zeros, the
   unconditional input of guidance) with probability `cond_drop_masked`.
3. Residual transformer: one layer q in 1..Q-1 per batch (MoMask draws one per sample; one per
   batch keeps the released forward, which takes a single q), the summed embeddings of layers 0..q-1
   in, layer q's codes out, cross-entropy with label smoothing on the real slots; condition dropped
   with probability `cond_drop_residual`.
4. Length estimator (optional, `length_steps` > 0): caption feature -> its clip's token count.

Everything random comes from `settings.seed` (numpy's PCG64 for data, torch's generator for weights
and dropout), so on one machine with one thread the same seed gives the same weights bit for bit.
Text features are given as they are fed at generation: (C, clip_dim) rows; a narrower encoder's
features are zero-padded to clip_dim by `pad_text_features` (what the export records in opt.txt).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from ...common.errors import InputError
from ..motion import humanml3d as h3d
from .config import LENGTH_CLASSES, MAX_TOKENS, MoMaskConfig
from .length_estimator import LengthEstimator
from .rvq import RVQVAE
from .transformers import MaskedTransformer, ResidualTransformer

MIN_TOKENS = 2             # a clip needs at least 2 tokens (8 frames) to be cropped
RESET_SHARE = 0.8          # dead codes are reset during this share of the tokenizer steps
EMA_EPS = 1e-5


@dataclass(frozen=True)
class TrainSettings:
    seed: int = 0
    rvq_steps: int = 1500
    masked_steps: int = 1500
    residual_steps: int = 1000
    length_steps: int = 300
    batch_size: int = 32
    rvq_lr: float = 1e-3
    transformer_lr: float = 5e-4
    warmup: int = 100
    window_tokens: tuple = (4, 12)     # tokenizer crops: 4..12 tokens (16..48 frames)
    commitment: float = 0.02
    position_weight: float = 0.5
    ema_decay: float = 0.99
    quantize_dropout: float = 0.2
    cond_drop_masked: float = 0.1
    cond_drop_residual: float = 0.2
    label_smoothing: float = 0.1

    def check(self) -> "TrainSettings":
        for name in ("rvq_steps", "masked_steps", "residual_steps", "length_steps", "warmup"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000_000:
                raise InputError(name, f"{value!r}: expected a whole number of steps >= 0")
        batch = self.batch_size
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 4096:
            raise InputError("batch_size", f"{self.batch_size!r}: expected a whole number in 1..4096")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 63:
            raise InputError("seed", f"{self.seed!r}: expected a whole number >= 0")
        for name in ("rvq_lr", "transformer_lr"):
            if not 0 < getattr(self, name) < 1:
                raise InputError(name, f"{getattr(self, name)!r}: expected a learning rate in (0, 1)")
        for name in ("quantize_dropout", "cond_drop_masked", "cond_drop_residual", "label_smoothing"):
            if not 0 <= getattr(self, name) < 1:
                raise InputError(name, f"{getattr(self, name)!r}: expected a probability in [0, 1)")
        if not 0 < self.ema_decay < 1:
            raise InputError("ema_decay", f"{self.ema_decay!r}: expected a number in (0, 1)")
        lo, hi = self.window_tokens
        if not 1 <= lo <= hi <= MAX_TOKENS:
            raise InputError("window_tokens", f"{self.window_tokens!r}: expected 1 <= low <= high <= {MAX_TOKENS}")
        return self


@dataclass
class TrainingSet:
    features: list            # per clip (T_e, dim_pose) de-normalised features at the model's frame rate
    caption_entry: np.ndarray  # (C,) clip index of each caption
    text_features: np.ndarray  # (C, clip_dim) float32: what generation feeds as the text feature


@dataclass
class Trained:
    states: dict                                  # role -> state dict (float32 CPU tensors)
    losses: dict = field(default_factory=dict)    # role -> per-step losses


def pad_text_features(features: np.ndarray, clip_dim: int) -> np.ndarray:
    """(C, d <= clip_dim) -> (C, clip_dim) float32, zeros after the first d columns: an encoder narrower
    than CLIP's 512 feeds the released layout unchanged (the extra columns of cond_emb see only zeros)."""
    arr = np.asarray(features, dtype=np.float32)
    if arr.ndim != 2 or not 1 <= arr.shape[1] <= clip_dim or not np.isfinite(arr).all():
        raise InputError("text_features", f"expected finite (captions, 1..{clip_dim}) text features, got shape "
                                          f"{arr.shape}")
    out = np.zeros((arr.shape[0], clip_dim), dtype=np.float32)
    out[:, : arr.shape[1]] = arr
    return out


def _check_data(config: MoMaskConfig, data: TrainingSet, mean: np.ndarray, std: np.ndarray) -> list[np.ndarray]:
    dim, fpt = config.rvq.dim_pose, config.rvq.frames_per_token
    if config.masked.num_tokens != config.rvq.nb_code or config.residual.num_tokens != config.rvq.nb_code:
        raise InputError("config", "the transformers' num_tokens must equal the tokenizer's nb_code")
    if config.residual.num_quantizers != config.rvq.num_quantizers or config.rvq.num_quantizers < 3:
        raise InputError("config", f"num_quantizers {config.rvq.num_quantizers}: expected at least 3 (the released "
                                   f"residual layout shares Q - 2 matrices), the same in tokenizer and residual")
    for c in (config.masked, config.residual):
        if c.latent_dim % c.n_heads:
            raise InputError("config", f"latent_dim {c.latent_dim} is not a multiple of n_heads {c.n_heads}")
    if np.shape(mean) != (dim,) or np.shape(std) != (dim,) or not (np.asarray(std) > 0).all():
        raise InputError("mean", f"expected mean and positive std of shape ({dim},)")
    feats = []
    for i, f in enumerate(data.features):
        arr = np.asarray(f, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != dim or not np.isfinite(arr).all():
            raise InputError("features", f"clip {i}: expected finite (frames, {dim}) features, got {arr.shape}")
        feats.append(((arr - mean) / std).astype(np.float32))
    usable = [i for i, f in enumerate(feats) if len(f) >= fpt * MIN_TOKENS]
    if len(usable) < 2:
        raise InputError("features", f"{len(usable)} clips have at least {fpt * MIN_TOKENS} frames; "
                                     f"training needs at least 2")
    ce = np.asarray(data.caption_entry)
    tf = np.asarray(data.text_features)
    if ce.ndim != 1 or tf.shape != (len(ce), config.masked.clip_dim) or not len(ce):
        raise InputError("text_features", f"expected (captions, {config.masked.clip_dim}) features for the "
                                          f"{len(ce)} captions, got {tf.shape}")
    if ce.min() < 0 or ce.max() >= len(feats):
        raise InputError("caption_entry", f"clip indices must be in 0..{len(feats) - 1}")
    return feats


def _lr(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then a cosine decay to a tenth of the rate."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _init_transformer(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Small normal weights (std 0.02), zero biases, unit LayerNorms (the residual's code embeddings:
    below); the stored positional encoding keeps its sinusoid."""
    for name, p in module.named_parameters():
        with torch.no_grad():
            if "norm" in name.lower():                  # LayerNorm, the encoder layers' norm1 / norm2
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias") or name.endswith("in_proj_bias"):
                p.zero_()
            elif name.endswith(("_weight_", "shared_weight")):
                # the residual transformer's code embeddings double as its classifiers: at 0.02 its
                # logits start near 0 and learn slowly; 1 / sqrt(code_dim) gives them unit scale
                p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(p.shape[-1]))
            else:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.02)


# ----------------------------------------------------------------------------------------- RVQ-VAE

class _EMACodebooks:
    """The exponential-moving-average statistics of every quantizer layer (kept outside the module:
    the released state dict holds the codebooks only)."""

    def __init__(self, rvq: RVQVAE, decay: float):
        self.layers = [layer.codebook for layer in rvq.quantizer.layers]
        self.decay = decay
        self.count = [torch.zeros(c.shape[0]) for c in self.layers]
        self.sums = [torch.zeros_like(c) for c in self.layers]
        self.ready = False

    def quantise(self, z: torch.Tensor, active: int, update: bool, reset: bool, generator: torch.Generator):
        """z (M, D) -> (sum of the active layers' codes (M, D), commitment loss); updates the codebooks."""
        residual = z
        total = torch.zeros_like(z)
        commit = z.new_zeros(())
        for q in range(active):
            book = self.layers[q]
            r = residual.detach()
            if update and not self.ready:
                pick = torch.randint(0, r.shape[0], (book.shape[0],), generator=generator)
                book.copy_(r[pick])
                self.sums[q].copy_(r[pick])
                self.count[q].fill_(1.0)
            dist = r.pow(2).sum(-1, keepdim=True) - 2 * r @ book.t() + book.pow(2).sum(-1).unsqueeze(0)
            idx = dist.argmin(-1)
            if update:
                onehot = F.one_hot(idx, book.shape[0]).float()
                self.count[q].mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
                self.sums[q].mul_(self.decay).add_(onehot.t() @ r, alpha=1 - self.decay)
                n = self.count[q].sum()
                smoothed = (self.count[q] + EMA_EPS) / (n + book.shape[0] * EMA_EPS) * n
                book.copy_(self.sums[q] / smoothed.unsqueeze(1))
                if reset:
                    dead = self.count[q] < 1.0
                    if dead.any():
                        pick = torch.randint(0, r.shape[0], (int(dead.sum()),), generator=generator)
                        book[dead] = r[pick]
                        self.sums[q][dead] = r[pick]
                        self.count[q][dead] = 1.0
            code = book[idx]
            commit = commit + F.mse_loss(residual, code.detach())
            total = total + code
            residual = residual - code.detach()
        self.ready = self.ready or update
        return total, commit / active


def _rvq_batch(feats: list, rng: np.random.Generator, batch: int, window_tokens: tuple, fpt: int) -> np.ndarray:
    longest = max(len(f) for f in feats) // fpt
    tokens = int(rng.integers(window_tokens[0], min(window_tokens[1], longest) + 1))
    frames = tokens * fpt
    pool = [i for i, f in enumerate(feats) if len(f) >= frames]
    out = np.empty((batch, frames, feats[0].shape[1]), dtype=np.float32)
    for b in range(batch):
        f = feats[pool[int(rng.integers(len(pool)))]]
        start = int(rng.integers(len(f) - frames + 1))
        out[b] = f[start:start + frames]
    return out


def train_rvq(rvq: RVQVAE, feats: list, settings: TrainSettings, rng: np.random.Generator,
              generator: torch.Generator, log: Callable[[str], None]) -> list[float]:
    c = rvq.config
    ema = _EMACodebooks(rvq, settings.ema_decay)
    params = list(rvq.encoder.parameters()) + list(rvq.decoder.parameters())
    opt = torch.optim.AdamW(params, lr=settings.rvq_lr, betas=(0.9, 0.99), weight_decay=0.0)
    losses = []
    rvq.train()
    window = (min(settings.window_tokens[0], min(len(f) for f in feats) // c.frames_per_token or 1),
              settings.window_tokens[1])
    for step in range(settings.rvq_steps):
        for g in opt.param_groups:
            g["lr"] = _lr(step, settings.rvq_steps, settings.rvq_lr, settings.warmup)
        x = torch.from_numpy(_rvq_batch(feats, rng, settings.batch_size, window, c.frames_per_token))
        z = rvq.encoder(x.transpose(1, 2))                           # (B, D, N)
        b, d, n = z.shape
        flat = z.transpose(1, 2).reshape(b * n, d)
        active = c.num_quantizers
        if rng.random() < settings.quantize_dropout:
            active = int(rng.integers(1, c.num_quantizers + 1))
        codes, commit = ema.quantise(flat, active, update=True,
                                     reset=step < RESET_SHARE * settings.rvq_steps, generator=generator)
        zq = flat + (codes - flat).detach()                          # straight-through
        out = rvq.decoder(zq.reshape(b, n, d).transpose(1, 2))       # (B, T, dim_pose)
        rec = F.smooth_l1_loss(out, x)
        pos = F.smooth_l1_loss(out[..., h3d.RIC], x[..., h3d.RIC])
        loss = rec + settings.position_weight * pos + settings.commitment * commit
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        _report(log, "rvq", step, settings.rvq_steps, losses)
    rvq.eval()
    return losses


def _report(log, stage: str, step: int, total: int, losses: list) -> None:
    if step + 1 == total or (step + 1) % max(1, total // 5) == 0:
        recent = losses[-max(1, total // 10):]
        log(f"  {stage} step {step + 1}/{total}: loss {sum(recent) / len(recent):.4f}")


# ------------------------------------------------------------------------------------- transformers

@dataclass
class _Tokens:
    ids: list           # per sequence (N_s, Q) int64
    entry: list         # per sequence: clip index


def tokenise(rvq: RVQVAE, feats: list) -> _Tokens:
    """Every clip encoded at each frame offset 0..fpt-1 (so crops see every alignment of the tokens)."""
    fpt = rvq.config.frames_per_token
    ids, entry = [], []
    for i, f in enumerate(feats):
        for offset in range(fpt):
            n = (len(f) - offset) // fpt
            if n < MIN_TOKENS:
                continue
            x = torch.from_numpy(f[offset: offset + n * fpt])[None]
            ids.append(rvq.encode(x)[0].long())
            entry.append(i)
    return _Tokens(ids, entry)


def _token_batch(tokens: _Tokens, captions_of: dict, text: torch.Tensor, rng: np.random.Generator, batch: int):
    """Random crops (at least half of each sequence, at most MAX_TOKENS) with a caption of their clip:
    (ids (B, N, Q) padded with -1, caption indices (B,), text features (B, clip_dim))."""
    picks, lens, conds = [], [], []
    for _ in range(batch):
        s = int(rng.integers(len(tokens.ids)))
        seq = tokens.ids[s]
        n = min(len(seq), MAX_TOKENS)
        length = int(rng.integers(max(1, (n + 1) // 2), n + 1))
        start = int(rng.integers(len(seq) - length + 1))
        picks.append(seq[start:start + length])
        lens.append(length)
        caps = captions_of[tokens.entry[s]]
        conds.append(caps[int(rng.integers(len(caps)))])
    width = max(lens)
    ids = torch.full((batch, width, picks[0].shape[1]), -1, dtype=torch.long)
    for b, p in enumerate(picks):
        ids[b, : len(p)] = p
    return ids, conds, text[torch.tensor(conds)]


def _drop_condition(cond: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    keep = torch.rand(cond.shape[0], generator=generator) >= p
    return cond * keep.unsqueeze(1).float()


def _masked_inputs(base: torch.Tensor, pad: torch.Tensor, net: MaskedTransformer, generator: torch.Generator):
    """BERT-style corruption of the base layer: (inputs, which slots the loss reads)."""
    b, n = base.shape
    real = ~pad
    lens = real.sum(1).float()
    u = torch.rand(b, generator=generator)
    count = torch.clamp(torch.round(torch.cos(u * math.pi / 2) * lens), min=1)
    scores = torch.rand(b, n, generator=generator).masked_fill(pad, 2.0)      # padding is never picked
    ranks = scores.argsort(1).argsort(1)
    masked = (ranks < count.unsqueeze(1)) & real
    roll = torch.rand(b, n, generator=generator)
    random_code = masked & (roll < 0.1)
    to_mask_id = masked & ~random_code & (roll < 0.1 + 0.9 * 0.88)
    inputs = torch.where(pad, net.pad_id, base)
    inputs = torch.where(random_code, torch.randint(0, net.config.num_tokens, (b, n), generator=generator), inputs)
    inputs = torch.where(to_mask_id, net.mask_id, inputs)
    return inputs, masked


def _fit_transformer(stage: str, net, steps: int, settings: TrainSettings, batch_loss, log) -> list[float]:
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=settings.transformer_lr,
                            betas=(0.9, 0.99), weight_decay=1e-5)
    losses = []
    net.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = _lr(step, steps, settings.transformer_lr, settings.warmup)
        loss = batch_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        _report(log, stage, step, steps, losses)
    net.eval()
    return losses


def train_masked(net: MaskedTransformer, tokens: _Tokens, captions_of: dict, text: torch.Tensor,
                 settings: TrainSettings, rng: np.random.Generator, generator: torch.Generator, log) -> list[float]:
    def batch_loss():
        ids, _, cond = _token_batch(tokens, captions_of, text, rng, settings.batch_size)
        pad = ids[..., 0] < 0
        inputs, masked = _masked_inputs(ids[..., 0], pad, net, generator)
        logits = net(inputs, _drop_condition(cond, settings.cond_drop_masked, generator), pad)
        return F.cross_entropy(logits[masked], ids[..., 0][masked], label_smoothing=settings.label_smoothing)

    return _fit_transformer("masked", net, settings.masked_steps, settings, batch_loss, log)


def train_residual(net: ResidualTransformer, tokens: _Tokens, captions_of: dict, text: torch.Tensor,
                   settings: TrainSettings, rng: np.random.Generator, generator: torch.Generator, log) -> list[float]:
    layers = net.config.num_quantizers

    def batch_loss():
        ids, _, cond = _token_batch(tokens, captions_of, text, rng, settings.batch_size)
        pad = ids[..., 0] < 0
        q = int(rng.integers(1, layers))
        ids = torch.where(ids < 0, net.pad_id, ids)
        history = sum(F.embedding(ids[..., j], net.token_embedding(j)) for j in range(q))
        logits = net(history, q, _drop_condition(cond, settings.cond_drop_residual, generator), pad)
        return F.cross_entropy(logits[~pad], ids[..., q][~pad], label_smoothing=settings.label_smoothing)

    return _fit_transformer("residual", net, settings.residual_steps, settings, batch_loss, log)


def train_length(net: LengthEstimator, token_counts: np.ndarray, data: TrainingSet, text: torch.Tensor,
                 settings: TrainSettings, rng: np.random.Generator, log) -> list[float]:
    """Caption feature -> its clip's whole length in tokens (class index, at most LENGTH_CLASSES - 1)."""
    target = torch.from_numpy(np.minimum(token_counts[np.asarray(data.caption_entry)], LENGTH_CLASSES - 1)).long()
    opt = torch.optim.AdamW(net.parameters(), lr=settings.transformer_lr, weight_decay=1e-5)
    losses = []
    net.train()
    for step in range(settings.length_steps):
        pick = torch.from_numpy(rng.integers(0, len(target), settings.batch_size))
        loss = F.cross_entropy(net(text[pick]), target[pick])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        _report(log, "length", step, settings.length_steps, losses)
    net.eval()
    return losses


# -------------------------------------------------------------------------------------------- entry

def build_modules(config: MoMaskConfig, seed: int) -> dict:
    """Freshly initialised networks (seeded)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rvq = RVQVAE(config.rvq)
    masked, residual = MaskedTransformer(config.masked), ResidualTransformer(config.residual)
    _init_transformer(masked, generator)
    _init_transformer(residual, generator)
    return {"rvq": rvq, "masked": masked, "residual": residual, "length": LengthEstimator(config.masked.clip_dim)}


def train_momask(config: MoMaskConfig, data: TrainingSet, mean: np.ndarray, std: np.ndarray,
                 settings: TrainSettings = TrainSettings(), log: Callable[[str], None] = print) -> Trained:
    """Train the four networks in order; returns their state dicts (the released keys) and losses."""
    settings = settings.check()
    feats = _check_data(config, data, mean, std)
    nets = build_modules(config, settings.seed)
    rng = np.random.default_rng(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed + 1)
    text = torch.from_numpy(np.asarray(data.text_features, dtype=np.float32))
    captions_of: dict = {}
    for c, e in enumerate(np.asarray(data.caption_entry).tolist()):
        captions_of.setdefault(int(e), []).append(c)
    usable = [i for i in range(len(feats)) if i in captions_of]
    feats_used = [feats[i] for i in usable]
    losses = {}
    log(f"tokenizer: {settings.rvq_steps} steps on {len(feats_used)} clips")
    losses["rvq"] = train_rvq(nets["rvq"], feats_used, settings, rng, generator, log)
    tokens = tokenise(nets["rvq"], feats_used)
    tokens.entry = [usable[i] for i in tokens.entry]
    log(f"masked transformer: {settings.masked_steps} steps on {len(tokens.ids)} token sequences")
    losses["masked"] = train_masked(nets["masked"], tokens, captions_of, text, settings, rng, generator, log)
    log(f"residual transformer: {settings.residual_steps} steps")
    losses["residual"] = train_residual(nets["residual"], tokens, captions_of, text, settings, rng, generator, log)
    states = {role: {k: v.detach().clone().contiguous() for k, v in nets[role].state_dict().items()}
              for role in ("rvq", "masked", "residual")}
    if settings.length_steps:
        counts = np.array([len(f) // config.rvq.frames_per_token for f in feats], dtype=np.int64)
        losses["length"] = train_length(nets["length"], counts, data, text, settings, rng, log)
        states["length"] = {k: v.detach().clone().contiguous() for k, v in nets["length"].state_dict().items()}
    return Trained(states=states, losses=losses)


def train_adapter(model, adapter, data: TrainingSet, neighbours: list, *, steps: int = 500, batch_size: int = 32,
                  lr: float = 1e-3, seed: int = 0, log: Callable[[str], None] = print) -> list[float]:
    """Fine-tune a RetrievalAdapter (adapter.py) on a frozen MoMaskModel: the masked-transformer loss of
    train_masked, each crop's references being its caption's `neighbours` (clip indices, the clip
    itself and its mirrored copy excluded by the caller), embedded from their base-layer tokens."""
    from .adapter import attach, detach

    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(name, f"{value!r}: expected a whole number >= 1")
    if len(neighbours) != len(data.caption_entry):
        raise InputError("neighbours", f"{len(neighbours)} lists for {len(data.caption_entry)} captions")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    feats = [model.normalise(np.asarray(f, dtype=np.float64)).astype(np.float32) for f in data.features]
    tokens = tokenise(model.rvq, feats)
    whole = {i: model.rvq.encode(torch.from_numpy(f[: len(f) // model.frames_per_token * model.frames_per_token])[None])
             [0, :, 0] for i, f in enumerate(feats) if len(f) >= model.frames_per_token}
    captions_of: dict = {}
    for c, e in enumerate(np.asarray(data.caption_entry).tolist()):
        captions_of.setdefault(int(e), []).append(c)
    text = torch.from_numpy(np.asarray(data.text_features, dtype=np.float32))
    net = model.masked
    net.requires_grad_(False).eval()
    head = attach(model, adapter)
    adapter.requires_grad_(True).train()
    opt = torch.optim.AdamW(adapter.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=1e-5)
    losses = []
    settings = TrainSettings()
    try:
        for step in range(steps):
            for g in opt.param_groups:
                g["lr"] = _lr(step, steps, lr, min(settings.warmup, steps))
            ids, caps, cond = _token_batch(tokens, captions_of, text, rng, batch_size)
            pad = ids[..., 0] < 0
            inputs, masked = _masked_inputs(ids[..., 0], pad, net, generator)
            head.memory = adapter.memory(net, [[whole[n] for n in neighbours[c] if n in whole] for c in caps])
            logits = net(inputs, _drop_condition(cond, settings.cond_drop_masked, generator), pad)
            loss = F.cross_entropy(logits[masked], ids[..., 0][masked], label_smoothing=settings.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            _report(log, "adapter", step, steps, losses)
    finally:
        head.memory = None
        detach(model)
        adapter.eval()
    return losses


__all__ = ["train_adapter", "TrainSettings", "TrainingSet", "Trained", "train_momask", "pad_text_features",
           "build_modules",
           "tokenise", "train_rvq", "train_masked", "train_residual", "train_length"]
