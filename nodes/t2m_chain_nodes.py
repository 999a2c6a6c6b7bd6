"""Text-to-Motion Chain: one long motion from several prompts with durations, with a released MoMask
model (models/momask/inpaint.py, `chain`): each segment is generated with the previous one's last
frames kept as its start (MoMask's temporal inpainting), so the motion flows from one prompt to the
next. The models are the Text-to-Motion RAG node's (nodes/t2m_momask.py: the same Held values, so the
two nodes share the model in memory)."""
from __future__ import annotations

import re

from ..common.errors import InputError
from ..models.momask.config import is_momask_folder
from . import comfy_env, t2m_momask
from .model_owner import drop_group, load_to_device
from .t2m_nodes import model_choices, model_folder, start_pose_of

FPS = 20.0                      # HumanML3D's rate, the rate of every released MoMask text-to-motion model
MAX_SEGMENTS = 32
DEFAULT_SEGMENTS = "a person walks forward | 4\na person jumps up and down | 3\na person sits down | 4"


def momask_choices() -> list[str]:
    """MoMask folders under models/motionrag/t2m ('t2m', the released folder name, first even when
    absent, so a shared workflow keeps its value and the error says what to download)."""
    names = [n for n in model_choices()[1:] if is_momask_folder(model_folder(n))]
    return ["t2m"] + [n for n in names if n != "t2m"]


def parse_segments(text) -> list[tuple[str, float]]:
    """'text | seconds' per line (blank lines skipped) -> [(text, seconds)]."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("segments", "is empty; write one segment per line as 'text | seconds', e.g. "
                                     "'a person walks forward | 4'")
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        words, sep, seconds = line.rpartition("|")
        words = " ".join(words.split())
        if not sep or not words or not re.fullmatch(r"\s*\d+(\.\d+)?\s*", seconds):
            raise InputError("segments", f"line {number} ({line.strip()[:60]!r}): expected 'text | seconds', e.g. "
                                         f"'a person walks forward | 4'")
        out.append((words, float(seconds)))
    if len(out) > MAX_SEGMENTS:
        raise InputError("segments", f"{len(out)} segments; at most {MAX_SEGMENTS}")
    return out


class TextToMotionChain:
    DESCRIPTION = ("Generates one long motion from several prompts, each with its duration, with a released MoMask "
                   "model (models/motionrag/t2m/<name>, see the README): each segment starts from the previous "
                   "one's last frames (overlap_frames) and continues with its own prompt, so the motion flows "
                   "through them. Longer than MoMask's 10 s per generation. No retrieval.")
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "generate"
    RETURN_TYPES = ("MOTION_DATA",)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = ("The whole motion (22-joint skeleton, metres, Y up, 20 fps) with its HumanML3D features.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "segments": ("STRING", {
                    "multiline": True, "default": DEFAULT_SEGMENTS,
                    "tooltip": "One segment per line: 'text | seconds' (seconds at 20 fps, whole 4-frame tokens; "
                               "the first segment up to 9.8 s, later ones up to 9.8 s minus the overlap).",
                }),
                "model": (momask_choices(), {
                    "tooltip": "A released MoMask model folder under models/motionrag/t2m (checkpoints/t2m of "
                               "MoMask's download; see the README).",
                }),
                "seed": ("INT", {
                    "default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                    "tooltip": "Random seed (segment i uses seed + i); the same inputs and seed give the same motion.",
                }),
                "guidance_text": ("FLOAT", {
                    "default": 4.0, "min": 0.0, "max": 20.0, "step": 0.1,
                    "tooltip": "Classifier-free guidance scale of each segment's text (MoMask uses 4).",
                }),
                "steps": ("INT", {
                    "default": 10, "min": 1, "max": 100,
                    "tooltip": "Iterative decoding passes per segment (MoMask: 10 in its evaluation, 18 in its demo).",
                }),
                "overlap_frames": ("INT", {
                    "default": 20, "min": 4, "max": 192, "step": 4,
                    "tooltip": "Frames of each segment kept as the next one's start (a multiple of 4): more = "
                               "smoother joins, less room for the new prompt.",
                }),
            },
            "optional": {
                "clip": (t2m_momask.clip_choices(), {
                    "default": t2m_momask.CLIP_DEFAULT,
                    "tooltip": "The CLIP ViT-B/32 text encoder, a Hugging Face folder under models/motionrag/clip "
                               "(openai/clip-vit-base-patch32).",
                }),
                "download": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Fetch a missing CLIP folder from the Hugging Face hub (needs network access). Off: "
                               "a missing folder is reported with the exact download command and folder.",
                }),
                "keep_loaded": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Keep the models in memory for the next run; off frees them afterwards.",
                }),
                "start_pose": ("MOTION_DATA", {
                    "tooltip": "A pose the whole motion starts from (e.g. Pose from Image's; of a longer motion, its "
                               "last frame). It is held for the first 4 frames (one token), kept exactly and eased "
                               "into the first segment over the next 8; those 4 frames come before the first "
                               "segment's duration, which then may be at most 9.6 s.",
                }),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, segments=None):
        try:
            if segments is not None:
                parse_segments(segments)
        except InputError as exc:
            return str(exc)
        return True

    def generate(self, segments, model, seed, guidance_text, steps, overlap_frames, clip=t2m_momask.CLIP_DEFAULT,
                 download=False, keep_loaded=True, start_pose=None):
        from ..models.momask import chain                             # torch behind these
        from ..models.motion.humanml3d import features_to_motion
        from ..models.motion.motiondiff_compat import to_motion_data
        from ..models.motion.preview import preview_payload

        parts = parse_segments(segments)             # every input checked before a model loads
        frames = [int(round(s * FPS)) for _, s in parts]
        pose = start_pose_of(start_pose)
        folder = model_folder(model)
        if not is_momask_folder(folder):
            raise InputError("model", f"{folder} is not a MoMask model folder (network folders with opt.txt, as "
                                      f"MoMask's checkpoints/t2m unzips); see the README's MoMask models")
        held = t2m_momask.momask_model(model, folder)
        net = held.get()
        text_held, encode = t2m_momask.text_encoding(net, clip, bool(download), comfy_env.models_roots()[0])
        self._held = (held, text_held) if keep_loaded else None
        bar = []

        def on_step(i, total):
            if not bar:
                bar.append(comfy_env.progress(total))
            bar[0](i)

        try:
            if net.config.dataset != "t2m":
                raise InputError("model", f"{model!r} is a MoMask KIT-ML model; this node runs the HumanML3D models")
            load_to_device(*(h for h in (held, text_held) if h is not None))
            embeddings = [encode(t) for t, _ in parts]
            prefix = None if pose is None else t2m_momask.pose_prefix(pose, net)
            with comfy_env.inputs_named(durations="segments", segments="segments", guidance="guidance_text",
                                        prefix="start_pose"):
                out = chain(net, list(zip(embeddings, frames)), int(seed), overlap_frames=overlap_frames,
                            guidance=float(guidance_text), steps=int(steps), prefix=prefix, progress=on_step)
        finally:
            if not keep_loaded:
                del net, encode, held, text_held
                drop_group(t2m_momask.GROUP)
                drop_group(t2m_momask.CLIP_GROUP)
        motion = features_to_motion(out.features, fps=out.fps, caption=" / ".join(t for t, _ in parts),
                                    name=f"chain_seed{seed}", provenance={"model": model, "segments": len(parts)})
        if pose is not None:
            from ..models.motion.image_pose import start_from_pose

            # the kept token comes back re-decoded: the pose itself goes over it, eased into what follows
            motion = start_from_pose(pose, motion, hold_frames=len(prefix), replace_start=True)
        summary = (f"{motion.num_frames} frames at {motion.fps:g} fps, seed {seed}, MoMask {model}, "
                   + ", ".join(f"{t!r} {f} frames" for (t, _), f in zip(parts, frames)))
        return {"ui": {"motionrag_motion": [preview_payload(motion)], "text": [summary]},
                "result": (to_motion_data(motion),)}


NODE_CLASS_MAPPINGS = {
    "MotionRAGTextToMotionChain": TextToMotionChain,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionRAGTextToMotionChain": "Text-to-Motion Chain, MoMask (MotionRAG)",
}
