"""MoMaskModel: the four networks of a released MoMask folder and the normalisation, behind one call.

    model = load_momask(folder)                                  # checkpoint.py
    result = model.generate(text_embedding, length_frames=120, seed=0)
    result.features   # (T, 263) de-normalised HumanML3D features
    result.joints     # (T, 22, 3) metres, via models.motion.humanml3d (HumanML3D's recover_from_ric)
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ...common.errors import InputError
from .config import CLIP_DIM, MAX_TOKENS, MoMaskConfig
from .generate import Sampling, masked_decode, residual_decode, token_prior
from .length_estimator import LengthEstimator
from .result import MoMaskResult
from .rvq import RVQVAE
from .transformers import MaskedTransformer, ResidualTransformer


class MoMaskModel:
    def __init__(self, config: MoMaskConfig, rvq: RVQVAE, masked: MaskedTransformer, residual: ResidualTransformer,
                 length_estimator: LengthEstimator | None, mean: np.ndarray, std: np.ndarray, source: str = ""):
        self.config = config
        self.rvq = rvq.eval()
        self.masked = masked.eval()
        self.residual = residual.eval()
        self.length_estimator = None if length_estimator is None else length_estimator.eval()
        self.mean = np.asarray(mean)
        self.std = np.asarray(std)
        self.source = source

    @property
    def fps(self) -> float:
        return self.config.fps

    @property
    def frames_per_token(self) -> int:
        return self.config.rvq.frames_per_token

    @property
    def max_frames(self) -> int:
        return MAX_TOKENS * self.frames_per_token

    @property
    def device(self) -> torch.device:
        return next(self.masked.parameters()).device

    def to(self, device) -> "MoMaskModel":
        for net in (self.rvq, self.masked, self.residual, self.length_estimator):
            if net is not None:
                net.to(device)
        return self

    # ------------------------------------------------------------------------------------ pieces

    def condition(self, text_embedding: Any) -> torch.Tensor:
        """(1, 512) float32 from a CLIP text feature (512,) or (1, 512) (tensor or array)."""
        try:
            emb = torch.as_tensor(np.asarray(text_embedding.detach().cpu() if torch.is_tensor(text_embedding)
                                             else text_embedding, dtype=np.float32))
        except (TypeError, ValueError):
            raise InputError("text_embedding", f"expected a CLIP ViT-B/32 text feature of {CLIP_DIM} numbers, got "
                                               f"{type(text_embedding).__name__}") from None
        if emb.ndim == 1:
            emb = emb.unsqueeze(0)
        if emb.shape != (1, CLIP_DIM) or not torch.isfinite(emb).all():
            raise InputError("text_embedding", f"expected one finite CLIP ViT-B/32 text feature of {CLIP_DIM} "
                                               f"values, got shape {tuple(emb.shape)}")
        return emb.to(self.device)

    def token_count(self, length_frames: int) -> int:
        """Tokens for a requested length in frames (floored to whole tokens, as MoMask does)."""
        fpt = self.frames_per_token
        if isinstance(length_frames, bool) or not isinstance(length_frames, (int, np.integer)) \
                or not fpt <= length_frames <= self.max_frames:
            raise InputError("length_frames", f"{length_frames!r}: expected 0 (estimate from the text) or "
                                              f"{fpt}..{self.max_frames} frames ({self.max_frames / self.fps:g} s "
                                              f"at {self.fps:g} fps, MoMask's longest training motion)")
        return int(length_frames) // fpt

    def estimate_tokens(self, cond: torch.Tensor, generator: torch.Generator | None) -> int:
        if self.length_estimator is None:
            raise InputError("length_frames", f"0 asks for the length to be estimated, but "
                                              f"{self.source or 'this model'} has no length_estimator/model/finest.tar; "
                                              f"give a length in frames")
        # A drawn length of 0 tokens (class 0) would leave nothing to generate; MoMask does not guard it.
        return max(1, int(self.length_estimator.sample_tokens(cond, generator)[0]))

    def normalise(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) / self.std

    def denormalise(self, features: np.ndarray) -> np.ndarray:
        return features * self.std + self.mean

    def decode(self, ids: torch.Tensor, token_lens: torch.Tensor) -> list[np.ndarray]:
        """Ids (B, N, Q) -> de-normalised float32 features per sample, cut to its own length. The batch
        is decoded padded, as the reference does (the decoder sees the empty codes past a shorter end)."""
        out = self.rvq.decode(ids).cpu().numpy()
        fpt = self.frames_per_token
        return [self.denormalise(out[i])[: int(n) * fpt].astype(np.float32) for i, n in enumerate(token_lens)]

    def reference_tokens(self, reference_features: Sequence[Any]) -> list[torch.Tensor]:
        """Base-layer ids (M_r,) of each reference motion, given as de-normalised features (T_r,
        dim_pose) at the model's frame rate: normalised, floored to whole tokens and encoded by this
        model's own tokenizer (so the prior speaks the model's code language)."""
        dim, fpt = self.config.rvq.dim_pose, self.frames_per_token
        out = []
        for i, value in enumerate(reference_features):
            arr = np.asarray(value, dtype=np.float64) if value is not None else np.zeros((0,))
            if arr.ndim != 2 or arr.shape[1] != dim or len(arr) < fpt or not np.isfinite(arr).all():
                raise InputError("reference_features", f"reference {i}: expected finite features of shape (frames >= "
                                                       f"{fpt}, {dim}), got shape {arr.shape}")
            norm = self.normalise(arr[: len(arr) // fpt * fpt]).astype(np.float32)
            out.append(self.rvq.encode(torch.from_numpy(norm)[None].to(self.device))[0, :, 0])
        return out

    def reference_prior(self, reference_features: Sequence[Any] | None, strength: float, n: int):
        """The base-layer logit bias (n, K) of generate.token_prior, or None (strength 0: plain MoMask)."""
        if isinstance(strength, bool) or not isinstance(strength, (int, float, np.floating)) \
                or not np.isfinite(strength) or not 0 <= strength <= 50:
            raise InputError("retrieval_strength", f"{strength!r}: expected a number in 0..50 (0 = no retrieval)")
        if strength == 0:
            return None
        refs = list(reference_features or [])
        if not refs:
            raise InputError("reference_features", f"retrieval_strength {strength:g} asks for references, but none "
                                                   f"were given")
        return token_prior(self.reference_tokens(refs), n, self.config.masked.num_tokens, float(strength))

    def joints(self, features: np.ndarray) -> np.ndarray | None:
        if self.config.dataset != "t2m":
            return None            # KIT-ML's 251-d layout and 21-joint skeleton are not converted here
        from ..motion.humanml3d import features_to_joints

        return features_to_joints(features)

    # ---------------------------------------------------------------------------------- generate

    @torch.no_grad()
    def generate(self, text_embedding: Any, length_frames: int = 0, seed: int = 0, guidance: float = 4.0, *,
                 residual_guidance: float | None = None, steps: int = 18, temperature: float = 1.0,
                 topk_ratio: float = 0.9, gumbel: bool = False, prefix: np.ndarray | None = None,
                 suffix: np.ndarray | None = None, reference_features: Sequence[Any] | None = None,
                 retrieval_strength: float = 0.0,
                 progress: Callable[[int, int], None] | None = None) -> MoMaskResult:
        """One motion for one CLIP text feature.

        length_frames: 0 = drawn from the length estimator; else floored to a multiple of 4 (at
        most 196).
        seed: seeds a torch.Generator on the model's device. On a CPU the draws are those of
        MoMask's own length sampling and M- and R-transformer `generate` run right after
        torch.manual_seed(seed) (gen_t2m.py seeds before building its networks, whose random
        initialisation moves the stream on, so its numbers for a seed differ).
        prefix / suffix: de-normalised features (F, 263) of frames to keep at the start / end; the
        rest is generated (temporal inpainting, inpaint.py); length_frames must then be given,
        kept frames included.
        residual_guidance: None = 5 (gen_t2m.py), or 2 with kept frames (edit_t2m.py).
        reference_features / retrieval_strength: retrieved motions (de-normalised features at the
        model's rate) whose tokens, stretched to the generated length, bias the base layer
        (generate.token_prior); strength 0 (the default) is MoMask's own decoding, draw for draw.
        progress(step, steps) is called after each base-layer step."""
        editing = prefix is not None or suffix is not None
        if residual_guidance is None:          # gen_t2m.py's 5; edit_t2m.py's 2 when frames are kept
            residual_guidance = 2.0 if editing else 5.0
        sampling = self.sampling(steps=steps, guidance=guidance, residual_guidance=residual_guidance,
                                 temperature=temperature, topk_ratio=topk_ratio, gumbel=gumbel)
        if editing:
            from .inpaint import generate_between

            return generate_between(self, text_embedding, length_frames, seed, sampling, prefix=prefix,
                                    suffix=suffix, progress=progress, reference_features=reference_features,
                                    retrieval_strength=retrieval_strength)
        cond = self.condition(text_embedding)
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        if length_frames == 0 and not isinstance(length_frames, bool):
            n = self.estimate_tokens(cond, generator)
        else:
            n = self.token_count(length_frames)
        prior = self.reference_prior(reference_features, retrieval_strength, n)
        lens = torch.tensor([n], device=self.device)
        base = masked_decode(self.masked, cond, lens, sampling, generator, progress=progress, prior=prior)
        ids = residual_decode(self.residual, base, cond, lens, sampling.residual_guidance, sampling.temperature,
                              sampling.topk_ratio, generator)
        return self.result(ids, lens)

    def result(self, ids: torch.Tensor, lens: torch.Tensor) -> MoMaskResult:
        features = self.decode(ids, lens)[0]
        return MoMaskResult(tokens=ids[0, : int(lens[0])].cpu().numpy(), features=features,
                            joints=self.joints(features), fps=self.fps)

    @staticmethod
    def sampling(**values) -> Sampling:
        s = replace(Sampling(), **values)
        if isinstance(s.steps, bool) or not isinstance(s.steps, int) or not 1 <= s.steps <= 100:
            raise InputError("steps", f"{s.steps!r}: expected a whole number of decoding steps, 1..100")
        for name in ("guidance", "residual_guidance"):
            value = getattr(s, name)
            if not np.isfinite(value) or not 0 <= value <= 50:
                raise InputError(name, f"{value!r}: expected a guidance scale in 0..50 (1 = no guidance)")
        if not np.isfinite(s.temperature) or not 0 < s.temperature <= 10:
            raise InputError("temperature", f"{s.temperature!r}: expected a temperature in (0, 10]")
        if not 0 <= s.topk_ratio < 1:
            raise InputError("topk_ratio", f"{s.topk_ratio!r}: expected a share in [0, 1) of the logits to drop")
        return s


__all__ = ["MoMaskModel", "MoMaskResult"]
