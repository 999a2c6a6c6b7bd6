"""MoMask-size text-to-motion on this CPU: generation time, CLIP text-encoding time, memory.

Run: .venv/bin/python tests/benchmarks/bench_momask.py [rounds]   (from the pack folder; default 5)

No released weights are needed (nor exist on a test machine): a folder in the released layout is
written to a temporary directory with random weights at the released sizes (tokenizer: 6
quantizers of 512 codes of 512-d, width 512; transformers: latent 384, 8 layers, 6 heads, ff 1024;
the length estimator), so file sizes, loading and compute match the real thing. It reports:

- loading: the first load (torch.load of the .tar files, key checks, safetensors conversion) and
  later loads (safetensors);
- MoMaskModel.generate() of 196 frames (49 tokens; the text already encoded) with 18 steps
  (gen_t2m.py's default) and 10 (its README evaluation), guidance 4 / 5, with 2 torch threads and
  with 1: median and best of `rounds` after one warm-up. Goal: under 2 s with 2 threads;
- CLIP ViT-B/32-size text encoding (a random CLIPTextModelWithProjection of the released size; the
  tokenizer is a tiny offline one, so tokenisation cost is not representative);
- peak resident memory (VmHWM) of a fresh child process: torch imported, model loaded, after
  generating 196 frames, then with the CLIP text tower loaded too.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent))  # the pack root: common.standalone
from common.standalone import load_pack  # noqa: E402

load_pack()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FRAMES = 196


def write_released_size_folder(root: Path) -> Path:
    """A MoMask folder (checkpoints/t2m layout) with random weights at the released sizes."""
    import numpy as np
    import torch

    from motionrag_suite.models.momask.config import ResidualConfig, RVQConfig, TransformerConfig
    from motionrag_suite.models.momask.length_estimator import LengthEstimator
    from motionrag_suite.models.momask.rvq import RVQVAE
    from motionrag_suite.models.momask.transformers import MaskedTransformer, ResidualTransformer
    from unit import momask_tiny as tiny

    torch.manual_seed(0)
    rvq_cfg = RVQConfig()
    nets = {"rvq": RVQVAE(rvq_cfg), "masked": MaskedTransformer(TransformerConfig(dropout=0.2)),
            "residual": ResidualTransformer(ResidualConfig(dropout=0.2)), "length": LengthEstimator()}
    with torch.no_grad():
        for name, net in nets.items():
            for key, value in net.state_dict().items():
                if key.endswith("codebook") or key.endswith(("_weight_", "shared_weight")):
                    value.copy_(torch.randn_like(value) * (1.0 if key.endswith("codebook") else 0.05))
    states = {k: v.state_dict() for k, v in nets.items()}
    names = {"VQ_NAME": "rvq_nq6_dc512_nc512_noshare_qdp0.2", "MASKED_NAME": "t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns",
             "RESIDUAL_NAME": "tres_nlayer8_ld384_ff1024_rvq6ns_cdp0.2_sw"}
    saved = {k: getattr(tiny, k) for k in names}
    sizes = {"RVQ": tiny.RVQ, "MASKED": tiny.MASKED, "RESIDUAL": tiny.RESIDUAL}
    try:                                     # reuse the tests' writer with the released names and sizes
        for k, v in names.items():
            setattr(tiny, k, v)
        tiny.RVQ, tiny.MASKED, tiny.RESIDUAL = rvq_cfg, TransformerConfig(), ResidualConfig()
        folder = tiny.write_folder(root / "t2m", states)
    finally:
        for k, v in {**saved, **sizes}.items():
            setattr(tiny, k, v)
    rng = np.random.default_rng(0)
    np.save(folder / names["VQ_NAME"] / "meta" / "mean.npy", 0.1 * rng.standard_normal(263))
    np.save(folder / names["VQ_NAME"] / "meta" / "std.npy", 0.05 + 0.2 * rng.random(263))
    return folder


def timed(fn, rounds: int) -> tuple[float, float]:
    fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def clip_size_text_encoder(folder: Path):
    """A random CLIP ViT-B/32-size text tower saved as the hub's layout, then loaded by our loader."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from motionrag_suite.models.momask.clip_text import load_clip_text
    from unit import momask_tiny as tiny

    if not (folder / "config.json").is_file():
        tok = tiny.clip_tokenizer()
        torch.manual_seed(0)
        cfg = CLIPTextConfig(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                             num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu",
                             projection_dim=512, eos_token_id=2)
        CLIPTextModelWithProjection(cfg).eval().save_pretrained(folder)
        tok.save_pretrained(folder)
    return load_clip_text(folder)


CHILD = r"""
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r}); sys.path.insert(0, {root!r})
def peak():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
from common.standalone import load_pack
load_pack()
import torch
torch.set_num_threads(2)
base = peak()
from motionrag_suite.models.momask import load_momask
from motionrag_suite.models.momask.clip_text import load_clip_text
model = load_momask({folder!r})
loaded = peak()
model.generate(torch.randn(512), length_frames={frames}, seed=0, steps=18)
generated = peak()
clip = load_clip_text({clip!r})
clip.encode(["a person walks"])
with_clip = peak()
print(f"{{base:.0f}} {{loaded:.0f}} {{generated:.0f}} {{with_clip:.0f}}")
"""


def main(argv: list[str]) -> None:
    import torch

    from motionrag_suite.models.momask import load_momask

    rounds = int(argv[0]) if argv else 5
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs (a shared machine: timings are noisy)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        folder = write_released_size_folder(tmp)
        print(f"wrote a released-size folder with random weights in {time.perf_counter() - t:.1f} s: "
              + ", ".join(f"{p.relative_to(folder)} {p.stat().st_size / 1e6:.1f} MB" for p in sorted(folder.rglob("*.tar"))))
        t = time.perf_counter()
        model = load_momask(folder)
        first = time.perf_counter() - t
        t = time.perf_counter()
        model = load_momask(folder)
        again = time.perf_counter() - t
        print(f"load: first {first:.2f} s (torch.load weights_only + key checks + safetensors conversion), "
              f"later {again:.2f} s (safetensors)")
        emb = torch.randn(512)
        for threads in (2, 1):
            torch.set_num_threads(threads)
            for steps in (18, 10):
                med, best = timed(lambda: model.generate(emb, length_frames=FRAMES, seed=0, steps=steps), rounds)
                print(f"generate {FRAMES} frames, {steps} steps, {threads} thread(s): median {med:.3f} s, best {best:.3f} s")
            med, best = timed(lambda: model.generate(emb, length_frames=0, seed=1, steps=18), rounds)
            print(f"generate with estimated length, 18 steps, {threads} thread(s): median {med:.3f} s, best {best:.3f} s")
        clip_dir = tmp / "clip-vit-base-patch32"
        clip = clip_size_text_encoder(clip_dir)
        for threads in (2, 1):
            torch.set_num_threads(threads)
            med, best = timed(lambda: clip.encode(["a person walks forward and then turns around"]), rounds)
            print(f"CLIP ViT-B/32-size text encoding, 1 prompt, {threads} thread(s): median {med * 1000:.1f} ms, "
                  f"best {best * 1000:.1f} ms")
        code = CHILD.format(tests=str(TESTS), root=str(TESTS.parent), folder=str(folder), frames=FRAMES,
                            clip=str(clip_dir))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        base, loaded, generated, with_clip = map(float, out[-4:])
        print(f"peak RSS in a fresh process (2 threads): {base:.0f} MiB with torch imported, {loaded:.0f} MiB with "
              f"the MoMask model loaded, {generated:.0f} MiB after generating {FRAMES} frames, {with_clip:.0f} MiB "
              f"with the CLIP text tower loaded and used too")


if __name__ == "__main__":
    main(sys.argv[1:])
