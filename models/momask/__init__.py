"""The released MoMask text-to-motion models (Guo et al., CVPR 2024; EricGuo5513/momask-codes, MIT),
loaded key for key and run with the reference's inference, written anew for this pack.

Entry points (what a node calls):

    from motionrag_suite.models.momask import load_momask, load_clip_text
    model = load_momask(folder)          # a released checkpoints/t2m (or kit) folder, see checkpoint.py
    clip = load_clip_text(clip_folder)   # openai/clip-vit-base-patch32 in the Hugging Face layout
    emb = clip.encode(["a person walks forward"])[0]          # (512,) projected, not L2-normalised
    out = model.generate(emb, length_frames=120, seed=0, guidance=4.0,
                         residual_guidance=5.0, steps=18, temperature=1.0, topk_ratio=0.9,
                         prefix=None, suffix=None, progress=None)
    out.features  (T, 263) de-normalised HumanML3D features;  out.joints  (T, 22, 3);  out.fps  20
    out.tokens    (T / 4, 6) token ids

    reference_features=[(T_r, 263) features, ...], retrieval_strength=1.0 (generate's keywords) bias
    the decoding toward retrieved motions' tokens (generate.py, token_prior); 0 = MoMask's own draws.

    length_frames=0 draws the length from the length estimator; prefix / suffix (features of frames
    to keep) turn generation into temporal inpainting. inpaint.py also has `inpaint_motion(model, emb,
    source_features, spans, ...)` (regenerate spans of a motion) and `chain(model, [(emb, frames),
    ...], ...)` (one long motion from several prompts, each segment continuing the previous one's tail).
    Bad input raises common.errors.InputError naming the argument ("folder", "length_frames", ...).

Modules:
- config.py: frozen dataclass configs; the only reader of MoMask's opt.txt files.
- rvq.py: the residual VQ-VAE tokenizer (encode / decode).
- transformers.py: the masked (base-layer) and residual transformers.
- length_estimator.py: text feature -> length distribution.
- generate.py: iterative masked decoding (cosine schedule, guidance, top-k, temperature), the
  residual layers; the same random draws as the reference for a seeded CPU generator.
- model.py: MoMaskModel, the four networks plus mean/std behind `generate`.
- result.py: MoMaskResult (tokens, features, joints, fps).
- checkpoint.py: `load_momask`: torch.load(weights_only=True) only, every key checked, converted
  once to safetensors beside the originals.
- clip_text.py: the CLIP ViT-B/32 text tower via transformers.
- inpaint.py: temporal inpainting (prefix, suffix, middle spans) and chaining.
- train.py: the pack's own training of a small model in this layout (`python -m training momask`);
  export.py writes it as MoMask's download is laid out, so `load_momask` reads it as a released one.

Importing this package loads no torch: names are imported on first use.
"""
from __future__ import annotations

from ...common.lazy import lazy_exports

_EXPORTS = {
    "load_momask": "checkpoint", "MoMaskModel": "model", "MoMaskResult": "result", "MoMaskConfig": "config",
    "Sampling": "generate", "load_clip_text": "clip_text", "ClipTextEncoder": "clip_text",
    "inpaint_motion": "inpaint", "chain": "inpaint", "generate_between": "inpaint",
    "train_momask": "train", "write_momask_folder": "export",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
