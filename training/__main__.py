"""`python -m training <command> ...` from the pack folder; commands: t2m, i2v, t2m-benchmark, momask, momask-adapter."""
import sys

COMMANDS = {"t2m": "training.t2m", "i2v": "training.i2v", "t2m-benchmark": "training.t2m_benchmark",
            "momask": "training.momask", "momask-adapter": "training.momask_adapter"}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: python -m training {{{','.join(COMMANDS)}}} ... (--help after a command for its options)",
              file=sys.stderr)
        sys.exit(2)
    # Run as a top-level package here, so the pack's own modules are reached by absolute name.
    from common.standalone import run_in_pack

    sys.exit(run_in_pack(COMMANDS[sys.argv[1]], sys.argv[2:]))
