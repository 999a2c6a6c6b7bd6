"""A real picture of a person for the start-pose tests, from an installed package (nothing committed):
the first frame of the animated preview of ComfyUI's video_wan21_scail2_character_replacement template
(package comfyui-workflow-templates-media-video, which the built-in video database already reads): a
woman dancing on grass, whole body in view, facing the camera, 350x350."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

PACKAGE = "comfyui_workflow_templates_media_video"
PREVIEW = "templates/video_wan21_scail2_character_replacement-1.webp"


def picture_path() -> Path | None:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / PREVIEW
    return path if path.is_file() else None


def person_picture() -> np.ndarray:
    """(350, 350, 3) uint8 RGB."""
    from PIL import Image

    with Image.open(picture_path()) as im:
        im.seek(0)
        return np.asarray(im.convert("RGB"))


def detector_ready() -> bool:
    return importlib.util.find_spec("mediapipe") is not None and picture_path() is not None
