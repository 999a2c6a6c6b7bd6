"""Per-step cost of MotionRAG's injected motion branch on medium test backbones (random weights, CPU).
Prints figures; asserts nothing.

    cd <pack folder>
    .venv/bin/python tests/benchmarks/bench_i2v_step.py [--rounds 7] [--calls 3] [--threads N] [--only cog|svd]
        [--large]

One denoising step = one call of the denoiser on a classifier-free-guidance batch of 2, as the diffusers
pipelines make it. Backbones (the medium sizes of the team notes, offline-assets.md):
  * CogVideoX medium: 8 heads x 64 (hidden 512), 4 layers (12.8 M); 9 frames at 64x64 (3 latent frames
    of 8x8, patch 2) plus 226 text tokens; the branch sits in all 4 joint attentions;
  * SVD medium: UNet 64-128-256 (28 M), 8 frames at 64x64 (latents 8x8); the branch sits in the spatial
    cross-attentions.
--large uses 4x the spatial tokens (latents 16x16) to show how the share changes with size.
Motion: 25 tokens x 1024 (the paper's), strength 1, the adapter's random init. Two copies of the model
(same weights), one with the branch, are called in alternating pairs (order flipping each pair) after a
warm-up; printed: medians, minima and the median of the per-pair time ratios.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1]))  # the pack root: common.standalone
from common.standalone import load_pack  # noqa: E402

load_pack()

from motionrag_suite.models.i2v.adapter import inject_cogvideox, inject_svd  # noqa: E402


def cogvideox(large: bool):
    import torch
    from diffusers import CogVideoXTransformer3DModel
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    torch.manual_seed(0)
    side = 16 if large else 8
    model = CogVideoXTransformer3DModel(
        num_attention_heads=8, attention_head_dim=64, in_channels=8, out_channels=4, time_embed_dim=64,
        text_embed_dim=64, num_layers=4, sample_width=side, sample_height=side, sample_frames=9, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=226, use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=False).eval()
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 3, 8, side, side, generator=g)
    text = torch.randn(2, 226, 64, generator=g)
    rope = get_3d_rotary_pos_embed(embed_dim=64, crops_coords=((0, 0), (side // 2, side // 2)),
                                   grid_size=(side // 2, side // 2), temporal_size=3)

    def step():
        return model(hidden_states=latents, encoder_hidden_states=text, timestep=torch.full((2,), 500),
                     image_rotary_emb=rope, return_dict=False)[0]

    return model, step, inject_cogvideox


def svd(large: bool):
    import torch
    from diffusers import UNetSpatioTemporalConditionModel

    torch.manual_seed(0)
    side = 16 if large else 8
    model = UNetSpatioTemporalConditionModel(
        sample_size=side, in_channels=8, out_channels=4, block_out_channels=(64, 128, 256),
        down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 2 + ("DownBlockSpatioTemporal",),
        up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 2,
        layers_per_block=2, cross_attention_dim=1024, num_attention_heads=(2, 4, 8),
        addition_time_embed_dim=256, projection_class_embeddings_input_dim=768).eval()
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 8, 8, side, side, generator=g)
    image = torch.randn(2, 1, 1024, generator=g)
    ids = torch.tensor([[6.0, 127.0, 0.02]]).repeat(2, 1)

    def step():
        return model(latents, torch.full((2,), 0.5), image, ids).sample

    return model, step, inject_svd


def measure(name: str, build, rounds: int, calls: int, large: bool) -> None:
    import torch

    model, step, inject = build(large)                  # the plain model
    twin, twin_step, _ = build(large)                   # the same weights, with the motion branch
    params = sum(p.numel() for p in model.parameters())
    tokens = torch.randn(2, 25, 1024)                   # [uncond, cond] motion tokens
    plain, motion, ratios = [], [], []
    with torch.inference_mode():
        injection = inject(twin, motion_dim=1024, strength=1.0)
        injection.set_motion(tokens)
        branch = sum(p.numel() for p in injection.processors.values() for p in p.parameters())
        assert (twin_step() - step()).abs().max().item() > 0, "the motion branch did not change the output"
        # paired calls in alternating order, so that load from other processes hits both sides alike
        for i in range(rounds * calls):
            pair = {}
            for which, fn in (((plain, step), (motion, twin_step)) if i % 2 == 0 else
                              ((motion, twin_step), (plain, step))):
                t = time.perf_counter()
                fn()
                pair[id(which)] = time.perf_counter() - t
                which.append(pair[id(which)])
            ratios.append(pair[id(motion)] / pair[id(plain)])
        injection.remove()
    p, m = statistics.median(plain), statistics.median(motion)
    q1, q3 = statistics.quantiles(ratios, n=4)[0], statistics.quantiles(ratios, n=4)[2]
    load = os.getloadavg()
    print(f"{name}: {params / 1e6:.1f} M parameters + branch {branch / 1e6:.1f} M; plain step median "
          f"{p * 1000:.1f} ms (min {min(plain) * 1000:.1f}), with motion {m * 1000:.1f} ms (min "
          f"{min(motion) * 1000:.1f}): medians {(m / p - 1) * 100:+.1f}%, mins {(min(motion) / min(plain) - 1) * 100:+.1f}%, "
          f"paired median {(statistics.median(ratios) - 1) * 100:+.1f}% (IQR {(q1 - 1) * 100:+.1f}..{(q3 - 1) * 100:+.1f}%) "
          f"per step; n={len(ratios)} pairs; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--only", choices=["cog", "svd"])
    ap.add_argument("--large", action="store_true")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, "
          f"{'large' if args.large else 'medium'} latents; load average {os.getloadavg()[0]:.2f}")
    if args.only in (None, "cog"):
        measure("CogVideoX medium", cogvideox, args.rounds, args.calls, args.large)
    if args.only in (None, "svd"):
        measure("SVD medium", svd, args.rounds, args.calls, args.large)


if __name__ == "__main__":
    main()
