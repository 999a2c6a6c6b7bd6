"""Text-to-motion generation speed and memory on this CPU with the default (shipped) model.

Run: .venv/bin/python tests/benchmarks/bench_t2m.py [rounds] [model folder]   (from the pack folder;
default 5 rounds, models/t2m/weights/motionrag-t2m-small)

Times T2MModel.generate() alone (the text already encoded, two references already retrieved,
as the node hands them over) at 40 / 80 / 120 / 196 frames with the node's defaults (10 steps,
guidance 4 / 1), with 1 torch thread and with torch's default, and prints the median and best
of `rounds` after one warm-up each. Also: the node's other per-run costs (encoding the text,
retrieving), model load time, and peak memory: a fresh child process imports torch, loads the model and generates
196 frames, reporting its peak resident set (VmHWM) after each step, so the text encoder and
database of the timing process do not mask it. Goal: 196 frames in under 0.5 s.
"""
from __future__ import annotations

import os
import resource
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

DEFAULT_MODEL = TESTS.parent / "models" / "t2m" / "weights" / "motionrag-t2m-small"
LENGTHS = (40, 80, 120, 196)
TEXT = "a person does a cartwheel"


def peak_mib() -> float:
    """This process's peak resident set: VmHWM (ru_maxrss would carry the parent's peak over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, rounds: int) -> tuple[float, float]:
    fn()                                       # warm-up (allocations, first-call paths)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main(rounds: int, folder: Path) -> None:
    import torch

    from motionrag_suite.models.t2m.checkpoint import load_model
    from motionrag_suite.retrieval import build_from_library, get_database

    print(f"load average at start: {os.getloadavg()}; cpus {os.cpu_count()}; torch {torch.__version__}, "
          f"default threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        build_from_library(tmp, "builtin")
        db = get_database(tmp, "builtin")
        encoder = db.encoder()
        t0 = time.perf_counter()
        model = load_model(folder)
        load_s = time.perf_counter() - t0
        size = (folder / "model.safetensors").stat().st_size / 2 ** 20
        print(f"model {folder.name}: {model.num_parameters() / 1e6:.2f} M parameters, {size:.2f} MiB file, "
              f"load {load_s * 1000:.0f} ms, max {model.max_frames} frames")

        enc_med, _ = timed(lambda: encoder.encode([TEXT]), rounds)
        emb = encoder.encode([TEXT])[0]
        ret_med, _ = timed(lambda: db.search_vector(emb, 2, one_per_source=True), rounds)
        hits = db.search_vector(emb, 2, one_per_source=True)
        refs = [h.motion for h in hits]
        print(f"per run besides generation: encode text {enc_med * 1000:.1f} ms, retrieve 2 {ret_med * 1000:.1f} ms "
              f"(references {[h.name for h in hits]})")

        default_threads = torch.get_num_threads()
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            print(f"\ngenerate(), {threads} torch thread(s), 10 steps, 2 references; median / best of {rounds}:")
            for n in LENGTHS:
                med, best = timed(lambda: model.generate(emb, refs, length_frames=n, seed=0), rounds)
                flag = "  (goal < 0.5 s)" if n == 196 else ""
                print(f"  {n:4d} frames: {med * 1000:7.1f} ms median, {best * 1000:7.1f} ms best{flag}")
        torch.set_num_threads(default_threads)
        import numpy as np

        np.save(Path(tmp) / "emb.npy", emb)
        for i, m in enumerate(refs):
            np.save(Path(tmp) / f"ref{i}.npy", m.joints)
        proc = subprocess.run([sys.executable, __file__, "--memory-child", str(folder), tmp], capture_output=True,
                              text=True, timeout=600)
        if proc.returncode:
            raise SystemExit(proc.stderr[-2000:])
        print("\n" + proc.stdout.strip())
    print(f"load average at end: {os.getloadavg()}")


def memory_child(folder: Path, tmp: Path) -> None:
    import numpy as np
    import torch

    from motionrag_suite.models.motion.motion import Motion
    from motionrag_suite.models.t2m.checkpoint import load_model

    torch.set_num_threads(1)
    base = peak_mib()
    model = load_model(folder)
    loaded = peak_mib()
    emb = np.load(tmp / "emb.npy")
    refs = [Motion(joints=np.load(p)) for p in sorted(tmp.glob("ref*.npy"))]
    model.generate(emb, refs, length_frames=196, seed=0)
    done = peak_mib()
    print(f"peak RSS in a fresh process: {base:.0f} MiB with torch imported, {loaded:.0f} MiB after loading the "
          f"model (+{loaded - base:.0f}), {done:.0f} MiB after generating 196 frames (+{done - loaded:.0f})")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        memory_child(Path(sys.argv[2]), Path(sys.argv[3]))
        sys.exit(0)
    r = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    f = Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_MODEL
    if not (f / "model.safetensors").is_file():
        raise SystemExit(f"no model.safetensors in {f}; train one with `python -m training t2m` or pass a folder")
    main(r, f)
