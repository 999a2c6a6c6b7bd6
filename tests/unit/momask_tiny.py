"""Tiny MoMask models in the released key layout, with deterministic weights, for the tests.

`tiny_states()` builds the state dicts from our modules' key/shape lists and numpy's PCG64 stream
(sorted keys, one draw per key), so the same numbers come out on every machine; the reference's
outputs for exactly these weights are in tests/fixtures/momask/reference_outputs.safetensors
(see tests/fixtures/momask/README.md). `write_folder()` lays them out as MoMask's download does:
torch.save'd `.tar` dicts, `opt.txt` files and `meta/` statistics.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from motionrag_suite.models.momask.config import MoMaskConfig, ResidualConfig, RVQConfig, TransformerConfig
from motionrag_suite.models.momask.length_estimator import LengthEstimator
from motionrag_suite.models.momask.rvq import RVQVAE
from motionrag_suite.models.momask.transformers import MaskedTransformer, ResidualTransformer

SEED = 20261202
RVQ = RVQConfig(dim_pose=263, nb_code=32, code_dim=16, num_quantizers=4, down_t=2, stride_t=2, width=24, depth=2,
                dilation_growth_rate=3, activation="relu")
MASKED = TransformerConfig(num_tokens=32, code_dim=16, latent_dim=32, ff_size=48, n_layers=2, n_heads=4, dropout=0.2)
RESIDUAL = ResidualConfig(num_tokens=32, code_dim=16, latent_dim=32, ff_size=48, n_layers=2, n_heads=4, dropout=0.2,
                          num_quantizers=4)
CONFIG = MoMaskConfig(dataset="t2m", rvq=RVQ, masked=MASKED, residual=RESIDUAL)

VQ_NAME = "rvq_nq4_dc16_nc32_tiny"
MASKED_NAME = "t2m_nlayer2_nhead4_ld32_tiny"
RESIDUAL_NAME = "tres_nlayer2_ld32_tiny"


def modules(dim_pose: int = 263):
    return {"rvq": RVQVAE(dataclasses.replace(RVQ, dim_pose=dim_pose)), "masked": MaskedTransformer(MASKED),
            "residual": ResidualTransformer(RESIDUAL),
            "length": LengthEstimator()}


def _values(rng, key: str, shape: tuple, default: torch.Tensor) -> np.ndarray:
    if key.endswith("position_enc.pe"):
        return default.numpy()                                      # the sinusoid, as stored
    normal = rng.standard_normal(shape)
    leaf = key.rsplit(".", 1)[-1]
    is_norm = ("norm" in key.lower() and "Transformer" not in key) or key.startswith("output.") and \
        key.split(".")[1] in ("1", "5", "9")
    if is_norm:
        return (1.0 + 0.1 * normal) if leaf == "weight" else 0.1 * normal
    if leaf == "bias":
        return 0.1 * normal
    if leaf == "codebook":
        return normal
    if key.endswith(("_weight_", "shared_weight")):
        return 0.5 * normal                                          # the residual's code embeddings
    if key.endswith("token_emb.weight"):
        return 0.5 * normal
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    return 1.5 / np.sqrt(fan_in) * normal


def tiny_states(seed: int = SEED, dim_pose: int = 263) -> dict:
    """{'rvq', 'masked', 'residual', 'length': state dict} with deterministic float32 values
    (dim_pose 251: a KIT-ML tokenizer)."""
    out = {}
    for i, (role, module) in enumerate(modules(dim_pose).items()):
        rng = np.random.default_rng([seed, i])
        state = module.state_dict()
        out[role] = {k: torch.from_numpy(_values(rng, k, tuple(v.shape), v).astype(np.float32))
                     for k, v in sorted(state.items())}
    return out


def tiny_stats(seed: int = SEED, dim_pose: int = 263) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 99])
    mean = 0.1 * rng.standard_normal(dim_pose)
    std = 0.05 + 0.2 * rng.random(dim_pose)
    return mean, std                                                # float64, like the KIT release's


def checksum(states: dict) -> float:
    return float(sum(v.double().abs().sum() for s in states.values() for v in s.values()))


def _opt_text(values: dict) -> str:
    lines = ["------------ Options -------------"]
    lines += [f"{k}: {v}" for k, v in values.items()]
    lines.append("-------------- End ----------------")
    return "\n".join(lines) + "\n"


def rvq_opt(dataset: str = "t2m") -> dict:
    return {"name": VQ_NAME, "dataset_name": dataset, "code_dim": RVQ.code_dim, "nb_code": RVQ.nb_code,
            "mu": 0.99, "down_t": RVQ.down_t, "stride_t": RVQ.stride_t, "width": RVQ.width, "depth": RVQ.depth,
            "dilation_growth_rate": RVQ.dilation_growth_rate, "output_emb_width": RVQ.code_dim, "vq_act": "relu",
            "vq_norm": "None", "num_quantizers": RVQ.num_quantizers, "shared_codebook": False,
            "quantize_dropout_prob": 0.2, "lr_scheduler": "[200000]", "checkpoints_dir": "./checkpoints"}


def transformer_opt(residual: bool, dataset: str = "t2m") -> dict:
    c = RESIDUAL if residual else MASKED
    return {"name": RESIDUAL_NAME if residual else MASKED_NAME, "dataset_name": dataset, "vq_name": VQ_NAME,
            "latent_dim": c.latent_dim, "n_heads": c.n_heads, "n_layers": c.n_layers, "ff_size": c.ff_size,
            "dropout": 0.2, "cond_drop_prob": 0.2 if residual else 0.1, "share_weight": residual,
            "gumbel_sample": False, "milestones": "[50000]", "checkpoints_dir": "./checkpoints"}


def write_folder(root: Path, states: dict | None = None, *, length: bool = True, trainer_format: bool = False,
                 dataset: str = "t2m") -> Path:
    """A MoMask folder (as checkpoints/t2m or checkpoints/kit unzips) holding the tiny models; returns `root`."""
    dim_pose = 251 if dataset == "kit" else 263
    states = states or tiny_states(dim_pose=dim_pose)
    root = Path(root)
    mean, std = tiny_stats(dim_pose=dim_pose)
    vq = root / VQ_NAME
    (vq / "model").mkdir(parents=True)
    (vq / "meta").mkdir()
    (vq / "opt.txt").write_text(_opt_text(rvq_opt(dataset)))
    torch.save({"vq_model": states["rvq"], "ep": 50}, vq / "model" / "net_best_fid.tar")
    np.save(vq / "meta" / "mean.npy", mean)
    np.save(vq / "meta" / "std.npy", std)
    for residual in (False, True):
        d = root / (RESIDUAL_NAME if residual else MASKED_NAME)
        (d / "model").mkdir(parents=True)
        (d / "opt.txt").write_text(_opt_text(transformer_opt(residual, dataset)))
        key = "res_transformer" if residual else "t2m_transformer"
        payload = {key: states["residual" if residual else "masked"], "ep": 300}
        if trainer_format:                      # what the trainer's latest.tar adds: optimizer + scheduler
            params = [torch.nn.Parameter(v.clone()) for v in payload[key].values() if v.dim() > 1][:3]
            opt = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.99), weight_decay=1e-5)
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[50000], gamma=0.1)
            sum(p.sum() for p in params).backward()
            opt.step()
            sched.step()
            payload.update(opt_t2m_transformer=opt.state_dict(), scheduler=sched.state_dict(), total_it=1)
        torch.save(payload, d / "model" / ("net_best_fid.tar" if residual else "latest.tar"))
    if length:
        (root / "length_estimator" / "model").mkdir(parents=True)
        torch.save({"estimator": states["length"], "epoch": 9, "niter": 1000},
                   root / "length_estimator" / "model" / "finest.tar")
    return root


def clip_tokenizer():
    """A CLIP BPE tokenizer over a tiny vocabulary (letters, digits, a few merges), built offline;
    like CLIP's own, its end-of-text token has the largest id."""
    import string

    from transformers import CLIPTokenizer

    symbols = list(string.ascii_lowercase) + list("0123456789.,!?'-")
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("i", "n"), ("e", "r")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges)


def write_clip(folder: Path) -> Path:
    """A tiny random CLIPModel with the offline tokenizer, saved as openai/clip-vit-base-patch32 is laid
    out (config.json, model.safetensors, tokenizer files), projecting to CLIP's 512 dims; returns `folder`."""
    from transformers import CLIPConfig, CLIPModel

    tok = clip_tokenizer()
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
                         bos_token_id=len(tok) - 2, eos_token_id=2, pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
                           image_size=32, patch_size=16),
        projection_dim=512)
    folder = Path(folder)
    CLIPModel(config).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_stand_ins(motionrag_root: Path, model: str, clip: str) -> Path:
    """A tiny MoMask folder (t2m/<model>) and a tiny CLIP (clip/<clip>) under a motionrag models folder,
    written on one torch thread (inside a test server's process, where other work may be running)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        write_folder(Path(motionrag_root) / "t2m" / model)
        write_clip(Path(motionrag_root) / "clip" / clip)
    finally:
        torch.set_num_threads(before)
    return Path(motionrag_root)
