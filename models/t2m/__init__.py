"""Retrieval-augmented text-to-motion (MoMask / ReMoMask family).

    from motionrag_suite.models.t2m import load_model
    model = load_model(folder)                          # model.safetensors + config.json
    motion = model.generate(text_embedding, retrieved_motions, length_frames=120, seed=0,
                            guidance_text=4.0, guidance_retrieval=1.0, steps=10, progress=None)

Parts (sizes from config.py: presets tiny / small / paper):
- tokenizer.py: 1D-conv residual VQ-VAE over normalised HumanML3D 263-d features, 4 frames per
  token, `num_quantizers` EMA codebooks with dead-code reset and quantiser dropout
  (quantizer.py); the normalisation mean/std (HumanML3D per-group std averaging,
  normalization.py) are buffers saved with the weights.
- transformer.py: the masked transformer over base-layer tokens, conditioned on the projected
  MiniLM sentence embedding (a prefix token) and on retrieved motions through a zero-initialised
  cross-attention ("fusion attention") over their tokenizer-encoder latents; classifier-free
  guidance over text and retrieval separately, u + s_t (t - u) + s_r (tr - t), trained with
  independent text / retrieval dropout. The residual quantiser layers 1..Q-1 are predicted by a
  residual transformer (MoMask's design: input = sum of lower layers' codes + layer embedding,
  text-conditioned with its own guidance scale, no retrieval), one pass per layer.
- refiner.py: the retrieval refiner. The tokens alone cannot carry a motion the tokenizer never
  saw, so the decoded motion and the retrieved motions (time-aligned to the output, continuous
  features) go through a small convolutional net that weighs, per frame, the decoded motion
  against each reference (an identity path for each) and adds a learned correction. Trained last,
  with the other stages frozen, on crops whose references are perturbed copies of the target or
  real retrieved neighbours, and whose decoded motion is sometimes another clip's; it sees no
  references when retrieval is off.
- decoding.py: confidence-based iterative decoding on a cosine schedule (lowest-confidence
  predictions re-masked), top-k filtered sampling, and the retrieval token prior (the top retrieved
  motion's own codes as a logit bias on every layer, generate()'s token_prior x guidance_retrieval).
- trainer.py: the stage table (tokenizer, masked, residual and refiner stages) and the training loop
  over data the caller loads (`python -m training t2m --db-root R --db NAME --out DIR` from the pack
  folder reads it from a motion database); retrieval excludes the sample and its mirrored twin;
  per-step seeding makes --resume bit-identical to an uninterrupted run.
- checkpoint.py: safetensors + JSON only, keys and shapes checked on load.

Names are imported on first use, so importing this package loads no torch.
"""
from __future__ import annotations

from ...common.lazy import lazy_exports

_EXPORTS = {
    "T2MModel": "model", "ModelConfig": "config", "TokenizerConfig": "config", "TransformerConfig": "config",
    "TrainConfig": "config", "RefinerConfig": "config", "preset": "config", "PRESETS": "config", "ConfigError": "config",
    "CheckpointError": "checkpoint", "load_model": "checkpoint", "save_model": "checkpoint",
    "TrainingDataError": "data", "combine_guidance": "transformer", "condition_masks": "transformer",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
