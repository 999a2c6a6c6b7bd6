"""Distributed database builds (engine="ray") against the one-process build. Prints figures; asserts nothing.

    cd <pack folder>
    OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/bench_ray.py [--videos 8] [--clips 2] [--repeat 1]
        [--skip-throughput] [--skip-stages] [--stage-reps 3] [--size-entries 2000]

1. throughput: the built-in videos (offline encoders: decode, Farneback flow, EfficientNet-Lite0) built into
   a database by the local builder and by Ray with 1 and 2 workers (a local Ray cluster of this
   machine's CPUs started by each job, workers at 0.5 CPU): wall time end to end and entries/s, and
   Ray's fixed cost (the same job on one video, Ray minus local; and ray.init alone).
2. stages: per-clip CPU cost of each stage of the paper's database at paper sizes (random weights from
   the paper models' configs: no checkpoint is needed for timing): decode of a 16-frame clip at 8 fps,
   VideoMAE-B (videomae-base, 16x224x224), DINOv2-L/14 on the first frame (224), the motion projector
   (Resampler, 25x1024), a caption with all-MiniLM-L6-v2; with the FLOPs of each model counted by
   torch.utils.flop_counter (for the GPU projection in the README).
3. size: bytes on disk per entry of a database holding the paper's payloads (motion tokens 25x1024 and
   appearance tokens 257x1024 in float16, the placeholder skeleton, one caption), built through the real
   writer from --size-entries random entries, and projected to 1M entries.
Load average is printed with every section: the machine is shared.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common.standalone import load_pack  # noqa: E402

load_pack()

import numpy as np  # noqa: E402

from motionrag_suite.retrieval.builtin_video_sources import builtin_video_sources  # noqa: E402
from motionrag_suite.retrieval.offline_video_builder import build_offline_from_sources  # noqa: E402


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def _build(root: Path, name: str, sources, clips: int, **engine) -> tuple[float, int]:
    t0 = time.perf_counter()
    build_offline_from_sources(root, name, sources, clips_per_video=clips, skip_bad=True, **engine)
    seconds = time.perf_counter() - t0
    from motionrag_suite.retrieval.database import open_database

    with open_database(root, name) as db:
        return seconds, db.entry_count


def throughput(args) -> None:
    import ray

    sources = builtin_video_sources()[:args.videos]
    print(f"== throughput: {len(sources)} built-in videos, up to {args.clips} clips each; {os.cpu_count()} CPUs; {load()}")
    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    try:
        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        t_init = time.perf_counter() - t0
        ray.shutdown()
        print(f"ray.init of a local cluster alone: {t_init:.1f} s")
        one_local, _ = _build(work, "one_local", sources[:1], 1)
        one_ray, _ = _build(work, "one_ray", sources[:1], 1, engine="ray", engine_options={"workers": 1})
        print(f"one video: local {one_local:.1f} s, ray {one_ray:.1f} s -> Ray's fixed cost about "
              f"{one_ray - one_local:.1f} s (cluster start, actor start, Lite0 loaded in the actor; {load()})")
        runs = [("local (one process)", {}), ("ray, 1 worker", {"engine": "ray", "engine_options": {"workers": 1}}),
                ("ray, 2 workers", {"engine": "ray", "engine_options": {"workers": 2}})]
        for r in range(args.repeat):
            for i, (label, engine) in enumerate(runs):
                secs, n = _build(work, f"db{r}_{i}", sources, args.clips, **engine)
                print(f"{label:22s} {n} entries in {secs:6.1f} s = {n / secs:5.2f} entries/s  ({load()})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _time(fn, reps: int) -> float:
    fn()                                            # warm-up
    best = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t0)
    return float(np.median(best))


def _flops(model, *inputs, **kw) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:          # (its module tracker needs autograd on)
        model(*inputs, **kw)
    return fc.get_total_flops()


def stages(args) -> None:
    import torch
    from transformers import Dinov2Config, Dinov2Model, VideoMAEConfig, VideoMAEModel

    from motionrag_suite.models.i2v.configs import MOTION_PROJECTOR
    from motionrag_suite.models.i2v.resampler import Resampler
    from motionrag_suite.retrieval.text_encoder import get_text_encoder
    from motionrag_suite.retrieval.video_clips import decode_clips

    print(f"== per-clip stage cost on this CPU (torch threads {torch.get_num_threads()}; {load()})")
    src = builtin_video_sources()[0]
    t = _time(lambda: decode_clips(src.path, clips_per_video=1), args.stage_reps)
    print(f"decode 16 frames at 8 fps ({src.path.name})          {t * 1000:8.1f} ms/clip")
    torch.manual_seed(0)
    # videomae-base-finetuned-ssv2's encoder: ViT-B, 16 frames, tubelet 2, patch 16, 224
    vmae = VideoMAEModel(VideoMAEConfig(image_size=224, patch_size=16, num_frames=16, tubelet_size=2, hidden_size=768,
                                        num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)).eval()
    clip = torch.randn(1, 16, 3, 224, 224)
    f = _flops(vmae, pixel_values=clip)
    with torch.no_grad():
        t = _time(lambda: vmae(pixel_values=clip), args.stage_reps)
    print(f"VideoMAE-B 16x224x224 (1568 tokens)                {t * 1000:8.1f} ms/clip  {f / 1e9:7.1f} GFLOPs")
    del vmae
    # dinov2-large: ViT-L/14, 24 layers, 1024 wide; the first frame at 224 -> 257 tokens
    dino = Dinov2Model(Dinov2Config(image_size=224, patch_size=14, hidden_size=1024, num_hidden_layers=24,
                                    num_attention_heads=16, intermediate_size=4096)).eval()
    img = torch.randn(1, 3, 224, 224)
    f = _flops(dino, pixel_values=img)
    with torch.no_grad():
        t = _time(lambda: dino(pixel_values=img), args.stage_reps)
    print(f"DINOv2-L/14 first frame 224 (257 tokens)           {t * 1000:8.1f} ms/clip  {f / 1e9:7.1f} GFLOPs")
    del dino
    proj = Resampler(MOTION_PROJECTOR).eval()
    hidden = torch.randn(1, 1568, MOTION_PROJECTOR.embedding_dim)
    f = _flops(proj, hidden)
    with torch.no_grad():
        t = _time(lambda: proj(hidden), args.stage_reps)
    print(f"motion projector (Resampler -> 25x1024)            {t * 1000:8.1f} ms/clip  {f / 1e9:7.1f} GFLOPs")
    enc = get_text_encoder("all-MiniLM-L6-v2", tempfile.gettempdir())
    caps = [f"a person walks forward and turns to the left, take {i}" for i in range(256)]
    t = _time(lambda: enc.encode(caps), max(1, args.stage_reps // 2))
    print(f"caption, all-MiniLM-L6-v2 (batch 256)              {t / 256 * 1000:8.2f} ms/caption")
    print(f"({load()})")


def size(args) -> None:
    from motionrag_suite.models.i2v.configs import MOTION_PROJECTOR
    from motionrag_suite.retrieval.entry_spec import EntrySpec
    from motionrag_suite.retrieval.video_clips import placeholder_motion
    from motionrag_suite.retrieval.writer import build_database

    n = args.size_entries
    rng = np.random.default_rng(0)
    motion_tokens = (MOTION_PROJECTOR.num_queries, MOTION_PROJECTOR.output_dim)
    appearance = (257, 1024)

    def entries():
        for i in range(n):
            name = f"clip{i:07d}"
            yield EntrySpec(motion=placeholder_motion(16, 8.0, name=name, provenance={"video": f"{name}.mp4"}),
                            captions=[f"a person moves in video number {i}"],
                            payloads={"motion_tokens_svd": rng.standard_normal(motion_tokens).astype(np.float16),
                                      "appearance_tokens": rng.standard_normal(appearance).astype(np.float16)})

    work = Path(tempfile.mkdtemp(prefix="bench_ray_size_"))
    try:
        t0 = time.perf_counter()
        folder = build_database(work, "size", entries(), total=n)
        secs = time.perf_counter() - t0
        total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        per = total / n
        print(f"== size: {n} entries with the paper's payloads: {total / 1e6:.1f} MB = {per / 1e3:.1f} kB/entry "
              f"-> 1M entries {per * 1e6 / 1e9:.0f} GB on disk; written in {secs:.1f} s = {n / secs:.0f} entries/s "
              f"including MiniLM on one caption each ({load()})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--clips", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--stage-reps", type=int, default=3)
    p.add_argument("--size-entries", type=int, default=2000)
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-stages", action="store_true")
    p.add_argument("--skip-size", action="store_true")
    args = p.parse_args()
    if not args.skip_stages:
        stages(args)
    if not args.skip_size:
        size(args)
    if not args.skip_throughput:
        throughput(args)


if __name__ == "__main__":
    main()
