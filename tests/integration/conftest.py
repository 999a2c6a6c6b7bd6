"""One real ComfyUI server (with this pack as a custom node) per test module."""
import os

import pytest

from harness.comfy_server import ComfyServer


@pytest.fixture(scope="module")
def comfy():
    if os.environ.get("MOTIONRAG_SKIP_COMFY") == "1":
        pytest.skip("MOTIONRAG_SKIP_COMFY=1: real-ComfyUI tests skipped on request")
    # No ComfyUI provisioned is an error (run `bash .ci/setup`), not a skip.
    with ComfyServer() as server:
        yield server


@pytest.fixture(scope="module")
def object_info(comfy):
    return comfy.object_info()
