"""The retrieval-augmented text-to-motion model (MoMask / ReMoMask family) and its generate()."""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ...common.errors import InputError
from ..motion import humanml3d as h3d
from ..motion.motion import Motion, MotionError, validate_features
from .config import ModelConfig
from .decoding import iterative_decode, sample, token_prior
from .refiner import RetrievalRefiner, align_rows
from .tokenizer import MotionTokenizer
from .transformer import MaskedTransformer, ResidualTransformer

DEFAULT_STEPS = 10                 # MoMask / ReMoMask evaluation setting
DEFAULT_GUIDANCE_TEXT = 4.0        # MoMask's cond_scale on HumanML3D
DEFAULT_GUIDANCE_RETRIEVAL = 1.0   # 1 = retrieval as trained, no extra push
DEFAULT_GUIDANCE_RESIDUAL = 5.0    # ReMoMask's res_cond_scale
# The retrieval token prior (decoding.token_prior): its strength per unit of guidance_retrieval, and the
# weight of the k-th retrieved motion (best first) in it, PRIOR_RANK_DECAY ** k (0: the top one alone).
# Chosen on the built-in library's own captions (tests/benchmarks/eval_t2m.py library, 2 seeds), not on
# the held-out actions: median DTW-MPJPE 48 mm with these (the cartwheel's captions 74), 45 with
# strength 3 (but then a walk came out the same for every seed), 48 with decay 0.25, 55 with strength 3
# and equal weights; on the base layer alone 58 (the cartwheel 128); 68 without the prior.
DEFAULT_TOKEN_PRIOR = 2.0
PRIOR_RANK_DECAY = 0.0


def motion_features(item: Any, fps: float, what: str) -> np.ndarray:
    """HumanML3D features (T-1, 263) of a Motion (resampled to `fps`) or a feature array."""
    if isinstance(item, Motion):
        m = item if abs(item.fps - fps) < 1e-6 else item.resampled(fps)
        if m.features is not None:
            return m.features
        if m.num_frames < 2:
            raise MotionError(what, f"needs at least 2 frames, got {m.num_frames}")
        return h3d.joints_to_features(m.joints)
    return validate_features(item, what)


class T2MModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.tokenizer = MotionTokenizer(config.tokenizer)
        self.masked = MaskedTransformer(config)
        self.residual = ResidualTransformer(config)
        # Built last: the modules above get the same initial weights as in models without it.
        self.refiner = RetrievalRefiner(config.refiner) if config.refiner.enabled else None
        self.trained: dict = {}

    @property
    def device(self):
        return self.tokenizer.norm_mean.device

    @property
    def frames_per_token(self) -> int:
        return self.config.frames_per_token

    @property
    def max_frames(self) -> int:
        return self.config.transformer.max_tokens * self.frames_per_token + 1

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- helpers ----------------------------------------------------------------------------
    def retrieval_latents(self, motions: Sequence[Any]) -> list[torch.Tensor]:
        """Tokenizer-encoder latents (T_i / 4, code_dim) of retrieved motions or feature arrays."""
        out = []
        for i, item in enumerate(motions):
            feats = motion_features(item, self.config.fps, f"retrieved_motions[{i}]")
            x = torch.from_numpy(np.array(feats, dtype=np.float32)).to(self.device)[None]
            out.append(self.tokenizer.latents(self.tokenizer.normalize(x))[0])
        return out

    def aligned_references(self, motions: Sequence[Any], rows: int) -> torch.Tensor:
        """(1, K, rows, 263) normalised features of retrieved motions, each resampled to `rows` rows."""
        feats = [align_rows(motion_features(m, self.config.fps, f"retrieved_motions[{i}]"), rows)
                 for i, m in enumerate(motions)]
        x = torch.from_numpy(np.stack(feats).astype(np.float32)).to(self.device)
        return self.tokenizer.normalize(x)[None]

    def reference_codes(self, motions: Sequence[Any], rows: int) -> torch.Tensor:
        """(K, ceil(rows / 4), Q) code indices of retrieved motions, each first resampled to `rows` rows
        (as the refiner sees them), so that their token slots line up with the ones being generated."""
        refs = self.aligned_references(motions, rows)[0]
        return self.tokenizer.encode(refs)

    # -- generation -------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, text_embedding, retrieved_motions: Sequence[Any] = (), length_frames: int = 120,
                 seed: int = 0, guidance_text: float = DEFAULT_GUIDANCE_TEXT,
                 guidance_retrieval: float = DEFAULT_GUIDANCE_RETRIEVAL, steps: int = DEFAULT_STEPS,
                 progress: Callable[[int, int], None] | None = None, *, temperature: float = 1.0,
                 top_k: float = 0.9, guidance_residual: float = DEFAULT_GUIDANCE_RESIDUAL,
                 token_prior: float = DEFAULT_TOKEN_PRIOR, caption: str = "") -> Motion:
        """A Motion of `length_frames` frames at 20 fps for a sentence embedding.

        text_embedding: (text_dim,) from the model's text encoder (MiniLM, 384-d).
        retrieved_motions: Motions or (T, 263) HumanML3D feature arrays (any number, 0 allowed).
        guidance_text / guidance_retrieval: the two classifier-free guidance scales (see
        transformer.combine_guidance); 0 and 0 sample unconditionally. A model with a retrieval
        refiner (refiner.py) also hands it the retrieved motions, time-aligned to the output,
        unless guidance_retrieval is 0 (then it sees none, as with no retrieved motions).
        token_prior: the retrieval token prior (decoding.token_prior): the top retrieved motion, encoded
        by the model's own tokenizer after time alignment, biases every layer's logits toward its
        codes with strength token_prior * guidance_retrieval. Where the model itself is unsure (a
        barely trained one) the prior decides the codes and the seed may change nothing. Why: training leaves each sample's own
        clip out of its retrieval, so the fusion attention never learnt to copy a reference that IS the
        wanted motion; the prior lets a reference the tokenizer knows pull the tokens toward it without
        training. 0 (or guidance_retrieval 0, or no references) decodes exactly as without it.
        progress(i, total) is called after every decoding pass; an exception it raises stops
        generation (cancel).
        """
        c = self.config
        emb = np.asarray(text_embedding, dtype=np.float32).reshape(-1)
        if emb.shape != (c.transformer.text_dim,) or not np.isfinite(emb).all():
            raise InputError("text_embedding", f"expected {c.transformer.text_dim} finite values from "
                             f"{c.text_encoder!r}, got shape {np.shape(text_embedding)}")
        if isinstance(length_frames, bool) or not isinstance(length_frames, (int, np.integer)):
            raise InputError("length_frames", f"expected an integer number of frames, got {length_frames!r}")
        if not 2 <= length_frames <= self.max_frames:
            raise InputError("length_frames", f"expected 2..{self.max_frames} frames at {c.fps:g} fps for this model, "
                             f"got {length_frames}")
        if not isinstance(steps, (int, np.integer)) or steps < 1:
            raise InputError("steps", f"expected a positive integer, got {steps!r}")
        for name, value in [("guidance_text", guidance_text), ("guidance_retrieval", guidance_retrieval),
                            ("guidance_residual", guidance_residual), ("token_prior", token_prior)]:
            if not np.isfinite(float(value)):
                raise InputError(name, f"expected a finite number, got {value!r}")
        retrieved = list(retrieved_motions or [])
        was_training = self.training
        self.eval()
        try:
            return self._generate(emb, retrieved, int(length_frames), int(seed), float(guidance_text),
                                  float(guidance_retrieval), int(steps), progress, float(temperature), float(top_k),
                                  float(guidance_residual), float(token_prior), caption)
        finally:
            self.train(was_training)

    def _generate(self, emb, retrieved, length_frames, seed, g_text, g_retr, steps, progress, temperature, top_k,
                  g_res, prior_scale, caption) -> Motion:
        dev = self.device
        gen = torch.Generator(device=dev).manual_seed(seed)
        rows = length_frames - 1
        n_tok = math.ceil(rows / self.frames_per_token)
        n_res = self.config.tokenizer.num_quantizers - 1 if self.config.transformer.residual_layers > 0 else 0
        total = steps + n_res
        text = torch.as_tensor(emb, device=dev)[None]

        # Each reference's features once: the fusion memory, the prior and the refiner all start from them.
        feats = [motion_features(m, self.config.fps, f"retrieved_motions[{i}]") for i, m in enumerate(retrieved)]
        mem = pad = None
        if retrieved:
            mem, pad, _ = self.masked.encode_retrieval([self.retrieval_latents(feats)])
        aligned = self.aligned_references(feats, rows) if retrieved and g_retr != 0 else None

        prior = None
        if aligned is not None and prior_scale != 0:
            weights = PRIOR_RANK_DECAY ** torch.arange(len(retrieved), dtype=torch.float32)
            used = weights > 0                          # references of weight 0 need no encoding
            codes = self.tokenizer.encode(aligned[0][used.to(dev)])[:, :n_tok]
            prior = token_prior(codes, self.config.tokenizer.num_codes, prior_scale * g_retr, weights[used])

        def logits_fn(ids):
            logits = self.masked.guided_logits(ids, text, mem, pad, bool(retrieved), g_text, g_retr)
            return logits if prior is None else logits + prior[0]

        def on_step(i):
            if progress is not None:
                progress(i + 1, total)

        base = iterative_decode(logits_fn, n_tok, self.masked.mask_id, steps, gen, temperature=temperature,
                                thres=top_k, on_step=on_step, device=dev)
        indices = base[..., None]
        for q in range(1, n_res + 1):
            code_sum = self.tokenizer.code_embeddings(indices).expand(2, -1, -1)
            layer = torch.full((2,), q, dtype=torch.long, device=dev)
            logits = self.residual(code_sum, layer, text.expand(2, -1), torch.tensor([False, True], device=dev))
            guided = logits[0:1] + g_res * (logits[1:2] - logits[0:1])
            if prior is not None:
                guided = guided + prior[q]
            indices = torch.cat([indices, sample(guided, gen, temperature, top_k)[..., None]], dim=-1)
            on_step(steps + q - 1)
        decoded = self.tokenizer.decode(indices)[:, :rows]
        if self.refiner is not None:
            decoded = self.refiner(decoded, aligned)[0]
        out = self.tokenizer.denormalize(decoded)[0].cpu().numpy().astype(np.float64)
        prov = {"generator": "motionrag-t2m", "seed": seed, "guidance_text": g_text, "guidance_retrieval": g_retr,
                "steps": steps, "refiner": self.refiner is not None,
                "token_prior": prior_scale if prior is not None else 0.0,
                "retrieved": [getattr(m, "name", "") or f"array[{i}]" for i, m in enumerate(retrieved)]}
        return h3d.features_to_motion(out, fps=self.config.fps, caption=caption, provenance=prov)
