"""Start the real ComfyUI with the pack N times (default 3) and print the pack's
import time as ComfyUI reports it ("Import times for custom nodes", 0.1 s
resolution), plus the server's start-up time. A measurement, not a test.

    .venv/bin/python tests/benchmarks/bench_import.py [--runs 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `harness`

from harness.comfy_server import ComfyServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    imports, starts = [], []
    for i in range(args.runs):
        with ComfyServer() as server:
            entry = server.pack_import()
            if entry is None or not entry[1]:
                print(f"run {i + 1}: the pack did not import:\n{server.log_tail(60)}", file=sys.stderr)
                return 1
            imports.append(entry[0])
            starts.append(server.startup_seconds)
            print(f"run {i + 1}: pack import {entry[0]:.1f} s (ComfyUI's figure), "
                  f"server up in {server.startup_seconds:.2f} s")
    print(f"pack import: median {statistics.median(imports):.1f} s, max {max(imports):.1f} s; "
          f"server start: median {statistics.median(starts):.2f} s over {args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
