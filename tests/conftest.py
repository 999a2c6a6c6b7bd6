import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the pack root: common.standalone

from common.standalone import load_pack  # noqa: E402

load_pack()


def pytest_addoption(parser):
    parser.addoption("--comfyui", choices=("2024", "new"), default=None,
                     help="which ComfyUI .ci/setup provisioned the integration and browser tests start: "
                          "2024 (default) or new (v0.3.64); same as MOTIONRAG_COMFYUI")


def pytest_configure(config):
    # the harness (and any server it starts) reads the environment, so the option goes there
    choice = config.getoption("--comfyui")
    if choice:
        os.environ["MOTIONRAG_COMFYUI"] = choice


def pytest_report_header(config):
    from harness.comfy_server import ComfyError, comfyui_version, find_comfyui

    try:
        path = find_comfyui()
    except ComfyError as exc:
        return f"ComfyUI: none ({exc})"
    return f"ComfyUI: {comfyui_version(path)} at {path}"
