"""Per-step cost of Apply Motion to SVD Model in ComfyUI's own KSampler: the plain SVD MODEL vs the
patched clone, same seed and inputs, ComfyUI imported in-process (from $COMFYUI_PATH or
.cache/comfyui) on its --cpu device (or its GPU when there is one and --gpu is given).

Per-step time is the slope between a short and a long run (so VAE/CLIP/setup costs drop out), best of
--repeat. Sizes: tiny (the tests' UNet) and medium (the paper's layout at a quarter of its widths);
the adapter is random with the paper's 25 x 1024 motion tokens.

    .venv/bin/python tests/benchmarks/bench_native_svd.py [--sizes tiny,medium] [--repeat 3]
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
NODE_FILE = TESTS / "integration" / "comfy_test_nodes" / "motionrag_tiny_svd.py"

# name: (model_channels, channel_mult, res blocks, head channels, frames, width, height)
SIZES = {"tiny": (32, [1, 1, 2, 2], 1, 16, 4, 48, 32),
         "medium": (96, [1, 2, 4, 4], 2, 32, 8, 256, 160)}


def _setup(gpu: bool):
    sys.path.insert(0, str(TESTS))
    sys.path.insert(0, str(TESTS.parent))  # the pack root: common.standalone
    from common.standalone import load_pack

    load_pack()
    from harness.comfy_server import find_comfyui

    comfyui = find_comfyui()
    sys.path.insert(0, str(comfyui))
    sys.argv = [sys.argv[0]] + ([] if gpu else ["--cpu"])
    import comfy.options

    comfy.options.enable_args_parsing()
    spec = importlib.util.spec_from_file_location("motionrag_tiny_svd", NODE_FILE)
    node = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(node)
    return node


def bench(node, name: str, repeat: int, short: int, long: int) -> dict:
    import torch

    import nodes
    from comfy_extras.nodes_video_model import SVD_img2vid_Conditioning, VideoLinearCFGGuidance
    from motionrag_suite.models.i2v.native_svd import diffusers_name, make_patches, module_layers
    from motionrag_suite.nodes.native_svd_nodes import _comfy_attention

    mc, mult, res, head, frames, width, height = SIZES[name]
    cfg = node.tiny_unet_config(mc, mult, res, head)
    model, clip_vision, vae = node.build_model(cfg, 0), node.build_clip_vision(0), node.build_vae(0)
    layers = {k: w for k, (w, _) in module_layers(model.model.diffusion_model).items()}
    g = torch.Generator().manual_seed(1)
    state = {}
    for key, w in layers.items():
        p = diffusers_name(key, res) + ".processor."
        state[p + "to_q_ip.0.weight"] = torch.randn(w, w, generator=g) / w ** 0.5
        state[p + "to_k_ip.0.weight"] = torch.randn(w, 1024, generator=g) / 32
        state[p + "to_v_ip.0.weight"] = torch.randn(w, 1024, generator=g) / 32
    cond, uncond = torch.randn(1, 25, 1024, generator=g), torch.randn(1, 25, 1024, generator=g)
    patched = model.clone()
    for (block, n, k), patch in make_patches(state, res, layers, cond, uncond, 1.0,
                                             attention=_comfy_attention).items():
        patched.set_model_attn2_replace(patch, block, n, k)
    image = torch.rand(1, height, width, 3, generator=g)
    with torch.inference_mode():
        pos, neg, latent = SVD_img2vid_Conditioning().encode(clip_vision, image, vae, width, height, frames, 127, 8, 0.0)
        out = {}
        for label, m in (("plain", model), ("patched", patched)):
            m = VideoLinearCFGGuidance().patch(m, 1.0)[0]
            nodes.KSampler().sample(m, 0, 1, 3.0, "euler", "karras", pos, neg, latent)     # warm-up / load
            best = []
            for _ in range(repeat):
                times = []
                for steps in (short, long):
                    t0 = time.perf_counter()
                    nodes.KSampler().sample(m, 0, steps, 3.0, "euler", "karras", pos, neg, latent)
                    times.append(time.perf_counter() - t0)
                best.append((times[1] - times[0]) / (long - short))
            out[label] = min(best)
    params = sum(v.numel() for v in state.values())
    return {"size": name, "layers": len(layers), "adapter_params": params, "frames": frames,
            "latent": (height // 8, width // 8), **out}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="tiny,medium")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--short", type=int, default=2)
    ap.add_argument("--long", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steady figures on a shared machine)")
    ap.add_argument("--gpu", action="store_true", help="let ComfyUI use its GPU (default: --cpu)")
    args = ap.parse_args(argv)
    node = _setup(args.gpu)
    import torch

    import comfy.model_management as mm

    torch.set_num_threads(args.threads)

    print(f"device {mm.get_torch_device()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name in args.sizes.split(","):
        r = bench(node, name, args.repeat, args.short, args.long)
        extra = r["patched"] - r["plain"]
        print(f"{r['size']:>7}: {r['layers']} adapted layers, adapter {r['adapter_params'] / 1e6:.2f}M params, "
              f"{r['frames']} frames, latent {r['latent'][0]}x{r['latent'][1]}, cfg batch 2: plain "
              f"{r['plain'] * 1e3:.1f} ms/step, patched {r['patched'] * 1e3:.1f} ms/step, overhead "
              f"{extra * 1e3:+.1f} ms ({100 * extra / r['plain']:+.1f}%)")


if __name__ == "__main__":
    main()
