"""Extract Motion from Video, Build Motion DB from Videos and Pose from Image (BlazePose, the optional
mediapipe extra)."""
from __future__ import annotations

from pathlib import Path

from ..models.motion import MotionError
from . import comfy_env
from .databases import MODES, build_or_add, check_new_name, source_path

ROOT_MOTIONS = ("image_plane", "none")
VIDEO_INPUTS = {"entries": "source_folder", "motion_db": "name"}


def _resolve_video(path: str) -> Path:
    from ..models.motion.video_pose import VIDEO_EXTENSIONS      # numpy behind it

    raw = str(path or "").strip().strip('"')
    candidate = comfy_env.input_path(raw, what="video_path")
    if candidate.suffix.lower() not in VIDEO_EXTENSIONS:
        raise MotionError("video_path", f"{raw!r} is not a video file; expected one of {', '.join(VIDEO_EXTENSIONS)}")
    if not candidate.is_file():
        raise MotionError("video_path", f"no file at {candidate}")
    return candidate


class ExtractMotionFromVideo:
    DESCRIPTION = ("Extracts a person's motion from a video with BlazePose (the models inside the optional "
                   "mediapipe package): 3D landmarks mapped to the 22-joint skeleton, smoothed, resampled to "
                   "20 fps and placed on the floor. Root movement comes from the person's path across the "
                   "image (depth is not recovered). Give frames (an IMAGE batch from a video loader) or a file path.")
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "extract_with_preview"
    RETURN_TYPES = ("MOTION_DATA", "INT")
    RETURN_NAMES = ("motion", "frames")
    OUTPUT_TOOLTIPS = ("The motion (22-joint skeleton, metres, Y up, 20 fps).", "Number of frames at 20 fps.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "fps": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 240.0, "step": 1.0,
                    "tooltip": "Frame rate of the video. Needed for 'images'; for a file, 0 uses the file's own.",
                }),
                "root_motion": (list(ROOT_MOTIONS), {
                    "default": "image_plane",
                    "tooltip": "image_plane: the pelvis follows the person's path across the image, scaled to metres "
                               "(a moving camera reads as movement; no depth). none: the pelvis stays over the origin.",
                }),
                "smoothing": ("FLOAT", {
                    "default": 0.25, "min": 0.0, "max": 2.0, "step": 0.05,
                    "tooltip": "Savitzky-Golay window in seconds (0 = no smoothing): removes detector jitter.",
                }),
            },
            "optional": {
                "images": ("IMAGE", {
                    "tooltip": "Video frames in order (e.g. from Load Video); used when connected.",
                }),
                "video_path": ("STRING", {
                    "default": "",
                    "tooltip": "A video file (.mp4, .webm, .mov, .mkv, .avi), absolute or relative to ComfyUI's "
                               "input folder; used when no images are connected.",
                }),
                "max_seconds": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 3600.0, "step": 1.0,
                    "tooltip": "Read at most this much of a video file (0 = all of it).",
                }),
            },
        }

    def extract(self, fps, root_motion="image_plane", smoothing=0.25, images=None, video_path="", max_seconds=0.0):
        from ..models.motion import video_pose

        video_pose.require_mediapipe()
        options = {"root_motion": root_motion, "smoothing_seconds": float(smoothing)}
        if images is not None:
            if not fps or fps <= 0:
                raise MotionError("fps", "give the video's frame rate (from the video loader) when frames are connected")
            frames = images.detach().cpu().numpy() if hasattr(images, "detach") else images
            if getattr(frames, "ndim", 0) != 4 or frames.shape[-1] != 3:
                raise MotionError("images", f"expected an IMAGE batch [frames, height, width, 3], got shape "
                                  f"{getattr(frames, 'shape', None)}")
            if max_seconds and max_seconds > 0:
                frames = frames[:max(1, int(round(max_seconds * fps)))]
            step = comfy_env.progress(len(frames))
            motion = video_pose.extract_motion(frames, fps, callback=step, name="video", **options)
        elif video_path and str(video_path).strip():
            path = _resolve_video(video_path)
            file_fps, count = video_pose.probe_video(path)
            rate = fps if fps and fps > 0 else file_fps
            max_frames = int(round(max_seconds * rate)) if max_seconds and max_seconds > 0 and rate else 0
            step = comfy_env.progress(max(count if not max_frames else min(count, max_frames), 1))
            motion = video_pose.extract_motion_from_file(path, fps=fps, max_frames=max_frames, callback=step, **options)
        else:
            raise MotionError("images / video_path", "connect video frames or give a video file path")
        from ..models.motion.motiondiff_compat import to_motion_data

        return (to_motion_data(motion), motion.num_frames)

    def extract_with_preview(self, **kwargs):
        from ..models.motion.motiondiff_compat import from_motion_data
        from ..models.motion.preview import preview_payload

        result = self.extract(**kwargs)
        return {"ui": {"motionrag_motion": [preview_payload(from_motion_data(result[0]))]}, "result": result}


class BuildMotionDBFromVideos:
    DESCRIPTION = ("Builds a motion database from a folder of videos of people, each captioned by a <name>.txt "
                   "beside it (one caption a line): BlazePose motion from each video (optional mediapipe "
                   "package), stored for Text Retrieve. A cancelled or failed build leaves nothing half-written.")
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "build"
    OUTPUT_NODE = True
    RETURN_TYPES = ("MOTION_DB", "STRING")
    RETURN_NAMES = ("motion_db", "summary")
    OUTPUT_TOOLTIPS = ("The database, ready for Text Retrieve.", "What was built or added.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "source_folder": ("STRING", {
                    "default": "",
                    "tooltip": "Folder of videos with <name>.txt captions, absolute or relative to ComfyUI's input folder.",
                }),
                "name": ("STRING", {
                    "default": "my_video_motions",
                    "tooltip": "Database name; it becomes a folder in models/motionrag/databases.",
                }),
                "mode": (list(MODES), {
                    "default": "create",
                    "tooltip": "create: a new database (the name must be free); add: append to an existing one.",
                }),
            },
            "optional": {
                "mirrored": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Also store a left/right mirrored copy of each motion, left/right swapped in its captions.",
                }),
                "max_seconds": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 3600.0, "step": 1.0,
                    "tooltip": "Read at most this much of each video (0 = all of it).",
                }),
                "root_motion": (list(ROOT_MOTIONS), {
                    "default": "image_plane",
                    "tooltip": "image_plane: root follows the person across the image; none: root stays at the origin.",
                }),
            },
        }

    def build(self, source_folder, name, mode, mirrored=False, max_seconds=0.0, root_motion="image_plane"):
        from ..retrieval.video_pose_builder import add_from_videos, build_from_videos   # cv2 behind them

        name = check_new_name(name)
        source = source_path(source_folder)
        options = {"include_mirrored": bool(mirrored), "max_seconds": float(max_seconds), "root_motion": root_motion,
                   "frame_callback": lambda _i: comfy_env.cancel_hook()()}
        work = dict(source_options=options, progress=comfy_env.batch_progress(1), cancel=comfy_env.cancel_hook(),
                    batch_size=1)
        with comfy_env.inputs_named(**VIDEO_INPUTS):
            db, summary = build_or_add(name, mode, lambda root: build_from_videos(root, name, source, **work),
                                       lambda root: add_from_videos(root, name, source, **work))
        return {"ui": {"text": [summary]}, "result": (db, summary)}


class PoseFromImage:
    DESCRIPTION = ("The pose of the person in a picture, with BlazePose (the optional mediapipe package, as Extract "
                   "Motion from Video): 22 joints on the floor, facing as in the picture (towards the camera = "
                   "forward). Link it to Text-to-Motion RAG's start_pose and the generated motion starts from "
                   "this pose, as MLLM-Motion's image input does.")
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "pose"
    RETURN_TYPES = ("MOTION_DATA",)
    RETURN_NAMES = ("pose",)
    OUTPUT_TOOLTIPS = ("The pose held for hold_frames frames (22-joint skeleton, metres, Y up, 20 fps).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {
                    "tooltip": "A picture of one person, whole body in view if possible (Load Image). Of a batch, "
                               "the first picture is used.",
                }),
                "hold_frames": ("INT", {
                    "default": 20, "min": 1, "max": 200,
                    "tooltip": "Frames at 20 fps the pose is held for in the output (a still motion, for the preview "
                               "and for nodes that need a few frames). Text-to-Motion RAG's start_pose uses its last "
                               "frame and holds it for the model's 4-frame token itself.",
                }),
            },
        }

    def pose(self, image, hold_frames=20):
        from ..models.motion import image_pose, video_pose               # numpy behind these
        from ..models.motion.motiondiff_compat import to_motion_data
        from ..models.motion.preview import preview_payload

        video_pose.require_mediapipe()
        if getattr(image, "ndim", 0) == 4:
            image = image[:1]
        motion = image_pose.pose_from_image(image, hold_frames=hold_frames)
        return {"ui": {"motionrag_motion": [preview_payload(motion)]}, "result": (to_motion_data(motion),)}


NODE_CLASS_MAPPINGS = {
    "MotionRAGExtractMotionFromVideo": ExtractMotionFromVideo,
    "MotionRAGBuildMotionDBFromVideos": BuildMotionDBFromVideos,
    "MotionRAGPoseFromImage": PoseFromImage,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionRAGExtractMotionFromVideo": "Extract Motion from Video (MotionRAG)",
    "MotionRAGBuildMotionDBFromVideos": "Build Motion DB from Videos (MotionRAG)",
    "MotionRAGPoseFromImage": "Pose from Image (MotionRAG)",
}
