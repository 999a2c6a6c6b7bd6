"""Load Motion and Save Motion."""
from __future__ import annotations

from pathlib import Path

from ..common.errors import InputError
from ..models.motion import MotionError
from ..models.motion.motiondiff_compat import from_motion_data, to_motion_data
from . import comfy_env

FILE_PREFIX = "file/"


def _resolve_user_path(path: str) -> Path:
    """A path typed into the node: absolute, or relative to ComfyUI's input folder."""
    from ..models.motion.files import SUPPORTED_EXTENSIONS

    raw = path.strip().strip('"')
    candidate = comfy_env.input_path(raw, what="path")
    if candidate.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise MotionError("path", f"{raw!r} is not a motion file; expected one of {', '.join(SUPPORTED_EXTENSIONS)}")
    if not candidate.is_file():
        raise MotionError("path", f"no file at {candidate}")
    return candidate


def _load_file(file: Path, fps: float | None, input_name: str):
    from ..models.motion.files import load_motion_file

    try:
        return load_motion_file(file, fps=fps)
    except MotionError as exc:
        raise MotionError(input_name, str(exc)) from exc      # the file's own complaint, under the node's input


def _clip_choices() -> list[str]:
    from ..models.motion import library

    return library.list_clips() + [FILE_PREFIX + f for f in comfy_env.motion_files()]


class LoadMotion:
    DESCRIPTION = ("Loads a motion: a clip from the built-in motion-capture library, a motion file in "
                   "models/motionrag/motions, or any .npz / .npy (HumanML3D) / .bvh file given by path.")
    CATEGORY = comfy_env.CATEGORY
    # ComfyUI calls load_with_preview (outputs + the browser preview); load() is the plain call.
    FUNCTION = "load_with_preview"
    RETURN_TYPES = ("MOTION_DATA", "STRING", "INT")
    RETURN_NAMES = ("motion", "caption", "frames")
    OUTPUT_TOOLTIPS = ("The motion (22-joint skeleton, metres, Y up); also accepted by ComfyUI-MotionDiff nodes.",
                       "The clip's caption.", "Number of frames.")

    @classmethod
    def INPUT_TYPES(cls):
        from ..models.motion import library

        return {
            "required": {
                "clip": (_clip_choices(), {
                    "default": library.DEFAULT_CLIP,
                    "tooltip": "Built-in clip (M_ = mirrored copy) or a file from models/motionrag/motions.",
                }),
            },
            "optional": {
                "path": ("STRING", {
                    "default": "",
                    "tooltip": "Optional .npz/.npy/.bvh file, absolute or relative to ComfyUI's input folder. "
                               "Overrides 'clip' when not empty.",
                }),
                "fps_override": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 240.0, "step": 1.0,
                    "tooltip": "Frame rate of a file that does not record one (HumanML3D .npy is 20). 0 keeps the file's.",
                }),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, path=""):
        if path and path.strip():
            try:
                _resolve_user_path(path)
            except InputError as exc:
                return str(exc)
        return True

    @classmethod
    def IS_CHANGED(cls, clip, path="", fps_override=0.0):
        # Re-run when the file on disk changes; built-in clips never change.
        target = None
        if path and path.strip():
            try:
                target = _resolve_user_path(path)
            except InputError:
                return float("nan")
        elif clip.startswith(FILE_PREFIX):
            target = comfy_env.find_motion_file(clip[len(FILE_PREFIX):])
        if target is None:
            return f"{clip}|{fps_override}"
        stat = target.stat()
        return f"{target}|{stat.st_mtime_ns}|{stat.st_size}|{fps_override}"

    def load(self, clip, path="", fps_override=0.0):
        from ..models.motion import library

        fps = fps_override if fps_override and fps_override > 0 else None
        if path and path.strip():
            motion = _load_file(_resolve_user_path(path), fps, "path")
        elif clip.startswith(FILE_PREFIX):
            found = comfy_env.find_motion_file(clip[len(FILE_PREFIX):])
            if found is None:
                raise MotionError("clip", f"{clip!r} is no longer in models/motionrag/motions")
            motion = _load_file(found, fps, "clip")
        else:
            motion = library.load_clip(clip)
            if fps:
                motion = motion.resampled(fps)
        return (to_motion_data(motion), motion.caption, motion.num_frames)

    def load_with_preview(self, clip, path="", fps_override=0.0):
        from ..models.motion.preview import preview_payload

        result = self.load(clip, path=path, fps_override=fps_override)
        motion = from_motion_data(result[0])
        # Compact joints for web/js/motionrag_preview.js (the in-node 3D viewer).
        return {"ui": {"motionrag_motion": [preview_payload(motion)]}, "result": result}


SAVE_FORMATS = {
    "npz": "npz",
    "bvh": "bvh",
    "bvh_mixamo": "bvh",
    "humanml3d_vecs_npy": "npy",
    "humanml3d_joints_npy": "npy",
    "glb": "glb",
    "glb_mixamo": "glb",
}


class SaveMotion:
    DESCRIPTION = ("Saves a motion into ComfyUI's output folder: our compact .npz, BVH (imports into Blender), "
                   "HumanML3D .npy (263-d new_joint_vecs, or new_joints positions), or GLB (glTF 2.0: a skinned "
                   "body with the motion as its animation, for Blender, Unity, Unreal and ComfyUI's "
                   "Preview 3D - Animation node, which takes the path output). bvh_mixamo and glb_mixamo name "
                   "the joints as Mixamo does, mixamorig:Hips ..., with a T-pose rest, for retargeting.")
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("Absolute path of the written file.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "motion": ("MOTION_DATA", {"tooltip": "The motion to save."}),
                "filename_prefix": ("STRING", {
                    "default": "MotionRAG/motion",
                    "tooltip": "File name prefix inside the output folder; may include subfolders.",
                }),
                "format": (list(SAVE_FORMATS), {"default": "npz", "tooltip": (
                    "File format. bvh and glb name the joints as the pack does (pelvis, left_hip, ...); "
                    "bvh_mixamo and glb_mixamo as Mixamo does (mixamorig:Hips, mixamorig:LeftUpLeg, ...), "
                    "with a T-pose rest, for retargeting tools.")}),
            },
        }

    def save(self, motion, filename_prefix, format):
        from ..models.motion import bvh_write, files, gltf

        m = from_motion_data(motion)
        path, subfolder = comfy_env.save_path(filename_prefix, SAVE_FORMATS[format])
        if format == "npz":
            files.save_npz(m, path)
        elif format in ("bvh", "bvh_mixamo"):
            bvh_write.save_bvh(m, path, naming="mixamo" if format == "bvh_mixamo" else "smpl")
        elif format in ("glb", "glb_mixamo"):
            gltf.save_glb(m, path, naming="mixamo" if format == "glb_mixamo" else "smpl")
        elif format == "humanml3d_vecs_npy":
            files.save_humanml3d_npy(m, path, kind="features")
        else:
            files.save_humanml3d_npy(m, path, kind="joints")
        entry = {"filename": path.name, "subfolder": subfolder, "type": "output"}
        return {"ui": {"text": [str(path)], "motion_files": [entry]}, "result": (str(path),)}


NODE_CLASS_MAPPINGS = {
    "MotionRAGLoadMotion": LoadMotion,
    "MotionRAGSaveMotion": SaveMotion,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionRAGLoadMotion": "Load Motion (MotionRAG)",
    "MotionRAGSaveMotion": "Save Motion (MotionRAG)",
}
