"""The link values between the image-to-video nodes: their ComfyUI type names and the video-backbone
value that Inject Motion passes on to Sample Video."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..models.i2v import runtime as rt
from .model_owner import Held

CAMA_TYPE = "MOTIONRAG_CAMA"
ADAPTER_TYPE = "MOTIONRAG_MOTION_ADAPTER"
BACKBONE_TYPE = "MOTIONRAG_VIDEO_MODEL"
TOKENS_TYPE = "MOTIONRAG_MOTION_TOKENS"
REFS_TYPE = "MOTION_REFS"
DB_TYPE = "MOTION_DB"
MECHANICS = ("With tiny random test backbones the output only shows that the mechanics work; it says "
             "nothing about quality.")
DOWNLOAD_TOOLTIP = ("Fetch missing MotionRAG checkpoint files from the public MCG-NJU/MotionRAG model repository "
                    "into models/motionrag/checkpoints (needs network access and huggingface_hub). Off: a missing "
                    "file is reported with the exact path and the download command.")


@dataclass(frozen=True)
class Backbone:
    """A loaded video backbone, and once Inject Motion ran, the motion to inject while sampling."""
    handle: Held
    base: str
    name: str
    tokens: Any = None             # runtime.MotionTokens once motion is injected
    adapter: Held | None = None
    strength: float = 1.0

    @property
    def plan(self):
        """The runtime.MotionPlan to sample with (None: the plain model); built when asked, from the
        adapter weights where they are now."""
        if self.tokens is None:
            return None
        return rt.MotionPlan(self.tokens, self.adapter.get().state(), float(self.strength))
