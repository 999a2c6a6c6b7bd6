"""`python -m retrieval <command>` from the pack folder (see cli.py for the commands)."""
import sys

if __name__ == "__main__":
    # Run as a top-level package here, so the pack's own modules are reached by absolute name.
    from common.standalone import run_in_pack

    sys.exit(run_in_pack("retrieval.cli"))
