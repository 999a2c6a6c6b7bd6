import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the pack root: common.standalone

from common.standalone import load_pack  # noqa: E402

load_pack()
